//! Shared by the end-to-end tests: a lab that is torn down when the test
//! ends (pass or panic), the `k8sup` binary, and root commands on machines.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use k8sup_lab::{Lab, LabInfo, UpOptions};

mod mirror;
#[allow(unused_imports)]
pub use mirror::{KUBERNETES, component, image, kube_binary, mirror};

/// A lab for one test. Each test names its own, so tests run in parallel
/// (each lab has its own bridge and subnet); `Drop` takes it down.
pub struct TestLab {
    pub lab: Lab,
    pub info: LabInfo,
}

impl TestLab {
    pub fn up(name: &str, nodes: usize) -> TestLab {
        Self::up_with(
            name,
            UpOptions {
                nodes,
                ..Default::default()
            },
        )
    }

    pub fn up_with(name: &str, opts: UpOptions) -> TestLab {
        let lab = Lab::new(name);
        let info = lab
            .up(&opts)
            .unwrap_or_else(|e| panic!("lab {name} up: {e:#}"));
        TestLab { lab, info }
    }

    pub fn inventory(&self) -> &Path {
        &self.info.inventory
    }

    pub fn node(&self, i: usize) -> String {
        self.info.machines[i].name.clone()
    }

    pub fn address(&self, i: usize) -> String {
        self.info.machines[i].address.to_string()
    }

    /// Run a shell command as root on machine `i` with the system ssh client
    /// (independent of k8sup's own transport, so tests do not check k8sup with k8sup).
    pub fn root(&self, i: usize, cmd: &str) -> String {
        let out = Command::new("ssh")
            .args(["-i", self.info.identity_file.to_str().unwrap()])
            .args([
                "-o",
                &format!("UserKnownHostsFile={}", self.info.known_hosts.display()),
            ])
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=5",
            ])
            .arg(format!("root@{}", self.address(i)))
            .arg(cmd)
            .output()
            .expect("run ssh");
        assert!(
            out.status.success(),
            "on {}: `{cmd}` failed: {}",
            self.node(i),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Copy the local file `from` to `to` on machine `i` (the system scp,
    /// host keys checked).
    pub fn copy_to(&self, i: usize, from: &Path, to: &str) {
        let out = Command::new("scp")
            .args(["-q", "-i", self.info.identity_file.to_str().unwrap()])
            .args([
                "-o",
                &format!("UserKnownHostsFile={}", self.info.known_hosts.display()),
            ])
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
            .arg(from)
            .arg(format!("root@{}:{to}", self.address(i)))
            .output()
            .expect("run scp");
        assert!(
            out.status.success(),
            "scp {} to {}:{to}: {}",
            from.display(),
            self.node(i),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A copy of the lab's inventory with `edit` applied to its text, in the
    /// lab's directory (so relative paths keep working).
    pub fn inventory_variant(&self, file: &str, edit: impl FnOnce(String) -> String) -> PathBuf {
        let text = std::fs::read_to_string(self.inventory()).unwrap();
        let path = self.inventory().with_file_name(file);
        std::fs::write(&path, edit(text)).unwrap();
        path
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Err(e) = self.lab.down() {
            eprintln!("lab {} down: {e:#}", self.lab.name());
        }
    }
}

/// Run the built `k8sup` binary.
pub fn k8sup(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_k8sup"))
        .args(args)
        .output()
        .expect("run k8sup")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl TestLab {
    /// Write an inventory for this lab's machines with extra `ssh:` lines
    /// (indented by the caller as `  key: value`) and extra per-host lines
    /// (`    key: value`), and return its path.
    pub fn custom_inventory(
        &self,
        file: &str,
        ssh_extra: &str,
        host_extra: impl Fn(usize) -> String,
    ) -> PathBuf {
        let mut y = format!(
            "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster:\n  name: {}\n  components: none\nssh:\n  identityFile: {}\n  knownHostsFile: {}\n  hostKeyPolicy: strict\n{ssh_extra}hosts:\n",
            self.lab.name(),
            self.info.identity_file.display(),
            self.info.known_hosts.display(),
        );
        for (i, m) in self.info.machines.iter().enumerate() {
            let role = if i == 0 { "control-plane" } else { "worker" };
            y += &format!(
                "  - name: {}\n    address: {}\n    role: {role}\n{}",
                m.name,
                m.address,
                host_extra(i)
            );
        }
        let path = self.inventory().with_file_name(file);
        std::fs::write(&path, y).unwrap();
        path
    }
}

/// `k8sup facts --output json` parsed, with the exit status.
pub fn facts_json(inventory: &Path) -> (bool, Vec<serde_json::Value>, String) {
    let out = k8sup(&[
        "facts",
        "-i",
        inventory.to_str().unwrap(),
        "--output",
        "json",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "facts json: {e}\nstdout: {}\nstderr: {}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    (out.status.success(), rows, text(&out.stderr))
}

/// The row of `host` in facts output.
pub fn row<'a>(rows: &'a [serde_json::Value], host: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["host"] == host)
        .unwrap_or_else(|| panic!("no row for {host} in {rows:?}"))
}
