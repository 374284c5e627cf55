//! `etcdserverpb.Maintenance`: status (reporting an etcd version
//! kube-apiserver trusts), alarms (replicated, see [`crate::alarm`]),
//! defragment (RocksDB full compaction), hashes, leader transfer, and
//! snapshots in our portable format.

use openraft::async_runtime::watch::WatchReceiver;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use prost::Message;

use super::{decode_result, st};
use crate::EMULATED_ETCD_VERSION;
use crate::alarm;
use crate::errors::EtcdError;
use crate::member::Node;
use crate::mvcc::{CF_INDEX, CF_REV, Mvcc};
use crate::proto::AlarmType;
use crate::proto::alarm_request::AlarmAction;
use crate::proto::maintenance_server::Maintenance;
use crate::proto::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::raft::Command;
use crate::snapshot;

pub struct MaintenanceService {
    pub node: Arc<Node>,
    pub limits: crate::limits::Limits,
}

/// CRC-32 of every change up to `rev` that compaction keeps: equal on
/// members with equal history, whether or not their background physical
/// compaction has caught up (as etcd's HashKV, which hashes only what its
/// compaction keeps). Below the compacted revision that is, per key, the
/// newest version at or below it unless that is an older tombstone.
pub fn hash_kv(mvcc: &Mvcc, rev: i64) -> Result<u32, EtcdError> {
    let snap = mvcc.snapshot();
    let compacted = mvcc.compact_rev();
    let mut h = crc32fast::Hasher::new();
    let mut it = snap.raw_iterator_cf(mvcc.cf(CF_REV));
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let (main, sub) = crate::keycodec::decode_rev_key(k)
            .ok_or_else(|| EtcdError::internal("corrupt revision key"))?;
        if main > rev {
            break;
        }
        let kept = main >= compacted || {
            let rec: crate::mvcc::RevRecord = crate::mvcc::dec(v, "revision")?;
            mvcc.get_meta(&snap, &rec.key, compacted)?
                .is_some_and(|m| m.main == main && m.sub == sub && !m.entry.tombstone)
        };
        if kept {
            h.update(k);
            h.update(v);
        }
        it.next();
    }
    it.status()?;
    Ok(h.finalize())
}

