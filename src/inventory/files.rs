//! The `files:` section: files, directories and symlinks to put on hosts,
//! the user's own (k0sctl's `files[]`, Ansible's copy/template/file).
//!
//! ```yaml
//! files:
//!   - path: /etc/demo/demo.conf
//!     template: demo.conf.j2        # or content: | ... , or src: ./bin/demo
//!     mode: "0640"
//!     owner: root
//!     group: demo
//!     notify: [demo]                # services restarted when this changes
//!     roles: [worker]               # targeting: hosts, roles, groups; none = all
//!   - path: /opt/demo
//!     type: directory
//!   - path: /usr/local/bin/demo
//!     type: link
//!     target: /opt/demo/bin/demo
//! ```

use std::path::Path;

use serde::Serialize;

use crate::decode::Cx;
use crate::host::Host;
use crate::source::{self, Source};
use crate::targets::{self, Targets};
use crate::values;
use crate::yaml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileSpec {
    /// Absolute path on the hosts.
    pub path: String,
    pub kind: FileKind,
    /// Permission bits; `None` means 0644 for files, 0755 for directories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// systemd services (unit names without `.service`) restarted, once per
    /// run, when this file changes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    #[serde(flatten)]
    pub targets: Targets,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum FileKind {
    File { source: Source },
    Directory,
    Link { target: String },
}

pub(crate) fn decode(
    cx: &mut Cx<'_>,
    yaml: &Spanned,
    known: Option<&[Host]>,
    base: &Path,
) -> Option<Vec<FileSpec>> {
    let items = match &yaml.kind {
        crate::yaml::Kind::Seq(items) => items.as_slice(),
        _ => return cx.list(yaml, "'files'", |_, _| None::<FileSpec>),
    };
    let mut out: Vec<FileSpec> = Vec::new();
    let mut ok = true;
    for (i, item) in items.iter().enumerate() {
        let Some(f) = decode_one(cx, item, i, known, base) else {
            ok = false;
            continue;
        };
        // Two entries that write one path on one host would fight on every
        // apply; say which host and which entries.
        if let Some(hosts) = known
            && let Some((other, host)) = out
                .iter()
                .enumerate()
                .filter(|(_, o)| o.path == f.path)
                .find_map(|(j, o)| {
                    hosts
                        .iter()
                        .find(|h| o.targets.matches(h) && f.targets.matches(h))
                        .map(|h| (j, h))
                })
        {
            cx.sink
                .error(
                    item.pos,
                    format!(
                        "file '{}' is also written by files[{other}] on host '{}'",
                        f.path, host.name
                    ),
                )
                .help(
                    "give each host one entry per path: narrow them with hosts:, roles: or groups:",
                );
            ok = false;
            continue;
        }
        out.push(f);
    }
    ok.then_some(out)
}

fn decode_one(
    cx: &mut Cx<'_>,
    yaml: &Spanned,
    index: usize,
    known: Option<&[Host]>,
    base: &Path,
) -> Option<FileSpec> {
    let label = entry_label(yaml, "path")
        .map_or_else(|| format!("files[{index}]"), |p| format!("file '{p}'"));
    let mut m = cx.map(yaml, &label)?;
    let path = m
        .required(cx, "path")
        .and_then(|n| values::host_path(cx, n, &format!("'path' of {label}")));
    let kind_yaml = m.get("type");
    let kind_word = match kind_yaml {
        Some(n) => Some(cx.one_of(
            n,
            &format!("'type' of {label}"),
            &["file", "directory", "link"],
        ))
        .flatten()
        .map(str::to_owned),
        None => Some("file".to_owned()),
    };
    let source = source::decode(cx, &mut m, &label, base);
    let target_yaml = m.get("target");
    // Outer None: a bad value, already reported; inner None: not given.
    let mode = optional(m.get("mode"), |n| {
        values::mode(cx, n, &format!("'mode' of {label}"))
    });
    let owner = optional(m.get("owner"), |n| {
        values::account(cx, n, &format!("'owner' of {label}"))
    });
    let group = optional(m.get("group"), |n| {
        values::account(cx, n, &format!("'group' of {label}"))
    });
    let notify = match m.get("notify") {
        Some(n) => cx.list(n, &format!("'notify' of {label}"), |cx, item| {
            values::unit_name(cx, item, &format!("'notify' of {label}"))
        }),
        None => Some(Vec::new()),
    };
    let targets = targets::decode(cx, &mut m, &label, known);
    m.finish(cx);

    let kind = match (kind_word?.as_str(), source.ok()?, target_yaml) {
        ("file", Some(source), None) => FileKind::File { source },
        ("file", None, None) => {
            let d = cx.sink.error(yaml.pos, format!("{label} has no content"));
            d.help("give one of content:, src: or template:, or 'type: directory' / 'type: link'");
            return None;
        }
        ("directory", None, None) => FileKind::Directory,
        ("link", None, Some(t)) => FileKind::Link {
            target: cx.string(t, &format!("'target' of {label}"))?,
        },
        ("link", None, None) => {
            cx.sink
                .error(yaml.pos, format!("{label} is a link without 'target'"))
                .help("add 'target: /path/it/points/to'");
            return None;
        }
        (kind, _, Some(t)) if kind != "link" => {
            cx.sink.error(
                t.pos,
                format!("'target' of {label} is only for 'type: link'"),
            );
            return None;
        }
        (kind, _, _) => {
            cx.sink
                .error(
                    yaml.pos,
                    format!("{label} is a {kind}: content:, src: and template: are only for files"),
                )
                .help("remove them, or drop 'type' to write a file");
            return None;
        }
    };
    Some(FileSpec {
        path: path?.to_string_lossy().into_owned(),
        kind,
        mode: mode?,
        owner: owner?,
        group: group?,
        notify: notify?,
        targets: targets?,
    })
}

/// `Some(None)` when absent, `Some(Some(v))` when valid, `None` when invalid.
pub(crate) fn optional<T>(
    yaml: Option<&Spanned>,
    read: impl FnOnce(&Spanned) -> Option<T>,
) -> Option<Option<T>> {
    match yaml {
        None => Some(None),
        Some(n) => read(n).map(Some),
    }
}

/// The scalar under `key` of a mapping, to name an entry in messages.
pub(crate) fn entry_label(yaml: &Spanned, key: &str) -> Option<String> {
    match &yaml.kind {
        crate::yaml::Kind::Map(entries) => {
            entries
                .iter()
                .find(|e| e.key == key)
                .and_then(|e| match &e.value.kind {
                    crate::yaml::Kind::Scalar(s) if !s.is_null() => Some(s.value.clone()),
                    _ => None,
                })
        }
        _ => None,
    }
}
