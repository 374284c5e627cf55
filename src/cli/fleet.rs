//! The fleet a command works on, shared by `plan` and `apply`: the chosen
//! hosts of an inventory, their desired state, and one connection to each
//! (reused for everything the command does).

use anyhow::{Result, bail};
use k8sup_cluster::RunOptions;
use k8sup_engine::{Phases, Plan, ResolvedRollout, Rollout, Sessions};
use k8sup_inventory::{Components, Inventory};

use crate::connect::connect_hosts;

pub struct Fleet {
    pub inventory: Inventory,
    pub hosts: Vec<String>,
    /// The workload alone (`components: none`); empty for a cluster.
    pub desired: ResolvedRollout,
    /// A cluster's phases (`components: kubernetes`), run by the engine
    /// phase by phase.
    pub phases: Option<Phases>,
    pub sessions: Sessions,
}

impl Fleet {
    /// Everything up to, not including, observing the hosts. Fails naming
    /// every host that cannot be reached: a plan that cannot see a host
    /// cannot be honest about it (use `--host` to leave it out).
    /// `artifacts` overrides the inventory's artifacts source (`--artifacts`).
    pub async fn prepare(
        inventory: Inventory,
        only: &[String],
        artifacts: Option<&str>,
    ) -> Result<Fleet> {
        Self::prepare_with(inventory, only, artifacts, RunOptions::default()).await
    }

    /// [`Fleet::prepare`] for a run with `options` (`k8sup certs renew`).
    pub async fn prepare_with(
        inventory: Inventory,
        only: &[String],
        artifacts: Option<&str>,
        options: RunOptions,
    ) -> Result<Fleet> {
        let hosts = crate::load::select_hosts(&inventory, only)?;
        let cluster = inventory.cluster.components == Components::Kubernetes;
        let rollout = if cluster {
            Rollout::default()
        } else {
            k8sup_cluster::rollout(&inventory, &hosts)?
        };
        // Fetching and verifying artifacts (for a cluster), rendering
        // templates and hashing local files overlap with the SSH handshakes:
        // all are on the critical path of a no-op apply. A checksum mismatch
        // ends the run here, before any host is touched.
        let files = async {
            if cluster {
                crate::node_files::prepare(&inventory, artifacts)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        };
        let (desired, connected, files) =
            tokio::join!(rollout.resolve(), connect_hosts(&inventory, &hosts), files);
        // The add-ons phase reaches the cluster's API over these connections.
        let api = k8sup_kube::KubeApi::new();
        let phases = match files {
            Ok(Some(files)) => Some(k8sup_cluster::cluster_phases_with(
                &inventory,
                &hosts,
                files,
                options,
                api.clone(),
            )),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        };
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
        api.connected(&sessions);
        let ready = desired
            .map_err(anyhow::Error::from)
            .and_then(|d| Ok((d, phases.transpose()?)));
        let (desired, phases) = match ready {
            Ok(r) => r,
            Err(e) => {
                for s in sessions.into_values() {
                    s.close().await;
                }
                return Err(e);
            }
        };
        Ok(Fleet {
            inventory,
            hosts: names,
            desired,
            phases,
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

    /// A cluster's phased plan (`None` for a workload-only inventory).
    pub async fn plan_phases(&self) -> Result<Option<k8sup_engine::PhasedPlan>> {
        let Some(phases) = &self.phases else {
            return Ok(None);
        };
        let plan = k8sup_engine::plan_phases(phases, &self.sessions).await?;
        tracing::debug!("every host observed, phased plan made");
        Ok(Some(plan))
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
