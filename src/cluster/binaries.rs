//! The programs each host runs, pushed from the workstation's verified
//! files (hosts need no internet), and the image archives of the cluster's
//! own pods when the inventory asks for archives.
//!
//! Every node runs containerd, runc, the CNI plugins, the kubelet and
//! kube-proxy (control planes too, as in Canonical Kubernetes). Control
//! planes add the datastore, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kubectl; the others add the API-server proxy.

use k8sup_engine::{DesiredState, EngineError, Resource};

use crate::inputs::NodeFiles;
use crate::topology::Node;

pub const BIN_DIR: &str = "/usr/local/bin";
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
pub const IMAGE_DIR: &str = "/var/lib/k8sup/images";

const NODE_PROGRAMS: &[&str] = &[
    "containerd",
    "containerd-shim-runc-v2",
    "ctr",
    "runc",
    "crictl",
    "kubelet",
    "kube-proxy",
];
/// `k8sup-datastore` is the member and the client k8sup records the
/// cluster's state with (with an external etcd, only the client).
const CONTROL_PLANE_PROGRAMS: &[&str] = &[
    "k8sup-datastore",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
];
const PROXIED_PROGRAMS: &[&str] = &["k8sup-apiserver-proxy"];
/// The CNI plugins the pod network uses (`templates/cni/`).
pub const CNI_PLUGINS: &[&str] = &["bridge", "host-local", "loopback", "portmap"];

/// Where `program` lives on a host.
pub fn path(program: &str) -> String {
    format!("{BIN_DIR}/{program}")
}

/// Where the archive of `image` lives on a host.
pub fn image_path(image: &str) -> String {
    let file: String = image
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{IMAGE_DIR}/{file}.tar")
}

pub fn host_state(node: &Node, files: &NodeFiles) -> Result<DesiredState, EngineError> {
    let mut s = DesiredState::new(&node.name);
    let role: &[&str] = if node.control_plane {
        CONTROL_PLANE_PROGRAMS
    } else {
        PROXIED_PROGRAMS
    };
    for p in NODE_PROGRAMS.iter().chain(role) {
        s.push(Resource::binary(path(p), files.program(p)?).mode(0o755));
    }
    for p in CNI_PLUGINS {
        s.push(Resource::binary(format!("{CNI_BIN_DIR}/{p}"), files.program(p)?).mode(0o755));
    }
    for (image, local) in &files.images {
        s.push(Resource::binary(image_path(image), local).mode(0o644));
    }
    Ok(s)
}
