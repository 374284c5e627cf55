//! Plain-HTTP `/health` and `/metrics` (Prometheus text), like etcd's
//! `--listen-metrics-urls`. Metric names follow etcd's where the meaning is
//! the same, so existing dashboards and alerts keep working.

use openraft::async_runtime::watch::WatchReceiver;
use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::leadership::has_leader;
use crate::limits::Limits;
use crate::member::Node;

type AppState = (Arc<Node>, Limits);

/// etcd's `/health`: healthy only with a leader (a leader that lost its
/// quorum counts as none, see [`crate::leadership`]).
async fn health(State((node, _)): State<AppState>) -> impl IntoResponse {
    match has_leader(&node) {
        true => (
            StatusCode::OK,
            [("content-type", "application/json")],
            r#"{"health":"true","reason":""}"#.to_string(),
        ),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/json")],
            r#"{"health":"false","reason":"RAFT NO LEADER"}"#.to_string(),
        ),
    }
}

async fn metrics(State((node, limits)): State<AppState>) -> impl IntoResponse {
    let quota = limits.quota_backend_bytes;
    let m = node.raft.metrics().borrow_watched().clone();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, v: f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    };
    gauge(
        "etcd_server_has_leader",
        "Whether a leader exists (1) or not (0).",
        m.current_leader.is_some() as u8 as f64,
    );
    gauge(
        "etcd_server_is_leader",
        "Whether this member is the leader.",
        (m.current_leader == Some(node.id)) as u8 as f64,
    );
    gauge(
        "etcd_server_is_learner",
        "Whether this member is a learner (1) or a voter (0).",
        m.membership_config
            .membership()
            .learner_ids()
            .any(|id| id == node.id) as u8 as f64,
    );
    gauge(
        "etcd_server_term",
        "Current Raft term.",
        m.current_term as f64,
    );
    gauge(
        "etcd_server_proposals_committed_total",
        "Last Raft log index.",
        m.last_log_index.unwrap_or(0) as f64,
    );
    gauge(
        "etcd_server_proposals_applied_total",
        "Last applied Raft log index.",
        m.last_applied.map(|l| l.index).unwrap_or(0) as f64,
    );
    gauge(
        "etcd_mvcc_db_total_size_in_bytes",
        "State-machine database size (SSTs and memtables).",
        node.mvcc.db_size() as f64,
    );
    gauge(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Estimated live data size.",
        node.mvcc.db_size_in_use() as f64,
    );
    gauge(
        "etcd_debugging_mvcc_current_revision",
        "Current store revision.",
        node.mvcc.current_rev() as f64,
    );
    gauge(
        "etcd_debugging_mvcc_compact_revision",
        "Last compacted revision.",
        node.mvcc.compact_rev() as f64,
    );
    gauge(
        "k8sup_mvcc_physical_compact_revision",
        "Revision up to which compacted history has been removed from RocksDB.",
        node.mvcc.physical_compact_rev().unwrap_or(0) as f64,
    );
    gauge(
        "etcd_server_quota_backend_bytes",
        "Backend quota (--quota-backend-bytes).",
        quota as f64,
    );
    gauge(
        "etcd_debugging_mvcc_watcher_total",
        "Live watchers.",
        node.hub.watcher_count() as f64,
    );
    gauge(
        "etcd_debugging_mvcc_slow_watcher_total",
        "Watchers catching up from storage.",
        node.hub.slow_watcher_count() as f64,
    );
    gauge(
        "etcd_debugging_lease_total",
        "Leases tracked by this member.",
        node.leases.ids().len() as f64,
    );
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        out,
    )
}

pub fn router(node: Arc<Node>, limits: Limits) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state((node, limits))
}
