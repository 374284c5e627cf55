//! etcd's client-visible errors. The Go client maps a gRPC status to a typed
//! error by its *message*, so these strings must match etcd byte for byte
//! (see etcd `api/v3rpc/rpctypes/error.go`).

use tonic::{Code, Status};

/// An error from executing a request against the store, as etcd reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// A forwarded request reached a member that is no longer leader and
    /// did not propose it: safe to retry (shown to clients as "leader changed").
    #[error("etcdserver: leader changed")]
    NotLeaderRetry,
    #[error("etcdserver: request timed out")]
    Timeout,
    /// A forwarded write whose stream to the leader broke while it was in
    /// flight: it may or may not be committed (etcd's
    /// `ErrTimeoutDueToLeaderFail`), so it is not sent again.
    #[error("etcdserver: request timed out, possibly due to previous leader failure")]
    TimeoutLeaderFail,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: unhealthy cluster")]
    UnhealthyCluster,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: not leader")]
    NotLeader,
    /// openraft refused a membership change (typically: another is in flight).
    #[error(
        "etcdserver: membership change refused: {0} (only one voter change at a time; retry when the current one has finished)"
    )]
    MembershipChange(String),
    /// Anything else: an internal failure, reported with its cause.
    #[error("{0}")]
    Internal(String),
}

impl EtcdError {
    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> Code {
        use EtcdError::*;
        match self {
            Compacted | FutureRev => Code::OutOfRange,
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | RequestTooLarge => Code::InvalidArgument,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            LeaseExists | LearnerNotReady | MemberNotLearner => Code::FailedPrecondition,
            LeaseTtlTooLarge => Code::OutOfRange,
            NoLeader | LeaderChanged | NotLeaderRetry | Timeout | TimeoutLeaderFail
            | UnhealthyCluster => Code::Unavailable,
            PeerUrlExists | MembershipChange(_) | NotLeader => Code::FailedPrecondition,
            NoSpace => Code::ResourceExhausted,
            BadLeaderTransferee => Code::FailedPrecondition,
            Internal(_) => Code::Internal,
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        EtcdError::Internal(e.to_string())
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<rocksdb::Error> for EtcdError {
    fn from(e: rocksdb::Error) -> Self {
        EtcdError::Internal(format!("rocksdb: {e}"))
    }
}
