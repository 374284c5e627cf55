//! What every node runs, control planes included (as in Canonical
//! Kubernetes): containerd with the pod images, the pod network (a bridge
//! with the node's own /24 and routes to the other nodes' /24s), the
//! kubelet and kube-proxy; and on nodes without a kube-apiserver, the
//! API-server proxy that the kubelet and kube-proxy talk to on the local
//! API port. Every file comes from `templates/`.
//!
//! Why the plain bridge CNI and k8sup's own routes, not flannel: the nodes
//! k8sup targets share a network segment (or routed subnets), the plugins
//! are upstream's reference plugins (shipped with every containerd
//! install), and the routes are plan resources that show in `k8sup plan`;
//! no overlay, no extra daemon on the node.

use k8sup_engine::{DesiredState, EngineError, Facts, Guard, Resource, ResourceId};
use k8sup_inventory::ArgsComponent;
use k8sup_pki::{Pki, layout};
use serde::Serialize;

use crate::apiserver_proxy;
use crate::binaries;
use crate::certificates;
use crate::control_plane::host_port;
use crate::host_prep::cgroup_v1;
use crate::inputs::NodeFiles;
use crate::render;
use crate::topology::{Node, Topology};

pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// containerd's per-registry host configuration (`config_path`).
pub const CONTAINERD_CERTS_D: &str = "/etc/containerd/certs.d";
pub const CONTAINERD_UNIT: &str = "containerd.service";
pub const CNI_CONFIG: &str = "/etc/cni/net.d/10-k8sup-bridge.conflist";
pub const ROUTES_UNIT: &str = "k8sup-pod-routes.service";
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
pub const KUBELET_UNIT: &str = "kubelet.service";
pub const KUBE_PROXY_CONFIG: &str = "/var/lib/kube-proxy/config.yaml";
pub const KUBE_PROXY_UNIT: &str = "kube-proxy.service";

#[derive(Serialize)]
struct Route {
    cidr: String,
    via: String,
}

#[derive(Serialize)]
struct KubeletPki {
    ca: &'static str,
    serving_crt: &'static str,
    serving_key: &'static str,
}

