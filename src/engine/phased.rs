//! Running [`Phases`]: plan them all up front, apply them in turn.
//!
//! Plan ([`plan_phases`]), one exec per host: the caller's facts probe, the
//! run lock, and one observation per phase (`observe_many.rs`), whose
//! manifests come from the phases' desired states under the *expected*
//! facts ([`Phases::facts_hint`], empty by default). Then each phase, in
//! order, computes its desired state from the real facts and the planned
//! outcomes of the phases before it, and is planned from its section; a
//! phase whose manifest differs under the real facts (other paths, units or
//! guards) is observed once more for the hosts concerned. Phases after one
//! with changes are marked "decided after" it (see `phased_plan.rs`).
//!
//! Apply ([`apply_phases`]): while no phase has changed anything, each phase
//! is applied exactly as planned (its fingerprints checked under the lock:
//! drift refusal as for any plan; a phase without changes contacts no host).
//! Once one has, every later phase is observed again (facts included, one
//! exec per host), its desired state recomputed from the new facts and the
//! applied outcomes, planned, and applied; its first script re-checks that
//! observation under the lock. A phase with a failed host ends the run. A
//! no-op therefore costs one exec per host in all: the plan's.
//!
//! A service phase (`service.rs`) is planned by its own code in place of an
//! observation, and at apply planned again and applied by it, in its turn.
//!
//! Each phase's apply takes and releases the run lock on its hosts; between
//! two phases another run could take it, which the next phase's lock and
//! fingerprint check then refuses.

use std::collections::{BTreeMap, HashMap};

use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::apply::{ApplyOptions, apply};
use crate::desired::ResolvedState;
use crate::error::EngineError;
use crate::facts::Facts;
use crate::fleet::{Sessions, plan_from, session};
use crate::observe::{self, Observation};
use crate::observe_many::{HostObservation, observe_sections};
use crate::observe_rebase::rebase;
use crate::phase::{Phase, PhaseContext, PhaseOutcome, Phases};
use crate::phased_plan::{PhasePlan, PhasedPlan};
use crate::plan::{ActionKind, Plan, StepPlan};
use crate::progress::Progress;
use crate::report::ApplyReport;
use crate::rollout::{ResolvedRollout, Rollout};
use crate::service::ServicePhase;
use crate::transport::Transport;

/// A phase's decision and desired state for these facts and outcomes.
async fn desire(
    phase: &dyn Phase,
    facts: &BTreeMap<String, Facts>,
    earlier: &[PhaseOutcome],
) -> Result<(bool, ResolvedRollout), EngineError> {
    let (runs, steps) = {
        let cx = PhaseContext { facts, earlier };
        let runs = phase.should_run(&cx);
        (runs, if runs { phase.steps(&cx)? } else { Vec::new() })
    };
    let resolved = Rollout { steps }.resolve().await?;
    Ok((runs, resolved))
}

fn manifest_of(r: &ResolvedRollout, host: &str) -> String {
    observe::manifest(&r.states_of(host))
}

/// Every host the run observes: the given ones, then any a phase adds.
fn all_hosts(phases: &Phases, rollouts: &[&ResolvedRollout]) -> Vec<String> {
    let mut hosts = phases.hosts.clone();
    for r in rollouts {
        for h in r.hosts() {
            if !hosts.contains(&h) {
                hosts.push(h);
            }
        }
    }
    hosts
}

/// One exec per host: facts (with a probe) and one observation per section.
async fn observe_all<'a, T: Transport>(
    sessions: &Sessions<T>,
    hosts: &[String],
    probe: Option<&str>,
    sections: &(dyn Fn(&str) -> Vec<Vec<&'a ResolvedState>> + Sync),
    concurrency: usize,
) -> Result<HashMap<String, HostObservation>, EngineError> {
    let results: Vec<(String, Result<HostObservation, EngineError>)> =
        stream::iter(hosts.iter().cloned())
            .map(|host| {
                let secs = sections(&host);
                async move {
                    let r = match session(sessions, &host) {
                        Ok(s) => observe_sections(s, probe, &secs).await,
                        Err(e) => Err(e),
                    };
                    (host, r)
                }
            })
            .buffered(concurrency.max(1))
            .collect()
            .await;
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for (h, r) in results {
        match r {
            Ok(o) => {
                out.insert(h, o);
            }
            Err(e) => errors.push(e),
        }
    }
    match errors.len() {
        0 => Ok(out),
        1 => Err(errors.remove(0)),
        _ => Err(EngineError::Hosts(errors)),
    }
}

