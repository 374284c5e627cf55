//! The desired state of a host, checked and resolved.
//!
//! [`DesiredState`] is what callers build: a host name, an ordered list of
//! resources and the template context. [`DesiredState::resolve`] checks it
//! (unique ids, known dependencies and notify targets, no cycles, sane paths
//! and names), orders it, renders templates, reads small files and hashes
//! binaries.
//!
//! Order: dependencies first (explicit `depends_on`; a managed parent
//! directory; every unit file before every service; a notified service after
//! what notifies it), otherwise declaration order, except that streamed
//! binaries go as late as their dependents allow, so that their upload, which
//! starts as soon as the host is locked, overlaps everything else. Anything
//! that needs a binary in place must say so with `depends_on` or `notify`.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::content::{Body, Resolved, digest_file};
use crate::error::EngineError;
use crate::resource::{Ensure, Resource, ResourceId, Spec};
use crate::template::TemplateContext;

/// What one host should look like (for one step of a rollout).
#[derive(Debug, Clone)]
pub struct DesiredState {
    pub host: String,
    pub resources: Vec<Resource>,
    pub context: Option<TemplateContext>,
}

impl DesiredState {
    pub fn new(host: impl Into<String>) -> Self {
        DesiredState {
            host: host.into(),
            resources: Vec::new(),
            context: None,
        }
    }

    /// The values templates see (see [`TemplateContext`]).
    pub fn with_context(mut self, ctx: TemplateContext) -> Self {
        self.context = Some(ctx);
        self
    }

    pub fn with(mut self, r: Resource) -> Self {
        self.resources.push(r);
        self
    }

    pub fn push(&mut self, r: Resource) -> &mut Self {
        self.resources.push(r);
        self
    }

    /// Check, order and resolve (see the module docs).
    pub async fn resolve(&self) -> Result<ResolvedState, EngineError> {
        self.resolve_with(&HashMap::new()).await
    }

    /// [`DesiredState::resolve`], taking binary digests from `digests` when there.
    pub(crate) async fn resolve_with(
        &self,
        digests: &HashMap<std::path::PathBuf, crate::content::LocalDigest>,
    ) -> Result<ResolvedState, EngineError> {
        let order = self.check_and_order()?;
        let mut resources = Vec::with_capacity(order.len());
        for i in order {
            let r = &self.resources[i];
            let body = match &r.spec {
                Spec::File {
                    content,
                    ensure: Ensure::Present,
                    ..
                }
                | Spec::Unit {
                    content,
                    ensure: Ensure::Present,
                    ..
                } => Some(Resolved::from_bytes(
                    content.resolve(&self.host, self.context.as_ref())?,
                )),
                Spec::Binary {
                    source,
                    ensure: Ensure::Present,
                    ..
                } => {
                    let (sha256, size, stamp) = match digests.get(source) {
                        Some(d) => d.clone(),
                        None => digest_file(source).await?,
                    };
                    Some(Resolved {
                        body: Body::Local {
                            path: source.clone(),
                            size,
                            stamp,
                        },
                        sha256,
                    })
                }
                _ => None,
            };
            resources.push(ResolvedResource {
                id: r.id(),
                resource: r.clone(),
                body,
            });
        }
        Ok(ResolvedState {
            host: self.host.clone(),
            resources,
        })
    }

    fn invalid(&self, reason: String) -> EngineError {
        EngineError::Invalid {
            host: self.host.clone(),
            reason,
        }
    }

