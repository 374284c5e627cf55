//! Shared test harness: a throw-away PKI, free loopback ports, clusters of
//! real `k8sup-datastore` processes, etcd 3.6 from the artifacts mirror (the
//! oracle), and the real `etcdctl`.
#![allow(dead_code)]

pub mod netns;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Debian's etcdctl 3.4 (etcd-client): the etcdctl suite also checks that
/// an older client works.
pub const ETCDCTL: &str = "/usr/bin/etcdctl";

/// The k8sup-datastore binary under test: cargo's, or `K8SUP_DATASTORE_BIN`
/// (cargo puts binaries at one path per target directory, which checkouts
/// sharing a `CARGO_TARGET_DIR` overwrite in turn).
pub fn datastore_bin() -> String {
    std::env::var("K8SUP_DATASTORE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_k8sup-datastore").to_string())
}

/// etcd 3.6 (the oracle): `K8SUP_ETCD_DIR`, else the artifacts mirror's
/// (`K8SUP_MIRROR`, else `tests/artifacts/build.sh`); panics saying so when
/// neither is there.
pub fn etcd_bin() -> PathBuf {
    k8sup_testbed::etcd_dir().join("etcd")
}

/// CA, a server/peer certificate for 127.0.0.1 and a client certificate, as PEM files.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from a different CA: must be refused.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let cert = p.self_signed(&key).unwrap();
    (p, key, cert.pem())
}

fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, server: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = if server {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let (ca_params, ca_key, ca_pem) = ca("k8sup-datastore test CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let (s_pem, s_key) = leaf(&issuer, "member", true);
        let (c_pem, c_key) = leaf(&issuer, "client", false);
        let (r_params, r_key, _) = ca("rogue CA");
        let rogue = Issuer::new(r_params, r_key);
        let (r_pem, r_keypem) = leaf(&rogue, "rogue", false);
        let w = |name: &str, data: &str| {
            let p = dir.join(name);
            std::fs::write(&p, data).unwrap();
            p
        };
        Pki {
            dir: dir.to_path_buf(),
            ca: w("ca.pem", &ca_pem),
            server_cert: w("server.pem", &s_pem),
            server_key: w("server-key.pem", &s_key),
            client_cert: w("client.pem", &c_pem),
            client_key: w("client-key.pem", &c_key),
            rogue_cert: w("rogue.pem", &r_pem),
            rogue_key: w("rogue-key.pem", &r_keypem),
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; the OS does not hand
/// it out again immediately).
/// A port no one listens on, and never one this process handed out
/// before: the kernel may return a just-released port again, and a
/// cluster's ports are all chosen before its members bind them (two members
/// once got the same metrics port, and one failed to start).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

pub struct MemberProc {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub metrics_port: u16,
    pub data_dir: PathBuf,
    pub child: Option<Child>,
    pub args: Vec<String>,
    /// The address it listens on: 127.0.0.1, or its own in a network namespace.
    pub host: String,
    /// The network namespace it runs in (see [`netns::NetLab`]), if any.
    pub netns: Option<String>,
}

impl MemberProc {
    fn new(name: &str, data_dir: PathBuf) -> MemberProc {
        MemberProc {
            name: name.into(),
            client_port: free_port(),
            peer_port: free_port(),
            metrics_port: free_port(),
            data_dir,
            child: None,
            args: Vec::new(),
            host: "127.0.0.1".into(),
            netns: None,
        }
    }
    pub fn client_url(&self, tls: bool) -> String {
        format!(
            "{}://{}:{}",
            if tls { "https" } else { "http" },
            self.host,
            self.client_port
        )
    }
    pub fn peer_url(&self, tls: bool) -> String {
        format!(
            "{}://{}:{}",
            if tls { "https" } else { "http" },
            self.host,
            self.peer_port
        )
    }
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.data_dir.with_extension("log")).unwrap();
        let bin = datastore_bin();
        let bin = bin.as_str();
        // `ip netns exec` execs the binary: the child's PID is the member's.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, bin]);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning k8sup-datastore");
        self.child = Some(child);
    }
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    /// SIGTERM and wait: the graceful path.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
            panic!("member {} did not stop within 10 s of SIGTERM", self.name);
        }
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.with_extension("log")).unwrap_or_default()
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

