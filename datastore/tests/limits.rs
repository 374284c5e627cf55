//! The limits etcd enforces and kube-apiserver relies on, checked with the
//! real `etcdctl` where it shows them: `--max-request-bytes`,
//! `--quota-backend-bytes` with the NOSPACE alarm, and Compact's `physical`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use common::{Cluster, ETCDCTL, Opts};
use k8sup_datastore::proto::CompactionRequest;
use k8sup_datastore::proto::kv_client::KvClient;
use k8sup_datastore::proto::{PutRequest, RequestOp, TxnRequest, request_op};

/// `etcdctl put KEY` with the value on stdin (too large for an argument).
fn put_stdin(c: &Cluster, key: &str, len: usize) -> std::process::Output {
    let mut cmd = Command::new(ETCDCTL);
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", c.endpoints()))
        .arg("--command-timeout=10s");
    if let Some(p) = &c.pki {
        cmd.arg(format!("--cacert={}", p.ca.display()))
            .arg(format!("--cert={}", p.client_cert.display()))
            .arg(format!("--key={}", p.client_key.display()));
    }
    let mut child = cmd
        .args(["put", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Random letters: RocksDB compresses SSTs (LZ4), and the quota test
    // must fill the disk for real.
    let mut x =
        0x9E37_79B9_7F4A_7C15u64 ^ (len as u64) ^ key.len() as u64 ^ std::process::id() as u64;
    let value: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect();
    child.stdin.take().unwrap().write_all(&value).unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn member_id_hex(c: &Cluster) -> String {
    let out = c.ctl(&["endpoint", "status", "-w", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    format!(
        "{:x}",
        v[0]["Status"]["header"]["member_id"].as_u64().unwrap()
    )
}

fn metric(port: u16, name: &str) -> f64 {
    let out = Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not in /metrics:\n{text}"))
}

/// etcd (and etcdctl 3.4 against it, checked here): a 1.6 MB put is refused
/// by the server with `etcdserver: request is too large` (InvalidArgument);
/// 1.4 MB is fine. The limit follows `--max-request-bytes`.
#[test]
fn requests_over_max_request_bytes_get_etcds_error() {
    let c = Cluster::start(1, Opts::default());
    let ok = put_stdin(&c, "fits", 1_400_000);
    assert!(ok.status.success(), "1.4 MB put: {}", stderr(&ok));
    let big = put_stdin(&c, "big", 1_600_000);
    assert!(!big.status.success());
    assert!(
        stderr(&big).contains("Error: etcdserver: request is too large"),
        "{}",
        stderr(&big)
    );
    assert!(
        stderr(&big).contains("code = InvalidArgument"),
        "{}",
        stderr(&big)
    );
    assert_eq!(c.ctl(&["get", "big", "--keys-only"]), "", "nothing written");

    let small = Cluster::start(
        1,
        Opts {
            extra_args: vec!["--max-request-bytes=100000".into()],
            ..Default::default()
        },
    );
    let refused = put_stdin(&small, "k", 200_000);
    assert!(
        stderr(&refused).contains("Error: etcdserver: request is too large"),
        "{}",
        stderr(&refused)
    );
}

/// `--quota-backend-bytes`: writes past it raise the NOSPACE alarm; then
/// puts are refused with `etcdserver: mvcc: database space exceeded` while
/// reads and deletes work, `alarm list` shows the alarm, and after freeing
/// space (delete, compact, defragment) `alarm disarm` lets writes through.
#[test]
fn the_backend_quota_raises_nospace_until_space_is_freed_and_the_alarm_disarmed() {
    let quota = 48 << 20;
    let c = Cluster::start(
        1,
        Opts {
            extra_args: vec![format!("--quota-backend-bytes={quota}")],
            ..Default::default()
        },
    );
    let id = member_id_hex(&c);
    assert_eq!(c.ctl(&["alarm", "list"]), "", "no alarm at start");
    let mut refused = None;
    for i in 0..200 {
        let out = put_stdin(&c, &format!("fill/{i:03}"), 1 << 20);
        if !out.status.success() {
            refused = Some((i, stderr(&out)));
            break;
        }
    }
    let (at, err) = refused.expect("writes past a 48 MiB quota are refused");
    eprintln!("NOSPACE after {at} puts of 1 MiB");
    assert!(
        err.contains("Error: etcdserver: mvcc: database space exceeded"),
        "{err}"
    );
    assert!(err.contains("code = ResourceExhausted"), "{err}");
    let alarm = format!(
        "memberID:{} alarm:NOSPACE",
        u64::from_str_radix(&id, 16).unwrap()
    );
    assert_eq!(c.ctl(&["alarm", "list"]).trim(), alarm);
    // Small writes too, and lease grants; reads and deletes still work.
    let put = c.etcdctl(&["put", "tiny", "x"]);
    assert!(
        stderr(&put).contains("etcdserver: mvcc: database space exceeded"),
        "{}",
        stderr(&put)
    );
    let grant = c.etcdctl(&["lease", "grant", "60"]);
    assert!(
        stderr(&grant).contains("etcdserver: mvcc: database space exceeded"),
        "{}",
        stderr(&grant)
    );
    assert!(
        c.ctl(&["get", "fill/000", "--keys-only"])
            .contains("fill/000")
    );
    let st = c.ctl(&["endpoint", "status", "-w", "json"]);
    assert!(
        st.contains("alarm:NOSPACE"),
        "endpoint status lists the alarm: {st}"
    );

    let deleted = c.ctl(&["del", "--prefix", "fill/"]);
    assert_eq!(deleted.trim(), at.to_string());
    let v: serde_json::Value = serde_json::from_str(&c.ctl(&["get", "x", "-w", "json"])).unwrap();
    let rev = v["header"]["revision"].as_i64().unwrap().to_string();
    assert_eq!(
        c.ctl(&["compaction", "--physical", &rev]).trim(),
        format!("compacted revision {rev}")
    );
    assert!(c.ctl(&["defrag"]).contains("Finished defragmenting"));
    assert_eq!(
        c.ctl(&["alarm", "disarm"]).trim(),
        alarm,
        "disarm prints the alarm it cleared"
    );
    assert_eq!(c.ctl(&["alarm", "list"]), "");
    assert_eq!(c.ctl(&["put", "tiny", "x"]).trim(), "OK");
}

/// `Compact(physical=true)` answers once the compacted history is gone
/// from RocksDB (etcd waits for its backend the same way); without the
/// flag it answers at once and removal follows in the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_compaction_answers_once_the_history_is_removed() {
    let c = Cluster::start(
        1,
        Opts {
            tls: false,
            ..Default::default()
        },
    );
    let m = &c.members[0];
    let mut kv = KvClient::new(common::channel(&m.client_url(false), None).await);
    // 20 versions of 1000 keys (125 per Txn, etcd's op limit is 128):
    // 19,000 versions for compaction to remove.
    let mut rev = 0;
    for (round, batch) in (0..20).flat_map(|r| (0..8).map(move |b| (r, b))) {
        let ops = (batch * 125..(batch + 1) * 125)
            .map(|k| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: format!("h/{k:04}").into_bytes(),
                    value: format!("{round}").into_bytes(),
                    ..Default::default()
                })),
            })
            .collect();
        rev = kv
            .txn(TxnRequest {
                success: ops,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .revision;
    }
    let t0 = Instant::now();
    kv.compact(CompactionRequest {
        revision: rev,
        physical: true,
    })
    .await
    .unwrap();
    let took = t0.elapsed();
    let physical = metric(m.metrics_port, "k8sup_mvcc_physical_compact_revision");
    eprintln!("physical compaction of 19,000 versions answered in {took:?}");
    assert_eq!(
        physical, rev as f64,
        "history up to {rev} removed when Compact(physical) answers"
    );
}
