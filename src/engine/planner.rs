//! Computing a host's actions from its desired and observed state.
//!
//! Pure: no I/O. Each resource yields at most one action, with the concrete
//! ops apply will run. Then, in this order: one `daemon-reload` after the
//! last unit change (all units come before all services), and one restart
//! per notified service at the end, after every file is in place. A service
//! that this run starts is not also restarted.

use std::collections::{BTreeSet, HashMap};

use crate::content::Resolved;
use crate::desired::{ResolvedResource, ResolvedState};
use crate::diff;
use crate::error::EngineError;
use crate::observe::{MAX_DIFF_BYTES, Observation, PathState};
use crate::plan::{Action, ActionKind, HostPlan, Op};
use crate::resource::{Attrs, Ensure, Guard, ResourceId, Spec};

/// The id of the host-wide daemon-reload action.
pub const DAEMON_RELOAD_ID: &str = "systemd:daemon-reload";

fn octal(m: u32) -> String {
    format!("{m:o}")
}

struct Cx<'a> {
    host: &'a str,
    obs: &'a Observation,
}

impl Cx<'_> {
    fn path(&self, p: &str) -> Result<&PathState, EngineError> {
        self.obs.paths.get(p).ok_or_else(|| EngineError::Observe {
            host: self.host.to_string(),
            reason: format!("the host did not report {p}"),
        })
    }

    fn conflict(&self, id: &ResourceId, reason: String) -> EngineError {
        EngineError::Conflict { host: self.host.to_string(), resource: id.to_string(), reason }
    }
}

/// Plan one host's resources (of one step) against its observation.
pub fn plan_host(state: &ResolvedState, obs: &Observation) -> Result<HostPlan, EngineError> {
    let cx = Cx { host: &state.host, obs };
    let mut actions: Vec<Action> = Vec::new();
    let mut unchanged = 0;
    for r in &state.resources {
        match plan_resource(&cx, r)? {
            Some(a) => actions.push(a),
            None => unchanged += 1,
        }
    }

    // One daemon-reload, after the last unit change, if a unit changed or systemd asks for it.
    let changed_units: Vec<&ResolvedResource> = state
        .resources
        .iter()
        .filter(|r| matches!(r.resource.spec, Spec::Unit { .. }) && actions.iter().any(|a| a.resource == r.id))
        .collect();
    let stale_units: Vec<String> = state
        .resources
        .iter()
        .filter_map(|r| match &r.resource.spec {
            Spec::Unit { name, .. } | Spec::Service { unit: name, .. } => Some(name.clone()),
            _ => None,
        })
        .filter(|u| obs.units.get(u).is_some_and(|s| s.need_daemon_reload))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !changed_units.is_empty() || !stale_units.is_empty() {
        let reason = if !changed_units.is_empty() {
            let names: Vec<String> = changed_units.iter().map(|r| r.id.to_string()).collect();
            format!("{} changed", names.join(", "))
        } else {
            format!("systemd reports unit files changed on disk since its last reload: {}", stale_units.join(", "))
        };
        let keys: Vec<String> = stale_units.iter().map(|u| format!("S:{u}")).collect();
        let at = actions
            .iter()
            .rposition(|a| changed_units.iter().any(|u| u.id == a.resource))
            .map(|i| i + 1)
            .or_else(|| actions.iter().position(|a| a.resource.as_str().starts_with("service:")))
            .unwrap_or(actions.len());
        actions.insert(
            at,
            Action {
                resource: ResourceId(DAEMON_RELOAD_ID.into()),
                kind: ActionKind::Reload,
                reason,
                diff: None,
                sensitive: false,
                observed: obs.resource_fingerprint(&keys),
                ops: vec![Op::DaemonReload {}],
            },
        );
    }

    // Restarts: once per notified service, at the end.
    let mut restarts = Vec::new();
    for r in &state.resources {
        let Spec::Service { unit, running, .. } = &r.resource.spec else { continue };
        if *running == Some(false) {
            continue;
        }
        let mut by: Vec<String> = state
            .resources
            .iter()
            .filter(|n| {
                let notifies = n.resource.notify.contains(&r.id)
                    || matches!(&n.resource.spec, Spec::Unit { name, .. } if name == unit);
                notifies && actions.iter().any(|a| a.resource == n.id && a.kind != ActionKind::Run)
            })
            .map(|n| n.id.to_string())
            .collect();
        // A command that ran also notifies.
        by.extend(
            state
                .resources
                .iter()
                .filter(|n| matches!(n.resource.spec, Spec::Command { .. }) && n.resource.notify.contains(&r.id))
                .filter(|n| actions.iter().any(|a| a.resource == n.id))
                .map(|n| n.id.to_string()),
        );
        if by.is_empty() {
            continue;
        }
        let observed = obs.units.get(unit).cloned().unwrap_or_default();
        let started_now = actions.iter().any(|a| {
            a.resource == r.id && a.ops.iter().any(|o| matches!(o, Op::Systemctl { verb, .. } if verb == "start"))
        });
        if started_now || !observed.is_running() {
            continue;
        }
        by.sort();
        by.dedup();
        restarts.push(Action {
            resource: r.id.clone(),
            kind: ActionKind::Restart,
            reason: format!("notified by {}", by.join(", ")),
            diff: None,
            sensitive: false,
            observed: obs.resource_fingerprint(&[format!("S:{unit}")]),
            ops: vec![Op::Systemctl { verb: "restart".into(), unit: unit.clone() }],
        });
    }
    actions.extend(restarts);
    Ok(HostPlan {
        host: state.host.clone(),
        fingerprint: obs.fingerprint.clone(),
        locked_by: obs.lock.as_ref().map(|l| l.holder.to_string()),
        unchanged,
        actions,
    })
}

