//! `etcdserverpb.KV`: Range and read-only Txn are served locally after a
//! read-index barrier (skipped for serializable requests); writes go
//! through Raft on the leader.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use prost::Message;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{decode_result, st};
use crate::alarm;
use crate::limits::Limits;
use crate::member::Node;
use crate::proto::kv_server::Kv;
use crate::proto::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
    request_op,
};
use crate::raft::Command;
use crate::txn;

pub struct KvService {
    pub node: Arc<Node>,
    pub limits: Limits,
}

/// A read-only Txn skips the read barrier only when it has reads and all
/// of them asked for serializable. (etcd also counts an op-less Txn as
/// serializable; we keep it linearizable, which is strictly stronger.)
fn txn_is_serializable(r: &TxnRequest) -> bool {
    let mut ops = r.success.iter().chain(r.failure.iter()).peekable();
    ops.peek().is_some()
        && ops.all(|op| match &op.request {
            Some(request_op::Request::RequestRange(rr)) => rr.serializable,
            Some(request_op::Request::RequestTxn(t)) => txn_is_serializable(t),
            _ => false,
        })
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let r = req.into_inner();
        txn::check_range(&r).map_err(st)?;
        if !r.serializable {
            self.node.read_barrier().await.map_err(st)?;
        }
        let mvcc = self.node.mvcc.clone();
        let mut resp = if r.range_end.is_empty() {
            txn::range(&mvcc, &r).map_err(st)?
        } else {
            tokio::task::spawn_blocking(move || txn::range(&mvcc, &r))
                .await
                .map_err(|e| Status::internal(e.to_string()))?
                .map_err(st)?
        };
        self.node.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    type RangeStreamStream =
        Pin<Box<dyn Stream<Item = Result<RangeStreamResponse, Status>> + Send + 'static>>;

    /// etcd 3.7's chunked Range: the same result as Range, its key-values
    /// split over several messages; header, more and count on the last one.
    async fn range_stream(
        &self,
        req: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        const CHUNK: usize = 1000;
        let r = req.into_inner();
        txn::check_range(&r).map_err(st)?;
        if !r.serializable {
            self.node.read_barrier().await.map_err(st)?;
        }
        let mvcc = self.node.mvcc.clone();
        let mut resp = tokio::task::spawn_blocking(move || txn::range(&mvcc, &r))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(st)?;
        self.node.fill(&mut resp.header);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut kvs = std::mem::take(&mut resp.kvs);
            while kvs.len() > CHUNK {
                let rest = kvs.split_off(CHUNK);
                let chunk = RangeResponse {
                    kvs,
                    ..Default::default()
                };
                if tx
                    .send(Ok(RangeStreamResponse {
                        range_response: Some(chunk),
                    }))
                    .await
                    .is_err()
                {
                    return;
                }
                kvs = rest;
            }
            resp.kvs = kvs;
            let _ = tx
                .send(Ok(RangeStreamResponse {
                    range_response: Some(resp),
                }))
                .await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = req.into_inner();
        txn::check_put(&r).map_err(st)?;
        self.limits.check_size(r.encoded_len()).map_err(st)?;
        self.limits
            .check_space(&self.node, alarm::cost(&r))
            .await
            .map_err(st)?;
        let res = self
            .node
            .write(Command::Put(r.encode_to_vec()))
            .await
            .map_err(st)?;
        let mut resp: PutResponse = decode_result(res)?;
        self.node.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let r = req.into_inner();
        txn::check_delete(&r).map_err(st)?;
        self.limits.check_size(r.encoded_len()).map_err(st)?;
        let res = self
            .node
            .write(Command::DeleteRange(r.encode_to_vec()))
            .await
            .map_err(st)?;
        let mut resp: DeleteRangeResponse = decode_result(res)?;
        self.node.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let r = req.into_inner();
        txn::check_txn(&r).map_err(st)?;
        let mut resp = if txn::txn_is_read_only(&r) {
            if !txn_is_serializable(&r) {
                self.node.read_barrier().await.map_err(st)?;
            }
            let mvcc = self.node.mvcc.clone();
            tokio::task::spawn_blocking(move || {
                let mut t = mvcc.begin_write();
                txn::txn(&mut t, &crate::lease::LeaseTable(&mvcc), &r)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(st)?
        } else {
            self.limits.check_size(r.encoded_len()).map_err(st)?;
            if alarm::txn_writes_data(&r) {
                self.limits
                    .check_space(&self.node, alarm::cost(&r))
                    .await
                    .map_err(st)?;
            }
            let res = self
                .node
                .write(Command::Txn(r.encode_to_vec()))
                .await
                .map_err(st)?;
            decode_result(res)?
        };
        self.node.fill(&mut resp.header);
        Ok(Response::new(resp))
    }

    /// With `physical`, answers only once this member has removed the
    /// compacted history from RocksDB (etcd waits for its backend the same
    /// way), so the space is reclaimable by a Defragment that follows.
    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let r = req.into_inner();
        let res = self
            .node
            .write(Command::Compact(r.revision))
            .await
            .map_err(st)?;
        let mut resp: CompactionResponse = decode_result(res)?;
        if r.physical {
            // The client's deadline bounds the wait (tonic drops this future).
            while self.node.mvcc.physical_compact_rev().map_err(st)? < r.revision {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
        self.node.fill(&mut resp.header);
        Ok(Response::new(resp))
    }
}
