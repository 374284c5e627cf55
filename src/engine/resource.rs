//! Resources: the things the engine manages on a host, and how they relate.
//!
//! Each resource has a stable id derived from what it manages (`file:/etc/x`,
//! `service:demo.service`, `command:NAME`), so dependencies and notifications
//! can name it and so a saved plan can be matched against a freshly built
//! desired state. Constructors take what is required; the chainable methods
//! (`mode`, `owner`, `depends_on`, `notify`, ...) take the rest.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::content::Content;
use crate::probe::ProbeCheck;

/// Where systemd units written by the engine live.
pub const UNIT_DIR: &str = "/etc/systemd/system";

/// A readable rendering of a file's content, for the plan's diff.
pub type DiffView = fn(&[u8]) -> String;

/// A resource's stable identity: `KIND:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceId(pub String);

impl ResourceId {
    pub fn dir(path: &str) -> Self {
        ResourceId(format!("dir:{path}"))
    }
    pub fn file(path: &str) -> Self {
        ResourceId(format!("file:{path}"))
    }
    pub fn binary(path: &str) -> Self {
        ResourceId(format!("binary:{path}"))
    }
    pub fn symlink(path: &str) -> Self {
        ResourceId(format!("link:{path}"))
    }
    pub fn unit(name: &str) -> Self {
        ResourceId(format!("unit:{name}"))
    }
    pub fn service(unit: &str) -> Self {
        ResourceId(format!("service:{unit}"))
    }
    pub fn command(name: &str) -> Self {
        ResourceId(format!("command:{name}"))
    }
    pub fn probe(name: &str) -> Self {
        ResourceId(format!("probe:{name}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for ResourceId {
    fn from(s: &str) -> Self {
        ResourceId(s.to_string())
    }
}

/// Whether a path resource should exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ensure {
    #[default]
    Present,
    Absent,
}

/// Ownership and permissions. `None` leaves that attribute alone (a new path
/// gets root and the engine's default mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    pub owner: Option<String>,
    pub group: Option<String>,
    pub mode: Option<u32>,
}

/// When a command runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// Run only if this path does not exist (Ansible's `creates:`).
    Creates(String),
    /// Run only if this check command fails (exit non-zero). The check must
    /// have no side effects: it runs on every observation.
    Unless(String),
}

/// What a resource manages.
#[derive(Debug, Clone)]
pub enum Spec {
    Directory {
        path: String,
        attrs: Attrs,
        ensure: Ensure,
    },
    /// A configuration file: its content is held in memory (and diffed when it is text).
    File {
        path: String,
        content: Content,
        attrs: Attrs,
        ensure: Ensure,
        sensitive: bool,
        /// How the plan shows a change of content (see [`Resource::diff_view`]).
        view: Option<DiffView>,
    },
    /// A large file streamed from the workstation, never held in memory and never diffed.
    Binary {
        path: String,
        source: PathBuf,
        attrs: Attrs,
        ensure: Ensure,
    },
    Symlink {
        path: String,
        target: String,
        ensure: Ensure,
    },
    /// A unit file under [`UNIT_DIR`]; a change triggers one `daemon-reload`.
    Unit {
        name: String,
        content: Content,
        ensure: Ensure,
    },
    /// The state of a unit. `None` leaves that aspect alone.
    Service {
        unit: String,
        enabled: Option<bool>,
        running: Option<bool>,
    },
    /// A command run as root with `sh -c`, only when its guard says so.
    Command {
        name: String,
        command: String,
        guard: Guard,
    },
    /// A health gate (see `probe.rs`): never changes the host; waits until
    /// `check` passes, after the resources it depends on changed.
    Probe {
        name: String,
        check: ProbeCheck,
        timeout: std::time::Duration,
        interval: std::time::Duration,
    },
}

/// One managed thing, with its ordering and notification edges.
#[derive(Debug, Clone)]
pub struct Resource {
    pub spec: Spec,
    /// Resources that must be applied before this one (besides the implicit
    /// ones: a managed parent directory, a service's unit).
    pub depends_on: Vec<ResourceId>,
    /// Services to restart (once, at the end of the host's step) when this
    /// resource is created or updated.
    pub notify: Vec<ResourceId>,
}

impl Resource {
    fn new(spec: Spec) -> Self {
        Resource {
            spec,
            depends_on: Vec::new(),
            notify: Vec::new(),
        }
    }

    pub fn directory(path: impl Into<String>) -> Self {
        Self::new(Spec::Directory {
            path: path.into(),
            attrs: Attrs::default(),
            ensure: Ensure::Present,
        })
    }

    pub fn file(path: impl Into<String>, content: Content) -> Self {
        Self::new(Spec::File {
            path: path.into(),
            content,
            attrs: Attrs::default(),
            ensure: Ensure::Present,
            sensitive: false,
            view: None,
        })
    }

