//! The cluster as k8sup lays it out: which host is what, its address, its
//! pod network, and the cluster's well-known addresses (the `kubernetes`
//! Service, DNS). Computed once from the inventory (and, for a host named by
//! DNS, its facts) and read by every phase, so that all of them agree.
//!
//! Why k8sup assigns pod networks itself: each node's pods sit on a bridge
//! with one /24 of `podCIDR`, and every node routes the others' /24s
//! through their addresses (`node.rs`). A node keeps the /24 it has (its
//! facts and its peers' routes say which); a new node takes the first free
//! one, in inventory order. The controller manager allocates nothing
//! (`--allocate-node-cidrs=false`): its order is the order nodes register,
//! which k8sup could not know when it writes the routes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use k8sup_engine::Facts;
use k8sup_inventory::{ArgsComponent, Cluster, ExtraArgs, Inventory, Role};

/// The facts key for a host's first global IPv4 address (see `probe.rs`).
pub const FACT_IPV4: &str = "k8sup.ipv4";
/// The facts key for the pod network a node's CNI config has.
pub const FACT_POD_CIDR: &str = "k8sup.podcidr";
/// The facts key prefix for the pod network a node routes to another
/// node's address (`k8sup.route.10.0.0.21=10.1.1.0/24`).
pub const FACT_ROUTE_PREFIX: &str = "k8sup.route.";

/// One host of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The inventory name: the Kubernetes node name.
    pub name: String,
    pub ip: IpAddr,
    pub control_plane: bool,
    /// This node's pods' network (one /24 of the cluster's pod CIDR).
    pub pod_cidr: IpNet,
    /// Among the nodes that run no kube-apiserver, its position (which
    /// control plane its API-server proxy prefers).
    pub proxy_position: Option<usize>,
    /// Flag edits, applied in order: the cluster's `extraArgs`, then this
    /// host's (so a host's null can drop a flag the cluster added).
    pub extra_args: [ExtraArgs; 2],
}

impl Node {
    /// This node's flag edits of `c`, in the order they apply.
    pub fn args(&self, c: ArgsComponent) -> Vec<BTreeMap<String, Option<String>>> {
        self.extra_args.iter().map(|e| e.of(c)).collect()
    }
}

/// A host's address: the inventory's IP, else (a DNS name) its facts'
/// first global IPv4 address; without facts a documentation address stands
/// in, so that a plan can still be drawn before the first look at the host.
fn address_of(h: &k8sup_inventory::Host, facts: &BTreeMap<String, Facts>) -> Result<IpAddr> {
    if let Ok(ip) = h.address.parse::<IpAddr>() {
        return Ok(ip);
    }
    match facts.get(&h.name).and_then(|f| f.get(FACT_IPV4)) {
        Some(ip) if !ip.is_empty() => ip.parse().with_context(|| {
            format!(
                "{}: its address {ip:?} (from its facts) is not an IP",
                h.name
            )
        }),
        _ => Ok(IpAddr::from([192, 0, 2, 1])),
    }
}

/// The pod networks nodes already have, from any host's facts: a node's
/// own (`k8sup.podcidr`, from its CNI config; by host name) and the other
/// nodes' (`k8sup.route.ADDR`, from its routes unit; by address). Any one
/// observed node knows the whole cluster's.
#[derive(Default)]
struct KnownPodNetworks {
    by_name: BTreeMap<String, IpNet>,
    by_address: BTreeMap<IpAddr, IpNet>,
}

impl KnownPodNetworks {
    fn from_facts(facts: &BTreeMap<String, Facts>) -> Self {
        let mut out = KnownPodNetworks::default();
        for (host, f) in facts {
            for (k, v) in &f.0 {
                let Ok(net) = v.trim().parse::<IpNet>() else {
                    continue;
                };
                if k == FACT_POD_CIDR {
                    out.by_name.insert(host.clone(), net);
                } else if let Some(ip) = k
                    .strip_prefix(FACT_ROUTE_PREFIX)
                    .and_then(|a| a.parse::<IpAddr>().ok())
                {
                    out.by_address.insert(ip, net);
                }
            }
        }
        out
    }

