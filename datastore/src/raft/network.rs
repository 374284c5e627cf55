//! The Raft network client: openraft messages over the peer gRPC service
//! (mutual TLS unless `--insecure`), one cached HTTP/2 channel per peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::types::{Member, NodeId, TypeConfig, decode, encode};
use crate::errors::EtcdError;
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
}

pub struct Conn {
    target: NodeId,
    node: Member,
    peers: Arc<PeerClients>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Conn;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Conn {
        Conn {
            target,
            node: node.clone(),
            peers: self.peers.clone(),
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
    async fn call<Req: serde::Serialize, Resp: serde::de::DeserializeOwned, E: std::error::Error>(
        &self,
        rpc: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Result<Resp, E>, RPCError<NodeId, Member, E>>
    where
        Result<Resp, E>: serde::de::DeserializeOwned,
    {
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
        decode::<Result<Resp, E>>(&reply.into_inner().data)
            .map_err(|e| RPCError::Network(NetworkError::new(&Msg(e.to_string()))))
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, Member, E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

impl RaftNetwork<TypeConfig> for Conn {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call::<_, AppendEntriesResponse<NodeId>, RaftError<NodeId>>(
            Rpc::Append,
            &rpc,
            option.hard_ttl(),
        )
        .await?
        .map_err(|e| self.remote(e))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call::<_, InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>(
            Rpc::Snapshot,
            &rpc,
            option.hard_ttl(),
        )
        .await?
        .map_err(|e| self.remote(e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call::<_, VoteResponse<NodeId>, RaftError<NodeId>>(Rpc::Vote, &rpc, option.hard_ttl())
            .await?
            .map_err(|e| self.remote(e))
    }
}
