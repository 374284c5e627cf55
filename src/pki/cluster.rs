//! The cluster's set of credentials: which certificates, keys and
//! kubeconfigs a cluster needs, what each must say, where it lives and on
//! which hosts (real-kubernetes.md §4, kubeadm's set).
//!
//! This is the one list. [`reconcile`](crate::reconcile) walks it to decide
//! what to issue, and [`to_read`] walks it to tell the caller what to read
//! from the hosts, so the two can never disagree.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::PkiError;
use crate::layout::*;
use crate::leaf::LeafSpec;

/// What the cluster's credentials depend on: taken from the inventory by
/// the caller. Hosts are named as in the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiSpec {
    /// Names the CAs and the kubeconfigs' cluster entry.
    pub cluster_name: String,
    /// e.g. `cluster.local`: the apiserver's certificate covers
    /// `kubernetes.default.svc.<domain>`.
    pub cluster_domain: String,
    /// Its first host address is the `kubernetes` service's ClusterIP,
    /// which the apiserver's certificate must cover.
    pub service_cidr: IpNet,
    /// The hosts that run the apiserver and a datastore member, and keep the
    /// CA keys.
    pub control_planes: Vec<Member>,
    /// Every host that runs a kubelet, control planes included when they run one.
    pub nodes: Vec<Member>,
    /// The inventory's `apiServer.extraSANs`: IP addresses or DNS names.
    pub api_server_extra_sans: Vec<String>,
    /// The URL the kubeconfigs written on hosts use. `https://127.0.0.1:PORT`
    /// reaches the apiserver itself on a control plane and the API-server
    /// proxy on a worker.
    pub api_server_url: String,
    /// Whether the control planes run k8sup's datastore (its CA, members'
    /// and client certificates are issued), or the cluster uses an
    /// external etcd whose credentials the user brings.
    pub own_datastore: bool,
}

/// A host: its inventory name and the addresses others reach it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub addresses: Vec<IpAddr>,
}

impl Member {
    pub fn new(name: &str, addresses: &[IpAddr]) -> Member {
        Member {
            name: name.to_string(),
            addresses: addresses.to_vec(),
        }
    }
}

/// The three CAs. Each is generated once and never replaced by k8sup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Authority {
    /// Signs the apiserver, every client of the apiserver and the kubelets.
    Kubernetes,
    /// Signs the one identity the apiserver uses towards aggregated APIs.
    FrontProxy,
    /// Signs the datastore's members and the apiserver's client to it.
    Datastore,
}

impl Authority {
    pub const ALL: [Authority; 3] = [
        Authority::Kubernetes,
        Authority::FrontProxy,
        Authority::Datastore,
    ];

    /// The name a plan and `k8sup status` show.
    pub fn name(self) -> &'static str {
        match self {
            Authority::Kubernetes => "ca",
            Authority::FrontProxy => "front-proxy-ca",
            Authority::Datastore => "datastore-ca",
        }
    }

    pub fn cert_path(self) -> &'static str {
        match self {
            Authority::Kubernetes => CA_CRT,
            Authority::FrontProxy => FRONT_PROXY_CA_CRT,
            Authority::Datastore => DATASTORE_CA_CRT,
        }
    }

    pub fn key_path(self) -> &'static str {
        match self {
            Authority::Kubernetes => CA_KEY,
            Authority::FrontProxy => FRONT_PROXY_CA_KEY,
            Authority::Datastore => DATASTORE_CA_KEY,
        }
    }

    /// The CA certificate's CN: the cluster's name in it tells one
    /// cluster's CA from another's in a trust store or an error message.
    pub fn common_name(self, cluster: &str) -> String {
        match self {
            Authority::Kubernetes => format!("{cluster}-ca"),
            Authority::FrontProxy => format!("{cluster}-front-proxy-ca"),
            Authority::Datastore => format!("{cluster}-datastore-ca"),
        }
    }
}

