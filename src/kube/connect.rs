//! A `kube` client of a cluster's API, through a port forwarded over a
//! control plane's SSH connection.
//!
//! Why through SSH: k8sup needs no network path to the API beyond the SSH
//! connections it already has (jump hosts included), and the API's port
//! need not be open to the workstation. The client speaks to
//! `127.0.0.1:PORT` on the workstation; each of its TCP connections is a
//! `direct-tcpip` channel to `127.0.0.1:6443` as the control plane sees it.
//! TLS is verified as usual: the apiserver's certificate names 127.0.0.1.

use std::time::Duration;

use k8sup_ssh::{Forward, Session};

/// A client, and the forward its connections go through (both must live).
pub struct Connected {
    pub client: kube::Client,
    /// The control plane the API is reached through.
    pub host: String,
    _forward: Forward,
}

/// Connect to the API at `127.0.0.1:port` as `session`'s host sees it, with
/// `admin_kubeconfig` (whose own server address is not used), and check that
/// it answers (`GET /version`) within `timeout`.
pub async fn connect(
    session: &Session,
    port: u16,
    admin_kubeconfig: &str,
    timeout: Duration,
) -> Result<Connected, String> {
    let forward = session
        .forward("127.0.0.1", port)
        .await
        .map_err(|e| e.to_string())?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(admin_kubeconfig)
        .map_err(|e| format!("the admin kubeconfig: {e}"))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| format!("the admin kubeconfig: {e}"))?;
    config.cluster_url = format!("https://{}", forward.local())
        .parse()
        .map_err(|e| format!("the forwarded address: {e}"))?;
    // The certificate names 127.0.0.1, the address the control plane itself
    // uses; the workstation's end of the forward is another loopback port.
    config.tls_server_name = Some("127.0.0.1".into());
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(Duration::from_secs(30));
    let client = kube::Client::try_from(config).map_err(|e| e.to_string())?;
    match tokio::time::timeout(timeout, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(Connected {
            client,
            host: session.name().to_string(),
            _forward: forward,
        }),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}

/// A `kube` error in a line: the API's own message when it gave one.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.code),
        other => {
            // The chain, each cause once (hyper repeats its own).
            let mut parts = vec![other.to_string()];
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !parts.iter().any(|p| p.contains(&s_text)) {
                    parts.push(s_text);
                }
                source = s.source();
            }
            parts.join(": ")
        }
    }
}
