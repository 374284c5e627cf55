//! The fleet a command works on, shared by `plan` and `apply`: the chosen
//! hosts of an inventory, their desired state, and one connection to each
//! (reused for everything the command does).

use anyhow::{Result, bail};
use k8sup_engine::{Plan, ResolvedRollout, Sessions};
use k8sup_inventory::Inventory;

use crate::connect::connect_hosts;

pub struct Fleet {
    pub inventory: Inventory,
    pub hosts: Vec<String>,
    pub desired: ResolvedRollout,
    pub sessions: Sessions,
}

impl Fleet {
    /// Everything up to, not including, observing the hosts. Fails naming
    /// every host that cannot be reached: a plan that cannot see a host
    /// cannot be honest about it (use `--host` to leave it out).
    pub async fn prepare(inventory: Inventory, only: &[String]) -> Result<Fleet> {
        let hosts = crate::load::select_hosts(&inventory, only)?;
        let rollout = k8sup_cluster::rollout(&inventory, &hosts)?;
        // Rendering templates and hashing local files overlaps with the SSH
        // handshakes: both are on the critical path of a no-op apply.
        let (desired, connected) =
            tokio::join!(rollout.resolve(), connect_hosts(&inventory, &hosts));
        tracing::debug!("connected, desired state resolved");
        let mut sessions = Sessions::new();
        let mut failed = Vec::new();
        for (host, result) in connected {
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
        let desired = match desired {
            Ok(d) => d,
            Err(e) => {
                for s in sessions.into_values() {
                    s.close().await;
                }
                return Err(e.into());
            }
        };
        Ok(Fleet {
            inventory,
            hosts: names,
            desired,
            sessions,
        })
    }

    /// Observe every host (one round trip each) and compute the plan.
    pub async fn plan(&self) -> Result<Plan> {
        let plan = k8sup_engine::plan(&self.desired, &self.sessions, self.concurrency()).await?;
        tracing::debug!("every host observed, plan made");
        Ok(plan)
    }

    /// [`Fleet::plan`] for an apply that goes on without asking: the hosts
    /// certain to change are locked for `me` as they are observed (see
    /// `k8sup_engine::plan_claiming`); returns those hosts too.
    pub async fn plan_claiming(
        &self,
        me: &k8sup_engine::RunIdentity,
    ) -> Result<(Plan, std::collections::BTreeSet<String>)> {
        let planned =
            k8sup_engine::plan_claiming(&self.desired, &self.sessions, self.concurrency(), me)
                .await?;
        tracing::debug!(locked = planned.1.len(), "every host observed, plan made");
        Ok(planned)
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
