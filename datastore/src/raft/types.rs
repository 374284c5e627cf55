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
    /// openraft configuration of k8sup-datastore.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type StorageError = openraft::StorageError<NodeId>;

pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("postcard encoding of in-memory values cannot fail")
}

pub fn decode<'a, T: Deserialize<'a>>(raw: &'a [u8]) -> Result<T, EtcdError> {
    postcard::from_bytes(raw)
        .map_err(|e| EtcdError::Internal(format!("decoding a peer message: {e}")))
}
