//! `k8sup-datastore`: a Raft-replicated key-value store on RocksDB that
//! speaks the etcd v3 gRPC API, so kube-apiserver and `etcdctl` can use it
//! in place of etcd.
//!
//! Layout (one concept per module):
//! - [`mvcc`]: the revisioned keyspace in RocksDB (history + key index).
//! - [`txn`]: etcd's request semantics (Range/Put/DeleteRange/Txn) on top of it.
//! - [`lease`]: persisted leases and the leader's expiry clock.
//! - [`watch`]: the hub that fans committed events out to watchers.
//! - [`raft`]: openraft glue (log store, state machine, peer network).
//! - [`node`]: one member: write forwarding, read index, membership.
//! - [`grpc`]: the etcd services and the peer service.
//! - [`coalesce`]: one write for the frames of many streams of a client connection.
//! - [`snapshot`]: the portable snapshot format (Raft, `snapshot save`, restore).

// openraft's storage traits fix `StorageError` (large) as the error type.
#![allow(clippy::result_large_err)]

pub mod alarm;
pub mod coalesce;
pub mod config;
pub mod durable;
pub mod errors;
pub mod forward;
pub mod grpc;
pub mod h2authority;
pub mod health;
pub mod http;
pub mod keycodec;
pub mod leadership;
pub mod lease;
pub mod limits;
pub mod member;
pub mod mvcc;
pub mod peer_stream;
pub mod proto;
pub mod raft;
pub mod read_index;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod txn;
pub mod watch;

#[cfg(test)]
mod compaction_tests;
#[cfg(test)]
mod index_filter_tests;

/// The etcd version we report in `Maintenance/Status`. kube-apiserver only
/// trusts `RequestWatchProgress` from servers reporting at least 3.5.13 (and
/// then serves consistent lists from its watch cache, and WatchList); our
/// RequestProgress is etcd 3.6's (`progressIfSync`: answered only when every
/// watcher of the stream is synced; see `grpc/watch.rs`), checked against
/// etcd 3.6 by the differential suite and by a real kube-apiserver.
pub const EMULATED_ETCD_VERSION: &str = "3.5.21";
