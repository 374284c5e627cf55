//! The Raft state machine: applies committed commands to the MVCC store.
//!
//! Each entry is one RocksDB write batch holding its changes, the new
//! revision and the applied log id, written without fsync: the Raft log
//! already holds the entry durably, and after a crash openraft re-applies
//! whatever the state machine had not persisted. A group-committed entry
//! ([`Command::Batch`]) is one batch per command plus a progress marker
//! (see [`StateMachine::apply_batch`]). Before a snapshot is taken (and the
//! log purged behind it) the WAL is synced.
//!
//! Raft snapshots are files in the snapshot directory, never whole in
//! memory (a database can be gigabytes): `current.meta` names the last
//! snapshot and `<id>.snap` is its dump ([`crate::snapshot`]). The network
//! ([`super::network`]) reads the file in chunks to send it; the receiving
//! peer service writes them into `incoming.part`, which is checked whole
//! before it replaces the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use openraft::RaftSnapshotBuilder;
use openraft::storage::{EntryResponder, RaftStateMachine};
use prost::Message;
use tokio::sync::mpsc;

use super::types::{
    Command, CommandResult, Entry, EntryPayload, LogId, Member, SnapshotMeta, StoredMembership,
    TypeConfig, encode,
};
use crate::errors::EtcdError;
use crate::lease::{self, LeaseClock, LeaseTable};
use crate::mvcc::{CF_META, Mvcc, WriteTxn};
use crate::proto::{
    CompactionResponse, DeleteRangeRequest, LeaseGrantResponse, LeaseRevokeResponse, PutRequest,
    ResponseHeader, TxnRequest,
};
use crate::snapshot;
use crate::txn;
use crate::watch::WatchHub;

const META_APPLIED: &[u8] = b"applied";
const META_MEMBERSHIP: &[u8] = b"membership";
const META_MEMBER_PREFIX: &[u8] = b"member/";
/// `(log id, n)`: the first `n` commands of that batch entry are applied.
const META_PARTIAL: &[u8] = b"applied_partial";

/// Published attributes of a member (etcd's `publish`).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct MemberAttrs {
    pub name: String,
    pub client_urls: Vec<String>,
}

/// Side effects of an applied command, performed once it is durable.
enum Effect {
    None,
    Granted(i64, i64),
    Revoked(i64),
    Compacted(i64),
}

/// `current.meta`: openraft 0.9's `SnapshotMeta`, field for field (0.10
/// dropped `snapshot_id` from its own, and names our dump files by it), so
/// a snapshot directory written by either version reads the same.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub last_log_id: Option<LogId>,
    pub last_membership: StoredMembership,
    pub snapshot_id: String,
}

impl Meta {
    pub fn raft(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.last_log_id,
            last_membership: self.last_membership.clone(),
        }
    }
}

/// A snapshot as openraft sees it: its metadata and the open dump file.
pub type Snapshot = openraft::storage::Snapshot<
    openraft::type_config::alias::CommittedLeaderIdOf<TypeConfig>,
    u64,
    Member,
    tokio::fs::File,
>;

/// A fresh snapshot id: term, index and a random tail.
pub fn new_snapshot_id(last: Option<LogId>) -> String {
    match last {
        Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, rand::random::<u32>()),
        None => format!("0-0-{}", rand::random::<u32>()),
    }
}

#[derive(Clone)]
pub struct StateMachine {
    pub mvcc: Arc<Mvcc>,
    pub hub: Arc<WatchHub>,
    pub leases: Arc<LeaseClock>,
    compactor: mpsc::UnboundedSender<i64>,
    snapshot_dir: PathBuf,
}

fn sm_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

