//! Observation: the current state of every resource of a host, in one round trip.
//!
//! One remote script (`observe.sh`, with the host's manifest embedded as a
//! here-document) stats, reads links of and hashes every managed path, asks
//! systemd about every unit with a single `systemctl show`, evaluates command
//! guards, and reports the run lock. The host's *fingerprint* is the SHA-256
//! of everything but the lock line: the same script, re-run under the lock by
//! the first apply script, must produce the same bytes, or the host drifted.

use std::collections::HashMap;

use base64::Engine as _;

use crate::content::sha256_hex;
use crate::desired::ResolvedState;
use crate::error::EngineError;
use crate::lock::{ObservedLock, RunIdentity};
use crate::resource::{Guard, Spec};
use crate::script;
use crate::transport::Transport;

const OBSERVE_SH: &str = include_str!("observe.sh");

/// Text files up to this size are sent back when they differ, for the diff.
pub const MAX_DIFF_BYTES: u64 = 256 * 1024;

/// What kind of thing is at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    Absent,
    File {
        mode: u32,
        owner: String,
        group: String,
        size: u64,
        sha256: String,
    },
    Dir {
        mode: u32,
        owner: String,
        group: String,
    },
    Link {
        target: String,
    },
    /// A socket, device or fifo: never touched.
    Other,
}

/// What systemd says about a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnitState {
    pub load_state: String,
    pub active_state: String,
    /// `auto-restart` here means a crash loop, not a running service.
    pub sub_state: String,
    /// systemd's `Result` of the last run (`success`, `exit-code`, ...).
    pub result: String,
    pub unit_file_state: String,
    pub need_daemon_reload: bool,
}

impl UnitState {
    /// Up or on its way up. A unit waiting to be restarted after a crash
    /// (`activating` / `auto-restart`) is not running: it is failing.
    pub fn is_running(&self) -> bool {
        matches!(
            self.active_state.as_str(),
            "active" | "reloading" | "activating"
        ) && !self.crash_looping()
    }

    /// Restarting after a failure: waiting to restart (`auto-restart`), or
    /// starting again while the last run's result is still a failure.
    pub fn crash_looping(&self) -> bool {
        self.sub_state == "auto-restart"
            || self.active_state == "activating"
                && !self.result.is_empty()
                && self.result != "success"
    }

    pub fn is_enabled(&self) -> bool {
        matches!(
            self.unit_file_state.as_str(),
            "enabled"
                | "enabled-runtime"
                | "static"
                | "indirect"
                | "generated"
                | "alias"
                | "linked"
                | "linked-runtime"
        )
    }
}

/// A guard's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardState {
    pub should_run: bool,
    /// The `unless:` check's exit code (0 for `creates:`).
    pub check_exit: i32,
}

/// Everything observed on one host.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub host: String,
    /// SHA-256 of the observation output (lock line excluded).
    pub fingerprint: String,
    pub lock: Option<ObservedLock>,
    /// This run took the host's lock in this observation (see
    /// [`observe_claiming`]); `lock` is then `None`.
    pub claimed: bool,
    pub paths: HashMap<String, PathState>,
    /// Current content of differing small files.
    pub contents: HashMap<String, Vec<u8>>,
    pub units: HashMap<String, UnitState>,
    pub guards: HashMap<String, GuardState>,
    /// Probes whose last check failed on this host (see `probe.rs`).
    pub failed_probes: std::collections::HashSet<String>,
    /// The raw lines behind each path / unit / guard, for per-resource fingerprints.
    pub(crate) raw: HashMap<String, String>,
    /// The lock line and systemd's lines as they came, and the units asked
    /// for: what `observe_rebase.rs` needs to rebuild the output.
    pub(crate) lock_line: String,
    pub(crate) s_text: String,
    pub(crate) units_asked: Vec<String>,
}

impl Observation {
    /// The fingerprint of one resource's observed state (its lines only).
    pub(crate) fn resource_fingerprint(&self, keys: &[String]) -> String {
        let mut s = String::new();
        for k in keys {
            if let Some(r) = self.raw.get(k) {
                s.push_str(r);
            }
            s.push('\n');
        }
        sha256_hex(s.as_bytes())
    }
}

