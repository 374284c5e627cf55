//! Progress reporting: the engine never prints; it tells a [`Progress`]
//! implementation what happens (the CLI drives indicatif bars with it, tests
//! record it).

use crate::plan::Action;

/// Something that happened during an apply.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Hosts with changes are being checked for drift and locks.
    Verifying {
        hosts: usize,
    },
    StepStarted {
        step: &'a str,
        hosts: usize,
    },
    HostStarted {
        host: &'a str,
        step: &'a str,
        actions: usize,
    },
    /// The action was sent to the host (several may be in flight in one script).
    ActionStarted {
        host: &'a str,
        action: &'a Action,
    },
    ActionFinished {
        host: &'a str,
        action: &'a Action,
        ok: bool,
    },
    /// Bytes of a streamed upload sent so far.
    Upload {
        host: &'a str,
        path: &'a str,
        sent: u64,
        total: u64,
    },
    HostFinished {
        host: &'a str,
        step: &'a str,
        ok: bool,
    },
    /// A wait goes on: what it still waits for, in words (sent when that
    /// changes), so a long wait says why it is long.
    Waiting {
        host: &'a str,
        action: &'a Action,
        pending: &'a str,
    },
}

/// Receives [`Event`]s, from several hosts' tasks at once.
pub trait Progress: Send + Sync {
    fn event(&self, event: Event<'_>);
}

/// Ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _: Event<'_>) {}
}
