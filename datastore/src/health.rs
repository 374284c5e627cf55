//! `grpc.health.v1.Health` on the client port, as etcd and kine serve it:
//! load balancers and gRPC clients probe it. The overall status ("" service)
//! is SERVING only while this member has a leader (see
//! [`crate::leadership::has_leader`]), NOT_SERVING otherwise, so a probe
//! takes a partitioned member out of rotation.

use std::sync::Arc;
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::leadership::has_leader;
use crate::member::Node;

/// How often the status follows leadership (well under an election timeout).
const REFRESH: Duration = Duration::from_millis(200);

/// The health service, kept up to date by a background task for the node's life.
pub fn serve(node: Arc<Node>) -> HealthServer<impl Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    tokio::spawn(async move {
        let mut last = None;
        loop {
            let status = if has_leader(&node) {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            if last != Some(status) {
                reporter.set_service_status("", status).await;
                last = Some(status);
            }
            tokio::time::sleep(REFRESH).await;
        }
    });
    service
}
