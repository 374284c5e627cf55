//! What the cluster layer needs from the workstation besides the inventory:
//! the verified local files to push. The CLI fills this from
//! `k8sup-artifacts` (downloaded, verified, cached) and from k8sup's own
//! node binaries; this crate never fetches anything itself.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Local files, verified, ready to be pushed as binary resources.
#[derive(Debug, Clone, Default)]
pub struct NodeFiles {
    /// Programs by the name hosts know them: `kubelet`, `kube-apiserver`,
    /// `containerd`, `containerd-shim-runc-v2`, `ctr`, `runc`, `crictl`,
    /// `bridge`, `host-local`, `loopback`, `portmap`, and k8sup's own
    /// `k8sup-datastore` and `k8sup-apiserver-proxy`.
    pub programs: BTreeMap<String, PathBuf>,
    /// The SHA-256 of each program (hex), by the same names: a service
    /// whose program changed is restarted (`binaries::digest`).
    pub program_sha256: BTreeMap<String, String>,
    /// Image archives to import on every node, by image name (empty when
    /// the nodes pull from a registry).
    pub images: Vec<(String, PathBuf)>,
    /// The pod sandbox image containerd pins.
    pub pause_image: String,
    /// CoreDNS's image and version.
    pub coredns_image: String,
    pub coredns_version: String,
}

impl NodeFiles {
    /// The SHA-256 of `name`'s local file.
    pub fn program_sha256(&self, name: &str) -> Result<&str, k8sup_engine::EngineError> {
        self.program_sha256
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| k8sup_engine::EngineError::Invalid {
                host: "(workstation)".into(),
                reason: format!("no SHA-256 for {name}: the run's files do not include it"),
            })
    }

    pub fn program(&self, name: &str) -> Result<&PathBuf, k8sup_engine::EngineError> {
        self.programs
            .get(name)
            .ok_or_else(|| k8sup_engine::EngineError::Invalid {
                host: "(workstation)".into(),
                reason: format!(
                    "no local file for {name}: the artifacts fetched for this run do not include it"
                ),
            })
    }
}
