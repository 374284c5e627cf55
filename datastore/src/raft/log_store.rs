//! The Raft log in its own RocksDB database. Appends and votes are fsynced
//! before openraft is told they are durable: an acknowledged write is on a
//! quorum's disks. openraft hands us whole batches of entries, so one fsync
//! covers every client request that arrived meanwhile (group commit).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, Vote};
use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

use super::types::{LogId, NodeId, StorageError, TypeConfig};

const CF_LOGS: &str = "logs";
const CF_META: &str = "meta";
const KEY_VOTE: &[u8] = b"vote";
const KEY_PURGED: &[u8] = b"last_purged";
const KEY_COMMITTED: &[u8] = b"committed";

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

fn io_err(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageError::from_io_error(subject, verb, std::io::Error::other(e.to_string()))
}

fn idx(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

impl LogStore {
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
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
        let cfs = [CF_LOGS, CF_META].map(|n| {
            let mut o = Options::default();
            o.set_write_buffer_size(16 << 20);
            ColumnFamilyDescriptor::new(n, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs)
            .map_err(|e| anyhow::anyhow!("opening the Raft log database {}: {e}", dir.display()))?;
        Ok(LogStore { db: Arc::new(db) })
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
    ) -> Result<Option<T>, StorageError> {
        let raw = self
            .db
            .get_cf(self.meta(), key)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        match raw {
            Some(raw) => postcard::from_bytes(&raw)
                .map(Some)
                .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Read, e)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        v: &T,
        sync: bool,
    ) -> Result<(), StorageError> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db
            .put_cf_opt(self.meta(), key, super::types::encode(v), &opts)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))
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
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
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
            let entry: Entry<TypeConfig> = postcard::from_bytes(v)
                .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            out.push(entry);
            it.next();
        }
        it.status()
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta::<Option<LogId>>(KEY_PURGED)?.flatten();
        let mut it = self.db.raw_iterator_cf(self.logs());
        it.seek_to_last();
        let last = match it.value() {
            Some(v) => {
                let e: Entry<TypeConfig> = postcard::from_bytes(v)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
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

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, true)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta(KEY_COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::default();
        for e in entries {
            batch.put_cf(self.logs(), idx(e.log_id.index), super::types::encode(&e));
        }
        if batch.is_empty() {
            // Nothing to persist (every earlier append was synced before
            // its callback): no write, no fsync.
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        // The fsync blocks this thread for a disk round trip: let the
        // runtime move other tasks (gRPC, replication) off it meanwhile.
        let res = tokio::task::block_in_place(|| self.db.write_opt(batch, &Self::sync_opts()))
            .map_err(|e| std::io::Error::other(e.to_string()));
        let failed = res.as_ref().err().map(|e| e.to_string());
        callback.log_io_completed(res);
        if let Some(e) = failed {
            return Err(io_err(
                ErrorSubject::Logs,
                ErrorVerb::Write,
                std::io::Error::other(e),
            ));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.logs(), idx(log_id.index), idx(u64::MAX));
        batch.delete_cf(self.logs(), idx(u64::MAX));
        self.db
            .write_opt(batch, &Self::sync_opts())
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.put_meta(KEY_PURGED, &Some(log_id), true)?;
        self.db
            .delete_range_cf(self.logs(), idx(0), idx(log_id.index + 1))
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
