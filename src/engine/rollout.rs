//! Ordering across hosts: a rollout is a list of steps; every host of a step
//! finishes before the next step begins (e.g. the first control plane, then
//! the others). Within a step, hosts run in parallel under a limit.

use std::collections::{HashMap, HashSet};

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::content::digest_file;
use crate::desired::{DesiredState, ResolvedState};
use crate::error::EngineError;
use crate::resource::Spec;

/// One step: the desired state of each of its hosts.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub hosts: Vec<DesiredState>,
}

impl Step {
    pub fn new(name: impl Into<String>, hosts: Vec<DesiredState>) -> Self {
        Step {
            name: name.into(),
            hosts,
        }
    }
}

/// Steps in order.
#[derive(Debug, Clone, Default)]
pub struct Rollout {
    pub steps: Vec<Step>,
}

impl Rollout {
    /// A rollout of one step.
    pub fn single(name: impl Into<String>, hosts: Vec<DesiredState>) -> Self {
        Rollout {
            steps: vec![Step::new(name, hosts)],
        }
    }

    pub fn then(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    /// Check and resolve every host of every step. Each distinct binary is
    /// hashed once, however many hosts receive it.
    pub async fn resolve(&self) -> Result<ResolvedRollout, EngineError> {
        let mut seen: HashMap<&str, HashSet<crate::ResourceId>> = HashMap::new();
        for step in &self.steps {
            let mut in_step = HashSet::new();
            for h in &step.hosts {
                if !in_step.insert(h.host.as_str()) {
                    return Err(EngineError::Invalid {
                        host: h.host.clone(),
                        reason: format!("the host appears twice in step {:?}", step.name),
                    });
                }
                let ids = seen.entry(&h.host).or_default();
                for r in &h.resources {
                    if !ids.insert(r.id()) {
                        return Err(EngineError::Invalid {
                            host: h.host.clone(),
                            reason: format!("{} is declared in two steps", r.id()),
                        });
                    }
                }
            }
        }
        let sources: HashSet<_> = self
            .steps
            .iter()
            .flat_map(|s| &s.hosts)
            .flat_map(|h| &h.resources)
            .filter_map(|r| match &r.spec {
                Spec::Binary {
                    source,
                    ensure: crate::Ensure::Present,
                    ..
                } => Some(source.clone()),
                _ => None,
            })
            .collect();
        let digests: HashMap<_, _> = stream::iter(sources)
            .map(|p| async move { digest_file(&p).await.map(|d| (p, d)) })
            .buffer_unordered(4)
            .try_collect()
            .await?;
        let mut steps = Vec::new();
        for step in &self.steps {
            let mut hosts = Vec::new();
            for h in &step.hosts {
                hosts.push(h.resolve_with(&digests).await?);
            }
            steps.push(ResolvedStep {
                name: step.name.clone(),
                hosts,
            });
        }
        Ok(ResolvedRollout { steps })
    }
}

#[derive(Debug, Clone)]
pub struct ResolvedStep {
    pub name: String,
    pub hosts: Vec<ResolvedState>,
}

/// A checked and resolved rollout: the input of planning and applying.
#[derive(Debug, Clone)]
pub struct ResolvedRollout {
    pub steps: Vec<ResolvedStep>,
}

impl ResolvedRollout {
    /// Every host, in order of first appearance.
    pub fn hosts(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in &self.steps {
            for h in &s.hosts {
                if !out.contains(&h.host) {
                    out.push(h.host.clone());
                }
            }
        }
        out
    }

    /// A host's states across all steps.
    pub fn states_of(&self, host: &str) -> Vec<&ResolvedState> {
        self.steps
            .iter()
            .flat_map(|s| &s.hosts)
            .filter(|h| h.host == host)
            .collect()
    }
}
