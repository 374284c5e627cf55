//! The result of an apply, per host.

use std::time::Duration;

use serde::Serialize;

use crate::plan::ActionKind;
use crate::resource::ResourceId;

/// One action that was carried out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Executed {
    pub resource: ResourceId,
    pub kind: ActionKind,
}

/// What happened on one host.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostReport {
    pub host: String,
    /// Actions carried out.
    pub changed: usize,
    /// Resources that needed nothing.
    pub unchanged: usize,
    /// Actions that failed (0 or 1: a host stops at its first failure).
    pub failed: usize,
    /// Actions not attempted (after a failure, or when the run was stopped).
    pub not_run: usize,
    /// Why the host failed or stopped, with the host's stderr tail.
    pub error: Option<String>,
    /// The actions carried out, in order.
    pub executed: Vec<Executed>,
}

/// What happened on every host.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub hosts: Vec<HostReport>,
    #[serde(skip)]
    pub elapsed: Duration,
}

impl ApplyReport {
    /// No host failed or stopped early.
    pub fn ok(&self) -> bool {
        self.hosts.iter().all(|h| h.error.is_none())
    }

    pub fn changed(&self) -> usize {
        self.hosts.iter().map(|h| h.changed).sum()
    }

    pub fn host(&self, name: &str) -> Option<&HostReport> {
        self.hosts.iter().find(|h| h.host == name)
    }
}