/// The manifest lines for a host: every path, unit and guard of its resources.
pub(crate) fn manifest(state: &[&ResolvedState]) -> String {
    let mut lines = Vec::new();
    let mut units = Vec::new();
    let mut seen_paths = std::collections::HashSet::new();
    for st in state {
        for r in &st.resources {
            if let Some(path) = r.resource.path()
                && seen_paths.insert(path.clone())
            {
                let (want, max) = match (&r.body, r.diffable()) {
                    (Some(b), true) => (b.sha256.clone(), MAX_DIFF_BYTES as i64),
                    (Some(b), false) => (b.sha256.clone(), -1),
                    (None, _) => ("-".to_string(), -1),
                };
                lines.push(format!("P\t{path}\t{want}\t{max}"));
            }
            match &r.resource.spec {
                Spec::Unit { name, .. } | Spec::Service { unit: name, .. }
                    if !units.contains(name) =>
                {
                    units.push(name.clone());
                }
                Spec::Command {
                    name,
                    guard: Guard::Creates(p),
                    ..
                } => lines.push(format!("C\t{name}\t{p}")),
                Spec::Command {
                    name,
                    guard: Guard::Unless(cmd),
                    ..
                } => {
                    let b64 = base64::engine::general_purpose::STANDARD.encode(cmd.as_bytes());
                    lines.push(format!("X\t{name}\t{b64}"))
                }
                Spec::Probe { name, .. } => lines.push(format!("Q\t{name}")),
                _ => {}
            }
        }
    }
    for u in units {
        lines.push(format!("U\t{u}"));
    }
    lines.join("\n")
}

/// The observation functions with `manifest` embedded (also used by the apply's drift check).
pub(crate) fn functions(manifest: &str) -> String {
    OBSERVE_SH.replace("@MANIFEST@", &k8sup_ssh::quote(manifest))
}

/// Observe one host: one exec.
pub async fn observe<T: Transport>(
    session: &T,
    states: &[&ResolvedState],
) -> Result<Observation, EngineError> {
    observe_claiming(session, states, None).await
}

/// Observe one host (one exec); with `claim`, that run first takes the
/// host's lock if the host is certain to change (a file it must have does
/// not exist), so that the observation is made under the lock.
///
/// Why: an apply re-observes each host under its lock before changing it,
/// because another run may have changed the host since the plan. A host
/// observed under the lock needs no second look, which on a first apply (a
/// new node) was the longest wait before its upload could start. Only an
/// apply that goes on straight after planning may claim (`apply --yes`,
/// `plan_and_apply`): one that waits for a person re-checks under the lock,
/// as the person may take minutes. A host with nothing certain to change is
/// never locked here, so a no-op apply still writes nothing to any host.
pub async fn observe_claiming<T: Transport>(
    session: &T,
    states: &[&ResolvedState],
    claim: Option<&RunIdentity>,
) -> Result<Observation, EngineError> {
    let host = session.name().to_string();
    let manifest = manifest(states);
    let claim_sh = claim.map(claim_sh).unwrap_or_default();
    let script = format!(
        "{}\n{claim_sh}k8sup_lock\nk8sup_observe\n",
        functions(&manifest)
    );
    let out = script::run(session, &script).await?;
    if !out.success() {
        return Err(EngineError::remote(
            &host,
            "observing the host",
            &out.stderr_str(),
        ));
    }
    let mut obs = parse(&host, &out.stdout, states)?;
    if let (Some(me), Some(l)) = (claim, &obs.lock)
        && l.holder.run_id == me.holder.run_id
    {
        obs.lock = None;
        obs.claimed = true;
    }
    Ok(obs)
}

/// Shell that takes the run lock for `me` when the host is certain to
/// change; a lock already there (another run's) is left alone and is
/// reported by `k8sup_lock` as usual.
fn claim_sh(me: &RunIdentity) -> String {
    format!(
        "if k8sup_wants_new; then ( {} ) >/dev/null 2>&1; fi\n",
        crate::lock::acquire_sh(me, None)
    )
}

