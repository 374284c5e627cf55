//! The cluster's apply, as one ordered list of phases (k0sctl's
//! `action/apply.go` is the model). Read top to bottom, this is what
//! `k8sup apply` does to a cluster:
//!
//! 1. `prepare hosts`: directories, kernel settings, the cgroup check;
//! 2. `certificates`: every credential, issued once, kept on the hosts;
//! 3. `binaries`: the programs and image archives, pushed from the
//!    workstation's verified cache;
//! 4. `datastore`: each control plane's member, until healthy; a control
//!    plane added later joins as a learner, then is promoted, one at a time;
//! 5. `control plane`: kube-apiserver (until ready), the controller manager
//!    and the scheduler;
//! 6. `nodes`: containerd and the pod images, the pod network, the
//!    API-server proxy where there is no apiserver, the kubelet, kube-proxy;
//! 7. `add-ons`, through the Kubernetes API (a service phase): RBAC and
//!    CoreDNS, then every node Ready and the cluster taking workloads, then
//!    each node's role label;
//! 8. `cluster state`: what k8sup remembers (`state.rs`), on every control
//!    plane and in the datastore;
//! 9. `workload`: the inventory's own files, services and commands.
//!
//! Before any of it, the first phase refuses an inventory whose pod CIDR,
//! service CIDR or cluster domain differ from the recorded ones.
//!
//! Each phase computes its hosts' desired state from the facts (gathered in
//! the same exec as the observation, `probe.rs`) and never opens a
//! connection; the engine observes, plans, applies, and plans a phase again
//! once an earlier one has changed the hosts. The add-ons phase says what
//! the API must hold, and the caller's [`ClusterApi`] talks to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use futures::future::BoxFuture;
use k8sup_engine::{
    DesiredState, EngineError, Facts, HostPlan, HostReport, PhaseContext, Phases, Progress,
    ServicePhase, Step, phase, service_phase,
};
use k8sup_inventory::{Host, Inventory};
use k8sup_pki::{Pki, Policy};

use crate::api::ClusterApi;
use crate::certificates::{self, Issuer};
use crate::inputs::NodeFiles;
use crate::topology::Topology;
use crate::{
    addons, binaries, control_plane, external_datastore, host_prep, node, probe, state, workload,
};

pub const PREPARE: &str = "prepare hosts";
pub const CERTIFICATES: &str = "certificates";
pub const BINARIES: &str = "binaries";
pub const DATASTORE: &str = "datastore";
pub const CONTROL_PLANE: &str = "control plane";
pub const NODES: &str = "nodes";
pub const ADDONS: &str = "add-ons";
pub const STATE: &str = "cluster state";
pub const WORKLOAD: &str = crate::WORKLOAD_STEP;

/// What every phase reads.
struct Shared {
    inventory: Inventory,
    selected: Vec<String>,
    files: NodeFiles,
    issuer: Issuer,
}

impl Shared {
    fn topology(&self, facts: &BTreeMap<String, Facts>) -> Result<Topology, EngineError> {
        Topology::new(&self.inventory, facts).map_err(|e| EngineError::Invalid {
            host: "(cluster)".into(),
            reason: format!("{e:#}"),
        })
    }

    /// The credentials this run wants (the same ones in every phase).
    fn pki(&self, t: &Topology, facts: &BTreeMap<String, Facts>) -> Result<Arc<Pki>, EngineError> {
        self.issuer.issue(&certificates::spec(t), facts)
    }

    fn selected(&self, name: &str) -> bool {
        self.selected.iter().any(|s| s == name)
    }

    /// One step named `title` with the state of every selected node that
    /// `state` gives one.
    fn per_node(
        &self,
        title: &str,
        cx: &PhaseContext<'_>,
        state: impl Fn(
            &Topology,
            &crate::topology::Node,
            &Facts,
        ) -> Result<Option<DesiredState>, EngineError>,
    ) -> Result<Vec<Step>, EngineError> {
        let t = self.topology(cx.facts)?;
        let mut states = Vec::new();
        for n in t.nodes.iter().filter(|n| self.selected(&n.name)) {
            if let Some(s) = state(&t, n, cx.facts_of(&n.name))? {
                states.push(s);
            }
        }
        Ok(vec![Step::new(title, states)])
    }
}

