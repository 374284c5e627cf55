//! A 3-member store on loopback with mutual TLS: k8sup-datastore or etcd
//! 3.6, started with the same flags (the datastore takes etcd's names) and
//! the same `k8sup-pki` certificates, so a test or a benchmark runs one
//! scenario against either.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8sup_pki::layout;

use crate::pki::TestPki;
use crate::process::{Proc, disk_bytes, free_port, wait_for};

#[derive(Clone, Debug)]
pub enum StoreKind {
    /// The `k8sup-datastore` binary at this path.
    K8sup(PathBuf),
    /// etcd's release directory (`etcd`, `etcdctl`).
    Etcd(PathBuf),
}

impl StoreKind {
    pub fn name(&self) -> &'static str {
        match self {
            StoreKind::K8sup(_) => "k8sup-datastore",
            StoreKind::Etcd(_) => "etcd",
        }
    }
}

pub struct StoreMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub proc: Proc,
}

pub struct Store {
    pub kind: StoreKind,
    pub members: Vec<StoreMember>,
    /// etcd 3.6's etcdctl, for both stores.
    pub etcdctl: PathBuf,
    client: (PathBuf, PathBuf, PathBuf),
}

impl Store {
    /// Starts one member per control plane of `pki` under `dir` and waits
    /// until every member is healthy. `extra` flags go to every member.
    pub fn start(kind: StoreKind, pki: &TestPki, dir: &Path, extra: &[String]) -> Store {
        let etcdctl = crate::mirror::etcd_dir().join("etcdctl");
        let ports: Vec<(u16, u16, u16)> = (0..pki.members)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("m{i}=https://127.0.0.1:{}", p.1))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("testbed-{}", free_port());
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, &(client_port, peer_port, metrics_port))| {
                let name = format!("m{i}");
                let data_dir = dir.join(&name);
                let f = |p: &str| pki.path(i, p).display().to_string();
                let mut args = vec![
                    format!("--name={name}"),
                    format!("--data-dir={}", data_dir.display()),
                    format!("--listen-client-urls=https://127.0.0.1:{client_port}"),
                    format!("--advertise-client-urls=https://127.0.0.1:{client_port}"),
                    format!("--listen-peer-urls=https://127.0.0.1:{peer_port}"),
                    format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer_port}"),
                    format!("--initial-cluster={initial}"),
                    "--initial-cluster-state=new".into(),
                    format!("--initial-cluster-token={token}"),
                    format!("--listen-metrics-urls=http://127.0.0.1:{metrics_port}"),
                    format!("--cert-file={}", f(layout::DATASTORE_SERVER_CRT)),
                    format!("--key-file={}", f(layout::DATASTORE_SERVER_KEY)),
                    format!("--trusted-ca-file={}", f(layout::DATASTORE_CA_CRT)),
                    "--client-cert-auth=true".into(),
                    format!("--peer-cert-file={}", f(layout::DATASTORE_PEER_CRT)),
                    format!("--peer-key-file={}", f(layout::DATASTORE_PEER_KEY)),
                    format!("--peer-trusted-ca-file={}", f(layout::DATASTORE_CA_CRT)),
                    "--peer-client-cert-auth=true".into(),
                ];
                args.extend(extra.iter().cloned());
                let program = match &kind {
                    StoreKind::K8sup(bin) => bin.clone(),
                    StoreKind::Etcd(d) => d.join("etcd"),
                };
                StoreMember {
                    name,
                    client_port,
                    peer_port,
                    metrics_port,
                    data_dir: data_dir.clone(),
                    proc: Proc::new(&program, args, data_dir.with_extension("log")),
                }
            })
            .collect();
        let mut s = Store {
            kind,
            members,
            etcdctl,
            client: pki.datastore_client(),
        };
        for m in &mut s.members {
            m.proc.start();
        }
        s.wait_healthy(Duration::from_secs(60));
        s
    }

    /// Client URLs of every member (running or not), comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("https://127.0.0.1:{}", m.client_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// etcdctl (3.6) against `endpoints` with the apiserver's client certificate.
    pub fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Output {
        let (ca, cert, key) = &self.client;
        Command::new(&self.etcdctl)
            .arg(format!("--endpoints={endpoints}"))
            .arg(format!("--cacert={}", ca.display()))
            .arg(format!("--cert={}", cert.display()))
            .arg(format!("--key={}", key.display()))
            .arg("--command-timeout=10s")
            .args(args)
            .output()
            .expect("running etcdctl")
    }

    /// etcdctl against the running members.
    pub fn etcdctl(&mut self, args: &[&str]) -> Output {
        let eps = self.running_endpoints();
        self.etcdctl_at(&eps, args)
    }

    fn running_endpoints(&mut self) -> String {
        self.members
            .iter_mut()
            .filter_map(|m| {
                m.proc
                    .running()
                    .then(|| format!("https://127.0.0.1:{}", m.client_port))
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn wait_healthy(&mut self, within: Duration) {
        let ok = wait_for(within, || {
            self.etcdctl(&["endpoint", "health"])
                .status
                .success()
                .then_some(())
        });
        if ok.is_none() {
            let logs: Vec<String> = self
                .members
                .iter()
                .map(|m| format!("---- {} ----\n{}", m.name, m.proc.log_tail(40)))
                .collect();
            panic!(
                "{} members not healthy within {within:?}:\n{}",
                self.kind.name(),
                logs.join("\n")
            );
        }
    }

    /// The index of the member that is leader, by `endpoint status`.
    pub fn leader(&mut self) -> Option<usize> {
        for i in 0..self.members.len() {
            if !self.members[i].proc.running() {
                continue;
            }
            let out = self.etcdctl_at(
                &format!("https://127.0.0.1:{}", self.members[i].client_port),
                &["endpoint", "status", "-w", "json"],
            );
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                continue;
            };
            let st = &v[0]["Status"];
            if st["leader"].as_u64().is_some() && st["leader"] == st["header"]["member_id"] {
                return Some(i);
            }
        }
        None
    }

    pub fn kill9(&mut self, i: usize) {
        self.members[i].proc.kill9();
    }

    pub fn restart(&mut self, i: usize) {
        self.members[i].proc.start();
    }

    /// Resident memory of every member, KiB.
    pub fn rss_kib(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.proc.rss_kib()).collect()
    }

    /// Disk used by every member's data directory, bytes.
    pub fn disk_bytes(&self) -> Vec<u64> {
        self.members
            .iter()
            .map(|m| disk_bytes(&m.data_dir))
            .collect()
    }

    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("---- {} ----\n{}", m.name, m.proc.log_tail(60)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
