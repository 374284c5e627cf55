//! Observing many hosts and planning a rollout.

use std::collections::HashMap;

use futures::stream::{self, StreamExt};
use k8sup_ssh::Session;

use crate::error::EngineError;
use crate::observe::{self, Observation};
use crate::plan::{Plan, StepPlan};
use crate::planner;
use crate::rollout::ResolvedRollout;

/// Open sessions by host name (the names used in the desired states).
pub type Sessions = HashMap<String, Session>;

pub(crate) fn session<'a>(sessions: &'a Sessions, host: &str) -> Result<&'a Session, EngineError> {
    sessions.get(host).ok_or_else(|| EngineError::Invalid {
        host: host.to_string(),
        reason: "no SSH session was given for this host".into(),
    })
}

/// Observe `hosts` (one exec each), at most `concurrency` at a time. One result per host, in order.
pub async fn observe_hosts(
    desired: &ResolvedRollout,
    sessions: &Sessions,
    hosts: &[String],
    concurrency: usize,
) -> Vec<(String, Result<Observation, EngineError>)> {
    stream::iter(hosts.iter().cloned())
        .map(|host| async move {
            let result = match session(sessions, &host) {
                Ok(s) => observe::observe(s, &desired.states_of(&host)).await,
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
pub async fn plan(
    desired: &ResolvedRollout,
    sessions: &Sessions,
    concurrency: usize,
) -> Result<Plan, EngineError> {
    let hosts = desired.hosts();
    let mut observed = HashMap::new();
    let mut errors = Vec::new();
    for (host, r) in observe_hosts(desired, sessions, &hosts, concurrency).await {
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