/// Facts from the observations (the expected ones where no probe ran).
fn facts_from(
    hosts: &[String],
    observed: &HashMap<String, HostObservation>,
    fallback: &BTreeMap<String, Facts>,
) -> BTreeMap<String, Facts> {
    hosts
        .iter()
        .map(|h| {
            let f = observed
                .get(h)
                .and_then(|o| o.facts.clone())
                .or_else(|| fallback.get(h).cloned())
                .unwrap_or_default();
            (h.clone(), f)
        })
        .collect()
}

/// Plan one phase whose desired state is `resolved`, taking each host's
/// observation from `section` (rebuilt for this manifest when it was made
/// with another, see `observe_rebase.rs`), and observing again, one exec
/// each without facts, the hosts for which that is not possible.
async fn plan_phase<T: Transport>(
    sessions: &Sessions<T>,
    resolved: &ResolvedRollout,
    section: &(dyn Fn(&str) -> Option<(String, Observation)> + Sync),
    concurrency: usize,
) -> Result<Plan, EngineError> {
    let mut observed: Vec<(String, Result<Observation, EngineError>)> = Vec::new();
    let mut again = Vec::new();
    for host in resolved.hosts() {
        let rebased = section(&host)
            .and_then(|(manifest, obs)| rebase(&obs, &manifest, &resolved.states_of(&host)));
        match rebased {
            Some(obs) => observed.push((host, Ok(obs))),
            None => again.push(host),
        }
    }
    if !again.is_empty() {
        tracing::debug!(hosts = ?again, "the real facts changed what a phase observes: observing again");
        let more = observe_all(
            sessions,
            &again,
            None,
            &|h| vec![resolved.states_of(h)],
            concurrency,
        )
        .await?;
        for (h, mut o) in more {
            observed.push((h, Ok(o.sections.remove(0))));
        }
    }
    plan_from(resolved, observed)
}

fn outcome_of_plan(title: String, runs: bool, plan: &Plan) -> PhaseOutcome {
    let mut changed: BTreeMap<String, Vec<crate::ResourceId>> = BTreeMap::new();
    for (host, a) in plan.actions() {
        changed
            .entry(host.to_string())
            .or_default()
            .push(a.resource.clone());
    }
    PhaseOutcome {
        title,
        ran: runs,
        applied: false,
        changed,
    }
}

/// Mark a phase planned before earlier phases ran (see `phased_plan.rs`).
fn mark(plan: &mut Plan, after: usize) {
    for h in plan.steps.iter_mut().flat_map(|s| s.hosts.iter_mut()) {
        h.decided_after = Some(after);
        for a in &mut h.actions {
            if matches!(
                a.kind,
                ActionKind::Run | ActionKind::Restart | ActionKind::Wait
            ) {
                a.decided_after = Some(after);
            }
        }
    }
}

/// The last earlier phase (1-based) with changes, if any.
fn last_change(earlier: &[PhaseOutcome]) -> Option<usize> {
    earlier
        .iter()
        .rposition(PhaseOutcome::any_change)
        .map(|i| i + 1)
}

/// Plan every phase (see the module docs).
pub async fn plan_phases<T: Transport>(
    phases: &Phases,
    sessions: &Sessions<T>,
) -> Result<PhasedPlan, EngineError> {
    // The desired states under the expected facts give the manifests observed.
    let mut expected = phases.hint.clone();
    for h in &phases.hosts {
        expected.entry(h.clone()).or_default();
    }
    let mut guessed: Vec<ResolvedRollout> = Vec::new();
    let mut guessed_outcomes: Vec<PhaseOutcome> = Vec::new();
    for p in &phases.list {
        let (runs, r) = desire(p.as_ref(), &expected, &guessed_outcomes).await?;
        guessed_outcomes.push(PhaseOutcome {
            title: p.title(),
            ran: runs,
            ..Default::default()
        });
        guessed.push(r);
    }
    let hosts = all_hosts(phases, &guessed.iter().collect::<Vec<_>>());
    let observed = observe_all(
        sessions,
        &hosts,
        phases.probe.as_deref(),
        &|h| guessed.iter().map(|r| r.states_of(h)).collect(),
        phases.concurrency,
    )
    .await?;
    let facts = facts_from(&hosts, &observed, &expected);

    let mut outcomes: Vec<PhaseOutcome> = Vec::new();
    let mut planned = Vec::new();
    for (k, p) in phases.list.iter().enumerate() {
        let (runs, resolved) = desire(p.as_ref(), &facts, &outcomes).await?;
        let after = last_change(&outcomes);
        let mut plan = match p.service() {
            Some(service) if runs => {
                let cx = PhaseContext {
                    facts: &facts,
                    earlier: &outcomes,
                };
                let host = service.plan(cx, after.is_none()).await?;
                Plan::new(vec![StepPlan {
                    name: p.title(),
                    hosts: vec![host],
                }])
            }
            _ => {
                let section = |h: &str| {
                    let obs = observed.get(h)?.sections.get(k)?.clone();
                    Some((manifest_of(&guessed[k], h), obs))
                };
                plan_phase(sessions, &resolved, &section, phases.concurrency).await?
            }
        };
        if let Some(n) = after {
            mark(&mut plan, n);
        }
        outcomes.push(outcome_of_plan(p.title(), runs, &plan));
        planned.push(PhasePlan {
            title: p.title(),
            runs,
            decided_after: after,
            steps: plan.steps,
        });
    }
    Ok(PhasedPlan::new(facts, planned))
}

