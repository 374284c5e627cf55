//! Every example inventory under `inventories/` applies cleanly to lab
//! machines, as a new user would apply it to theirs, and a second apply has
//! nothing to do.
//!
//! How an example is put on the lab (the only changes made to it):
//! - host `i` of the example gets the address of lab machine `i` (the lab
//!   has as many machines as the largest example names hosts); a per-host
//!   `ssh.port` is dropped, since every lab machine's sshd is on port 22;
//! - `ssh.identityFile` and `ssh.knownHostsFile` become the lab's key and
//!   known_hosts (host keys stay strictly checked), and `ssh.user` becomes
//!   `root`, the lab's only login (an example's non-root user with sudo has
//!   no account on lab machines);
//! - `cluster.components` becomes `none`: what is checked here is each
//!   example's workload (files, services, commands); a whole cluster per
//!   example would be the same install five times (`e2e_cluster.rs` applies
//!   a cluster);
//! - everything else stays: roles, groups, vars, the workload, and a
//!   `proxyJump` (the bastion example jumps through lab machine 1 to reach
//!   the others, as it would through its edge host). `sudoPasswordEnv` stays
//!   too, with the variable set (root needs no sudo, so it is never used).
//!
//! The adapted copies are written next to a copy of `inventories/files/`, so
//! the examples' relative paths keep working.

mod common;

use std::path::{Path, PathBuf};

use common::{TestLab, text};
use serde_json::Value;

fn examples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventories");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "minimal, ha, bastion, workload: {files:?}"
    );
    files
}

fn read(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example `doc` with the lab's machines in place of its hosts (see the
/// module's documentation for exactly what changes).
fn on_the_lab(mut doc: Value, lab: &TestLab) -> Value {
    let ssh = doc
        .as_object_mut()
        .unwrap()
        .entry("ssh")
        .or_insert_with(|| Value::Object(Default::default()));
    let ssh = ssh.as_object_mut().expect("ssh is a mapping");
    ssh.insert("user".into(), "root".into());
    ssh.insert(
        "identityFile".into(),
        lab.info.identity_file.display().to_string().into(),
    );
    ssh.insert(
        "knownHostsFile".into(),
        lab.info.known_hosts.display().to_string().into(),
    );
    ssh.insert("hostKeyPolicy".into(), "strict".into());
    // The examples' workloads, not a Kubernetes install per example: the
    // cluster itself is applied to a lab by e2e_cluster.rs.
    doc["cluster"]["components"] = "none".into();
    let hosts = doc["hosts"].as_array_mut().expect("hosts is a list");
    assert!(
        hosts.len() <= lab.info.machines.len(),
        "the lab has fewer machines than the example has hosts"
    );
    for (i, host) in hosts.iter_mut().enumerate() {
        host["address"] = lab.address(i).into();
        if let Some(ssh) = host.get_mut("ssh").and_then(Value::as_object_mut) {
            ssh.remove("port");
        }
    }
    doc
}

fn k8sup(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_k8sup"))
        .args(args)
        .env_remove("K8SUP_INVENTORY")
        .env("K8SUP_SUDO_PASSWORD", "unused-the-lab-logs-in-as-root")
        .output()
        .expect("run k8sup");
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn every_example_inventory_applies_to_lab_machines_and_a_reapply_does_nothing() {
    let examples = examples();
    let largest = examples
        .iter()
        .map(|p| read(p)["hosts"].as_array().map_or(0, Vec::len))
        .max()
        .unwrap();
    let lab = TestLab::up("e2e-examples", largest);
    let work = lab.inventory().parent().unwrap().join("examples");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../inventories"),
        &work,
    );
    for example in &examples {
        let name = example.file_name().unwrap().to_string_lossy().to_string();
        let adapted = work.join(&name);
        // JSON is YAML: the adapted copy is written as JSON.
        let doc = on_the_lab(read(example), &lab);
        std::fs::write(&adapted, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let inv = adapted.to_str().unwrap();

        let (code, out, err) = k8sup(&["apply", "-i", inv, "--yes"]);
        assert_eq!(code, 0, "{name}: the first apply fails:\n{out}\n{err}");
        let (code, out, err) = k8sup(&["apply", "-i", inv, "--yes"]);
        assert_eq!(code, 0, "{name}: the second apply fails:\n{out}\n{err}");
        assert!(
            out.contains("No changes."),
            "{name}: a second apply has something to do:\n{out}\n{err}"
        );
    }
    // The workload example's service really runs (its program was pushed,
    // its unit installed, its config rendered): it writes its metrics.
    for i in 0..2 {
        let metrics = lab.root(
            i,
            "systemctl is-active load-reporter && for n in 1 2 3 4 5 6 7 8 9 10; do \
             [ -s /run/load-reporter/metrics ] && break; sleep 0.5; done; cat /run/load-reporter/metrics",
        );
        assert!(
            metrics.starts_with("active\n") && metrics.contains("node_load1 "),
            "{metrics}"
        );
    }
}
