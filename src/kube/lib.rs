//! k8sup-kube: k8sup as a client of a cluster's Kubernetes API.
//!
//! The API is reached through a port forwarded over a control plane's SSH
//! connection (`connect.rs`), so k8sup needs no network path to it beyond
//! SSH. [`KubeApi`] is the cluster layer's [`ClusterApi`]: it plans the
//! add-ons phase (objects by server-side apply in dry-run, `plan.rs`;
//! whether the cluster takes workloads, `readiness.rs`; role labels) and
//! applies exactly that plan (`apply.rs`). `k8sup status` reads nodes with
//! the same connection code.
//!
//! Rules: never prints (progress goes through the engine's [`Progress`]);
//! every error names the control plane it went through or the object and
//! template concerned; nothing but the objects, the waits and the labels of
//! the plan is changed.

pub mod apply;
pub mod connect;
mod objects;
pub mod plan;
mod reach;
pub mod readiness;

use std::sync::{Arc, OnceLock};

use futures::future::BoxFuture;
use k8sup_cluster::{AddonsRequest, ClusterApi};
use k8sup_engine::{EngineError, HostPlan, HostReport, Progress, Sessions};

pub use connect::{Connected, connect, describe};
pub use plan::{WAIT_ID, role_label};

/// The cluster's API over the run's SSH connections, which are given once
/// they are up ([`KubeApi::connected`]): the phases are built while the
/// connections are still being made.
#[derive(Default)]
pub struct KubeApi {
    sessions: OnceLock<Sessions>,
    /// The nodes' reports as the run's first plan saw them, before it
    /// changed anything (see `readiness::check`); set by that first plan,
    /// even when it saw none.
    before: std::sync::Mutex<Option<readiness::Reports>>,
}

impl KubeApi {
    pub fn new() -> Arc<KubeApi> {
        Arc::new(KubeApi::default())
    }

    /// The run's connections (a copy of each handle; the same connections).
    pub fn connected(&self, sessions: &Sessions) {
        let _ = self.sessions.set(sessions.clone());
    }

    fn before(&self) -> readiness::Reports {
        self.before
            .lock()
            .expect("reports lock")
            .clone()
            .unwrap_or_default()
    }

    fn sessions(&self) -> &Sessions {
        static NONE: OnceLock<Sessions> = OnceLock::new();
        self.sessions
            .get()
            .unwrap_or_else(|| NONE.get_or_init(Sessions::new))
    }
}

impl ClusterApi for KubeApi {
    fn plan<'a>(&'a self, want: &'a AddonsRequest) -> BoxFuture<'a, Result<HostPlan, EngineError>> {
        Box::pin(async move {
            let before = self.before();
            let (plan, seen) = plan::plan(self.sessions(), want, &before).await?;
            // Only the run's first plan sees the nodes before any change
            // (none seen: a new cluster, nothing to compare with).
            let mut first = self.before.lock().expect("reports lock");
            if first.is_none() {
                *first = Some(seen);
            }
            Ok(plan)
        })
    }

    fn apply<'a>(
        &'a self,
        want: &'a AddonsRequest,
        plan: &'a HostPlan,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, HostReport> {
        Box::pin(async move {
            let before = self.before();
            apply::apply(self.sessions(), want, plan, progress, &before).await
        })
    }
}
