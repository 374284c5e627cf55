//! The plan as data: what apply will do, host by host, and why.
//!
//! This is the stable JSON schema of `k8sup plan --output json` and of
//! `--out plan.json` (camelCase keys):
//!
//! ```text
//! {
//!   "formatVersion": 2,              // bumped on any incompatible change (1 is still read)
//!   "createdAt": 1795473957,         // unix seconds
//!   "steps": [{
//!     "name": "files",
//!     "hosts": [{
//!       "host": "cp-1",
//!       "fingerprint": "<sha256>",   // of the host's whole observed state
//!       "lockedBy": null,            // or "run ... (pid ... on ...)" when another run held the lock
//!       "unchanged": 4,              // resources already as wanted
//!       "actions": [{
//!         "resource": "file:/etc/demo/demo.conf",
//!         "kind": "update",          // create | update | delete | restart | reload | run | wait
//!         "reason": "content changed",
//!         "diff": "--- ...\n+++ ...\n@@ ...",   // text files only; null otherwise
//!         "sensitive": false,        // true: content never shown
//!         "observed": "<sha256>",    // of this resource's observed state
//!         "ops": [                   // exactly what apply runs, in order
//!           {"op": "write", "path": "/etc/demo/demo.conf", "sha256": "...", "size": 120,
//!            "mode": "644", "owner": "root", "group": "root"}
//!         ]
//!       }]
//!     }]
//!   }],
//!   "summary": {"create": 3, "update": 1, "delete": 0, "restart": 1, "reload": 1, "run": 0, "wait": 0}
//! }
//! ```
//!
//! Ops: `mkdir {path, mode, owner?, group?}`, `write {path, sha256, size, mode, owner?, group?}`,
//! `chmod {path, mode}`, `chown {path, owner?, group?}`, `symlink {path, target}`,
//! `remove {path, recursive}`, `daemonReload {}`, `loadUnit {unit}` (a new unit file: systemd
//! loads it on first use; a daemon-reload only where it did not), `systemctl {verb, unit, noReload?}`
//! (verb: enable, disable, start, stop, restart), `run {command}`,
//! `probe {name, check, timeoutMs, intervalMs}` (check: `{"http": {url, status, insecure}}`,
//! `{"tcp": {host, port}}` or `{"command": "..."}`).
//! In a phased plan, a service phase's changes (made through a service the
//! hosts run, such as an API) are one host entry named after the service,
//! whose actions have no ops; hosts and actions may carry `decidedAfter: N`: planned
//! from the host as it is now, and planned again once phase N has been applied. Modes are octal strings. Apply
//! checks every op against the desired state it is given (paths, units, commands, content
//! hashes), so a saved plan can only do what the inputs allow.

use serde::{Deserialize, Serialize};

use crate::resource::ResourceId;

/// The current [`Plan::format_version`]. Version 2 added the `wait` kind and
/// `probe` op, `summary.wait`, and `decidedAfter` (phased plans, see
/// [`crate::PhasedPlan`]); a version-1 plan is a version-2 plan without them,
/// so both are read.
pub const FORMAT_VERSION: u32 = 2;

/// Versions [`Plan::from_json`] reads.
pub(crate) const READS_VERSIONS: &[u32] = &[1, 2];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Create,
    Update,
    Delete,
    Restart,
    Reload,
    Run,
    /// A probe: waits for a condition; never changes the host.
    Wait,
}

