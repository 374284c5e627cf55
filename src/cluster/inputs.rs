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
