//! Observing many hosts and planning a rollout.

use std::collections::{BTreeSet, HashMap};

use futures::stream::{self, StreamExt};
use k8sup_ssh::Session;

use crate::error::EngineError;
use crate::lock::{self, RunIdentity};
use crate::observe::{self, Observation};
use crate::plan::{Plan, StepPlan};
use crate::planner;
use crate::rollout::ResolvedRollout;
use crate::transport::Transport;

/// Open connections by host name (the names used in the desired states):
/// SSH sessions, or [`crate::LocalHost`]s in tests.
pub type Sessions<T = Session> = HashMap<String, T>;

pub(crate) fn session<'a, T: Transport>(
    sessions: &'a Sessions<T>,
    host: &str,
) -> Result<&'a T, EngineError> {
    sessions.get(host).ok_or_else(|| EngineError::Invalid {
        host: host.to_string(),
        reason: "no SSH session was given for this host".into(),
    })
}

/// Observe `hosts` (one exec each), at most `concurrency` at a time. One result per host, in order.
pub async fn observe_hosts<T: Transport>(
    desired: &ResolvedRollout,
    sessions: &Sessions<T>,
    hosts: &[String],
    concurrency: usize,
) -> Vec<(String, Result<Observation, EngineError>)> {
    observe_all(desired, sessions, hosts, concurrency, None).await
}

async fn observe_all<T: Transport>(
    desired: &ResolvedRollout,
    sessions: &Sessions<T>,
    hosts: &[String],
    concurrency: usize,
    claim: Option<&RunIdentity>,
) -> Vec<(String, Result<Observation, EngineError>)> {
    stream::iter(hosts.iter().cloned())
        .map(|host| async move {
            let result = match session(sessions, &host) {
                Ok(s) => observe::observe_claiming(s, &desired.states_of(&host), claim).await,
                Err(e) => Err(e),
            };
            (host, result)
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

/// Observe every host of the rollout and compute the plan. Fails, naming every
/// failing host, if any host cannot be observed or planned.
pub async fn plan<T: Transport>(
    desired: &ResolvedRollout,
    sessions: &Sessions<T>,
    concurrency: usize,
) -> Result<Plan, EngineError> {
    let hosts = desired.hosts();
    plan_from(
        desired,
        observe_all(desired, sessions, &hosts, concurrency, None).await,
    )
}

/// [`plan`] for an apply that starts right after it: each host certain to
/// change is locked for `me` by its observation (see
/// [`observe::observe_claiming`]). Returns the plan and the hosts locked;
/// pass them to the apply as [`crate::ApplyOptions::claimed`], or release
/// them with [`release_claims`] if it does not run. On an error, what was
/// locked is released before returning.
pub async fn plan_claiming<T: Transport>(
    desired: &ResolvedRollout,
    sessions: &Sessions<T>,
    concurrency: usize,
    me: &RunIdentity,
) -> Result<(Plan, BTreeSet<String>), EngineError> {
    let hosts = desired.hosts();
    let observed = observe_all(desired, sessions, &hosts, concurrency, Some(me)).await;
    let claimed: BTreeSet<String> = observed
        .iter()
        .filter(|(_, r)| matches!(r, Ok(o) if o.claimed))
        .map(|(h, _)| h.clone())
        .collect();
    match plan_from(desired, observed) {
        Ok(plan) => Ok((plan, claimed)),
        Err(e) => {
            release_claims(sessions, &claimed, me).await;
            Err(e)
        }
    }
}

/// Release the locks a [`plan_claiming`] took, all hosts at once, when no
/// apply follows (an error, or nothing to do). Best effort: a lock that
/// cannot be removed goes stale (its pid is gone) and is reported as such.
pub async fn release_claims<T: Transport>(
    sessions: &Sessions<T>,
    claimed: &BTreeSet<String>,
    me: &RunIdentity,
) {
    let release = lock::release_sh(me);
    futures::future::join_all(
        claimed
            .iter()
            .map(|host| release_lock(sessions, host, &release)),
    )
    .await;
}

/// Runs `release` (a [`lock::release_sh`]) on `host`. Best effort: a lock
/// left behind goes stale and is reported as such by the next run.
pub(crate) async fn release_lock<T: Transport>(sessions: &Sessions<T>, host: &str, release: &str) {
    if let Ok(s) = session(sessions, host)
        && let Err(e) = s.exec(release).await
    {
        tracing::warn!(host = %host, error = %e, "could not release the run lock; it will go stale");
    }
}

pub(crate) fn plan_from(
    desired: &ResolvedRollout,
    observations: Vec<(String, Result<Observation, EngineError>)>,
) -> Result<Plan, EngineError> {
    let mut observed = HashMap::new();
    let mut errors = Vec::new();
    for (host, r) in observations {
        match r {
            Ok(o) => {
                observed.insert(host, o);
            }
            Err(e) => errors.push(e),
        }
    }
    let mut steps = Vec::new();
    for step in &desired.steps {
        let mut hosts = Vec::new();
        for st in &step.hosts {
            let Some(obs) = observed.get(&st.host) else {
                continue;
            };
            match planner::plan_host(st, obs) {
                Ok(h) => hosts.push(h),
                Err(e) => errors.push(e),
            }
        }
        steps.push(StepPlan {
            name: step.name.clone(),
            hosts,
        });
    }
    match errors.len() {
        0 => Ok(Plan::new(steps)),
        1 => Err(errors.remove(0)),
        _ => Err(EngineError::Hosts(errors)),
    }
}
