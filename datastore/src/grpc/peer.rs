//! The peer service: Raft RPCs, writes forwarded by followers, and
//! leader-only calls. Served only on the peer listener (mutual TLS).

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tonic::{Request, Response, Status};

use crate::errors::EtcdError;
use crate::member::{LeaderCall, Node};
use crate::proto::peerpb::Blob;
use crate::proto::peerpb::peer_server::Peer;
use crate::raft::{Command, NodeId, TypeConfig, decode, encode};

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
            self.node.write_as_leader(cmd).await
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