    fn of(&self, name: &str, ip: IpAddr) -> Option<IpNet> {
        self.by_name
            .get(name)
            .or_else(|| self.by_address.get(&ip))
            .copied()
    }
}

/// Every host of the inventory, in inventory order, and the cluster's settings.
#[derive(Debug, Clone)]
pub struct Topology {
    pub cluster: Cluster,
    pub nodes: Vec<Node>,
}

impl Topology {
    /// The layout of `inventory`. A host whose address is a DNS name needs
    /// its facts (its first global IPv4 address); without them a
    /// documentation address stands in, so that a plan can still be drawn
    /// before the first look at the host.
    pub fn new(inventory: &Inventory, facts: &BTreeMap<String, Facts>) -> Result<Topology> {
        let cluster = inventory.cluster.clone();
        let prefix = match cluster.pod_cidr {
            IpNet::V4(_) => 24,
            IpNet::V6(_) => 64,
        };
        if cluster.pod_cidr.prefix_len() > prefix {
            bail!(
                "cluster.podCIDR {} is too small: k8sup gives each node a /{prefix} of it",
                cluster.pod_cidr
            );
        }
        let addresses: Vec<IpAddr> = inventory
            .hosts
            .iter()
            .map(|h| address_of(h, facts))
            .collect::<Result<_>>()?;
        // A node keeps the pod network it has (the cluster says which:
        // `KnownPodNetworks`); a new node gets the first free one. So
        // adding, removing or reordering hosts never moves a running
        // node's pods.
        let known = KnownPodNetworks::from_facts(facts);
        let mut taken: Vec<IpNet> = Vec::new();
        for (h, ip) in inventory.hosts.iter().zip(&addresses) {
            if let Some(net) = known
                .of(&h.name, *ip)
                .filter(|n| cluster.pod_cidr.contains(n))
            {
                if taken.contains(&net) {
                    bail!(
                        "{}: its pod network {net} is another node's too; k8sup cannot tell \
                         which node keeps it. Check /etc/cni/net.d/10-k8sup-bridge.conflist on \
                         the nodes",
                        h.name
                    );
                }
                taken.push(net);
            }
        }
        let mut fresh = cluster
            .pod_cidr
            .subnets(prefix)
            .context("splitting cluster.podCIDR")?;
        let mut nodes = Vec::new();
        let mut proxied = 0;
        for (h, ip) in inventory.hosts.iter().zip(addresses) {
            let pod_cidr = match known.of(&h.name, ip) {
                Some(net) if cluster.pod_cidr.contains(&net) => net,
                _ => {
                    let Some(net) = fresh.by_ref().find(|n| !taken.contains(n)) else {
                        bail!(
                            "cluster.podCIDR {} has room for fewer nodes than the inventory's {}",
                            cluster.pod_cidr,
                            inventory.hosts.len()
                        );
                    };
                    taken.push(net);
                    net
                }
            };
            let control_plane = h.role == Role::ControlPlane;
            let proxy_position = (!control_plane).then(|| {
                proxied += 1;
                proxied - 1
            });
            nodes.push(Node {
                name: h.name.clone(),
                ip,
                control_plane,
                pod_cidr,
                proxy_position,
                extra_args: [cluster.extra_args.clone(), h.extra_args.clone()],
            });
        }
        if !nodes.iter().any(|n| n.control_plane) {
            bail!(
                "the inventory has no control-plane host: give at least one host role: control-plane"
            );
        }
        Ok(Topology { cluster, nodes })
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn control_planes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.control_plane)
    }

    /// The first control plane: where cluster-wide objects are applied from.
    pub fn first_control_plane(&self) -> &Node {
        self.control_planes().next().expect("checked in new()")
    }

    /// The `kubernetes` Service's ClusterIP: the service CIDR's first address.
    pub fn service_ip(&self) -> IpAddr {
        nth(self.cluster.service_cidr, 1)
    }

    /// The cluster DNS Service's ClusterIP: the service CIDR's tenth address,
    /// as kubeadm and Canonical Kubernetes choose it.
    pub fn dns_ip(&self) -> IpAddr {
        nth(self.cluster.service_cidr, 10)
    }

    /// `v1.37.2`
    pub fn version(&self) -> String {
        format!("v{}", self.cluster.kubernetes_version)
    }
}

