//! Service phases: a phase whose changes are made through a service that the
//! hosts run (an API), not by scripts on the hosts.
//!
//! Why in the engine: the run stays one ordered list of phases, planned up
//! front and shown together, with one report and one progress display,
//! although some of what a cluster needs (its API objects, waiting until its
//! nodes are Ready) is not a file or a unit on any host. The engine knows
//! nothing of what the service is: the caller's [`ServicePhase`] plans and
//! applies, and hands back the same data as a host would ([`HostPlan`] with
//! [`Action`](crate::Action)s, [`HostReport`]), under a target name in place
//! of a host's.
//!
//! Rules the engine keeps for them, as for host phases:
//! - a plan is data: [`ServicePhase::plan`] changes nothing;
//! - apply does what a plan lists and nothing else: at apply the engine asks
//!   for a fresh plan (the service is then as the earlier phases left it)
//!   and, when no earlier phase changed anything, refuses it unless it lists
//!   the same changes as the approved one (the service drifted);
//! - a service phase with nothing to do is not contacted at apply.

use futures::future::BoxFuture;

use crate::phase::PhaseContext;
use crate::plan::HostPlan;
use crate::progress::Progress;
use crate::report::HostReport;

/// The part of a [`Phase`](crate::Phase) that talks to a service (see the
/// module docs). A phase returns it from [`Phase::service`](crate::Phase::service)
/// and gives no host steps.
pub trait ServicePhase: Send + Sync {
    /// What is changed through the service, given the hosts' facts and the
    /// earlier phases' outcomes. `settled`: no earlier phase changes anything,
    /// so the service is as it will be when this phase runs; when false, it
    /// may not be up yet, and the plan says what will be decided once it is.
    fn plan<'a>(
        &'a self,
        cx: PhaseContext<'a>,
        settled: bool,
    ) -> BoxFuture<'a, Result<HostPlan, crate::EngineError>>;

    /// Carry out exactly `plan`'s actions (a plan this phase made moments
    /// ago, with `settled`), reporting each through `progress` under the
    /// plan's host name. Failures are in the report, as a host's are.
    fn apply<'a>(
        &'a self,
        cx: PhaseContext<'a>,
        plan: &'a HostPlan,
        progress: &'a dyn Progress,
    ) -> BoxFuture<'a, HostReport>;
}

/// The changes a plan lists, for comparing an approved plan with a fresh
/// one: each action's resource and kind, waits aside (a wait is decided by
/// what the service is at the time, not by what changes).
pub(crate) fn changes(plan: &HostPlan) -> Vec<(String, crate::ActionKind)> {
    plan.actions
        .iter()
        .filter(|a| a.kind != crate::ActionKind::Wait)
        .map(|a| (a.resource.to_string(), a.kind))
        .collect()
}
