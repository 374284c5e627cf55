//! The multi-version keyspace, kept in RocksDB.
//!
//! Two column families hold the data, like etcd's bbolt `key` bucket plus
//! its in-memory `treeIndex`, except that both are on disk so memory stays
//! bounded whatever the keyspace size:
//! - `rev`: `main ++ sub` → [`RevRecord`]: every change in revision order
//!   (what watch replay and compaction walk);
//! - `index`: `escape(key) ++ !main ++ !sub` → [`IndexEntry`]: every version
//!   of every key, newest first (what Range and Txn compares read).
//!
//! `meta` holds the current and compacted revisions (and, written by the
//! Raft state machine in the same batch, the applied log id), so a crash
//! never separates a change from the revision counter that names it.
//!
//! Readers use a RocksDB snapshot and only look at versions at or below
//! their read revision, so the single writer (the Raft apply loop) never
//! blocks them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use rocksdb::{ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use crate::errors::EtcdError;
use crate::keycodec;
use crate::proto::{Event, EventType, KeyValue};

pub const CF_REV: &str = "rev";
pub const CF_INDEX: &str = "index";
pub const CF_LEASE: &str = "lease";
pub const CF_LEASE_KEYS: &str = "lease_keys";
pub const CF_META: &str = "meta";
/// Every column family of the state-machine database, in snapshot order.
pub const ALL_CFS: [&str; 5] = [CF_META, CF_REV, CF_INDEX, CF_LEASE, CF_LEASE_KEYS];

pub const META_REV: &[u8] = b"current_rev";
pub const META_COMPACT: &[u8] = b"compact_rev";
pub const META_PHYSICAL_COMPACT: &[u8] = b"physical_compact_rev";

/// How an iterator over the key index will be used: see [`Mvcc::index_iter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSeek {
    OneKey,
    ManyKeys,
}

/// One change in the revision log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevRecord {
    /// `serde_bytes`: one copy instead of a `u8` at a time (same encoding).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub create: i64,
    pub version: i64,
    pub lease: i64,
    pub tombstone: bool,
}

/// One version of one key in the key index (the value lives in `rev`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct IndexEntry {
    pub create: i64,
    pub version: i64,
    pub lease: i64,
    pub tombstone: bool,
}

/// The upper end of a key range, decoded from etcd's `range_end` convention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeEnd {
    /// Empty `range_end`: just `key`.
    Single,
    /// `range_end == "\0"`: every key at or after `key`.
    Unbounded,
    /// Keys in `[key, end)`.
    Until(Vec<u8>),
}

impl RangeEnd {
    pub fn from_wire(range_end: &[u8]) -> Self {
        match range_end {
            [] => RangeEnd::Single,
            [0] => RangeEnd::Unbounded,
            end => RangeEnd::Until(end.to_vec()),
        }
    }

    pub fn contains(&self, start: &[u8], key: &[u8]) -> bool {
        match self {
            RangeEnd::Single => key == start,
            RangeEnd::Unbounded => key >= start,
            RangeEnd::Until(end) => key >= start && key < end.as_slice(),
        }
    }

    /// True once `key` (visited in ascending order from `start`) is past the range.
    fn is_past(&self, start: &[u8], key: &[u8]) -> bool {
        match self {
            RangeEnd::Single => key != start,
            RangeEnd::Unbounded => false,
            RangeEnd::Until(end) => key >= end.as_slice(),
        }
    }
}

/// A key as seen at some revision, without its value.
#[derive(Debug, Clone)]
pub struct KeyMeta {
    pub key: Vec<u8>,
    pub main: i64,
    pub sub: u32,
    pub entry: IndexEntry,
}

/// What a range read found.
#[derive(Debug, Default)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Keys in the range at the read revision, regardless of `limit`.
    pub count: i64,
}

pub type Snapshot<'a> = rocksdb::SnapshotWithThreadMode<'a, DB>;

