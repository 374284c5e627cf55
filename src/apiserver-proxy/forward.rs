//! The listener and the byte pipe: accept on the local API port, connect
//! to the first usable upstream (the next on failure), copy both ways.
//!
//! Plain TCP passthrough: TLS stays end to end between the client (kubelet,
//! kube-proxy) and kube-apiserver, which sees the client's own certificate.
//! Each connection holds two 8 KiB buffers (`copy_bidirectional`), and the
//! number of connections is capped, so memory is bounded. A half-close is
//! passed on (EOF from one side shuts down writing to the other), which
//! HTTP/1.1 clients and `kubectl exec` rely on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::pool::{Pool, Upstream};
use crate::throttle::Throttle;

static NO_UPSTREAM: Throttle = Throttle::new(Duration::from_secs(10));
static TOO_MANY: Throttle = Throttle::new(Duration::from_secs(10));

/// Accept until the task is dropped (which closes every connection it
/// started). A listener sent on `rebind` replaces the current one (a reload
/// changed `listen`).
pub async fn serve(
    mut listener: TcpListener,
    mut rebind: mpsc::Receiver<TcpListener>,
    pool: Arc<Pool>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            Some(next) = rebind.recv() => {
                listener = next;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let max = pool.config().max_connections;
                    if open.load(Ordering::Relaxed) >= max {
                        if let Some(skipped) = TOO_MANY.hit() {
                            tracing::warn!(%peer, max, skipped, "too many connections (maxConnections): closing the new one");
                        }
                        drop(client);
                        continue;
                    }
                    let counted = Counted::new(&open);
                    let pool = pool.clone();
                    conns.spawn(async move {
                        connect(client, peer, &pool).await;
                        drop(counted);
                    });
                }
                Err(e) => {
                    // Out of file descriptors, usually: the listener lives
                    // on; pause so the error does not spin.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Find an upstream for `client` and pipe it there; close it at once when
/// there is none.
async fn connect(client: TcpStream, peer: SocketAddr, pool: &Pool) {
    let cfg = pool.config();
    let candidates = pool.candidates();
    let tried = candidates.len();
    for up in candidates {
        let attempt = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&up.addr));
        match attempt.await {
            Ok(Ok(server)) => {
                pipe(client, peer, server, &up, cfg.close_connections_on_down).await;
                return;
            }
            Ok(Err(e)) => pool.refused(&up, format!("connect: {e}")),
            Err(_) => pool.refused(
                &up,
                format!(
                    "connect: no answer within {} ms",
                    cfg.connect_timeout.as_millis()
                ),
            ),
        }
    }
    if let Some(skipped) = NO_UPSTREAM.hit() {
        tracing::error!(
            %peer,
            tried,
            skipped,
            "no healthy upstream: closing the client's connection"
        );
    }
}

/// Copy both ways until both sides are done, or the upstream is marked
/// down (when so configured).
async fn pipe(
    mut client: TcpStream,
    peer: SocketAddr,
    mut server: TcpStream,
    up: &Upstream,
    close_on_down: bool,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let _counted = Counted::new(&up.active);
    let down = up.down.notified();
    tokio::pin!(down);
    // Registered now, so a mark-down from here on reaches this connection.
    down.as_mut().enable();
    tracing::debug!(%peer, upstream = %up.addr, "forwarding");
    let copy = tokio::io::copy_bidirectional(&mut client, &mut server);
    tokio::select! {
        r = copy => match r {
            Ok((to_server, to_client)) => tracing::debug!(%peer, upstream = %up.addr, to_server, to_client, "connection closed"),
            Err(e) => tracing::debug!(%peer, upstream = %up.addr, error = %e, "connection ended"),
        },
        _ = &mut down, if close_on_down => {
            tracing::debug!(%peer, upstream = %up.addr, "upstream marked down: closing");
        }
    }
}

/// Counts a connection while it lives, even when its task is aborted.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(n: &Arc<AtomicUsize>) -> Counted {
        n.fetch_add(1, Ordering::Relaxed);
        Counted(n.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
