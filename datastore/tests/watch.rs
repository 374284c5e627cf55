//! Watches as kube-apiserver uses them, against real member processes:
//! a client that stops reading must not grow the member's memory, and must
//! still get every event exactly once when it reads again (or be cancelled
//! with the compacted revision if the history it needs is gone);
//! `WithRequireLeader` streams end with `etcdserver: no leader` when the
//! member loses its quorum.

mod common;

use std::time::{Duration, Instant};

use k8sup_datastore::proto::kv_client::KvClient;
use k8sup_datastore::proto::watch_client::WatchClient;
use k8sup_datastore::proto::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// One revision of the load: 16 keys of 16 KiB (256 KiB per revision).
const KEYS_PER_REV: usize = 16;
const VALUE_BYTES: usize = 16 << 10;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn metric(port: u16, name: &str) -> f64 {
    let out = std::process::Command::new("curl")
        .args(["-sf", &format!("http://127.0.0.1:{port}/metrics")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} not in /metrics:\n{text}"))
}

/// Opens a watch stream on `prefix` from `start_rev` and returns it once created.
async fn open_watch(
    ch: Channel,
    prefix: &str,
    start_rev: i64,
    require_leader: bool,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<WatchResponse>), tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    let create = WatchCreateRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: end,
        start_revision: start_rev,
        ..Default::default()
    };
    tx.send(WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    })
    .await
    .unwrap();
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if require_leader {
        req.metadata_mut()
            .insert("hasleader", "true".parse().unwrap());
    }
    let mut stream = WatchClient::new(ch).watch(req).await?.into_inner();
    let created = stream.message().await?.expect("a created response");
    assert!(
        created.created,
        "first response must be `created`: {created:?}"
    );
    Ok((tx, stream))
}

