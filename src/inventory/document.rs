//! The whole inventory document: its version header and its sections.
//!
//! Top-level keys starting with `x-` are ignored, as in Compose files, so
//! that shared settings can be written once under an anchor
//! (`x-workers: &workers {...}`) and merged into hosts with `<<: *workers`.
//!
//! This is the one place that lists the top-level sections. A new section
//! (for example `files:` or `services:`) is a field here, one `m.get(..)` line
//! in [`decode`], and its own module with a `decode` function.

use std::path::PathBuf;

use serde::Serialize;

use crate::cluster::{self, Cluster, Options};
use crate::commands::{self, CommandSpec};
use crate::decode::{Cx, suggest};
use crate::files::{self, FileSpec};
use crate::host::{self, Host, HostPos, Role};
use crate::services::{self, ServiceSpec};
use crate::ssh::{self, SshPos, SshSettings};
use crate::yaml::{Pos, Spanned};

/// The `apiVersion`s this build reads, oldest first.
pub const SUPPORTED_API_VERSIONS: &[&str] = &["k8sup.io/v1alpha1"];
/// The version `k8sup init` writes.
pub const CURRENT_API_VERSION: &str = "k8sup.io/v1alpha1";
pub const KIND: &str = "Cluster";

/// A validated inventory. Everything in it has been checked; consumers can
/// rely on unique host names and addresses, at least one control plane, and
/// resolvable `proxyJump`s.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    pub api_version: String,
    pub kind: String,
    pub cluster: Cluster,
    pub options: Options,
    /// Defaults for every host; see [`Inventory::effective_ssh`].
    pub ssh: SshSettings,
    pub hosts: Vec<Host>,
    /// Files, directories and links to put on hosts (the user's own).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// systemd services to install and keep in a state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceSpec>,
    /// Guarded commands to run on hosts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandSpec>,
    /// Absolute path of the file it was read from; relative paths in the
    /// inventory (identity files, known_hosts) are relative to its directory.
    #[serde(skip)]
    pub path: PathBuf,
}

impl Inventory {
    /// The host with this name.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Control-plane hosts, in file order.
    pub fn control_planes(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role == Role::ControlPlane)
    }

    /// Worker hosts, in file order.
    pub fn workers(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.role == Role::Worker)
    }
}

/// What the whole-inventory checks need besides the typed inventory.
pub(crate) struct Positions {
    pub root: Pos,
    pub ssh: SshPos,
    pub hosts: Vec<HostPos>,
    /// Every host entry's `name` as written, with its position.
    pub names: Vec<(String, Pos)>,
    /// False when some host entry could not be read; counting checks
    /// (such as "no control-plane host") are then skipped as unreliable.
    pub all_hosts_read: bool,
}

