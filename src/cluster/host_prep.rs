//! Host preparation: what a machine needs before any component is put on
//! it. The directories the components use, the kernel settings a node
//! needs (`templates/sysctl/99-k8sup.conf`, applied at once and at every
//! boot by systemd-sysctl), and a refusal, naming the host, of a
//! cgroup layout the inventory does not allow or of a host that lacks a
//! program a node needs (`REQUIRED_TOOLS`, from the facts probe).

//!
//! Swap is left as it is: the kubelet runs with `failSwapOn: false` and its
//! default `NoSwap` behaviour (pods never swap), as kind and Canonical
//! Kubernetes do, rather than k8sup turning off a host's swap.

use k8sup_engine::{DesiredState, EngineError, Facts, Guard, Resource, ResourceId};
use k8sup_inventory::KubeProxyMode;

use crate::render;
use crate::topology::Topology;

pub const SYSCTL_PATH: &str = "/etc/sysctl.d/99-k8sup.conf";

/// Directories every node needs (its parents are created with it).
const NODE_DIRS: &[&str] = &[
    "/etc/kubernetes",
    "/etc/kubernetes/pki",
    "/etc/containerd",
    "/etc/cni/net.d",
    "/opt/cni/bin",
    "/var/lib/kubelet",
    "/var/lib/kube-proxy",
    // Not /var/lib/k8sup itself: the engine keeps its run lock there and
    // creates it (0700) when it first locks the host.
    "/var/lib/k8sup/images",
    "/etc/k8sup",
];

/// What a node needs from its OS that k8sup does not bring: kube-proxy and
/// the CNI plugins program iptables (with either backend) and clear
/// conntrack entries; the routes unit uses `ip`; the kubelet mounts
/// volumes. A cloud image has them; a minimal one may not.
pub const REQUIRED_TOOLS: &[&str] = &[
    "iptables",
    "iptables-save",
    "iptables-restore",
    "conntrack",
    "ip",
    "mount",
    "umount",
];

/// What kube-proxy's nftables mode adds (`cluster.kubeProxyMode`).
pub const NFTABLES_TOOLS: &[&str] = &["nft"];

/// Every program the probe looks for.
pub fn probed_tools() -> Vec<&'static str> {
    REQUIRED_TOOLS
        .iter()
        .chain(NFTABLES_TOOLS)
        .copied()
        .collect()
}

/// Whether `facts` say cgroup v1 (a hybrid layout counts as v1).
pub fn cgroup_v1(facts: &Facts) -> bool {
    facts.get("cgroup") == Some("v1")
}

pub fn host_state(t: &Topology, host: &str, facts: &Facts) -> Result<DesiredState, EngineError> {
    if cgroup_v1(facts) && !t.cluster.allow_cgroup_v1 {
        return Err(EngineError::Invalid {
            host: host.to_string(),
            reason: "this host has cgroup v1 (or a hybrid layout); the kubelet 1.35+ runs there \
                     only in a deprecated mode. Use a cgroup v2 machine (systemd's default since \
                     Debian 11 and Ubuntu 21.10), or set `allowCgroupV1: true` under `cluster:` \
                     in the inventory"
                .into(),
        });
    }
    let needed = |tool: &&str| {
        REQUIRED_TOOLS.contains(tool)
            || (t.cluster.kube_proxy_mode == KubeProxyMode::Nftables
                && NFTABLES_TOOLS.contains(tool))
    };
    let missing: Vec<&str> = facts
        .get(crate::probe::FACT_MISSING)
        .unwrap_or("")
        .split_whitespace()
        .filter(needed)
        .collect();
    if !missing.is_empty() {
        let list = missing.join(", ");
        return Err(EngineError::Invalid {
            host: host.to_string(),
            reason: format!(
                "this host lacks {list}, which a Kubernetes node needs (kube-proxy and the CNI \
                 plugins use iptables and conntrack, kube-proxy's nftables mode nft, the pod \
                 routes ip). Install them, e.g. `apt-get install iptables conntrack iproute2 \
                 mount nftables` (Debian, Ubuntu) or `dnf install iptables-nft conntrack-tools \
                 iproute util-linux nftables` (Fedora, RHEL), then run k8sup again"
            ),
        });
    }
    let mut s = DesiredState::new(host);
    for d in NODE_DIRS {
        s.push(Resource::directory(*d).mode(0o755));
    }
    s.push(
        Resource::file(
            SYSCTL_PATH,
            render::template(host, "sysctl/99-k8sup.conf", ())?,
        )
        .mode(0o644),
    );
    s.push(
        Resource::command(
            "sysctl",
            format!("sysctl -q -p {SYSCTL_PATH} || true"),
            Guard::Unless("grep -qx 1 /proc/sys/net/ipv4/ip_forward".into()),
        )
        .depends_on(ResourceId::file(SYSCTL_PATH)),
    );
    Ok(s)
}