fn action(id: &ResourceId, kind: ActionKind, reason: impl Into<String>, observed: String, ops: Vec<Op>) -> Option<Action> {
    Some(Action { resource: id.clone(), kind, reason: reason.into(), diff: None, sensitive: false, observed, ops })
}

/// chmod/chown ops and their reasons for an existing path.
fn attr_changes(path: &str, want: &Attrs, mode: u32, owner: &str, group: &str) -> (Vec<Op>, Vec<String>) {
    let mut ops = Vec::new();
    let mut why = Vec::new();
    if let Some(m) = want.mode
        && m != mode
    {
        ops.push(Op::Chmod { path: path.into(), mode: octal(m) });
        why.push(format!("mode {} → {}", octal(mode), octal(m)));
    }
    let o = want.owner.as_deref().filter(|o| *o != owner);
    let g = want.group.as_deref().filter(|g| *g != group);
    if o.is_some() || g.is_some() {
        ops.push(Op::Chown { path: path.into(), owner: o.map(str::to_string), group: g.map(str::to_string) });
        if let Some(o) = o {
            why.push(format!("owner {owner} → {o}"));
        }
        if let Some(g) = g {
            why.push(format!("group {group} → {g}"));
        }
    }
    (ops, why)
}

fn plan_resource(cx: &Cx<'_>, r: &ResolvedResource) -> Result<Option<Action>, EngineError> {
    let id = &r.id;
    let path_key = r.resource.path().map(|p| format!("P:{p}"));
    let observed = |extra: &[String]| {
        let mut keys: Vec<String> = path_key.iter().cloned().collect();
        keys.extend_from_slice(extra);
        cx.obs.resource_fingerprint(&keys)
    };
    match &r.resource.spec {
        Spec::Directory { path, attrs, ensure } => {
            let fp = observed(&[]);
            Ok(match (ensure, cx.path(path)?) {
                (Ensure::Present, PathState::Absent) => action(
                    id,
                    ActionKind::Create,
                    "directory does not exist",
                    fp,
                    vec![Op::Mkdir {
                        path: path.clone(),
                        mode: octal(attrs.mode.unwrap_or(0o755)),
                        owner: attrs.owner.clone(),
                        group: attrs.group.clone(),
                    }],
                ),
                (Ensure::Present, PathState::Dir { mode, owner, group }) => {
                    let (ops, why) = attr_changes(path, attrs, *mode, owner, group);
                    if ops.is_empty() { None } else { action(id, ActionKind::Update, why.join("; "), fp, ops) }
                }
                (Ensure::Present, other) => {
                    return Err(cx.conflict(id, format!("{} is in the way; remove it or change the resource", describe(other))));
                }
                (Ensure::Absent, PathState::Absent) => None,
                (Ensure::Absent, PathState::Other) => {
                    return Err(cx.conflict(id, "a special file (socket, device, fifo) is there; not removed".into()));
                }
                (Ensure::Absent, st) => action(
                    id,
                    ActionKind::Delete,
                    format!("{} exists", describe(st)),
                    fp,
                    vec![Op::Remove { path: path.clone(), recursive: matches!(st, PathState::Dir { .. }) }],
                ),
            })
        }
        Spec::File { path, attrs, ensure, .. } => plan_content(cx, r, path, attrs, *ensure, observed(&[])),
        Spec::Binary { path, attrs, ensure, .. } => plan_content(cx, r, path, attrs, *ensure, observed(&[])),
        Spec::Unit { name, ensure, .. } => {
            let path = r.resource.path().expect("units have a path");
            let attrs = Attrs { owner: None, group: None, mode: Some(0o644) };
            plan_content(cx, r, &path, &attrs, *ensure, observed(&[format!("S:{name}")]))
        }
        Spec::Symlink { path, target, ensure } => {
            let fp = observed(&[]);
            let link = vec![Op::Symlink { path: path.clone(), target: target.clone() }];
            Ok(match (ensure, cx.path(path)?) {
                (Ensure::Present, PathState::Absent) => {
                    action(id, ActionKind::Create, format!("link to {target} does not exist"), fp, link)
                }
                (Ensure::Present, PathState::Link { target: t }) if t == target => None,
                (Ensure::Present, PathState::Link { target: t }) => {
                    action(id, ActionKind::Update, format!("points to {t}, wanted {target}"), fp, link)
                }
                (Ensure::Present, PathState::File { .. }) => action(
                    id,
                    ActionKind::Update,
                    format!("a regular file is there; it is replaced by a link to {target}"),
                    fp,
                    link,
                ),
                (Ensure::Present, other) => {
                    return Err(cx.conflict(id, format!("{} is in the way; remove it or change the resource", describe(other))));
                }
                (Ensure::Absent, PathState::Link { target: t }) => action(
                    id,
                    ActionKind::Delete,
                    format!("link to {t} exists"),
                    fp,
                    vec![Op::Remove { path: path.clone(), recursive: false }],
                ),
                (Ensure::Absent, _) => None,
            })
        }
        Spec::Service { unit, enabled, running } => {
            let st = cx.obs.units.get(unit).cloned().unwrap_or_default();
            if st.load_state == "masked" || st.unit_file_state == "masked" {
                return Err(cx.conflict(id, format!("the unit is masked; unmask it with `systemctl unmask {unit}`")));
            }
            let mut ops = Vec::new();
            let mut why = Vec::new();
            let shown = |s: &str| if s.is_empty() { "not installed".to_string() } else { s.to_string() };
            match enabled {
                Some(true) if !st.is_enabled() => {
                    ops.push(Op::Systemctl { verb: "enable".into(), unit: unit.clone() });
                    why.push(format!("enable ({} → enabled)", shown(&st.unit_file_state)));
                }
                Some(false) if matches!(st.unit_file_state.as_str(), "enabled" | "enabled-runtime") => {
                    ops.push(Op::Systemctl { verb: "disable".into(), unit: unit.clone() });
                    why.push(format!("disable ({} → disabled)", st.unit_file_state));
                }
                _ => {}
            }
            match running {
                Some(true) if !st.is_running() => {
                    ops.push(Op::Systemctl { verb: "start".into(), unit: unit.clone() });
                    why.push(format!("start ({} → active)", shown(&st.active_state)));
                }
                Some(false) if st.is_running() => {
                    ops.push(Op::Systemctl { verb: "stop".into(), unit: unit.clone() });
                    why.push(format!("stop ({} → inactive)", st.active_state));
                }
                _ => {}
            }
            if ops.is_empty() {
                return Ok(None);
            }
            let kind = if st.load_state == "not-found" || st.load_state.is_empty() {
                ActionKind::Create
            } else {
                ActionKind::Update
            };
            Ok(action(id, kind, why.join("; "), cx.obs.resource_fingerprint(&[format!("S:{unit}")]), ops))
        }
        Spec::Command { name, command, guard } => {
            let g = cx.obs.guards.get(name).ok_or_else(|| EngineError::Observe {
                host: cx.host.to_string(),
                reason: format!("the host did not report the guard of command {name}"),
            })?;
            if !g.should_run {
                return Ok(None);
            }
            let reason = match guard {
                Guard::Creates(p) => format!("{p} does not exist"),
                Guard::Unless(c) => format!("check `{c}` failed (exit {})", g.check_exit),
            };
            Ok(action(
                id,
                ActionKind::Run,
                reason,
                cx.obs.resource_fingerprint(&[format!("G:{name}")]),
                vec![Op::Run { command: command.clone() }],
            ))
        }
    }
}

