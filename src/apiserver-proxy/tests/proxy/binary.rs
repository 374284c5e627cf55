//! The real binary, as systemd runs it: a temp config, SIGHUP, SIGTERM.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_k8sup-apiserver-proxy");

/// The binary's JSON log lines, as they come.
fn log_lines(child: &mut std::process::Child) -> mpsc::Receiver<serde_json::Value> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let v = serde_json::from_str(&line)
                .unwrap_or_else(|_| serde_json::json!({"fields": {"message": line}}));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    rx
}

/// Wait for a log line whose message is `message`.
fn expect_log(rx: &mpsc::Receiver<serde_json::Value>, message: &str) -> serde_json::Value {
    loop {
        let v = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("no log line {message:?}"));
        if v["fields"]["message"] == message {
            return v;
        }
    }
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[tokio::test]
async fn the_binary_forwards_reloads_on_sighup_refuses_a_broken_file_and_stops_on_sigterm() {
    let a = Tagged::start("A").await;
    let b = Tagged::start("B").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apiserver-proxy.json");
    write_config(&path, &tcp_config(&[a.addr], 200));

    let mut child = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "--log-format", "json"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = log_lines(&mut child);
    let started = expect_log(&logs, "listening");
    let listen: SocketAddr = started["fields"]["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(which(listen).await.0, "A");

    // In place, then SIGHUP (what `systemctl reload` does).
    std::fs::write(&path, tcp_config(&[b.addr], 200)).unwrap();
    signal(&child, "-HUP");
    let reloaded = expect_log(&logs, "configuration reloaded");
    assert_eq!(reloaded["fields"]["upstreams"], b.addr.to_string());
    assert_eq!(which(listen).await.0, "B");

    std::fs::write(&path, "{ not json").unwrap();
    signal(&child, "-HUP");
    let refused = expect_log(&logs, "configuration refused; the running one stays");
    let error = refused["fields"]["error"].as_str().unwrap();
    assert!(
        error.starts_with(&format!("{}: line 1", path.display())),
        "{error}"
    );
    assert_eq!(which(listen).await.0, "B");

    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn check_help_and_version_teach() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apiserver-proxy.json");
    std::fs::write(
        &path,
        r#"{"upstreams": ["10.0.0.11:6443"], "caFile": "/no/ca.crt"}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("{}: caFile /no/ca.crt", path.display())),
        "{err}"
    );

    std::fs::write(&path, r#"{"upstreams": ["10.0.0.11:6443"]}"#).unwrap();
    let out = Command::new(BIN)
        .args(["--check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("upstreams 10.0.0.11:6443, tcp check")
    );

    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    for s in [
        "--config <PATH>",
        "/etc/k8sup/apiserver-proxy.json",
        "\"upstreams\"",
        "/readyz",
        "SIGHUP",
    ] {
        assert!(help.contains(s), "--help lacks {s}:\n{help}");
    }
    let version = Command::new(BIN).arg("--version").output().unwrap();
    assert!(
        String::from_utf8(version.stdout)
            .unwrap()
            .starts_with("k8sup-apiserver-proxy 0.")
    );
}
