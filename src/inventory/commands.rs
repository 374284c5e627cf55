//! The `commands:` section: commands run on hosts, guarded so that a rerun
//! does not repeat them (Ansible's `creates:` and `unless`).
//!
//! ```yaml
//! commands:
//!   - name: init-db
//!     run: /opt/demo/bin/init --data /var/lib/demo
//!     creates: /var/lib/demo/.initialized   # run only while this path is absent
//!     unless: /opt/demo/bin/check           # run only while this check fails
//!     roles: [control-plane]
//! ```
//!
//! A command with neither guard runs on every apply; that is allowed but
//! warned about, since a plan with it never reads "no changes".

use serde::Serialize;

use crate::decode::Cx;
use crate::files::{entry_label, optional};
use crate::host::Host;
use crate::targets::{self, Targets};
use crate::values;
use crate::yaml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandSpec {
    /// Names the command in plans and errors; unique.
    pub name: String,
    /// Shell command line, run as root with `sh -c`.
    pub run: String,
    /// Absolute path on the host: the command runs only while it is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creates: Option<String>,
    /// Shell check: the command runs only while this exits non-zero.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unless: Option<String>,
    #[serde(flatten)]
    pub targets: Targets,
}

pub(crate) fn decode(
    cx: &mut Cx<'_>,
    yaml: &Spanned,
    known: Option<&[Host]>,
) -> Option<Vec<CommandSpec>> {
    cx.named_list(
        yaml,
        "command",
        "command names must be unique",
        |c: &CommandSpec| &c.name,
        |cx, item, i| decode_one(cx, item, i, known),
    )
}

fn decode_one(
    cx: &mut Cx<'_>,
    yaml: &Spanned,
    index: usize,
    known: Option<&[Host]>,
) -> Option<CommandSpec> {
    let label = entry_label(yaml, "name").map_or_else(
        || format!("commands[{index}]"),
        |n| format!("command '{n}'"),
    );
    let mut m = cx.map(yaml, &label)?;
    let name = m.required(cx, "name").and_then(|n| {
        let v = cx.string(n, &format!("'name' of {label}"))?;
        if v.trim().is_empty() {
            cx.sink.error(n.pos, format!("'name' of {label} is empty"));
            return None;
        }
        Some(v)
    });
    let run = m
        .required(cx, "run")
        .and_then(|n| cx.string(n, &format!("'run' of {label}")));
    let creates = optional(m.get("creates"), |n| {
        values::host_path(cx, n, &format!("'creates' of {label}"))
            .map(|p| p.to_string_lossy().into_owned())
    });
    let unless = optional(m.get("unless"), |n| {
        cx.string(n, &format!("'unless' of {label}"))
    });
    let targets = targets::decode(cx, &mut m, &label, known);
    m.finish(cx);
    let spec = CommandSpec {
        name: name?,
        run: run?,
        creates: creates?,
        unless: unless?,
        targets: targets?,
    };
    if spec.creates.is_none() && spec.unless.is_none() {
        cx.sink
            .warning(
                yaml.pos,
                format!("{label} has no guard: it runs on every apply"),
            )
            .help("add 'creates: /path' or 'unless: CHECK' so that a rerun changes nothing");
    }
    Some(spec)
}
