//! The peer service: Raft RPCs, writes forwarded by followers, and
//! leader-only calls. Served only on the peer listener (mutual TLS).

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tonic::{Request, Response, Status};

use crate::errors::EtcdError;
use crate::forward::ForwardOp;
use crate::member::{LeaderCall, LeaderReply, Node};
use crate::peer_stream;
use crate::proto::peerpb::Blob;
use crate::proto::peerpb::peer_server::Peer;
use crate::raft::{Command, CommandResult, NodeId, TypeConfig, decode, encode};

/// A read index for a follower that has applied up to `applied`. A
/// follower that has not reached the index yet can only serve its read
/// once it learns the index is committed: a heartbeat tells it at once
/// (sent beside the answer, not before it). One that has reached it needs
/// none, which spares every member a message round per read.
async fn read_index(node: &Arc<Node>, applied: u64) -> Result<(CommandResult, u64), EtcdError> {
    match node.handle_leader_call(LeaderCall::ReadIndex).await? {
        LeaderReply::ReadIndex(i) => {
            if i > applied {
                let raft = node.raft.clone();
                tokio::spawn(async move {
                    let _ = raft.trigger().heartbeat().await;
                });
            }
            Ok((CommandResult::None, i))
        }
        other => Err(EtcdError::Internal(format!(
            "unexpected leader reply {other:?}"
        ))),
    }
}

pub struct PeerService {
    pub node: Arc<Node>,
}

fn blob<T: serde::Serialize>(v: &T) -> Result<Response<Blob>, Status> {
    Ok(Response::new(Blob { data: encode(v) }))
}

fn bad(e: EtcdError) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl Peer for PeerService {
    type AppendStreamStream = tokio_stream::wrappers::UnboundedReceiverStream<Result<Blob, Status>>;
    type ForwardStreamStream =
        tokio_stream::wrappers::UnboundedReceiverStream<Result<Blob, Status>>;

    /// A follower's forwarding stream (see [`crate::forward`]): each
    /// request is carried out as it arrives, and a write is answered as soon
    /// as it is applied here, with its entry's log index.
    async fn forward_stream(
        &self,
        req: Request<tonic::Streaming<Blob>>,
    ) -> Result<Response<Self::ForwardStreamStream>, Status> {
        let node = self.node.clone();
        Ok(Response::new(peer_stream::serve(
            req.into_inner(),
            move |op: ForwardOp| {
                let node = node.clone();
                async move {
                    match op {
                        _ if !node.is_leader() => Err(EtcdError::NotLeaderRetry),
                        ForwardOp::Write(cmd) => node.write_as_leader(cmd).await,
                        ForwardOp::ReadIndex { applied } => read_index(&node, applied).await,
                    }
                }
            },
        )))
    }

    /// The leader's AppendEntries stream (see [`crate::peer_stream`]).
    async fn append_stream(
        &self,
        req: Request<tonic::Streaming<Blob>>,
    ) -> Result<Response<Self::AppendStreamStream>, Status> {
        let raft = self.node.raft.clone();
        Ok(Response::new(peer_stream::serve(
            req.into_inner(),
            move |rpc: AppendEntriesRequest<TypeConfig>| {
                let raft = raft.clone();
                async move { raft.append_entries(rpc).await }
            },
        )))
    }

    async fn append(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(&req.into_inner().data).map_err(bad)?;
        blob(&self.node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: VoteRequest<NodeId> = decode(&req.into_inner().data).map_err(bad)?;
        blob(&self.node.raft.vote(rpc).await)
    }

    async fn snapshot(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(&req.into_inner().data).map_err(bad)?;
        blob(&self.node.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let cmd: Command = decode(&req.into_inner().data).map_err(bad)?;
        let res = if self.node.is_leader() {
            self.node.write_as_leader(cmd).await.map(|(r, _)| r)
        } else {
            Err(EtcdError::NotLeaderRetry)
        };
        blob(&res)
    }

    async fn leader_call(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let call: LeaderCall = decode(&req.into_inner().data).map_err(bad)?;
        let read_index = matches!(call, LeaderCall::ReadIndex);
        let res = self.node.handle_leader_call(call).await;
        if read_index && res.is_ok() {
            // The follower can only serve the read once it learns that the
            // read index is committed: tell it now rather than at the next
            // heartbeat tick.
            let _ = self.node.raft.trigger().heartbeat().await;
        }
        blob(&res)
    }
}