/// Files, units and binaries: content, then attributes.
fn plan_content(
    cx: &Cx<'_>,
    r: &ResolvedResource,
    path: &str,
    attrs: &Attrs,
    ensure: Ensure,
    fp: String,
) -> Result<Option<Action>, EngineError> {
    let id = &r.id;
    let state = cx.path(path)?;
    if ensure == Ensure::Absent {
        return Ok(match state {
            PathState::Absent => None,
            PathState::File { .. } | PathState::Link { .. } => action(
                id,
                ActionKind::Delete,
                format!("{} exists", describe(state)),
                fp,
                vec![Op::Remove { path: path.into(), recursive: false }],
            ),
            other => return Err(cx.conflict(id, format!("{} is there; not removed", describe(other)))),
        });
    }
    let body: &Resolved = r.body.as_ref().expect("present content resources are resolved");
    let diffable = r.diffable();
    let sensitive = matches!(r.resource.spec, Spec::File { .. } | Spec::Unit { .. }) && !diffable && body.text().is_some();
    let write = |mode: u32, owner: Option<String>, group: Option<String>| Op::Write {
        path: path.into(),
        sha256: body.sha256.clone(),
        size: body.size(),
        mode: octal(mode),
        owner,
        group,
    };
    let (kind, mut reason, op, old): (ActionKind, String, Op, Option<&[u8]>) = match state {
        PathState::Absent => (
            ActionKind::Create,
            "does not exist".into(),
            write(attrs.mode.unwrap_or(0o644), attrs.owner.clone(), attrs.group.clone()),
            Some(&[]),
        ),
        PathState::File { mode, owner, group, size, sha256 } => {
            if *sha256 == body.sha256 {
                let (ops, why) = attr_changes(path, attrs, *mode, owner, group);
                if ops.is_empty() {
                    return Ok(None);
                }
                return Ok(action(id, ActionKind::Update, why.join("; "), fp, ops));
            }
            let (_, why) = attr_changes(path, attrs, *mode, owner, group);
            let mut reason = match &r.resource.spec {
                Spec::Binary { .. } => format!("content changed ({size} → {} bytes)", body.size()),
                _ => "content changed".to_string(),
            };
            for w in why {
                reason.push_str("; ");
                reason.push_str(&w);
            }
            // Keep what is not specified as it is on the host.
            let op = write(
                attrs.mode.unwrap_or(*mode),
                Some(attrs.owner.clone().unwrap_or_else(|| owner.clone())),
                Some(attrs.group.clone().unwrap_or_else(|| group.clone())),
            );
            (ActionKind::Update, reason, op, cx.obs.contents.get(path).map(Vec::as_slice))
        }
        PathState::Link { target } => (
            ActionKind::Update,
            format!("a symlink to {target} is there; it is replaced by the file"),
            write(attrs.mode.unwrap_or(0o644), attrs.owner.clone(), attrs.group.clone()),
            None,
        ),
        other => return Err(cx.conflict(id, format!("{} is in the way; remove it or change the resource", describe(other)))),
    };
    let mut a = Action { resource: id.clone(), kind, reason: String::new(), diff: None, sensitive, observed: fp, ops: vec![op] };
    if diffable {
        match (old, body.text()) {
            (Some(old), Some(new)) => {
                a.diff = diff::unified(path, old, new.as_bytes());
                if a.diff.is_none() {
                    reason.push_str(" (the host's content is not text; no diff)");
                }
            }
            (None, _) if kind == ActionKind::Update && matches!(state, PathState::File { size, .. } if *size > MAX_DIFF_BYTES) => {
                reason.push_str(&format!(" (over {} KiB on the host; no diff)", MAX_DIFF_BYTES / 1024));
            }
            _ => {}
        }
    }
    a.reason = reason;
    Ok(Some(a))
}

