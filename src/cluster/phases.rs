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
//! 7. `add-ons`: RBAC and CoreDNS, then every node Ready;
//! 8. `workload`: the inventory's own files, services and commands.
//!
//! Each phase computes its hosts' desired state from the facts (gathered in
//! the same exec as the observation, `probe.rs`) and never opens a
//! connection; the engine observes, plans, applies, and plans a phase again
//! once an earlier one has changed the hosts.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use k8sup_engine::{DesiredState, EngineError, Facts, PhaseContext, Phases, Step, phase};
use k8sup_inventory::{Host, Inventory};

use crate::certificates::{self, Issuer};
use crate::inputs::NodeFiles;
use crate::topology::Topology;
use crate::{
    addons, binaries, control_plane, external_datastore, host_prep, node, probe, workload,
};

pub const PREPARE: &str = "prepare hosts";
pub const CERTIFICATES: &str = "certificates";
pub const BINARIES: &str = "binaries";
pub const DATASTORE: &str = "datastore";
pub const CONTROL_PLANE: &str = "control plane";
pub const NODES: &str = "nodes";
pub const ADDONS: &str = "add-ons";
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

/// The phases that build and keep the cluster of `inventory`, applied to
/// `hosts` (all of the inventory's, or those chosen with `--host`).
pub fn cluster_phases(inventory: &Inventory, hosts: &[&Host], files: NodeFiles) -> Result<Phases> {
    let shared = Arc::new(Shared {
        inventory: inventory.clone(),
        selected: hosts.iter().map(|h| h.name.clone()).collect(),
        files,
        issuer: Issuer::new(),
    });
    // Credential paths do not depend on addresses: the probe is fixed here.
    let t0 = Topology::new(inventory, &BTreeMap::new())?;
    let probe = probe::facts_probe(
        &certificates::paths(&certificates::spec(&t0))?,
        &inventory.cluster.datastore.data_dir.display().to_string(),
    )?;

    let sh = shared.clone();
    let prepare = phase(PREPARE, move |cx| {
        sh.per_node(PREPARE, cx, |t, n, f| {
            host_prep::host_state(t, &n.name, f).map(Some)
        })
    });
    let sh = shared.clone();
    let certs = phase(CERTIFICATES, move |cx| {
        let t = sh.topology(cx.facts)?;
        let pki = sh.issuer.issue(&certificates::spec(&t), cx.facts)?;
        sh.per_node(CERTIFICATES, cx, |_, n, _| {
            Ok(Some(certificates::host_state(&pki, &n.name)))
        })
    });
    let sh = shared.clone();
    let bins = phase(BINARIES, move |cx| {
        sh.per_node(BINARIES, cx, |t, n, _| {
            binaries::host_state(n, t.cluster.datastore.external.is_none(), &sh.files).map(Some)
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
            None => control_plane::datastore_steps(&t, cx.facts, &|h| sh.selected(h)),
        }
    });
    let sh = shared.clone();
    let cp = phase(CONTROL_PLANE, move |cx| {
        sh.per_node(CONTROL_PLANE, cx, |t, n, _| {
            n.control_plane
                .then(|| control_plane::components_state(t, n))
                .transpose()
        })
    });
    let sh = shared.clone();
    let nodes = phase(NODES, move |cx| {
        sh.per_node(NODES, cx, |t, n, f| {
            node::host_state(t, n, f, &sh.files).map(Some)
        })
    });
    let sh = shared.clone();
    let add_ons = phase(ADDONS, move |cx| {
        let t = sh.topology(cx.facts)?;
        let first = t.first_control_plane().name.clone();
        let states = if sh.selected(&first) {
            vec![addons::host_state(&t, &sh.files)?]
        } else {
            Vec::new()
        };
        Ok(vec![Step::new(ADDONS, states)])
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
        .then(work))
}
