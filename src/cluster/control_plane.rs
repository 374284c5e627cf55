//! A control plane's own services: its datastore member, kube-apiserver,
//! kube-controller-manager and kube-scheduler, from `templates/systemd/`,
//! each gated on health before the next phase (a probe on the datastore's
//! `/health` and the apiserver's `/readyz`).
//!
//! Every control plane in the inventory at the first apply starts its
//! datastore member with the same `--initial-cluster` (etcd's static
//! bootstrap). kube-apiserver talks to its own member first, over loopback.

use std::time::Duration;

use std::collections::BTreeMap;

use k8sup_engine::{
    DesiredState, EngineError, Facts, Guard, ProbeCheck, Resource, ResourceId, Step,
};
use k8sup_inventory::ArgsComponent;
use k8sup_pki::{Pki, layout};
use serde::Serialize;

use crate::binaries;
use crate::certificates;
use crate::inputs::NodeFiles;
use crate::render;
use crate::topology::{Node, Topology};

pub const DATASTORE_UNIT: &str = "k8sup-datastore.service";
pub const APISERVER_UNIT: &str = "kube-apiserver.service";
pub const CONTROLLER_MANAGER_UNIT: &str = "kube-controller-manager.service";
pub const SCHEDULER_UNIT: &str = "kube-scheduler.service";
/// The datastore's plain-HTTP `/health` and `/metrics`, on loopback only.
pub const DATASTORE_METRICS_PORT: u16 = 2381;

#[derive(Serialize)]
struct DatastorePki {
    ca: &'static str,
    server_crt: &'static str,
    server_key: &'static str,
    peer_crt: &'static str,
    peer_key: &'static str,
}

#[derive(Serialize)]
struct ApiserverPki {
    ca: &'static str,
    ca_key: &'static str,
    apiserver_crt: &'static str,
    apiserver_key: &'static str,
    kubelet_client_crt: &'static str,
    kubelet_client_key: &'static str,
    front_proxy_ca: &'static str,
    front_proxy_client_crt: &'static str,
    front_proxy_client_key: &'static str,
    sa_key: &'static str,
    sa_pub: &'static str,
}

const APISERVER_PKI: ApiserverPki = ApiserverPki {
    ca: layout::CA_CRT,
    ca_key: layout::CA_KEY,
    apiserver_crt: layout::APISERVER_CRT,
    apiserver_key: layout::APISERVER_KEY,
    kubelet_client_crt: layout::APISERVER_KUBELET_CLIENT_CRT,
    kubelet_client_key: layout::APISERVER_KUBELET_CLIENT_KEY,
    front_proxy_ca: layout::FRONT_PROXY_CA_CRT,
    front_proxy_client_crt: layout::FRONT_PROXY_CLIENT_CRT,
    front_proxy_client_key: layout::FRONT_PROXY_CLIENT_KEY,
    sa_key: layout::SA_KEY,
    sa_pub: layout::SA_PUB,
};

/// How each member first meets the cluster (`datastore-bootstrap.env`).
pub const BOOTSTRAP_ENV: &str = "/etc/k8sup/datastore-bootstrap.env";

/// Whether `node`'s facts say its member holds data (it has joined before).
fn has_data(facts: &BTreeMap<String, Facts>, node: &Node) -> bool {
    facts
        .get(&node.name)
        .and_then(|f| f.get(crate::probe::FACT_DATASTORE))
        == Some("present")
}

/// Whether the API already runs: a control plane has kube-apiserver's unit
/// (a first apply starts every apiserver at once; a running cluster
/// restarts them one at a time).
pub fn running(t: &Topology, facts: &BTreeMap<String, Facts>) -> bool {
    t.control_planes().any(|n| {
        facts
            .get(&n.name)
            .and_then(|f| f.get(crate::probe::FACT_APISERVER))
            == Some("present")
    })
}

