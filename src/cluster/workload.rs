//! The user's own workload: the inventory's `files:`, `services:` and
//! `commands:`, as engine resources for one host.
//!
//! These files are the user's data, not k8sup's: their content comes from
//! the inventory (inline, a local file, or the user's own minijinja
//! template), never from `templates/` (see ARCHITECTURE.md, "Templates").

use anyhow::{Context, Result};
use k8sup_engine::{Content, DesiredState, Guard, Resource, ResourceId, TemplateContext};
use k8sup_inventory::{FileKind, Host, Inventory, ServiceState, Source};

/// Resources for one host, in inventory order: files, then services, then
/// commands. The engine adds the implicit edges (a file after its managed
/// parent directory, a service after its unit).
pub fn host_state(inventory: &Inventory, host: &Host) -> Result<DesiredState> {
    let context = TemplateContext::new(&host_view(inventory, host), &host.vars, inventory);
    let mut state = DesiredState::new(host.name.clone()).with_context(context);
    for f in inventory.files.iter().filter(|f| f.targets.matches(host)) {
        let mut r = match &f.kind {
            FileKind::Directory => Resource::directory(&f.path),
            FileKind::Link { target } => Resource::symlink(&f.path, target),
            FileKind::File {
                source: Source::Src(p),
            } => Resource::binary(&f.path, p),
            FileKind::File { source } => Resource::file(&f.path, content(source)?),
        };
        if let Some(m) = f.mode {
            r = r.mode(m);
        }
        if let Some(o) = &f.owner {
            r = r.owner(o);
        }
        if let Some(g) = &f.group {
            r = r.group(g);
        }
        for s in &f.notify {
            r = r.notify(ResourceId::service(&unit(s)));
        }
        state.push(r);
    }
    for s in inventory
        .services
        .iter()
        .filter(|s| s.targets.matches(host))
    {
        if let Some(source) = &s.unit {
            state.push(Resource::unit(unit(&s.name), content(source)?));
        }
        state.push(
            Resource::service(unit(&s.name))
                .enabled(s.enabled)
                .running(s.state == ServiceState::Running),
        );
    }
    // Commands come after every file of the host, binaries included (the
    // engine would otherwise let a large upload overlap them): a command
    // written after the files may use them.
    let files: Vec<ResourceId> = state
        .resources
        .iter()
        .filter(|r| r.path().is_some())
        .map(|r| r.id())
        .collect();
    for c in inventory
        .commands
        .iter()
        .filter(|c| c.targets.matches(host))
    {
        let guard = match (&c.creates, &c.unless) {
            (Some(path), None) => Guard::Creates(path.clone()),
            (None, Some(check)) => Guard::Unless(check.clone()),
            // Both: run only while the path is absent and the check fails.
            (Some(path), Some(check)) => {
                Guard::Unless(format!("test -e {} || {{ {check}\n}}", quote(path)?))
            }
            // No guard (warned about when the inventory is read): always run.
            (None, None) => Guard::Unless("false".into()),
        };
        let mut r = Resource::command(&c.name, &c.run, guard);
        for f in &files {
            r = r.depends_on(f.clone());
        }
        state.push(r);
    }
    Ok(state)
}

/// `path` as one word of POSIX shell.
fn quote(path: &str) -> Result<String> {
    Ok(shlex::try_quote(path)
        .with_context(|| format!("the path {path:?} cannot be written in a shell command"))?
        .into_owned())
}

fn unit(name: &str) -> String {
    format!("{name}.service")
}

fn content(source: &Source) -> Result<Content> {
    Ok(match source {
        Source::Content(text) => Content::text(text.clone()),
        Source::Src(p) => Content::local(p),
        Source::Template(p) => {
            Content::template_file(p).with_context(|| format!("template {}", p.display()))?
        }
    })
}

/// What templates see as `host`: the inventory host plus its role as a word
/// and whether it is the first control plane (for "run once" logic).
fn host_view(inventory: &Inventory, host: &Host) -> serde_json::Value {
    let mut v = serde_json::to_value(host).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        let first_cp = inventory
            .control_planes()
            .next()
            .is_some_and(|c| c.name == host.name);
        map.insert("firstControlPlane".into(), first_cp.into());
        map.remove("ssh");
    }
    v
}
