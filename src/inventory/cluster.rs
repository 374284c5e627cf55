//! The `cluster:` and `options:` sections: cluster-wide settings, with the
//! same defaults as Canonical Kubernetes so that a minimal inventory needs
//! only a name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Serialize;

use crate::decode::Cx;
use crate::extra_args::{self, ExtraArgs};
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
    /// Flags added to, changed in or removed from the components' command
    /// lines on every host (a host's own `extraArgs` win over these).
    #[serde(skip_serializing_if = "ExtraArgs::is_empty")]
    pub extra_args: ExtraArgs,
    /// Taints every control-plane Node registers with. None by default:
    /// control planes run workloads too, as in Canonical Kubernetes. Set
    /// `node-role.kubernetes.io/control-plane:NoSchedule` to keep them off.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub control_plane_taints: Vec<Taint>,
    /// How kube-proxy programs Services: `iptables` (the default) or
    /// `nftables` (needs the `nft` program on every node).
    pub kube_proxy_mode: KubeProxyMode,
}

/// `cluster.kubeProxyMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KubeProxyMode {
    Iptables,
    Nftables,
}

impl KubeProxyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            KubeProxyMode::Iptables => "iptables",
            KubeProxyMode::Nftables => "nftables",
        }
    }
}

/// A Node taint, `key[=value]:Effect` (written so in the inventory, and
/// serialized so: an inventory written by serializing reads back the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

impl From<Taint> for String {
    fn from(t: Taint) -> String {
        t.to_string()
    }
}

impl std::fmt::Display for Taint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key)?;
        if let Some(v) = &self.value {
            write!(f, "={v}")?;
        }
        write!(f, ":{}", self.effect)
    }
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
    /// Registry host (`docker.io`, `registry.k8s.io`, `_default` for any) →
    /// mirror URLs tried in order before the registry itself (containerd's
    /// `hosts.toml`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub registry_mirrors: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiServer {
    pub port: u16,
    /// Extra names and IPs for the API server certificate.
    #[serde(rename = "extraSANs")]
    pub extra_sans: Vec<String>,
    /// Where users reach the API (a load balancer, a DNS name),
    /// `https://HOST:PORT`: the server of the kubeconfig `k8sup kubeconfig`
    /// gives, and a name of the API server's certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
}

/// `cluster.apiServer.endpoint`, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Endpoint {
    /// A DNS name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn url(&self) -> String {
        if self.host.contains(':') {
            format!("https://[{}]:{}", self.host, self.port)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.url()
    }
}

/// `HOST`, `HOST:PORT` or `https://HOST[:PORT]` (the port defaults to the
/// API server's).
fn parse_endpoint(s: &str, default_port: u16) -> Option<Endpoint> {
    let rest = s
        .strip_prefix("https://")
        .unwrap_or(s)
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains("://") {
        return None;
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (h.to_string(), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (rest.to_string(), default_port),
        }
    };
    let ok = values::is_dns_name(&host) || host.parse::<std::net::IpAddr>().is_ok();
    (ok && port != 0).then_some(Endpoint { host, port })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datastore {
    pub client_port: u16,
    pub peer_port: u16,
    /// On the control-plane hosts.
    pub data_dir: PathBuf,
    /// `type: external`: the user's etcd, which k8sup only points
    /// kube-apiserver at (`None`: k8sup's own datastore on the control
    /// planes, the default).
    pub external: Option<ExternalDatastore>,
}

/// As the inventory writes it: `type`, then the external etcd's keys
/// beside the others (an inventory written by serializing reads back the
/// same).
impl Serialize for Datastore {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Written<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            client_port: u16,
            peer_port: u16,
            data_dir: &'a PathBuf,
            #[serde(flatten, skip_serializing_if = "Option::is_none")]
            external: Option<&'a ExternalDatastore>,
        }
        Written {
            kind: if self.external.is_some() {
                "external"
            } else {
                "k8sup"
            },
            client_port: self.client_port,
            peer_port: self.peer_port,
            data_dir: &self.data_dir,
            external: self.external.as_ref(),
        }
        .serialize(s)
    }
}