/// The store. Cheap to share: clone the `Arc`.
pub struct Mvcc {
    db: Arc<DB>,
    current: AtomicI64,
    compacted: AtomicI64,
    /// Serialises physical compaction against snapshot installation.
    pub(crate) maintenance: Mutex<()>,
    nosync: WriteOptions,
    /// The Raft log index the state machine has applied (and made visible
    /// to reads) up to: a follower answers a forwarded write once its own
    /// store reached the write's entry, so the client reads its write there.
    applied: tokio::sync::watch::Sender<u64>,
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("postcard encoding of a plain struct cannot fail")
}

pub(crate) fn dec<'a, T: Deserialize<'a>>(raw: &'a [u8], what: &str) -> Result<T, EtcdError> {
    postcard::from_bytes(raw)
        .map_err(|e| EtcdError::Internal(format!("corrupt {what} record: {e}")))
}

fn i64_from(raw: Option<Vec<u8>>) -> i64 {
    raw.and_then(|v| v.try_into().ok())
        .map(i64::from_be_bytes)
        .unwrap_or(0)
}

impl Mvcc {
    /// Opens (or creates) the state-machine database in `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Arc<Self>> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts.set_max_total_wal_size(64 << 20);
        // Bounded memory whatever the keyspace: all memtables together stay
        // under 64 MiB (RocksDB's default is 64 MiB *per column family*,
        // twice over), and the column families share one 64 MiB block cache
        // instead of one default cache each.
        opts.set_db_write_buffer_size(64 << 20);
        // The Raft log is the durable record (see `raft::state_machine`):
        // the state machine's WAL is buffered in-process and written out
        // once per applied run of entries, not once per command. A crash
        // loses at most a suffix, which openraft re-applies from the log;
        // snapshots, restores and shutdown sync it explicitly.
        opts.set_manual_wal_flush(true);
        // That WAL is never fsynced, so the kernel writes it back on its
        // own: the whole file at once, when its first dirty page is 30 s
        // old (`vm.dirty_expire_centisecs`). That burst joined the same
        // ext4 journal commit as the Raft log's fsyncs and stalled every
        // write for 10-20 ms twice a minute (`check perf --load=s`; etcd,
        // whose bbolt commits every 100 ms, has no such burst). Starting
        // the writeback every 256 KiB (`sync_file_range`, which does not
        // wait) keeps it small and steady; new SST files likewise.
        // Measured: `check perf m`'s load shape, writes over 10 ms from
        // 227-242 to 59-79 per 45 s, the slowest from 41-54 to 26-32 ms.
        opts.set_wal_bytes_per_sync(256 << 10);
        opts.set_bytes_per_sync(256 << 10);
        let cache = rocksdb::Cache::new_lru_cache(64 << 20);
        let cfs = ALL_CFS.iter().map(|n| {
            let mut o = Options::default();
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_write_buffer_size(16 << 20);
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(&cache);
            if *n == CF_INDEX {
                // Every write looks up its key's newest version (and every
                // single-key read does): with a Bloom filter per file and
                // per memtable on the key part of the index key, that seek
                // skips whatever never held the key instead of searching
                // every file's index (measured: a seventh of a member's CPU
                // under `check perf`). Iterators over several keys must then
                // ask for total order ([`Mvcc::index_iter`]).
                o.set_prefix_extractor(rocksdb::SliceTransform::create(
                    "k8sup.index.key",
                    keycodec::index_prefix,
                    Some(keycodec::index_prefix_in_domain),
                ));
                o.set_memtable_prefix_bloom_ratio(0.1);
                table.set_bloom_filter(10.0, false);
                table.set_whole_key_filtering(false);
            }
            o.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(*n, o)
        });
        let db = DB::open_cf_descriptors(&opts, dir, cfs).map_err(|e| {
            anyhow::anyhow!("opening the state-machine database {}: {e}", dir.display())
        })?;
        let db = Arc::new(db);
        let meta = db.cf_handle(CF_META).expect("meta cf");
        let mut current = i64_from(db.get_cf(meta, META_REV)?);
        if current == 0 {
            // etcd: an empty store is at revision 1.
            current = 1;
        }
        let compacted = i64_from(db.get_cf(meta, META_COMPACT)?);
        let mut nosync = WriteOptions::default();
        nosync.set_sync(false);
        Ok(Arc::new(Mvcc {
            db,
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            maintenance: Mutex::new(()),
            nosync,
            applied: tokio::sync::watch::Sender::new(0),
        }))
    }

    pub fn db(&self) -> &Arc<DB> {
        &self.db
    }

    pub fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    pub fn current_rev(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }

    /// Records that every entry up to `index` is applied (it never goes back).
    pub(crate) fn publish_applied(&self, index: u64) {
        self.applied.send_if_modified(|a| {
            let newer = index > *a;
            if newer {
                *a = index;
            }
            newer
        });
    }

    /// The last applied log index published by the state machine.
    pub fn applied_index(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the entry at `index` is applied on this member, or fails
    /// with etcd's `request timed out` after `timeout`.
    pub async fn wait_applied(
        &self,
        index: u64,
        timeout: std::time::Duration,
    ) -> Result<(), crate::errors::EtcdError> {
        if self.applied_index() >= index {
            return Ok(());
        }
        let mut rx = self.applied.subscribe();
        match tokio::time::timeout(timeout, rx.wait_for(|a| *a >= index)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(crate::errors::EtcdError::Timeout),
        }
    }

    pub fn compact_rev(&self) -> i64 {
        self.compacted.load(Ordering::Acquire)
    }

    /// The revision up to which [`Mvcc::physical_compact`] has removed history.
    pub fn physical_compact_rev(&self) -> Result<i64, EtcdError> {
        Ok(i64_from(
            self.db.get_cf(self.cf(CF_META), META_PHYSICAL_COMPACT)?,
        ))
    }

    /// Re-reads the counters after the database was replaced (snapshot install).
    pub fn reload_counters(&self) -> Result<(), EtcdError> {
        let meta = self.cf(CF_META);
        let cur = i64_from(self.db.get_cf(meta, META_REV)?).max(1);
        let comp = i64_from(self.db.get_cf(meta, META_COMPACT)?);
        self.current.store(cur, Ordering::Release);
        self.compacted.store(comp, Ordering::Release);
        Ok(())
    }

    pub fn snapshot(&self) -> Snapshot<'_> {
        self.db.snapshot()
    }

    /// Checks a read revision against etcd's rules and resolves 0 to `current`.
    pub fn resolve_read_rev(&self, rev: i64, current: i64) -> Result<i64, EtcdError> {
        if rev > current {
            return Err(EtcdError::FutureRev);
        }
        let rev = if rev <= 0 { current } else { rev };
        if rev < self.compact_rev() {
            return Err(EtcdError::Compacted);
        }
        Ok(rev)
    }

    /// Read options for an iterator that walks a whole column family
    /// (snapshots, hashes): total order, whatever the family's prefix
    /// filters.
    pub fn whole_cf() -> rocksdb::ReadOptions {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_total_order_seek(true);
        ro
    }

    /// An iterator over the key index at `snap`. `OneKey` iterators use the
    /// prefix Bloom filters and stop at the end of the sought key's
    /// versions; an iterator that walks from key to key must be `ManyKeys`
    /// (total order), or it could silently skip keys in filtered-out files.
    pub fn index_iter<'s>(
        &'s self,
        snap: &'s Snapshot<'_>,
        seek: IndexSeek,
    ) -> rocksdb::DBRawIteratorWithThreadMode<'s, DB> {
        let mut ro = rocksdb::ReadOptions::default();
        match seek {
            IndexSeek::OneKey => ro.set_prefix_same_as_start(true),
            IndexSeek::ManyKeys => ro.set_total_order_seek(true),
        }
        snap.raw_iterator_cf_opt(self.cf(CF_INDEX), ro)
    }

    /// The newest version of `key` at or below `rev` (tombstones included).
    pub fn get_meta(
        &self,
        snap: &Snapshot<'_>,
        key: &[u8],
        rev: i64,
    ) -> Result<Option<KeyMeta>, EtcdError> {
        let prefix = keycodec::escape(key);
        let seek = keycodec::index_key(key, rev, u32::MAX);
        let mut it = self.index_iter(snap, IndexSeek::OneKey);
        it.seek(&seek);
        if let (Some(k), Some(v)) = (it.key(), it.value())
            && k.len() == prefix.len() + 12
            && k.starts_with(&prefix)
        {
            let (_, main, sub) = keycodec::decode_index_key(k)
                .ok_or_else(|| EtcdError::internal("corrupt index key"))?;
            let entry: IndexEntry = dec(v, "index")?;
            return Ok(Some(KeyMeta {
                key: key.to_vec(),
                main,
                sub,
                entry,
            }));
        }
        it.status()?;
        Ok(None)
    }

    /// Visits the live keys of `[start, end)` at `rev` in key order until
    /// `visit` returns false.
    pub fn scan(
        &self,
        snap: &Snapshot<'_>,
        start: &[u8],
        end: &RangeEnd,
        rev: i64,
        mut visit: impl FnMut(KeyMeta) -> bool,
    ) -> Result<(), EtcdError> {
        if *end == RangeEnd::Single {
            if let Some(m) = self.get_meta(snap, start, rev)?
                && !m.entry.tombstone
            {
                visit(m);
            }
            return Ok(());
        }
        if let RangeEnd::Until(e) = end
            && e.as_slice() <= start
        {
            return Ok(());
        }
        let mut it = self.index_iter(snap, IndexSeek::ManyKeys);
        it.seek(keycodec::escape(start));
        let mut done_key: Option<Vec<u8>> = None;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (key, main, sub) = keycodec::decode_index_key(k)
                .ok_or_else(|| EtcdError::internal("corrupt index key"))?;
            if end.is_past(start, &key) {
                break;
            }
            if main <= rev && done_key.as_deref() != Some(key.as_slice()) {
                let entry: IndexEntry = dec(v, "index")?;
                let live = !entry.tombstone;
                done_key = Some(key.clone());
                if live
                    && !visit(KeyMeta {
                        key,
                        main,
                        sub,
                        entry,
                    })
                {
                    return Ok(());
                }
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// Loads the record of one version.
    pub fn record(&self, snap: &Snapshot<'_>, main: i64, sub: u32) -> Result<RevRecord, EtcdError> {
        let raw = snap
            .get_cf(self.cf(CF_REV), keycodec::rev_key(main, sub))?
            .ok_or_else(|| {
                EtcdError::Internal(format!("revision {main}.{sub} is indexed but missing"))
            })?;
        dec(&raw, "revision")
    }

    /// Turns key metadata into full key-values (values fetched in one batch).
    pub fn materialize(
        &self,
        snap: &Snapshot<'_>,
        metas: Vec<KeyMeta>,
        keys_only: bool,
    ) -> Result<Vec<KeyValue>, EtcdError> {
        let values: Vec<Vec<u8>> = if keys_only {
            vec![Vec::new(); metas.len()]
        } else {
            let cf = self.cf(CF_REV);
            let keys: Vec<[u8; 12]> = metas
                .iter()
                .map(|m| keycodec::rev_key(m.main, m.sub))
                .collect();
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_snapshot(snap);
            let got = self
                .db
                .batched_multi_get_cf_opt(cf, keys.iter(), false, &ro);
            let mut out = Vec::with_capacity(metas.len());
            for (m, r) in metas.iter().zip(got) {
                let raw = r?.ok_or_else(|| {
                    EtcdError::Internal(format!(
                        "revision {}.{} is indexed but missing",
                        m.main, m.sub
                    ))
                })?;
                let rec: RevRecord = dec(&raw, "revision")?;
                out.push(rec.value);
            }
            out
        };
        Ok(metas
            .into_iter()
            .zip(values)
            .map(|(m, value)| KeyValue {
                key: m.key,
                create_revision: m.entry.create,
                mod_revision: m.main,
                version: m.entry.version,
                value,
                lease: m.entry.lease,
            })
            .collect())
    }

    #[allow(clippy::too_many_arguments)]
    /// etcd's mvcc range: keys of `[start, end)` at `rev` (already resolved),
    /// at most `limit` of them (0 = all), with the total count.
    pub fn range(
        &self,
        snap: &Snapshot<'_>,
        start: &[u8],
        end: &RangeEnd,
        rev: i64,
        limit: usize,
        count_only: bool,
        keys_only: bool,
    ) -> Result<RangeResult, EtcdError> {
        let mut metas = Vec::new();
        let mut count = 0i64;
        self.scan(snap, start, end, rev, |m| {
            count += 1;
            if !count_only && (limit == 0 || metas.len() < limit) {
                metas.push(m);
            }
            true
        })?;
        let kvs = if count_only {
            Vec::new()
        } else {
            self.materialize(snap, metas, keys_only)?
        };
        Ok(RangeResult { kvs, count })
    }

    /// Writes a batch without fsync: the Raft log is the durable record, and
    /// the applied log id travels in the same batch (see `raft::state_machine`).
    pub fn write(&self, batch: WriteBatch) -> Result<(), EtcdError> {
        self.db.write_opt(batch, &self.nosync)?;
        Ok(())
    }

    pub(crate) fn publish_revs(&self, current: i64, compacted: i64) {
        self.current.store(current, Ordering::Release);
        self.compacted.store(compacted, Ordering::Release);
    }

    /// Starts a write transaction on top of the current revision.
    pub fn begin_write(&self) -> WriteTxn<'_> {
        // Revision first, snapshot second: the snapshot then holds at least
        // everything up to `base_rev` (and reads ignore anything newer).
        let base_rev = self.current_rev();
        let compact_rev = self.compact_rev();
        WriteTxn {
            mvcc: self,
            snap: self.db.snapshot(),
            batch: WriteBatch::default(),
            base_rev,
            compact_rev,
            sub: 0,
            overlay: BTreeMap::new(),
            events: Vec::new(),
        }
    }

    /// Total bytes RocksDB holds for the state machine (SSTs + memtables).
    pub fn db_size(&self) -> i64 {
        let mut total = 0u64;
        for name in ALL_CFS {
            let cf = self.cf(name);
            for prop in [
                "rocksdb.total-sst-files-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                total += self
                    .db
                    .property_int_value_cf(cf, prop)
                    .ok()
                    .flatten()
                    .unwrap_or(0);
            }
        }
        total as i64
    }

    /// Size of the live data, as RocksDB estimates it.
    pub fn db_size_in_use(&self) -> i64 {
        let mut total = 0u64;
        for name in ALL_CFS {
            let cf = self.cf(name);
            total += self
                .db
                .property_int_value_cf(cf, "rocksdb.estimate-live-data-size")
                .ok()
                .flatten()
                .unwrap_or(0);
            total += self
                .db
                .property_int_value_cf(cf, "rocksdb.cur-size-all-mem-tables")
                .ok()
                .flatten()
                .unwrap_or(0);
        }
        total as i64
    }

    /// Full manual compaction of every column family: etcd's `defrag`.
    pub fn defragment(&self) {
        for name in ALL_CFS {
            self.db
                .compact_range_cf(self.cf(name), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// Removes the history a `Compact(target)` made unreachable: for every
    /// key changed since the previous physical compaction, every version
    /// older than its newest version at or below `target`, and that newest
    /// version too when it is a tombstone *older than* `target`. Keys
    /// untouched since then are already in that state. Runs in the
    /// background; readers never see the difference because they are refused
    /// below the compacted revision.
    ///
    /// A tombstone written exactly at `target` is kept: a watch may start at
    /// the compacted revision itself, and must then replay that delete
    /// (etcd-io/etcd#18089, fixed in etcd 3.4.33 and 3.5.15 by keeping it).
    /// The next compaction removes it, which is why the key scan starts at
    /// the previous target rather than just after it.
    pub fn physical_compact(&self, target: i64) -> Result<u64, EtcdError> {
        let _guard = self.maintenance.lock().unwrap_or_else(|p| p.into_inner());
        let meta = self.cf(CF_META);
        let done = i64_from(self.db.get_cf(meta, META_PHYSICAL_COMPACT)?);
        if target <= done {
            return Ok(0);
        }
        let rev_cf = self.cf(CF_REV);
        let index_cf = self.cf(CF_INDEX);
        let snap = self.db.snapshot();
        // Keys changed in [done, target]: `done` itself for the tombstones
        // the previous compaction had to keep.
        let mut keys = std::collections::BTreeSet::new();
        let mut it = snap.raw_iterator_cf(rev_cf);
        it.seek(keycodec::rev_key(done.max(1), 0));
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (main, _) = keycodec::decode_rev_key(k)
                .ok_or_else(|| EtcdError::internal("corrupt revision key"))?;
            if main > target {
                break;
            }
            let rec: RevRecord = dec(v, "revision")?;
            keys.insert(rec.key);
            it.next();
        }
        it.status()?;
        drop(it);
        let mut removed = 0u64;
        let mut batch = WriteBatch::default();
        for key in keys {
            let prefix = keycodec::escape(&key);
            let mut it = self.index_iter(&snap, IndexSeek::OneKey);
            it.seek(keycodec::index_key(&key, target, u32::MAX));
            let mut first = true;
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !(k.len() == prefix.len() + 12 && k.starts_with(&prefix)) {
                    break;
                }
                let (_, main, sub) = keycodec::decode_index_key(k)
                    .ok_or_else(|| EtcdError::internal("corrupt index key"))?;
                let entry: IndexEntry = dec(v, "index")?;
                if !first || (entry.tombstone && main < target) {
                    batch.delete_cf(index_cf, k);
                    batch.delete_cf(rev_cf, keycodec::rev_key(main, sub));
                    removed += 1;
                }
                first = false;
                it.next();
            }
            it.status()?;
            if batch.len() >= 20_000 {
                self.db
                    .write_opt(std::mem::take(&mut batch), &self.nosync)?;
            }
        }
        batch.put_cf(meta, META_PHYSICAL_COMPACT, target.to_be_bytes());
        self.db.write_opt(batch, &self.nosync)?;
        Ok(removed)
    }

    /// Walks the revision log from `from` (inclusive) to `to` (inclusive),
    /// calling `visit` with each change as an etcd event.
    pub fn history(
        &self,
        snap: &Snapshot<'_>,
        from: i64,
        to: i64,
        mut visit: impl FnMut(i64, u32, Event) -> Result<bool, EtcdError>,
    ) -> Result<(), EtcdError> {
        let mut it = snap.raw_iterator_cf(self.cf(CF_REV));
        it.seek(keycodec::rev_key(from.max(1), 0));
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let (main, sub) = keycodec::decode_rev_key(k)
                .ok_or_else(|| EtcdError::internal("corrupt revision key"))?;
            if main > to {
                break;
            }
            let rec: RevRecord = dec(v, "revision")?;
            if !visit(main, sub, record_event(main, rec))? {
                return Ok(());
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// `key` as it was at revision `main - 1`, if live: what etcd reports as
    /// an event's `prev_kv` (it reads at `rev - 1`, so a key created and
    /// deleted in one transaction has no prev_kv on its delete).
    pub fn prev_kv(
        &self,
        snap: &Snapshot<'_>,
        key: &[u8],
        main: i64,
    ) -> Result<Option<KeyValue>, EtcdError> {
        self.get_live(snap, key, main - 1)
    }

    /// `key` with its value as of `rev`, if it was live then.
    pub fn get_live(
        &self,
        snap: &Snapshot<'_>,
        key: &[u8],
        rev: i64,
    ) -> Result<Option<KeyValue>, EtcdError> {
        match self.get_meta(snap, key, rev)? {
            Some(m) if !m.entry.tombstone => Ok(self.materialize(snap, vec![m], false)?.pop()),
            _ => Ok(None),
        }
    }
}

/// The etcd event for one revision record: deletes carry only the key and
/// the deleting revision, like etcd's.
pub fn record_event(main: i64, rec: RevRecord) -> Event {
    if rec.tombstone {
        Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: rec.key,
                mod_revision: main,
                ..Default::default()
            }),
            prev_kv: None,
        }
    } else {
        Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: rec.key,
                create_revision: rec.create,
                mod_revision: main,
                version: rec.version,
                value: rec.value,
                lease: rec.lease,
            }),
            prev_kv: None,
        }
    }
}