/// Read the observation output.
pub(crate) fn parse(
    host: &str,
    stdout: &[u8],
    states: &[&ResolvedState],
) -> Result<Observation, EngineError> {
    let bad = |reason: String| EngineError::Observe {
        host: host.to_string(),
        reason,
    };
    let text = std::str::from_utf8(stdout).map_err(|_| bad("output is not UTF-8".into()))?;
    let (lock_line, rest) = text
        .split_once('\n')
        .ok_or_else(|| bad("empty output".into()))?;
    let mut obs = Observation {
        host: host.to_string(),
        fingerprint: sha256_hex(rest.as_bytes()),
        ..Default::default()
    };
    obs.lock = crate::lock::parse_observed(lock_line).map_err(bad)?;
    obs.lock_line = lock_line.to_string();
    let mut s_lines: Vec<&str> = Vec::new();
    let mut version_seen = false;
    for line in rest.lines() {
        let mut f = line.split('\t');
        match f.next() {
            Some("V") => {
                if f.next() != Some("1") {
                    return Err(bad(format!("unknown observation version line {line:?}")));
                }
                version_seen = true;
            }
            Some("P") => {
                let path = f
                    .next()
                    .ok_or_else(|| bad(format!("bad line {line:?}")))?
                    .to_string();
                let fields: Vec<&str> = f.collect();
                let state =
                    parse_path(&fields).ok_or_else(|| bad(format!("bad path line {line:?}")))?;
                obs.raw.insert(format!("P:{path}"), line.to_string());
                obs.paths.insert(path, state);
            }
            Some("B") => {
                let path = f
                    .next()
                    .ok_or_else(|| bad(format!("bad line {line:?}")))?
                    .to_string();
                let data = base64::engine::general_purpose::STANDARD
                    .decode(f.next().unwrap_or(""))
                    .map_err(|e| bad(format!("bad content of {path}: {e}")))?;
                obs.raw.entry(format!("P:{path}")).and_modify(|r| {
                    r.push('\n');
                    r.push_str(line)
                });
                obs.contents.insert(path, data);
            }
            Some("G") => {
                let id = f
                    .next()
                    .ok_or_else(|| bad(format!("bad line {line:?}")))?
                    .to_string();
                let should_run = f.next() == Some("run");
                let check_exit = f.next().and_then(|c| c.parse().ok()).unwrap_or(0);
                obs.raw.insert(format!("G:{id}"), line.to_string());
                obs.guards.insert(
                    id,
                    GuardState {
                        should_run,
                        check_exit,
                    },
                );
            }
            Some("Q") => {
                let name = f
                    .next()
                    .ok_or_else(|| bad(format!("bad line {line:?}")))?
                    .to_string();
                if f.next() == Some("failed") {
                    obs.failed_probes.insert(name.clone());
                }
                obs.raw.insert(format!("Q:{name}"), line.to_string());
            }
            Some("S") => {
                obs.s_text.push_str(line);
                obs.s_text.push('\n');
                s_lines.push(line.strip_prefix("S\t").unwrap_or(""))
            }
            Some("") | None => {}
            Some(other) => return Err(bad(format!("unknown line kind {other:?}"))),
        }
    }
    if !version_seen {
        return Err(bad(
            "no version line: the observation script did not run to its end".into(),
        ));
    }
    // systemctl blocks, in the order the units were asked for.
    let units: Vec<String> = manifest(states)
        .lines()
        .filter_map(|l| l.strip_prefix("U\t").map(str::to_string))
        .collect();
    let mut blocks: Vec<Vec<&str>> = vec![Vec::new()];
    for l in s_lines {
        if l.is_empty() {
            if !blocks.last().is_some_and(Vec::is_empty) {
                blocks.push(Vec::new());
            }
        } else {
            blocks.last_mut().expect("never empty").push(l);
        }
    }
    blocks.retain(|b| !b.is_empty());
    obs.units_asked = units.clone();
    if blocks.len() != units.len() {
        return Err(bad(format!(
            "systemd answered for {} of {} units (is systemd running on the host?)",
            blocks.len(),
            units.len()
        )));
    }
    for (unit, block) in units.into_iter().zip(blocks) {
        let mut st = UnitState::default();
        for kv in &block {
            match kv.split_once('=') {
                Some(("LoadState", v)) => st.load_state = v.to_string(),
                Some(("ActiveState", v)) => st.active_state = v.to_string(),
                Some(("SubState", v)) => st.sub_state = v.to_string(),
                Some(("Result", v)) => st.result = v.to_string(),
                Some(("UnitFileState", v)) => st.unit_file_state = v.to_string(),
                Some(("NeedDaemonReload", v)) => st.need_daemon_reload = v == "yes",
                _ => {}
            }
        }
        obs.raw.insert(format!("S:{unit}"), block.join("\n"));
        obs.units.insert(unit, st);
    }
    Ok(obs)
}

fn parse_path(f: &[&str]) -> Option<PathState> {
    let mode = |s: &str| u32::from_str_radix(s, 8).ok();
    Some(match *f.first()? {
        "absent" => PathState::Absent,
        "other" => PathState::Other,
        "link" => PathState::Link {
            target: f.get(1)?.to_string(),
        },
        "dir" => PathState::Dir {
            mode: mode(f.get(1)?)?,
            owner: f.get(2)?.to_string(),
            group: f.get(3)?.to_string(),
        },
        "file" => PathState::File {
            mode: mode(f.get(1)?)?,
            owner: f.get(2)?.to_string(),
            group: f.get(3)?.to_string(),
            size: f.get(4)?.parse().ok()?,
            sha256: f.get(5)?.to_string(),
        },
        _ => return None,
    })
}
