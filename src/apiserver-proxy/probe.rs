//! One health probe of one upstream, and the loop that probes them all.
//!
//! With a CA configured the probe is what kube-apiserver itself offers for
//! this: an anonymous HTTPS `GET /readyz` (allowed to unauthenticated users
//! by the default `system:public-info-viewer` role), verified against the
//! cluster CA, passing only on `200`. That catches an apiserver that
//! listens but cannot reach its datastore, which a TCP connect cannot.
//! Without a CA the probe is a TCP connect. Either way the proxy holds no
//! client credentials.

use std::sync::Arc;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{HealthCheck, TlsCheck, host_of};
use crate::pool::Pool;

/// Probe every upstream now, then every `interval`, until the task is
/// dropped. `wake` starts a round at once (a reload added upstreams).
pub async fn run(pool: Arc<Pool>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let cfg = pool.config();
        let rounds = pool.upstreams().into_iter().map(|up| {
            let pool = pool.clone();
            let health = cfg.health.clone();
            tokio::spawn(async move {
                let result = probe(&up.addr, &health).await;
                pool.probed(&up, result);
            })
        });
        for r in rounds.collect::<Vec<_>>() {
            let _ = r.await;
        }
        tokio::select! {
            _ = tokio::time::sleep(cfg.health.interval) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Probe `addr` once, within the configured timeout. `Err` says why it
/// failed, in words for the log.
pub async fn probe(addr: &str, check: &HealthCheck) -> Result<(), String> {
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match &check.tls {
            None => Ok(()),
            Some(tls) => readyz(tcp, addr, &check.path, tls).await,
        }
    };
    match tokio::time::timeout(check.timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", check.timeout.as_millis())),
    }
}

async fn readyz(tcp: TcpStream, addr: &str, path: &str, tls: &TlsCheck) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let name = tls.server_name.as_deref().unwrap_or_else(|| host_of(addr));
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
        .map_err(|e| format!("{name:?} is not a valid TLS server name: {e}"))?;
    let stream = connector(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP: {e}"))?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, name)
        .header(hyper::header::USER_AGENT, "k8sup-apiserver-proxy")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let res = sender.send_request(req).await;
    driver.abort();
    let status = res.map_err(|e| format!("GET {path}: {e}"))?.status();
    match status.as_u16() {
        200 => Ok(()),
        401 | 403 => Err(format!(
            "GET {path}: {status}: anonymous access is refused; kube-apiserver needs --anonymous-auth=true (the default) for the proxy's health check"
        )),
        _ => Err(format!("GET {path}: {status}")),
    }
}

/// A TLS client trusting only the cluster CA, presenting no certificate,
/// speaking HTTP/1.1 (the one request needs no HTTP/2).
fn connector(tls: &TlsCheck) -> TlsConnector {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(tls.roots.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(cfg))
}
