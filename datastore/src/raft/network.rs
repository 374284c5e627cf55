//! The Raft network client: openraft messages over the peer gRPC service
//! (mutual TLS unless `--insecure`), one cached HTTP/2 channel per peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::async_runtime::watch::WatchReceiver;
use openraft::error::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, v2::RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::state_machine::{Meta, Snapshot};
use super::types::{Member, NodeId, ServerMetrics, TypeConfig, Vote, decode, encode};
use crate::errors::EtcdError;
use crate::peer_stream::CallError;
use crate::proto::peerpb::Blob;
use crate::proto::peerpb::peer_client::PeerClient;

/// Largest peer message (snapshot chunks, big appends).
pub const MAX_PEER_MESSAGE: usize = 256 << 20;

/// Cached connections to peers, keyed by peer URL.
pub struct PeerClients {
    tls: Option<ClientTlsConfig>,
    conns: Mutex<HashMap<String, PeerClient<Channel>>>,
}

impl PeerClients {
    pub fn new(tls: Option<ClientTlsConfig>) -> Arc<Self> {
        Arc::new(PeerClients {
            tls,
            conns: Mutex::new(HashMap::new()),
        })
    }

    /// A client for `url` (`https://host:port`, or `http://` with `--insecure`).
    pub fn client(&self, url: &str) -> Result<PeerClient<Channel>, EtcdError> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns.get(url) {
            return Ok(c.clone());
        }
        let mut ep = Endpoint::from_shared(url.to_string())
            .map_err(|e| EtcdError::Internal(format!("bad peer URL {url}: {e}")))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        if let Some(tls) = &self.tls {
            ep = ep
                .tls_config(tls.clone())
                .map_err(|e| EtcdError::Internal(format!("peer TLS for {url}: {e}")))?;
        }
        let client = PeerClient::new(ep.connect_lazy())
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        conns.insert(url.to_string(), client.clone());
        Ok(client)
    }

    /// A client for a member (its first peer URL).
    pub fn for_member(&self, m: &Member) -> Result<PeerClient<Channel>, EtcdError> {
        let url = m
            .peer_urls
            .first()
            .ok_or_else(|| EtcdError::Internal("member has no peer URL".into()))?;
        self.client(url)
    }
}

pub struct Network {
    pub peers: Arc<PeerClients>,
    /// Its effective membership names each peer's current URLs.
    pub membership: ServerMetrics,
}

/// Largest AppendEntries (approximate payload bytes) sent on the stream.
const MAX_STREAMED_APPEND: usize = 32 << 10;

/// The leader's AppendEntries stream to one follower.
type AppendStream = crate::peer_stream::Stream<
    AppendEntriesRequest<TypeConfig>,
    Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>>,
>;

/// Size of the snapshot pieces sent on `Peer/Snapshot`.
const SNAPSHOT_CHUNK: usize = 8 << 20;

/// One piece of a snapshot on `Peer/Snapshot`: openraft 0.9's
/// `InstallSnapshotRequest`, field for field (0.10 hands the network the
/// whole snapshot and leaves the pieces to it). The receiver writes them
/// into its `incoming.part` and installs the snapshot with the last one.
#[derive(Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    pub vote: Vote,
    /// `snapshot_id` names the transfer: a piece of another is refused.
    pub meta: Meta,
    pub offset: u64,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub done: bool,
}

/// The receiver's answer to a [`SnapshotChunk`]: its vote once the last
/// piece is installed, `None` before.
pub type SnapshotChunkReply = Result<Option<SnapshotResponse<TypeConfig>>, String>;

pub struct Conn {
    target: NodeId,
    /// The peer as the effective membership has it (see [`Conn::refresh`]).
    node: Member,
    peers: Arc<PeerClients>,
    membership: ServerMetrics,
    /// AppendEntries go on this stream (opened on first use, again after
    /// it ended)...
    append: Option<Arc<AppendStream>>,
    /// ...unless the peer has none (an older version): unary calls then.
    unary_only: bool,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Conn {
        Conn {
            target,
            node: node.clone(),
            peers: self.peers.clone(),
            membership: self.membership.clone(),
            append: None,
            unary_only: false,
        }
    }
}

#[derive(Debug)]
struct Msg(String);
impl std::fmt::Display for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Msg {}

enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl Conn {
    /// Follows a change of the peer's URLs (`member update`): openraft 0.10
    /// keeps a replication stream, and so this client and the node it was
    /// made for, across membership changes that keep the peer (0.9 rebuilt
    /// them). Each call goes to the URL the effective membership names.
    fn refresh(&mut self) {
        let Some(rx) = self.membership.get() else {
            return;
        };
        let current = rx
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&self.target)
            .cloned();
        if let Some(node) = current
            && node.peer_urls != self.node.peer_urls
        {
            self.node = node;
            self.append = None;
            self.unary_only = false;
        }
    }

    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let mut client = self
            .peers
            .for_member(&self.node)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&Msg(e.to_string()))))?;
        let mut request = tonic::Request::new(Blob { data: encode(req) });
        request.set_timeout(ttl);
        let reply = match rpc {
            Rpc::Append => client.append(request).await,
            Rpc::Vote => client.vote(request).await,
            Rpc::Snapshot => client.snapshot(request).await,
        };
        let reply = reply.map_err(|s| {
            let m = Msg(format!(
                "peer {} ({:?}): {}",
                self.target,
                self.node.peer_urls,
                s.message()
            ));
            if s.code() == tonic::Code::Unavailable {
                RPCError::Unreachable(Unreachable::new(&m))
            } else {
                RPCError::Network(NetworkError::new(&m))
            }
        })?;
        decode::<Resp>(&reply.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e.to_string()))))
    }

    fn unreachable(&self, why: &str) -> RPCError<TypeConfig> {
        RPCError::Unreachable(Unreachable::new(&Msg(format!(
            "peer {} ({:?}): {why}",
            self.target, self.node.peer_urls
        ))))
    }

    /// The open AppendEntries stream, opened if needed; `None` when the
    /// peer has no such stream (then unary calls are used).
    async fn append_stream(
        &mut self,
        ttl: Duration,
    ) -> Result<Option<Arc<AppendStream>>, RPCError<TypeConfig>> {
        if self.unary_only {
            return Ok(None);
        }
        if let Some(s) = &self.append
            && s.is_open()
        {
            return Ok(Some(s.clone()));
        }
        self.append = None;
        let mut client = self
            .peers
            .for_member(&self.node)
            .map_err(|e| self.unreachable(&e.to_string()))?;
        let opened = tokio::time::timeout(
            ttl,
            AppendStream::open(|out| client.append_stream(out), "append"),
        )
        .await;
        match opened {
            Err(_) => Err(self.unreachable("opening the append stream timed out")),
            Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => {
                self.unary_only = true;
                Ok(None)
            }
            Ok(Err(s)) => Err(self.unreachable(s.message())),
            Ok(Ok(s)) => {
                self.append = Some(s.clone());
                Ok(Some(s))
            }
        }
    }

    /// The peer's Raft has stopped (the only error its Raft returns).
    fn remote(&self, e: RaftError<TypeConfig>) -> RPCError<TypeConfig> {
        self.unreachable(&format!("raft stopped: {e}"))
    }

    async fn send_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        option: &RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = snapshot.snapshot;
        let transfer_id = format!("{}-{}", self.target, rand::random::<u64>());
        file.seek(std::io::SeekFrom::Start(0))
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
        let mut offset = 0u64;
        loop {
            let mut data = vec![0u8; SNAPSHOT_CHUNK];
            let mut n = 0;
            while n < data.len() {
                let r = file
                    .read(&mut data[n..])
                    .await
                    .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))?;
                if r == 0 {
                    break;
                }
                n += r;
            }
            data.truncate(n);
            let done = n < SNAPSHOT_CHUNK;
            let chunk = SnapshotChunk {
                vote,
                meta: Meta {
                    last_log_id: snapshot.meta.last_log_id,
                    last_membership: snapshot.meta.last_membership.clone(),
                    snapshot_id: transfer_id.clone(),
                },
                offset,
                data,
                done,
            };
            let reply: SnapshotChunkReply = self
                .call(Rpc::Snapshot, &chunk, option.hard_ttl())
                .await
                .map_err(|e| match e {
                    RPCError::Network(e) => StreamingError::Network(e),
                    RPCError::Timeout(e) => StreamingError::Timeout(e),
                    RPCError::Unreachable(e) => StreamingError::Unreachable(e),
                    RPCError::RemoteError(e) => {
                        StreamingError::Unreachable(Unreachable::from_string(e))
                    }
                })?;
            match reply {
                Err(e) => {
                    return Err(StreamingError::Unreachable(Unreachable::from_string(
                        format!("peer {}: snapshot refused: {e}", self.target),
                    )));
                }
                Ok(Some(resp)) => return Ok(resp),
                Ok(None) if done => {
                    return Err(StreamingError::Network(NetworkError::from_string(format!(
                        "peer {}: no answer to the last snapshot piece",
                        self.target
                    ))));
                }
                Ok(None) => offset += n as u64,
            }
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Conn {
    type SnapshotData = tokio::fs::File;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.refresh();
        let ttl = option.hard_ttl();
        // Large appends (a follower catching up, big batches) go as unary
        // calls, each on its own HTTP/2 stream: on the shared stream they
        // would hold heartbeats and commits behind them (one flow-control
        // window) long enough to time them out.
        let bytes: usize = rpc.entries.iter().map(super::proposer::entry_weight).sum();
        if bytes <= MAX_STREAMED_APPEND
            && let Some(stream) = self.append_stream(ttl).await?
        {
            return match stream.call(rpc, ttl).await {
                Ok(res) => res.map_err(|e| self.remote(e)),
                Err(CallError::Timeout) => Err(RPCError::Network(NetworkError::new(&Msg(
                    format!("peer {}: append timed out after {ttl:?}", self.target),
                )))),
                Err(e) => {
                    self.append = None;
                    Err(self.unreachable(&format!("append stream ended ({e:?})")))
                }
            };
        }
        self.call::<_, Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>>>(
            Rpc::Append,
            &rpc,
            ttl,
        )
        .await?
        .map_err(|e| self.remote(e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.refresh();
        self.call::<_, Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>>>(
            Rpc::Vote,
            &rpc,
            option.hard_ttl(),
        )
        .await?
        .map_err(|e| self.remote(e))
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + openraft::OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        self.refresh();
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.send_snapshot(vote, snapshot, &option) => res,
        }
    }
}
