//! The log store's two shortcuts, as a restart or openraft sees them: the
//! committed log id is stored with the next write, not on its own, and a
//! member that does not lead reports an append durable before `append`
//! returns (it fsyncs inline), while a leader's report comes from the
//! flusher.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::impls::leader_id_adv::LeaderId;
use openraft::metrics::RaftServerMetrics;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::TypeConfigExt;
use openraft::type_config::alias::OneshotReceiverOf;
use openraft::{RaftLogReader, ServerState, StoredMembership};

use super::log_store::LogStore;
use super::types::{Command, Entry, EntryPayload, LogId, ServerMetrics, TypeConfig, Vote};

fn log_id(index: u64) -> LogId {
    LogId {
        leader_id: LeaderId {
            term: 1,
            node_id: 1,
        },
        index,
    }
}

fn entry(index: u64) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Command::Put(vec![index as u8])),
    }
}

/// Server metrics saying this member is in `state`.
fn metrics(state: ServerState) -> ServerMetrics {
    let m = RaftServerMetrics::<TypeConfig> {
        id: 1,
        vote: Vote::new(1, 1),
        state,
        current_leader: None,
        membership_config: Arc::new(StoredMembership::default()),
        committed_membership_config: Arc::new(StoredMembership::default()),
    };
    let (tx, rx) = TypeConfig::watch_channel(m);
    // The sender may go: a closed watch still reads its last value.
    drop(tx);
    let metrics = ServerMetrics::default();
    assert!(metrics.set(rx).is_ok());
    metrics
}

/// Opens the store, waiting for a dropped one's flusher thread to let go
/// of the database.
fn reopen(dir: &Path, m: ServerMetrics) -> LogStore {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match LogStore::open(dir, m.clone()) {
            Ok(s) => return s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopening the log: {e}"),
        }
    }
}

type Flushed = OneshotReceiverOf<TypeConfig, Result<(), std::io::Error>>;

async fn append(store: &mut LogStore, index: u64) -> Flushed {
    let (tx, rx) = TypeConfig::oneshot();
    store
        .append([entry(index)], IOFlushed::signal(tx))
        .await
        .expect("append");
    rx
}

#[tokio::test]
async fn committed_is_stored_with_the_next_append_and_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = reopen(dir.path(), metrics(ServerState::Follower));
    s.save_committed(Some(log_id(1))).await.unwrap();
    // Nothing written yet: a restart now knows nothing committed.
    drop(s);
    let mut s = reopen(dir.path(), metrics(ServerState::Follower));
    assert_eq!(s.read_committed().await.unwrap(), None);

    s.save_committed(Some(log_id(1))).await.unwrap();
    append(&mut s, 1).await.await.unwrap().unwrap();
    s.save_committed(Some(log_id(2))).await.unwrap();
    // In memory, the newest value is what openraft reads back.
    assert_eq!(s.read_committed().await.unwrap(), Some(log_id(2)));
    drop(s);
    let mut s = reopen(dir.path(), metrics(ServerState::Follower));
    assert_eq!(s.read_committed().await.unwrap(), Some(log_id(1)));

    s.save_committed(Some(log_id(3))).await.unwrap();
    // An older value never replaces a newer one.
    s.save_committed(Some(log_id(2))).await.unwrap();
    s.save_committed_now().unwrap();
    drop(s);
    let mut s = reopen(dir.path(), metrics(ServerState::Follower));
    assert_eq!(s.read_committed().await.unwrap(), Some(log_id(3)));
    let mut r = s.get_log_reader().await;
    assert_eq!(r.try_get_log_entries(1..2).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_follower_reports_its_append_durable_before_returning() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = reopen(dir.path(), metrics(ServerState::Follower));
    let mut rx = append(&mut s, 1).await;
    assert!(
        matches!(rx.try_recv(), Ok(Ok(()))),
        "a follower's append is fsynced and reported inline"
    );
}

#[tokio::test]
async fn a_leader_reports_its_append_from_the_flusher() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = reopen(dir.path(), metrics(ServerState::Leader));
    let rx = append(&mut s, 1).await;
    // The flusher reports it (possibly before we look, so only the
    // outcome is checked), and the entry is readable at once.
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .expect("the flusher reports the append")
        .unwrap()
        .unwrap();
    let mut r = s.get_log_reader().await;
    assert_eq!(r.try_get_log_entries(1..2).await.unwrap().len(), 1);
}

/// What openraft reads back is the log, whether from the in-memory tail
/// (`raft::log_tail`) or, after a restart, from disk: appends, a
/// truncation and a purge included.
#[tokio::test]
async fn reads_give_the_log_from_memory_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = reopen(dir.path(), metrics(ServerState::Follower));
    for i in 1..=5 {
        append(&mut s, i).await.await.unwrap().unwrap();
    }
    s.truncate_after(Some(log_id(3))).await.unwrap();
    let (tx, _rx) = TypeConfig::oneshot();
    let replaced = Entry {
        log_id: LogId {
            leader_id: LeaderId {
                term: 2,
                node_id: 2,
            },
            index: 4,
        },
        payload: EntryPayload::Normal(Command::Put(b"new".to_vec())),
    };
    s.append([replaced.clone()], IOFlushed::signal(tx))
        .await
        .unwrap();
    s.purge(log_id(1)).await.unwrap();
    let read = |mut r: LogStore| async move {
        r.try_get_log_entries(2..)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.log_id, format!("{:?}", e.payload)))
            .collect::<Vec<_>>()
    };
    let want = vec![
        (log_id(2), format!("{:?}", entry(2).payload)),
        (log_id(3), format!("{:?}", entry(3).payload)),
        (replaced.log_id, format!("{:?}", replaced.payload)),
    ];
    assert_eq!(read(s.get_log_reader().await).await, want);
    drop(s);
    let mut s = reopen(dir.path(), metrics(ServerState::Follower));
    assert_eq!(read(s.get_log_reader().await).await, want);
    assert!(
        s.try_get_log_entries(1..2).await.unwrap().is_empty(),
        "purged"
    );
}
