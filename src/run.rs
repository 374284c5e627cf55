//! One run against the hosts of an inventory, shared by `plan` and `apply`:
//! read the inventory, work out the desired state, connect to every host
//! (one connection each, reused for everything the run does), and plan.

use std::path::Path;

use anyhow::{Result, bail};
use k8sup_engine::{Plan, ResolvedRollout, Sessions};
use k8sup_inventory::Inventory;

use crate::connect::connect_hosts;

pub struct Run {
    pub inventory: Inventory,
    pub hosts: Vec<String>,
    pub desired: ResolvedRollout,
    pub sessions: Sessions,
}

impl Run {
    /// Everything up to, not including, observing the hosts. Fails naming
    /// every host that cannot be reached: a plan that cannot see a host
    /// cannot be honest about it (use `--host` to leave it out).
    pub async fn prepare(inventory_path: &Path, only: &[String]) -> Result<Run> {
        let inventory = crate::cmd::load::inventory(inventory_path)?;
        let hosts = crate::cmd::load::select_hosts(&inventory, only)?;
        let desired = crate::desired::rollout(&inventory, &hosts)?.resolve().await?;
        let mut sessions = Sessions::new();
        let mut failed = Vec::new();
        for (host, result) in connect_hosts(&inventory, &hosts).await {
            match result {
                Ok(s) => {
                    sessions.insert(host.name.clone(), s);
                }
                Err(e) => failed.push(format!("  {e}")),
            }
        }
        let names = hosts.iter().map(|h| h.name.clone()).collect();
        if !failed.is_empty() {
            for s in sessions.into_values() {
                s.close().await;
            }
            bail!(
                "cannot reach {} of {} hosts; nothing was changed:\n{}\n(fix them, or leave them out with --host)",
                failed.len(),
                hosts.len(),
                failed.join("\n")
            );
        }
        Ok(Run { inventory, hosts: names, desired, sessions })
    }

    /// Observe every host (one round trip each) and compute the plan.
    pub async fn plan(&self) -> Result<Plan> {
        Ok(k8sup_engine::plan(&self.desired, &self.sessions, self.concurrency()).await?)
    }

    pub fn concurrency(&self) -> usize {
        self.inventory.options.concurrency as usize
    }

    pub async fn close(self) {
        for s in self.sessions.into_values() {
            s.close().await;
        }
    }
}
