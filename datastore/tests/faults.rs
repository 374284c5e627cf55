//! Faults with a client that records every acknowledged write: kill -9 of
//! the leader under load, its restart, a restart of the whole cluster; then
//! every acknowledged write must be present, revisions unique and ordered,
//! and a watcher that resumes from its last revision must have seen every
//! event exactly once. Also: a learner catching up through a snapshot after
//! the log was compacted.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Opts};
use k8sup_datastore::proto::kv_client::KvClient;
use k8sup_datastore::proto::maintenance_client::MaintenanceClient;
use k8sup_datastore::proto::watch_client::WatchClient;
use k8sup_datastore::proto::*;

async fn kv(url: &str) -> Option<KvClient<tonic::transport::Channel>> {
    let ep = tonic::transport::Endpoint::from_shared(url.to_string())
        .ok()?
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(1));
    Some(KvClient::new(ep.connect_lazy()))
}

async fn leader_index(urls: &[String]) -> Option<usize> {
    for (i, u) in urls.iter().enumerate() {
        let Ok(ep) = tonic::transport::Endpoint::from_shared(u.clone()) else {
            continue;
        };
        let Ok(ch) = ep
            .timeout(Duration::from_secs(2))
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
        else {
            continue;
        };
        if let Ok(s) = MaintenanceClient::new(ch).status(StatusRequest {}).await {
            let s = s.into_inner();
            if s.leader != 0 && Some(s.leader) == s.header.map(|h| h.member_id) {
                return Some(i);
            }
        }
    }
    None
}

/// Acknowledged writes: key → revision.
type Acks = Arc<Mutex<BTreeMap<String, i64>>>;