fn hdr(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

impl StateMachine {
    pub fn new(
        mvcc: Arc<Mvcc>,
        hub: Arc<WatchHub>,
        leases: Arc<LeaseClock>,
        compactor: mpsc::UnboundedSender<i64>,
        snapshot_dir: PathBuf,
    ) -> Result<Self, EtcdError> {
        create_private_dir(&snapshot_dir).map_err(|e| {
            EtcdError::Internal(format!("creating {}: {e}", snapshot_dir.display()))
        })?;
        let sm = StateMachine {
            mvcc,
            hub,
            leases,
            compactor,
            snapshot_dir,
        };
        sm.leases.reset_from(&LeaseTable(&sm.mvcc).all()?);
        if let (Some(applied), _) = Self::read_applied(&sm.mvcc)? {
            sm.mvcc.publish_applied(applied.index);
        }
        Ok(sm)
    }

    /// Attributes members published, by id.
    pub fn member_attrs(mvcc: &Mvcc) -> Result<Vec<(u64, MemberAttrs)>, EtcdError> {
        let mut out = Vec::new();
        let mut it = mvcc.db().raw_iterator_cf(mvcc.cf(CF_META));
        it.seek(META_MEMBER_PREFIX);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(META_MEMBER_PREFIX) {
                break;
            }
            let id = u64::from_be_bytes(
                k[META_MEMBER_PREFIX.len()..]
                    .try_into()
                    .map_err(|_| EtcdError::internal("bad member key"))?,
            );
            out.push((id, crate::mvcc::dec(v, "member")?));
            it.next();
        }
        Ok(out)
    }

    /// The applied log id and membership recorded in the database.
    pub fn read_applied(mvcc: &Mvcc) -> Result<(Option<LogId>, StoredMembership), EtcdError> {
        let db = mvcc.db();
        let meta = mvcc.cf(CF_META);
        let applied = match db.get_cf(meta, META_APPLIED)? {
            Some(raw) => crate::mvcc::dec::<Option<LogId>>(&raw, "applied")?,
            None => None,
        };
        let membership = match db.get_cf(meta, META_MEMBERSHIP)? {
            Some(raw) => crate::mvcc::dec(&raw, "membership")?,
            None => StoredMembership::default(),
        };
        Ok((applied, membership))
    }

    /// Forgets the Raft position (used by `restore`: a new cluster starts a new log).
    pub fn clear_raft_position(mvcc: &Mvcc) -> Result<(), EtcdError> {
        let meta = mvcc.cf(CF_META);
        mvcc.db().delete_cf(meta, META_APPLIED)?;
        mvcc.db().delete_cf(meta, META_MEMBERSHIP)?;
        mvcc.db().delete_cf(meta, META_PARTIAL)?;
        let mut it = mvcc.db().raw_iterator_cf(meta);
        it.seek(META_MEMBER_PREFIX);
        let mut keys = Vec::new();
        while let Some(k) = it.key() {
            if !k.starts_with(META_MEMBER_PREFIX) {
                break;
            }
            keys.push(k.to_vec());
            it.next();
        }
        for k in keys {
            mvcc.db().delete_cf(meta, k)?;
        }
        Ok(())
    }

    fn exec(
        &self,
        t: &mut WriteTxn<'_>,
        cmd: Command,
    ) -> Result<(CommandResult, Effect), EtcdError> {
        let leases = LeaseTable(&self.mvcc);
        let ok = |rev: i64, body: Vec<u8>| CommandResult::Ok { rev, body };
        Ok(match cmd {
            Command::Put(raw) => {
                let req = PutRequest::decode(raw.as_slice()).map_err(EtcdError::internal)?;
                let resp = txn::put(t, &leases, &req)?;
                (ok(t.rev(), resp.encode_to_vec()), Effect::None)
            }
            Command::DeleteRange(raw) => {
                let req =
                    DeleteRangeRequest::decode(raw.as_slice()).map_err(EtcdError::internal)?;
                let resp = txn::delete_range(t, &req)?;
                (ok(t.rev(), resp.encode_to_vec()), Effect::None)
            }
            Command::Txn(raw) => {
                let req = TxnRequest::decode(raw.as_slice()).map_err(EtcdError::internal)?;
                let resp = txn::txn(t, &leases, &req)?;
                (ok(t.rev(), resp.encode_to_vec()), Effect::None)
            }
            Command::Compact(rev) => {
                if rev <= t.compact_rev() {
                    return Err(EtcdError::Compacted);
                }
                if rev > t.base_rev() {
                    return Err(EtcdError::FutureRev);
                }
                t.set_compact_rev(rev);
                let resp = CompactionResponse {
                    header: hdr(t.rev()),
                };
                (ok(t.rev(), resp.encode_to_vec()), Effect::Compacted(rev))
            }
            Command::LeaseGrant { id, ttl } => {
                if ttl > lease::MAX_TTL {
                    return Err(EtcdError::LeaseTtlTooLarge);
                }
                let ttl = lease::apply_grant(t, id, ttl)?;
                let resp = LeaseGrantResponse {
                    header: hdr(t.rev()),
                    id,
                    ttl,
                    error: String::new(),
                };
                (ok(t.rev(), resp.encode_to_vec()), Effect::Granted(id, ttl))
            }
            Command::LeaseRevoke { id } => {
                lease::apply_revoke(t, id)?;
                let resp = LeaseRevokeResponse {
                    header: hdr(t.rev()),
                };
                (ok(t.rev(), resp.encode_to_vec()), Effect::Revoked(id))
            }
            Command::PublishMember {
                id,
                name,
                client_urls,
            } => {
                let mut key = META_MEMBER_PREFIX.to_vec();
                key.extend_from_slice(&id.to_be_bytes());
                t.batch.put_cf(
                    self.mvcc.cf(CF_META),
                    key,
                    encode(&MemberAttrs { name, client_urls }),
                );
                (ok(t.rev(), Vec::new()), Effect::None)
            }
            Command::Batch(_) => return Err(EtcdError::internal("a batch nested in a batch")),
            Command::Alarm(raw) => {
                let req = crate::proto::AlarmRequest::decode(raw.as_slice())
                    .map_err(EtcdError::internal)?;
                (
                    ok(t.rev(), crate::alarm::apply(t, &req)?.encode_to_vec()),
                    Effect::None,
                )
            }
        })
    }

    /// Runs one command in `t`; a refused command leaves a fresh, empty `t`
    /// behind (it changes nothing but the applied position).
    fn exec_or_refuse<'a>(&'a self, t: &mut WriteTxn<'a>, cmd: Command) -> (CommandResult, Effect) {
        self.exec(t, cmd).unwrap_or_else(|e| {
            *t = self.mvcc.begin_write();
            (CommandResult::Err(e), Effect::None)
        })
    }

    fn apply_one(&self, entry: Entry) -> Result<CommandResult, std::io::Error> {
        let log_id = entry.log_id;
        let meta = self.mvcc.cf(CF_META);
        let mut t = self.mvcc.begin_write();
        let (result, effect) = match entry.payload {
            EntryPayload::Blank => (CommandResult::None, Effect::None),
            EntryPayload::Membership(m) => {
                t.batch.put_cf(
                    meta,
                    META_MEMBERSHIP,
                    encode(&StoredMembership::new(Some(log_id), m)),
                );
                (CommandResult::None, Effect::None)
            }
            EntryPayload::Normal(Command::Batch(cmds)) => {
                drop(t);
                return self.apply_batch(log_id, cmds);
            }
            EntryPayload::Normal(cmd) => self.exec_or_refuse(&mut t, cmd),
        };
        t.batch.put_cf(meta, META_APPLIED, encode(&Some(log_id)));
        self.commit(t, effect)?;
        Ok(result)
    }

    /// Applies a group-committed entry one command at a time, each in its
    /// own RocksDB batch with its own revision (a command must see the ones
    /// before it). Each batch records how many commands of the entry are
    /// done (`META_PARTIAL`) and the last one records the entry as applied,
    /// so after a crash midway the entry is re-applied from where it stopped,
    /// never twice. (The skipped commands' clients were lost with the crash.)
    fn apply_batch(
        &self,
        log_id: LogId,
        cmds: Vec<Command>,
    ) -> Result<CommandResult, std::io::Error> {
        let meta = self.mvcc.cf(CF_META);
        let done = match self.mvcc.db().get_cf(meta, META_PARTIAL).map_err(sm_err)? {
            Some(raw) => {
                match crate::mvcc::dec::<(LogId, u32)>(&raw, "partial apply").map_err(sm_err)? {
                    (at, n) if at == log_id => n as usize,
                    _ => 0,
                }
            }
            None => 0,
        };
        let n = cmds.len();
        let mut results = Vec::with_capacity(n);
        for (i, cmd) in cmds.into_iter().enumerate() {
            let last = i + 1 == n;
            if i < done && !last {
                results.push(CommandResult::Err(EtcdError::internal(
                    "applied before a restart",
                )));
                continue;
            }
            let mut t = self.mvcc.begin_write();
            let (result, effect) = if i < done {
                (
                    CommandResult::Err(EtcdError::internal("applied before a restart")),
                    Effect::None,
                )
            } else {
                self.exec_or_refuse(&mut t, cmd)
            };
            if last {
                t.batch.put_cf(meta, META_APPLIED, encode(&Some(log_id)));
                t.batch.delete_cf(meta, META_PARTIAL);
            } else {
                t.batch
                    .put_cf(meta, META_PARTIAL, encode(&(log_id, (i + 1) as u32)));
            }
            self.commit(t, effect)?;
            results.push(result);
        }
        if n == 0 {
            let mut t = self.mvcc.begin_write();
            t.batch.put_cf(meta, META_APPLIED, encode(&Some(log_id)));
            self.commit(t, Effect::None)?;
        }
        Ok(CommandResult::Batch(results))
    }

    /// Writes a finished transaction (no fsync, see the module doc), then
    /// publishes its revision and events and performs its side effect.
    fn commit(&self, t: WriteTxn<'_>, effect: Effect) -> Result<(), std::io::Error> {
        let (batch, rev, compacted, events) = t.finish();
        self.mvcc.write(batch).map_err(sm_err)?;
        self.mvcc.publish_revs(rev, compacted);
        if !events.is_empty() {
            self.hub.publish(rev, events);
        }
        match effect {
            Effect::None => {}
            Effect::Granted(id, ttl) => self.leases.granted(id, ttl),
            Effect::Revoked(id) => self.leases.revoked(id),
            Effect::Compacted(rev) => {
                let _ = self.compactor.send(rev);
            }
        }
        Ok(())
    }

    fn meta_path(&self) -> PathBuf {
        self.snapshot_dir.join("current.meta")
    }

    fn dump_path(&self, id: &str) -> PathBuf {
        self.snapshot_dir.join(format!("{id}.snap"))
    }

    fn incoming_path(&self) -> PathBuf {
        incoming_path(&self.snapshot_dir)
    }

    fn load_snapshot_meta(&self) -> Result<Option<Meta>, std::io::Error> {
        match std::fs::read(self.meta_path()) {
            Ok(raw) => postcard::from_bytes(&raw).map(Some).map_err(sm_err),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Makes `meta` (whose dump is in place) the current snapshot, then
    /// removes older dumps. A sender still reading one keeps its open file.
    fn save_snapshot_meta(&self, meta: &Meta) -> Result<(), std::io::Error> {
        crate::durable::write_file(&self.meta_path(), &encode(meta))?;
        let keep = format!("{}.snap", meta.snapshot_id);
        if let Ok(dir) = std::fs::read_dir(&self.snapshot_dir) {
            for e in dir.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.ends_with(".snap") && name != keep {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    async fn open_dump(&self, id: &str) -> Result<tokio::fs::File, std::io::Error> {
        tokio::fs::File::open(self.dump_path(id)).await
    }

    /// Applies a run of committed entries; one result per entry.
    pub fn apply_run(
        &self,
        entries: impl IntoIterator<Item = Entry>,
    ) -> Result<Vec<CommandResult>, std::io::Error> {
        let mut out = Vec::new();
        let mut last = None;
        for e in entries {
            last = Some(e.log_id.index);
            out.push(self.apply_one(e)?);
        }
        // One WAL write for the whole run (the WAL is flushed manually, see
        // `Mvcc::open`); no fsync: the Raft log already holds these entries.
        self.mvcc.db().flush_wal(false).map_err(sm_err)?;
        if let Some(index) = last {
            self.mvcc.publish_applied(index);
        }
        Ok(out)
    }
}

/// Where a snapshot being received from the leader is written.
pub fn incoming_path(snapshot_dir: &Path) -> PathBuf {
    snapshot_dir.join("incoming.part")
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = tokio::fs::File;

    async fn build_snapshot(&mut self) -> Result<Snapshot, std::io::Error> {
        let mvcc = self.mvcc.clone();
        let dir = self.snapshot_dir.clone();
        let (applied, membership, snapshot_id) =
            tokio::task::spawn_blocking(move || -> Result<_, EtcdError> {
                mvcc.db().flush_wal(true)?;
                let snap = mvcc.snapshot();
                let meta = mvcc.cf(CF_META);
                let applied = match snap.get_cf(meta, META_APPLIED)? {
                    Some(raw) => crate::mvcc::dec::<Option<LogId>>(&raw, "applied")?,
                    None => None,
                };
                let membership: StoredMembership = match snap.get_cf(meta, META_MEMBERSHIP)? {
                    Some(raw) => crate::mvcc::dec(&raw, "membership")?,
                    None => StoredMembership::default(),
                };
                let snapshot_id = new_snapshot_id(applied);
                snapshot::dump_file(&mvcc, &snap, &dir.join(format!("{snapshot_id}.snap")))?;
                Ok((applied, membership, snapshot_id))
            })
            .await
            .map_err(sm_err)?
            .map_err(sm_err)?;
        let meta = Meta {
            last_log_id: applied,
            last_membership: membership,
            snapshot_id,
        };
        self.save_snapshot_meta(&meta)?;
        let file = self.open_dump(&meta.snapshot_id).await?;
        Ok(Snapshot {
            meta: meta.raft(),
            snapshot: file,
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = tokio::fs::File;
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), std::io::Error> {
        Self::read_applied(&self.mvcc).map_err(sm_err)
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), std::io::Error>
    where
        Strm: futures::Stream<Item = Result<EntryResponder<TypeConfig>, std::io::Error>>
            + Unpin
            + openraft::OptionalSend,
    {
        let mut run = Vec::new();
        let mut responders = Vec::new();
        while let Some(item) = entries.next().await {
            let (entry, responder) = item?;
            run.push(entry);
            responders.push(responder);
        }
        // Answered once the whole run is applied and published (a client
        // that reads right after its write's answer sees it).
        let results = self.apply_run(run)?;
        for (result, responder) in results.into_iter().zip(responders) {
            if let Some(r) = responder {
                r.send(result);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// `snapshot` is `incoming.part`, written and fsynced by the peer
    /// service as it arrived.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: tokio::fs::File,
    ) -> Result<(), std::io::Error> {
        drop(snapshot);
        let meta = Meta {
            last_log_id: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            snapshot_id: new_snapshot_id(meta.last_log_id),
        };
        let mvcc = self.mvcc.clone();
        let m = meta.clone();
        let incoming = self.incoming_path();
        tokio::task::spawn_blocking(move || -> Result<(), EtcdError> {
            let _guard = mvcc.maintenance.lock().unwrap_or_else(|p| p.into_inner());
            // Checked whole before the store is cleared.
            snapshot::load_file(&mvcc, &incoming)?;
            let cf = mvcc.cf(CF_META);
            let mut batch = rocksdb::WriteBatch::default();
            batch.put_cf(cf, META_APPLIED, encode(&m.last_log_id));
            batch.put_cf(cf, META_MEMBERSHIP, encode(&m.last_membership));
            mvcc.db().write(batch)?;
            mvcc.db().flush_wal(true)?;
            Ok(())
        })
        .await
        .map_err(sm_err)?
        .map_err(sm_err)?;
        std::fs::rename(self.incoming_path(), self.dump_path(&meta.snapshot_id))?;
        self.save_snapshot_meta(&meta)?;
        self.leases
            .reset_from(&LeaseTable(&self.mvcc).all().map_err(sm_err)?);
        self.hub.resync(self.mvcc.current_rev());
        if let Some(l) = meta.last_log_id {
            self.mvcc.publish_applied(l.index);
        }
        tracing::info!(snapshot = %meta.snapshot_id, rev = self.mvcc.current_rev(), "installed snapshot from leader");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, std::io::Error> {
        let Some(meta) = self.load_snapshot_meta()? else {
            return Ok(None);
        };
        let file = self.open_dump(&meta.snapshot_id).await?;
        Ok(Some(Snapshot {
            meta: meta.raft(),
            snapshot: file,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::impls::leader_id_adv::LeaderId;

    fn machine(dir: &std::path::Path) -> StateMachine {
        let mvcc = Mvcc::open(&dir.join("db")).expect("open");
        let hub = WatchHub::new(mvcc.current_rev());
        let (tx, _rx) = mpsc::unbounded_channel();
        StateMachine::new(
            mvcc,
            hub,
            Arc::new(LeaseClock::default()),
            tx,
            dir.join("snapshots"),
        )
        .expect("state machine")
    }

    fn put(key: &str) -> Command {
        Command::Put(
            PutRequest {
                key: key.into(),
                value: b"v".to_vec(),
                ..Default::default()
            }
            .encode_to_vec(),
        )
    }

    fn batch_entry(index: u64) -> Entry {
        Entry {
            log_id: LogId {
                leader_id: LeaderId {
                    term: 1,
                    node_id: 1,
                },
                index,
            },
            payload: EntryPayload::Normal(Command::Batch(vec![put("a"), put("b"), put("c")])),
        }
    }

    #[tokio::test]
    async fn batch_applies_each_command_at_its_own_revision() {
        let dir = tempfile::tempdir().unwrap();
        let sm = machine(dir.path());
        let out = sm.apply_run([batch_entry(1)]).unwrap();
        let CommandResult::Batch(results) = &out[0] else {
            panic!("expected a batch result, got {out:?}")
        };
        let revs: Vec<i64> = results
            .iter()
            .map(|r| match r {
                CommandResult::Ok { rev, .. } => *rev,
                other => panic!("unexpected result {other:?}"),
            })
            .collect();
        assert_eq!(revs, [2, 3, 4]);
        assert_eq!(sm.mvcc.current_rev(), 4);
        let (applied, _) = StateMachine::read_applied(&sm.mvcc).unwrap();
        assert_eq!(applied.map(|l| l.index), Some(1));
    }

    /// A crash after two of three commands were written: re-applying the
    /// entry must apply only the third, not the first two again.
    #[tokio::test]
    async fn batch_interrupted_midway_resumes_without_applying_twice() {
        let dir = tempfile::tempdir().unwrap();
        let sm = machine(dir.path());
        let entry = batch_entry(1);
        // What the first two commands' batches would have left behind.
        for cmd in [put("a"), put("b")] {
            let mut t = sm.mvcc.begin_write();
            let _ = sm.exec(&mut t, cmd).unwrap();
            sm.commit(t, Effect::None).unwrap();
        }
        sm.mvcc
            .db()
            .put_cf(
                sm.mvcc.cf(CF_META),
                META_PARTIAL,
                encode(&(entry.log_id, 2u32)),
            )
            .unwrap();
        assert_eq!(sm.mvcc.current_rev(), 3);

        sm.apply_run([entry]).unwrap();
        assert_eq!(
            sm.mvcc.current_rev(),
            4,
            "only the third command may be applied again"
        );
        let snap = sm.mvcc.snapshot();
        let kvs = sm
            .mvcc
            .range(
                &snap,
                b"a",
                &crate::mvcc::RangeEnd::Until(b"d".to_vec()),
                4,
                0,
                false,
                false,
            )
            .unwrap()
            .kvs;
        let got: Vec<(Vec<u8>, i64, i64)> = kvs
            .into_iter()
            .map(|kv| (kv.key, kv.mod_revision, kv.version))
            .collect();
        assert_eq!(
            got,
            [
                (b"a".to_vec(), 2, 1),
                (b"b".to_vec(), 3, 1),
                (b"c".to_vec(), 4, 1)
            ]
        );
        assert!(
            sm.mvcc
                .db()
                .get_cf(sm.mvcc.cf(CF_META), META_PARTIAL)
                .unwrap()
                .is_none(),
            "the marker is cleared with the last command"
        );
    }
}
