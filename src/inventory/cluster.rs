//! The `cluster:` and `options:` sections: cluster-wide settings, with the
//! same defaults as Canonical Kubernetes so that a minimal inventory needs
//! only a name.

use std::path::PathBuf;

use ipnet::IpNet;
use serde::Serialize;

use crate::decode::Cx;
use crate::values;
use crate::yaml::Spanned;

pub const DEFAULT_POD_CIDR: &str = "10.1.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.152.183.0/24";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
pub const DEFAULT_API_SERVER_PORT: u16 = 6443;
pub const DEFAULT_DATASTORE_CLIENT_PORT: u16 = 2379;
pub const DEFAULT_DATASTORE_PEER_PORT: u16 = 2380;
pub const DEFAULT_DATASTORE_DIR: &str = "/var/lib/k8sup/datastore";
pub const DEFAULT_CONCURRENCY: u32 = 64;
/// The Kubernetes version a cluster gets when the inventory names none.
/// Upgrades are never started by a change of this default: an upgrade needs
/// the version written in the inventory (see `kubernetes_version_defaulted`).
pub const DEFAULT_KUBERNETES_VERSION: &str = "1.37.2";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// DNS-1123 label; names the cluster in kubeconfigs and certificates.
    pub name: String,
    /// Normalised: the leading `v` is optional in the file and not part of
    /// the value; print it as `v{version}` (as it is serialized).
    #[serde(serialize_with = "with_v")]
    pub kubernetes_version: semver::Version,
    /// True when the inventory did not name a version and the default was
    /// taken: fine for a first install, never a reason to upgrade.
    #[serde(skip)]
    pub kubernetes_version_defaulted: bool,
    /// Where the file names the version, for errors found after loading (a
    /// version k8sup cannot install).
    #[serde(skip)]
    pub kubernetes_version_at: SourceAt,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: IpNet,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: IpNet,
    pub cluster_domain: String,
    pub api_server: ApiServer,
    pub datastore: Datastore,
    /// What k8sup installs on the hosts besides the inventory's own files,
    /// services and commands.
    pub components: Components,
    /// Where the Kubernetes binaries and image archives come from.
    pub artifacts: Artifacts,
    /// Hosts whose cgroup layout is v1 (or hybrid) are refused unless this
    /// is true: the kubelet 1.35+ runs there only in a deprecated mode.
    #[serde(rename = "allowCgroupV1")]
    pub allow_cgroup_v1: bool,
    pub container_runtime: ContainerRuntime,
}

/// A position in the inventory file (line, column; 1-based), kept for
/// messages. Not part of what an inventory means: two inventories that say
/// the same thing are equal wherever they say it.
#[derive(Debug, Clone, Copy, Default)]
pub struct SourceAt(pub Option<(usize, usize)>);

impl PartialEq for SourceAt {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for SourceAt {}

/// What k8sup installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Components {
    /// A Kubernetes cluster: the datastore, the control plane, the node
    /// components, pod networking and DNS (the default).
    Kubernetes,
    /// Nothing of Kubernetes: only the inventory's `files:`, `services:` and
    /// `commands:` (k8sup as a plain configuration tool).
    None,
}

/// `cluster.artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifacts {
    /// A mirror URL (`http(s)://…/`, the official paths beneath it) or a
    /// local directory laid out the same way; `None`: the official release
    /// locations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// `registry` (containerd pulls pause and CoreDNS) or `archives` (image
    /// archives from the source, imported on each node: for hosts without a
    /// registry).
    pub images: ImageSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageSource {
    Registry,
    Archives,
}

/// `cluster.containerRuntime`: containerd settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRuntime {
    /// containerd's `restrict_oom_score_adj`: needed where the host's root
    /// cannot lower an OOM score (nested containers, such as the lab's).
    #[serde(rename = "restrictOOMScoreAdj")]
    pub restrict_oom_score_adj: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer {
    pub port: u16,
    /// Extra names and IPs for the API server certificate.
    #[serde(rename = "extraSANs")]
    pub extra_sans: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Datastore {
    pub client_port: u16,
    pub peer_port: u16,
    /// On the control-plane hosts.
    pub data_dir: PathBuf,
}

fn with_v<S: serde::Serializer>(v: &semver::Version, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("v{v}"))
}

/// How k8sup itself runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Options {
    /// Hosts worked on at once.
    pub concurrency: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            concurrency: DEFAULT_CONCURRENCY,
        }
    }
}