/// An etcd cluster k8sup does not manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalDatastore {
    /// Client URLs, `https://host:port`.
    pub servers: Vec<String>,
    /// Files on the workstation (relative paths are from the inventory's
    /// directory), pushed to each control plane.
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
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
pub(crate) fn decode_cluster(cx: &mut Cx<'_>, yaml: &Spanned, base: &Path) -> Option<Cluster> {
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
    let datastore = m.get("datastore").map(|n| decode_datastore(cx, n, base));
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
    let extra = match m.get("extraArgs") {
        None => Some(ExtraArgs::default()),
        Some(n) => extra_args::decode(cx, n, "'extraArgs' in 'cluster'"),
    };
    let taints = match m.get("controlPlaneTaints") {
        None => Some(Vec::new()),
        Some(n) => cx.list(n, "'controlPlaneTaints' in 'cluster'", |cx, item| {
            let t = cx.string(item, "a control-plane taint")?;
            let parsed = parse_taint(&t);
            if parsed.is_none() {
                cx.sink
                    .error(
                        item.pos,
                        format!("'{t}' is not a taint: expected key[=value]:Effect"),
                    )
                    .help("for example 'node-role.kubernetes.io/control-plane:NoSchedule'; the effect is NoSchedule, PreferNoSchedule or NoExecute");
            }
            parsed
        }),
    };
    let proxy_mode = match m.get("kubeProxyMode") {
        None => Some(KubeProxyMode::Iptables),
        Some(n) => cx
            .one_of(n, "'kubeProxyMode' in 'cluster'", &["iptables", "nftables"])
            .map(|c| match c {
                "nftables" => KubeProxyMode::Nftables,
                _ => KubeProxyMode::Iptables,
            }),
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
        endpoint: None,
    });
    let datastore = match datastore {
        Some(d) => d?,
        None => Datastore {
            client_port: DEFAULT_DATASTORE_CLIENT_PORT,
            peer_port: DEFAULT_DATASTORE_PEER_PORT,
            data_dir: PathBuf::from(DEFAULT_DATASTORE_DIR),
            external: None,
        },
    };
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
        extra_args: extra?,
        control_plane_taints: taints?,
        kube_proxy_mode: proxy_mode?,
    })
}