/// What one phase did at apply.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseReport {
    pub title: String,
    /// Its `should_run` said yes (at apply).
    pub ran: bool,
    /// It was observed and planned again at apply (an earlier phase changed something).
    pub replanned: bool,
    /// The plan it applied (the approved one, or the one made again).
    pub plan: Plan,
    /// What the apply did (`None`: nothing to do, no host contacted).
    pub report: Option<ApplyReport>,
}

/// What every phase did, in order; phases after a failed one are absent.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PhasedReport {
    pub phases: Vec<PhaseReport>,
    /// The title of the phase the run stopped at (a host failed), if any.
    pub stopped_at: Option<String>,
}

impl PhasedReport {
    pub fn ok(&self) -> bool {
        self.stopped_at.is_none()
            && self
                .phases
                .iter()
                .all(|p| p.report.as_ref().is_none_or(ApplyReport::ok))
    }

    /// Actions carried out, over every phase.
    pub fn changed(&self) -> usize {
        self.phases
            .iter()
            .filter_map(|p| p.report.as_ref())
            .map(ApplyReport::changed)
            .sum()
    }

    pub fn phase(&self, title: &str) -> Option<&PhaseReport> {
        self.phases.iter().find(|p| p.title == title)
    }
}

fn outcome_of_report(title: String, ran: bool, report: Option<&ApplyReport>) -> PhaseOutcome {
    let mut changed: BTreeMap<String, Vec<crate::ResourceId>> = BTreeMap::new();
    for h in report.map(|r| r.hosts.as_slice()).unwrap_or_default() {
        changed.insert(
            h.host.clone(),
            h.executed
                .iter()
                .filter(|e| e.kind != ActionKind::Wait)
                .map(|e| e.resource.clone())
                .collect(),
        );
    }
    PhaseOutcome {
        title,
        ran,
        applied: true,
        changed,
    }
}

/// Record what a phase did (its outcome for the later phases, its report),
/// and whether the run goes on: not after a phase with a failed host.
fn record(
    outcomes: &mut Vec<PhaseOutcome>,
    out: &mut PhasedReport,
    title: String,
    ran: bool,
    replanned: bool,
    plan: Plan,
    report: Option<ApplyReport>,
) -> bool {
    let ok = report.as_ref().is_none_or(ApplyReport::ok);
    outcomes.push(outcome_of_report(title.clone(), ran, report.as_ref()));
    out.phases.push(PhaseReport {
        title: title.clone(),
        ran,
        replanned,
        plan,
        report,
    });
    if !ok {
        out.stopped_at = Some(title);
    }
    ok
}

/// Apply a service phase (see `service.rs`): plan it again now that the
/// earlier phases ran, refuse a drifted service when nothing before it
/// changed, and carry out the fresh plan. `None` as the report: it did not
/// run, or had nothing to do.
async fn apply_service(
    title: &str,
    service: &dyn ServicePhase,
    cx: PhaseContext<'_>,
    approved: &PhasePlan,
    runs: bool,
    changed_before: bool,
    progress: &dyn Progress,
) -> Result<(bool, Plan, Option<ApplyReport>), EngineError> {
    if !runs {
        return Ok((false, Plan::new(Vec::new()), None));
    }
    let fresh = service.plan(cx, true).await?;
    if !changed_before {
        let approved_changes: Vec<_> = approved
            .steps
            .iter()
            .flat_map(|s| &s.hosts)
            .flat_map(crate::service::changes)
            .collect();
        if crate::service::changes(&fresh) != approved_changes {
            return Err(EngineError::PlanMismatch {
                host: fresh.host.clone(),
                reason: format!(
                    "what phase {title:?} would change is not what the plan said (it changed since); make the plan again"
                ),
            });
        }
    }
    let plan = Plan::new(vec![StepPlan {
        name: title.to_string(),
        hosts: vec![fresh.clone()],
    }]);
    if fresh.actions.is_empty() {
        return Ok((true, plan, None));
    }
    let started = std::time::Instant::now();
    let host = service.apply(cx, &fresh, progress).await;
    let report = ApplyReport {
        hosts: vec![host],
        elapsed: started.elapsed(),
    };
    Ok((true, plan, Some(report)))
}

