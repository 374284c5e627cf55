//! `k8sup status`: what the cluster is, read from the cluster itself.
//!
//! Three sources, all over the hosts' SSH connections (no other network path
//! is needed, jump hosts included):
//! - the Kubernetes API, as a client (`kube`), through a port forwarded over
//!   the SSH connection of the first control plane that answers, with the
//!   admin kubeconfig that control plane holds: the nodes;
//! - one exec per host: its components' systemd state, its datastore member's
//!   view (leader or follower, from its loopback `/metrics`), and its
//!   certificates, whose expiry is read here (`k8sup-pki`);
//! - the inventory: which host should run what.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use base64::Engine as _;
use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::Node;
use k8sup_inventory::{Host, Inventory, Role};
use serde::Serialize;

use crate::connect::connect_hosts;
use crate::output::{OutputArgs, OutputFormat};

/// Show the cluster: its nodes (role, kubelet version, Ready), its datastore
/// members (which one leads), the components on each host (active or not),
/// and when each certificate expires. Reads the cluster over SSH only.
///
/// Examples:
///   k8sup status -i inventory.yaml
///   k8sup status -i inventory.yaml -o json    # the same, for CI
///
/// JSON output: `recorded` (what k8sup last applied, from a control plane's
/// record: `host`, `kubernetesVersion`, `k8supVersion`), `nodes[]` (`name`, `role`, `version`, `ready`),
/// `dns` (`found`, `replicas`, `available`: CoreDNS),
/// `hosts[]` (`host`, `role`, `reachable`, `error`, `components{unit: state}`,
/// `datastore` (`leader`, `hasLeader`, `learner`), `certificates[]` (`path`, `notAfter`,
/// `daysLeft`)), `apiError`.
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// The inventory file.
    #[arg(short, long, env = "K8SUP_INVENTORY", value_name = "FILE")]
    pub inventory: PathBuf,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeRow {
    name: String,
    role: String,
    version: String,
    ready: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Member {
    leader: bool,
    has_leader: bool,
    /// Added, catching up, not yet promoted to a voter.
    learner: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Cert {
    path: String,
    not_after: String,
    days_left: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HostRow {
    host: String,
    role: String,
    reachable: bool,
    error: Option<String>,
    components: BTreeMap<String, String>,
    datastore: Option<Member>,
    certificates: Vec<Cert>,
    #[serde(skip)]
    recorded: Option<Recorded>,
}

/// What the cluster's record says was applied (`k8sup_cluster::state`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Recorded {
    host: String,
    kubernetes_version: String,
    k8sup_version: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    cluster: String,
    /// The endpoints of the user's etcd, when the datastore is external
    /// (`hosts[].datastore` is then absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    external_datastore: Option<Vec<String>>,
    recorded: Option<Recorded>,
    nodes: Vec<NodeRow>,
    /// Absent when the API did not answer.
    dns: Option<Dns>,
    api_error: Option<String>,
    hosts: Vec<HostRow>,
}

/// The units each role runs.
fn units(role: Role) -> &'static [&'static str] {
    match role {
        Role::ControlPlane => &[
            "k8sup-datastore",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "containerd",
            "kubelet",
            "kube-proxy",
        ],
        Role::Worker => &[
            "k8sup-apiserver-proxy",
            "containerd",
            "kubelet",
            "kube-proxy",
        ],
    }
}

/// Every certificate (and kubeconfig) `host` holds, by the cluster's PKI layout.
fn cert_paths(inventory: &Inventory, host: &str) -> Vec<&'static str> {
    let Ok(t) = k8sup_cluster::Topology::new(inventory, &BTreeMap::new()) else {
        return Vec::new();
    };
    let spec = k8sup_cluster::certificates::spec(&t);
    let mut paths: Vec<&'static str> = k8sup_pki::to_read(&spec)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| {
            r.host == host && !r.ca_key && !r.path.ends_with(".key") && !r.path.ends_with(".pub")
        })
        .map(|r| r.path)
        .collect();
    paths.sort_unstable();
    paths.dedup();
    paths
}

