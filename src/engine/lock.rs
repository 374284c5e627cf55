//! The run lock: one k8sup apply at a time on a host.
//!
//! `/var/lib/k8sup/run.lock` holds `run=`, `workstation=`, `pid=` and
//! `started=` lines. It is created with `ln` (atomic, fails if the file
//! exists) by the first apply script that changes the host, or earlier, by
//! the observation of an apply that will not stop to ask, when the host is
//! certain to change (`observe::observe_claiming`); it is refreshed (mtime)
//! every [`LockSettings::refresh_every`] while the run lasts, and removed at the
//! end. It is *read* by every observation, so a no-op apply costs no extra
//! round trip, and a second apply is refused before it changes anything.
//!
//! A lock is stale when it was not refreshed for [`LockSettings::stale_after`]
//! (by the host's clock), or when it names this workstation and a pid that is
//! not running here. A stale lock is only broken when the caller asks.

use std::fmt;
use std::time::Duration;

use k8sup_ssh::quote;
use serde::Serialize;

pub const LOCK_PATH: &str = "/var/lib/k8sup/run.lock";

/// [`LOCK_PATH`] as engine scripts name it: under `K8SUP_STATE_DIR` when that
/// is set (only by [`crate::LocalHost`]; see `local.rs`).
pub(crate) const LOCK_SH: &str = "\"${K8SUP_STATE_DIR:-/var/lib/k8sup}/run.lock\"";

/// Timing of the lock.
#[derive(Debug, Clone)]
pub struct LockSettings {
    pub refresh_every: Duration,
    pub stale_after: Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        LockSettings {
            refresh_every: Duration::from_secs(10),
            stale_after: Duration::from_secs(60),
        }
    }
}

/// Who holds a lock.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockHolder {
    pub run_id: String,
    pub workstation: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "run {} (pid {} on {}, started at unix time {})",
            self.run_id, self.pid, self.workstation, self.started
        )
    }
}

/// A lock as seen by an observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedLock {
    pub holder: LockHolder,
    pub age_secs: u64,
}

/// This run's identity, written into the lock.
#[derive(Debug, Clone)]
pub struct RunIdentity {
    pub holder: LockHolder,
}

impl RunIdentity {
    /// A fresh identity for this process.
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let pid = std::process::id();
        let workstation = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown".into());
        let workstation: String = workstation
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "-._".contains(*c))
            .collect();
        RunIdentity {
            holder: LockHolder {
                run_id: format!("{:x}-{pid:x}", now.as_millis()),
                workstation,
                pid,
                started: now.as_secs(),
            },
        }
    }
}

impl Default for RunIdentity {
    fn default() -> Self {
        Self::new()
    }
}