/// The user names and groups Kubernetes authorizes by (real-kubernetes.md §4).
pub mod identity {
    /// The admin kubeconfig's group. `system:masters` is bound to
    /// cluster-admin by the apiserver itself, so the admin works from the
    /// first second with nothing to bootstrap. Newer kubeadm uses
    /// `kubeadm:cluster-admins` plus a ClusterRoleBinding it creates, so that
    /// the admin can be revoked; here revoking means renewing the CA.
    pub const ADMIN_USER: &str = "admin";
    pub const ADMIN_GROUP: &str = "system:masters";
    pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
    pub const SCHEDULER_USER: &str = "system:kube-scheduler";
    /// Bound to `system:node-proxier` by the apiserver.
    pub const KUBE_PROXY_USER: &str = "system:kube-proxy";
    /// The Node authorizer recognises kubelets by this group and a
    /// `system:node:NAME` user.
    pub const NODES_GROUP: &str = "system:nodes";
    /// The apiserver towards kubelets. Nothing binds it by default: the
    /// caller must bind `system:kubelet-api-admin` to this user, or
    /// `kubectl logs` and `exec` fail.
    pub const APISERVER_KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
    pub const APISERVER_DATASTORE_CLIENT_USER: &str = "kube-apiserver-datastore-client";
    /// The apiserver's `--requestheader-allowed-names`.
    pub const FRONT_PROXY_CLIENT_USER: &str = "front-proxy-client";

    pub fn node_user(node: &str) -> String {
        format!("system:node:{node}")
    }
}

impl PkiSpec {
    /// The `kubernetes` service's ClusterIP: the first host address of the
    /// service CIDR, which the apiserver allocates to it.
    pub fn service_ip(&self) -> Result<IpAddr, PkiError> {
        let net = self.service_cidr;
        let no_ip = || PkiError::NoServiceIp { cidr: net };
        match net {
            IpNet::V4(n) => {
                let ip = u32::from(n.network()).checked_add(1).ok_or_else(no_ip)?;
                let ip = std::net::Ipv4Addr::from(ip);
                if n.prefix_len() >= 31 || !n.contains(&ip) {
                    return Err(no_ip());
                }
                Ok(IpAddr::V4(ip))
            }
            IpNet::V6(n) => {
                let ip = u128::from(n.network()).checked_add(1).ok_or_else(no_ip)?;
                let ip = std::net::Ipv6Addr::from(ip);
                if n.prefix_len() >= 127 || !n.contains(&ip) {
                    return Err(no_ip());
                }
                Ok(IpAddr::V6(ip))
            }
        }
    }

    /// The apiserver's serving certificate: every name a client may dial it
    /// by, from inside the cluster (the service), on the host (127.0.0.1),
    /// across the network (each control plane) or through whatever the
    /// user put in front (the extra SANs).
    pub fn apiserver_cert(&self) -> Result<LeafSpec, PkiError> {
        let domain = &self.cluster_domain;
        let mut dns: Vec<String> = vec![
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            format!("kubernetes.default.svc.{domain}"),
        ];
        let mut ips = vec![self.service_ip()?, IpAddr::from([127, 0, 0, 1])];
        for cp in &self.control_planes {
            dns.push(cp.name.clone());
            ips.extend(&cp.addresses);
        }
        for san in &self.api_server_extra_sans {
            match san.parse::<IpAddr>() {
                Ok(ip) => ips.push(ip),
                Err(_) => dns.push(san.clone()),
            }
        }
        Ok(LeafSpec::server("kube-apiserver", dedup(dns), dedup(ips)))
    }

    /// A datastore member's certificate (server or peer): its name and
    /// addresses, and loopback, which local clients and health checks dial.
    pub fn datastore_member_cert(&self, member: &Member) -> LeafSpec {
        let mut spec = LeafSpec::server(
            &member.name,
            dedup(vec![member.name.clone(), "localhost".into()]),
            dedup(
                member
                    .addresses
                    .iter()
                    .copied()
                    .chain([
                        IpAddr::from([127, 0, 0, 1]),
                        IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                    ])
                    .collect(),
            ),
        );
        // Members dial each other and serve each other (kubeadm gives etcd's
        // server and peer certificates both usages too).
        spec.usage = crate::leaf::Usage::ServerAndClient;
        spec
    }

    /// A kubelet's serving certificate: the apiserver dials it by name or address.
    pub fn kubelet_serving_cert(&self, node: &Member) -> LeafSpec {
        let mut spec = LeafSpec::server(
            &identity::node_user(&node.name),
            vec![node.name.clone()],
            dedup(node.addresses.clone()),
        );
        spec.organization = Some(identity::NODES_GROUP.to_string());
        spec
    }