    /// Validate and return the indices of resources in apply order.
    fn check_and_order(&self) -> Result<Vec<usize>, EngineError> {
        let ids: Vec<ResourceId> = self.resources.iter().map(Resource::id).collect();
        let mut index = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            if index.insert(id.clone(), i).is_some() {
                return Err(self.invalid(format!("{id} is declared twice")));
            }
        }
        for r in &self.resources {
            self.check_resource(r)?;
        }
        // Edges: explicit dependencies, plus the implicit ones.
        let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); ids.len()];
        let dir_paths: HashMap<String, usize> = self
            .resources
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.spec {
                Spec::Directory {
                    path,
                    ensure: Ensure::Present,
                    ..
                } => Some((path.trim_end_matches('/').to_string(), i)),
                _ => None,
            })
            .collect();
        // Unit files to install come before every service (one daemon-reload
        // serves them all); a unit file to remove comes after its own service,
        // which must be stopped and disabled while systemd still has the file.
        let units: Vec<usize> = (0..ids.len())
            .filter(|&i| {
                matches!(
                    self.resources[i].spec,
                    Spec::Unit {
                        ensure: Ensure::Present,
                        ..
                    }
                )
            })
            .collect();
        for (i, r) in self.resources.iter().enumerate() {
            for d in &r.depends_on {
                let j = *index.get(d).ok_or_else(|| {
                    self.invalid(format!(
                        "{} depends on {d}, which is not declared for this host",
                        ids[i]
                    ))
                })?;
                deps[i].insert(j);
            }
            for n in &r.notify {
                match index.get(n).map(|&j| &self.resources[j].spec) {
                    Some(Spec::Service { .. }) => {}
                    Some(_) => {
                        return Err(self
                            .invalid(format!("{} notifies {n}, which is not a service", ids[i])));
                    }
                    None => {
                        return Err(self.invalid(format!(
                            "{} notifies {n}, which is not declared for this host (add Resource::service)",
                            ids[i]
                        )));
                    }
                }
            }
            // The nearest managed ancestor directory comes first.
            if let Some(path) = r.path() {
                let mut p = path.trim_end_matches('/');
                while let Some((parent, _)) = p.rsplit_once('/') {
                    if let Some(&j) = dir_paths.get(parent)
                        && j != i
                    {
                        deps[i].insert(j);
                        break;
                    }
                    p = parent;
                }
            }
            if matches!(r.spec, Spec::Service { .. }) {
                deps[i].extend(units.iter().copied());
            }
            if let Spec::Unit {
                name,
                ensure: Ensure::Absent,
                ..
            } = &r.spec
                && let Some(&j) = index.get(&ResourceId::service(name))
            {
                deps[i].insert(j);
            }
            // A probe without dependencies gates everything declared before it.
            if matches!(r.spec, Spec::Probe { .. }) && r.depends_on.is_empty() {
                deps[i].extend(0..i);
            }
        }
        // A notified service comes after what notifies it: a service started by
        // this run starts with its files in place.
        for (i, r) in self.resources.iter().enumerate() {
            for n in &r.notify {
                if let Some(&j) = index.get(n) {
                    deps[j].insert(i);
                }
            }
        }
        // Kahn's algorithm, always taking the lowest declared index that is
        // ready, except that streamed binaries wait until nothing else is ready:
        // their upload then overlaps everything that does not need them.
        let is_binary = |i: usize| {
            matches!(
                self.resources[i].spec,
                Spec::Binary {
                    ensure: Ensure::Present,
                    ..
                }
            )
        };
        let mut remaining: Vec<usize> = deps.iter().map(BTreeSet::len).collect();
        let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); ids.len()];
        for (i, ds) in deps.iter().enumerate() {
            for &d in ds {
                dependents[d].push(i);
            }
        }
        let mut ready: BTreeSet<usize> = (0..ids.len()).filter(|&i| remaining[i] == 0).collect();
        let mut order = Vec::with_capacity(ids.len());
        while let Some(i) = ready
            .iter()
            .copied()
            .find(|&i| !is_binary(i))
            .or_else(|| ready.first().copied())
        {
            ready.remove(&i);
            order.push(i);
            for &k in &dependents[i] {
                remaining[k] -= 1;
                if remaining[k] == 0 {
                    ready.insert(k);
                }
            }
        }
        if order.len() != ids.len() {
            let placed: HashSet<usize> = order.iter().copied().collect();
            let cycle: Vec<String> = (0..ids.len())
                .filter(|i| !placed.contains(i))
                .map(|i| ids[i].to_string())
                .collect();
            return Err(self.invalid(format!("dependency cycle among {}", cycle.join(", "))));
        }
        Ok(order)
    }

    fn check_resource(&self, r: &Resource) -> Result<(), EngineError> {
        let id = r.id();
        if let Some(path) = r.path() {
            check_path(&path).map_err(|e| self.invalid(format!("{id}: {e}")))?;
        }
        match &r.spec {
            Spec::Symlink { target, .. }
                if target.is_empty() || target.contains(['\n', '\t', '\0']) =>
            {
                return Err(self.invalid(format!(
                    "{id}: the link target must be one line without tabs"
                )));
            }
            Spec::Unit { name, .. } | Spec::Service { unit: name, .. } if !valid_unit(name) => {
                return Err(self.invalid(format!(
                    "{id}: {name:?} is not a systemd unit name (letters, digits, `@._:-`, with a suffix like .service)"
                )));
            }
            Spec::Command { name, .. }
                if name.is_empty() || name.contains(['\n', '\t', '\0', ' ']) =>
            {
                return Err(self.invalid(format!("{id}: a command name is one word")));
            }
            Spec::Probe { name, .. }
                if name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
            {
                return Err(self.invalid(format!(
                    "{id}: a probe name is one word of letters, digits, `._-`"
                )));
            }
            Spec::Probe {
                timeout, interval, ..
            } if timeout.is_zero() || interval.is_zero() => {
                return Err(self.invalid(format!(
                    "{id}: a probe needs a timeout and an interval above zero"
                )));
            }
            Spec::Command {
                guard: crate::Guard::Creates(p),
                ..
            } => {
                check_path(p).map_err(|e| self.invalid(format!("{id}: creates: {e}")))?;
            }
            _ => {}
        }
        if let Spec::Directory { attrs, .. }
        | Spec::File { attrs, .. }
        | Spec::Binary { attrs, .. } = &r.spec
        {
            for name in [&attrs.owner, &attrs.group].into_iter().flatten() {
                if name.is_empty()
                    || name.len() > 64
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
                {
                    return Err(self.invalid(format!("{id}: {name:?} is not a user or group name")));
                }
            }
            if attrs.mode.is_some_and(|m| m > 0o7777) {
                return Err(self.invalid(format!(
                    "{id}: mode {:o} is not a permission mode",
                    attrs.mode.unwrap_or(0)
                )));
            }
        }
        Ok(())
    }
}

