//! Compiles etcd's v3 protos (copied verbatim from etcd 3.6 via the
//! etcd-client crate, Apache-2.0) and our own peer protocol.
//!
//! Why `protox`: it is a protobuf compiler in Rust with the well-known types
//! (`google/protobuf/descriptor.proto`, …) built in, so the build needs no
//! system `protoc`. Debian's `protobuf-compiler` installed without its
//! recommended `libprotobuf-dev` has no well-known types, and a fresh machine
//! failed to build the datastore that way.
fn main() {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "proto/etcd/api/etcdserverpb/rpc.proto",
            "proto/etcd/api/mvccpb/kv.proto",
            "proto/etcd/api/authpb/auth.proto",
            "proto/k8sup/peerpb/peer.proto",
        ],
        ["proto"],
    )
    .unwrap_or_else(|e| panic!("compiling the etcd and peer protos under datastore/proto: {e}"));
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("generating Rust from the etcd and peer protos");
}
