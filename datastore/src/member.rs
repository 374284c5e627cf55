//! One member at run time: routes writes to the leader, makes reads
//! linearizable with a read index, drives lease expiry while leader, and
//! performs membership changes.

use openraft::async_runtime::watch::WatchReceiver;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::errors::EtcdError;
use crate::forward::{ForwardOp, Route};
use crate::lease::{LeaseClock, LeaseTable};
use crate::mvcc::Mvcc;
use crate::proto::peerpb::Blob;
use crate::proto::{self, ResponseHeader};
use crate::raft::log_store::LogStore;
use crate::raft::network::PeerClients;
use crate::raft::proposer::{Applied, pack, unpack};
use crate::raft::state_machine::StateMachine;
use crate::raft::{Command, CommandResult, Member, Raft, TypeConfig, decode, encode};
use crate::watch::WatchHub;

/// Requests only the leader can answer, sent by followers over the peer link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderCall {
    ReadIndex,
    KeepAlive(i64),
    TimeToLive {
        id: i64,
        keys: bool,
    },
    MemberAdd {
        peer_urls: Vec<String>,
        learner: bool,
    },
    MemberRemove(u64),
    MemberPromote(u64),
    /// Answered by any member: used by a member joining an existing cluster.
    ClusterInfo,
    /// etcd's MemberUpdate: new peer URLs for a member.
    MemberUpdate {
        id: u64,
        peer_urls: Vec<String>,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum LeaderReply {
    ReadIndex(u64),
    /// TTL after the keep-alive; 0 when the lease does not exist.
    KeepAlive(i64),
    /// `ttl` is -1 when the lease does not exist.
    TimeToLive {
        ttl: i64,
        granted: i64,
        keys: Vec<Vec<u8>>,
    },
    MemberAdded(u64),
    Done,
    ClusterInfo {
        cluster_id: u64,
        members: Vec<(u64, Member, bool)>,
    },
}

/// Derives a member ID from its peer URLs like etcd does (a hash of the
/// sorted URLs and the cluster token, plus the time for added members).
pub fn member_id(peer_urls: &[String], token: &str, salt: Option<u128>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = sha2::Sha256::new();
    for u in &urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    if let Some(s) = salt {
        h.update(s.to_be_bytes());
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes")).max(1)
}

pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort();
    let mut h = sha2::Sha256::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    h.update(token.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// The leader's read index: openraft confirms leadership with a quorum
/// heartbeat round and returns the index reads must wait for.
async fn leader_read_index(raft: Raft) -> Result<u64, EtcdError> {
    // ReadIndex: a quorum must acknowledge a message the leader sent after
    // this call (a heartbeat, or an append in flight under load).
    match raft
        .get_read_log_id(openraft::raft::ReadPolicy::ReadIndex)
        .await
    {
        Ok((read, _applied)) => Ok(read.index()),
        Err(_) => Err(EtcdError::NotLeaderRetry),
    }
}

/// One leader-only call over the peer link.
async fn remote_leader_call(
    mut client: proto::peerpb::peer_client::PeerClient<tonic::transport::Channel>,
    leader: u64,
    call: &LeaderCall,
    timeout: Duration,
) -> Result<LeaderReply, EtcdError> {
    let mut req = tonic::Request::new(Blob { data: encode(call) });
    req.set_timeout(timeout);
    match client.leader_call(req).await {
        Ok(r) => decode::<Result<LeaderReply, EtcdError>>(&r.into_inner().data)?,
        Err(s) => Err(leader_call_error(&s, "calling", leader)),
    }
}

/// What a failed peer call to the leader means to the client: no leader
/// (retried), etcd's request timeout, or an internal error naming the call.
fn leader_call_error(s: &tonic::Status, doing: &str, leader: u64) -> EtcdError {
    match s.code() {
        tonic::Code::Unavailable => EtcdError::NoLeader,
        // tonic answers a request past its grpc-timeout with
        // Cancelled("Timeout expired"); to the client either is etcd's timeout.
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => EtcdError::Timeout,
        _ => EtcdError::Internal(format!("{doing} leader {leader:x}: {}", s.message())),
    }
}

pub struct Node {
    pub id: u64,
    pub cluster_id: u64,
    pub name: String,
    pub token: String,
    pub client_urls: Vec<String>,
    pub raft: Raft,
    pub mvcc: Arc<Mvcc>,
    pub hub: Arc<WatchHub>,
    pub leases: Arc<LeaseClock>,
    pub peers: Arc<PeerClients>,
    pub log: LogStore,
    /// How long a request waits for a leader before `etcdserver: no leader`.
    pub leader_wait: Duration,
    /// Interval of `progress_notify` watch notifications.
    pub progress_every: Duration,
    pub request_timeout: Duration,
    pub read_index: crate::read_index::ReadIndexBatcher,
    /// Group commit: the queue this member proposes from while it leads,
    /// and the one it forwards to the leader from while it follows.
    pub proposer: crate::raft::proposer::Proposer,
    /// This member's write-forwarding stream to the leader.
    pub forwarder: crate::forward::ForwardStreams,
}

fn map_write_err(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> EtcdError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => EtcdError::LeaderChanged,
        // The entry was proposed but a new leader's log replaced it.
        RaftError::APIError(ClientWriteError::LogEntryDiscarded(_)) => EtcdError::LeaderChanged,
        RaftError::APIError(ClientWriteError::PreconditionFailed(e)) => {
            EtcdError::Internal(e.to_string())
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            EtcdError::MembershipChange(e.to_string())
        }
        RaftError::Fatal(f) => EtcdError::Internal(format!("raft stopped: {f}")),
    }
}

impl Node {
    pub fn header(&self, rev: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision: rev,
            raft_term: self.raft.metrics().borrow_watched().current_term,
        }
    }

    /// Fills etcd's top-level header fields, keeping the revision given.
    pub fn fill(&self, h: &mut Option<ResponseHeader>) {
        let rev = h
            .as_ref()
            .map(|h| h.revision)
            .filter(|r| *r != 0)
            .unwrap_or_else(|| self.mvcc.current_rev());
        *h = Some(self.header(rev));
    }

    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.id)
    }

    pub fn member(&self, id: u64) -> Option<Member> {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .get_node(&id)
            .cloned()
    }

    /// Waits (briefly) for a known leader.
    pub async fn wait_leader(&self) -> Result<u64, EtcdError> {
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + self.leader_wait;
        loop {
            if let Some(l) = rx.borrow_and_update().current_leader {
                return Ok(l);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(EtcdError::NoLeader);
            }
        }
    }

    fn leader_client(
        &self,
        leader: u64,
    ) -> Result<proto::peerpb::peer_client::PeerClient<tonic::transport::Channel>, EtcdError> {
        let m = self.member(leader).ok_or(EtcdError::NoLeader)?;
        self.peers.for_member(&m)
    }

    /// Proposes `cmd` on this member, which must be the leader.
    /// A [`Command::Batch`] here comes from a follower's forwarding queue:
    /// its commands join this leader's queue one by one, and their outcomes
    /// (errors included) go back as one [`CommandResult::Batch`].
    /// With the result comes the log index of the (last) entry applied.
    pub async fn write_as_leader(&self, cmd: Command) -> Result<Applied, EtcdError> {
        match cmd {
            Command::Batch(cmds) => {
                let results =
                    futures::future::join_all(cmds.into_iter().map(|c| self.propose(c))).await;
                let index = results
                    .iter()
                    .filter_map(|r| r.as_ref().ok().map(|(_, i)| *i))
                    .max()
                    .unwrap_or(0);
                Ok((
                    CommandResult::Batch(
                        results
                            .into_iter()
                            .map(|r| r.map(|(c, _)| c).unwrap_or_else(CommandResult::Err))
                            .collect(),
                    ),
                    index,
                ))
            }
            cmd => self.propose(cmd).await,
        }
    }

    /// Queues `cmd` for the leader's group commit.
    async fn propose(&self, cmd: Command) -> Result<Applied, EtcdError> {
        let raft = self.raft.clone();
        let timeout = self.request_timeout;
        self.proposer
            .local
            .submit(cmd, move |cmds| {
                let raft = raft.clone();
                async move {
                    let n = cmds.len();
                    match tokio::time::timeout(timeout, raft.client_write(pack(cmds))).await {
                        Ok(Ok(resp)) => {
                            let index = resp.log_id.index;
                            unpack(n, resp.data)
                                .map(|v| v.into_iter().map(|r| r.map(|c| (c, index))).collect())
                        }
                        Ok(Err(e)) => Err(map_write_err(e)),
                        Err(_) => Err(EtcdError::Timeout),
                    }
                }
            })
            .await
    }

    /// Executes a write through Raft, forwarding it to the leader if needed.
    pub async fn write(&self, cmd: Command) -> Result<CommandResult, EtcdError> {
        self.with_leader(|leader| {
            let cmd = cmd.clone();
            async move {
                if leader == self.id {
                    self.write_as_leader(cmd).await.map(|(r, _)| r)
                } else {
                    self.forward(leader, cmd).await
                }
            }
        })
        .await
    }

    /// Runs `op` with the current leader's ID, up to three times while
    /// leadership moves: an answer of "not leader" or "no leader" means
    /// nothing was proposed anywhere, so a retry with the new leader is safe.
    async fn with_leader<T, F, Fut>(&self, mut op: F) -> Result<T, EtcdError>
    where
        F: FnMut(u64) -> Fut,
        Fut: std::future::Future<Output = Result<T, EtcdError>>,
    {
        let mut last = EtcdError::NoLeader;
        for _ in 0..3 {
            let leader = self.wait_leader().await?;
            match op(leader).await {
                Err(EtcdError::NotLeaderRetry) | Err(EtcdError::NoLeader) => {
                    last = EtcdError::LeaderChanged;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// Sends `cmd` to the leader on this member's forwarding stream
    /// ([`crate::forward`]) and answers once this member applied it.
    async fn forward(&self, leader: u64, cmd: Command) -> Result<CommandResult, EtcdError> {
        let m = self.member(leader).ok_or(EtcdError::NoLeader)?;
        let client = self.peers.for_member(&m)?;
        let url = m.peer_urls.first().cloned().unwrap_or_default();
        let stream = match self
            .forwarder
            .stream(leader, &url, client.clone(), self.request_timeout)
            .await?
        {
            Route::Stream(s) => s,
            Route::Unary => return self.forward_unary(leader, client, cmd).await,
        };
        let (res, index) = stream
            .send(ForwardOp::Write(cmd), self.request_timeout)
            .await?;
        self.mvcc.wait_applied(index, self.request_timeout).await?;
        Ok(res)
    }

    /// Sends `cmd` to a leader without `ForwardStream` (an older version)
    /// through this member's forwarding queue: writes that queue up
    /// meanwhile travel in the same unary peer call.
    async fn forward_unary(
        &self,
        leader: u64,
        client: proto::peerpb::peer_client::PeerClient<tonic::transport::Channel>,
        cmd: Command,
    ) -> Result<CommandResult, EtcdError> {
        let timeout = self.request_timeout;
        self.proposer
            .forward
            .submit(cmd, move |cmds| {
                let mut client = client.clone();
                async move {
                    let n = cmds.len();
                    let mut req = tonic::Request::new(Blob {
                        data: encode(&pack(cmds)),
                    });
                    req.set_timeout(timeout);
                    match client.forward(req).await {
                        Ok(r) => unpack(
                            n,
                            decode::<Result<CommandResult, EtcdError>>(&r.into_inner().data)??,
                        )
                        .map(|v| v.into_iter().map(|r| r.map(|c| (c, 0))).collect()),
                        Err(s) => Err(leader_call_error(&s, "forwarding to", leader)),
                    }
                }
            })
            .await
            .map(|(r, _)| r)
    }

    /// Runs `call` on the leader (locally if this member leads).
    pub async fn leader_call(&self, call: LeaderCall) -> Result<LeaderReply, EtcdError> {
        self.with_leader(|leader| {
            let call = call.clone();
            async move {
                if leader == self.id {
                    self.handle_leader_call(call).await
                } else {
                    remote_leader_call(
                        self.leader_client(leader)?,
                        leader,
                        &call,
                        self.request_timeout,
                    )
                    .await
                }
            }
        })
        .await
    }

    /// A quorum-confirmed read index, from the batcher: on the leader one
    /// heartbeat round, on a follower one `ReadIndex` call to the leader,
    /// each shared by every read queued meanwhile.
    async fn read_index(&self) -> Result<u64, EtcdError> {
        let mut last = EtcdError::NoLeader;
        for _ in 0..3 {
            let leader = self.wait_leader().await?;
            let res = if leader == self.id {
                let raft = self.raft.clone();
                self.read_index
                    .read_index(move || leader_read_index(raft.clone()))
                    .await
            } else {
                self.follower_read_index(leader).await
            };
            match res {
                Err(EtcdError::NotLeaderRetry) | Err(EtcdError::NoLeader) => {
                    last = EtcdError::LeaderChanged;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
        Err(last)
    }

    /// A read index from the leader, through this member's batcher: on the
    /// forwarding stream, or with a unary call to a leader without one.
    async fn follower_read_index(&self, leader: u64) -> Result<u64, EtcdError> {
        let m = self.member(leader).ok_or(EtcdError::NoLeader)?;
        let client = self.peers.for_member(&m)?;
        let url = m.peer_urls.first().cloned().unwrap_or_default();
        let timeout = self.request_timeout;
        match self
            .forwarder
            .stream(leader, &url, client.clone(), timeout)
            .await?
        {
            Route::Stream(stream) => {
                let mvcc = self.mvcc.clone();
                self.read_index
                    .read_index(move || {
                        let stream = stream.clone();
                        let applied = mvcc.applied_index();
                        async move {
                            match stream.send(ForwardOp::ReadIndex { applied }, timeout).await {
                                Ok((_, index)) => Ok(index),
                                // A read can always be asked again.
                                Err(EtcdError::TimeoutLeaderFail) => Err(EtcdError::NoLeader),
                                Err(e) => Err(e),
                            }
                        }
                    })
                    .await
            }
            Route::Unary => {
                self.read_index
                    .read_index(move || {
                        let client = client.clone();
                        async move {
                            match remote_leader_call(
                                client,
                                leader,
                                &LeaderCall::ReadIndex,
                                timeout,
                            )
                            .await?
                            {
                                LeaderReply::ReadIndex(i) => Ok(i),
                                other => Err(EtcdError::Internal(format!(
                                    "unexpected leader reply {other:?}"
                                ))),
                            }
                        }
                    })
                    .await
            }
        }
    }

    /// Waits until reads on this member reflect every write acknowledged
    /// before the call (etcd's linearizable read, via openraft's read index).
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        let idx = self.read_index().await?;
        // Published by the state machine as soon as the store shows it.
        self.mvcc.wait_applied(idx, self.request_timeout).await
    }

    fn membership(&self) -> (BTreeSet<u64>, BTreeSet<u64>, BTreeMap<u64, Member>) {
        let m = self
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone();
        let mem = m.membership();
        (
            mem.voter_ids().collect(),
            mem.learner_ids().collect(),
            mem.nodes().map(|(id, n)| (*id, n.clone())).collect(),
        )
    }

    /// Members with their published names and client URLs (etcd's MemberList).
    pub fn members(&self) -> Result<Vec<proto::Member>, EtcdError> {
        let (_voters, learners, nodes) = self.membership();
        let attrs: BTreeMap<u64, _> = StateMachine::member_attrs(&self.mvcc)?
            .into_iter()
            .collect();
        Ok(nodes
            .into_iter()
            .map(|(id, n)| {
                let a = attrs.get(&id);
                proto::Member {
                    id,
                    name: a.map(|a| a.name.clone()).unwrap_or_else(|| n.name.clone()),
                    peer_ur_ls: n.peer_urls.clone(),
                    client_ur_ls: a
                        .map(|a| a.client_urls.clone())
                        .unwrap_or_else(|| n.client_urls.clone()),
                    is_learner: learners.contains(&id),
                }
            })
            .collect())
    }

    /// Executes a leader-only request. Errors with `LeaderChanged` if this
    /// member is not the leader.
    pub async fn handle_leader_call(&self, call: LeaderCall) -> Result<LeaderReply, EtcdError> {
        if let LeaderCall::ClusterInfo = call {
            let (_v, learners, nodes) = self.membership();
            return Ok(LeaderReply::ClusterInfo {
                cluster_id: self.cluster_id,
                members: nodes
                    .into_iter()
                    .map(|(id, n)| (id, n, learners.contains(&id)))
                    .collect(),
            });
        }
        if !self.is_leader() {
            return Err(EtcdError::NotLeaderRetry);
        }
        match call {
            LeaderCall::ReadIndex => {
                let raft = self.raft.clone();
                Ok(LeaderReply::ReadIndex(
                    self.read_index
                        .read_index(move || leader_read_index(raft.clone()))
                        .await?,
                ))
            }
            LeaderCall::KeepAlive(id) => {
                Ok(LeaderReply::KeepAlive(self.leases.refresh(id).unwrap_or(0)))
            }
            LeaderCall::TimeToLive { id, keys } => match self.leases.remaining(id) {
                Some((left, granted)) => {
                    let keys = if keys {
                        LeaseTable(&self.mvcc).keys(id)?
                    } else {
                        Vec::new()
                    };
                    Ok(LeaderReply::TimeToLive {
                        ttl: left,
                        granted,
                        keys,
                    })
                }
                None => Ok(LeaderReply::TimeToLive {
                    ttl: -1,
                    granted: 0,
                    keys: Vec::new(),
                }),
            },
            LeaderCall::MemberAdd { peer_urls, learner } => {
                let (_v, _l, nodes) = self.membership();
                if nodes
                    .values()
                    .any(|n| n.peer_urls.iter().any(|u| peer_urls.contains(u)))
                {
                    return Err(EtcdError::PeerUrlExists);
                }
                let salt = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let id = member_id(&peer_urls, &self.token, Some(salt));
                let node = Member {
                    name: String::new(),
                    peer_urls,
                    client_urls: Vec::new(),
                };
                self.raft
                    .add_learner(id, node, false)
                    .await
                    .map_err(map_write_err)?;
                if !learner {
                    self.raft
                        .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                        .map_err(map_write_err)?;
                }
                Ok(LeaderReply::MemberAdded(id))
            }
            LeaderCall::MemberPromote(id) => {
                let (voters, learners, _nodes) = self.membership();
                if voters.contains(&id) {
                    return Err(EtcdError::MemberNotLearner);
                }
                if !learners.contains(&id) {
                    return Err(EtcdError::MemberNotFound);
                }
                let m = self.raft.metrics().borrow_watched().clone();
                let last = m.last_log_index.unwrap_or(0);
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index)
                    .unwrap_or(0);
                // etcd: a learner is ready once it has 90% of the leader's log.
                if (matched as f64) < (last as f64) * 0.9 {
                    return Err(EtcdError::LearnerNotReady);
                }
                self.raft
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                    .await
                    .map_err(map_write_err)?;
                Ok(LeaderReply::Done)
            }
            LeaderCall::MemberRemove(id) => {
                let (voters, learners, _nodes) = self.membership();
                let change = if voters.contains(&id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else if learners.contains(&id) {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                } else {
                    return Err(EtcdError::MemberNotFound);
                };
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(map_write_err)?;
                Ok(LeaderReply::Done)
            }
            LeaderCall::MemberUpdate { id, peer_urls } => {
                let (_v, _l, nodes) = self.membership();
                let mut node = nodes.get(&id).cloned().ok_or(EtcdError::MemberNotFound)?;
                if nodes.iter().any(|(other, n)| {
                    *other != id && n.peer_urls.iter().any(|u| peer_urls.contains(u))
                }) {
                    return Err(EtcdError::PeerUrlExists);
                }
                node.peer_urls = peer_urls;
                let change = ChangeMembers::SetNodes(BTreeMap::from([(id, node)]));
                self.raft
                    .change_membership(change, false)
                    .await
                    .map_err(map_write_err)?;
                Ok(LeaderReply::Done)
            }
            LeaderCall::ClusterInfo => unreachable!("handled above"),
        }
    }

    /// Leader duty: revoke leases whose countdown ran out; on gaining
    /// leadership, restart every countdown (etcd's lease promotion).
    pub async fn run_lease_expiry(self: Arc<Self>) {
        let mut was_leader = false;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let leader = self.raft.metrics().borrow_watched().state == ServerState::Leader;
            if leader && !was_leader {
                match LeaseTable(&self.mvcc).all() {
                    Ok(all) => self.leases.reset_from(&all),
                    Err(e) => tracing::error!(error = %e, "reading leases on becoming leader"),
                }
            }
            was_leader = leader;
            if !leader {
                continue;
            }
            for id in self.leases.expired() {
                self.leases.postpone(id, Duration::from_secs(2));
                match self.write_as_leader(Command::LeaseRevoke { id }).await {
                    Ok(_) => tracing::debug!(lease = id, "lease expired and revoked"),
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "revoking an expired lease failed; will retry")
                    }
                }
            }
        }
    }

    /// Publishes this member's name and client URLs (etcd's `publish`), and
    /// keeps trying until it is committed.
    pub async fn run_publish(self: Arc<Self>) {
        loop {
            let current = StateMachine::member_attrs(&self.mvcc).ok().and_then(|all| {
                all.into_iter()
                    .find(|(id, _)| *id == self.id)
                    .map(|(_, a)| a)
            });
            let up_to_date = current
                .map(|a| a.name == self.name && a.client_urls == self.client_urls)
                .unwrap_or(false);
            if up_to_date {
                return;
            }
            if self.member(self.id).is_some() {
                let cmd = Command::PublishMember {
                    id: self.id,
                    name: self.name.clone(),
                    client_urls: self.client_urls.clone(),
                };
                match self.write(cmd).await {
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "publishing member attributes; will retry")
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}
