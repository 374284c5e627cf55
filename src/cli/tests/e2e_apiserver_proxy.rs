//! `k8sup-apiserver-proxy` as systemd runs it on a worker, from the unit
//! template, forwarding over the lab network to two "control planes" and
//! failing over when the one in use is powered off (its address stops
//! answering: the connect times out, nothing refuses it).
//!
//! The upstreams are the control planes' sshd (port 22): what answers
//! through the proxy is identified by its host key (`ssh-keyscan`), so no
//! stand-in server is needed on the machines. The proxy binary is the one
//! the workspace build put beside `k8sup` (`tests/run-all.sh` builds every
//! target first).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestLab;

const UNIT: &str = include_str!("../../../templates/k8sup-apiserver-proxy.service");
const BIN: &str = "/usr/local/bin/k8sup-apiserver-proxy";
const CONFIG: &str = "/etc/k8sup/apiserver-proxy.json";

fn proxy_binary() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_k8sup")).with_file_name("k8sup-apiserver-proxy");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p k8sup-apiserver-proxy, or tests/run-all.sh)",
        bin.display()
    );
    bin
}

/// Run `cmd` as root on machine `i` with `input` on its stdin.
fn root_with_input(lab: &TestLab, i: usize, cmd: &str, input: &[u8]) {
    let mut child = Command::new("ssh")
        .args(["-i", lab.info.identity_file.to_str().unwrap()])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            lab.info.known_hosts.display()
        ))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg(format!("root@{}", lab.address(i)))
        .arg(cmd)
        .stdin(Stdio::piped())
        .spawn()
        .expect("run ssh");
    child.stdin.take().unwrap().write_all(input).unwrap();
    assert!(
        child.wait().unwrap().success(),
        "on {}: `{cmd}` failed",
        lab.node(i)
    );
}

/// Machine `i`'s ed25519 host key (base64), as sshd presents it.
fn host_key(lab: &TestLab, i: usize) -> String {
    let line = lab.root(i, "cat /etc/ssh/ssh_host_ed25519_key.pub");
    line.split_whitespace().nth(1).unwrap().to_string()
}

/// The host key of whatever answers on the worker's 127.0.0.1:6443.
fn through_proxy(lab: &TestLab, worker: usize) -> String {
    let out = lab.root(
        worker,
        "ssh-keyscan -T 5 -t ed25519 -p 6443 127.0.0.1 2>/dev/null || true",
    );
    out.split_whitespace().nth(2).unwrap_or("").to_string()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    // Patience for a loaded machine, not a speed bound.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_proxy_service_fails_over_when_a_control_plane_is_powered_off() {
    let bin = std::fs::read(proxy_binary()).unwrap();
    let lab = TestLab::up("apxy", 3);
    let worker = 2;
    let (cp1, cp2) = (lab.address(0), lab.address(1));

    root_with_input(
        &lab,
        worker,
        &format!("mkdir -p /usr/local/bin /etc/k8sup && cat > {BIN} && chmod 755 {BIN}"),
        &bin,
    );
    let unit = UNIT
        .replace("{{ bin }}", BIN)
        .replace("{{ config }}", CONFIG);
    root_with_input(
        &lab,
        worker,
        "cat > /etc/systemd/system/k8sup-apiserver-proxy.service",
        unit.as_bytes(),
    );
    let config = serde_json::json!({
        "upstreams": [format!("{cp1}:22"), format!("{cp2}:22")],
        "connectTimeoutMs": 1000,
        "healthCheck": {"intervalMs": 500, "timeoutMs": 1000, "fall": 2, "rise": 2},
    });
    root_with_input(
        &lab,
        worker,
        &format!("cat > {CONFIG} && chmod 644 {CONFIG}"),
        config.to_string().as_bytes(),
    );
    lab.root(
        worker,
        "systemctl daemon-reload && systemctl start k8sup-apiserver-proxy",
    );
    // DynamicUser, the syscall filter and the other hardening let it run.
    assert_eq!(
        lab.root(worker, "systemctl is-active k8sup-apiserver-proxy")
            .trim(),
        "active"
    );

    let (key1, key2) = (host_key(&lab, 0), host_key(&lab, 1));
    assert_ne!(key1, key2);
    wait_until("the first control plane through the proxy", || {
        through_proxy(&lab, worker) == key1
    });

    // Power the first one off: its address goes silent.
    lab.lab.stop(&lab.node(0)).unwrap();
    wait_until("the second control plane through the proxy", || {
        through_proxy(&lab, worker) == key2
    });
    let journal = lab.root(
        worker,
        "journalctl -u k8sup-apiserver-proxy --no-pager -o cat",
    );
    assert!(
        journal
            .lines()
            .any(|l| l.contains("upstream is down") && l.contains(&format!("upstream={cp1}:22"))),
        "{journal}"
    );

    // A crash: systemd restarts it, and it serves again.
    lab.root(
        worker,
        "kill -9 $(systemctl show -p MainPID --value k8sup-apiserver-proxy)",
    );
    wait_until("restarted and forwarding", || {
        through_proxy(&lab, worker) == key2
    });
    let restarts = lab.root(
        worker,
        "systemctl show -p NRestarts --value k8sup-apiserver-proxy",
    );
    assert_eq!(restarts.trim(), "1");

    // The first one boots again: new connections go back to it.
    lab.lab.start(&lab.node(0)).unwrap();
    wait_until("back on the first control plane", || {
        through_proxy(&lab, worker) == key1
    });
}
