//! Many hosts at once: per-host results, bounded time for dead hosts.

mod harness;

use std::time::{Duration, Instant};

use harness::{Client, Sshd};
use k8sup_ssh::{SshError, UnreachableCause, connect_all};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_silent_hosts_are_reported_by_name_while_the_others_connect() {
    let up1 = Sshd::start("127.0.0.2");
    let up2 = Sshd::start("127.0.0.3");
    let client = Client::new();
    for s in [&up1, &up2] {
        client.trust(s);
        s.authorize("root", &client.key);
    }
    // A host whose sshd is down: the port refuses connections.
    let down = Sshd::start("127.0.0.4");
    let mut down_spec = client.spec(&down, "root");
    down_spec.name = "down".into();
    down_spec.retries = 2;
    down.stop();
    // A host that accepts TCP but never speaks SSH (hung sshd, black-holing middlebox).
    let silent = std::net::TcpListener::bind("127.0.0.5:0").unwrap();
    let mut silent_spec = client.spec(&up1, "root");
    silent_spec.name = "silent".into();
    silent_spec.address = "127.0.0.5".into();
    silent_spec.port = Some(silent.local_addr().unwrap().port());
    silent_spec.connect_timeout = Duration::from_millis(800);
    silent_spec.retries = 1;

    let mut up1_spec = client.spec(&up1, "root");
    up1_spec.name = "up1".into();
    let mut up2_spec = client.spec(&up2, "root");
    up2_spec.name = "up2".into();

    let started = Instant::now();
    let results = connect_all(vec![up1_spec, down_spec, silent_spec, up2_spec], 4).await;
    let elapsed = started.elapsed();

    let names: Vec<&str> = results.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["up1", "down", "silent", "up2"]);
    for (name, r) in &results {
        match name.as_str() {
            "up1" | "up2" => assert!(r.as_ref().unwrap().exec("true").await.unwrap().success()),
            "down" => {
                let err = r.as_ref().unwrap_err();
                assert!(
                    matches!(
                        err,
                        SshError::Unreachable {
                            cause: UnreachableCause::Refused,
                            attempts: 3,
                            ..
                        }
                    ),
                    "{err}"
                );
                assert!(
                    err.to_string().starts_with("down: cannot reach 127.0.0.4:"),
                    "{err}"
                );
            }
            "silent" => {
                let err = r.as_ref().unwrap_err();
                assert!(
                    matches!(
                        err,
                        SshError::Unreachable {
                            cause: UnreachableCause::Timeout(_),
                            attempts: 2,
                            ..
                        }
                    ),
                    "{err}"
                );
                assert!(err.to_string().contains("timed out after 0.8s"), "{err}");
            }
            _ => unreachable!(),
        }
    }
    // 2 x 0.8 s timeouts + one backoff, run in parallel with the rest.
    assert!(elapsed < Duration::from_secs(4), "took {elapsed:?}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_behind_one_bastion_share_one_connection_to_it() {
    let bastion = Sshd::start("127.0.0.2");
    let t1 = Sshd::start("127.0.0.3");
    let t2 = Sshd::start("127.0.0.4");
    let client = Client::new();
    for s in [&bastion, &t1, &t2] {
        client.trust(s);
        s.authorize("root", &client.key);
    }
    let specs: Vec<_> = [&t1, &t2, &t1]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut spec = client.spec(t, "root");
            spec.name = format!("node{i}");
            spec.proxy_jump = Some(Box::new(client.spec(&bastion, "root")));
            spec
        })
        .collect();
    let results = connect_all(specs.clone(), 3).await;
    for (name, r) in &results {
        let s = r.as_ref().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.exec("true").await.unwrap().success());
    }
    assert_eq!(
        bastion.log().matches("Accepted publickey").count(),
        1,
        "{}",
        bastion.log()
    );

    // The bastion failing is reported for every host behind it, by the host's name.
    let stranger = Client::new(); // knows no host keys
    let specs: Vec<_> = specs
        .into_iter()
        .map(|mut s| {
            s.proxy_jump.as_mut().unwrap().known_hosts_files = vec![stranger.known_hosts.clone()];
            s
        })
        .collect();
    let results = connect_all(specs, 3).await;
    for (name, r) in &results {
        let err = r.as_ref().unwrap_err();
        assert!(matches!(err, SshError::Jump { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with(&format!("{name}: through jump host: ")),
            "{err}"
        );
        assert!(err.to_string().contains("is not known"), "{err}");
    }
}
