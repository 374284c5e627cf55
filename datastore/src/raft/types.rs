//! The Raft type configuration and the commands that travel through the log.

use serde::{Deserialize, Serialize};

use crate::errors::EtcdError;

/// A member as Raft knows it: what etcd's `Member` message reports.
/// `name` and `client_urls` are empty until the member has started and
/// published them (etcd shows such members as "unstarted").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// A state-machine command. Request bodies are etcd's own protobuf messages
/// (prost-encoded), so the log carries exactly what the client sent.
/// Byte fields go through `serde_bytes`: postcard then copies them in one
/// piece instead of one `u8` element at a time (same encoding on disk).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    Put(#[serde(with = "serde_bytes")] Vec<u8>),
    DeleteRange(#[serde(with = "serde_bytes")] Vec<u8>),
    Txn(#[serde(with = "serde_bytes")] Vec<u8>),
    Compact(i64),
    LeaseGrant {
        id: i64,
        ttl: i64,
    },
    LeaseRevoke {
        id: i64,
    },
    /// A member announces its name and client URLs after starting.
    PublishMember {
        id: u64,
        name: String,
        client_urls: Vec<String>,
    },
    /// Several client requests proposed as one entry by the leader's group
    /// commit ([`super::proposer`]); applied one after the other, each with
    /// its own revision and result. Never nested.
    Batch(Vec<Command>),
    /// etcd's `AlarmRequest` (ACTIVATE/DEACTIVATE), see [`crate::alarm`].
    Alarm(Vec<u8>),
}

/// openraft 0.10 logs entries through `Display`: the kind and size only,
/// never the request bodies (keys and values stay out of the logs).
impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Put(b) => write!(f, "put({} bytes)", b.len()),
            Command::DeleteRange(b) => write!(f, "delete_range({} bytes)", b.len()),
            Command::Txn(b) => write!(f, "txn({} bytes)", b.len()),
            Command::Compact(rev) => write!(f, "compact({rev})"),
            Command::LeaseGrant { id, ttl } => write!(f, "lease_grant({id:x}, {ttl}s)"),
            Command::LeaseRevoke { id } => write!(f, "lease_revoke({id:x})"),
            Command::PublishMember { id, name, .. } => write!(f, "publish({id:x}, {name})"),
            Command::Batch(cmds) => write!(f, "batch({})", cmds.len()),
            Command::Alarm(b) => write!(f, "alarm({} bytes)", b.len()),
        }
    }
}

/// The result of applying a command: the revision after it and the
/// prost-encoded etcd response, or the etcd error.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum CommandResult {
    Ok {
        rev: i64,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    Err(EtcdError),
    /// Blank and membership entries.
    None,
    /// The results of a [`Command::Batch`], in order.
    Batch(Vec<CommandResult>),
}

openraft::declare_raft_types!(
    /// openraft configuration of k8sup-datastore. The defaults of the
    /// rest (`Term = u64`, the "advanced" leader id `(term, node_id)`,
    /// `Vote`, `Entry`) serialize exactly as openraft 0.9's did, so a 0.9
    /// data directory reads unchanged.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = Member,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig, super::state_machine::StateMachine>;
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
pub type EntryPayload = openraft::type_config::alias::EntryPayloadOf<TypeConfig>;

/// The Raft's server metrics (role, vote, effective membership), set once
/// the Raft is built; read by the parts that openraft builds before it
/// exists: the network clients (a peer's current URLs) and the log store
/// (whether this member leads).
pub type ServerMetrics = std::sync::Arc<
    std::sync::OnceLock<
        openraft::type_config::alias::WatchReceiverOf<
            TypeConfig,
            openraft::metrics::RaftServerMetrics<TypeConfig>,
        >,
    >,
>;
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("postcard encoding of in-memory values cannot fail")
}

pub fn decode<'a, T: Deserialize<'a>>(raw: &'a [u8]) -> Result<T, EtcdError> {
    postcard::from_bytes(raw)
        .map_err(|e| EtcdError::Internal(format!("decoding a peer message: {e}")))
}