/// The datastore phase's steps. A first apply starts every control plane's
/// member at once with the same `--initial-cluster` (etcd's static
/// bootstrap). Once members hold data, a control plane added to the
/// inventory joins as the peers' rules ask: one at a time, added as a
/// learner by a running member, started with `--initial-cluster-state
/// existing`, healthy, then promoted to a voter; the running members'
/// units do not change.
///
/// Once members hold data, each running member is a step of its own, so
/// that a restart (a renewed certificate, a changed unit) takes one member
/// down at a time, and the next waits for its health: the cluster keeps its
/// quorum.
pub fn datastore_steps(
    t: &Topology,
    facts: &BTreeMap<String, Facts>,
    selected: &dyn Fn(&str) -> bool,
    pki: &Pki,
    files: &NodeFiles,
) -> Result<Vec<Step>, EngineError> {
    let ds = &t.cluster.datastore;
    let peer = |n: &Node| format!("https://{}", host_port(n.ip, ds.peer_port));
    let members: Vec<&Node> = t.control_planes().filter(|n| has_data(facts, n)).collect();
    // Hosts whose facts are unknown (not observed in this run) are not judged.
    let joiners: Vec<&Node> = if members.is_empty() {
        Vec::new()
    } else {
        t.control_planes()
            .filter(|n| facts.contains_key(&n.name) && !has_data(facts, n))
            .collect()
    };
    let mut first = Vec::new();
    for n in t.control_planes().filter(|n| selected(&n.name)) {
        if joiners.iter().any(|j| j.name == n.name) {
            continue;
        }
        let mut s = DesiredState::new(&n.name);
        if members.is_empty() {
            let all = t
                .control_planes()
                .map(|cp| format!("{}={}", cp.name, peer(cp)))
                .collect::<Vec<_>>()
                .join(",");
            s.push(bootstrap_env(
                &n.name,
                &all,
                "new",
                "founded the cluster with every control plane of the first apply",
            )?);
        }
        member_resources(t, n, &mut s, pki, files)?;
        first.push(s);
    }
    let mut steps = if members.is_empty() {
        vec![Step::new("datastore", first)]
    } else {
        first
            .into_iter()
            .map(|s| Step::new(format!("datastore on {}", s.host), vec![s]))
            .collect()
    };
    let Some(leader) = members.first() else {
        return Ok(steps);
    };
    let tool = binaries::path("k8sup-datastore");
    let tls = format!(
        "--endpoints=https://127.0.0.1:{} --cacert={} --cert={} --key={}",
        ds.client_port,
        layout::DATASTORE_CA_CRT,
        layout::APISERVER_DATASTORE_CLIENT_CRT,
        layout::APISERVER_DATASTORE_CLIENT_KEY
    );
    let mut known: Vec<&Node> = members.clone();
    for j in &joiners {
        let url = peer(j);
        known.push(j);
        let initial = known
            .iter()
            .map(|cp| format!("{}={}", cp.name, peer(cp)))
            .collect::<Vec<_>>()
            .join(",");
        let listed = format!("{tool} member list {tls} | grep -q ' {url} '");
        steps.push(Step::new(
            format!("add {} as a learner", j.name),
            vec![DesiredState::new(&leader.name).with(Resource::command(
                format!("datastore-add-{}", j.name),
                format!(
                    "{tool} member add {} --peer-urls={url} --learner {tls}",
                    j.name
                ),
                Guard::Unless(listed),
            ))],
        ));
        if selected(&j.name) {
            let mut s = DesiredState::new(&j.name);
            s.push(bootstrap_env(
                &j.name,
                &initial,
                "existing",
                "joined a running cluster as a learner",
            )?);
            member_resources(t, j, &mut s, pki, files)?;
            steps.push(Step::new(format!("start {}'s member", j.name), vec![s]));
        }
        steps.push(Step::new(
            format!("promote {}", j.name),
            vec![DesiredState::new(&leader.name).with(Resource::command(
                format!("datastore-promote-{}", j.name),
                format!("{tool} member promote --peer-urls={url} {tls}"),
                Guard::Unless(format!(
                    "{tool} member list {tls} | grep ' {url} ' | grep -q ' voter '"
                )),
            ))],
        ));
    }
    Ok(steps)
}

fn bootstrap_env(
    host: &str,
    initial: &str,
    state: &str,
    how: &str,
) -> Result<Resource, EngineError> {
    Ok(Resource::file(
        BOOTSTRAP_ENV,
        render::template(
            host,
            "datastore-bootstrap.env",
            serde_json::json!({"initial_cluster": initial, "initial_state": state, "how": how}),
        )?,
    )
    .mode(0o644))
}

/// The datastore member of control plane `node`.
fn member_resources(
    t: &Topology,
    node: &Node,
    s: &mut DesiredState,
    pki: &Pki,
    files: &NodeFiles,
) -> Result<(), EngineError> {
    let ds = &t.cluster.datastore;
    let unit = render::unit(
        &node.name,
        "systemd/k8sup-datastore.service",
        serde_json::json!({
            "name": node.name,
            "bin": binaries::path("k8sup-datastore"),
            "data_dir": ds.data_dir,
            "ip": url_host(node.ip),
            "client_port": ds.client_port,
            "peer_port": ds.peer_port,
            "metrics_port": DATASTORE_METRICS_PORT,
            "bootstrap_env": BOOTSTRAP_ENV,
            "token": t.cluster.name,
            "pki": DatastorePki {
                ca: layout::DATASTORE_CA_CRT,
                server_crt: layout::DATASTORE_SERVER_CRT,
                server_key: layout::DATASTORE_SERVER_KEY,
                peer_crt: layout::DATASTORE_PEER_CRT,
                peer_key: layout::DATASTORE_PEER_KEY,
            },
        }),
        ArgsComponent::K8supDatastore,
        &node.args(ArgsComponent::K8supDatastore),
    )?;
    s.push(Resource::unit(DATASTORE_UNIT, unit));
    if let Some(d) = certificates::digest(pki, &node.name, DATASTORE_UNIT)? {
        s.push(d);
    }
    s.push(binaries::digest(files, &node.name, DATASTORE_UNIT)?);
    s.push(
        Resource::service(DATASTORE_UNIT)
            .enabled(true)
            .running(true),
    );
    s.push(
        Resource::probe(
            "datastore-health",
            ProbeCheck::Http {
                url: format!("http://127.0.0.1:{DATASTORE_METRICS_PORT}/health"),
                status: 200,
                insecure: false,
            },
            Duration::from_secs(120),
            Duration::from_millis(250),
        )
        .depends_on(ResourceId::service(DATASTORE_UNIT)),
    );
    Ok(())
}

