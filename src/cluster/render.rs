//! Rendering a product template into engine content, with errors in the
//! engine's terms (the host and the template named), and the inventory's
//! `extraArgs` applied to a unit's command line.
//!
//! Why flags are edited after rendering: the templates stay the one
//! readable list of k8sup's default flags, and an edit (set, replace,
//! remove) works the same on every unit. A unit with no edits is the
//! template's text byte for byte.

use std::collections::BTreeMap;

use k8sup_engine::{Content, EngineError};
use k8sup_inventory::ArgsComponent;
use serde::Serialize;

/// `templates/<name>` rendered for `host`.
pub fn template(host: &str, name: &str, context: impl Serialize) -> Result<Content, EngineError> {
    rendered(host, name, context).map(Content::text)
}

/// A systemd unit from `templates/<name>` whose `ExecStart=` runs
/// `component`, with this host's layers of flag edits applied in order
/// (`--flag` → a value, or `None` to remove the flag).
pub fn unit(
    host: &str,
    name: &str,
    context: impl Serialize,
    component: ArgsComponent,
    layers: &[BTreeMap<String, Option<String>>],
) -> Result<Content, EngineError> {
    let mut text = rendered(host, name, context)?;
    for edits in layers.iter().filter(|e| !e.is_empty()) {
        text = edit_exec_start(&text, edits).map_err(|reason| EngineError::Invalid {
            host: host.to_string(),
            reason: format!("extraArgs of {}: {reason}", component.as_str()),
        })?;
    }
    Ok(Content::text(text))
}

/// `templates/<name>` rendered for `host`, as text (for what is not put
/// on a host as a file: the add-ons' objects).
pub fn template_text(
    host: &str,
    name: &str,
    context: impl Serialize,
) -> Result<String, EngineError> {
    rendered(host, name, context)
}

fn rendered(host: &str, name: &str, context: impl Serialize) -> Result<String, EngineError> {
    k8sup_templates::render(name, context).map_err(|e| EngineError::Invalid {
        host: host.to_string(),
        reason: format!("rendering {name}: {e}"),
    })
}

/// One flag of a command line: `--name=value`, `--name value` or `--name`.
struct Flag {
    name: String,
    /// The rest of the token(s) as written (`=value`, ` value`, or empty).
    rest: String,
}

/// Applies `edits` to the unit's `ExecStart=` (and its continuation lines),
/// which is rewritten one flag per line.
fn edit_exec_start(unit: &str, edits: &BTreeMap<String, Option<String>>) -> Result<String, String> {
    let lines: Vec<&str> = unit.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("ExecStart="))
        .ok_or("the unit has no ExecStart= line")?;
    let mut end = start;
    while lines[end].trim_end().ends_with('\\') {
        end += 1;
        if end >= lines.len() {
            return Err("the unit's ExecStart= ends in a continuation".into());
        }
    }
    let joined: String = lines[start..=end]
        .iter()
        .map(|l| l.trim_end().trim_end_matches('\\'))
        .collect::<Vec<_>>()
        .join(" ");
    let mut tokens = joined["ExecStart=".len()..].split_whitespace().peekable();
    let program = tokens.next().ok_or("the unit's ExecStart= is empty")?;
    let mut flags: Vec<Flag> = Vec::new();
    while let Some(t) = tokens.next() {
        if !t.starts_with("--") {
            return Err(format!("unexpected argument {t:?} in the unit"));
        }
        let (name, rest) = match t.split_once('=') {
            Some((n, v)) => (n.to_string(), format!("={v}")),
            None => match tokens.peek() {
                Some(v) if !v.starts_with('-') => (
                    t.to_string(),
                    format!(" {}", tokens.next().unwrap_or_default()),
                ),
                _ => (t.to_string(), String::new()),
            },
        };
        flags.push(Flag { name, rest });
    }
    for (name, value) in edits {
        let at = flags.iter().position(|f| &f.name == name);
        match (value, at) {
            (None, Some(_)) => flags.retain(|f| &f.name != name),
            (None, None) => {
                return Err(format!(
                    "'{name}: null' removes a default flag, but k8sup does not set {name}; \
                     remove the entry from the inventory, or give {name} a value"
                ));
            }
            (Some(v), Some(i)) => flags[i].rest = format!("={}", systemd_quote(v)),
            (Some(v), None) => flags.push(Flag {
                name: name.clone(),
                rest: format!("={}", systemd_quote(v)),
            }),
        }
    }
    let mut exec = format!("ExecStart={program}");
    for f in &flags {
        exec.push_str(&format!(" \\\n  {}{}", f.name, f.rest));
    }
    let mut out: Vec<String> = lines[..start].iter().map(|l| l.to_string()).collect();
    out.push(exec);
    out.extend(lines[end + 1..].iter().map(|l| l.to_string()));
    let mut text = out.join("\n");
    if unit.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// A value as one systemd `ExecStart=` word: `%` and `$` are escaped (the
/// unit expands specifiers and variables), and a value with spaces,
/// quotes or backslashes is double-quoted.
fn systemd_quote(v: &str) -> String {
    let escaped = v.replace('%', "%%").replace('$', "$$");
    if v.is_empty()
        || v.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '\\' | ';'))
    {
        format!("\"{}\"", escaped.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::edit_exec_start;

    const UNIT: &str = "[Service]\nExecStart=/bin/x \\\n  --a=1 \\\n  --b=2\nRestart=always\n";

    fn edits(e: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        e.iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn set_replace_and_remove_flags() {
        let out = edit_exec_start(
            UNIT,
            &edits(&[("--a", None), ("--b", Some("3")), ("--c", Some("x y"))]),
        )
        .unwrap();
        assert_eq!(
            out,
            "[Service]\nExecStart=/bin/x \\\n  --b=3 \\\n  --c=\"x y\"\nRestart=always\n"
        );
    }

    #[test]
    fn a_space_separated_value_is_one_flag() {
        let unit = "ExecStart=/bin/containerd --config /etc/c.toml\n";
        let out = edit_exec_start(unit, &edits(&[("--root", Some("/srv/containerd"))])).unwrap();
        assert_eq!(
            out,
            "ExecStart=/bin/containerd \\\n  --config /etc/c.toml \\\n  --root=/srv/containerd\n"
        );
        let removed = edit_exec_start(unit, &edits(&[("--config", None)])).unwrap();
        assert_eq!(removed, "ExecStart=/bin/containerd\n");
    }

    #[test]
    fn removing_a_flag_k8sup_does_not_set_is_an_error() {
        let err = edit_exec_start(UNIT, &edits(&[("--zzz", None)])).unwrap_err();
        assert!(err.contains("k8sup does not set --zzz"), "{err}");
    }

    #[test]
    fn systemd_specials_are_escaped() {
        let out = edit_exec_start(UNIT, &edits(&[("--fmt", Some("100%$HOME"))])).unwrap();
        assert!(out.contains("--fmt=100%%$$HOME\n"), "{out}");
    }
}
