//! Real servers on loopback for the proxy to forward to and to probe.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// How long a test waits for something the proxy should do before calling
/// it hung. Not a speed bound: a loaded machine passes well within it.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Poll `cond` until it holds; panic with `what` after [`PATIENCE`].
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain TCP upstream for the byte-level forwarding tests (the proxy is
/// protocol-blind): says its name ("A\n"), then echoes. It is not a
/// kube-apiserver, and no test here claims to check one: the proxy in front
/// of the real kube-apiserver from the mirror is still to be tested.
pub struct Tagged {
    pub addr: SocketAddr,
    accept: Option<JoinHandle<()>>,
    conns: Arc<tokio::sync::Mutex<JoinSet<()>>>,
}

impl Tagged {
    pub async fn start(name: &'static str) -> Tagged {
        Tagged::on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// On a given address (to bring a killed upstream back on its port).
    pub async fn on(name: &'static str, addr: SocketAddr) -> Tagged {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
        let c = conns.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                c.lock().await.spawn(async move {
                    let _ = s.write_all(format!("{name}\n").as_bytes()).await;
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = w.shutdown().await;
                });
            }
        });
        Tagged {
            addr,
            accept: Some(accept),
            conns,
        }
    }

    /// Stop accepting (the port refuses), keeping open connections.
    /// Returns once the listening socket is closed.
    pub async fn stop_listening(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
            let _ = a.await;
        }
    }

    /// Die: refuse new connections and drop every open one.
    pub async fn kill(&mut self) {
        self.stop_listening().await;
        let mut conns = self.conns.lock().await;
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
}

impl Drop for Tagged {
    fn drop(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
    }
}

/// An address where nothing listens.
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Connect through the proxy and read the upstream's name.
pub async fn which(proxy: SocketAddr) -> (String, TcpStream) {
    let mut s = TcpStream::connect(proxy).await.expect("connect to proxy");
    let mut name = Vec::new();
    let mut b = [0u8; 1];
    let read = async {
        loop {
            match s.read(&mut b).await {
                Ok(1) if b[0] != b'\n' => name.push(b[0]),
                _ => break,
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("upstream name within PATIENCE");
    (String::from_utf8(name).unwrap(), s)
}

/// Write the config file as k8sup does: a new file renamed over the old.
pub fn write_config(path: &Path, json: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A TCP-checked config: listen on a free loopback port, these upstreams,
/// probes every `interval_ms`.
pub fn tcp_config(upstreams: &[SocketAddr], interval_ms: u64) -> String {
    let ups: Vec<String> = upstreams.iter().map(|a| a.to_string()).collect();
    serde_json::json!({
        "listen": "127.0.0.1:0",
        "upstreams": ups,
        "connectTimeoutMs": 2000,
        "healthCheck": {"intervalMs": interval_ms, "timeoutMs": 1000, "fall": 2, "rise": 2},
    })
    .to_string()
}

/// A kube-apiserver's `/readyz` over TLS, answering `status` (200 or 500).
pub struct Readyz {
    pub addr: SocketAddr,
    pub status: Arc<AtomicU16>,
    task: JoinHandle<()>,
}

impl Readyz {
    pub async fn start(leaf: &k8sup_pki::Leaf) -> Readyz {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let status = Arc::new(AtomicU16::new(200));
        let st = status.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, st) = (acceptor.clone(), st.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let code = if req.uri().path() == "/readyz" {
                            st.load(Ordering::SeqCst)
                        } else {
                            404
                        };
                        async move {
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .status(code)
                                    .body(http_body_util::Full::new(hyper::body::Bytes::from("ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Readyz { addr, status, task }
    }
}

impl Drop for Readyz {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A CA and a serving certificate for 127.0.0.1 from the project's PKI.
pub fn ca_and_leaf(name: &str) -> (k8sup_pki::Ca, k8sup_pki::Leaf) {
    let now = k8sup_pki::time::OffsetDateTime::now_utc();
    let ca = k8sup_pki::Ca::generate(name, now).unwrap();
    let spec = k8sup_pki::LeafSpec::server(
        "kube-apiserver",
        vec!["localhost".into()],
        vec!["127.0.0.1".parse().unwrap()],
    );
    let leaf = ca.sign(&spec, now).unwrap();
    (ca, leaf)
}