impl Drop for MemberProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub pki: Option<Pki>,
    pub members: Vec<MemberProc>,
    pub token: String,
    pub snapshot_count: u64,
    pub catchup_entries: u64,
    pub extra_args: Vec<String>,
}

pub struct Opts {
    pub tls: bool,
    pub snapshot_count: u64,
    pub catchup_entries: u64,
    /// More flags for every member (e.g. `--quota-backend-bytes=...`).
    pub extra_args: Vec<String>,
    /// Run member i in `netlab`'s namespace i, on its address.
    pub netlab: Option<std::sync::Arc<netns::NetLab>>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            tls: true,
            snapshot_count: 10000,
            catchup_entries: 5000,
            extra_args: Vec::new(),
            netlab: None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn member_args(
    m: &MemberProc,
    tls: bool,
    pki: Option<&Pki>,
    initial_cluster: &str,
    state: &str,
    token: &str,
    snapshot_count: u64,
    catchup: u64,
) -> Vec<String> {
    let mut a = vec![
        format!("--name={}", m.name),
        format!("--data-dir={}", m.data_dir.display()),
        format!("--listen-client-urls={}", m.client_url(tls)),
        format!("--advertise-client-urls={}", m.client_url(tls)),
        format!("--listen-peer-urls={}", m.peer_url(tls)),
        format!("--initial-advertise-peer-urls={}", m.peer_url(tls)),
        format!("--initial-cluster={initial_cluster}"),
        format!("--initial-cluster-state={state}"),
        format!("--initial-cluster-token={token}"),
        format!("--listen-metrics-urls=http://127.0.0.1:{}", m.metrics_port),
        "--heartbeat-interval=50".into(),
        "--election-timeout=500".into(),
        format!("--snapshot-count={snapshot_count}"),
        format!("--experimental-snapshot-catchup-entries={catchup}"),
        "--log-level=info".into(),
    ];
    if tls {
        let p = pki.unwrap();
        for (flag, path) in [
            ("cert-file", &p.server_cert),
            ("key-file", &p.server_key),
            ("trusted-ca-file", &p.ca),
            ("peer-cert-file", &p.server_cert),
            ("peer-key-file", &p.server_key),
            ("peer-trusted-ca-file", &p.ca),
        ] {
            a.push(format!("--{flag}={}", path.display()));
        }
    } else {
        a.push("--insecure".into());
    }
    a
}

impl Cluster {
    pub fn start(n: usize, opts: Opts) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let pki = opts.tls.then(|| Pki::new(&dir.path().join("pki")));
        let token = format!("test-{}", free_port());
        let mut members: Vec<MemberProc> = (0..n)
            .map(|i| {
                let mut m = MemberProc::new(&format!("m{i}"), dir.path().join(format!("m{i}")));
                if let Some(lab) = &opts.netlab {
                    m.host = lab.ip(i);
                    m.netns = Some(lab.ns(i));
                }
                m
            })
            .collect();
        let initial: Vec<String> = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url(opts.tls)))
            .collect();
        let initial = initial.join(",");
        for m in &mut members {
            m.args = member_args(
                m,
                opts.tls,
                pki.as_ref(),
                &initial,
                "new",
                &token,
                opts.snapshot_count,
                opts.catchup_entries,
            );
            m.args.extend(opts.extra_args.iter().cloned());
            m.start();
        }
        let c = Cluster {
            dir,
            pki,
            members,
            token,
            snapshot_count: opts.snapshot_count,
            catchup_entries: opts.catchup_entries,
            extra_args: opts.extra_args,
        };
        c.wait_healthy(Duration::from_secs(30));
        c
    }

    pub fn tls(&self) -> bool {
        self.pki.is_some()
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url(self.tls()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs the real etcdctl against `endpoints` with the test client certificate.
    pub fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Output {
        let mut cmd = Command::new(ETCDCTL);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("--command-timeout=10s");
        if let Some(p) = &self.pki {
            cmd.arg(format!("--cacert={}", p.ca.display()))
                .arg(format!("--cert={}", p.client_cert.display()))
                .arg(format!("--key={}", p.client_key.display()));
        }
        cmd.args(args).output().expect("running etcdctl")
    }

    pub fn etcdctl(&self, args: &[&str]) -> Output {
        self.etcdctl_at(&self.endpoints(), args)
    }

    /// etcdctl that must succeed; returns stdout.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.etcdctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let out = self.etcdctl(&["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            if Instant::now() > deadline {
                for m in &self.members {
                    eprintln!("---- log of {} ----\n{}", m.name, m.log());
                }
                panic!(
                    "cluster not healthy within {within:?}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Index of the current leader (from `endpoint status`).
    pub fn leader_index(&self) -> Option<usize> {
        for (i, m) in self.members.iter().enumerate() {
            if m.child.is_none() {
                continue;
            }
            let out = self.etcdctl_at(
                &m.client_url(self.tls()),
                &["endpoint", "status", "-w", "json"],
            );
            if !out.status.success() {
                continue;
            }
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let st = &v[0]["Status"];
            let leader = st["leader"].as_u64()?;
            let me = st["header"]["member_id"].as_u64()?;
            if leader == me {
                return Some(i);
            }
        }
        None
    }

    /// Adds a new member process (not started) for `member add`.
    pub fn new_member(&mut self, name: &str) -> usize {
        let m = MemberProc::new(name, self.dir.path().join(name));
        self.members.push(m);
        self.members.len() - 1
    }

    /// Starts member `i` joining the existing cluster.
    pub fn join(&mut self, i: usize) {
        let tls = self.tls();
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url(tls)))
            .collect();
        let mut args = member_args(
            &self.members[i],
            tls,
            self.pki.as_ref(),
            &initial.join(","),
            "existing",
            &self.token,
            self.snapshot_count,
            self.catchup_entries,
        );
        args.extend(self.extra_args.iter().cloned());
        self.members[i].args = args;
        self.members[i].start();
    }
}