/// Apply a phased plan (see the module docs). `phases` must be the list the
/// plan was made from (same titles, in order). Whole-run refusals (drift, a
/// lock, changed inputs) are errors; host failures are in the report.
pub async fn apply_phases<T: Transport>(
    phases: &Phases,
    plan: &PhasedPlan,
    sessions: &Sessions<T>,
    opts: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<PhasedReport, EngineError> {
    let titles = phases.titles();
    let planned: Vec<&str> = plan.phases.iter().map(|p| p.title.as_str()).collect();
    if titles != planned {
        return Err(EngineError::PlanFormat {
            reason: format!(
                "the plan's phases ({}) are not this run's ({}); make the plan again",
                planned.join(", "),
                titles.join(", ")
            ),
        });
    }
    let opts = ApplyOptions {
        claimed: Default::default(),
        ..opts.clone()
    };
    let mut facts = plan.facts.clone();
    let mut outcomes: Vec<PhaseOutcome> = Vec::new();
    let mut out = PhasedReport::default();
    for (p, approved) in phases.list.iter().zip(&plan.phases) {
        let title = p.title();
        let changed_before = outcomes.iter().any(PhaseOutcome::any_change);
        if let Some(service) = p.service()
            && (changed_before || approved.has_changes())
        {
            if changed_before {
                // The hosts changed since their facts were read: read them again.
                let observed = observe_all(
                    sessions,
                    &phases.hosts,
                    phases.probe.as_deref(),
                    &|_| Vec::new(),
                    phases.concurrency,
                )
                .await?;
                facts = facts_from(&phases.hosts, &observed, &facts);
            }
            let cx = PhaseContext {
                facts: &facts,
                earlier: &outcomes,
            };
            let runs = p.should_run(&cx);
            let (ran, this_plan, report) = apply_service(
                &title,
                service,
                cx,
                approved,
                runs,
                changed_before,
                progress,
            )
            .await?;
            if !record(
                &mut outcomes,
                &mut out,
                title,
                ran,
                changed_before,
                this_plan,
                report,
            ) {
                break;
            }
            continue;
        }
        let (ran, replanned, this_plan, resolved) = if !changed_before {
            if !approved.has_changes() {
                record(
                    &mut outcomes,
                    &mut out,
                    title,
                    approved.runs,
                    false,
                    approved.as_plan(),
                    None,
                );
                continue;
            }
            // Nothing changed since the plan: apply it exactly (its inputs
            // are checked against the desired state computed again).
            let (runs, resolved) = desire(p.as_ref(), &facts, &outcomes).await?;
            if runs != approved.runs {
                return Err(EngineError::PlanMismatch {
                    host: "(all hosts)".into(),
                    reason: format!(
                        "phase {title:?} now {} run",
                        if runs { "does" } else { "does not" }
                    ),
                });
            }
            (runs, false, approved.as_plan(), resolved)
        } else {
            // An earlier phase changed the hosts: observe (with facts) and plan again.
            let (_, guess) = desire(p.as_ref(), &facts, &outcomes).await?;
            let hosts = all_hosts(phases, &[&guess]);
            let observed = observe_all(
                sessions,
                &hosts,
                phases.probe.as_deref(),
                &|h| vec![guess.states_of(h)],
                phases.concurrency,
            )
            .await?;
            facts = facts_from(&hosts, &observed, &facts);
            let (runs, resolved) = desire(p.as_ref(), &facts, &outcomes).await?;
            let section = |h: &str| {
                let obs = observed.get(h)?.sections.first()?.clone();
                Some((manifest_of(&guess, h), obs))
            };
            let fresh = plan_phase(sessions, &resolved, &section, phases.concurrency).await?;
            (runs, true, fresh, resolved)
        };
        if !this_plan.has_changes() {
            record(
                &mut outcomes,
                &mut out,
                title,
                ran,
                replanned,
                this_plan,
                None,
            );
            continue;
        }
        // A plan made moments ago from this run's own observation needs no
        // second look before its first script (which re-checks it under the lock).
        let phase_opts = if replanned {
            ApplyOptions {
                verify_first: false,
                ..opts.clone()
            }
        } else {
            opts.clone()
        };
        let report = apply(&this_plan, &resolved, sessions, &phase_opts, progress).await?;
        if !record(
            &mut outcomes,
            &mut out,
            title,
            ran,
            replanned,
            this_plan,
            Some(report),
        ) {
            break;
        }
    }
    Ok(out)
}
