//! Test harness: real OpenSSH servers on loopback, and client keys/files for them.
//!
//! Each [`Sshd`] is `/usr/sbin/sshd -D -e -f CONFIG` run as a child process on a
//! free port of a loopback address (127.0.0.2, 127.0.0.3, ...), with its own host
//! keys, authorized_keys and config in a temp dir. It is killed on drop.
//! Needs root (sshd privilege separation) and the `openssh-server` and `sudo`
//! packages; tests call [`require_tools`] and fail with a clear message otherwise.
#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8sup_ssh::{ConnectSpec, HostKeyPolicy, Sudo};

pub const SSHD: &str = "/usr/sbin/sshd";

/// Fail early, with the fix, when the machine lacks what the tests need.
pub fn require_tools() {
    for tool in [SSHD, "/usr/bin/ssh-keygen", "/usr/bin/sudo"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: install it with `apt-get install -y openssh-server openssh-client sudo`"
        );
    }
    std::fs::create_dir_all("/run/sshd")
        .expect("create /run/sshd (sshd privilege separation dir; run tests as root)");
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ssh-keygen -t TYPE -N PASSPHRASE -f PATH`.
pub fn keygen(path: &Path, kind: &str, passphrase: &str) -> PathBuf {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", passphrase, "-C", "k8sup-test", "-f"])
        .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    run(&mut cmd);
    path.to_path_buf()
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A free TCP port on `addr` (bound then released; sshd takes it right after).
fn free_port(addr: &str) -> u16 {
    TcpListener::bind((addr, 0))
        .expect("bind a loopback port")
        .local_addr()
        .unwrap()
        .port()
}

/// What the server should present as host keys.
#[derive(Default, Clone)]
pub struct SshdOptions {
    /// Also offer an RSA host key (besides ed25519).
    pub rsa_host_key: bool,
    /// Offer only an RSA host key.
    pub rsa_only: bool,
    /// Present a host certificate signed by this CA private key, for these principals.
    pub host_cert: Option<(PathBuf, Vec<String>)>,
    /// sshd `LogLevel` (default VERBOSE); DEBUG1 shows forwarded connections.
    pub log_level: Option<&'static str>,
    /// Extra sshd_config lines.
    pub extra_config: String,
}

pub struct Sshd {
    pub addr: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl Sshd {
    pub fn start(addr: &str) -> Sshd {
        Sshd::start_with(addr, SshdOptions::default())
    }

    pub fn start_with(addr: &str, opts: SshdOptions) -> Sshd {
        require_tools();
        let dir = tempfile::Builder::new()
            .prefix("k8sup-sshd-")
            .tempdir()
            .unwrap();
        // sshd reads authorized_keys as the login user: the tree must be traversable.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        let ed = d.join("ssh_host_ed25519_key");
        let rsa = d.join("ssh_host_rsa_key");
        keygen(&ed, "ed25519", "");
        if opts.rsa_host_key || opts.rsa_only {
            keygen(&rsa, "rsa", "");
        }
        let mut host_keys = Vec::new();
        if !opts.rsa_only {
            host_keys.push(format!("HostKey {}", ed.display()));
        }
        if (opts.rsa_host_key || opts.rsa_only) && rsa.exists() {
            host_keys.push(format!("HostKey {}", rsa.display()));
        }
        if let Some((ca, principals)) = &opts.host_cert {
            run(Command::new("ssh-keygen")
                .args(["-q", "-s"])
                .arg(ca)
                .args([
                    "-I",
                    "test-host",
                    "-h",
                    "-n",
                    &principals.join(","),
                    "-V",
                    "-5m:+1h",
                ])
                .arg(ed.with_extension("pub")));
            host_keys.push(format!(
                "HostCertificate {}",
                d.join("ssh_host_ed25519_key-cert.pub").display()
            ));
        }
        let auth_dir = d.join("authorized_keys");
        std::fs::create_dir_all(&auth_dir).unwrap();
        std::fs::set_permissions(&auth_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let port = free_port(addr);
        let config = format!(
            "ListenAddress {addr}:{port}\n{}\nPidFile none\nUsePAM no\nStrictModes no\n\
             AuthorizedKeysFile {}/%u\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nAllowTcpForwarding yes\n\
             MaxStartups 100\nLogLevel {}\n",
            host_keys.join("\n"),
            auth_dir.display(),
            opts.log_level.unwrap_or("VERBOSE"),
        ) + &opts.extra_config;
        let config_path = d.join("sshd_config");
        std::fs::write(&config_path, config).unwrap();
        let child = spawn_sshd(d);
        let sshd = Sshd {
            addr: addr.to_string(),
            port,
            dir,
            child,
        };
        sshd.wait_ready();
        sshd
    }

    /// Simulate a reinstalled machine: new host keys, same address, port and users.
    pub fn reinstall(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let d = self.dir.path();
        for kind in ["ed25519", "rsa"] {
            let key = d.join(format!("ssh_host_{kind}_key"));
            if key.exists() {
                std::fs::remove_file(&key).unwrap();
                std::fs::remove_file(key.with_extension("pub")).unwrap();
                keygen(&key, kind, "");
            }
        }
        self.child = spawn_sshd(d);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect((self.addr.as_str(), self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "sshd on {}:{} did not start; log:\n{}",
            self.addr,
            self.port,
            self.log()
        );
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Let `user` log in with the public half of `key`.
    pub fn authorize(&self, user: &str, key: &Path) {
        let pubkey = read(&PathBuf::from(format!("{}.pub", key.display())));
        let file = self.dir.path().join("authorized_keys").join(user);
        let mut text = std::fs::read_to_string(&file).unwrap_or_default();
        text.push_str(&pubkey);
        std::fs::write(&file, text).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    /// `ssh-keygen` public key text of the server's host key (`type base64 comment`).
    pub fn host_key_pub(&self, kind: &str) -> String {
        read(&self.dir.path().join(format!("ssh_host_{kind}_key.pub")))
    }

    /// The name OpenSSH looks up in known_hosts for this server.
    pub fn lookup(&self) -> String {
        format!("[{}]:{}", self.addr, self.port)
    }

    /// A known_hosts line for the server's key of `kind`.
    pub fn known_hosts_line(&self, kind: &str) -> String {
        let key = self.host_key_pub(kind);
        let mut parts = key.split_whitespace();
        format!(
            "{} {} {}\n",
            self.lookup(),
            parts.next().unwrap(),
            parts.next().unwrap()
        )
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_sshd(dir: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("sshd.log"))
        .unwrap();
    Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn sshd")
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Client-side files for a test: keys, known_hosts, ssh_config, in one temp dir.
pub struct Client {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
}

impl Client {
    pub fn new() -> Client {
        let dir = tempfile::Builder::new()
            .prefix("k8sup-client-")
            .tempdir()
            .unwrap();
        let key = keygen(&dir.path().join("id_ed25519"), "ed25519", "");
        let known_hosts = dir.path().join("known_hosts");
        Client {
            dir,
            key,
            known_hosts,
        }
    }

    /// Record the server's ed25519 key (plain entry).
    pub fn trust(&self, sshd: &Sshd) {
        self.append_known_hosts(&sshd.known_hosts_line("ed25519"));
    }

    pub fn append_known_hosts(&self, line: &str) {
        let mut text = std::fs::read_to_string(&self.known_hosts).unwrap_or_default();
        text.push_str(line);
        std::fs::write(&self.known_hosts, text).unwrap();
    }

    /// A spec for `sshd` as `user`, with only this client's files (never the real ~/.ssh).
    pub fn spec(&self, sshd: &Sshd, user: &str) -> ConnectSpec {
        let mut spec = ConnectSpec::new(format!("node-{}", sshd.addr), sshd.addr.clone());
        spec.port = Some(sshd.port);
        spec.user = Some(user.to_string());
        spec.identity_files = vec![self.key.clone()];
        spec.use_agent = false;
        spec.use_ssh_config = false;
        spec.known_hosts_files = vec![self.known_hosts.clone()];
        spec.host_key_policy = HostKeyPolicy::Strict;
        spec.sudo = Sudo::Passwordless;
        spec.connect_timeout = Duration::from_secs(5);
        spec.retries = 0;
        spec
    }
}

/// Create (once) a local user who can log in by key, with the given sudo rights.
/// `sudo_password: None` means NOPASSWD sudo; `Some(pw)` means sudo asks for `pw`.
/// `sudo_rights: false` creates a user with no sudo rights at all.
pub fn ensure_user(name: &str, sudo_rights: bool, sudo_password: Option<&str>) {
    let exists = Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !exists {
        run(Command::new("useradd").args(["-m", "-s", "/bin/sh", name]));
    }
    // With UsePAM no, sshd refuses locked accounts ("!" password): set a real one or "*".
    match sudo_password {
        Some(pw) => {
            let mut child = Command::new("chpasswd")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{name}:{pw}\n").as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
        }
        None => {
            run(Command::new("usermod").args(["-p", "*", name]));
        }
    }
    let sudoers = PathBuf::from(format!("/etc/sudoers.d/k8sup-test-{name}"));
    if sudo_rights {
        let rule = match sudo_password {
            None => format!("{name} ALL=(ALL) NOPASSWD: ALL\n"),
            Some(_) => format!("{name} ALL=(ALL) ALL\n"),
        };
        std::fs::write(&sudoers, rule).unwrap();
        std::fs::set_permissions(&sudoers, std::fs::Permissions::from_mode(0o440)).unwrap();
    } else {
        let _ = std::fs::remove_file(&sudoers);
    }
}