fn spawn_writers(
    urls: Vec<String>,
    acks: Acks,
    stop: Arc<AtomicBool>,
    writers: usize,
    tag: &'static str,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..writers)
        .map(|w| {
            let urls = urls.clone();
            let acks = acks.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut clients = Vec::new();
                for u in &urls {
                    clients.push(kv(u).await.unwrap());
                }
                let mut seq = 0u64;
                let mut last_rev = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("f/{tag}/{w}/{seq:06}");
                    let c = &mut clients[(seq as usize + w) % urls.len()];
                    seq += 1;
                    match c
                        .put(PutRequest {
                            key: key.clone().into_bytes(),
                            value: b"x".to_vec(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(r) => {
                            let rev = r.into_inner().header.unwrap().revision;
                            assert!(
                                rev > last_rev,
                                "writer {w}: revision went backwards ({last_rev} then {rev})"
                            );
                            last_rev = rev;
                            acks.lock().unwrap().insert(key, rev);
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect()
}

/// Events seen by the resuming watcher: revision → keys.
type Seen = Arc<Mutex<Vec<(i64, String)>>>;

fn spawn_watcher(
    urls: Vec<String>,
    seen: Seen,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut next_rev = 1i64;
        let mut attempt = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let url = &urls[attempt % urls.len()];
            attempt += 1;
            let Ok(ep) = tonic::transport::Endpoint::from_shared(url.clone()) else {
                continue;
            };
            let Ok(ch) = ep.connect_timeout(Duration::from_secs(1)).connect().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let create = WatchCreateRequest {
                key: b"f/".to_vec(),
                range_end: b"f0".to_vec(),
                start_revision: next_rev,
                ..Default::default()
            };
            tx.send(WatchRequest {
                request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
            })
            .await
            .unwrap();
            let Ok(resp) = WatchClient::new(ch)
                .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            else {
                continue;
            };
            let mut stream = resp.into_inner();
            loop {
                match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
                    Ok(Ok(Some(r))) => {
                        assert!(!r.canceled, "watch canceled: {r:?}");
                        for e in r.events {
                            let kv = e.kv.unwrap();
                            let rev = kv.mod_revision;
                            assert!(rev >= next_rev, "watch went backwards: {rev} < {next_rev}");
                            seen.lock()
                                .unwrap()
                                .push((rev, String::from_utf8(kv.key).unwrap()));
                            next_rev = rev + 1;
                        }
                    }
                    Ok(_) => break, // stream ended or failed: resume elsewhere
                    Err(_) => {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                }
            }
        }
    })
}

/// What every fault test runs: writers that record each acknowledged
/// write, and a watcher that resumes from its last revision wherever it
/// can; [`Workload::verify`] then checks them against the cluster.
struct Workload {
    acks: Acks,
    seen: Seen,
    stop_writers: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
    stop_watch: Arc<AtomicBool>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Workload {
    /// Starts the watcher and `n` writers (keys tagged `tag`), and lets
    /// them run for two seconds.
    async fn start(urls: &[String], n: usize, tag: &'static str) -> Workload {
        let (acks, seen): (Acks, Seen) = Default::default();
        let stop_watch = Arc::new(AtomicBool::new(false));
        let watcher = spawn_watcher(urls.to_vec(), seen.clone(), stop_watch.clone());
        let mut w = Workload {
            acks,
            seen,
            stop_writers: Default::default(),
            writers: Vec::new(),
            stop_watch,
            watcher,
        };
        w.write(urls, n, tag);
        tokio::time::sleep(Duration::from_secs(2)).await;
        w
    }

    /// Starts `n` more writers.
    fn write(&mut self, urls: &[String], n: usize, tag: &'static str) {
        self.stop_writers = Arc::new(AtomicBool::new(false));
        self.writers = spawn_writers(
            urls.to_vec(),
            self.acks.clone(),
            self.stop_writers.clone(),
            n,
            tag,
        );
    }

    fn acknowledged(&self) -> usize {
        self.acks.lock().unwrap().len()
    }

    /// Stops the writers and waits until each has finished its request.
    async fn stop(&mut self) {
        self.stop_writers.store(true, Ordering::Relaxed);
        for w in self.writers.drain(..) {
            w.await.unwrap();
        }
    }

    /// Stops the writers, then checks every member in `urls`.
    async fn verify(mut self, urls: &[String]) {
        self.stop().await;
        verify_history(urls, &self.acks, &self.seen, &self.stop_watch, self.watcher).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_leader_restart_it_restart_cluster_no_acknowledged_write_lost() {
    let mut c = Cluster::start(
        3,
        Opts {
            tls: false,
            ..Default::default()
        },
    );
    let urls: Vec<String> = c.members.iter().map(|m| m.client_url(false)).collect();
    let mut load = Workload::start(&urls, 8, "a").await;

    // kill -9 the leader under load
    let l = leader_index(&urls).await.expect("a leader");
    let before = load.acknowledged();
    c.members[l].kill9();
    // A new leader is elected and writes are acknowledged again: within a
    // bound generous enough for a machine busy with the rest of the suite.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while load.acknowledged() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "no write was acknowledged within 20 s after the leader was killed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // restart it
    c.members[l].start();
    tokio::time::sleep(Duration::from_secs(3)).await;
    load.stop().await;

    // restart the whole cluster (kill -9 everyone at once)
    for m in &mut c.members {
        m.kill9();
    }
    for m in &mut c.members {
        m.start();
    }
    tokio::task::spawn_blocking({
        let eps = c.endpoints();
        move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !std::process::Command::new(common::ETCDCTL)
                .env("ETCDCTL_API", "3")
                .args([&format!("--endpoints={eps}"), "endpoint", "health"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
            {
                assert!(
                    Instant::now() < deadline,
                    "cluster did not come back after a full restart"
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    })
    .await
    .unwrap();
    load.write(&urls, 4, "b");
    tokio::time::sleep(Duration::from_secs(2)).await;
    load.verify(&urls).await;
}

/// Partitions, in separate network namespaces: the leader is cut off
/// under load (a new leader takes over; the old one cannot commit), healed,
/// then a follower is cut off and healed. Same checks as above, including
/// on the members that were cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_leader_and_follower_lose_no_acknowledged_write() {
    let lab = Arc::new(common::netns::NetLab::new(3));
    let c = Cluster::start(
        3,
        Opts {
            tls: false,
            netlab: Some(lab.clone()),
            ..Default::default()
        },
    );
    let urls: Vec<String> = c.members.iter().map(|m| m.client_url(false)).collect();
    let load = Workload::start(&urls, 8, "p").await;

    let l = leader_index(&urls).await.expect("a leader");
    lab.partition(l);
    let cut_at = load.acknowledged();
    let t0 = Instant::now();
    // The majority elects a new leader and acknowledges writes again.
    while leader_index(&urls).await.is_none_or(|n| n == l) || load.acknowledged() <= cut_at + 20 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the majority did not take over within 30 s of the leader's partition"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "partitioned leader m{l}: the majority acknowledged writes again after {:?}",
        t0.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    lab.heal(l);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let now_leader = leader_index(&urls).await;
    let f = (0..3).find(|i| Some(*i) != now_leader && *i != l).unwrap();
    lab.partition(f);
    tokio::time::sleep(Duration::from_secs(3)).await;
    lab.heal(f);
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "{} writes acknowledged across both partitions",
        load.acknowledged()
    );
    load.verify(&urls).await;
}

/// A learner added and promoted while writes keep coming: it catches up
/// under load, its promotion waits until it has, and afterwards it holds
/// every acknowledged write like the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learner_added_and_promoted_under_load_loses_no_acknowledged_write() {
    let mut c = Cluster::start(
        3,
        Opts {
            tls: false,
            ..Default::default()
        },
    );
    let urls: Vec<String> = c.members.iter().map(|m| m.client_url(false)).collect();
    let load = Workload::start(&urls, 8, "l").await;

    let i = c.new_member("m3");
    let peer = c.members[i].peer_url(false);
    let out = tokio::task::block_in_place(|| {
        c.ctl(&[
            "member",
            "add",
            "m3",
            &format!("--peer-urls={peer}"),
            "--learner",
        ])
    });
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    c.join(i);
    let t0 = Instant::now();
    let acked_before = load.acknowledged();
    loop {
        // Ask the voters: the learner itself may not know the leader yet.
        let out = tokio::task::block_in_place(|| {
            c.etcdctl_at(&urls.join(","), &["member", "promote", &id])
        });
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            err.contains("can only promote a learner member which is in sync with leader"),
            "unexpected refusal: {err}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "learner not promotable within 60 s under load:\n{}",
            c.members[i].log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let during = load.acknowledged() - acked_before;
    eprintln!(
        "learner promoted {:?} after joining; {during} writes acknowledged meanwhile",
        t0.elapsed()
    );
    assert!(during > 0, "writes kept coming while the learner caught up");
    let list = String::from_utf8(
        tokio::task::block_in_place(|| c.etcdctl_at(&urls.join(","), &["member", "list"])).stdout,
    )
    .unwrap();
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.ends_with("false")),
        "m3 is a voter now:\n{list}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut all = urls.clone();
    all.push(c.members[i].client_url(false));
    load.verify(&all).await;
}

/// The checks after every fault: at least 100 writes acknowledged; their
/// revisions unique; every one present on every member at its revision;
/// the resuming watcher saw every event exactly once, in order.
async fn verify_history(
    urls: &[String],
    acks: &Acks,
    seen: &Seen,
    stop_watch: &AtomicBool,
    watcher: tokio::task::JoinHandle<()>,
) {
    let acks = acks.lock().unwrap().clone();
    assert!(
        acks.len() > 100,
        "too few acknowledged writes to mean anything: {}",
        acks.len()
    );
    // Revisions are unique.
    let revs: BTreeSet<i64> = acks.values().copied().collect();
    assert_eq!(
        revs.len(),
        acks.len(),
        "two acknowledged writes share a revision"
    );
    let max_rev = *revs.iter().max().unwrap();

    // Every acknowledged write is present, on every member, at its revision.
    for u in urls {
        let mut client = kv(u).await.unwrap();
        let r = client
            .range(RangeRequest {
                key: b"f/".to_vec(),
                range_end: b"f0".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let got: BTreeMap<String, i64> = r
            .kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), kv.mod_revision))
            .collect();
        for (k, rev) in &acks {
            assert_eq!(
                got.get(k),
                Some(rev),
                "{u}: acknowledged write {k}@{rev} is missing or changed"
            );
        }
    }

    // The resuming watcher saw every event exactly once, in order.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last = seen.lock().unwrap().last().map(|(r, _)| *r).unwrap_or(0);
        if last >= max_rev {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "watcher stuck at revision {last}, writes reached {max_rev}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop_watch.store(true, Ordering::Relaxed);
    watcher.abort();
    let seen = seen.lock().unwrap().clone();
    let mut keys = BTreeSet::new();
    for w in seen.windows(2) {
        assert!(
            w[0].0 < w[1].0,
            "watch events out of order or duplicated: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    for (_, k) in &seen {
        assert!(keys.insert(k.clone()), "watch delivered {k} twice");
    }
    for k in acks.keys() {
        assert!(keys.contains(k), "watcher never saw acknowledged write {k}");
    }
}

#[test]
fn learner_catches_up_through_snapshot_after_log_compaction() {
    let mut c = Cluster::start(
        3,
        Opts {
            tls: false,
            snapshot_count: 100,
            catchup_entries: 10,
            ..Default::default()
        },
    );
    for i in 0..400 {
        c.ctl(&["put", &format!("s/{i:04}"), "v"]);
    }
    let i = c.new_member("late");
    let peer = c.members[i].peer_url(false);
    let out = c.ctl(&[
        "member",
        "add",
        "late",
        &format!("--peer-urls={peer}"),
        "--learner",
    ]);
    let id = out.split_whitespace().nth(1).unwrap().to_string();
    c.join(i);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.etcdctl(&["member", "promote", &id]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "learner never caught up:\n{}",
            c.members[i].log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let log = c.members[i].log();
    assert!(
        log.contains("installed snapshot from leader"),
        "the learner did not catch up through a snapshot:\n{log}"
    );
    let out = c.etcdctl_at(
        &c.members[i].client_url(false),
        &[
            "get",
            "s/",
            "--prefix",
            "--keys-only",
            "-w",
            "json",
            "--consistency=s",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], 400);
    // The snapshot arrived as a file and became the learner's own: one dump
    // named by `current.meta`, nothing half-received left behind.
    let files: Vec<String> = std::fs::read_dir(c.members[i].data_dir.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".snap")).count(),
        1,
        "{files:?}"
    );
    assert!(
        files.contains(&"current.meta".to_string()) && !files.iter().any(|f| f.ends_with(".part")),
        "{files:?}"
    );

    // Graceful stop (SIGTERM) and restart of a member keeps it serving.
    c.members[0].terminate();
    c.members[0].start();
    c.wait_healthy(Duration::from_secs(20));
    let out = c.etcdctl_at(
        &c.members[0].client_url(false),
        &["get", "s/", "--prefix", "--keys-only", "-w", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], 400);
}