fn script(inventory: &Inventory, h: &Host) -> String {
    let mut s = String::from("set +e\n");
    let own_datastore = inventory.cluster.datastore.external.is_none();
    // With an external etcd, no k8sup datastore member runs here.
    for u in units(h.role)
        .iter()
        .filter(|u| own_datastore || **u != "k8sup-datastore")
    {
        s += &format!(
            "printf 'unit {u} %s\\n' \"$(systemctl is-active {u}.service 2>/dev/null)\"\n"
        );
    }
    if h.role == Role::ControlPlane {
        let state = k8sup_cluster::state::STATE_PATH;
        s += &format!("[ -f {state} ] && printf 'state %s\\n' \"$(base64 -w0 < {state})\"\n");
    }
    if h.role == Role::ControlPlane && own_datastore {
        s += &format!(
            "m=\"$(curl -s --max-time 3 http://127.0.0.1:{}/metrics)\"\n\
             printf 'leader %s\\n' \"$(printf '%s\\n' \"$m\" | awk '/^etcd_server_is_leader /{{print $2}}')\"\n\
             printf 'has_leader %s\\n' \"$(printf '%s\\n' \"$m\" | awk '/^etcd_server_has_leader /{{print $2}}')\"\n\
             printf 'learner %s\\n' \"$(printf '%s\\n' \"$m\" | awk '/^etcd_server_is_learner /{{print $2}}')\"\n",
            k8sup_cluster::control_plane::DATASTORE_METRICS_PORT
        );
    }
    for p in cert_paths(inventory, &h.name) {
        s += &format!("[ -f {p} ] && printf 'cert {p} %s\\n' \"$(base64 -w0 < {p})\"\n");
    }
    s
}

fn parse(out: &str, row: &mut HostRow, now: k8sup_pki::time::OffsetDateTime) {
    let (mut leader, mut has_leader, mut learner) = (None, None, None);
    for line in out.lines() {
        let mut f = line.splitn(3, ' ');
        match (f.next(), f.next(), f.next()) {
            (Some("unit"), Some(u), state) => {
                let state = state.unwrap_or("").trim();
                row.components.insert(
                    u.to_string(),
                    if state.is_empty() {
                        "unknown".into()
                    } else {
                        state.into()
                    },
                );
            }
            (Some("state"), Some(b64), _) => {
                let facts = k8sup_engine::Facts::default()
                    .with(k8sup_cluster::state::FACT_STATE, b64.trim());
                if let Ok(Some(r)) = k8sup_cluster::state::recorded(&row.host, &facts) {
                    row.recorded = Some(Recorded {
                        host: row.host.clone(),
                        kubernetes_version: r.kubernetes_version,
                        k8sup_version: r.k8sup_version,
                    });
                }
            }
            (Some("leader"), v, _) => leader = v.map(|v| v.trim() == "1"),
            (Some("has_leader"), v, _) => has_leader = v.map(|v| v.trim() == "1"),
            (Some("learner"), v, _) => learner = v.map(|v| v.trim() == "1"),
            (Some("cert"), Some(path), Some(b64)) => {
                let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
                    continue;
                };
                if let Ok(Some(info)) = k8sup_pki::inspect_file(path, &bytes) {
                    row.certificates.push(Cert {
                        path: path.to_string(),
                        not_after: info
                            .not_after
                            .format(&k8sup_pki::time::format_description::well_known::Rfc3339)
                            .unwrap_or_default(),
                        days_left: info.days_left(now),
                    });
                }
            }
            _ => {}
        }
    }
    if row.role == Role::ControlPlane.as_str() && leader.is_some() {
        row.datastore = Some(Member {
            leader: leader.unwrap_or(false),
            has_leader: has_leader.unwrap_or(false),
            learner: learner.unwrap_or(false),
        });
    }
}