fn check_path(p: &str) -> Result<(), String> {
    if !p.starts_with('/') || p == "/" {
        return Err(format!("{p:?} must be an absolute path below /"));
    }
    if p.contains(['\n', '\t', '\0', '\\']) {
        return Err(format!("{p:?} contains a tab, newline or backslash"));
    }
    if p.split('/').any(|c| c == ".." || c == ".") {
        return Err(format!("{p:?} must not contain `.` or `..`"));
    }
    Ok(())
}

fn valid_unit(name: &str) -> bool {
    name.contains('.')
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._:-\\".contains(&b))
}

/// A resource with its id and resolved content.
#[derive(Debug, Clone)]
pub struct ResolvedResource {
    pub id: ResourceId,
    pub resource: Resource,
    pub body: Option<Resolved>,
}

impl ResolvedResource {
    /// Whether a content change is shown as a diff (in-memory text, not sensitive).
    pub fn diffable(&self) -> bool {
        match &self.resource.spec {
            Spec::File {
                sensitive, attrs, ..
            } => {
                !*sensitive
                    && attrs.mode.is_none_or(|m| m & 0o004 != 0)
                    && self.body.as_ref().is_some_and(|b| b.text().is_some())
            }
            Spec::Unit { .. } => self.body.as_ref().is_some_and(|b| b.text().is_some()),
            _ => false,
        }
    }
}

/// A checked, ordered, resolved desired state.
#[derive(Debug, Clone)]
pub struct ResolvedState {
    pub host: String,
    pub resources: Vec<ResolvedResource>,
}

impl ResolvedState {
    pub fn get(&self, id: &ResourceId) -> Option<&ResolvedResource> {
        self.resources.iter().find(|r| &r.id == id)
    }
}
