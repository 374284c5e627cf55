//! The add-ons phase: what the cluster's API must hold once the nodes run.
//!
//! - the RBAC the API server needs to reach the kubelets (`kubectl logs`,
//!   `exec`) and CoreDNS, as objects from `templates/addons/`, applied
//!   through the API (server-side apply, field manager `k8sup`), so the plan
//!   shows each object that changes, with a diff, and a re-apply touches
//!   none;
//! - every node of the run Ready, the `default` ServiceAccount present and
//!   a CoreDNS replica available: when an apply ends, the cluster takes
//!   workloads (`kubectl run` right away works, and its first name lookup
//!   answers);
//! - each node's role label (`node-role.kubernetes.io/ROLE`), as kubeadm's
//!   and Canonical's clusters show in `kubectl get nodes`.
//!
//! This module only says what is wanted ([`request`]); a [`ClusterApi`]
//! from the caller talks to the API (`api.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use k8sup_engine::{EngineError, Facts};

use crate::api::{AddonsRequest, ObjectRef, Through, WantedNode};
use crate::certificates::FACT_PREFIX;
use crate::inputs::NodeFiles;
use crate::render;
use crate::topology::Topology;

/// The templates applied, in order.
pub const MANIFESTS: [&str; 2] = ["addons/rbac.yaml", "addons/coredns.yaml"];

/// How long an apply waits for the API to answer and for the cluster to
/// take workloads (a node's first pull and CNI set-up included).
pub const WAIT: Duration = Duration::from_secs(300);

/// What the API must hold for the nodes `selected` picks, reached through
/// the selected control planes.
pub fn request(
    t: &Topology,
    files: &NodeFiles,
    facts: &BTreeMap<String, Facts>,
    selected: &dyn Fn(&str) -> bool,
    restarted: &dyn Fn(&str) -> bool,
    settled: bool,
) -> Result<AddonsRequest, EngineError> {
    let through = t
        .control_planes()
        .filter(|n| selected(&n.name))
        .map(|n| {
            Ok(Through {
                host: n.name.clone(),
                port: t.cluster.api_server.port,
                admin_kubeconfig: admin_kubeconfig(&n.name, facts.get(&n.name))?,
            })
        })
        .collect::<Result<Vec<_>, EngineError>>()?;
    Ok(AddonsRequest {
        through,
        objects: objects(t, files)?,
        nodes: t
            .nodes
            .iter()
            .filter(|n| selected(&n.name))
            .map(|n| WantedNode {
                name: n.name.clone(),
                role: if n.control_plane {
                    "control-plane"
                } else {
                    "worker"
                },
            })
            .collect(),
        restarted: t
            .nodes
            .iter()
            .filter(|n| selected(&n.name) && restarted(&n.name))
            .map(|n| n.name.clone())
            .collect(),
        coredns: coredns(),
        wait: WAIT,
        settled,
    })
}

/// The CoreDNS Deployment of `templates/addons/coredns.yaml`.
pub fn coredns() -> ObjectRef {
    ObjectRef {
        namespace: "kube-system".into(),
        name: "coredns".into(),
    }
}

/// The objects of every manifest, in order: (template, object).
pub fn objects(
    t: &Topology,
    files: &NodeFiles,
) -> Result<Vec<(String, serde_json::Value)>, EngineError> {
    let host = t.first_control_plane().name.as_str();
    let replicas = t.nodes.len().clamp(1, 2);
    let mut out = Vec::new();
    for name in MANIFESTS {
        let context = match name {
            "addons/rbac.yaml" => serde_json::json!({
                "kubelet_client_user": k8sup_pki::identity::APISERVER_KUBELET_CLIENT_USER,
            }),
            _ => serde_json::json!({
                "coredns_version": files.coredns_version,
                "coredns_image": files.coredns_image,
                "dns_ip": t.dns_ip().to_string(),
                "cluster_domain": t.cluster.cluster_domain,
                "replicas": replicas,
            }),
        };
        let text = render::template_text(host, name, context)?;
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(
            &text,
            serde_saphyr::options! { strict_booleans: true },
        )
        .map_err(|e| EngineError::Invalid {
            host: host.into(),
            reason: format!("template {name} is not YAML: {e}"),
        })?;
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            out.push((name.to_string(), doc));
        }
    }
    Ok(out)
}

/// The admin kubeconfig a control plane holds, from its facts.
fn admin_kubeconfig(host: &str, facts: Option<&Facts>) -> Result<Option<String>, EngineError> {
    let key = format!("{FACT_PREFIX}{}", k8sup_pki::layout::ADMIN_CONF);
    let Some(b64) = facts.and_then(|f| f.get(&key)) else {
        return Ok(None);
    };
    let bad = |why: String| EngineError::Invalid {
        host: host.into(),
        reason: format!(
            "{}: its content did not come back intact ({why})",
            k8sup_pki::layout::ADMIN_CONF
        ),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| bad(e.to_string()))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}
