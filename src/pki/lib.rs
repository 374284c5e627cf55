//! The cluster's PKI as data: the certificates, keys and kubeconfigs a
//! Kubernetes cluster needs (kubeadm's set, in kubeadm's layout), which of
//! them to issue, and the PEM bytes of each. The one PKI of k8sup: the
//! product installs it on hosts, and tests that start a real kube-apiserver
//! on k8sup's datastore use it as is.
//!
//! It does no I/O. The caller reads what the hosts hold (over SSH) and
//! hands the bytes over; it gets back files to write (path, hosts, bytes,
//! mode, owner). It never prints, never logs, and no `Debug` output or error
//! message contains a private key. File paths are fixed ([`layout`]); keys
//! are new each time (ECDSA P-256).
//!
//! ```
//! use k8sup_pki::{reconcile, Existing, Member, PkiSpec, Policy};
//! # fn main() -> Result<(), k8sup_pki::PkiError> {
//! let spec = PkiSpec {
//!     cluster_name: "demo".into(),
//!     cluster_domain: "cluster.local".into(),
//!     service_cidr: "10.152.183.0/24".parse().unwrap(),
//!     control_planes: vec![Member::new("cp-1", &["10.0.0.11".parse().unwrap()])],
//!     nodes: vec![Member::new("w-1", &["10.0.0.21".parse().unwrap()])],
//!     api_server_extra_sans: vec![],
//!     api_server_url: "https://127.0.0.1:6443".into(),
//!     own_datastore: true,
//! };
//! let now = time::OffsetDateTime::now_utc();
//! // First apply: nothing on the hosts, everything is issued.
//! let pki = reconcile(&spec, &Existing::new(), now, &Policy::default())?;
//! for file in pki.files_for("w-1") {
//!     println!("{} {:o}", file.path, file.mode); // the caller writes it over SSH
//! }
//! // Next apply: the hosts hold it all, nothing is issued.
//! let again = reconcile(&spec, &Existing::from_pki(&pki), now, &Policy::default())?;
//! assert_eq!(again.changes().count(), 0);
//! # Ok(()) }
//! ```
//!
//! The credentials ([`Item::name`], `node` for per-host ones):
//! `ca`, `front-proxy-ca`, `datastore-ca`; `apiserver`,
//! `apiserver-kubelet-client`, `apiserver-datastore-client`,
//! `front-proxy-client`, `sa`; `datastore-server` and `datastore-peer` per
//! control plane; `admin.conf`, `controller-manager.conf`, `scheduler.conf`,
//! `kube-proxy.conf`; `kubelet.conf` and `kubelet-serving` per node.

mod ca;
mod cluster;
mod error;
mod inspect;
mod kubeconfig;
pub mod layout;
mod leaf;
mod reconcile;
mod renew;

pub use ca::{CA_VALIDITY, Ca};
pub use cluster::{Authority, Member, PkiSpec, ToRead, identity, to_read};
pub use error::PkiError;
pub use inspect::{CertInfo, describe_pem, inspect_file, inspect_pem};
pub use kubeconfig::Kubeconfig;
pub use leaf::{BACKDATE, LEAF_VALIDITY, Leaf, LeafSpec, Usage};
pub use reconcile::{Existing, File, Item, Kind, Pki, Reason, reconcile};
pub use renew::{Policy, RENEW_WITHIN, renew_leaf, spec_of};
pub use time;