/// etcd 3.6 as a single plaintext member, for differential tests.
pub struct Etcd {
    pub dir: tempfile::TempDir,
    pub client_port: u16,
    child: Child,
}

impl Etcd {
    pub fn start() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let client_port = free_port();
        let peer_port = free_port();
        let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
        let bin = etcd_bin();
        let child = Command::new(&bin)
            .args([
                "--name=ref",
                &format!("--data-dir={}", dir.path().join("data").display()),
                &format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
                &format!("--initial-cluster=ref=http://127.0.0.1:{peer_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
        let e = Etcd {
            dir,
            client_port,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = Command::new(ETCDCTL)
                .env("ETCDCTL_API", "3")
                .args([
                    &format!("--endpoints=http://127.0.0.1:{client_port}"),
                    "endpoint",
                    "health",
                ])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            if ok {
                return e;
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tonic channel to `url`, with the test client certificate when https.
pub async fn channel(url: &str, pki: Option<&Pki>) -> tonic::transport::Channel {
    let mut ep = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .timeout(Duration::from_secs(15));
    if let Some(p) = pki {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(
                std::fs::read(&p.ca).unwrap(),
            ))
            .identity(tonic::transport::Identity::from_pem(
                std::fs::read(&p.client_cert).unwrap(),
                std::fs::read(&p.client_key).unwrap(),
            ));
        ep = ep.tls_config(tls).unwrap();
    }
    ep.connect().await.unwrap()
}
