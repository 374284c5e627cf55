//! Bytes both ways, failover, failback, and no upstream at all.

use k8sup_apiserver_proxy::{Options, Proxy, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

async fn start(dir: &tempfile::TempDir, json: &str) -> Proxy {
    let path = dir.path().join("apiserver-proxy.json");
    write_config(&path, json);
    Proxy::start(&path, Options::default()).await.unwrap()
}

fn state(p: &Proxy, i: usize) -> State {
    p.status().upstreams[i].state
}

#[tokio::test]
async fn forwards_bytes_both_ways_and_passes_the_half_close_on() {
    let a = Tagged::start("A").await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&dir, &tcp_config(&[a.addr], 60_000)).await;

    let (name, s) = which(proxy.local_addr()).await;
    assert_eq!(name, "A");
    // 4 MiB, more than any buffer on the way, written while it is read back.
    let sent: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let (mut r, mut w) = s.into_split();
    let data = sent.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&data).await.unwrap();
        // Half-close: the echo server sees EOF only if the proxy passes it on,
        // and only then closes its side, ending our read below.
        w.shutdown().await.unwrap();
        w
    });
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, r.read_to_end(&mut got))
        .await
        .expect("the upstream's EOF came through")
        .unwrap();
    let _w = writer.await.unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "the bytes came back unchanged");
}

#[tokio::test]
async fn a_refused_connect_fails_over_at_once_to_the_next_upstream() {
    let mut a = Tagged::start("A").await;
    let b = Tagged::start("B").await;
    let dir = tempfile::tempdir().unwrap();
    // One probe round at start, then none for a minute: only the client's
    // own connection can notice A is gone.
    let proxy = start(&dir, &tcp_config(&[a.addr, b.addr], 60_000)).await;
    wait_for("both up", || {
        state(&proxy, 0) == State::Up && state(&proxy, 1) == State::Up
    })
    .await;
    assert_eq!(which(proxy.local_addr()).await.0, "A", "the first in order");

    a.kill().await;
    assert_eq!(which(proxy.local_addr()).await.0, "B");
    let st = proxy.status();
    assert_eq!(st.upstreams[0].state, State::Down);
    let reason = st.upstreams[0].reason.clone().unwrap();
    assert!(reason.contains("connect"), "{reason}");
    // And it stays off the list: the next connection goes straight to B.
    assert_eq!(which(proxy.local_addr()).await.0, "B");
}

#[tokio::test]
async fn health_checks_move_new_connections_off_a_dead_upstream_and_back() {
    let mut a = Tagged::start("A").await;
    let b = Tagged::start("B").await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&dir, &tcp_config(&[a.addr, b.addr], 100)).await;
    wait_for("A up", || state(&proxy, 0) == State::Up).await;
    let (name, mut on_a) = which(proxy.local_addr()).await;
    assert_eq!(name, "A");

    a.kill().await;
    // The connection that was on A ends with A.
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, on_a.read_to_end(&mut rest))
        .await
        .expect("the connection on the dead upstream ended")
        .unwrap();
    // No client touched A: the checker alone marks it down.
    wait_for("A marked down by the health check", || {
        state(&proxy, 0) == State::Down
    })
    .await;
    let (name, mut on_b) = which(proxy.local_addr()).await;
    assert_eq!(name, "B");

    // A comes back on its port: after `rise` good checks, new connections
    // return to it (the stable, first-in-order choice), and the connection
    // on B is left alone.
    let _a2 = Tagged::on("A-again", a.addr).await;
    wait_for("A up again", || state(&proxy, 0) == State::Up).await;
    assert_eq!(which(proxy.local_addr()).await.0, "A-again");
    on_b.write_all(b"still here").await.unwrap();
    let mut buf = [0u8; 10];
    on_b.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"still here");
}

#[tokio::test]
async fn connections_to_an_upstream_marked_down_are_closed() {
    let mut a = Tagged::start("A").await;
    let b = Tagged::start("B").await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&dir, &tcp_config(&[a.addr, b.addr], 100)).await;
    wait_for("A up", || state(&proxy, 0) == State::Up).await;
    let (name, mut on_a) = which(proxy.local_addr()).await;
    assert_eq!(name, "A");

    // A stops accepting but keeps this connection open (a host going away
    // while its sockets linger): the proxy closes it once A is marked down,
    // so the client reconnects, to B.
    a.stop_listening().await;
    let mut rest = Vec::new();
    tokio::time::timeout(PATIENCE, on_a.read_to_end(&mut rest))
        .await
        .expect("the proxy closed the connection to the downed upstream")
        .unwrap();
    assert_eq!(state(&proxy, 0), State::Down);
    assert_eq!(which(proxy.local_addr()).await.0, "B");
}

#[tokio::test]
async fn with_no_healthy_upstream_a_client_is_closed_not_hung() {
    let dead = dead_addr().await;
    let dir = tempfile::tempdir().unwrap();
    let proxy = start(&dir, &tcp_config(&[dead], 100)).await;

    // First while the upstream is still unknown (the connect is refused),
    // then once the checker has marked it down (nothing is tried).
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
        let mut buf = [0u8; 16];
        let r = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("the proxy closed the connection");
        assert!(matches!(r, Ok(0) | Err(_)), "closed, no bytes: {r:?}");
        wait_for("marked down", || state(&proxy, 0) == State::Down).await;
    }
    // The listener is still there after refusing clients.
    assert!(TcpStream::connect(proxy.local_addr()).await.is_ok());
}