pub(crate) fn decode_options(cx: &mut Cx<'_>, yaml: Option<&Spanned>) -> Options {
    let mut o = Options::default();
    let Some(yaml) = yaml else { return o };
    let Some(mut m) = cx.map(yaml, "'options'") else {
        return o;
    };
    if let Some(n) = m.get("concurrency") {
        o.concurrency = cx
            .integer::<u32>(n, "'concurrency' in 'options'", 1, 10_000)
            .unwrap_or(o.concurrency);
    }
    m.finish(cx);
    o
}

/// `None` when a required value is missing or invalid (already reported).
pub(crate) fn decode_cluster(cx: &mut Cx<'_>, yaml: &Spanned) -> Option<Cluster> {
    let mut m = cx.map(yaml, "'cluster'")?;
    let name = m
        .required(cx, "name")
        .and_then(|n| values::dns_label(cx, n, "cluster name"));
    let version_yaml = m.get("kubernetesVersion");
    let version_defaulted = version_yaml.is_none();
    let version_at = version_yaml.map(|n| (n.pos.line, n.pos.col));
    let version = match version_yaml {
        Some(n) => values::version(cx, n, "'kubernetesVersion' in 'cluster'"),
        None => Some(
            semver::Version::parse(DEFAULT_KUBERNETES_VERSION).expect("default version is valid"),
        ),
    };
    let pod = m
        .get("podCIDR")
        .map(|n| values::cidr(cx, n, "'podCIDR' in 'cluster'"));
    let service = m
        .get("serviceCIDR")
        .map(|n| values::cidr(cx, n, "'serviceCIDR' in 'cluster'"));
    let pod_pos = m.get("podCIDR").map(|n| n.pos);
    let service_pos = m.get("serviceCIDR").map(|n| n.pos);
    let domain = match m.get("clusterDomain") {
        None => Some(DEFAULT_CLUSTER_DOMAIN.to_owned()),
        Some(n) => cx.string(n, "'clusterDomain' in 'cluster'").filter(|d| {
            let ok = values::is_dns_name(d) && d.to_ascii_lowercase() == *d;
            if !ok {
                let shown = cx.shown(n);
                cx.sink
                    .error(
                        n.pos,
                        format!(
                            "'clusterDomain' in 'cluster': {shown} is not a lowercase DNS name"
                        ),
                    )
                    .help("for example 'cluster.local'");
            }
            ok
        }),
    };
    let api_server = m.get("apiServer").and_then(|n| decode_api_server(cx, n));
    let datastore = m.get("datastore").and_then(|n| decode_datastore(cx, n));
    let components = match m.get("components") {
        None => Some(Components::Kubernetes),
        Some(n) => cx
            .one_of(n, "'components' in 'cluster'", &["kubernetes", "none"])
            .map(|c| match c {
                "none" => Components::None,
                _ => Components::Kubernetes,
            }),
    };
    let artifacts = match m.get("artifacts") {
        None => Some(Artifacts {
            source: None,
            images: ImageSource::Registry,
        }),
        Some(n) => decode_artifacts(cx, n),
    };
    let allow_v1 = match m.get("allowCgroupV1") {
        None => Some(false),
        Some(n) => cx.boolean(n, "'allowCgroupV1' in 'cluster'"),
    };
    let runtime = match m.get("containerRuntime") {
        None => Some(ContainerRuntime::default()),
        Some(n) => decode_runtime(cx, n),
    };
    m.finish(cx);

    let default_net = |s: &str| s.parse::<IpNet>().expect("default CIDRs are valid");
    let pod_cidr = pod.unwrap_or_else(|| Some(default_net(DEFAULT_POD_CIDR)))?;
    let service_cidr = service.unwrap_or_else(|| Some(default_net(DEFAULT_SERVICE_CIDR)))?;
    if pod_cidr.contains(&service_cidr.network()) || service_cidr.contains(&pod_cidr.network()) {
        let at = service_pos.or(pod_pos).unwrap_or(yaml.pos);
        cx.sink
            .error(at, format!("podCIDR {pod_cidr} and serviceCIDR {service_cidr} overlap"))
            .help("pods and services need separate address ranges; the defaults are 10.1.0.0/16 and 10.152.183.0/24");
    }
    let api_server = api_server.unwrap_or(ApiServer {
        port: DEFAULT_API_SERVER_PORT,
        extra_sans: Vec::new(),
    });
    let datastore = datastore.unwrap_or(Datastore {
        client_port: DEFAULT_DATASTORE_CLIENT_PORT,
        peer_port: DEFAULT_DATASTORE_PEER_PORT,
        data_dir: PathBuf::from(DEFAULT_DATASTORE_DIR),
    });
    let ports = [
        ("apiServer.port", api_server.port),
        ("datastore.clientPort", datastore.client_port),
        ("datastore.peerPort", datastore.peer_port),
    ];
    for (i, (a, pa)) in ports.iter().enumerate() {
        for (b, pb) in &ports[i + 1..] {
            if pa == pb {
                cx.sink
                    .error(
                        yaml.pos,
                        format!("'cluster' uses port {pa} for both {a} and {b}"),
                    )
                    .help("each listens on the control-plane hosts, so they need different ports");
            }
        }
    }
    Some(Cluster {
        name: name?,
        kubernetes_version: version?,
        kubernetes_version_defaulted: version_defaulted,
        kubernetes_version_at: SourceAt(version_at),
        pod_cidr,
        service_cidr,
        cluster_domain: domain?,
        api_server,
        datastore,
        components: components?,
        artifacts: artifacts?,
        allow_cgroup_v1: allow_v1?,
        container_runtime: runtime?,
    })
}

