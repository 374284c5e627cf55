//! etcd's request-size limit and backend quota, checked where etcd checks
//! them: on the member that received the request, before it is proposed.
//!
//! - `--max-request-bytes` (default 1.5 MiB): a write whose encoding is
//!   larger is refused with `etcdserver: request is too large`. gRPC itself
//!   accepts 512 KiB more, so that clients get etcd's error, not a transport one.
//! - `--quota-backend-bytes` (default 2 GiB, etcd's): a write that would
//!   take the database past it raises the NOSPACE alarm (see [`crate::alarm`])
//!   and is refused with `etcdserver: mvcc: database space exceeded`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use crate::alarm;
use crate::errors::EtcdError;
use crate::member::Node;
use crate::mvcc::Mvcc;
use crate::proto::alarm_request::AlarmAction;
use crate::proto::{AlarmRequest, AlarmType};
use crate::raft::Command;

/// etcd's default `--max-request-bytes`.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 3 << 19;
/// etcd's default `--quota-backend-bytes` (used when the flag is 0).
pub const DEFAULT_QUOTA_BACKEND_BYTES: i64 = 2 << 30;
/// What gRPC accepts beyond `--max-request-bytes` (etcd's `grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 << 10;

/// How often the cached database size and alarm state are refreshed.
const REFRESH: Duration = Duration::from_millis(250);

/// Database size and NOSPACE state, cached so that the write path pays two
/// atomic loads, not RocksDB property reads and an alarm scan per request.
#[derive(Debug, Default)]
struct Space {
    db_size: AtomicI64,
    no_space: AtomicBool,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub quota_backend_bytes: i64,
    space: Arc<Space>,
}

impl Limits {
    /// From the flags; a quota of 0 means etcd's default, as in etcd.
    /// Keeps the cached space figures fresh for as long as the runtime lives.
    pub fn new(max_request_bytes: usize, quota_backend_bytes: i64, mvcc: Arc<Mvcc>) -> Self {
        let quota = if quota_backend_bytes <= 0 {
            DEFAULT_QUOTA_BACKEND_BYTES
        } else {
            quota_backend_bytes
        };
        let space = Arc::new(Space::default());
        let s = space.clone();
        tokio::spawn(async move {
            loop {
                s.db_size.store(mvcc.db_size(), Ordering::Release);
                match alarm::no_space(&mvcc) {
                    Ok(v) => s.no_space.store(v, Ordering::Release),
                    Err(e) => tracing::warn!(error = %e, "reading alarms"),
                }
                tokio::time::sleep(REFRESH).await;
            }
        });
        Limits {
            max_request_bytes,
            quota_backend_bytes: quota,
            space,
        }
    }

    /// The gRPC decoding limit for client services.
    pub fn grpc_max_message(&self) -> usize {
        self.max_request_bytes + GRPC_OVERHEAD_BYTES
    }

    pub fn check_size(&self, encoded_len: usize) -> Result<(), EtcdError> {
        if encoded_len > self.max_request_bytes {
            Err(EtcdError::RequestTooLarge)
        } else {
            Ok(())
        }
    }

    /// Refuses a write that adds `cost` bytes when the NOSPACE alarm is
    /// active, or raises the alarm if this write would exceed the quota.
    /// The cached figures decide the common case; the store is read only
    /// when they say no (so a disarm or a defragment takes effect at once).
    pub async fn check_space(&self, node: &Node, cost: i64) -> Result<(), EtcdError> {
        if self.space.no_space.load(Ordering::Acquire) {
            let active = alarm::no_space(&node.mvcc)?;
            self.space.no_space.store(active, Ordering::Release);
            if active {
                return Err(EtcdError::NoSpace);
            }
        }
        if self.space.db_size.load(Ordering::Acquire) + cost <= self.quota_backend_bytes {
            return Ok(());
        }
        let size = node.mvcc.db_size();
        self.space.db_size.store(size, Ordering::Release);
        if size + cost <= self.quota_backend_bytes {
            return Ok(());
        }
        tracing::warn!(
            db_size = node.mvcc.db_size(),
            quota = self.quota_backend_bytes,
            "database space exceeded: raising the NOSPACE alarm (free space, compact, defragment, then `etcdctl alarm disarm`)"
        );
        raise_no_space(node).await?;
        self.space.no_space.store(true, Ordering::Release);
        Err(EtcdError::NoSpace)
    }
}

/// Proposes this member's NOSPACE alarm through Raft.
pub async fn raise_no_space(node: &Node) -> Result<(), EtcdError> {
    use prost::Message;
    let req = AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id: node.id,
        alarm: AlarmType::Nospace as i32,
    };
    node.write(Command::Alarm(req.encode_to_vec()))
        .await
        .map(|_| ())
}