    fn control_plane_names(&self) -> Vec<String> {
        self.control_planes.iter().map(|m| m.name.clone()).collect()
    }

    /// Control planes, then the other nodes.
    fn all_hosts(&self) -> Vec<String> {
        dedup(
            self.control_planes
                .iter()
                .chain(&self.nodes)
                .map(|m| m.name.clone())
                .collect(),
        )
    }
}

/// One credential of the cluster, as the catalogue lists it.
#[derive(Debug, Clone)]
pub(crate) struct Wanted {
    pub name: String,
    /// The host a per-host credential belongs to.
    pub node: Option<String>,
    pub what: What,
}

#[derive(Debug, Clone)]
pub(crate) enum What {
    /// The certificate goes to `cert_hosts`, the key to the control planes.
    Ca {
        ca: Authority,
        cert_hosts: Vec<String>,
    },
    Leaf {
        ca: Authority,
        spec: LeafSpec,
        cert: &'static str,
        key: &'static str,
        hosts: Vec<String>,
    },
    /// A client certificate of the Kubernetes CA, embedded in a kubeconfig.
    Kubeconfig {
        spec: LeafSpec,
        path: &'static str,
        hosts: Vec<String>,
    },
    /// `sa.key` and `sa.pub`, on the control planes.
    ServiceAccount,
}

/// Every credential of the cluster, CAs first (everything else needs them).
pub(crate) fn wanted(spec: &PkiSpec) -> Result<Vec<Wanted>, PkiError> {
    if spec.control_planes.is_empty() {
        return Err(PkiError::NoControlPlane);
    }
    let cps = spec.control_plane_names();
    let shared = |name: &str, what: What| Wanted {
        name: name.to_string(),
        node: None,
        what,
    };
    let cp_leaf = |ca, spec: LeafSpec, cert, key| What::Leaf {
        ca,
        spec,
        cert,
        key,
        hosts: cps.clone(),
    };
    let mut w = vec![
        shared(
            Authority::Kubernetes.name(),
            What::Ca {
                ca: Authority::Kubernetes,
                cert_hosts: spec.all_hosts(),
            },
        ),
        shared(
            Authority::FrontProxy.name(),
            What::Ca {
                ca: Authority::FrontProxy,
                cert_hosts: cps.clone(),
            },
        ),
        shared(
            Authority::Datastore.name(),
            What::Ca {
                ca: Authority::Datastore,
                cert_hosts: cps.clone(),
            },
        ),
        shared(
            "apiserver",
            cp_leaf(
                Authority::Kubernetes,
                spec.apiserver_cert()?,
                APISERVER_CRT,
                APISERVER_KEY,
            ),
        ),
        shared(
            "apiserver-kubelet-client",
            cp_leaf(
                Authority::Kubernetes,
                LeafSpec::client(identity::APISERVER_KUBELET_CLIENT_USER, None),
                APISERVER_KUBELET_CLIENT_CRT,
                APISERVER_KUBELET_CLIENT_KEY,
            ),
        ),
        shared(
            "apiserver-datastore-client",
            cp_leaf(
                Authority::Datastore,
                LeafSpec::client(identity::APISERVER_DATASTORE_CLIENT_USER, None),
                APISERVER_DATASTORE_CLIENT_CRT,
                APISERVER_DATASTORE_CLIENT_KEY,
            ),
        ),
        shared(
            "front-proxy-client",
            cp_leaf(
                Authority::FrontProxy,
                LeafSpec::client(identity::FRONT_PROXY_CLIENT_USER, None),
                FRONT_PROXY_CLIENT_CRT,
                FRONT_PROXY_CLIENT_KEY,
            ),
        ),
        shared("sa", What::ServiceAccount),
    ];
    for cp in &spec.control_planes {
        let member = spec.datastore_member_cert(cp);
        for (name, cert, key) in [
            (
                "datastore-server",
                DATASTORE_SERVER_CRT,
                DATASTORE_SERVER_KEY,
            ),
            ("datastore-peer", DATASTORE_PEER_CRT, DATASTORE_PEER_KEY),
        ] {
            w.push(Wanted {
                name: name.to_string(),
                node: Some(cp.name.clone()),
                what: What::Leaf {
                    ca: Authority::Datastore,
                    spec: member.clone(),
                    cert,
                    key,
                    hosts: vec![cp.name.clone()],
                },
            });
        }
    }
    if !spec.own_datastore {
        // The user's etcd has its own CA and client credentials.
        w.retain(|x| !signed_by_datastore_ca(&x.what));
    }
    for (name, user, group, path) in [
        (
            "admin.conf",
            identity::ADMIN_USER,
            Some(identity::ADMIN_GROUP),
            ADMIN_CONF,
        ),
        (
            "controller-manager.conf",
            identity::CONTROLLER_MANAGER_USER,
            None,
            CONTROLLER_MANAGER_CONF,
        ),
        (
            "scheduler.conf",
            identity::SCHEDULER_USER,
            None,
            SCHEDULER_CONF,
        ),
    ] {
        w.push(shared(
            name,
            What::Kubeconfig {
                spec: LeafSpec::client(user, group),
                path,
                hosts: cps.clone(),
            },
        ));
    }
    let node_names: Vec<String> = spec.nodes.iter().map(|n| n.name.clone()).collect();
    if !node_names.is_empty() {
        w.push(shared(
            "kube-proxy.conf",
            What::Kubeconfig {
                spec: LeafSpec::client(identity::KUBE_PROXY_USER, None),
                path: KUBE_PROXY_CONF,
                hosts: dedup(node_names),
            },
        ));
    }
    for node in &spec.nodes {
        let mine = || vec![node.name.clone()];
        w.push(Wanted {
            name: "kubelet.conf".to_string(),
            node: Some(node.name.clone()),
            what: What::Kubeconfig {
                spec: LeafSpec::client(
                    &identity::node_user(&node.name),
                    Some(identity::NODES_GROUP),
                ),
                path: KUBELET_CONF,
                hosts: mine(),
            },
        });
        w.push(Wanted {
            name: "kubelet-serving".to_string(),
            node: Some(node.name.clone()),
            what: What::Leaf {
                ca: Authority::Kubernetes,
                spec: spec.kubelet_serving_cert(node),
                cert: KUBELET_SERVING_CRT,
                key: KUBELET_SERVING_KEY,
                hosts: mine(),
            },
        });
    }
    Ok(w)
}

