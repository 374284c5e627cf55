//! What k8sup remembers about a cluster, kept in the cluster itself (k8sup
//! keeps nothing on the workstation that the cluster cannot give back):
//! the Kubernetes version last applied, the k8sup that applied it, the
//! control planes and workers by name and address, and the settings that
//! cannot change safely once the cluster runs (pod and service CIDRs,
//! cluster domain, datastore kind).
//!
//! Where: a JSON record (`templates/cluster-state.json`) written on every
//! control plane ([`STATE_PATH`], 0600 root), read back by the facts probe
//! (`probe.rs`, as [`FACT_STATE`]) for when the datastore is down, and put
//! into the datastore under [`STATE_KEY`], a reserved prefix outside
//! kube-apiserver's `/registry/`, by a guarded command on the first control
//! plane (`k8sup-datastore put`, run unless `k8sup-datastore get` gives the
//! record this run wants, by SHA-256). Written by the last cluster phase, so it says what was
//! applied.
//!
//! Read: the first phase refuses an inventory whose pod CIDR, service CIDR
//! or cluster domain differ from what a control plane recorded
//! ([`check`]); `k8sup status` shows the recorded versions.

use std::collections::BTreeMap;

use crate::digest::sha256_hex;
use base64::Engine as _;
use k8sup_engine::{DesiredState, EngineError, Facts, Guard, Resource, ResourceId};
use k8sup_pki::layout;
use serde::{Deserialize, Serialize};

use crate::binaries;
use crate::render;
use crate::topology::{Node, Topology};

/// The copy on each control plane.
pub const STATE_PATH: &str = "/etc/k8sup/cluster-state.json";
/// The record in the datastore: k8sup's reserved prefix is `/k8sup/`.
pub const STATE_KEY: &str = "/k8sup/cluster-state";
/// The facts key under which the probe returns the copy (base64).
pub const FACT_STATE: &str = "k8sup.state";

/// One host, as the record names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub address: String,
}

/// The record (its JSON field names are its format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub cluster: String,
    pub kubernetes_version: String,
    pub k8sup_version: String,
    pub datastore: String,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: String,
    #[serde(rename = "serviceCIDR")]
    pub service_cidr: String,
    pub cluster_domain: String,
    pub control_planes: Vec<Member>,
    pub workers: Vec<Member>,
}

/// What this run records for `t`.
pub fn record(t: &Topology) -> Record {
    let member = |n: &Node| Member {
        name: n.name.clone(),
        address: n.ip.to_string(),
    };
    Record {
        cluster: t.cluster.name.clone(),
        kubernetes_version: t.version(),
        k8sup_version: env!("CARGO_PKG_VERSION").to_string(),
        datastore: if t.cluster.datastore.external.is_some() {
            "external"
        } else {
            "k8sup"
        }
        .to_string(),
        pod_cidr: t.cluster.pod_cidr.to_string(),
        service_cidr: t.cluster.service_cidr.to_string(),
        cluster_domain: t.cluster.cluster_domain.clone(),
        control_planes: t.control_planes().map(member).collect(),
        workers: t
            .nodes
            .iter()
            .filter(|n| !n.control_plane)
            .map(member)
            .collect(),
    }
}

/// The record's file content, from its template.
pub fn render(host: &str, r: &Record) -> Result<k8sup_engine::Content, EngineError> {
    render::template(
        host,
        "cluster-state.json",
        serde_json::json!({"r": r, "key": STATE_KEY}),
    )
}

/// The record a host's facts returned, if it holds one.
pub fn recorded(host: &str, facts: &Facts) -> Result<Option<Record>, EngineError> {
    let Some(b64) = facts.get(FACT_STATE) else {
        return Ok(None);
    };
    let bad = |why: String| EngineError::Invalid {
        host: host.to_string(),
        reason: format!(
            "{STATE_PATH} is not a record k8sup can read ({why}); \
             move it away and apply again to write it anew"
        ),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| bad(e.to_string()))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

/// Refuses an inventory whose settings that cannot change on a running
/// cluster differ from what a control plane recorded when it was built.
pub fn check(t: &Topology, facts: &BTreeMap<String, Facts>) -> Result<(), EngineError> {
    let want = record(t);
    for cp in t.control_planes() {
        let Some(f) = facts.get(&cp.name) else {
            continue;
        };
        let Some(was) = recorded(&cp.name, f)? else {
            continue;
        };
        for (key, had, now) in [
            ("podCIDR", &was.pod_cidr, &want.pod_cidr),
            ("serviceCIDR", &was.service_cidr, &want.service_cidr),
            ("clusterDomain", &was.cluster_domain, &want.cluster_domain),
        ] {
            if had != now {
                return Err(EngineError::Invalid {
                    host: cp.name.clone(),
                    reason: format!(
                        "cluster.{key} is {now} in the inventory, but this cluster was built \
                         with {had} ({STATE_PATH} on {host}); it cannot change on a running \
                         cluster (every node, Service and certificate depends on it): set \
                         cluster.{key}: {had} back in the inventory",
                        host = cp.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The record on control plane `node`; on the first control plane also the
/// command that puts it into the datastore unless the datastore already
/// holds this very record (its SHA-256).
pub fn host_state(t: &Topology, node: &Node, first: bool) -> Result<DesiredState, EngineError> {
    let mut s = DesiredState::new(&node.name);
    let content = render(&node.name, &record(t))?;
    let sha = match &content {
        k8sup_engine::Content::Inline(bytes) => sha256_hex(bytes),
        _ => unreachable!("a rendered template is inline"),
    };
    s.push(
        Resource::file(STATE_PATH, content)
            .mode(0o600)
            .owner("root")
            .group("root"),
    );
    if first {
        let ds = &t.cluster.datastore;
        let tool = binaries::path("k8sup-datastore");
        // k8sup's members, through the local one; or the user's etcd, each
        // endpoint in turn until one answers (`k8sup-datastore` is an etcd
        // v3 client as well).
        let (endpoints, ca, cert, key) = match &ds.external {
            Some(ext) => (
                ext.servers.clone(),
                crate::external_datastore::CA,
                crate::external_datastore::CLIENT_CRT,
                crate::external_datastore::CLIENT_KEY,
            ),
            None => (
                vec![format!("https://127.0.0.1:{}", ds.client_port)],
                layout::DATASTORE_CA_CRT,
                layout::APISERVER_DATASTORE_CLIENT_CRT,
                layout::APISERVER_DATASTORE_CLIENT_KEY,
            ),
        };
        let tls = format!("--endpoints=$e --cacert={ca} --cert={cert} --key={key}");
        let each = |cmd: String| {
            format!(
                "(for e in {}; do {cmd} && exit 0; done; exit 1)",
                endpoints.join(" ")
            )
        };
        s.push(
            Resource::command(
                "cluster-state-record",
                each(format!(
                    "{tool} put {STATE_KEY} --from-file={STATE_PATH} {tls} >/dev/null"
                )),
                // Compared with the record this run wants (not the file,
                // which this same step may be about to rewrite).
                Guard::Unless(each(format!(
                    "{tool} get {STATE_KEY} {tls} 2>/dev/null | sha256sum | grep -q '^{sha} '"
                ))),
            )
            .depends_on(ResourceId::file(STATE_PATH)),
        );
    }
    Ok(s)
}
