//! The peer service: Raft RPCs, writes forwarded by followers, and
//! leader-only calls. Served only on the peer listener (mutual TLS).

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, VoteRequest};
use tonic::{Request, Response, Status};

use crate::errors::EtcdError;
use crate::forward::ForwardOp;
use crate::member::{LeaderCall, LeaderReply, Node};
use crate::peer_stream;
use crate::proto::peerpb::Blob;
use crate::proto::peerpb::peer_server::Peer;
use crate::raft::network::{SnapshotChunk, SnapshotChunkReply};
use crate::raft::state_machine::{Snapshot, incoming_path};
use crate::raft::{Command, CommandResult, TypeConfig, decode, encode};

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
    /// The snapshot being received from the leader, written into
    /// `incoming.part` of this directory piece by piece.
    pub snapshots: Arc<SnapshotReceiver>,
}

/// The receiving end of `Peer/Snapshot`: one transfer at a time; a first
/// piece (offset 0) starts a new one, replacing any unfinished one.
pub struct SnapshotReceiver {
    dir: std::path::PathBuf,
    current: tokio::sync::Mutex<Option<Receiving>>,
}

struct Receiving {
    transfer_id: String,
    file: tokio::fs::File,
    next: u64,
}

impl SnapshotReceiver {
    pub fn new(snapshot_dir: std::path::PathBuf) -> Self {
        SnapshotReceiver {
            dir: snapshot_dir,
            current: tokio::sync::Mutex::new(None),
        }
    }

    async fn receive(&self, node: &Node, chunk: SnapshotChunk) -> SnapshotChunkReply {
        use tokio::io::{AsyncSeekExt, AsyncWriteExt};
        let mut current = self.current.lock().await;
        if chunk.offset == 0 {
            *current = None;
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .read(true)
                .write(true)
                .mode(0o600)
                .open(incoming_path(&self.dir))
                .await
                .map_err(|e| format!("creating the incoming snapshot: {e}"))?;
            *current = Some(Receiving {
                transfer_id: chunk.meta.snapshot_id.clone(),
                file,
                next: 0,
            });
        }
        let Some(rx) = current.as_mut() else {
            return Err(format!(
                "snapshot piece at offset {} without its start",
                chunk.offset
            ));
        };
        if rx.transfer_id != chunk.meta.snapshot_id || rx.next != chunk.offset {
            return Err(format!(
                "snapshot piece {} at offset {} does not follow {} at {}",
                chunk.meta.snapshot_id, chunk.offset, rx.transfer_id, rx.next
            ));
        }
        let w = |e: std::io::Error| format!("writing the incoming snapshot: {e}");
        rx.file.write_all(&chunk.data).await.map_err(w)?;
        rx.next += chunk.data.len() as u64;
        if !chunk.done {
            return Ok(None);
        }
        let Some(mut rx) = current.take() else {
            return Err("snapshot transfer vanished".into());
        };
        rx.file.flush().await.map_err(w)?;
        rx.file.sync_all().await.map_err(w)?;
        rx.file.seek(std::io::SeekFrom::Start(0)).await.map_err(w)?;
        let snapshot = Snapshot {
            meta: chunk.meta.raft(),
            snapshot: rx.file,
        };
        node.raft
            .install_full_snapshot(chunk.vote, snapshot)
            .await
            .map(Some)
            .map_err(|e| format!("installing the snapshot: {e}"))
    }
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
        let rpc: VoteRequest<TypeConfig> = decode(&req.into_inner().data).map_err(bad)?;
        blob(&self.node.raft.vote(rpc).await)
    }

    async fn snapshot(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let chunk: SnapshotChunk = decode(&req.into_inner().data).map_err(bad)?;
        blob(&self.snapshots.receive(&self.node, chunk).await)
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
