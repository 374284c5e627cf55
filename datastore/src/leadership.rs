//! Whether this member has a leader, as etcd's client-facing checks mean it:
//! the `hasleader` guard on streams (`clientv3.WithRequireLeader`), the gRPC
//! health service and `/health`.
//!
//! A follower knows it has lost its leader once it campaigns (openraft then
//! clears `current_leader`). A leader cut off from its quorum does not step
//! down in openraft (0.9 or 0.10 as configured here), so it counts as leaderless once no quorum has
//! acknowledged it for `leader_wait` (three election timeouts, the window
//! etcd's `monitorLeader` allows before cancelling such streams).

use crate::member::Node;
use openraft::async_runtime::watch::WatchReceiver;

/// gRPC metadata key of `clientv3.WithRequireLeader` (etcd `rpctypes.MetadataRequireLeaderKey`).
pub const REQUIRE_LEADER_KEY: &str = "hasleader";

/// True if the request asked to fail rather than run without a leader.
pub fn requires_leader(md: &tonic::metadata::MetadataMap) -> bool {
    md.get(REQUIRE_LEADER_KEY).and_then(|v| v.to_str().ok()) == Some("true")
}

/// True while this member follows a leader, or leads with a live quorum.
pub fn has_leader(node: &Node) -> bool {
    let m = node.raft.metrics().borrow_watched().clone();
    match m.current_leader {
        None => false,
        Some(l) if l == node.id => {
            // A single-member cluster is its own quorum.
            m.membership_config.membership().voter_ids().count() <= 1
                || m.last_quorum_acked
                    .as_ref()
                    .is_some_and(|t| openraft::Instant::elapsed(&**t) <= node.leader_wait)
        }
        Some(_) => true,
    }
}
