//! A real control plane on loopback: kube-apiserver, kube-controller-manager
//! and kube-scheduler of the mirror's Kubernetes, with kubeadm's flags and
//! `k8sup-pki`'s certificates, on a [`Store`](crate::Store).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use k8sup_pki::layout;

use crate::mirror::Mirror;
use crate::pki::TestPki;
use crate::process::{Proc, free_port, wait_for};

/// Flags a scenario tunes; everything else is as kubeadm sets it.
#[derive(Clone, Debug)]
pub struct ControlPlaneOpts {
    /// `--event-ttl`, e.g. `"15s"` (kubeadm leaves the default 1h).
    pub event_ttl: String,
    /// `--etcd-compaction-interval`, e.g. `"10s"` (default 5m).
    pub compaction_interval: String,
    /// Start kube-controller-manager and kube-scheduler too.
    pub controllers: bool,
    /// More kube-apiserver flags.
    pub apiserver_extra: Vec<String>,
}

impl Default for ControlPlaneOpts {
    fn default() -> Self {
        ControlPlaneOpts {
            event_ttl: "1h".into(),
            compaction_interval: "5m".into(),
            controllers: true,
            apiserver_extra: Vec::new(),
        }
    }
}

pub struct ControlPlane {
    pub port: u16,
    pub apiserver: Proc,
    pub controller_manager: Option<Proc>,
    pub scheduler: Option<Proc>,
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
}

impl ControlPlane {
    /// A port for the apiserver, chosen before the PKI (whose kubeconfigs
    /// name it) is issued.
    pub fn port() -> u16 {
        free_port()
    }