/// kube-apiserver, kube-controller-manager and kube-scheduler of `node`.
pub fn components_state(
    t: &Topology,
    node: &Node,
    pki: &Pki,
    files: &NodeFiles,
) -> Result<DesiredState, EngineError> {
    let ds = &t.cluster.datastore;
    let (servers, datastore_tls) = match &ds.external {
        Some(ext) => (
            ext.servers.clone(),
            [
                crate::external_datastore::CA,
                crate::external_datastore::CLIENT_CRT,
                crate::external_datastore::CLIENT_KEY,
            ],
        ),
        None => {
            let mut servers = vec![format!("https://127.0.0.1:{}", ds.client_port)];
            servers.extend(
                t.control_planes()
                    .filter(|cp| cp.name != node.name)
                    .map(|cp| format!("https://{}", host_port(cp.ip, ds.client_port))),
            );
            (
                servers,
                [
                    layout::DATASTORE_CA_CRT,
                    layout::APISERVER_DATASTORE_CLIENT_CRT,
                    layout::APISERVER_DATASTORE_CLIENT_KEY,
                ],
            )
        }
    };
    let version = t.version();
    let apiserver = render::unit(
        &node.name,
        "systemd/kube-apiserver.service",
        serde_json::json!({
            "version": version,
            "bin": binaries::path("kube-apiserver"),
            "ip": node.ip.to_string(),
            "port": t.cluster.api_server.port,
            "datastore_servers": servers.join(","),
            "own_datastore": ds.external.is_none(),
            "datastore_tls": {
                "ca": datastore_tls[0],
                "cert": datastore_tls[1],
                "key": datastore_tls[2],
            },
            "cluster_domain": t.cluster.cluster_domain,
            "service_cidr": t.cluster.service_cidr.to_string(),
            "pki": APISERVER_PKI,
        }),
        ArgsComponent::KubeApiserver,
        &node.args(ArgsComponent::KubeApiserver),
    )?;
    let controller_manager = render::unit(
        &node.name,
        "systemd/kube-controller-manager.service",
        serde_json::json!({
            "version": version,
            "bin": binaries::path("kube-controller-manager"),
            "kubeconfig": layout::CONTROLLER_MANAGER_CONF,
            "cluster_name": t.cluster.name,
            "service_cidr": t.cluster.service_cidr.to_string(),
            "pki": APISERVER_PKI,
        }),
        ArgsComponent::KubeControllerManager,
        &node.args(ArgsComponent::KubeControllerManager),
    )?;
    let scheduler = render::unit(
        &node.name,
        "systemd/kube-scheduler.service",
        serde_json::json!({
            "version": version,
            "bin": binaries::path("kube-scheduler"),
            "kubeconfig": layout::SCHEDULER_CONF,
        }),
        ArgsComponent::KubeScheduler,
        &node.args(ArgsComponent::KubeScheduler),
    )?;
    let mut s = DesiredState::new(&node.name);
    for (unit, content) in [
        (APISERVER_UNIT, apiserver),
        (CONTROLLER_MANAGER_UNIT, controller_manager),
        (SCHEDULER_UNIT, scheduler),
    ] {
        // A changed unit restarts its service (the engine notifies it), and
        // so does a changed credential or program (their digest files
        // notify it).
        s.push(Resource::unit(unit, content));
        if let Some(d) = certificates::digest(pki, &node.name, unit)? {
            s.push(d);
        }
        s.push(binaries::digest(files, &node.name, unit)?);
        s.push(Resource::service(unit).enabled(true).running(true));
    }
    s.push(
        Resource::probe(
            "apiserver-ready",
            ProbeCheck::Http {
                url: format!("https://127.0.0.1:{}/readyz", t.cluster.api_server.port),
                status: 200,
                // Loopback to its own apiserver, whose certificate k8sup
                // just issued; the CA is checked by every real client.
                insecure: true,
            },
            Duration::from_secs(180),
            Duration::from_millis(500),
        )
        .depends_on(ResourceId::service(APISERVER_UNIT)),
    );
    Ok(s)
}

/// `ip:port`, with brackets for IPv6.
pub fn host_port(ip: std::net::IpAddr, port: u16) -> String {
    format!("{}:{port}", url_host(ip))
}

fn url_host(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        v4 => v4.to_string(),
    }
}