/// The cluster's DNS, as the API says: CoreDNS's replicas, wanted and
/// available (a cluster with none available resolves no names).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Dns {
    /// The CoreDNS Deployment exists.
    found: bool,
    replicas: i32,
    available: i32,
}

/// The nodes and the cluster's DNS, from the API through `session`'s
/// forwarded port.
async fn nodes(
    session: &k8sup_ssh::Session,
    port: u16,
) -> Result<(Vec<(String, String, bool)>, Dns)> {
    let admin = session
        .exec_checked(&format!("cat {}", k8sup_pki::layout::ADMIN_CONF))
        .await?
        .stdout_str()
        .into_owned();
    let api = k8sup_kube::connect(session, port, &admin, std::time::Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("{}: the Kubernetes API: {e}", session.name()))?;
    let client = api.client.clone();
    let list = kube::Api::<Node>::all(client.clone())
        .list(&Default::default())
        .await?;
    let coredns = k8sup_kube::readiness::dns(&client, &k8sup_cluster::addons::coredns()).await?;
    drop(api);
    let dns = Dns {
        found: coredns.is_some(),
        replicas: coredns.map_or(0, |r| r.wanted),
        available: coredns.map_or(0, |r| r.available),
    };
    let nodes = list
        .items
        .into_iter()
        .map(|n| {
            let name = n.metadata.name.unwrap_or_default();
            let status = n.status.unwrap_or_default();
            let version = status
                .node_info
                .map(|i| i.kubelet_version)
                .unwrap_or_default();
            let ready = status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (name, version, ready)
        })
        .collect();
    Ok((nodes, dns))
}

