//! Cluster-wide objects, applied from the first control plane with its
//! kubectl and admin kubeconfig: the RBAC the API server needs to reach the
//! kubelets (`kubectl logs`, `exec`) and CoreDNS. Each manifest is a file
//! from `templates/addons/`; `kubectl apply` runs when the manifest's
//! SHA-256 differs from the one recorded after its last successful apply,
//! so a re-apply runs nothing. Then a gate waits until every node of the inventory is Ready,
//! Pods can be created (the `default` ServiceAccount exists) and names
//! resolve (a CoreDNS replica is available): when an apply ends, the
//! cluster takes workloads.

use std::time::Duration;

use k8sup_engine::{Content, DesiredState, EngineError, Guard, ProbeCheck, Resource, ResourceId};
use k8sup_pki::layout;

use crate::binaries;
use crate::digest::sha256_hex;
use crate::inputs::NodeFiles;
use crate::render;
use crate::topology::Topology;

pub const ADDONS_DIR: &str = "/etc/kubernetes/addons";
/// Copies of the manifests as last applied.
pub const APPLIED_DIR: &str = "/var/lib/k8sup/addons-applied";

pub fn host_state(t: &Topology, files: &NodeFiles) -> Result<DesiredState, EngineError> {
    let cp = t.first_control_plane();
    let host = cp.name.as_str();
    let kubectl = format!(
        "{} --kubeconfig={}",
        binaries::path("kubectl"),
        layout::ADMIN_CONF
    );
    let replicas = t.nodes.len().clamp(1, 2);
    let manifests: [(&str, Content); 2] = [
        (
            "rbac.yaml",
            render::template(
                host,
                "addons/rbac.yaml",
                serde_json::json!({
                    "kubelet_client_user": k8sup_pki::identity::APISERVER_KUBELET_CLIENT_USER,
                }),
            )?,
        ),
        (
            "coredns.yaml",
            render::template(
                host,
                "addons/coredns.yaml",
                serde_json::json!({
                    "coredns_version": files.coredns_version,
                    "coredns_image": files.coredns_image,
                    "dns_ip": t.dns_ip().to_string(),
                    "cluster_domain": t.cluster.cluster_domain,
                    "replicas": replicas,
                }),
            )?,
        ),
    ];
    let mut s = DesiredState::new(host);
    s.push(Resource::directory(APPLIED_DIR).mode(0o700));
    for (name, content) in manifests {
        let path = format!("{ADDONS_DIR}/{name}");
        let (run, guard) = once_per_content(&content, &format!("{APPLIED_DIR}/{name}.sha256"));
        s.push(Resource::file(&path, content).mode(0o644));
        s.push(
            Resource::command(
                format!("apply-{name}"),
                run(format!("{kubectl} apply -f {path} >/dev/null")),
                guard,
            )
            .depends_on(ResourceId::file(&path))
            .depends_on(ResourceId::dir(APPLIED_DIR)),
        );
    }
    let names: Vec<&str> = t.nodes.iter().map(|n| n.name.as_str()).collect();
    // Ready nodes, one name per line, compared with the inventory's; and the
    // `default` ServiceAccount, which the controller manager creates a few
    // seconds after it starts: until it exists no Pod can be created in
    // `default`, so an apply that ended sooner would hand the user a cluster
    // that refuses `kubectl run` (kubeadm leaves that race to its users);
    // and a CoreDNS replica available, without which a new pod's first
    // name lookup is refused.
    let ready = format!(
        "{kubectl} -n default get serviceaccount default >/dev/null 2>&1 && \
         [ \"$({kubectl} -n kube-system get deployment coredns -o jsonpath='{{.status.availableReplicas}}')\" -ge 1 ] 2>/dev/null && \
         [ \"$({kubectl} get nodes -o jsonpath='{{range .items[*]}}{{.metadata.name}} {{range .status.conditions[?(@.type==\"Ready\")]}}{{.status}}{{end}}{{\"\\n\"}}{{end}}' | awk '$2==\"True\"{{print $1}}' | sort | tr '\\n' ' ')\" = '{} ' ]",
        {
            let mut sorted = names.clone();
            sorted.sort_unstable();
            sorted.join(" ")
        }
    );
    // The node list: when it changes (a node joins), the gate runs again,
    // and the new nodes get their role label once Ready.
    let roles: Vec<serde_json::Value> = t
        .nodes
        .iter()
        .map(|n| {
            serde_json::json!({
                "name": n.name,
                "role": if n.control_plane { "control-plane" } else { "worker" },
            })
        })
        .collect();
    let nodes_file = format!("{ADDONS_DIR}/nodes.txt");
    let nodes_list = render::template(
        host,
        "addons/nodes.txt",
        serde_json::json!({"nodes": roles}),
    )?;
    let (labelled, label_guard) =
        once_per_content(&nodes_list, &format!("{APPLIED_DIR}/nodes.txt.sha256"));
    s.push(Resource::file(&nodes_file, nodes_list).mode(0o644));
    s.push(
        Resource::probe(
            "nodes-ready",
            ProbeCheck::Command(ready),
            Duration::from_secs(300),
            Duration::from_secs(1),
        )
        .depends_on(ResourceId::command("apply-coredns.yaml"))
        .depends_on(ResourceId::file(&nodes_file)),
    );
    // `kubectl get nodes` shows each node's role, as on kubeadm's and
    // Canonical's clusters (the kubelet may not set these labels itself).
    let label: Vec<String> = t
        .nodes
        .iter()
        .map(|n| {
            let role = if n.control_plane {
                "control-plane"
            } else {
                "worker"
            };
            format!(
                "{kubectl} label node {} node-role.kubernetes.io/{role}= --overwrite >/dev/null",
                n.name
            )
        })
        .collect();
    s.push(
        Resource::command(
            "label-node-roles",
            labelled(label.join(" && ")),
            label_guard,
        )
        .depends_on(ResourceId::probe("nodes-ready"))
        .depends_on(ResourceId::dir(APPLIED_DIR)),
    );
    Ok(s)
}

/// A command that runs once for each `content`: it records the content's
/// SHA-256 in `marker` when it succeeds, and its guard compares the marker
/// with the SHA-256 this run wants. Why not compare the file on the host:
/// guards are checked when the step is observed, before the step rewrites
/// that file, so a changed manifest would be applied one run late.
fn once_per_content(content: &Content, marker: &str) -> (impl Fn(String) -> String + use<>, Guard) {
    let sha: String = match content {
        Content::Inline(bytes) => sha256_hex(bytes),
        _ => unreachable!("a rendered template is inline"),
    };
    let marker = marker.to_string();
    let guard = Guard::Unless(format!("[ \"$(cat {marker} 2>/dev/null)\" = {sha} ]"));
    let run = move |cmd: String| format!("{cmd} && echo {sha} > {marker}");
    (run, guard)
}
