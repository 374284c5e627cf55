//! Phases: a run as an ordered list of small, named pieces (k0sctl's
//! `action/apply.go` is the model), each deciding from the hosts' facts and
//! from what earlier phases did whether it runs and what the hosts must look
//! like.
//!
//! A phase returns data (steps of desired states); it never opens a
//! connection. The caller builds the list ([`Phases`]); the engine runs it
//! (`phased.rs`): one exec per host gathers the facts and observes every
//! phase, every phase is planned up front to be shown, and at apply each
//! phase after one that changed something is observed and planned again,
//! since its desired state, guards and the hosts themselves may differ by then.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::EngineError;
use crate::facts::Facts;
use crate::resource::ResourceId;
use crate::rollout::Step;
use crate::service::ServicePhase;

/// What an earlier phase did (at apply) or will do (at plan).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseOutcome {
    pub title: String,
    /// Its `should_run` said yes.
    pub ran: bool,
    /// The changes below were carried out (apply), not only planned (plan).
    /// A phase whose desired state depends on this flag plans differently
    /// from how it applies; prefer [`PhaseOutcome::changed_on`].
    pub applied: bool,
    /// Per host, the resources it changed (or plans to change), in order.
    pub changed: BTreeMap<String, Vec<ResourceId>>,
}

impl PhaseOutcome {
    /// Whether it changed (or plans to change) anything on `host`.
    pub fn changed_on(&self, host: &str) -> bool {
        self.changed.get(host).is_some_and(|c| !c.is_empty())
    }

    /// Whether it changed (or plans to change) `resource` on `host`.
    pub fn changed_resource(&self, host: &str, resource: &str) -> bool {
        self.changed
            .get(host)
            .is_some_and(|c| c.iter().any(|r| r.as_str() == resource))
    }

    /// Whether it changed anything anywhere.
    pub fn any_change(&self) -> bool {
        self.changed.values().any(|c| !c.is_empty())
    }
}

/// What a phase decides from: every host's facts, and the outcomes of the
/// phases before it, in order.
#[derive(Debug, Clone, Copy)]
pub struct PhaseContext<'a> {
    pub facts: &'a BTreeMap<String, Facts>,
    pub earlier: &'a [PhaseOutcome],
}

impl<'a> PhaseContext<'a> {
    /// A host's facts (empty when unknown).
    pub fn facts_of(&self, host: &str) -> &'a Facts {
        static EMPTY: std::sync::OnceLock<Facts> = std::sync::OnceLock::new();
        self.facts
            .get(host)
            .unwrap_or_else(|| EMPTY.get_or_init(Facts::default))
    }

    /// The outcome of the earlier phase titled `title`.
    pub fn earlier(&self, title: &str) -> Option<&'a PhaseOutcome> {
        self.earlier.iter().find(|o| o.title == title)
    }
}

/// One phase of a run.
pub trait Phase: Send + Sync {
    /// A short name, shown in the plan ("install binaries", "join").
    fn title(&self) -> String;

    /// Whether the phase has anything to do, given the facts and what came
    /// before (k0sctl's `ShouldRun`). A phase that does not run produces no
    /// resources and is shown as skipped.
    fn should_run(&self, cx: &PhaseContext<'_>) -> bool {
        let _ = cx;
        true
    }