    pub fn binary(path: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        Self::new(Spec::Binary {
            path: path.into(),
            source: source.into(),
            attrs: Attrs::default(),
            ensure: Ensure::Present,
        })
    }

    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::new(Spec::Symlink {
            path: path.into(),
            target: target.into(),
            ensure: Ensure::Present,
        })
    }

    /// A unit file `/etc/systemd/system/NAME` (NAME like `demo.service`).
    pub fn unit(name: impl Into<String>, content: Content) -> Self {
        Self::new(Spec::Unit {
            name: name.into(),
            content,
            ensure: Ensure::Present,
        })
    }

    /// The unit enabled and running.
    pub fn service(unit: impl Into<String>) -> Self {
        Self::new(Spec::Service {
            unit: unit.into(),
            enabled: Some(true),
            running: Some(true),
        })
    }

    pub fn command(name: impl Into<String>, command: impl Into<String>, guard: Guard) -> Self {
        Self::new(Spec::Command {
            name: name.into(),
            command: command.into(),
            guard,
        })
    }

    /// A health gate named `name` (one word): wait until `check` passes,
    /// trying every `interval` for at most `timeout`, whenever a resource it
    /// `depends_on` changed (see `probe.rs` for when else it runs).
    pub fn probe(
        name: impl Into<String>,
        check: ProbeCheck,
        timeout: std::time::Duration,
        interval: std::time::Duration,
    ) -> Self {
        Self::new(Spec::Probe {
            name: name.into(),
            check,
            timeout,
            interval,
        })
    }

    /// The stable id (see [`ResourceId`]).
    pub fn id(&self) -> ResourceId {
        match &self.spec {
            Spec::Directory { path, .. } => ResourceId::dir(path),
            Spec::File { path, .. } => ResourceId::file(path),
            Spec::Binary { path, .. } => ResourceId::binary(path),
            Spec::Symlink { path, .. } => ResourceId::symlink(path),
            Spec::Unit { name, .. } => ResourceId::unit(name),
            Spec::Service { unit, .. } => ResourceId::service(unit),
            Spec::Command { name, .. } => ResourceId::command(name),
            Spec::Probe { name, .. } => ResourceId::probe(name),
        }
    }

    /// The remote path this resource manages, if it manages one.
    pub fn path(&self) -> Option<String> {
        match &self.spec {
            Spec::Directory { path, .. }
            | Spec::File { path, .. }
            | Spec::Binary { path, .. }
            | Spec::Symlink { path, .. } => Some(path.clone()),
            Spec::Unit { name, .. } => Some(format!("{UNIT_DIR}/{name}")),
            Spec::Service { .. } | Spec::Command { .. } | Spec::Probe { .. } => None,
        }
    }

    fn attrs_mut(&mut self) -> Option<&mut Attrs> {
        match &mut self.spec {
            Spec::Directory { attrs, .. }
            | Spec::File { attrs, .. }
            | Spec::Binary { attrs, .. } => Some(attrs),
            _ => None,
        }
    }

    /// Permission bits (directories, files, binaries; ignored elsewhere).
    pub fn mode(mut self, mode: u32) -> Self {
        if let Some(a) = self.attrs_mut() {
            a.mode = Some(mode);
        }
        self
    }

    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        if let Some(a) = self.attrs_mut() {
            a.owner = Some(owner.into());
        }
        self
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        if let Some(a) = self.attrs_mut() {
            a.group = Some(group.into());
        }
        self
    }

    /// The path must not exist (directories are removed with their content);
    /// for a service: stopped and disabled. Commands and probes have no
    /// absent form and are left as they are (see [`crate::DesiredState::removal`]).
    pub fn absent(mut self) -> Self {
        match &mut self.spec {
            Spec::Directory { ensure, .. }
            | Spec::File { ensure, .. }
            | Spec::Binary { ensure, .. }
            | Spec::Symlink { ensure, .. }
            | Spec::Unit { ensure, .. } => *ensure = Ensure::Absent,
            Spec::Service {
                enabled, running, ..
            } => {
                *enabled = Some(false);
                *running = Some(false);
            }
            Spec::Command { .. } | Spec::Probe { .. } => {}
        }
        self
    }

    /// Whether this resource says something must be gone (a path absent, a
    /// service stopped and disabled).
    pub fn is_absent(&self) -> bool {
        match &self.spec {
            Spec::Directory { ensure, .. }
            | Spec::File { ensure, .. }
            | Spec::Binary { ensure, .. }
            | Spec::Symlink { ensure, .. }
            | Spec::Unit { ensure, .. } => *ensure == Ensure::Absent,
            Spec::Service {
                enabled, running, ..
            } => *enabled == Some(false) && *running == Some(false),
            Spec::Command { .. } | Spec::Probe { .. } => false,
        }
    }

    /// Never show this file's content: no diff in the plan, and the host never
    /// sends it back. Files whose mode is not world-readable are treated so
    /// without asking.
    pub fn sensitive(mut self) -> Self {
        if let Spec::File { sensitive, .. } = &mut self.spec {
            *sensitive = true;
        }
        self
    }

    /// For a file: the plan diffs `view(old)` against `view(new)` instead of
    /// the raw contents. Why: some text says little to a person as it is (a
    /// PEM certificate is base64); its view (subject, names, validity) shows
    /// what changed. Apply still compares and writes the raw bytes.
    pub fn diff_view(mut self, f: DiffView) -> Self {
        if let Spec::File { view, .. } = &mut self.spec {
            *view = Some(f);
        }
        self
    }

    /// For a service: whether it should be enabled at boot.
    pub fn enabled(mut self, want: bool) -> Self {
        if let Spec::Service { enabled, .. } = &mut self.spec {
            *enabled = Some(want);
        }
        self
    }

    /// For a service: whether it should be running.
    pub fn running(mut self, want: bool) -> Self {
        if let Spec::Service { running, .. } = &mut self.spec {
            *running = Some(want);
        }
        self
    }

    pub fn depends_on(mut self, id: impl Into<ResourceId>) -> Self {
        self.depends_on.push(id.into());
        self
    }

    pub fn notify(mut self, service: impl Into<ResourceId>) -> Self {
        self.notify.push(service.into());
        self
    }
}

impl From<String> for ResourceId {
    fn from(s: String) -> Self {
        ResourceId(s)
    }
}
