//! The plan of a phased run, as data (`--output json`, saved plans).
//!
//! ```text
//! {
//!   "formatVersion": 2,
//!   "kind": "phased",
//!   "createdAt": 1795473957,
//!   "facts": {"cp-1": {"version": "1.31.0"}},   // what each host's probe said
//!   "phases": [{
//!     "title": "install",
//!     "runs": true,                            // its should_run said yes
//!     "decidedAfter": null,                    // or N: planned again once phase N is applied
//!     "steps": [ ...as in a plan, hosts and actions may carry "decidedAfter"... ]
//!   }],
//!   "summary": {"create": 3, ...}              // every phase's actions as planned now
//! }
//! ```
//!
//! What is certain and what is not, in Terraform's "known after apply"
//! spirit: the first phase with changes is applied exactly as shown (its
//! hosts' fingerprints are checked under the lock, as for any plan). Every
//! phase after a phase with changes is marked `decidedAfter: N` (N the last
//! earlier phase with changes): it was planned from the hosts as they are
//! now, and at apply it is observed and planned again once phase N has run,
//! so its actions (and whether it runs at all) may differ from this plan.
//! Commands, restarts and probes in it carry the mark too: their guards and
//! triggers are evaluated on the host again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::facts::Facts;
use crate::plan::{FORMAT_VERSION, Plan, READS_VERSIONS, StepPlan, Summary};

/// Facts under keys with this prefix (a credential a probe read back, say)
/// never leave the process: a plan's JSON, printed or saved, omits them.
pub const SECRET_FACT_PREFIX: &str = "secret.";

fn public_facts<S: serde::Serializer>(
    facts: &BTreeMap<String, Facts>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let public: BTreeMap<&String, BTreeMap<&String, &String>> = facts
        .iter()
        .map(|(h, f)| {
            (
                h,
                f.0.iter()
                    .filter(|(k, _)| !k.starts_with(SECRET_FACT_PREFIX))
                    .collect(),
            )
        })
        .collect();
    serde::Serialize::serialize(&public, s)
}

/// One phase as planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhasePlan {
    pub title: String,
    pub runs: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_after: Option<usize>,
    pub steps: Vec<StepPlan>,
}

impl PhasePlan {
    pub fn has_changes(&self) -> bool {
        self.steps
            .iter()
            .flat_map(|s| &s.hosts)
            .any(|h| !h.actions.is_empty())
    }

    /// This phase as a plain [`Plan`] (what `apply` takes).
    pub fn as_plan(&self) -> Plan {
        Plan::new(self.steps.clone())
    }
}

/// Every phase, planned up front.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhasedPlan {
    pub format_version: u32,
    /// Always `"phased"`: tells this document from a plain plan.
    pub kind: String,
    pub created_at: u64,
    /// Facts whose key starts with [`SECRET_FACT_PREFIX`] are kept in memory
    /// (phases read them) and never serialized.
    #[serde(serialize_with = "public_facts")]
    pub facts: BTreeMap<String, Facts>,
    pub phases: Vec<PhasePlan>,
    pub summary: Summary,
}

impl PhasedPlan {
    pub(crate) fn new(facts: BTreeMap<String, Facts>, phases: Vec<PhasePlan>) -> Self {
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut p = PhasedPlan {
            format_version: FORMAT_VERSION,
            kind: "phased".into(),
            created_at,
            facts,
            phases,
            summary: Summary::default(),
        };
        p.summary = p.count();
        p
    }

    fn count(&self) -> Summary {
        let mut s = Summary::default();
        for a in self
            .phases
            .iter()
            .flat_map(|p| &p.steps)
            .flat_map(|s| &s.hosts)
            .flat_map(|h| &h.actions)
        {
            s.add(a.kind);
        }
        s
    }

    /// Every phase's steps as one plan (for counting and progress).
    pub fn as_plan(&self) -> Plan {
        Plan::new(self.phases.iter().flat_map(|p| p.steps.clone()).collect())
    }

    /// Whether applying would change anything (as planned now).
    pub fn has_changes(&self) -> bool {
        self.summary.total() > 0
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serializes")
    }

    /// Read a saved phased plan, refusing other versions and kinds.
    pub fn from_json(text: &str) -> Result<PhasedPlan, crate::EngineError> {
        let bad = |reason: String| crate::EngineError::PlanFormat { reason };
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("not a k8sup plan: {e}")))?;
        let version = v
            .get("formatVersion")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| bad("not a k8sup plan: no formatVersion".into()))?;
        if version < 2 || !READS_VERSIONS.contains(&(version as u32)) {
            return Err(bad(format!(
                "phased plan format version {version} is not supported (this k8sup reads version {FORMAT_VERSION}); make the plan again"
            )));
        }
        if v.get("kind").and_then(serde_json::Value::as_str) != Some("phased") {
            return Err(bad(
                "this is a plain plan, not a phased one (no \"kind\": \"phased\")".into(),
            ));
        }
        let plan: PhasedPlan = serde_json::from_value(v).map_err(|e| bad(e.to_string()))?;
        if plan.count() != plan.summary {
            return Err(bad(
                "the summary does not match the actions (edited by hand?)".into(),
            ));
        }
        Ok(plan)
    }
}
