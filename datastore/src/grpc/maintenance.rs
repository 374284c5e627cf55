//! `etcdserverpb.Maintenance`: status (reporting an etcd version
//! kube-apiserver trusts), alarms (none), defragment (RocksDB full
//! compaction), hashes, and snapshots in our portable format.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::st;
use crate::EMULATED_ETCD_VERSION;
use crate::errors::EtcdError;
use crate::mvcc::{CF_INDEX, CF_REV, Mvcc};
use crate::node::Node;
use crate::proto::maintenance_server::Maintenance;
use crate::proto::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use crate::snapshot;

pub struct MaintenanceService {
    pub node: Arc<Node>,
}

/// CRC-32 of every change up to `rev`: equal on members with equal history.
pub fn hash_kv(mvcc: &Mvcc, rev: i64) -> Result<u32, EtcdError> {
    let snap = mvcc.snapshot();
    let mut h = crc32fast::Hasher::new();
    let mut it = snap.raw_iterator_cf(mvcc.cf(CF_REV));
    it.seek_to_first();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        let (main, _) = crate::keycodec::decode_rev_key(k).ok_or_else(|| EtcdError::internal("corrupt revision key"))?;
        if main > rev {
            break;
        }
        h.update(k);
        h.update(v);
        it.next();
    }
    it.status()?;
    Ok(h.finalize())
}

fn hash_all(mvcc: &Mvcc) -> Result<u32, EtcdError> {
    let snap = mvcc.snapshot();
    let mut h = crc32fast::Hasher::new();
    for cf in [CF_REV, CF_INDEX] {
        let mut it = snap.raw_iterator_cf(mvcc.cf(cf));
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
    async fn alarm(&self, _req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Ok(Response::new(AlarmResponse { header: Some(self.node.header(self.node.mvcc.current_rev())), alarms: Vec::new() }))
    }

    async fn status(&self, _req: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let n = &self.node;
        let m = n.raft.metrics().borrow().clone();
        let is_learner = m.membership_config.membership().learner_ids().any(|id| id == n.id);
        let mut errors = Vec::new();
        if m.current_leader.is_none() {
            errors.push("etcdserver: no leader".to_string());
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
            db_size_quota: 0,
            downgrade_info: None,
        }))
    }

    async fn defragment(&self, _req: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        let mvcc = self.node.mvcc.clone();
        tokio::task::spawn_blocking(move || mvcc.defragment()).await.map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(DefragmentResponse { header: Some(self.node.header(self.node.mvcc.current_rev())) }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let mvcc = self.node.mvcc.clone();
        let hash = tokio::task::spawn_blocking(move || hash_all(&mvcc))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(st)?;
        Ok(Response::new(HashResponse { header: Some(self.node.header(self.node.mvcc.current_rev())), hash }))
    }

    async fn hash_kv(&self, req: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
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

    type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send + 'static>>;

    async fn snapshot(&self, _req: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let mvcc = self.node.mvcc.clone();
        let data = tokio::task::spawn_blocking(move || {
            let snap = mvcc.snapshot();
            snapshot::dump(&mvcc, &snap).map(snapshot::wrap_for_stream)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(st)?;
        let header = self.node.header(self.node.mvcc.current_rev());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            const CHUNK: usize = 64 * 1024;
            let total = data.len();
            let mut sent = 0;
            for chunk in data.chunks(CHUNK) {
                sent += chunk.len();
                let msg = SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (total - sent) as u64,
                    blob: chunk.to_vec(),
                    version: EMULATED_ETCD_VERSION.to_string(),
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn move_leader(&self, _req: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(Status::unimplemented("k8sup-datastore: move-leader is not supported (openraft 0.9 has no leadership transfer)"))
    }

    async fn downgrade(&self, _req: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented("k8sup-datastore: downgrade does not apply"))
    }
}
