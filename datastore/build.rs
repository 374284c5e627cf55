//! Compiles etcd's v3 protos (copied verbatim from etcd 3.6 via the
//! etcd-client crate, Apache-2.0) and our own peer protocol.
fn main() {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(
            &[
                "proto/etcd/api/etcdserverpb/rpc.proto",
                "proto/etcd/api/mvccpb/kv.proto",
                "proto/etcd/api/authpb/auth.proto",
                "proto/k8sup/peerpb/peer.proto",
            ],
            &["proto"],
        )
        .expect("compiling the etcd and peer protos (protoc must be installed: apt-get install protobuf-compiler)");
}