    /// Starts the components against `etcd_servers` (comma-separated URLs)
    /// and waits until `/readyz` answers ok.
    pub fn start(
        pki: &TestPki,
        port: u16,
        etcd_servers: &str,
        dir: &Path,
        opts: &ControlPlaneOpts,
    ) -> ControlPlane {
        let mirror = Mirror::get();
        let p = |path: &str| pki.path(0, path).display().to_string();
        let (ds_ca, ds_cert, ds_key) = pki.datastore_client();
        let mut args = vec![
            "--advertise-address=127.0.0.1".to_string(),
            // The `kubernetes` Service's endpoints may not be loopback.
            "--endpoint-reconciler-type=none".into(),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--etcd-servers={etcd_servers}"),
            format!("--etcd-cafile={}", ds_ca.display()),
            format!("--etcd-certfile={}", ds_cert.display()),
            format!("--etcd-keyfile={}", ds_key.display()),
            format!("--etcd-compaction-interval={}", opts.compaction_interval),
            format!("--event-ttl={}", opts.event_ttl),
            // Each Event gets a lease of its TTL plus this reuse window
            // (default 60 s); 1 s keeps expiry close to `--event-ttl`.
            "--lease-reuse-duration-seconds=1".into(),
            format!("--client-ca-file={}", p(layout::CA_CRT)),
            format!("--tls-cert-file={}", p(layout::APISERVER_CRT)),
            format!("--tls-private-key-file={}", p(layout::APISERVER_KEY)),
            format!(
                "--kubelet-client-certificate={}",
                p(layout::APISERVER_KUBELET_CLIENT_CRT)
            ),
            format!(
                "--kubelet-client-key={}",
                p(layout::APISERVER_KUBELET_CLIENT_KEY)
            ),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", p(layout::SA_PUB)),
            format!("--service-account-signing-key-file={}", p(layout::SA_KEY)),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            "--authorization-mode=Node,RBAC".into(),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--allow-privileged=true".into(),
            format!(
                "--requestheader-client-ca-file={}",
                p(layout::FRONT_PROXY_CA_CRT)
            ),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            format!(
                "--proxy-client-cert-file={}",
                p(layout::FRONT_PROXY_CLIENT_CRT)
            ),
            format!(
                "--proxy-client-key-file={}",
                p(layout::FRONT_PROXY_CLIENT_KEY)
            ),
            format!("--cert-dir={}", dir.join("apiserver-certs").display()),
            "--profiling=false".into(),
            "--v=2".into(),
        ];
        args.extend(opts.apiserver_extra.iter().cloned());
        let mut apiserver = Proc::new(
            &mirror.kube_binary("kube-apiserver"),
            args,
            dir.join("kube-apiserver.log"),
        );
        apiserver.start();
        let kubeconfig = pki.admin_conf();
        let mut cp = ControlPlane {
            port,
            apiserver,
            controller_manager: None,
            scheduler: None,
            kubectl: mirror.kube_binary("kubectl"),
            kubeconfig,
        };
        cp.wait_ready(Duration::from_secs(90));
        if opts.controllers {
            let cm_conf = p(layout::CONTROLLER_MANAGER_CONF);
            let mut cm = Proc::new(
                &mirror.kube_binary("kube-controller-manager"),
                vec![
                    format!("--kubeconfig={cm_conf}"),
                    format!("--authentication-kubeconfig={cm_conf}"),
                    format!("--authorization-kubeconfig={cm_conf}"),
                    "--bind-address=127.0.0.1".into(),
                    format!("--secure-port={}", free_port()),
                    format!("--client-ca-file={}", p(layout::CA_CRT)),
                    format!(
                        "--requestheader-client-ca-file={}",
                        p(layout::FRONT_PROXY_CA_CRT)
                    ),
                    format!("--cluster-signing-cert-file={}", p(layout::CA_CRT)),
                    format!("--cluster-signing-key-file={}", p(layout::CA_KEY)),
                    format!("--root-ca-file={}", p(layout::CA_CRT)),
                    format!("--service-account-private-key-file={}", p(layout::SA_KEY)),
                    "--use-service-account-credentials=true".into(),
                    "--controllers=*,bootstrapsigner,tokencleaner".into(),
                    "--leader-elect=false".into(),
                    "--v=2".into(),
                ],
                dir.join("kube-controller-manager.log"),
            );
            cm.start();
            let sched_conf = p(layout::SCHEDULER_CONF);
            let mut sched = Proc::new(
                &mirror.kube_binary("kube-scheduler"),
                vec![
                    format!("--kubeconfig={sched_conf}"),
                    format!("--authentication-kubeconfig={sched_conf}"),
                    format!("--authorization-kubeconfig={sched_conf}"),
                    "--bind-address=127.0.0.1".into(),
                    format!("--secure-port={}", free_port()),
                    "--leader-elect=false".into(),
                    "--v=2".into(),
                ],
                dir.join("kube-scheduler.log"),
            );
            sched.start();
            cp.controller_manager = Some(cm);
            cp.scheduler = Some(sched);
        }
        cp
    }

    /// kubectl with the cluster admin's kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(&self.kubectl)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--request-timeout=20s")
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// kubectl that must succeed: its stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl that must succeed, with `input` on its stdin (`apply -f -`).
    pub fn ctl_stdin(&self, args: &[&str], input: &str) -> String {
        use std::io::Write;
        let mut child = self
            .kubectl_command(args)
            .arg("--request-timeout=20s")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("running kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A kubectl that runs on: `kubectl get -w` and the like.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.kubectl);
        c.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args);
        c
    }

    /// Waits until `/readyz` says ok; panics with the apiserver's log if not.
    pub fn wait_ready(&mut self, within: Duration) {
        let ok = wait_for(within, || {
            if !self.apiserver.running() {
                return Some(false);
            }
            let out = self.kubectl(&["get", "--raw=/readyz"]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok")
                .then_some(true)
        });
        if ok != Some(true) {
            panic!(
                "kube-apiserver not ready within {within:?}:\n{}",
                self.apiserver.log_tail(60)
            );
        }
    }

    pub fn logs(&self) -> String {
        let mut s = format!("---- kube-apiserver ----\n{}", self.apiserver.log_tail(80));
        for (name, p) in [
            ("kube-controller-manager", &self.controller_manager),
            ("kube-scheduler", &self.scheduler),
        ] {
            if let Some(p) = p {
                s.push_str(&format!("\n---- {name} ----\n{}", p.log_tail(30)));
            }
        }
        s
    }
}
