//! When the cluster takes workloads: every node of the run registered and
//! Ready, the `default` ServiceAccount present (until the controller manager
//! creates it, no Pod can be created in `default`: kubeadm leaves that race
//! to its users), and a CoreDNS replica available (until then a new pod's
//! first name lookup is refused).
//!
//! What is missing is said in words a user can act on: the node and its
//! kubelet's own reason, the CoreDNS pod's waiting reason.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8sup_cluster::AddonsRequest;
use k8sup_cluster::api::ObjectRef;
use kube::api::{Api, ListParams};

use crate::connect::describe;

/// What the cluster lacks to take workloads (empty: it takes them), and
/// the nodes as the API has them.
#[derive(Debug, Default)]
pub struct Readiness {
    pub missing: Vec<String>,
    /// Registered nodes, by name: their labels.
    pub nodes: BTreeMap<String, BTreeMap<String, String>>,
    /// When each node's kubelet last reported its Ready condition.
    pub reported: Reports,
}

/// Node name → the last heartbeat of its Ready condition.
pub type Reports = BTreeMap<String, Time>;

impl Readiness {
    pub fn ready(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Look once. A node of `want.restarted` counts as Ready only once its
/// kubelet reported after `before` (what was seen before this run changed
/// it): until the new kubelet reports, the API still shows the old one's
/// Ready.
pub async fn check(
    client: &kube::Client,
    want: &AddonsRequest,
    before: &Reports,
) -> Result<Readiness, String> {
    let nodes = Api::<Node>::all(client.clone());
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), "default");
    // One after the other, on the connection the client already holds: a
    // request in parallel would open another (a TLS handshake over SSH,
    // whose small writes can wait on a delayed ACK at the far end).
    let listed = nodes.list(&ListParams::default()).await;
    let account = accounts.get_opt("default").await;
    let coredns = dns(client, &want.coredns).await;
    let listed = listed.map_err(|e| format!("listing nodes: {}", describe(&e)))?;
    let mut out = Readiness::default();
    let mut ready = BTreeMap::new();
    for n in listed.items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let condition = n
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready");
        if let Some(t) = condition
            .as_ref()
            .and_then(|c| c.last_heartbeat_time.clone())
        {
            out.reported.insert(name.clone(), t);
        }
        ready.insert(name.clone(), condition);
        out.nodes
            .insert(name, n.metadata.labels.unwrap_or_default());
    }
    for node in &want.nodes {
        match ready.get(&node.name) {
            None => out
                .missing
                .push(format!("node {} has not registered", node.name)),
            Some(Some(c)) if c.status == "True" => {
                let stale = want.restarted.contains(&node.name)
                    && before.get(&node.name).is_some_and(|then| {
                        c.last_heartbeat_time.as_ref().is_none_or(|now| now <= then)
                    });
                if stale {
                    out.missing.push(format!(
                        "node {} has not reported since this run changed it (its kubelet restarts)",
                        node.name
                    ));
                }
            }
            Some(c) => {
                let why = c
                    .as_ref()
                    .map(|c| {
                        format!(
                            ": {}{}",
                            c.reason.clone().unwrap_or_default(),
                            c.message
                                .as_ref()
                                .map(|m| format!(" ({m})"))
                                .unwrap_or_default()
                        )
                    })
                    .unwrap_or_default();
                out.missing
                    .push(format!("node {} is not Ready{why}", node.name));
            }
        }
    }
    match account {
        Ok(Some(_)) => {}
        Ok(None) => out.missing.push(
            "the default ServiceAccount does not exist yet (kube-controller-manager creates it)"
                .into(),
        ),
        Err(e) => out
            .missing
            .push(format!("the default ServiceAccount: {}", describe(&e))),
    }
    match coredns {
        Ok(Some(d)) => {
            if d.available < 1 {
                let pods = coredns_pods(client, want).await;
                out.missing
                    .push(format!("no CoreDNS replica is available{pods}"));
            }
        }
        Ok(None) => out.missing.push(format!(
            "the CoreDNS Deployment {}/{} does not exist",
            want.coredns.namespace, want.coredns.name
        )),
        Err(e) => out
            .missing
            .push(format!("the CoreDNS Deployment: {}", describe(&e))),
    }
    Ok(out)
}

/// A Deployment's replicas, as `k8sup status` shows CoreDNS's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replicas {
    pub wanted: i32,
    pub available: i32,
}

/// The replicas of the Deployment `coredns` names (`None`: it does not exist).
pub async fn dns(
    client: &kube::Client,
    coredns: &ObjectRef,
) -> Result<Option<Replicas>, kube::Error> {
    let d = Api::<Deployment>::namespaced(client.clone(), &coredns.namespace)
        .get_opt(&coredns.name)
        .await?;
    Ok(d.map(|d| Replicas {
        wanted: d.spec.replicas.unwrap_or(1),
        available: d.status.and_then(|s| s.available_replicas).unwrap_or(0),
    }))
}

/// Why CoreDNS's pods do not run yet, as `: POD PHASE (REASON)`.
async fn coredns_pods(client: &kube::Client, want: &AddonsRequest) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), &want.coredns.namespace);
    let Ok(list) = pods
        .list(&ListParams::default().labels("k8s-app=kube-dns"))
        .await
    else {
        return String::new();
    };
    let said: Vec<String> = list
        .items
        .iter()
        .map(|p| {
            let status = p.status.clone().unwrap_or_default();
            let waiting = status
                .container_statuses
                .unwrap_or_default()
                .into_iter()
                .filter_map(|c| c.state.and_then(|s| s.waiting))
                .map(|w| {
                    format!(
                        "{}{}",
                        w.reason.unwrap_or_default(),
                        w.message.map(|m| format!(": {m}")).unwrap_or_default()
                    )
                })
                .next()
                .or(status.reason)
                .unwrap_or_default();
            format!(
                "{} {}{}",
                p.metadata.name.clone().unwrap_or_default(),
                status.phase.unwrap_or_default(),
                if waiting.is_empty() {
                    String::new()
                } else {
                    format!(" ({waiting})")
                }
            )
        })
        .collect();
    if said.is_empty() {
        ": no pod yet".into()
    } else {
        format!(": {}", said.join(", "))
    }
}
