//! Rewriting the config file switches upstreams without a restart; a
//! broken file is refused and the running config stays.

use std::time::Duration;

use k8sup_apiserver_proxy::{Options, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

fn upstreams(p: &Proxy) -> Vec<String> {
    p.status().upstreams.into_iter().map(|u| u.addr).collect()
}

#[tokio::test]
async fn a_rewritten_file_switches_upstreams_and_a_broken_one_is_refused() {
    let a = Tagged::start("A").await;
    let b = Tagged::start("B").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apiserver-proxy.json");
    write_config(&path, &tcp_config(&[a.addr], 100));
    let opts = Options {
        reload_poll: Duration::from_millis(50),
        ..Options::default()
    };
    let proxy = Proxy::start(&path, opts).await.unwrap();
    let (name, mut on_a) = which(proxy.local_addr()).await;
    assert_eq!(name, "A");

    // k8sup replaces the file (rename): no signal, no restart.
    write_config(&path, &tcp_config(&[b.addr], 100));
    wait_for("upstreams = [B]", || {
        upstreams(&proxy) == [b.addr.to_string()]
    })
    .await;
    assert_eq!(which(proxy.local_addr()).await.0, "B");
    // The connection to the removed upstream goes on until it is done.
    on_a.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    on_a.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");

    // Broken JSON: refused, with the file and the line named; B stays.
    write_config(&path, "{\"upstreams\": [\"127.0.0.1:1\",\n");
    wait_for("the broken file refused", || {
        proxy.status().config_error.is_some()
    })
    .await;
    let e = proxy.status().config_error.unwrap();
    assert!(e.starts_with(&format!("{}: line 2", path.display())), "{e}");
    assert_eq!(upstreams(&proxy), [b.addr.to_string()]);
    assert_eq!(which(proxy.local_addr()).await.0, "B");

    // Valid JSON that fails a check is refused the same way.
    write_config(&path, r#"{"upstreams": ["10.0.0.11"]}"#);
    wait_for("the bad address refused", || {
        proxy
            .status()
            .config_error
            .is_some_and(|e| e.contains("upstreams[0]"))
    })
    .await;
    assert_eq!(upstreams(&proxy), [b.addr.to_string()]);

    // Fixed: taken, the error cleared.
    write_config(&path, &tcp_config(&[a.addr, b.addr], 100));
    wait_for("upstreams = [A, B]", || upstreams(&proxy).len() == 2).await;
    assert_eq!(proxy.status().config_error, None);
    assert_eq!(which(proxy.local_addr()).await.0, "A");
}

#[tokio::test]
async fn reload_on_request_and_a_new_listen_address() {
    let a = Tagged::start("A").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apiserver-proxy.json");
    write_config(&path, &tcp_config(&[a.addr], 100));
    // Polling effectively off: only `reload()` (SIGHUP) re-reads.
    let opts = Options {
        reload_poll: Duration::from_secs(3600),
        ..Options::default()
    };
    let proxy = Proxy::start(&path, opts).await.unwrap();
    let old = proxy.local_addr();

    let free = dead_addr().await;
    let json = tcp_config(&[a.addr], 100).replace("127.0.0.1:0", &free.to_string());
    write_config(&path, &json);
    proxy.reload();
    wait_for("listening on the new address", || {
        proxy.local_addr() == free
    })
    .await;
    assert_eq!(which(free).await.0, "A");
    assert_ne!(old, free);

    // A listen address in use refuses the whole file.
    let json = tcp_config(&[a.addr], 100).replace("127.0.0.1:0", &a.addr.to_string());
    write_config(&path, &json);
    proxy.reload();
    wait_for("refused: address in use", || {
        proxy
            .status()
            .config_error
            .is_some_and(|e| e.contains(&format!("listen {}", a.addr)))
    })
    .await;
    assert_eq!(proxy.local_addr(), free);
}

#[tokio::test]
async fn a_restart_with_a_broken_file_starts_from_the_last_accepted_one() {
    let a = Tagged::start("A").await;
    let dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let path = dir.path().join("apiserver-proxy.json");
    write_config(&path, &tcp_config(&[a.addr], 100));
    let opts = Options {
        state_dir: Some(state.path().to_path_buf()),
        ..Options::default()
    };
    let proxy = Proxy::start(&path, opts.clone()).await.unwrap();
    drop(proxy);

    write_config(&path, "{ broken");
    // Without the kept copy there is nothing to run: the start fails,
    // naming the file.
    let e = Proxy::start(&path, Options::default()).await.err().unwrap();
    assert!(
        e.to_string()
            .starts_with(&format!("{}: line 1", path.display())),
        "{e}"
    );
    // With it, the proxy serves the last accepted upstreams and says why.
    let proxy = Proxy::start(&path, opts).await.unwrap();
    assert_eq!(which(proxy.local_addr()).await.0, "A");
    let err = proxy.status().config_error.unwrap();
    assert!(
        err.starts_with(&format!("{}: line 1", path.display())),
        "{err}"
    );
}