/// One concrete remote operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    Mkdir {
        path: String,
        mode: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    /// Atomic replacement of the content (temp file, attributes, rename).
    Write {
        path: String,
        sha256: String,
        size: u64,
        mode: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    Chmod {
        path: String,
        mode: String,
    },
    Chown {
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    Symlink {
        path: String,
        target: String,
    },
    Remove {
        path: String,
        recursive: bool,
    },
    DaemonReload {},
    /// Make systemd load a unit file it has never loaded: systemd >= 245 does
    /// so by itself when the unit is next used; older ones get a daemon-reload.
    LoadUnit {
        unit: String,
    },
    Systemctl {
        verb: String,
        unit: String,
        /// `enable --no-reload`: this run's daemon-reload already follows the unit changes.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        no_reload: bool,
    },
    Run {
        command: String,
    },
    /// Wait until the probe's check passes (see `probe.rs`).
    #[serde(rename_all = "camelCase")]
    Probe {
        name: String,
        check: crate::probe::ProbeCheck,
        timeout_ms: u64,
        interval_ms: u64,
    },
}

/// One change to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Action {
    pub resource: ResourceId,
    pub kind: ActionKind,
    pub reason: String,
    #[serde(default)]
    pub diff: Option<String>,
    #[serde(default)]
    pub sensitive: bool,
    pub observed: String,
    pub ops: Vec<Op>,
    /// In a phased plan: the earlier phase (1-based) after which this action
    /// is decided again (its guard or state may differ once that phase ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_after: Option<usize>,
}

/// The actions of one host in one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPlan {
    pub host: String,
    pub fingerprint: String,
    #[serde(default)]
    pub locked_by: Option<String>,
    pub unchanged: usize,
    pub actions: Vec<Action>,
    /// In a phased plan: the earlier phase (1-based) after which this host's
    /// part of the phase is observed and planned again (see `phase.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_after: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepPlan {
    pub name: String,
    pub hosts: Vec<HostPlan>,
}

/// Counts by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub restart: usize,
    pub reload: usize,
    pub run: usize,
    /// Probes to wait for.
    #[serde(default)]
    pub wait: usize,
}

impl Summary {
    pub fn total(&self) -> usize {
        self.create + self.update + self.delete + self.restart + self.reload + self.run + self.wait
    }

    pub(crate) fn add(&mut self, kind: ActionKind) {
        match kind {
            ActionKind::Create => self.create += 1,
            ActionKind::Update => self.update += 1,
            ActionKind::Delete => self.delete += 1,
            ActionKind::Restart => self.restart += 1,
            ActionKind::Reload => self.reload += 1,
            ActionKind::Run => self.run += 1,
            ActionKind::Wait => self.wait += 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub format_version: u32,
    pub created_at: u64,
    pub steps: Vec<StepPlan>,
    pub summary: Summary,
}

impl Plan {
    pub(crate) fn new(steps: Vec<StepPlan>) -> Self {
        let created_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut plan = Plan {
            format_version: FORMAT_VERSION,
            created_at,
            steps,
            summary: Summary::default(),
        };
        plan.summary = plan.count();
        plan
    }

    fn count(&self) -> Summary {
        let mut s = Summary::default();
        for a in self.actions() {
            s.add(a.1.kind);
        }
        s
    }

    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        self.summary.total() > 0
    }

    /// Every action with its host, in apply order.
    pub fn actions(&self) -> impl Iterator<Item = (&str, &Action)> {
        self.steps.iter().flat_map(|s| {
            s.hosts
                .iter()
                .flat_map(|h| h.actions.iter().map(move |a| (h.host.as_str(), a)))
        })
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serializes")
    }

    /// Read a saved plan, refusing other format versions.
    pub fn from_json(text: &str) -> Result<Plan, crate::EngineError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Version {
            format_version: u32,
        }
        let v: Version =
            serde_json::from_str(text).map_err(|e| crate::EngineError::PlanFormat {
                reason: format!("not a k8sup plan: {e}"),
            })?;
        if !READS_VERSIONS.contains(&v.format_version) {
            return Err(crate::EngineError::PlanFormat {
                reason: format!(
                    "plan format version {} is not supported (this k8sup reads version {FORMAT_VERSION}); make the plan again",
                    v.format_version
                ),
            });
        }
        let plan: Plan =
            serde_json::from_str(text).map_err(|e| crate::EngineError::PlanFormat {
                reason: e.to_string(),
            })?;
        if plan.count() != plan.summary {
            return Err(crate::EngineError::PlanFormat {
                reason: "the summary does not match the actions (edited by hand?)".into(),
            });
        }
        Ok(plan)
    }
}
