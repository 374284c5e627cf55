//! Generated protobuf code: etcd's v3 API (packages `etcdserverpb`,
//! `mvccpb`, `authpb`, same names so the gRPC paths equal etcd's) and our
//! peer protocol.
#![allow(clippy::all, missing_docs)]

pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}
pub mod authpb {
    tonic::include_proto!("authpb");
}
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}
pub mod peerpb {
    tonic::include_proto!("k8suppeerpb");
}

pub use etcdserverpb::*;
pub use mvccpb::{Event, KeyValue, event::EventType};