fn nth(net: IpNet, n: u32) -> IpAddr {
    match net {
        IpNet::V4(v4) => IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4.network()) + n)),
        IpNet::V6(v6) => IpAddr::V6(std::net::Ipv6Addr::from(
            u128::from(v6.network()) + u128::from(n),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(yaml: &str) -> Inventory {
        k8sup_inventory::parse_str(yaml, std::path::Path::new("t.yaml"), &|_| None)
            .expect("a valid inventory")
            .inventory
    }

    const TWO: &str = "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster: {name: t}\nhosts:\n  - {name: cp-1, address: 10.0.0.11, role: control-plane}\n  - {name: w-1, address: 10.0.0.21, role: worker}\n  - {name: w-2, address: w2.example, role: worker}\n";

    #[test]
    fn nodes_get_pod_networks_and_proxy_positions_in_inventory_order() {
        let facts = BTreeMap::from([(
            "w-2".to_string(),
            Facts::default().with(FACT_IPV4, "10.0.0.22"),
        )]);
        let t = Topology::new(&inventory(TWO), &facts).unwrap();
        let cidrs: Vec<String> = t.nodes.iter().map(|n| n.pod_cidr.to_string()).collect();
        assert_eq!(cidrs, ["10.1.0.0/24", "10.1.1.0/24", "10.1.2.0/24"]);
        let pos: Vec<Option<usize>> = t.nodes.iter().map(|n| n.proxy_position).collect();
        assert_eq!(pos, [None, Some(0), Some(1)]);
        assert_eq!(t.node("w-2").unwrap().ip.to_string(), "10.0.0.22");
        assert_eq!(t.service_ip().to_string(), "10.152.183.1");
        assert_eq!(t.dns_ip().to_string(), "10.152.183.10");
        assert_eq!(t.version(), "v1.37.2");
    }

    /// Nodes keep the pod networks the cluster says they have, whatever
    /// their place in the inventory; a new node takes the first free one.
    #[test]
    fn running_nodes_keep_their_pod_networks_when_hosts_are_added_or_reordered() {
        let facts = BTreeMap::from([
            (
                "w-1".to_string(),
                Facts::default()
                    .with(FACT_POD_CIDR, "10.1.0.0/24")
                    .with(format!("{FACT_ROUTE_PREFIX}10.0.0.11"), "10.1.1.0/24"),
            ),
            (
                "w-2".to_string(),
                Facts::default().with(FACT_IPV4, "10.0.0.22"),
            ),
        ]);
        // w-1 (first here) keeps 10.1.0.0/24; cp-1 keeps what w-1 routes to
        // it; w-2, new, takes the first free /24.
        let reordered = "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster: {name: t}\nhosts:\n  - {name: w-2, address: w2.example, role: worker}\n  - {name: cp-1, address: 10.0.0.11, role: control-plane}\n  - {name: w-1, address: 10.0.0.21, role: worker}\n";
        let t = Topology::new(&inventory(reordered), &facts).unwrap();
        let got: Vec<(String, String)> = t
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.pod_cidr.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("w-2".to_string(), "10.1.2.0/24".to_string()),
                ("cp-1".to_string(), "10.1.1.0/24".to_string()),
                ("w-1".to_string(), "10.1.0.0/24".to_string()),
            ]
        );
        // Two nodes that claim one network: refused, naming the node.
        let clash = BTreeMap::from([
            (
                "w-1".to_string(),
                Facts::default().with(FACT_POD_CIDR, "10.1.1.0/24"),
            ),
            (
                "cp-1".to_string(),
                Facts::default().with(FACT_POD_CIDR, "10.1.1.0/24"),
            ),
        ]);
        let e = Topology::new(&inventory(TWO), &clash).unwrap_err();
        assert!(
            format!("{e:#}").contains("w-1: its pod network 10.1.1.0/24"),
            "{e:#}"
        );
    }

    #[test]
    fn a_cluster_without_control_plane_is_refused() {
        // The inventory's own checks refuse it too; the layout does not rely on them.
        let mut inv = inventory(TWO);
        for h in &mut inv.hosts {
            h.role = Role::Worker;
        }
        let e = Topology::new(&inv, &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("no control-plane host"), "{e}");
    }
}
