//! The engine's error type. Every variant names the host (and file, resource
//! or template) it is about and, where the user can act, what to do.

use std::path::PathBuf;

use crate::lock::LockHolder;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A template failed to render (undefined variable, syntax error).
    #[error("{host}: template {template}: {reason}")]
    Template {
        host: String,
        template: String,
        reason: String,
    },

    /// A local source file could not be read.
    #[error("{}: {reason}", path.display())]
    Local { path: PathBuf, reason: String },

    /// The desired state is inconsistent (duplicate resource, unknown dependency, cycle).
    #[error("{host}: invalid desired state: {reason}")]
    Invalid { host: String, reason: String },

    /// What is on the host cannot be turned into what is wanted without
    /// destroying something the engine does not manage.
    #[error("{host}: {resource}: {reason}")]
    Conflict {
        host: String,
        resource: String,
        reason: String,
    },

    #[error(transparent)]
    Ssh(#[from] k8sup_ssh::SshError),

    /// A remote script failed.
    #[error("{host}: {context} failed{}", stderr_block(.stderr_tail))]
    Remote {
        host: String,
        context: String,
        stderr_tail: String,
    },

    /// The observation script answered something this version cannot read.
    #[error("{host}: unreadable observation output: {reason}")]
    Observe { host: String, reason: String },

    /// Another run holds the lock on this host.
    #[error(
        "{host}: another k8sup run holds the lock: {holder}, refreshed {age_secs}s ago. \
         Wait for it to finish{hint}"
    )]
    Locked {
        host: String,
        holder: LockHolder,
        age_secs: u64,
        hint: String,
    },

    /// The lock was left by a run that died; it is only broken when asked
    /// ([`crate::ApplyOptions::break_stale_lock`]). The caller says how to
    /// ask: the engine names no command-line flag.
    #[error(
        "{host}: a stale lock from a dead run is on the host: {holder}, last refreshed {age_secs}s ago; \
         it is broken only on request"
    )]
    StaleLock {
        host: String,
        holder: LockHolder,
        age_secs: u64,
    },

    /// Hosts changed since the plan was made.
    #[error(
        "the plan is out of date: {} changed since it was made ({}). Nothing was applied; run plan again",
        if hosts.len() == 1 { "this host" } else { "these hosts" },
        hosts.join(", ")
    )]
    Drift { hosts: Vec<String> },

    /// A saved plan does not match the desired state it is applied with.
    #[error(
        "{host}: the saved plan does not match the current inputs: {reason}. Nothing was applied; run plan again"
    )]
    PlanMismatch { host: String, reason: String },

    /// A saved plan could not be read.
    #[error("cannot read the plan: {reason}")]
    PlanFormat { reason: String },

    /// Several hosts failed (observation or planning); one line each.
    #[error("{} host(s) failed:\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Hosts(Vec<EngineError>),

    /// The lock-and-drift check before a host's first change refused to go on
    /// (another run holds the lock, or the host drifted); nothing was changed.
    #[error("{host}: {reason}")]
    Refused { host: String, reason: String },

    /// The run was cancelled (Ctrl-C, or another host failed under fail-fast).
    #[error("{host}: stopped before finishing ({reason})")]
    Cancelled { host: String, reason: String },
}

fn stderr_block(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr:\n{tail}")
    }
}

impl EngineError {
    pub(crate) fn remote(host: &str, context: impl Into<String>, stderr: &str) -> Self {
        EngineError::Remote {
            host: host.to_string(),
            context: context.into(),
            stderr_tail: tail_lines(stderr, 20),
        }
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