pub fn host_state(
    t: &Topology,
    node: &Node,
    facts: &Facts,
    files: &NodeFiles,
    pki: &Pki,
) -> Result<DesiredState, EngineError> {
    let host = node.name.as_str();
    let v1 = cgroup_v1(facts);
    let version = t.version();
    let behind_proxy = !node.control_plane;
    let mut s = DesiredState::new(host);

    // containerd, then the images it must hold before any pod starts.
    let config = render::template(
        host,
        "containerd/config.toml",
        serde_json::json!({
            "pause_image": files.pause_image,
            "registry_mirror": !t.cluster.container_runtime.registry_mirrors.is_empty(),
            "certs_d": CONTAINERD_CERTS_D,
            "restrict_oom_score_adj": t.cluster.container_runtime.restrict_oom_score_adj,
            "systemd_cgroup": !v1,
        }),
    )?;
    s.push(
        Resource::file(CONTAINERD_CONFIG, config)
            .mode(0o644)
            .notify(ResourceId::service(CONTAINERD_UNIT)),
    );
    s.push(Resource::unit(
        CONTAINERD_UNIT,
        render::unit(
            host,
            "systemd/containerd.service",
            serde_json::json!({"bin": binaries::path("containerd"), "config": CONTAINERD_CONFIG}),
            ArgsComponent::Containerd,
            &node.args(ArgsComponent::Containerd),
        )?,
    ));
    s.push(binaries::digest(files, host, CONTAINERD_UNIT)?);
    s.push(
        Resource::service(CONTAINERD_UNIT)
            .enabled(true)
            .running(true),
    );
    for (registry, mirrors) in &t.cluster.container_runtime.registry_mirrors {
        s.push(
            Resource::file(
                format!("{CONTAINERD_CERTS_D}/{registry}/hosts.toml"),
                render::template(
                    host,
                    "containerd/hosts.toml",
                    serde_json::json!({
                        "registry": registry,
                        "server": registry_server(registry),
                        "mirrors": mirrors,
                    }),
                )?,
            )
            .mode(0o644),
        );
    }
    for (image, _) in &files.images {
        let archive = binaries::image_path(image);
        let q = |s: &str| shlex::try_quote(s).map(|c| c.into_owned());
        let (qi, qa) = match (q(image), q(&archive)) {
            (Ok(i), Ok(a)) => (i, a),
            _ => {
                return Err(EngineError::Invalid {
                    host: host.into(),
                    reason: format!("image name {image:?} cannot be quoted"),
                });
            }
        };
        let ctr = binaries::path("ctr");
        s.push(
            Resource::command(
                format!("import-{}", image_slug(image)),
                format!("{ctr} -n k8s.io images import --all-platforms {qa} >/dev/null"),
                Guard::Unless(format!(
                    "{ctr} -n k8s.io images ls -q 2>/dev/null | grep -qxF {qi}"
                )),
            )
            // The archive itself came in the binaries phase.
            .depends_on(ResourceId::service(CONTAINERD_UNIT)),
        );
    }

    // The pod network: this node's bridge and routes to every other node's pods.
    s.push(
        Resource::file(
            CNI_CONFIG,
            render::template(
                host,
                "cni/10-k8sup-bridge.conflist",
                serde_json::json!({"node_pod_cidr": node.pod_cidr.to_string()}),
            )?,
        )
        .mode(0o644),
    );
    let routes: Vec<Route> = t
        .nodes
        .iter()
        .filter(|n| n.name != node.name)
        .map(|n| Route {
            cidr: n.pod_cidr.to_string(),
            via: n.ip.to_string(),
        })
        .collect();
    s.push(Resource::unit(
        ROUTES_UNIT,
        render::template(
            host,
            "systemd/k8sup-pod-routes.service",
            serde_json::json!({"routes": routes}),
        )?,
    ));
    s.push(Resource::service(ROUTES_UNIT).enabled(true).running(true));

    // On a node without kube-apiserver: the local API port is the proxy's.
    if let Some(position) = node.proxy_position {
        let upstreams: Vec<String> = t
            .control_planes()
            .map(|cp| host_port(cp.ip, t.cluster.api_server.port))
            .collect();
        let proxy = apiserver_proxy::resources(host, position, &upstreams, Some(layout::CA_CRT))
            .map_err(|e| EngineError::Invalid {
                host: host.into(),
                reason: format!("{e:#}"),
            })?;
        for r in proxy {
            s.push(r);
        }
        if let Some(d) = certificates::digest(pki, host, apiserver_proxy::UNIT_NAME)? {
            s.push(d);
        }
        s.push(binaries::digest(files, host, apiserver_proxy::UNIT_NAME)?);
    }

    // The kubelet.
    let resolv_conf = "/etc/resolv.conf";
    s.push(
        Resource::file(
            KUBELET_CONFIG,
            render::template(
                host,
                "kubelet/config.yaml",
                serde_json::json!({
                    "node": host,
                    "pki": KubeletPki {
                        ca: layout::CA_CRT,
                        serving_crt: layout::KUBELET_SERVING_CRT,
                        serving_key: layout::KUBELET_SERVING_KEY,
                    },
                    "cgroup_driver": if v1 { "cgroupfs" } else { "systemd" },
                    "cgroup_v1": v1,
                    "dns_ip": t.dns_ip().to_string(),
                    "cluster_domain": t.cluster.cluster_domain,
                    "resolv_conf": resolv_conf,
                    "taints": if node.control_plane {
                        t.cluster
                            .control_plane_taints
                            .iter()
                            .map(|t| serde_json::json!({"key": t.key, "value": t.value, "effect": t.effect}))
                            .collect()
                    } else {
                        Vec::new()
                    },
                }),
            )?,
        )
        .mode(0o644)
        .notify(ResourceId::service(KUBELET_UNIT)),
    );
    s.push(Resource::unit(
        KUBELET_UNIT,
        render::unit(
            host,
            "systemd/kubelet.service",
            serde_json::json!({
                "version": version,
                "node": host,
                "bin": binaries::path("kubelet"),
                "config": KUBELET_CONFIG,
                "kubeconfig": layout::KUBELET_CONF,
                "ip": node.ip.to_string(),
                "behind_proxy": behind_proxy,
            }),
            ArgsComponent::Kubelet,
            &node.args(ArgsComponent::Kubelet),
        )?,
    ));
    if let Some(d) = certificates::digest(pki, host, KUBELET_UNIT)? {
        s.push(d);
    }
    s.push(binaries::digest(files, host, KUBELET_UNIT)?);
    let mut kubelet = Resource::service(KUBELET_UNIT)
        .enabled(true)
        .running(true)
        .depends_on(ResourceId::service(CONTAINERD_UNIT))
        .depends_on(ResourceId::service(ROUTES_UNIT));
    for (image, _) in &files.images {
        kubelet = kubelet.depends_on(ResourceId::command(&format!(
            "import-{}",
            image_slug(image)
        )));
    }
    if behind_proxy {
        kubelet = kubelet.depends_on(ResourceId::service(apiserver_proxy::UNIT_NAME));
    }
    s.push(kubelet);

    // kube-proxy.
    s.push(
        Resource::file(
            KUBE_PROXY_CONFIG,
            render::template(
                host,
                "kube-proxy/config.yaml",
                serde_json::json!({
                    "node": host,
                    "kubeconfig": layout::KUBE_PROXY_CONF,
                    "mode": t.cluster.kube_proxy_mode.as_str(),
                    "pod_cidr": t.cluster.pod_cidr.to_string(),
                }),
            )?,
        )
        .mode(0o644)
        .notify(ResourceId::service(KUBE_PROXY_UNIT)),
    );
    s.push(Resource::unit(
        KUBE_PROXY_UNIT,
        render::unit(
            host,
            "systemd/kube-proxy.service",
            serde_json::json!({
                "version": version,
                "node": host,
                "bin": binaries::path("kube-proxy"),
                "config": KUBE_PROXY_CONFIG,
                "behind_proxy": behind_proxy,
            }),
            ArgsComponent::KubeProxy,
            &node.args(ArgsComponent::KubeProxy),
        )?,
    ));
    if let Some(d) = certificates::digest(pki, host, KUBE_PROXY_UNIT)? {
        s.push(d);
    }
    s.push(binaries::digest(files, host, KUBE_PROXY_UNIT)?);
    let mut kube_proxy = Resource::service(KUBE_PROXY_UNIT)
        .enabled(true)
        .running(true);
    if behind_proxy {
        kube_proxy = kube_proxy.depends_on(ResourceId::service(apiserver_proxy::UNIT_NAME));
    }
    s.push(kube_proxy);
    Ok(s)
}

/// The upstream a registry's `hosts.toml` falls back to (`None` for
/// `_default`, which has none: only its mirrors).
fn registry_server(registry: &str) -> Option<String> {
    match registry {
        "_default" => None,
        // Docker Hub's images are named docker.io/… but served elsewhere.
        "docker.io" => Some("https://registry-1.docker.io".into()),
        r => Some(format!("https://{r}")),
    }
}

/// A resource-name-safe form of an image name.
fn image_slug(image: &str) -> String {
    image
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}
