//! k8sup-cluster: what every host of the cluster must look like.
//!
//! The seam between what the user wrote (`k8sup-inventory`: validated, with
//! targets) and how hosts are changed (`k8sup-engine`: resources observed,
//! planned and applied). This crate turns an inventory into the engine's
//! [`Rollout`]: steps, in cluster order, each with the resources of every
//! host. Today that is one step, the user's own workload (`workload.rs`);
//! the cluster's own phases (PKI, artifacts, the datastore, the Kubernetes
//! components, their lifecycle) join it here, in order.
//!
//! Rules (ARCHITECTURE.md): this crate never opens a connection (it has no
//! transport among its dependencies) and never prints; every file it puts on
//! a host for the cluster itself is rendered from a template under
//! `templates/` (the user's workload files are the user's data).

pub mod apiserver_proxy;
mod workload;

use anyhow::Result;
use k8sup_engine::Rollout;
use k8sup_inventory::{Host, Inventory};

pub use workload::host_state;

/// The name of the one step that carries the user's own workload.
pub const WORKLOAD_STEP: &str = "workload";

/// The rollout for `hosts`: today one step, in which every host converges
/// in parallel.
pub fn rollout(inventory: &Inventory, hosts: &[&Host]) -> Result<Rollout> {
    let states = hosts
        .iter()
        .map(|h| host_state(inventory, h))
        .collect::<Result<Vec<_>>>()?;
    Ok(Rollout::single(WORKLOAD_STEP, states))
}
