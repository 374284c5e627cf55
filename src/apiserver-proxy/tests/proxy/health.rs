//! The HTTPS `/readyz` check against a real TLS server whose certificate
//! the project's PKI signed.

use std::path::Path;
use std::sync::atomic::Ordering;

use k8sup_apiserver_proxy::{Config, Options, Proxy, State, probe};

use crate::common::*;

fn https_config(dir: &Path, upstream: &str, ca_pem: &str) -> std::path::PathBuf {
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, ca_pem).unwrap();
    let path = dir.join("apiserver-proxy.json");
    write_config(
        &path,
        &serde_json::json!({
            "listen": "127.0.0.1:0",
            "upstreams": [upstream],
            "caFile": ca,
            "healthCheck": {"intervalMs": 100, "timeoutMs": 2000, "fall": 2, "rise": 1},
        })
        .to_string(),
    );
    path
}

#[tokio::test]
async fn ready_is_up_500_is_down_and_back() {
    let (ca, leaf) = ca_and_leaf("kubernetes-ca");
    let server = Readyz::start(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    let path = https_config(dir.path(), &server.addr.to_string(), ca.cert_pem());

    let check = Config::load(&path).unwrap().health;
    assert_eq!(probe(&server.addr.to_string(), &check).await, Ok(()));
    server.status.store(500, Ordering::SeqCst);
    let e = probe(&server.addr.to_string(), &check).await.unwrap_err();
    assert!(e.contains("GET /readyz: 500"), "{e}");

    // The running proxy: up on 200, down after `fall` 500s, up again.
    server.status.store(200, Ordering::SeqCst);
    let proxy = Proxy::start(&path, Options::default()).await.unwrap();
    let st = |p: &Proxy| p.status().upstreams[0].clone();
    wait_for("up on 200", || st(&proxy).state == State::Up).await;
    server.status.store(500, Ordering::SeqCst);
    wait_for("down on 500", || st(&proxy).state == State::Down).await;
    assert!(st(&proxy).reason.unwrap().contains("500"));
    server.status.store(200, Ordering::SeqCst);
    wait_for("up again", || st(&proxy).state == State::Up).await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_down() {
    let (_, leaf) = ca_and_leaf("kubernetes-ca");
    let (other_ca, _) = ca_and_leaf("some-other-ca");
    let server = Readyz::start(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    let path = https_config(dir.path(), &server.addr.to_string(), other_ca.cert_pem());

    let check = Config::load(&path).unwrap().health;
    let e = probe(&server.addr.to_string(), &check).await.unwrap_err();
    assert!(e.starts_with("TLS:") && e.contains("UnknownIssuer"), "{e}");

    let proxy = Proxy::start(&path, Options::default()).await.unwrap();
    wait_for("down: untrusted certificate", || {
        proxy.status().upstreams[0].state == State::Down
    })
    .await;
    // The server answers 200 all along: only the CA decided.
    assert_eq!(server.status.load(Ordering::SeqCst), 200);
}

#[tokio::test]
async fn the_name_checked_is_the_upstream_host_or_tls_server_name() {
    let (ca, leaf) = ca_and_leaf("kubernetes-ca");
    let server = Readyz::start(&leaf).await;
    let dir = tempfile::tempdir().unwrap();
    // The upstream is 127.0.0.1 (in the certificate); a tlsServerName the
    // certificate lacks must fail, one it has must pass.
    let path = https_config(dir.path(), &server.addr.to_string(), ca.cert_pem());
    let mut check = Config::load(&path).unwrap().health;
    check.tls.as_mut().unwrap().server_name = Some("not-in-the-cert.example".into());
    let e = probe(&server.addr.to_string(), &check).await.unwrap_err();
    assert!(e.contains("not valid for name"), "{e}");
    check.tls.as_mut().unwrap().server_name = Some("localhost".into());
    assert_eq!(probe(&server.addr.to_string(), &check).await, Ok(()));
}