fn decode_artifacts(cx: &mut Cx<'_>, yaml: &Spanned) -> Option<Artifacts> {
    let mut m = cx.map(yaml, "'cluster.artifacts'")?;
    let source = m
        .get("source")
        .map(|n| cx.string(n, "'source' in 'cluster.artifacts'"));
    let images = match m.get("images") {
        None => Some(ImageSource::Registry),
        Some(n) => cx
            .one_of(
                n,
                "'images' in 'cluster.artifacts'",
                &["registry", "archives"],
            )
            .map(|c| match c {
                "archives" => ImageSource::Archives,
                _ => ImageSource::Registry,
            }),
    };
    m.finish(cx);
    Some(Artifacts {
        source: match source {
            Some(s) => Some(s?),
            None => None,
        },
        images: images?,
    })
}

fn decode_runtime(cx: &mut Cx<'_>, yaml: &Spanned) -> Option<ContainerRuntime> {
    let mut m = cx.map(yaml, "'cluster.containerRuntime'")?;
    let restrict = match m.get("restrictOOMScoreAdj") {
        None => Some(false),
        Some(n) => cx.boolean(n, "'restrictOOMScoreAdj' in 'cluster.containerRuntime'"),
    };
    m.finish(cx);
    Some(ContainerRuntime {
        restrict_oom_score_adj: restrict?,
    })
}

fn decode_api_server(cx: &mut Cx<'_>, yaml: &Spanned) -> Option<ApiServer> {
    let mut m = cx.map(yaml, "'cluster.apiServer'")?;
    let port = match m.get("port") {
        Some(n) => cx.port(n, "'port' in 'cluster.apiServer'"),
        None => Some(DEFAULT_API_SERVER_PORT),
    };
    let sans = match m.get("extraSANs") {
        Some(n) => cx.list(n, "'extraSANs' in 'cluster.apiServer'", |cx, item| {
            values::san(cx, item, "extra SAN")
        }),
        None => Some(Vec::new()),
    };
    m.finish(cx);
    Some(ApiServer {
        port: port?,
        extra_sans: sans?,
    })
}

fn decode_datastore(cx: &mut Cx<'_>, yaml: &Spanned) -> Option<Datastore> {
    let mut m = cx.map(yaml, "'cluster.datastore'")?;
    let client = match m.get("clientPort") {
        Some(n) => cx.port(n, "'clientPort' in 'cluster.datastore'"),
        None => Some(DEFAULT_DATASTORE_CLIENT_PORT),
    };
    let peer = match m.get("peerPort") {
        Some(n) => cx.port(n, "'peerPort' in 'cluster.datastore'"),
        None => Some(DEFAULT_DATASTORE_PEER_PORT),
    };
    let dir = match m.get("dataDir") {
        Some(n) => values::host_path(cx, n, "'dataDir' in 'cluster.datastore'"),
        None => Some(PathBuf::from(DEFAULT_DATASTORE_DIR)),
    };
    m.finish(cx);
    Some(Datastore {
        client_port: client?,
        peer_port: peer?,
        data_dir: dir?,
    })
}