fn hash_all(mvcc: &Mvcc) -> Result<u32, EtcdError> {
    let snap = mvcc.snapshot();
    let mut h = crc32fast::Hasher::new();
    for cf in [CF_REV, CF_INDEX] {
        let mut it = snap.raw_iterator_cf_opt(mvcc.cf(cf), Mvcc::whole_cf());
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            h.update(k);
            h.update(v);
            it.next();
        }
        it.status()?;
    }
    Ok(h.finalize())
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    /// GET lists the replicated alarms (filtered by type unless NONE);
    /// ACTIVATE and DEACTIVATE (`etcdctl alarm disarm`) go through Raft.
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let r = req.into_inner();
        if r.action == AlarmAction::Get as i32 {
            let alarms = alarm::list(&self.node.mvcc)
                .map_err(st)?
                .into_iter()
                .filter(|a| r.alarm == AlarmType::None as i32 || a.alarm == r.alarm)
                .collect();
            return Ok(Response::new(AlarmResponse {
                header: Some(self.node.header(self.node.mvcc.current_rev())),
                alarms,
            }));
        }
        let res = self
            .node
            .write(Command::Alarm(r.encode_to_vec()))
            .await
            .map_err(st)?;
        let mut resp: AlarmResponse = decode_result(res)?;
        self.node.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let n = &self.node;
        let m = n.raft.metrics().borrow_watched().clone();
        let is_learner = m
            .membership_config
            .membership()
            .learner_ids()
            .any(|id| id == n.id);
        let mut errors = Vec::new();
        if m.current_leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
        }
        // etcd lists active alarms here too (`etcdctl endpoint status` ERRORS column).
        for a in alarm::list(&n.mvcc).map_err(st)? {
            let name = AlarmType::try_from(a.alarm)
                .map(|t| t.as_str_name())
                .unwrap_or("UNKNOWN");
            errors.push(format!("memberID:{} alarm:{name} ", a.member_id));
        }
        Ok(Response::new(StatusResponse {
            header: Some(n.header(n.mvcc.current_rev())),
            version: EMULATED_ETCD_VERSION.to_string(),
            db_size: n.mvcc.db_size(),
            leader: m.current_leader.unwrap_or(0),
            raft_index: m.last_log_index.unwrap_or(0),
            raft_term: m.current_term,
            raft_applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            errors,
            db_size_in_use: n.mvcc.db_size_in_use(),
            is_learner,
            storage_version: "3.5.0".to_string(),
            db_size_quota: self.limits.quota_backend_bytes,
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        _req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let mvcc = self.node.mvcc.clone();
        tokio::task::spawn_blocking(move || mvcc.defragment())
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.node.header(self.node.mvcc.current_rev())),
        }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let mvcc = self.node.mvcc.clone();
        let hash = tokio::task::spawn_blocking(move || hash_all(&mvcc))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(st)?;
        Ok(Response::new(HashResponse {
            header: Some(self.node.header(self.node.mvcc.current_rev())),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let rev = req.into_inner().revision;
        let mvcc = self.node.mvcc.clone();
        let current = mvcc.current_rev();
        let rev = mvcc.resolve_read_rev(rev, current).map_err(st)?;
        let m2 = mvcc.clone();
        let hash = tokio::task::spawn_blocking(move || hash_kv(&m2, rev))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(st)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.node.header(current)),
            hash,
            compact_revision: mvcc.compact_rev(),
            hash_revision: rev,
        }))
    }

    type SnapshotStream =
        Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    /// Streams a consistent dump in etcd's page format. The dump goes to an
    /// unlinked file in the data directory first (a database can be
    /// gigabytes; memory holds only the chunks in flight), so a client that
    /// reads slowly never holds a RocksDB snapshot open.
    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let mvcc = self.node.mvcc.clone();
        let (file, len) =
            tokio::task::spawn_blocking(move || -> Result<(std::fs::File, u64), EtcdError> {
                let kv_dir = mvcc.db().path().to_path_buf();
                snapshot::dump_scratch(&mvcc, &mvcc.snapshot(), kv_dir.parent().unwrap_or(&kv_dir))
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(st)?;
        let header = self.node.header(self.node.mvcc.current_rev());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            use std::io::Read;
            const CHUNK: usize = 64 * 1024;
            let mut r = snapshot::Wrapped::new(std::io::BufReader::with_capacity(CHUNK, file), len);
            let mut remaining = r.len();
            loop {
                let mut blob = vec![0u8; CHUNK];
                let mut n = 0;
                while n < CHUNK {
                    match r.read(&mut blob[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => {
                            let _ = tx.blocking_send(Err(Status::internal(format!(
                                "reading the snapshot: {e}"
                            ))));
                            return;
                        }
                    }
                }
                if n == 0 {
                    return;
                }
                blob.truncate(n);
                remaining -= n as u64;
                let msg = SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: remaining,
                    blob,
                    version: EMULATED_ETCD_VERSION.to_string(),
                };
                if tx.blocking_send(Ok(msg)).is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// etcd's checks come first (only the leader moves leadership; the
    /// transferee must be a voting member), then, since openraft 0.9 cannot
    /// hand leadership over (`Raft::trigger().transfer_leader` exists only
    /// in 0.10), an explicit UNIMPLEMENTED rather than a pretend success. Moving to the current
    /// leader succeeds, as in etcd.
    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        let n = &self.node;
        if !n.is_leader() {
            return Err(st(EtcdError::NotLeader));
        }
        let voters: Vec<u64> = n
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if !voters.contains(&target) {
            return Err(st(EtcdError::BadLeaderTransferee));
        }
        if target == n.id {
            return Ok(Response::new(MoveLeaderResponse {
                header: Some(n.header(n.mvcc.current_rev())),
            }));
        }
        Err(Status::unimplemented(
            "k8sup-datastore: move-leader is not supported: openraft 0.9 has no leadership transfer; \
             stopping the leader makes the others elect a new one",
        ))
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "k8sup-datastore: downgrade does not apply",
        ))
    }
}