fn describe(st: &PathState) -> String {
    match st {
        PathState::Absent => "nothing".into(),
        PathState::File { .. } => "a regular file".into(),
        PathState::Dir { .. } => "a directory".into(),
        PathState::Link { target } => format!("a symlink to {target}"),
        PathState::Other => "a special file (socket, device or fifo)".into(),
    }
}

/// Check a saved plan's host against the freshly resolved desired state: every
/// action's resource must still be wanted, with the same content.
pub(crate) fn check_against(plan: &HostPlan, states: &[&ResolvedState]) -> Result<(), EngineError> {
    let by_id: HashMap<&ResourceId, &ResolvedResource> =
        states.iter().flat_map(|s| s.resources.iter()).map(|r| (&r.id, r)).collect();
    let mismatch = |reason: String| EngineError::PlanMismatch { host: plan.host.clone(), reason };
    for a in &plan.actions {
        if a.resource.as_str() == DAEMON_RELOAD_ID {
            continue;
        }
        let Some(r) = by_id.get(&a.resource) else {
            return Err(mismatch(format!("{} is no longer in the desired state", a.resource)));
        };
        for op in &a.ops {
            if let Op::Write { sha256, .. } = op
                && r.body.as_ref().map(|b| &b.sha256) != Some(sha256)
            {
                return Err(mismatch(format!("the content of {} changed since the plan was made", a.resource)));
            }
        }
    }
    Ok(())
}
