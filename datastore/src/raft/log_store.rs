//! The Raft log in its own RocksDB database. Appends and votes are fsynced
//! before openraft is told they are durable: an acknowledged write is on a
//! quorum's disks. openraft hands us whole batches of entries, so one fsync
//! covers every client request that arrived meanwhile (group commit).
//!
//! An append is written (readable at once, so the leader's replication can
//! send it) and returns; its fsync runs on the flusher thread, which tells
//! openraft when the entries are durable (`IOFlushed`). openraft 0.10 lets
//! the leader send the entries to its followers meanwhile (etcd writes its
//! WAL in parallel with sending MsgApp, Raft thesis 10.2.1), and counts the
//! leader itself in a quorum only once the callback came. One fsync covers
//! every append written before it started.
//!
//! A member that does not lead has nothing to overlap with its fsync: it
//! answers the leader's AppendEntries only once the entries are durable,
//! and openraft sends it one at a time. It writes and fsyncs inline and
//! reports at once, as etcd's followers save their WAL in the Raft loop,
//! which spares two thread hand-offs per append (to the flusher and back
//! to openraft's core). openraft takes the flushed log id as a watermark,
//! so this report may overtake an earlier append still queued for the
//! flusher: the inline fsync covers that one too.
//!
//! The committed log id (which lets a restarted member re-apply its log at
//! once, before it hears from a leader) changes with every commit. It is
//! kept in memory and written with the next append, purge or shutdown,
//! not on its own: a separate write per commit cost every member a RocksDB
//! write and a syscall per client write, more than the state machine's own
//! write (profile of a single client's puts). A stored value a little
//! behind the true one is still committed, which is all a restart needs.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

use super::log_tail::LogTail;
use super::types::{Entry, LogId, ServerMetrics, TypeConfig, Vote};

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    /// Callbacks of written, not yet fsynced appends, in order, for the
    /// flusher.
    flusher: std::sync::mpsc::Sender<IOFlushed<TypeConfig>>,
    committed: Arc<Mutex<Committed>>,
    /// Whether this member leads, once the Raft is built.
    metrics: ServerMetrics,
    /// The entries appended last, read back from memory.
    tail: Arc<LogTail>,
}