/// The add-ons phase: what the API must hold (`addons.rs`), planned and
/// applied by the caller's [`ClusterApi`].
struct AddOns {
    sh: Arc<Shared>,
    api: Arc<dyn ClusterApi>,
}

impl AddOns {
    fn request(
        &self,
        cx: &PhaseContext<'_>,
        settled: bool,
    ) -> Result<crate::api::AddonsRequest, EngineError> {
        let t = self.sh.topology(cx.facts)?;
        // Nodes whose kubelet the nodes phase restarts (or starts).
        let nodes = cx.earlier(NODES);
        let kubelet = k8sup_engine::ResourceId::service(node::KUBELET_UNIT);
        addons::request(
            &t,
            &self.sh.files,
            cx.facts,
            &|h| self.sh.selected(h),
            &|h| nodes.is_some_and(|o| o.changed_resource(h, kubelet.as_str())),
            settled,
        )
    }
}

impl ServicePhase for AddOns {
    fn plan<'a>(
        &'a self,
        cx: PhaseContext<'a>,
        settled: bool,
    ) -> BoxFuture<'a, Result<HostPlan, EngineError>> {
        Box::pin(async move {
            let want = self.request(&cx, settled)?;
            self.api.plan(&want).await
        })
    }

    fn apply<'a>(
        &'a self,
        cx: PhaseContext<'a>,
        plan: &'a HostPlan,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, HostReport> {
        Box::pin(async move {
            match self.request(&cx, true) {
                Ok(want) => self.api.apply(&want, plan, progress).await,
                Err(e) => HostReport {
                    host: plan.host.clone(),
                    failed: 1,
                    not_run: plan.actions.len().saturating_sub(1),
                    error: Some(e.to_string()),
                    ..Default::default()
                },
            }
        })
    }
}

/// How a run treats the cluster beyond making it match the inventory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Renew every leaf certificate and kubeconfig (`k8sup certs renew`);
    /// CAs and the service-account key are kept. The components that read
    /// a renewed credential restart.
    pub renew_certificates: bool,
}

/// The phases that build and keep the cluster of `inventory`, applied to
/// `hosts` (all of the inventory's, or those chosen with `--host`); `api`
/// reaches the cluster's Kubernetes API for the add-ons phase.
pub fn cluster_phases(
    inventory: &Inventory,
    hosts: &[&Host],
    files: NodeFiles,
    api: Arc<dyn ClusterApi>,
) -> Result<Phases> {
    cluster_phases_with(inventory, hosts, files, RunOptions::default(), api)
}

