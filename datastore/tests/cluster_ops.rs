//! Operating a cluster the way etcd's tools do: the gRPC health service
//! follows leadership, `etcdctl member update` moves a member's peer URL,
//! and `etcdctl move-leader` answers etcd's errors (or says plainly that
//! the transfer itself is not supported); `k8sup-datastore get` and `put`
//! keep a value byte for byte.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, Opts, datastore_bin};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

async fn health(url: &str) -> ServingStatus {
    let ch = common::channel(url, None).await;
    let r = HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    ServingStatus::try_from(r.status).unwrap()
}

fn http_health(port: u16) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", &format!("http://127.0.0.1:{port}/health")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `grpc.health.v1.Health` says SERVING only while the member has a leader:
/// the leader left alone (its two followers killed) turns NOT_SERVING, and
/// so does etcd's `/health`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_is_serving_only_with_a_leader() {
    let mut c = Cluster::start(
        3,
        Opts {
            tls: false,
            ..Default::default()
        },
    );
    // The status follows leadership every 200 ms.
    let t0 = Instant::now();
    for m in &c.members {
        while health(&m.client_url(false)).await != ServingStatus::Serving {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{} not SERVING with a leader",
                m.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let leader = c.leader_index().unwrap();
    for i in 0..3 {
        if i != leader {
            c.members[i].kill9();
        }
    }
    let url = c.members[leader].client_url(false);
    let t0 = Instant::now();
    while health(&url).await == ServingStatus::Serving {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "still SERVING 15 s after losing quorum"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("NOT_SERVING {:?} after losing quorum", t0.elapsed());
    assert_eq!(health(&url).await, ServingStatus::NotServing);
    assert!(http_health(c.members[leader].metrics_port).contains(r#""health":"false""#));
}

/// `etcdctl member update ID --peer-urls=NEW`, then the member restarted
/// listening there: the cluster replicates to it at its new address.
#[test]
fn member_update_moves_a_members_peer_url() {
    let mut c = Cluster::start(
        3,
        Opts {
            tls: false,
            ..Default::default()
        },
    );
    let leader = c.leader_index().unwrap();
    let f = (leader + 1) % 3;
    let list: serde_json::Value =
        serde_json::from_str(&c.ctl(&["member", "list", "-w", "json"])).unwrap();
    let old_url = c.members[f].peer_url(false);
    let id = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["peerURLs"][0] == old_url.as_str())
        .unwrap()["ID"]
        .as_u64()
        .unwrap();
    let new_port = common::free_port();
    let new_url = format!("http://127.0.0.1:{new_port}");
    let out = c.ctl(&[
        "member",
        "update",
        &format!("{id:x}"),
        &format!("--peer-urls={new_url}"),
    ]);
    // etcdctl prints IDs as `%16x`: space-padded when the ID has a leading zero digit.
    assert!(
        out.contains(&format!("Member {id:16x} updated in cluster")),
        "{out}"
    );
    // The moved member itself only learns it once restarted (the leader now
    // dials the new URL), as in etcd: ask the leader.
    let leader_url = c.members[leader].client_url(false);
    let listed = c.etcdctl_at(&leader_url, &["member", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(&new_url));
    // Conflicts are refused as in etcd (asked of the leader: the moved
    // member is cut off until it restarts).
    let dup = c.etcdctl_at(
        &leader_url,
        &[
            "member",
            "update",
            &format!("{id:x}"),
            &format!("--peer-urls={}", c.members[leader].peer_url(false)),
        ],
    );
    let dup = String::from_utf8_lossy(&dup.stderr).to_string();
    assert!(
        dup.contains("etcdserver: Peer URLs already exists"),
        "{dup}"
    );
    let missing = c.etcdctl_at(
        &leader_url,
        &["member", "update", "1234", "--peer-urls=http://127.0.0.1:1"],
    );
    let missing = String::from_utf8_lossy(&missing.stderr).to_string();
    assert!(
        missing.contains("etcdserver: member not found"),
        "{missing}"
    );

    // Restart the member on its new peer URL. Like etcd, a member with data
    // ignores `--initial-cluster`, so only its own peer flags change.
    c.members[f].terminate();
    c.members[f].peer_port = new_port;
    for a in &mut c.members[f].args {
        if a.starts_with("--listen-peer-urls=") || a.starts_with("--initial-advertise-peer-urls=") {
            *a = a.replace(&old_url, &new_url);
        }
    }
    c.members[f].start();
    let f_url = c.members[f].client_url(false);
    assert_eq!(
        c.etcdctl_at(&leader_url, &["put", "after-update", "v"])
            .status
            .code(),
        Some(0)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = c.etcdctl_at(
            &f_url,
            &[
                "get",
                "after-update",
                "--consistency=s",
                "--print-value-only",
            ],
        );
        if String::from_utf8_lossy(&got.stdout).trim() == "v" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the moved member did not receive the write: {}",
            c.members[f].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// etcd's checks: a transferee that is not a member is refused with
/// `etcdserver: bad leader transferee`. The transfer itself is refused
/// with UNIMPLEMENTED and the reason (openraft 0.9 cannot transfer).
#[test]
fn move_leader_answers_etcds_errors() {
    let c = Cluster::start(
        3,
        Opts {
            tls: false,
            ..Default::default()
        },
    );
    let bad = c.etcdctl(&["move-leader", "1234"]);
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("Error: etcdserver: bad leader transferee"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let list: serde_json::Value =
        serde_json::from_str(&c.ctl(&["member", "list", "-w", "json"])).unwrap();
    let leader = c.leader_index().unwrap();
    let leader_peer = c.members[leader].peer_url(false);
    let other = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["peerURLs"][0] != leader_peer.as_str())
        .unwrap()["ID"]
        .as_u64()
        .unwrap();
    let out = c.etcdctl(&["move-leader", &format!("{other:x}")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("code = Unimplemented")
            && err.contains("openraft 0.9 has no leadership transfer"),
        "{err}"
    );
    assert_eq!(c.leader_index(), Some(leader), "leadership unchanged");
}

/// `k8sup-datastore put KEY --from-file FILE` and `get KEY`, the client
/// subcommands k8sup runs on a control plane (its cluster record): over
/// mutual TLS, the value's bytes exactly (no newline added), what etcdctl
/// reads; a missing key prints nothing and succeeds; `put` also reads stdin.
#[test]
fn get_and_put_keep_a_value_byte_for_byte() {
    use std::io::Write;
    let c = Cluster::start(1, Opts::default());
    c.wait_healthy(Duration::from_secs(20));
    let p = c.pki.as_ref().unwrap();
    let tls = [
        format!("--endpoints={}", c.endpoints()),
        format!("--cacert={}", p.ca.display()),
        format!("--cert={}", p.client_cert.display()),
        format!("--key={}", p.client_key.display()),
    ];
    let run = |args: &[&str], stdin: Option<&[u8]>| -> std::process::Output {
        let mut cmd = std::process::Command::new(datastore_bin());
        cmd.args(args).args(&tls);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.unwrap_or_default()).unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    };
    let value = b"{\n  \"formatVersion\": 1\n}\n".to_vec();
    let file = c.dir.path().join("record.json");
    std::fs::write(&file, &value).unwrap();
    let from = format!("--from-file={}", file.display());
    let out = run(&["put", "/k8sup/cluster-state", &from], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["get", "/k8sup/cluster-state"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, value);
    let seen = c.ctl(&["get", "/k8sup/cluster-state", "--print-value-only"]);
    assert_eq!(seen.as_bytes(), [value.as_slice(), b"\n"].concat());
    let out = run(&["get", "/k8sup/none"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let out = run(&["put", "/k8sup/x"], Some(b"no newline"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(run(&["get", "/k8sup/x"], None).stdout, b"no newline");
}