    /// The phase's desired states, as steps of hosts (see [`Step`]).
    fn steps(&self, cx: &PhaseContext<'_>) -> Result<Vec<Step>, EngineError>;

    /// For a phase whose changes go through a service the hosts run (an
    /// API) rather than onto the hosts: who plans and applies them
    /// (`service.rs`). Such a phase gives no host steps.
    fn service(&self) -> Option<&dyn ServicePhase> {
        None
    }
}

type When = Box<dyn Fn(&PhaseContext<'_>) -> bool + Send + Sync>;
type Steps = Box<dyn Fn(&PhaseContext<'_>) -> Result<Vec<Step>, EngineError> + Send + Sync>;

/// A phase made of closures (see [`phase`]), or of a service
/// ([`service_phase`]).
pub struct FnPhase {
    title: String,
    when: Option<When>,
    steps: Steps,
    service: Option<Box<dyn ServicePhase>>,
}

/// A phase titled `title` whose steps `steps` computes.
pub fn phase(
    title: impl Into<String>,
    steps: impl Fn(&PhaseContext<'_>) -> Result<Vec<Step>, EngineError> + Send + Sync + 'static,
) -> FnPhase {
    FnPhase {
        title: title.into(),
        when: None,
        steps: Box::new(steps),
        service: None,
    }
}

/// A phase titled `title` whose changes `service` makes through a service
/// the hosts run (see `service.rs`).
pub fn service_phase(title: impl Into<String>, service: impl ServicePhase + 'static) -> FnPhase {
    FnPhase {
        title: title.into(),
        when: None,
        steps: Box::new(|_| Ok(Vec::new())),
        service: Some(Box::new(service)),
    }
}

impl FnPhase {
    /// Run the phase only when `when` says so.
    pub fn when(
        mut self,
        when: impl Fn(&PhaseContext<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.when = Some(Box::new(when));
        self
    }
}

impl Phase for FnPhase {
    fn title(&self) -> String {
        self.title.clone()
    }

    fn should_run(&self, cx: &PhaseContext<'_>) -> bool {
        self.when.as_ref().is_none_or(|w| w(cx))
    }

    fn steps(&self, cx: &PhaseContext<'_>) -> Result<Vec<Step>, EngineError> {
        (self.steps)(cx)
    }

    fn service(&self) -> Option<&dyn ServicePhase> {
        self.service.as_deref()
    }
}

/// The phases of a run, in order, and how their facts are gathered.
pub struct Phases {
    pub(crate) list: Vec<Box<dyn Phase>>,
    pub(crate) probe: Option<String>,
    pub(crate) hint: BTreeMap<String, Facts>,
    pub(crate) hosts: Vec<String>,
    pub(crate) concurrency: usize,
}

impl Phases {
    /// A run over `hosts` (each is observed and has its facts gathered,
    /// whether or not a phase gives it resources).
    pub fn new(hosts: Vec<String>) -> Self {
        Phases {
            list: Vec::new(),
            probe: None,
            hint: BTreeMap::new(),
            hosts,
            concurrency: 10,
        }
    }

    pub fn then(mut self, phase: impl Phase + 'static) -> Self {
        self.list.push(Box::new(phase));
        self
    }

    /// The facts probe: a shell fragment printing `key=value` lines (e.g.
    /// the CLI's `facts/gather.sh`). It runs in every observation's exec, in a
    /// subshell with stdin and stderr closed.
    pub fn facts_probe(mut self, sh: impl Into<String>) -> Self {
        self.probe = Some(sh.into());
        self
    }

    /// The facts probe, as set (to inspect or test it without hosts).
    pub fn probe(&self) -> Option<&str> {
        self.probe.as_deref()
    }

    /// What `host`'s facts are expected to be. Why: the observation of every
    /// phase is in the same exec as the facts, so its manifest is computed
    /// from expected facts (empty by default) and checked once the real
    /// facts are in. A phase whose paths, units or guards differ under the
    /// real facts is observed again (one more exec for that host); a good
    /// hint (the facts of the last run) avoids that.
    pub fn facts_hint(mut self, host: impl Into<String>, facts: Facts) -> Self {
        self.hint.insert(host.into(), facts);
        self
    }

    /// Hosts observed or changed at once (default 10).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// What every phase wants for these facts, in order, as if no earlier
    /// phase changed anything: (title, runs, its desired states, resolved,
    /// so that a dependency on an undeclared resource is an error here).
    /// For inspecting and testing a phase list without hosts.
    pub async fn desired(
        &self,
        facts: &BTreeMap<String, Facts>,
    ) -> Result<Vec<(String, bool, crate::ResolvedRollout)>, EngineError> {
        let mut out = Vec::new();
        let mut earlier = Vec::new();
        for p in &self.list {
            let cx = PhaseContext {
                facts,
                earlier: &earlier,
            };
            let runs = p.should_run(&cx);
            let steps = if runs { p.steps(&cx)? } else { Vec::new() };
            let resolved = crate::Rollout { steps }.resolve().await?;
            earlier.push(PhaseOutcome {
                title: p.title(),
                ran: runs,
                ..Default::default()
            });
            out.push((p.title(), runs, resolved));
        }
        Ok(out)
    }

    pub fn titles(&self) -> Vec<String> {
        self.list.iter().map(|p| p.title()).collect()
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