/// Writes `revs` revisions of KEYS_PER_REV keys under `prefix`, 8 writers at a time.
async fn load(ch: Channel, prefix: &str, revs: usize) -> i64 {
    let value = vec![b'x'; VALUE_BYTES];
    let mut tasks = Vec::new();
    for w in 0..8 {
        let mut kv = KvClient::new(ch.clone());
        let value = value.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            let mut last = 0;
            for r in (w..revs).step_by(8) {
                let ops = (0..KEYS_PER_REV)
                    .map(|k| RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: format!("{prefix}{r:05}/{k:02}").into_bytes(),
                            value: value.clone(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                let resp = kv
                    .txn(TxnRequest {
                        success: ops,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                last = resp.header.unwrap().revision;
            }
            last
        }));
    }
    let mut last = 0;
    for t in tasks {
        last = last.max(t.await.unwrap());
    }
    last
}

/// A client that stops reading its watch stream while 250 MiB of events are
/// written: the member's memory must stay bounded (etcd moves such a
/// watcher to "unsynced"; ours catches up from RocksDB), and once the
/// client reads again it gets every event, exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_costs_bounded_memory_and_still_gets_every_event_once() {
    let c = common::Cluster::start(
        1,
        common::Opts {
            tls: false,
            ..Default::default()
        },
    );
    let m = &c.members[0];
    let pid = m.child.as_ref().unwrap().id();
    let ch = common::channel(&m.client_url(false), None).await;
    let (_tx, mut stream) = open_watch(ch.clone(), "slow/", 0, false).await.unwrap();
    let first_rev = KvClient::new(ch.clone())
        .range(RangeRequest {
            key: b"x".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .revision
        + 1;

    // Warm up the member (RocksDB memtables, block cache, allocator) with a
    // load nobody watches, then measure what the stalled watcher adds.
    load(ch.clone(), "warm/", 400).await;
    let before = rss_kib(pid);
    let revs = 1000; // 1000 x 256 KiB = 250 MiB of events
    let t0 = Instant::now();
    let last_rev = load(ch.clone(), "slow/", revs).await;
    let wrote = t0.elapsed();
    let after = rss_kib(pid);
    let slow = metric(m.metrics_port, "etcd_debugging_mvcc_slow_watcher_total");
    let grew_mib = (after.saturating_sub(before)) / 1024;
    eprintln!(
        "stalled watcher: wrote {revs} revisions (250 MiB) in {wrote:?}; RSS {before} KiB -> {after} KiB (+{grew_mib} MiB); slow watchers: {slow}"
    );
    assert_eq!(slow, 1.0, "the stalled watcher must be marked slow");
    // What may grow: the stream's 128 queued responses (32 MiB here), the
    // watcher's queue (8 MiB), and RocksDB's memtables (up to 64 MiB per
    // column family, whatever the watchers do). Unbounded queues grow by the
    // whole 250 MiB.
    assert!(
        grew_mib < 120,
        "RSS grew by {grew_mib} MiB while a watcher was stalled on 250 MiB of events"
    );

    // Now read everything: each revision once, in order, with all its keys.
    let mut seen = std::collections::BTreeMap::<i64, usize>::new();
    let mut last_seen = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while last_seen < last_rev {
        let r = tokio::time::timeout_at(deadline.into(), stream.message())
            .await
            .expect("events within 120 s")
            .unwrap()
            .unwrap();
        assert!(!r.canceled, "watch cancelled: {r:?}");
        for e in r.events {
            let kv = e.kv.unwrap();
            assert!(
                kv.mod_revision >= last_seen,
                "events out of order: {} after {last_seen}",
                kv.mod_revision
            );
            assert_eq!(kv.value.len(), VALUE_BYTES);
            last_seen = kv.mod_revision;
            *seen.entry(kv.mod_revision).or_default() += 1;
        }
    }
    assert_eq!(
        seen.len(),
        revs,
        "revisions delivered (first {first_rev}, last {last_rev})"
    );
    assert!(
        seen.values().all(|n| *n == KEYS_PER_REV),
        "every revision carries exactly its {KEYS_PER_REV} events once"
    );
    assert_eq!(
        metric(m.metrics_port, "etcd_debugging_mvcc_slow_watcher_total"),
        0.0,
        "caught up"
    );
}

/// A watcher that lagged behind a compaction cannot catch up: etcd cancels
/// it with the compacted revision (the Go client's `ErrCompacted`), and so
/// do we. Every event it did deliver precedes the compaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_lagged_behind_a_compaction_is_cancelled_with_the_compact_revision() {
    let c = common::Cluster::start(
        1,
        common::Opts {
            tls: false,
            ..Default::default()
        },
    );
    let m = &c.members[0];
    let ch = common::channel(&m.client_url(false), None).await;
    let (_tx, mut stream) = open_watch(ch.clone(), "lag/", 0, false).await.unwrap();
    let last_rev = load(ch.clone(), "lag/", 200).await;
    assert_eq!(
        metric(m.metrics_port, "etcd_debugging_mvcc_slow_watcher_total"),
        1.0
    );
    KvClient::new(ch.clone())
        .compact(CompactionRequest {
            revision: last_rev,
            physical: true,
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_event = 0;
    loop {
        let r = tokio::time::timeout_at(deadline.into(), stream.message())
            .await
            .expect("a cancel within 60 s")
            .unwrap()
            .unwrap();
        for e in &r.events {
            last_event = e.kv.as_ref().unwrap().mod_revision;
        }
        if r.canceled {
            assert_eq!(
                r.compact_revision, last_rev,
                "cancel carries the compacted revision: {r:?}"
            );
            assert!(
                last_event < last_rev,
                "events delivered before the cancel precede the compaction"
            );
            break;
        }
    }
}

/// kube-apiserver watches with `clientv3.WithRequireLeader`: when the
/// member loses its leader the stream must end with `etcdserver: no leader`
/// (Unavailable) so the client moves to a member that has one; new such
/// watches are refused, while plain watches are still served (as in etcd).
/// The surviving member here is the leader itself, which openraft 0.9 does
/// not demote: it counts as leaderless once no quorum has answered it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_leader_watches_end_when_the_member_loses_its_quorum() {
    let mut c = common::Cluster::start(
        3,
        common::Opts {
            tls: false,
            ..Default::default()
        },
    );
    let leader = c.leader_index().expect("a leader");
    let url = c.members[leader].client_url(false);
    let ch = common::channel(&url, None).await;
    let (_tx, mut guarded) = open_watch(ch.clone(), "guarded/", 0, true).await.unwrap();
    let (_tx2, mut plain) = open_watch(ch.clone(), "plain/", 0, false).await.unwrap();
    for i in 0..3 {
        if i != leader {
            c.members[i].kill9();
        }
    }
    let t0 = Instant::now();
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(20), guarded.message())
            .await
            .expect("the guarded stream ends within 20 s")
        {
            Ok(Some(r)) => assert!(r.events.is_empty(), "unexpected events: {r:?}"),
            Ok(None) => panic!("stream ended without an error"),
            Err(s) => break s,
        }
    };
    eprintln!(
        "require-leader watch ended {:?} after losing quorum: {err:?}",
        t0.elapsed()
    );
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert_eq!(err.message(), "etcdserver: no leader");

    let refused = open_watch(ch.clone(), "again/", 0, true)
        .await
        .expect_err("a new require-leader watch is refused");
    assert_eq!(
        (refused.code(), refused.message()),
        (tonic::Code::Unavailable, "etcdserver: no leader")
    );
    // The plain watch is still open: no error, nothing pending.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), plain.message())
            .await
            .is_err(),
        "the plain watch must stay open"
    );
    open_watch(ch, "plain2/", 0, false)
        .await
        .expect("plain watches are still served");
}
