//! gRPC services: etcd's KV, Watch, Lease, Cluster and Maintenance, and our
//! peer service. Auth is deliberately not served (clients are identified by
//! their TLS certificate), so its RPCs answer UNIMPLEMENTED like kine's.

pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod peer;
pub mod watch;

use tonic::Status;

use crate::errors::EtcdError;
use crate::raft::CommandResult;

/// Decodes the etcd response carried by a command result.
pub(crate) fn decode_result<M: prost::Message + Default>(res: CommandResult) -> Result<M, Status> {
    match res {
        CommandResult::Ok { body, .. } => M::decode(body.as_slice())
            .map_err(|e| Status::internal(format!("decoding an applied response: {e}"))),
        CommandResult::Err(e) => Err(e.into()),
        CommandResult::None | CommandResult::Batch(_) => {
            Err(Status::internal("empty result from the state machine"))
        }
    }
}

pub(crate) fn st(e: EtcdError) -> Status {
    e.into()
}
