//! Writes sent to a follower (forwarded to the leader on the follower's
//! forwarding stream, `src/forward.rs`):
//! - read-your-writes: once the follower answers a write, a serializable
//!   read on that same follower (its local state, no leader round) shows it,
//!   as on etcd, whose follower answers after its own apply;
//! - across a kill -9 of the leader, each forwarded write is either
//!   acknowledged and present, or refused with one of etcd's errors; none
//!   is applied twice.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Cluster, Opts};
use k8sup_datastore::proto::kv_client::KvClient;
use k8sup_datastore::proto::*;

fn plaintext() -> Opts {
    Opts {
        tls: false,
        ..Default::default()
    }
}

async fn kv(url: &str) -> KvClient<tonic::transport::Channel> {
    let ep = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(1));
    KvClient::new(ep.connect_lazy())
}

/// `key` as the member `client` talks to holds it (a serializable read: its
/// own state, no leader round).
async fn read_here(client: &mut KvClient<tonic::transport::Channel>, key: &[u8]) -> RangeResponse {
    client
        .range(RangeRequest {
            key: key.to_vec(),
            serializable: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

/// A member that is not the leader, and the leader.
fn follower_and_leader(c: &Cluster) -> (usize, usize) {
    let l = c.leader_index().expect("a leader");
    ((l + 1) % c.members.len(), l)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answered_by_a_follower_is_visible_there_at_once() {
    let c = Cluster::start(3, plaintext());
    let (f, _) = follower_and_leader(&c);
    let mut client = kv(&c.members[f].client_url(false)).await;
    for i in 0..300 {
        let key = format!("ryw/{i:04}").into_bytes();
        let rev = if i % 3 == 2 {
            // A transaction that creates the key, as kube-apiserver writes.
            let r = client
                .txn(TxnRequest {
                    compare: vec![Compare {
                        key: key.clone(),
                        result: compare::CompareResult::Equal as i32,
                        target: compare::CompareTarget::Mod as i32,
                        target_union: Some(compare::TargetUnion::ModRevision(0)),
                        ..Default::default()
                    }],
                    success: vec![RequestOp {
                        request: Some(request_op::Request::RequestPut(PutRequest {
                            key: key.clone(),
                            value: format!("v{i}").into_bytes(),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![],
                })
                .await
                .unwrap()
                .into_inner();
            assert!(r.succeeded, "txn {i} did not succeed");
            r.header.unwrap().revision
        } else {
            client
                .put(PutRequest {
                    key: key.clone(),
                    value: format!("v{i}").into_bytes(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
                .header
                .unwrap()
                .revision
        };
        let got = read_here(&mut client, &key).await;
        assert!(
            got.header.as_ref().unwrap().revision >= rev,
            "write {i}: the follower answered at revision {rev} but reads at {}",
            got.header.unwrap().revision
        );
        assert_eq!(
            got.kvs
                .first()
                .map(|kv| (kv.value.clone(), kv.mod_revision)),
            Some((format!("v{i}").into_bytes(), rev)),
            "write {i} (revision {rev}) is not visible on the follower that acknowledged it"
        );
        if i % 10 == 9 {
            let del = client
                .delete_range(DeleteRangeRequest {
                    key: key.clone(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(del.deleted, 1);
            let got = read_here(&mut client, &key).await;
            assert!(
                got.kvs.is_empty(),
                "delete {i} is not visible on the follower that acknowledged it"
            );
        }
    }
}

/// etcd's answers for a write that may not have been committed.
const ETCD_WRITE_ERRORS: &[&str] = &[
    "etcdserver: leader changed",
    "etcdserver: no leader",
    "etcdserver: request timed out",
    "etcdserver: request timed out, possibly due to previous leader failure",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_writes_across_a_leader_kill_are_never_lost_or_doubled() {
    let mut c = Cluster::start(3, plaintext());
    let (f, l) = follower_and_leader(&c);
    let url = c.members[f].client_url(false);
    let acks: Arc<Mutex<BTreeMap<String, i64>>> = Default::default();
    let errors: Arc<Mutex<Vec<String>>> = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (url, acks, errors, stop) =
                (url.clone(), acks.clone(), errors.clone(), stop.clone());
            tokio::spawn(async move {
                let mut client = kv(&url).await;
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("lc/{w}/{seq:06}");
                    seq += 1;
                    match client
                        .put(PutRequest {
                            key: key.clone().into_bytes(),
                            value: b"x".to_vec(),
                            ..Default::default()
                        })
                        .await
                    {
                        Ok(r) => {
                            let rev = r.into_inner().header.unwrap().revision;
                            acks.lock().unwrap().insert(key, rev);
                        }
                        Err(s) => {
                            errors.lock().unwrap().push(s.message().to_string());
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = acks.lock().unwrap().len();
    assert!(before > 20, "too few writes before the kill: {before}");
    c.members[l].kill9();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acks.lock().unwrap().len() < before + 50 {
        assert!(
            Instant::now() < deadline,
            "the follower acknowledged no forwarded write within 20 s of the leader's death"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }

    for e in errors.lock().unwrap().iter() {
        assert!(
            ETCD_WRITE_ERRORS.contains(&e.as_str()),
            "a forwarded write failed with {e:?}, not one of etcd's errors"
        );
    }
    let acks = acks.lock().unwrap().clone();
    for (i, m) in c.members.iter().enumerate() {
        if i == l {
            continue;
        }
        let mut client = kv(&m.client_url(false)).await;
        let got = client
            .range(RangeRequest {
                key: b"lc/".to_vec(),
                range_end: b"lc0".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for kv in &got.kvs {
            assert_eq!(
                kv.version,
                1,
                "{}: {} was written {} times",
                m.name,
                String::from_utf8_lossy(&kv.key),
                kv.version
            );
        }
        let got: BTreeMap<String, i64> = got
            .kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), kv.mod_revision))
            .collect();
        for (k, rev) in &acks {
            assert_eq!(
                got.get(k),
                Some(rev),
                "{}: acknowledged write {k}@{rev} is missing or changed",
                m.name
            );
        }
    }
}
