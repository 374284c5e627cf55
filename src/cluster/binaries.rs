//! The programs each host runs, pushed from the workstation's verified
//! files (hosts need no internet), and the image archives of the cluster's
//! own pods when the inventory asks for archives.
//!
//! Every node runs containerd, runc, the CNI plugins, the kubelet and
//! kube-proxy (control planes too, as in Canonical Kubernetes). Control
//! planes add the datastore, kube-apiserver, kube-controller-manager,
//! kube-scheduler and kubectl; the others add the API-server proxy.

use k8sup_engine::{DesiredState, EngineError, Resource, ResourceId};

use crate::control_plane::{
    APISERVER_UNIT, CONTROLLER_MANAGER_UNIT, DATASTORE_UNIT, SCHEDULER_UNIT,
};
use crate::inputs::NodeFiles;
use crate::node::{CONTAINERD_UNIT, KUBE_PROXY_UNIT, KUBELET_UNIT};
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

/// The programs each service runs. Why: programs are pushed in their own
/// phase, and the engine restarts a service only for a change in its own
/// step, so a new program (a new k8sup's datastore, a patch release of a
/// component) would keep running the old one. Each service's unit comes
/// with a digest of its programs, written in the service's own phase and
/// step, which restarts it when one changes: under the same rules as a
/// changed unit (a running cluster's members and API servers one at a time,
/// each waited for).
pub const RUNNERS: &[(&str, &[&str])] = &[
    (DATASTORE_UNIT, &["k8sup-datastore"]),
    (APISERVER_UNIT, &["kube-apiserver"]),
    (CONTROLLER_MANAGER_UNIT, &["kube-controller-manager"]),
    (SCHEDULER_UNIT, &["kube-scheduler"]),
    (CONTAINERD_UNIT, &["containerd", "containerd-shim-runc-v2"]),
    (KUBELET_UNIT, &["kubelet"]),
    (KUBE_PROXY_UNIT, &["kube-proxy"]),
    (
        crate::apiserver_proxy::UNIT_NAME,
        &["k8sup-apiserver-proxy"],
    ),
];

/// The directory of the program digests.
pub const DIGEST_DIR: &str = "/etc/k8sup/programs";

/// Where the digest of `unit`'s programs lives on a host.
pub fn digest_path(unit: &str) -> String {
    format!("{DIGEST_DIR}/{unit}.sha256")
}

#[derive(serde::Serialize)]
struct ProgramSum<'a> {
    sha256: &'a str,
    path: String,
}

/// The digest file of the programs `unit` runs, which notifies `unit`'s
/// service (see [`RUNNERS`]).
pub fn digest(files: &NodeFiles, host: &str, unit: &str) -> Result<Resource, EngineError> {
    let programs = RUNNERS
        .iter()
        .find(|(u, _)| *u == unit)
        .map(|(_, p)| *p)
        .ok_or_else(|| EngineError::Invalid {
            host: host.to_string(),
            reason: format!("no programs are listed for {unit}"),
        })?;
    let sums = programs
        .iter()
        .map(|p| {
            Ok(ProgramSum {
                sha256: files.program_sha256(p)?,
                path: path(p),
            })
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    let content = crate::render::template(
        host,
        "programs.sha256",
        serde_json::json!({"unit": unit, "files": sums}),
    )?;
    Ok(Resource::file(digest_path(unit), content)
        .mode(0o644)
        .notify(ResourceId::service(unit)))
}
