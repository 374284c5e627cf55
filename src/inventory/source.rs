//! Where the content of a file that k8sup writes on hosts comes from: inline
//! text, a local file pushed as is (streamed, so large binaries are fine), or
//! a minijinja template rendered per host.
//!
//! Local paths are relative to the inventory's directory, like every other
//! path in the inventory, and must exist when the inventory is checked: a
//! missing source is reported at its line, before any host is touched.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decode::{Cx, MapReader};
use crate::effective::resolve_path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// `content:` text written as is.
    Content(String),
    /// `src:` a local file (absolute path on the workstation).
    Src(PathBuf),
    /// `template:` a local minijinja template (absolute path), rendered for
    /// each host with `host`, `vars`, `cluster` and `inventory`.
    Template(PathBuf),
}

pub(crate) const KEYS: [&str; 3] = ["content", "src", "template"];

/// Read at most one of `content`, `src`, `template` from `m`. `Ok(None)`: none
/// given. `Err(())`: a problem, already reported.
pub(crate) fn decode(
    cx: &mut Cx<'_>,
    m: &mut MapReader<'_>,
    label: &str,
    base: &Path,
) -> Result<Option<Source>, ()> {
    let given: Vec<(&str, &crate::yaml::Spanned)> = KEYS
        .iter()
        .filter_map(|k| m.get(k).map(|n| (*k, n)))
        .collect();
    if given.len() > 1 {
        let names: Vec<String> = given.iter().map(|(k, _)| format!("'{k}'")).collect();
        cx.sink
            .error(given[1].1.pos, format!("{label} has {}: give only one", names.join(" and ")))
            .help("content: is inline text, src: a local file pushed as is, template: a local minijinja template");
        return Err(());
    }
    let Some((key, yaml)) = given.first().copied() else {
        return Ok(None);
    };
    let value = cx.string(yaml, &format!("'{key}' of {label}")).ok_or(())?;
    if key == "content" {
        return Ok(Some(Source::Content(value)));
    }
    let path = resolve_path(Path::new(&value), base);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            cx.sink.error(
                yaml.pos,
                format!(
                    "'{key}' of {label}: {} is not a regular file",
                    path.display()
                ),
            );
            return Err(());
        }
        Err(e) => {
            cx.sink
                .error(
                    yaml.pos,
                    format!("'{key}' of {label}: cannot read {}: {e}", path.display()),
                )
                .help("relative paths are relative to the inventory file's directory");
            return Err(());
        }
    }
    Ok(Some(if key == "src" {
        Source::Src(path)
    } else {
        Source::Template(path)
    }))
}