/// Parse the observation's `L` line.
pub(crate) fn parse_observed(line: &str) -> Result<Option<ObservedLock>, String> {
    let mut f = line.split('\t');
    if f.next() != Some("L") {
        return Err(format!("expected the lock line first, got {line:?}"));
    }
    let age = f.next().unwrap_or("-");
    if age == "-" {
        return Ok(None);
    }
    let age_secs = age
        .parse::<i64>()
        .map_err(|_| format!("bad lock age {age:?}"))?
        .max(0) as u64;
    let mut holder = LockHolder::default();
    for kv in f.next().unwrap_or("").split(';') {
        match kv.split_once('=') {
            Some(("run", v)) => holder.run_id = v.to_string(),
            Some(("workstation", v)) => holder.workstation = v.to_string(),
            Some(("pid", v)) => holder.pid = v.parse().unwrap_or(0),
            Some(("started", v)) => holder.started = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    Ok(Some(ObservedLock { holder, age_secs }))
}

/// Whether the lock's run is dead (see the module docs).
pub(crate) fn is_stale(lock: &ObservedLock, me: &RunIdentity, settings: &LockSettings) -> bool {
    if lock.age_secs > settings.stale_after.as_secs() {
        return true;
    }
    lock.holder.workstation == me.holder.workstation
        && lock.holder.pid != me.holder.pid
        && lock.holder.pid != 0
        && !std::path::Path::new(&format!("/proc/{}", lock.holder.pid)).exists()
}

/// Exit code of a script that found the lock taken.
pub(crate) const EXIT_LOCKED: u32 = 75;

/// Shell that takes the lock for `me` (or keeps it if already ours), breaking
/// the lock of run `break_run` if that is what is there. Exits [`EXIT_LOCKED`]
/// naming the holder on stdout when another run holds it.
pub(crate) fn acquire_sh(me: &RunIdentity, break_run: Option<&str>) -> String {
    let h = &me.holder;
    let content = format!(
        "run={}\nworkstation={}\npid={}\nstarted={}\n",
        h.run_id, h.workstation, h.pid, h.started
    );
    let mine = quote(&format!("run={}", h.run_id));
    let breaker = match break_run {
        Some(old) => format!(
            "grep -qsx {} \"$K8SUP_LOCK\" && rm -f -- \"$K8SUP_LOCK\"\n",
            quote(&format!("run={old}"))
        ),
        None => String::new(),
    };
    format!(
        "[ -d \"${{K8SUP_LOCK%/*}}\" ] || mkdir -p -- \"${{K8SUP_LOCK%/*}}\"\n{breaker}\
         if [ ! -f \"$K8SUP_LOCK\" ] || ! grep -qsx {mine} \"$K8SUP_LOCK\"; then\n\
           k8sup_t=\"$K8SUP_LOCK.$$.tmp\"\n\
           printf '%s' {content} > \"$k8sup_t\"\n\
           if ! ln -- \"$k8sup_t\" \"$K8SUP_LOCK\" 2>/dev/null; then rm -f -- \"$k8sup_t\"; echo K8SUP-LOCKED; k8sup_lock; exit {EXIT_LOCKED}; fi\n\
           rm -f -- \"$k8sup_t\"\n\
         fi\n",
        content = quote(&content),
    )
}

/// Shell that refreshes the lock's mtime if it is still ours.
pub(crate) fn refresh_sh(me: &RunIdentity) -> String {
    format!(
        "grep -qsx {} {LOCK_SH} && touch -- {LOCK_SH}",
        quote(&format!("run={}", me.holder.run_id))
    )
}

/// Shell that removes the lock if it is ours.
pub(crate) fn release_sh(me: &RunIdentity) -> String {
    format!(
        "if grep -qsx {} {LOCK_SH}; then rm -f -- {LOCK_SH}; fi",
        quote(&format!("run={}", me.holder.run_id))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lock_lines() {
        assert_eq!(parse_observed("L\t-").unwrap(), None);
        let l = parse_observed("L\t12\trun=abc;workstation=ws;pid=42;started=100;")
            .unwrap()
            .unwrap();
        assert_eq!(l.age_secs, 12);
        assert_eq!(
            l.holder,
            LockHolder {
                run_id: "abc".into(),
                workstation: "ws".into(),
                pid: 42,
                started: 100
            }
        );
        assert!(parse_observed("P\tx").is_err());
    }

    #[test]
    fn staleness() {
        let me = RunIdentity::new();
        let s = LockSettings::default();
        let other = |age, ws: &str, pid| ObservedLock {
            holder: LockHolder {
                run_id: "x".into(),
                workstation: ws.into(),
                pid,
                started: 0,
            },
            age_secs: age,
        };
        assert!(!is_stale(&other(5, "elsewhere", 1), &me, &s));
        assert!(is_stale(&other(61, "elsewhere", 1), &me, &s));
        // Same workstation, a pid that cannot exist: the run is dead.
        assert!(is_stale(
            &other(5, &me.holder.workstation, u32::MAX - 1),
            &me,
            &s
        ));
        // Same workstation, a live pid (ours is live, use pid 1).
        assert!(!is_stale(&other(5, &me.holder.workstation, 1), &me, &s));
    }
}