/// A key's state inside a write transaction that changed it.
#[derive(Debug, Clone)]
enum Pending {
    Live(KeyValue),
    Deleted,
}

/// One write transaction: all its changes share revision `base_rev + 1`
/// and become visible atomically when the batch is written.
pub struct WriteTxn<'a> {
    mvcc: &'a Mvcc,
    snap: Snapshot<'a>,
    pub batch: WriteBatch,
    base_rev: i64,
    compact_rev: i64,
    sub: u32,
    overlay: BTreeMap<Vec<u8>, Pending>,
    /// The changes so far, as watch events. Their `prev_kv` is left empty:
    /// as in etcd, only a watcher that asked for it reads it (at `rev - 1`),
    /// so a write never reads a value nobody wants.
    pub events: Vec<Event>,
}

impl<'a> WriteTxn<'a> {
    pub fn mvcc(&self) -> &'a Mvcc {
        self.mvcc
    }

    /// The revision this transaction reads at: etcd reports the new
    /// revision once the transaction has written something.
    pub fn rev(&self) -> i64 {
        if self.overlay.is_empty() {
            self.base_rev
        } else {
            self.base_rev + 1
        }
    }

    pub fn base_rev(&self) -> i64 {
        self.base_rev
    }

    pub fn has_changes(&self) -> bool {
        !self.overlay.is_empty()
    }

    pub fn compact_rev(&self) -> i64 {
        self.compact_rev
    }

    pub fn set_compact_rev(&mut self, rev: i64) {
        self.compact_rev = rev;
        self.batch
            .put_cf(self.mvcc.cf(CF_META), META_COMPACT, rev.to_be_bytes());
    }

    /// The current value of `key`, including this transaction's changes.
    pub fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
        if let Some(p) = self.overlay.get(key) {
            return Ok(match p {
                Pending::Live(kv) => Some(kv.clone()),
                Pending::Deleted => None,
            });
        }
        self.mvcc.get_live(&self.snap, key, self.base_rev)
    }

    /// A range read inside the transaction (`rev` 0 = current, including
    /// this transaction's own changes, as etcd does).
    pub fn range(
        &self,
        start: &[u8],
        end: &RangeEnd,
        rev: i64,
        limit: usize,
        count_only: bool,
        keys_only: bool,
    ) -> Result<RangeResult, EtcdError> {
        let cur = self.rev();
        if rev > cur {
            return Err(EtcdError::FutureRev);
        }
        let rev = if rev <= 0 { cur } else { rev };
        if rev < self.compact_rev {
            return Err(EtcdError::Compacted);
        }
        let touched = self.overlay.keys().any(|k| end.contains(start, k));
        if rev <= self.base_rev || !touched {
            return self.mvcc.range(
                &self.snap,
                start,
                end,
                rev.min(self.base_rev),
                limit,
                count_only,
                keys_only,
            );
        }
        // Slow path: merge this transaction's own changes into the result.
        let base = self
            .mvcc
            .range(&self.snap, start, end, self.base_rev, 0, false, keys_only)?;
        let mut merged: BTreeMap<Vec<u8>, KeyValue> = base
            .kvs
            .into_iter()
            .map(|kv| (kv.key.clone(), kv))
            .collect();
        for (k, p) in &self.overlay {
            if end.contains(start, k) {
                match p {
                    Pending::Live(kv) => {
                        let mut kv = kv.clone();
                        if keys_only {
                            kv.value.clear();
                        }
                        merged.insert(k.clone(), kv);
                    }
                    Pending::Deleted => {
                        merged.remove(k);
                    }
                }
            }
        }
        let count = merged.len() as i64;
        let kvs = if count_only {
            Vec::new()
        } else {
            merged
                .into_values()
                .take(if limit == 0 { usize::MAX } else { limit })
                .collect()
        };
        Ok(RangeResult { kvs, count })
    }

    /// What a put needs of the key's current state (this transaction's
    /// changes included): its creation revision, version and lease, but
    /// not its value, which stays on disk.
    fn current_meta(&self, key: &[u8]) -> Result<Option<IndexEntry>, EtcdError> {
        if let Some(p) = self.overlay.get(key) {
            return Ok(match p {
                Pending::Live(kv) => Some(IndexEntry {
                    create: kv.create_revision,
                    version: kv.version,
                    lease: kv.lease,
                    tombstone: false,
                }),
                Pending::Deleted => None,
            });
        }
        Ok(self
            .mvcc
            .get_meta(&self.snap, key, self.base_rev)?
            .map(|m| m.entry)
            .filter(|e| !e.tombstone))
    }

    /// etcd's `Put`: returns the revision of the write.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> Result<i64, EtcdError> {
        let rev = self.base_rev + 1;
        let prev = self.current_meta(key)?;
        let (create, version) = match &prev {
            Some(p) => (p.create, p.version + 1),
            None => (rev, 1),
        };
        let sub = self.sub;
        self.sub += 1;
        let rec = RevRecord {
            key: key.to_vec(),
            value,
            create,
            version,
            lease,
            tombstone: false,
        };
        let entry = IndexEntry {
            create,
            version,
            lease,
            tombstone: false,
        };
        self.batch
            .put_cf(self.mvcc.cf(CF_REV), keycodec::rev_key(rev, sub), enc(&rec));
        self.batch.put_cf(
            self.mvcc.cf(CF_INDEX),
            keycodec::index_key(key, rev, sub),
            enc(&entry),
        );
        let prev_lease = prev.map(|p| p.lease).unwrap_or(0);
        if prev_lease != 0 && prev_lease != lease {
            self.batch.delete_cf(
                self.mvcc.cf(CF_LEASE_KEYS),
                keycodec::lease_key_key(prev_lease, key),
            );
        }
        if lease != 0 {
            self.batch.put_cf(
                self.mvcc.cf(CF_LEASE_KEYS),
                keycodec::lease_key_key(lease, key),
                b"",
            );
        }
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: create,
            mod_revision: rev,
            version,
            value: rec.value,
            lease,
        };
        self.overlay.insert(key.to_vec(), Pending::Live(kv.clone()));
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
        Ok(rev)
    }

    /// etcd's `DeleteRange`: returns the deleted keys as they were before
    /// the deletion, with their values only if `with_values` (a request's
    /// `prev_kv`): a delete of a large prefix then reads no value at all.
    pub fn delete_range(
        &mut self,
        start: &[u8],
        end: &RangeEnd,
        with_values: bool,
    ) -> Result<Vec<KeyValue>, EtcdError> {
        let live = self.range(start, end, 0, 0, false, !with_values)?.kvs;
        let rev = self.base_rev + 1;
        for prev in &live {
            let sub = self.sub;
            self.sub += 1;
            let rec = RevRecord {
                key: prev.key.clone(),
                value: Vec::new(),
                create: 0,
                version: 0,
                lease: 0,
                tombstone: true,
            };
            let entry = IndexEntry {
                create: 0,
                version: 0,
                lease: 0,
                tombstone: true,
            };
            self.batch
                .put_cf(self.mvcc.cf(CF_REV), keycodec::rev_key(rev, sub), enc(&rec));
            self.batch.put_cf(
                self.mvcc.cf(CF_INDEX),
                keycodec::index_key(&prev.key, rev, sub),
                enc(&entry),
            );
            if prev.lease != 0 {
                self.batch.delete_cf(
                    self.mvcc.cf(CF_LEASE_KEYS),
                    keycodec::lease_key_key(prev.lease, &prev.key),
                );
            }
            self.overlay.insert(prev.key.clone(), Pending::Deleted);
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: prev.key.clone(),
                    mod_revision: rev,
                    ..Default::default()
                }),
                prev_kv: None,
            });
        }
        Ok(live)
    }

    /// Finishes the transaction: records the new revision if anything
    /// changed. Returns the batch to write, the revision after it, and events.
    pub fn finish(mut self) -> (WriteBatch, i64, i64, Vec<Event>) {
        let rev = self.rev();
        if self.has_changes() {
            self.batch
                .put_cf(self.mvcc.cf(CF_META), META_REV, rev.to_be_bytes());
        }
        (self.batch, rev, self.compact_rev, self.events)
    }
}