/// The committed log id openraft last reported, and whether it is newer
/// than the stored one.
#[derive(Default)]
struct Committed {
    latest: Option<LogId>,
    unsaved: bool,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The flusher thread: waits for appends, fsyncs the WAL once for all that
/// were written before it started, then reports each durable, in the order
/// they were made. Ends when the last [`LogStore`] is dropped.
fn run_flusher(db: Arc<DB>, rx: std::sync::mpsc::Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = rx.recv() {
        let mut done = vec![first];
        done.extend(rx.try_iter());
        let res = db.flush_wal(true);
        for cb in done {
            cb.io_completed(res.as_ref().map(|_| ()).map_err(io_err));
        }
    }
}

fn idx(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

impl LogStore {
    /// Opens the log in `dir`; `metrics` (set once the Raft is built)
    /// tells appends whether this member leads.
    pub fn open(dir: &Path, metrics: ServerMetrics) -> anyhow::Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // The log is written once, read back while followers catch up, and
        // purged behind snapshots: small memtables keep it from holding
        // 64 MiB (RocksDB's default) of already-replicated entries in memory.
        opts.set_db_write_buffer_size(32 << 20);
        // A WAL file is deleted only once every column family with data in
        // it is flushed; `meta` (the vote) is written too rarely to fill a
        // memtable, so without a cap it pins every WAL file since its last
        // write and the log directory grows without bound (compaction soak).
        opts.set_max_total_wal_size(64 << 20);
        // A memtable flush writes its SST file out in 256 KiB steps rather
        // than all at its closing fsync, which the appends' own fsyncs
        // would queue behind (see `Mvcc::open`).
        opts.set_bytes_per_sync(256 << 10);
        let cfs = [CF_LOGS, CF_META].map(|n| {
            let mut o = Options::default();
            o.set_write_buffer_size(16 << 20);
            ColumnFamilyDescriptor::new(n, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)
            .map_err(|e| anyhow::anyhow!("opening the Raft log database {}: {e}", dir.display()))?;
        let db = Arc::new(db);
        let (flusher, rx) = std::sync::mpsc::channel();
        let flush_db = db.clone();
        std::thread::Builder::new()
            .name("raft-log-fsync".into())
            .spawn(move || run_flusher(flush_db, rx))
            .map_err(|e| anyhow::anyhow!("starting the Raft log flusher: {e}"))?;
        Ok(LogStore {
            db,
            flusher,
            committed: Default::default(),
            metrics,
            tail: Default::default(),
        })
    }

    /// True when this member leads (or may: before the Raft is built).
    fn leads(&self) -> bool {
        use openraft::async_runtime::watch::WatchReceiver;
        self.metrics
            .get()
            .is_none_or(|rx| rx.borrow_watched().state == openraft::ServerState::Leader)
    }

    /// Adds the committed log id to `batch` if it changed since it was
    /// last stored.
    fn stage_committed(&self, batch: &mut WriteBatch) {
        let mut c = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        if std::mem::take(&mut c.unsaved) {
            batch.put_cf(self.meta(), KEY_COMMITTED, super::types::encode(&c.latest));
        }
    }

    /// Stores the latest committed log id, fsynced: called at shutdown.
    pub fn save_committed_now(&self) -> Result<(), std::io::Error> {
        let mut batch = WriteBatch::default();
        self.stage_committed(&mut batch);
        if batch.is_empty() {
            return Ok(());
        }
        self.db.write_opt(batch, &Self::sync_opts()).map_err(io_err)
    }

    fn logs(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_LOGS).expect("cf")
    }

    fn meta(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_META).expect("cf")
    }

    fn sync_opts() -> WriteOptions {
        let mut w = WriteOptions::default();
        w.set_sync(true);
        w
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, std::io::Error> {
        let raw = self.db.get_cf(self.meta(), key).map_err(io_err)?;
        match raw {
            Some(raw) => postcard::from_bytes(&raw).map(Some).map_err(io_err),
            None => Ok(None),
        }
    }

    /// Writes a metadata record, fsynced.
    fn put_meta<T: serde::Serialize>(&self, key: &[u8], v: &T) -> Result<(), std::io::Error> {
        self.db
            .put_cf_opt(
                self.meta(),
                key,
                super::types::encode(v),
                &Self::sync_opts(),
            )
            .map_err(io_err)
    }

    /// Index of the last entry in the log, for status reporting.
    pub fn last_index(&self) -> u64 {
        let mut it = self.db.raw_iterator_cf(self.logs());
        it.seek_to_last();
        it.key()
            .and_then(|k| k.try_into().ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, std::io::Error> {
        if let Some(entries) = self.tail.get(&range) {
            return Ok(entries);
        }
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => *x + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(self.logs());
        it.seek(idx(start));
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let i = u64::from_be_bytes(k.try_into().expect("8-byte log keys"));
            if !range.contains(&i) {
                break;
            }
            let entry: Entry = postcard::from_bytes(v).map_err(io_err)?;
            out.push(entry);
            it.next();
        }
        it.status().map_err(io_err)?;
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, std::io::Error> {
        self.get_meta(KEY_VOTE)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, std::io::Error> {
        let last_purged: Option<LogId> = self.get_meta::<Option<LogId>>(KEY_PURGED)?.flatten();
        let mut it = self.db.raw_iterator_cf(self.logs());
        it.seek_to_last();
        let last = match it.value() {
            Some(v) => {
                let e: Entry = postcard::from_bytes(v).map_err(io_err)?;
                Some(e.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), std::io::Error> {
        self.put_meta(KEY_VOTE, vote)
    }

    /// Kept in memory; stored with the next append (see the module doc).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), std::io::Error> {
        let mut c = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        if committed > c.latest {
            c.latest = committed;
            c.unsaved = true;
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, std::io::Error> {
        let stored = self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten();
        let mut c = self.committed.lock().unwrap_or_else(|p| p.into_inner());
        if stored > c.latest {
            c.latest = stored;
        }
        Ok(c.latest)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), std::io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut batch = WriteBatch::default();
        for e in &entries {
            batch.put_cf(self.logs(), idx(e.log_id.index), super::types::encode(e));
        }
        self.stage_committed(&mut batch);
        if !self.leads() {
            // Nothing to overlap with the fsync (module doc): inline.
            let res = self.db.write_opt(batch, &Self::sync_opts()).map_err(io_err);
            if res.is_ok() {
                self.tail.push(entries);
            }
            let reported = res.as_ref().map(|_| ()).map_err(io_err);
            callback.io_completed(reported);
            return res;
        }
        // Written without fsync (the WAL write is a plain `write`, visible
        // to readers at once); the flusher fsyncs it before the callback.
        // Every callback goes through the flusher, in order, so none is
        // reported durable before an earlier append's fsync (openraft 0.10
        // never submits an empty append, so no case of its own for one).
        self.db
            .write_opt(batch, &WriteOptions::default())
            .map_err(io_err)?;
        self.tail.push(entries);
        if let Err(std::sync::mpsc::SendError(cb)) = self.flusher.send(callback) {
            cb.io_completed(Err(io_err("the Raft log flusher has stopped")));
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), std::io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.logs(), idx(from), idx(u64::MAX));
        batch.delete_cf(self.logs(), idx(u64::MAX));
        // The tail first: whatever happens to the write, it never serves
        // an entry the log no longer has.
        self.tail.truncate_after(last_log_id.map(|l| l.index));
        self.db.write_opt(batch, &Self::sync_opts()).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), std::io::Error> {
        let mut batch = WriteBatch::default();
        batch.put_cf(self.meta(), KEY_PURGED, super::types::encode(&Some(log_id)));
        self.stage_committed(&mut batch);
        self.tail.purge(log_id.index);
        self.db
            .write_opt(batch, &Self::sync_opts())
            .map_err(io_err)?;
        self.db
            .delete_range_cf(self.logs(), idx(0), idx(log_id.index + 1))
            .map_err(io_err)
    }
}