/// A file the caller should read from a host before [`reconcile`](crate::reconcile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToRead {
    pub host: String,
    pub path: &'static str,
    /// A CA's private key: read it only when `reconcile` asks for it with
    /// [`PkiError::CaKeyNeeded`], so a run that signs nothing never copies a
    /// CA key off its host.
    pub ca_key: bool,
}

/// Every (host, path) where the cluster keeps a credential, in catalogue
/// order: what the caller reads (over SSH) and hands to `reconcile` as
/// [`Existing`](crate::Existing). A file absent on the host is simply not handed over.
pub fn to_read(spec: &PkiSpec) -> Result<Vec<ToRead>, PkiError> {
    let cps = spec.control_plane_names();
    let mut out = Vec::new();
    let mut add = |hosts: &[String], path: &'static str, ca_key: bool| {
        for h in hosts {
            out.push(ToRead {
                host: h.clone(),
                path,
                ca_key,
            });
        }
    };
    for w in wanted(spec)? {
        match &w.what {
            What::Ca { ca, cert_hosts } => {
                add(cert_hosts, ca.cert_path(), false);
                add(&cps, ca.key_path(), true);
            }
            What::Leaf {
                cert, key, hosts, ..
            } => {
                add(hosts, cert, false);
                add(hosts, key, false);
            }
            What::Kubeconfig { path, hosts, .. } => add(hosts, path, false),
            What::ServiceAccount => {
                add(&cps, SA_KEY, false);
                add(&cps, SA_PUB, false);
            }
        }
    }
    Ok(out)
}

/// Keeps the first of each value, in order.
fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The datastore CA itself, or a leaf it signs.
fn signed_by_datastore_ca(what: &What) -> bool {
    matches!(
        what,
        What::Ca {
            ca: Authority::Datastore,
            ..
        } | What::Leaf {
            ca: Authority::Datastore,
            ..
        }
    )
}
