//! One entry of `hosts:`: a machine, its role in the cluster, the groups it
//! belongs to (for targeting), its SSH overrides and free-form template vars.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decode::{Cx, suggest};
use crate::extra_args::{self, ExtraArgs};
use crate::ssh::{self, SshPos, SshSettings};
use crate::values;
use crate::yaml::{Kind, Pos, Spanned, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs the API server, scheduler, controller manager and the datastore.
    ControlPlane,
    /// Runs workloads only.
    Worker,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Worker => "worker",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Host {
    /// DNS-1123 label, unique; becomes the Kubernetes node name.
    pub name: String,
    /// IP address, DNS name or `~/.ssh/config` alias; unique per SSH port.
    pub address: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Overrides of the inventory-wide `ssh:` defaults; see
    /// [`crate::Inventory::effective_ssh`] for the merged result.
    #[serde(skip_serializing_if = "is_default")]
    pub ssh: SshSettings,
    /// Free-form values for templates. Plain YAML scalars keep their YAML
    /// 1.2 type; quoted scalars and `${ENV}` values are strings.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// This host's component flags, over the cluster's `extraArgs`.
    #[serde(skip_serializing_if = "ExtraArgs::is_empty")]
    pub extra_args: ExtraArgs,
}

fn is_default(s: &SshSettings) -> bool {
    *s == SshSettings::default()
}

/// Positions used by the whole-inventory checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostPos {
    pub entry: Pos,
    pub address: Pos,
    pub ssh: SshPos,
    pub groups: Pos,
}

/// Words people bring from other tools, mapped to our role names.
const ROLE_ALIASES: &[(&str, Role)] = &[
    ("master", Role::ControlPlane),
    ("controller", Role::ControlPlane),
    ("server", Role::ControlPlane),
    ("control-plane+worker", Role::ControlPlane),
    ("node", Role::Worker),
    ("agent", Role::Worker),
    ("minion", Role::Worker),
];

pub(crate) fn decode(cx: &mut Cx<'_>, yaml: &Spanned, index: usize) -> Option<(Host, HostPos)> {
    // Name the host in messages as soon as we know its name.
    let name_yaml = match &yaml.kind {
        Kind::Map(entries) => entries.iter().find(|e| e.key == "name").map(|e| &e.value),
        _ => None,
    };
    let label = match name_yaml.and_then(|n| match &n.kind {
        Kind::Scalar(s) if !s.is_null() => Some(s.value.clone()),
        _ => None,
    }) {
        Some(n) => format!("host '{n}'"),
        None => format!("hosts[{index}]"),
    };
    let mut m = cx.map(yaml, &label)?;
    let name_n = m.required(cx, "name");
    let name = name_n.and_then(|n| values::dns_label(cx, n, "host name"));
    let address_n = m.required(cx, "address");
    let address =
        address_n.and_then(|n| values::host_address(cx, n, &format!("'address' of {label}")));
    let role = m.required(cx, "role").and_then(|n| role(cx, n, &label));
    let groups_n = m.get("groups");
    let groups = match groups_n {
        Some(n) => cx.list(n, &format!("'groups' of {label}"), |cx, item| {
            let g = cx.string(item, &format!("group in {label}"))?;
            if g.trim().is_empty() || g.chars().any(char::is_whitespace) {
                cx.sink.error(
                    item.pos,
                    format!("group name in {label} must be a non-empty word without spaces"),
                );
                return None;
            }
            Some(g)
        }),
        None => Some(Vec::new()),
    };
    let (ssh, ssh_pos) = match m.get("ssh") {
        Some(n) => ssh::decode(cx, n, &format!("'ssh' of {label}")),
        None => (SshSettings::default(), SshPos::default()),
    };
    let vars = match m.get("vars") {
        Some(n) => match &n.kind {
            Kind::Map(entries) => Some(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), to_json(&e.value)))
                    .collect(),
            ),
            _ => {
                cx.sink.error(
                    n.pos,
                    format!(
                        "'vars' of {label} must be a mapping, found {}",
                        n.describe()
                    ),
                );
                None
            }
        },
        None => Some(BTreeMap::new()),
    };
    let extra = match m.get("extraArgs") {
        None => Some(ExtraArgs::default()),
        Some(n) => extra_args::decode(cx, n, &format!("'extraArgs' of {label}")),
    };
    if let (Some(Role::Worker), Some(e), Some(n)) = (role, &extra, m.get("extraArgs")) {
        let cp_only: Vec<&str> =
            e.0.iter()
                .filter(|(c, flags)| c.control_plane_only() && !flags.is_empty())
                .map(|(c, _)| c.as_str())
                .collect();
        if !cp_only.is_empty() {
            cx.sink
                .warning(
                    n.pos,
                    format!(
                        "'extraArgs' of {label}: {} run only on control planes; this worker ignores them",
                        cp_only.join(", ")
                    ),
                )
                .help("move them to a control-plane host, or to 'extraArgs' in 'cluster'");
        }
    }
    m.finish(cx);
    let pos = HostPos {
        entry: yaml.pos,
        address: address_n.map_or(yaml.pos, |n| n.pos),
        ssh: ssh_pos,
        groups: groups_n.map_or(yaml.pos, |n| n.pos),
    };
    let host = Host {
        name: name?,
        address: address?,
        role: role?,
        groups: groups?,
        ssh,
        vars: vars?,
        extra_args: extra?,
    };
    Some((host, pos))
}

fn role(cx: &mut Cx<'_>, yaml: &Spanned, label: &str) -> Option<Role> {
    let what = format!("role of {label}");
    let s = cx.scalar(yaml, "'control-plane' or 'worker'", &what)?;
    match s.value.as_str() {
        "control-plane" => return Some(Role::ControlPlane),
        "worker" => return Some(Role::Worker),
        _ => {}
    }
    let shown = cx.shown(yaml);
    let lower = s.value.to_ascii_lowercase();
    let help = if let Some((_, r)) = ROLE_ALIASES.iter().find(|(a, _)| *a == lower) {
        Some(format!("k8sup calls this role '{r}'"))
    } else if s.env.is_empty() {
        suggest(&s.value, ["control-plane", "worker"].into_iter())
            .map(|g| format!("did you mean '{g}'?"))
    } else {
        None
    };
    let d = cx.sink.error(
        yaml.pos,
        format!("unknown role {shown} for {label}, expected 'control-plane' or 'worker'"),
    );
    if let Some(h) = help {
        d.help(h);
    }
    None
}

/// Free-form YAML to JSON-like data for templates (YAML 1.2 core schema).
fn to_json(yaml: &Spanned) -> serde_json::Value {
    use serde_json::Value;
    match &yaml.kind {
        Kind::Seq(items) => Value::Array(items.iter().map(to_json).collect()),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| (e.key.clone(), to_json(&e.value)))
                .collect(),
        ),
        Kind::Scalar(s) if s.is_null() => Value::Null,
        Kind::Scalar(s) if s.style != Style::Plain || !s.env.is_empty() => {
            Value::String(s.value.clone())
        }
        Kind::Scalar(s) => match s.value.as_str() {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            v => {
                if let Ok(i) = v.parse::<i64>() {
                    Value::from(i)
                } else if let Some(f) = v
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && looks_numeric(v))
                {
                    Value::from(f)
                } else {
                    Value::String(v.to_owned())
                }
            }
        },
    }
}

/// Rust parses "inf" and "NaN" as floats; YAML needs a digit.
fn looks_numeric(v: &str) -> bool {
    v.chars().any(|c| c.is_ascii_digit())
}
