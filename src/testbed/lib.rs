//! Real upstream components on this machine, for tests and benchmarks only:
//! kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
//! v1.37.2 and etcd 3.6 from the artifacts mirror (`tests/artifacts/build.sh`),
//! a 3-member store on loopback (k8sup-datastore or etcd, the same flags and
//! certificates for both), and the certificates from `k8sup-pki`, the
//! product's one PKI.
//!
//! Nothing here is shipped: the datastore's tests and the benchmark under
//! `benches/kube-apiserver/` use it. It never prints; failures panic with
//! what went wrong and the logs that say why.

pub mod api;
pub mod control_plane;
pub mod mirror;
pub mod pki;
pub mod process;
pub mod store;

pub use api::Api;
pub use control_plane::{ControlPlane, ControlPlaneOpts};
pub use mirror::{Mirror, etcd_dir};
pub use pki::TestPki;
pub use store::{Store, StoreKind};
