//! A control plane's own services: its datastore member, kube-apiserver,
//! kube-controller-manager and kube-scheduler, from `templates/systemd/`,
//! each gated on health before the next phase (a probe on the datastore's
//! `/health` and the apiserver's `/readyz`).
//!
//! Every control plane in the inventory at the first apply starts its
//! datastore member with the same `--initial-cluster` (etcd's static
//! bootstrap). kube-apiserver talks to its own member first, over loopback.

use std::time::Duration;

use k8sup_engine::{DesiredState, EngineError, ProbeCheck, Resource, ResourceId};
use k8sup_pki::layout;
use serde::Serialize;

use crate::binaries;
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
    datastore_ca: &'static str,
    datastore_client_crt: &'static str,
    datastore_client_key: &'static str,
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
    datastore_ca: layout::DATASTORE_CA_CRT,
    datastore_client_crt: layout::APISERVER_DATASTORE_CLIENT_CRT,
    datastore_client_key: layout::APISERVER_DATASTORE_CLIENT_KEY,
    kubelet_client_crt: layout::APISERVER_KUBELET_CLIENT_CRT,
    kubelet_client_key: layout::APISERVER_KUBELET_CLIENT_KEY,
    front_proxy_ca: layout::FRONT_PROXY_CA_CRT,
    front_proxy_client_crt: layout::FRONT_PROXY_CLIENT_CRT,
    front_proxy_client_key: layout::FRONT_PROXY_CLIENT_KEY,
    sa_key: layout::SA_KEY,
    sa_pub: layout::SA_PUB,
};

/// Refuses to start a control plane's datastore member next to members
/// that already hold the cluster's data: a new member started with
/// `--initial-cluster-state=new` would found a second cluster. Joining a
/// running cluster (as a learner, then promoted) is not built yet; until it
/// is, the way to more control planes is to list them all before the first
/// apply.
pub fn refuse_join(
    t: &Topology,
    facts: &std::collections::BTreeMap<String, k8sup_engine::Facts>,
) -> Result<(), EngineError> {
    let has_data = |n: &&Node| {
        facts
            .get(&n.name)
            .and_then(|f| f.get(crate::probe::FACT_DATASTORE))
            == Some("present")
    };
    let members: Vec<&Node> = t.control_planes().filter(has_data).collect();
    if members.is_empty() {
        return Ok(());
    }
    // Hosts whose facts are unknown (not observed in this run) are not judged.
    let new: Vec<&str> = t
        .control_planes()
        .filter(|n| facts.contains_key(&n.name) && !has_data(n))
        .map(|n| n.name.as_str())
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    Err(EngineError::Invalid {
        host: new.join(", "),
        reason: format!(
            "a new control plane cannot join the running datastore yet (its members: {}); \
             k8sup would found a second cluster. Remove it from the inventory for now, or \
             list every control plane before the first apply",
            members
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

/// The datastore member of control plane `node`.
pub fn datastore_state(t: &Topology, node: &Node) -> Result<DesiredState, EngineError> {
    let ds = &t.cluster.datastore;
    let initial_cluster = t
        .control_planes()
        .map(|cp| format!("{}=https://{}", cp.name, host_port(cp.ip, ds.peer_port)))
        .collect::<Vec<_>>()
        .join(",");
    let unit = render::template(
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
            "initial_cluster": initial_cluster,
            "initial_state": "new",
            "token": t.cluster.name,
            "pki": DatastorePki {
                ca: layout::DATASTORE_CA_CRT,
                server_crt: layout::DATASTORE_SERVER_CRT,
                server_key: layout::DATASTORE_SERVER_KEY,
                peer_crt: layout::DATASTORE_PEER_CRT,
                peer_key: layout::DATASTORE_PEER_KEY,
            },
        }),
    )?;
    let mut s = DesiredState::new(&node.name);
    s.push(Resource::unit(DATASTORE_UNIT, unit));
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
    Ok(s)
}

/// kube-apiserver, kube-controller-manager and kube-scheduler of `node`.
pub fn components_state(t: &Topology, node: &Node) -> Result<DesiredState, EngineError> {
    let ds = &t.cluster.datastore;
    let mut servers = vec![format!("https://127.0.0.1:{}", ds.client_port)];
    servers.extend(
        t.control_planes()
            .filter(|cp| cp.name != node.name)
            .map(|cp| format!("https://{}", host_port(cp.ip, ds.client_port))),
    );
    let version = t.version();
    // Per-node extra flags are not read from the inventory yet.
    let no_args = render::extra_args(&[]);
    let apiserver = render::template(
        &node.name,
        "systemd/kube-apiserver.service",
        serde_json::json!({
            "version": version,
            "bin": binaries::path("kube-apiserver"),
            "ip": node.ip.to_string(),
            "port": t.cluster.api_server.port,
            "datastore_servers": servers.join(","),
            "cluster_domain": t.cluster.cluster_domain,
            "service_cidr": t.cluster.service_cidr.to_string(),
            "pki": APISERVER_PKI,
            "extra_args": no_args,
        }),
    )?;
    let controller_manager = render::template(
        &node.name,
        "systemd/kube-controller-manager.service",
        serde_json::json!({
            "version": version,
            "bin": binaries::path("kube-controller-manager"),
            "kubeconfig": layout::CONTROLLER_MANAGER_CONF,
            "cluster_name": t.cluster.name,
            "service_cidr": t.cluster.service_cidr.to_string(),
            "pki": APISERVER_PKI,
            "extra_args": no_args,
        }),
    )?;
    let scheduler = render::template(
        &node.name,
        "systemd/kube-scheduler.service",
        serde_json::json!({
            "version": version,
            "bin": binaries::path("kube-scheduler"),
            "kubeconfig": layout::SCHEDULER_CONF,
            "extra_args": no_args,
        }),
    )?;
    let mut s = DesiredState::new(&node.name);
    for (unit, content) in [
        (APISERVER_UNIT, apiserver),
        (CONTROLLER_MANAGER_UNIT, controller_manager),
        (SCHEDULER_UNIT, scheduler),
    ] {
        // A changed unit restarts its service (the engine notifies it).
        s.push(Resource::unit(unit, content));
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
