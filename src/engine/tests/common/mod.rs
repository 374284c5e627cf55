//! Helpers for the engine's end-to-end tests: a lab of real systemd machines
//! with sshd (k8sup-lab), sessions to them (k8sup-ssh), and the workload the
//! tests apply. They need root and the lab's host tools; without root each
//! test says so and returns.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8sup_engine::{
    Content, DesiredState, Guard, ResolvedRollout, Resource, Rollout, Sessions, TemplateContext,
};
use k8sup_lab::{Lab, LabInfo, UpOptions};
use k8sup_ssh::{ConnectSpec, HostKeyPolicy, Session, Sudo};
use serde_json::json;

/// The lab tests share the machine's two cores with other work: one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The lab tests boot machines: without root they fail loudly rather than
/// pass without having run.
pub fn require_root() {
    assert!(
        is_root(),
        "the engine's lab tests boot machines and need root: run them as root (see README, Test)"
    );
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A lab, taken down on drop.
pub struct TestLab {
    pub lab: Lab,
    pub info: LabInfo,
    /// Taken down on drop (false for a child process using the parent's lab).
    owned: bool,
}

impl TestLab {
    pub fn up(name: &str, nodes: usize) -> TestLab {
        let lab = Lab::new(name);
        if lab.exists() {
            let _ = lab.down();
        }
        let info = lab
            .up(&UpOptions {
                nodes,
                ..Default::default()
            })
            .expect("lab up");
        TestLab {
            lab,
            info,
            owned: true,
        }
    }

    /// Use an existing lab without taking it down on drop.
    pub fn attach(name: &str) -> TestLab {
        let lab = Lab::open(name).expect("lab exists");
        let info = lab.info().expect("lab info");
        TestLab {
            lab,
            info,
            owned: false,
        }
    }

    pub fn hosts(&self) -> Vec<String> {
        self.info.machines.iter().map(|m| m.name.clone()).collect()
    }

    pub fn spec(&self, host: &str) -> ConnectSpec {
        let m = self
            .info
            .machines
            .iter()
            .find(|m| m.name == host)
            .expect("machine");
        let mut spec = ConnectSpec::new(host, m.address.to_string());
        spec.user = Some("root".into());
        spec.port = Some(22);
        spec.identity_files = vec![self.info.identity_file.clone()];
        spec.known_hosts_files = vec![self.info.known_hosts.clone()];
        spec.use_agent = false;
        spec.use_ssh_config = false;
        spec.host_key_policy = HostKeyPolicy::Strict;
        spec.sudo = Sudo::Never;
        spec
    }

    pub async fn sessions(&self) -> Sessions {
        let mut out = Sessions::new();
        for h in self.hosts() {
            out.insert(
                h.clone(),
                Session::connect(&self.spec(&h)).await.expect("connect"),
            );
        }
        out
    }

    /// Run `cmd` on `host` with OpenSSH, expecting success; its stdout, trimmed.
    pub fn sh(&self, host: &str, cmd: &str) -> String {
        let out = self
            .lab
            .ssh_command(host)
            .expect("ssh command")
            .arg(cmd)
            .output()
            .expect("run ssh");
        assert!(
            out.status.success(),
            "{host}: `{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if self.owned
            && std::env::var_os("ENG_KEEP_LAB").is_none()
            && let Err(e) = self.lab.down()
        {
            eprintln!("taking lab {} down failed: {e:#}", self.lab.name());
        }
    }
}

/// A local file of `mb` MiB of pseudo-random bytes seeded by `seed`.
pub fn blob(dir: &Path, name: &str, mb: usize, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    let mut data = Vec::with_capacity(mb << 20);
    while data.len() < mb << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&path, &data).expect("write blob");
    path
}

pub const ROOT: &str = "/srv/eng";
pub const UNIT: &str = "eng-demo.service";

pub const APP_CONF: &str = "# {{ host.name }}\nport={{ vars.port }}\n";
pub const PEERS_CONF: &str =
    "{% for h in inventory.hosts %}peer {{ h.name }} {{ h.address }}\n{% endfor %}";
pub const NODE_CONF: &str = "name={{ host.name }}\naddress={{ host.address }}\n";

/// The benchmark workload of issue 3, per host: two directories, a binary,
/// three configs from templates listing every host, a unit, the service
/// enabled and running and restarted when any of them change, a guarded
/// command and a symlink.
pub fn workload(lab: &TestLab, binary: &Path, ports: &BTreeMap<String, u16>) -> Rollout {
    workload_with_unit_lines(lab, binary, ports, "")
}

/// [`workload`] with `extra` lines in the unit's `[Service]` section.
pub fn workload_with_unit_lines(
    lab: &TestLab,
    binary: &Path,
    ports: &BTreeMap<String, u16>,
    extra: &str,
) -> Rollout {
    let hosts: Vec<serde_json::Value> = lab
        .info
        .machines
        .iter()
        .map(|m| json!({"name": m.name, "address": m.address.to_string()}))
        .collect();
    let inventory = json!({ "hosts": hosts });
    let mut states = Vec::new();
    for m in &lab.info.machines {
        let host = json!({"name": m.name, "address": m.address.to_string()});
        let vars = json!({"port": ports.get(&m.name).copied().unwrap_or(8080)});
        let svc = format!("service:{UNIT}");
        let st = DesiredState::new(&m.name)
            .with_context(TemplateContext::new(&host, &vars, &inventory))
            .with(Resource::directory(format!("{ROOT}/demo")).mode(0o755))
            .with(Resource::directory(format!("{ROOT}/demo/conf.d")).mode(0o750))
            .with(Resource::binary(format!("{ROOT}/demo/demo-bin"), binary).mode(0o755).notify(svc.as_str()))
            .with(
                Resource::file(format!("{ROOT}/demo/conf.d/app.conf"), Content::template("app.conf.j2", APP_CONF))
                    .notify(svc.as_str()),
            )
            .with(
                Resource::file(format!("{ROOT}/demo/conf.d/peers.conf"), Content::template("peers.conf.j2", PEERS_CONF))
                    .notify(svc.as_str()),
            )
            .with(
                Resource::file(format!("{ROOT}/demo/conf.d/node.conf"), Content::template("node.conf.j2", NODE_CONF))
                    .mode(0o640)
                    .notify(svc.as_str()),
            )
            .with(Resource::symlink(format!("{ROOT}/demo/current"), format!("{ROOT}/demo/demo-bin")))
            .with(Resource::unit(
                UNIT,
                Content::text(format!(
                    "[Unit]\nDescription=k8sup engine test service\n\n[Service]\nExecStart=/bin/sh -c 'while :; do sleep 3600; done'\n{extra}\n[Install]\nWantedBy=multi-user.target\n",
                )),
            ))
            .with(Resource::service(UNIT))
            .with(
                Resource::command(
                    "initialize",
                    format!("date +%s%N > {ROOT}/demo/initialized"),
                    Guard::Creates(format!("{ROOT}/demo/initialized")),
                )
                .depends_on(format!("dir:{ROOT}/demo").as_str()),
            );
        states.push(st);
    }
    Rollout::single("demo", states)
}

/// mtimes (ns) of every managed path and the service's start time, for "touched nothing" checks.
pub fn footprint(lab: &TestLab, host: &str) -> String {
    lab.sh(
        host,
        &format!(
            "stat -c '%n %.9Y %.9Z %i' {ROOT}/demo {ROOT}/demo/conf.d {ROOT}/demo/demo-bin {ROOT}/demo/conf.d/*.conf {ROOT}/demo/initialized /etc/systemd/system/{UNIT}; \
             stat -L -c '%n %.9Y' {ROOT}/demo/current; systemctl show -p ActiveEnterTimestampMonotonic {UNIT}"
        ),
    )
}

pub fn service_started_at(lab: &TestLab, host: &str) -> String {
    lab.sh(
        host,
        &format!("systemctl show -p ActiveEnterTimestampMonotonic --value {UNIT}"),
    )
}

/// A lab with the demo workload resolved for it: where most end-to-end
/// tests start. The demo binary lives in the lab's directory, so it lasts
/// as long as the lab.
pub struct Demo {
    pub sessions: Sessions,
    pub desired: ResolvedRollout,
    pub hosts: Vec<String>,
    pub bin: PathBuf,
    pub lab: TestLab,
}

impl Demo {
    /// `nodes` machines for the lab `name`, and a `mb` MiB demo binary made from `seed`.
    pub async fn up(name: &str, nodes: usize, mb: usize, seed: u64) -> Demo {
        let lab = TestLab::up(name, nodes);
        let dir = lab
            .info
            .inventory
            .parent()
            .expect("the lab has a directory");
        let bin = blob(dir, "demo-bin", mb, seed);
        let sessions = lab.sessions().await;
        let desired = workload(&lab, &bin, &BTreeMap::new())
            .resolve()
            .await
            .unwrap();
        Demo {
            sessions,
            desired,
            hosts: lab.hosts(),
            bin,
            lab,
        }
    }
}

/// Slows uploads down (as a slow link would) and says when the first bytes left.
pub struct SlowUploads {
    pub pause: std::time::Duration,
    pub announce: bool,
    pub said: std::sync::atomic::AtomicBool,
}

impl k8sup_engine::Progress for SlowUploads {
    fn event(&self, e: k8sup_engine::Event<'_>) {
        if let k8sup_engine::Event::Upload { sent, total, .. } = e
            && sent < total
        {
            if self.announce && !self.said.swap(true, std::sync::atomic::Ordering::SeqCst) {
                println!("UPLOADING");
                use std::io::Write;
                let _ = std::io::stdout().flush();
            }
            std::thread::sleep(self.pause);
        }
    }
}

/// The path of a helper program of these tests (`tests/helpers/`, built by
/// `cargo test` and `cargo build --all-targets` as an example of this crate).
pub fn helper(name: &str) -> PathBuf {
    // A test binary runs from target/PROFILE/deps; examples are in target/PROFILE/examples.
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/PROFILE")
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p k8sup-engine --examples`",
        path.display()
    );
    path
}