/// [`cluster_phases`], with `options`.
pub fn cluster_phases_with(
    inventory: &Inventory,
    hosts: &[&Host],
    files: NodeFiles,
    options: RunOptions,
    api: Arc<dyn ClusterApi>,
) -> Result<Phases> {
    let policy = if options.renew_certificates {
        Policy::renew_all()
    } else {
        Policy::default()
    };
    let shared = Arc::new(Shared {
        inventory: inventory.clone(),
        selected: hosts.iter().map(|h| h.name.clone()).collect(),
        files,
        issuer: Issuer::with_policy(policy),
    });
    // Credential paths do not depend on addresses: the probe is fixed here.
    let t0 = Topology::new(inventory, &BTreeMap::new())?;
    let probe = probe::facts_probe(
        &certificates::paths(&certificates::spec(&t0))?,
        &inventory.cluster.datastore.data_dir.display().to_string(),
    )?;

    let sh = shared.clone();
    let prepare = phase(PREPARE, move |cx| {
        // Settings a running cluster cannot change: refused before anything.
        state::check(&sh.topology(cx.facts)?, cx.facts)?;
        sh.per_node(PREPARE, cx, |t, n, f| {
            host_prep::host_state(t, &n.name, f).map(Some)
        })
    });
    let sh = shared.clone();
    let certs = phase(CERTIFICATES, move |cx| {
        let t = sh.topology(cx.facts)?;
        let pki = sh.pki(&t, cx.facts)?;
        sh.per_node(CERTIFICATES, cx, |_, n, _| {
            Ok(Some(certificates::host_state(&pki, &n.name)))
        })
    });
    let sh = shared.clone();
    let bins = phase(BINARIES, move |cx| {
        sh.per_node(BINARIES, cx, |_, n, _| {
            binaries::host_state(n, &sh.files).map(Some)
        })
    });
    let sh = shared.clone();
    let datastore = phase(DATASTORE, move |cx| {
        let t = sh.topology(cx.facts)?;
        match &t.cluster.datastore.external {
            // The user's etcd: its credentials on every control plane.
            Some(ext) => Ok(vec![Step::new(
                DATASTORE,
                t.control_planes()
                    .filter(|n| sh.selected(&n.name))
                    .map(|n| external_datastore::host_state(&n.name, ext))
                    .collect(),
            )]),
            None => {
                let pki = sh.pki(&t, cx.facts)?;
                control_plane::datastore_steps(&t, cx.facts, &|h| sh.selected(h), &pki, &sh.files)
            }
        }
    });
    let sh = shared.clone();
    let cp = phase(CONTROL_PLANE, move |cx| {
        let t = sh.topology(cx.facts)?;
        let pki = sh.pki(&t, cx.facts)?;
        let mut states = Vec::new();
        for n in t.control_planes().filter(|n| sh.selected(&n.name)) {
            states.push(control_plane::components_state(&t, n, &pki, &sh.files)?);
        }
        // A running cluster restarts its API servers one at a time (each
        // waits for the one before to be ready), so the API stays up; a
        // first apply starts them all at once.
        if control_plane::running(&t, cx.facts) {
            Ok(states
                .into_iter()
                .map(|s| Step::new(format!("control plane on {}", s.host), vec![s]))
                .collect())
        } else {
            Ok(vec![Step::new(CONTROL_PLANE, states)])
        }
    });
    let sh = shared.clone();
    let nodes = phase(NODES, move |cx| {
        let pki = sh.pki(&sh.topology(cx.facts)?, cx.facts)?;
        sh.per_node(NODES, cx, |t, n, f| {
            node::host_state(t, n, f, &sh.files, &pki).map(Some)
        })
    });
    let sh = shared.clone();
    let add_ons = service_phase(
        ADDONS,
        AddOns {
            sh: shared.clone(),
            api,
        },
    )
    // Through a control plane of this run: none chosen (`--host` workers
    // only), no API.
    .when(move |cx| {
        sh.topology(cx.facts)
            .is_ok_and(|t| t.control_planes().any(|n| sh.selected(&n.name)))
    });
    let sh = shared.clone();
    let record = phase(STATE, move |cx| {
        let t = sh.topology(cx.facts)?;
        let first = t.first_control_plane().name.clone();
        let mut states = Vec::new();
        for n in t.control_planes().filter(|n| sh.selected(&n.name)) {
            states.push(state::host_state(&t, n, n.name == first)?);
        }
        Ok(vec![Step::new(STATE, states)])
    });
    let sh = shared.clone();
    let work = phase(WORKLOAD, move |_cx| {
        let mut states = Vec::new();
        for h in sh.inventory.hosts.iter().filter(|h| sh.selected(&h.name)) {
            states.push(workload::host_state(&sh.inventory, h).map_err(|e| {
                EngineError::Invalid {
                    host: h.name.clone(),
                    reason: format!("{e:#}"),
                }
            })?);
        }
        Ok(vec![Step::new(WORKLOAD, states)])
    });

    Ok(Phases::new(shared.selected.clone())
        .facts_probe(probe)
        .concurrency(inventory.options.concurrency as usize)
        .then(prepare)
        .then(certs)
        .then(bins)
        .then(datastore)
        .then(cp)
        .then(nodes)
        .then(add_ons)
        .then(record)
        .then(work))
}