/// `key[=value]:Effect`, as `kubectl taint` writes it.
fn parse_taint(s: &str) -> Option<Taint> {
    let (kv, effect) = s.rsplit_once(':')?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return None;
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.len() <= 63
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.ends_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let key_ok = match key.split_once('/') {
        Some((prefix, name)) => crate::values::is_dns_name(prefix) && name_ok(name),
        None => name_ok(key),
    };
    let value_ok = value.as_deref().is_none_or(|v| v.is_empty() || name_ok(v));
    (key_ok && value_ok).then(|| Taint {
        key: key.to_string(),
        value,
        effect: effect.to_string(),
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
    let mirrors = match m.get("registryMirrors") {
        None => Some(BTreeMap::new()),
        Some(n) => decode_mirrors(cx, n),
    };
    m.finish(cx);
    Some(ContainerRuntime {
        restrict_oom_score_adj: restrict?,
        registry_mirrors: mirrors?,
    })
}

/// `registryMirrors: { docker.io: [https://mirror.internal:5000] }`.
fn decode_mirrors(cx: &mut Cx<'_>, yaml: &Spanned) -> Option<BTreeMap<String, Vec<String>>> {
    let what = "'registryMirrors' in 'cluster.containerRuntime'";
    let crate::yaml::Kind::Map(entries) = &yaml.kind else {
        cx.sink
            .error(
                yaml.pos,
                format!(
                    "{what} must be a mapping of registry to mirror URLs, found {}",
                    yaml.describe()
                ),
            )
            .help("for example 'docker.io: [https://mirror.internal:5000]'");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for e in entries {
        let registry = e.key.as_str();
        let host = registry.rsplit_once(':').map_or(registry, |(h, p)| {
            if p.parse::<u16>().is_ok() {
                h
            } else {
                registry
            }
        });
        if registry != "_default"
            && !values::is_dns_name(host)
            && host.parse::<std::net::IpAddr>().is_err()
        {
            cx.sink
                .error(e.key_pos, format!("{what}: '{registry}' is not a registry host"))
                .help("name the registry as images do ('docker.io', 'registry.k8s.io', 'host:port'), or '_default' for every registry");
            ok = false;
            continue;
        }
        let urls = cx.list(
            &e.value,
            &format!("mirrors of '{registry}' in {what}"),
            |cx, item| {
                let u = cx.string(item, "a mirror URL")?;
                let valid = (u.starts_with("https://") || u.starts_with("http://"))
                    && u.split_once("://").is_some_and(|(_, rest)| {
                        !rest.is_empty() && !rest.contains(char::is_whitespace)
                    });
                if !valid {
                    cx.sink
                        .error(item.pos, format!("'{u}' is not a mirror URL"))
                        .help("write it as https://host[:port][/path]");
                    return None;
                }
                Some(u)
            },
        );
        match urls {
            Some(u) if !u.is_empty() => {
                out.insert(registry.to_string(), u);
            }
            Some(_) => {
                cx.sink
                    .error(e.value.pos, format!("{what}: '{registry}' lists no mirror"));
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
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
    let endpoint = match m.get("endpoint") {
        None => Some(None),
        Some(n) => cx
            .string(n, "'endpoint' in 'cluster.apiServer'")
            .and_then(|e| {
                let parsed = parse_endpoint(&e, port.unwrap_or(DEFAULT_API_SERVER_PORT));
                if parsed.is_none() {
                    cx.sink
                        .error(n.pos, format!("'endpoint' in 'cluster.apiServer': '{e}' is not a host[:port] or an https:// URL"))
                        .help("for example 'k8s.example.com:6443' (a load balancer in front of the control planes)");
                }
                parsed
            })
            .map(Some),
    };
    m.finish(cx);
    Some(ApiServer {
        port: port?,
        extra_sans: sans?,
        endpoint: endpoint?,
    })
}

fn decode_datastore(cx: &mut Cx<'_>, yaml: &Spanned, base: &Path) -> Option<Datastore> {
    let mut m = cx.map(yaml, "'cluster.datastore'")?;
    let kind = match m.get("type") {
        None => Some("k8sup"),
        Some(n) => cx.one_of(n, "'type' in 'cluster.datastore'", &["k8sup", "external"]),
    };
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
    let servers = m.get("servers");
    let files = [
        ("caFile", m.get("caFile")),
        ("certFile", m.get("certFile")),
        ("keyFile", m.get("keyFile")),
    ];
    m.finish(cx);
    let external = match kind? {
        "external" => {
            let servers = match servers {
                Some(n) => cx.list(n, "'servers' in 'cluster.datastore'", |cx, item| {
                    let u = cx.string(item, "an etcd client URL")?;
                    let ok = u
                        .strip_prefix("https://")
                        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', ' ']));
                    if !ok {
                        cx.sink
                            .error(item.pos, format!("'{u}' is not an etcd client URL"))
                            .help("write https://host:2379; k8sup talks to an external datastore only over TLS");
                        return None;
                    }
                    Some(u)
                }),
                None => {
                    cx.sink
                        .error(yaml.pos, "'cluster.datastore' has type: external but no 'servers'")
                        .help("list the etcd client URLs: servers: [https://etcd-1:2379]");
                    None
                }
            };
            let mut paths = Vec::new();
            for (key, n) in files {
                let Some(n) = n else {
                    cx.sink
                        .error(yaml.pos, format!("'cluster.datastore' has type: external but no '{key}'"))
                        .help("caFile, certFile and keyFile are the etcd client's TLS files on this workstation");
                    paths.push(None);
                    continue;
                };
                paths.push(local_file(
                    cx,
                    n,
                    &format!("'{key}' in 'cluster.datastore'"),
                    base,
                ));
            }
            let [ca, cert, key] = <[Option<PathBuf>; 3]>::try_from(paths).ok()?;
            let servers = servers.filter(|s| !s.is_empty());
            Some(ExternalDatastore {
                servers: servers?,
                ca_file: ca?,
                cert_file: cert?,
                key_file: key?,
            })
        }
        _ => {
            if let Some(n) = servers.or(files.iter().find_map(|(_, n)| *n)) {
                cx.sink
                    .error(n.pos, "'servers', 'caFile', 'certFile' and 'keyFile' are for an external datastore")
                    .help("set 'type: external' in 'cluster.datastore' to use your own etcd, or remove them");
                return None;
            }
            None
        }
    };
    Some(Datastore {
        client_port: client?,
        peer_port: peer?,
        data_dir: dir?,
        external,
    })
}

/// A file on the workstation that must exist now.
fn local_file(cx: &mut Cx<'_>, yaml: &Spanned, what: &str, base: &Path) -> Option<PathBuf> {
    let value = cx.string(yaml, what)?;
    let path = crate::effective::resolve_path(Path::new(&value), base);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Some(path),
        Ok(_) => {
            cx.sink.error(
                yaml.pos,
                format!("{what}: {} is not a regular file", path.display()),
            );
            None
        }
        Err(e) => {
            cx.sink
                .error(
                    yaml.pos,
                    format!("{what}: cannot read {}: {e}", path.display()),
                )
                .help("relative paths are relative to the inventory file's directory");
            None
        }
    }
}
