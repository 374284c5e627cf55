//! A local port forwarded over the host's SSH connection (OpenSSH's `-L`):
//! connections to `127.0.0.1:PORT` on the workstation reach `host:port` as
//! seen from the remote host, each through its own `direct-tcpip` channel.
//!
//! Why: k8sup talks to a cluster's API as a client through its SSH
//! connection to a control plane, so it needs no network path to the API
//! beyond SSH (jump hosts included). Only loopback listens on the
//! workstation; the forward ends when the [`Forward`] is dropped.

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::SshError;
use crate::session::Session;

/// A running forward; dropping it stops listening (open connections end
/// with the SSH connection or their peer).
pub struct Forward {
    local: SocketAddr,
    task: JoinHandle<()>,
}

impl Forward {
    /// The workstation's end: `127.0.0.1:PORT`.
    pub fn local(&self) -> SocketAddr {
        self.local
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Session {
    /// Forward a free loopback port of the workstation to `host:port` as
    /// the remote host reaches it (e.g. `127.0.0.1:6443` there).
    pub async fn forward(&self, host: &str, port: u16) -> Result<Forward, SshError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| self.io_error("listening on loopback for a forward", e))?;
        let local = listener
            .local_addr()
            .map_err(|e| self.io_error("listening on loopback for a forward", e))?;
        let session = self.clone();
        let host = host.to_string();
        let task = tokio::spawn(async move {
            while let Ok((mut client, peer)) = listener.accept().await {
                // What comes back over SSH is written to the client in the
                // pieces it arrives in; with Nagle on, a second piece would
                // wait for the client's delayed ACK (40 ms per response).
                let _ = client.set_nodelay(true);
                let session = session.clone();
                let host = host.clone();
                tokio::spawn(async move {
                    let Ok(channel) = session
                        .open_direct_tcpip(&host, port, &peer.ip().to_string(), peer.port())
                        .await
                    else {
                        return;
                    };
                    let mut remote = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut remote).await;
                });
            }
        });
        Ok(Forward { local, task })
    }
}