pub(crate) fn decode(cx: &mut Cx<'_>, root: &Spanned, path: PathBuf) -> Option<Draft> {
    let mut m = cx.map(root, "the inventory")?;
    m.allow_prefix("x-");
    let api_version = m.required(cx, "apiVersion").and_then(|n| {
        let v = cx.string(n, "'apiVersion'")?;
        if SUPPORTED_API_VERSIONS.contains(&v.as_str()) {
            return Some(v);
        }
        let shown = cx.shown(n);
        let list = SUPPORTED_API_VERSIONS.join(", ");
        let d = cx.sink.error(
            n.pos,
            format!("unsupported apiVersion {shown}; this k8sup reads: {list}"),
        );
        match suggest(&v, SUPPORTED_API_VERSIONS.iter().copied()) {
            Some(g) => d.help(format!("did you mean '{g}'?")),
            None => d.help("a newer k8sup may read it; or start again from `k8sup init`"),
        };
        None
    });
    let kind = m.required(cx, "kind").and_then(|n| {
        let v = cx.string(n, "'kind'")?;
        if v == KIND {
            return Some(v);
        }
        let shown = cx.shown(n);
        cx.sink
            .error(n.pos, format!("unknown kind {shown}, expected '{KIND}'"))
            .help(format!("write 'kind: {KIND}'"));
        None
    });
    let base = path.parent().map(PathBuf::from).unwrap_or_default();
    let cluster = m
        .required(cx, "cluster")
        .and_then(|n| cluster::decode_cluster(cx, n, &base));
    let options = cluster::decode_options(cx, m.get("options"));
    let (ssh, ssh_pos) = match m.get("ssh") {
        Some(n) => ssh::decode(cx, n, "'ssh'"),
        None => (SshSettings::default(), SshPos::default()),
    };
    let mut all_hosts_read = true;
    let hosts_yaml = m.required(cx, "hosts");
    let hosts = hosts_yaml.and_then(|n| {
        let list = cx.list(n, "'hosts'", |cx, item| {
            let index = match &n.kind {
                crate::yaml::Kind::Seq(items) => items
                    .iter()
                    .position(|x| std::ptr::eq(x, item))
                    .unwrap_or(0),
                _ => 0,
            };
            host::decode(cx, item, index)
        });
        if let Some(l) = &list
            && let crate::yaml::Kind::Seq(items) = &n.kind
            && l.len() != items.len()
        {
            all_hosts_read = false;
        }
        if list.is_none() {
            all_hosts_read = false;
        }
        if list.as_ref().is_some_and(Vec::is_empty) && all_hosts_read {
            cx.sink
                .error(n.pos, "'hosts' is empty")
                .help("list at least one host with name, address and role: control-plane");
            return None;
        }
        list
    });
    // Workload sections target hosts by name and group, so they are read
    // after the hosts; names cannot be checked when the hosts failed.
    let known = all_hosts_read
        .then(|| {
            hosts
                .as_ref()
                .map(|h| h.iter().map(|(h, _)| h.clone()).collect::<Vec<_>>())
        })
        .flatten();
    let files = m.get("files").map_or(Some(Vec::new()), |n| {
        files::decode(cx, n, known.as_deref(), &base)
    });
    let services = m.get("services").map_or(Some(Vec::new()), |n| {
        services::decode(cx, n, known.as_deref(), &base)
    });
    let commands = m.get("commands").map_or(Some(Vec::new()), |n| {
        commands::decode(cx, n, known.as_deref())
    });
    m.finish(cx);

    // Host names as written, including hosts that could not be read in
    // full, so that a duplicate name is reported even next to other errors.
    let mut names = Vec::new();
    if let Some(crate::yaml::Kind::Seq(items)) = hosts_yaml.map(|n| &n.kind) {
        for item in items {
            if let crate::yaml::Kind::Map(entries) = &item.kind
                && let Some(e) = entries.iter().find(|e| e.key == "name")
                && let crate::yaml::Kind::Scalar(s) = &e.value.kind
                && !s.is_null()
                && !s.poisoned
            {
                names.push((s.value.clone(), e.value.pos));
            }
        }
    }
    let (hosts, host_pos): (Vec<Host>, Vec<HostPos>) =
        hosts.unwrap_or_default().into_iter().unzip();
    Some(Draft {
        api_version,
        kind,
        cluster,
        options,
        ssh,
        hosts,
        files,
        services,
        commands,
        path,
        positions: Positions {
            root: root.pos,
            ssh: ssh_pos,
            hosts: host_pos,
            names,
            all_hosts_read,
        },
    })
}

/// The inventory as far as it could be read: whole-inventory checks run on
/// it even when a section failed, so that every problem is reported at once.
pub(crate) struct Draft {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub cluster: Option<Cluster>,
    pub options: Options,
    pub ssh: SshSettings,
    pub hosts: Vec<Host>,
    pub files: Option<Vec<FileSpec>>,
    pub services: Option<Vec<ServiceSpec>>,
    pub commands: Option<Vec<CommandSpec>>,
    pub path: PathBuf,
    pub positions: Positions,
}

impl Draft {
    /// The finished inventory, if every required part was read.
    pub(crate) fn finish(self) -> Option<Inventory> {
        Some(Inventory {
            api_version: self.api_version?,
            kind: self.kind?,
            cluster: self.cluster?,
            options: self.options,
            ssh: self.ssh,
            hosts: self.hosts,
            files: self.files?,
            services: self.services?,
            commands: self.commands?,
            path: self.path,
        })
    }
}
