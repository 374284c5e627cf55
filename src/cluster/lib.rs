//! k8sup-cluster: what every host of the cluster must look like.
//!
//! The seam between what the user wrote (`k8sup-inventory`: validated, with
//! targets) and how hosts are changed (`k8sup-engine`: resources observed,
//! planned and applied). For a Kubernetes cluster this crate gives the
//! engine an ordered list of phases (`phases.rs`, read it first): host
//! preparation, certificates, binaries, the datastore, the control plane,
//! the nodes, the add-ons (through the Kubernetes API, by the caller's
//! [`ClusterApi`]), the cluster's own record (`state.rs`), then the
//! user's own workload. For an inventory
//! with `components: none`, only the workload, as a plain [`Rollout`].
//!
//! Rules (ARCHITECTURE.md): this crate never opens a connection (it has no
//! transport among its dependencies) and never prints; every file it puts on
//! a host for the cluster itself is rendered from a template under
//! `templates/` (the user's workload files are the user's data); it fetches
//! nothing: the verified local files come in as [`NodeFiles`].

// Phases return the engine's error type, as large as the engine's own
// functions return (see k8sup-engine's lib.rs); boxing it here alone would
// only add a conversion at every phase boundary.
#![allow(clippy::result_large_err)]

pub mod addons;
pub mod api;
pub mod apiserver_proxy;
mod binaries;
pub mod certificates;
pub mod control_plane;
mod digest;
pub mod external_datastore;
mod host_prep;
mod inputs;
pub mod node;
mod phases;
mod probe;
mod render;
pub mod state;
pub mod topology;
mod workload;

use anyhow::Result;
use k8sup_engine::Rollout;
use k8sup_inventory::{Host, Inventory};

pub use api::{AddonsRequest, ClusterApi};
pub use inputs::NodeFiles;
pub use phases::{
    ADDONS, BINARIES, CERTIFICATES, CONTROL_PLANE, DATASTORE, NODES, PREPARE, RunOptions, STATE,
    cluster_phases, cluster_phases_with,
};
pub use topology::Topology;
pub use workload::host_state;

/// The name of the one step that carries the user's own workload.
pub const WORKLOAD_STEP: &str = "workload";

/// The user's workload alone (`components: none`): one step, in which every
/// host converges in parallel.
pub fn rollout(inventory: &Inventory, hosts: &[&Host]) -> Result<Rollout> {
    let states = hosts
        .iter()
        .map(|h| host_state(inventory, h))
        .collect::<Result<Vec<_>>>()?;
    Ok(Rollout::single(WORKLOAD_STEP, states))
}
