//! What the cluster needs from its Kubernetes API, as data and a trait.
//!
//! Why a trait here: the add-ons phase (`addons.rs`) decides *what* the
//! cluster's API must hold (objects from `templates/addons/`, the nodes that
//! must be Ready and their role labels), but this crate never opens a
//! connection. The caller supplies a [`ClusterApi`] (`k8sup-kube`: a `kube`
//! client through a port forwarded over a control plane's SSH connection),
//! which plans and applies that request and hands back the engine's plan and
//! report types, so the API's changes show in the plan beside the hosts'.

use std::time::Duration;

use futures::future::BoxFuture;
use k8sup_engine::{EngineError, HostPlan, HostReport, Progress};

/// The name the plan and the report show for the API, in place of a host's.
pub const API_TARGET: &str = "kubernetes-api";

/// A control plane the API can be reached through. Its `Debug` leaves the
/// admin kubeconfig out: it holds a private key.
#[derive(Clone, PartialEq, Eq)]
pub struct Through {
    /// The inventory host (its SSH connection carries the API's traffic).
    pub host: String,
    /// The port kube-apiserver listens on there, on loopback.
    pub port: u16,
    /// The admin kubeconfig that host holds (from its facts), if any yet.
    pub admin_kubeconfig: Option<String>,
}

impl std::fmt::Debug for Through {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Through")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "admin_kubeconfig",
                &self.admin_kubeconfig.as_ref().map(|_| "(held, not shown)"),
            )
            .finish()
    }
}

/// A node the cluster must have, Ready, with its role label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedNode {
    pub name: String,
    /// `control-plane` or `worker`: the label `node-role.kubernetes.io/ROLE`.
    pub role: &'static str,
}

/// What the API must hold when the add-ons phase is done.
#[derive(Debug, Clone)]
pub struct AddonsRequest {
    /// Control planes to go through, in order of preference (the first that
    /// answers is used).
    pub through: Vec<Through>,
    /// The objects, in the order they are applied (server-side apply, field
    /// manager `k8sup`), each from a template: (template name, object).
    pub objects: Vec<(String, serde_json::Value)>,
    /// The nodes to wait for and label.
    pub nodes: Vec<WantedNode>,
    /// Nodes whose kubelet an earlier phase of this run restarts (or
    /// restarted): a Node stays Ready in the API until the new kubelet
    /// reports, so the wait wants a report newer than the one seen before.
    pub restarted: Vec<String>,
    /// The CoreDNS Deployment: the cluster takes workloads once one of its
    /// replicas is available (names resolve) and the `default`
    /// ServiceAccount exists (Pods can be created).
    pub coredns: ObjectRef,
    /// How long apply waits for the API to answer and the nodes to be Ready.
    pub wait: Duration,
    /// No earlier phase changes anything (see `k8sup_engine::ServicePhase`).
    pub settled: bool,
}

/// A namespaced object, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub namespace: String,
    pub name: String,
}

/// Plans and applies an [`AddonsRequest`] against the cluster's API.
pub trait ClusterApi: Send + Sync {
    /// What applying `want` would change, as the plan of one target named
    /// [`API_TARGET`]. Changes nothing.
    fn plan<'a>(&'a self, want: &'a AddonsRequest) -> BoxFuture<'a, Result<HostPlan, EngineError>>;

    /// Carry out exactly `plan`'s actions (made by [`ClusterApi::plan`] for
    /// `want` moments ago).
    fn apply<'a>(
        &'a self,
        want: &'a AddonsRequest,
        plan: &'a HostPlan,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, HostReport>;
}
