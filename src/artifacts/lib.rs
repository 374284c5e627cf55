//! The files a Kubernetes cluster needs, fetched once onto the workstation,
//! verified against their published SHA-256, cached, and bundled for air
//! gaps. Hosts need no internet: the engine pushes the verified files.
//!
//! - [`catalog`]: for a Kubernetes version and an architecture, every
//!   artifact (kube-apiserver, kube-controller-manager, kube-scheduler,
//!   kubelet, kube-proxy, kubectl from dl.k8s.io; containerd, runc, crictl,
//!   the CNI plugins and CoreDNS from their GitHub releases; optionally the
//!   pause and CoreDNS image archives), with component versions pinned per
//!   Kubernetes minor in one table.
//! - [`Source`]: the official locations, a mirror URL (same paths under a
//!   base), a directory (same layout on disk), or a bundle.
//! - [`Cache`]: the workstation cache (`~/.cache/k8sup/artifacts`), keyed by
//!   path; a file is there only verified, and is trusted again cheaply.
//! - [`fetch`]: the one entry point. It returns verified local paths
//!   ([`FetchedSet`]) or an error, and never touches a host: the cluster
//!   layer calls it first and hands the files to the engine as binary
//!   resources, so a checksum mismatch is refused before any host changes.
//! - [`bundle`]: writing an air-gap bundle from a [`FetchedSet`]; reading
//!   one is `fetch` with [`Source::Bundle`].
//!
//! k8sup's own node binaries (the datastore, the API-server proxy) are not
//! here: they are built with k8sup, for the host's architecture, and pushed
//! from the build.
//!
//! ```no_run
//! use std::sync::Arc;
//! use k8sup_artifacts::{Cache, Images, NoProgress, Request, Source, fetch};
//! # async fn run() -> Result<(), k8sup_artifacts::ArtifactError> {
//! let request = Request::new("v1.37.2", "x86_64", Images::Archives)?;
//! let source: Source = "http://10.77.0.1:8080/".parse()?;
//! let cache = Cache::new(Cache::default_root().expect("a home directory"));
//! let set = fetch(&request, &source, &cache, Arc::new(NoProgress)).await?;
//! let kubelet = set.program("kubelet").expect("always fetched");
//! // engine: Resource::binary("/usr/local/bin/kubelet", &kubelet.path)
//! # let _ = kubelet; Ok(()) }
//! ```
//!
//! # The commands this crate serves
//!
//! The CLI (which this crate never prints for) is meant to offer:
//!
//! - `k8sup artifacts fetch -i FILE`: reads the inventory's Kubernetes
//!   version, its hosts' architectures (from facts, or `--arch`) and
//!   `cluster.artifacts`, and calls [`fetch`] once per architecture, drawing
//!   a bar per artifact from [`Progress`] events. Afterwards an apply reads
//!   nothing from the network. Prints one line per artifact: name, version,
//!   `cached`/`downloaded`, path (or JSON: the [`FetchedSet`]).
//! - `k8sup artifacts bundle -i FILE -o bundle.tar`: the same fetch (with
//!   image archives), then [`bundle::write`]. The bundle holds binaries,
//!   tarballs, image archives and a manifest with every SHA-256.
//! - `k8sup apply --artifacts bundle.tar` (or a directory, or a mirror URL):
//!   overrides the inventory's source for this run; [`fetch`] imports the
//!   bundle into the cache, verifying every file against the manifest, its
//!   checksum file and the catalog, before the plan is made.
//!
//! A failure in any of them names the artifact, where it came from, and the
//! fix; nothing partial is ever cached under an artifact's name.

pub mod bundle;
pub mod cache;
pub mod catalog;
mod error;
mod extract;
mod fetch;
mod progress;
pub mod source;
mod transport;
pub mod verify;

pub use cache::Cache;
pub use catalog::{Arch, Artifact, ChecksumFormat, Images, Kind, KubeVersion, Request};
pub use error::{ArtifactError, Mismatch};
pub use fetch::{Fetched, FetchedSet, LocalFile, Outcome, fetch};
pub use progress::{NoProgress, Progress};
pub use source::Source;