pub fn execute(args: StatusArgs) -> Result<ExitCode> {
    let inventory = super::load_inventory(&args.inventory)?;
    if inventory.cluster.components != k8sup_inventory::Components::Kubernetes {
        bail!(
            "this inventory installs no Kubernetes (cluster.components: none): there is no cluster status"
        );
    }
    let hosts: Vec<&Host> = inventory.hosts.iter().collect();
    let runtime = tokio::runtime::Runtime::new()?;
    let status = runtime.block_on(async {
        let now = k8sup_pki::time::OffsetDateTime::now_utc();
        let connected = connect_hosts(&inventory, &hosts).await;
        let rows: Vec<(HostRow, Option<k8sup_ssh::Session>)> = stream::iter(connected)
            .map(|(h, session)| {
                let inventory = &inventory;
                async move {
                    let mut row = HostRow {
                        host: h.name.clone(),
                        role: h.role.to_string(),
                        reachable: false,
                        error: None,
                        components: BTreeMap::new(),
                        datastore: None,
                        certificates: Vec::new(),
                        recorded: None,
                    };
                    match session {
                        Err(e) => {
                            row.error = Some(format!("{e:#}"));
                            (row, None)
                        }
                        Ok(s) => {
                            row.reachable = true;
                            match s.exec(&script(inventory, h)).await {
                                Ok(o) => parse(&o.stdout_str(), &mut row, now),
                                Err(e) => row.error = Some(format!("{e:#}")),
                            }
                            (row, Some(s))
                        }
                    }
                }
            })
            .buffered(inventory.options.concurrency as usize)
            .collect()
            .await;
        let mut api_error = None;
        let mut node_rows = Vec::new();
        let mut dns = None;
        let cp_sessions = rows
            .iter()
            .filter(|(r, _)| r.role == Role::ControlPlane.as_str())
            .filter_map(|(_, s)| s.as_ref());
        for s in cp_sessions {
            match nodes(s, inventory.cluster.api_server.port).await {
                Ok((list, found_dns)) => {
                    api_error = None;
                    dns = Some(found_dns);
                    for (name, version, ready) in list {
                        let role = inventory
                            .host(&name)
                            .map(|h| h.role.to_string())
                            .unwrap_or_else(|| "(not in the inventory)".into());
                        node_rows.push(NodeRow {
                            name,
                            role,
                            version,
                            ready,
                        });
                    }
                    break;
                }
                Err(e) => api_error = Some(format!("{}: {e:#}", s.name())),
            }
        }
        if node_rows.is_empty() && api_error.is_none() {
            api_error = Some("no control plane could be reached".into());
        }
        let mut host_rows = Vec::new();
        for (row, s) in rows {
            if let Some(s) = s {
                s.close().await;
            }
            host_rows.push(row);
        }
        Status {
            cluster: inventory.cluster.name.clone(),
            external_datastore: inventory
                .cluster
                .datastore
                .external
                .as_ref()
                .map(|e| e.servers.clone()),
            recorded: host_rows.iter().find_map(|h| h.recorded.clone()),
            nodes: node_rows,
            dns,
            api_error,
            hosts: host_rows,
        }
    });
    match args.output.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        OutputFormat::Text => print_text(&status),
    }
    let healthy = status.api_error.is_none()
        && status.nodes.iter().all(|n| n.ready)
        && status.dns.as_ref().is_some_and(|d| d.available >= 1)
        && status
            .hosts
            .iter()
            .all(|h| h.reachable && h.components.values().all(|s| s == "active"));
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_text(s: &Status) {
    println!("Cluster {}", s.cluster);
    match &s.recorded {
        Some(r) => println!(
            "Applied: Kubernetes {} by k8sup {} (recorded on {})",
            r.kubernetes_version, r.k8sup_version, r.host
        ),
        None => println!("Applied: no record on any control plane (not applied yet?)"),
    }
    println!("\nNodes:");
    if let Some(e) = &s.api_error {
        println!("  the API did not answer: {e}");
    }
    for n in &s.nodes {
        println!(
            "  {:<20} {:<14} {:<10} {}",
            n.name,
            n.role,
            n.version,
            if n.ready { "Ready" } else { "NotReady" }
        );
    }
    if let Some(d) = &s.dns {
        if d.found {
            println!(
                "\nDNS: CoreDNS, {} of {} replicas available{}",
                d.available,
                d.replicas,
                if d.available == 0 {
                    " (no name resolves in pods)"
                } else {
                    ""
                }
            );
        } else {
            println!("\nDNS: no CoreDNS Deployment (k8sup apply puts it back)");
        }
    }
    if let Some(servers) = &s.external_datastore {
        println!("\nDatastore: external etcd at {}", servers.join(", "));
    } else {
        println!("\nDatastore members:");
    }
    for h in s.hosts.iter().filter(|h| h.datastore.is_some()) {
        let m = h.datastore.as_ref().expect("filtered");
        println!(
            "  {:<20} {}",
            h.host,
            if m.leader {
                "leader"
            } else if m.learner {
                "learner (not yet a voter)"
            } else if m.has_leader {
                "follower"
            } else {
                "no leader seen"
            }
        );
    }
    println!("\nComponents:");
    for h in &s.hosts {
        if let Some(e) = &h.error {
            println!("  {:<20} unreachable: {e}", h.host);
            continue;
        }
        let bad: Vec<String> = h
            .components
            .iter()
            .filter(|(_, st)| st.as_str() != "active")
            .map(|(u, st)| format!("{u} {st}"))
            .collect();
        println!(
            "  {:<20} {}",
            h.host,
            if bad.is_empty() {
                format!("all {} active", h.components.len())
            } else {
                bad.join(", ")
            }
        );
    }
    println!("\nCertificates (soonest expiry per host):");
    for h in &s.hosts {
        if let Some(c) = h.certificates.iter().min_by_key(|c| c.days_left) {
            println!(
                "  {:<20} {} certificates; {} expires first, in {} days ({})",
                h.host,
                h.certificates.len(),
                c.path,
                c.days_left,
                c.not_after
            );
        }
    }
}
