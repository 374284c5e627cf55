//! Which hosts an entry of `files:`, `services:` or `commands:` applies to.
//!
//! Targeting is written flat on the entry (`hosts:`, `roles:`, `groups:`),
//! and means the union of what they name; an entry that names none applies
//! to every host. Names are checked against the inventory's hosts and
//! groups, so a typo is an error with a did-you-mean rather than an entry
//! that silently applies nowhere.

use serde::Serialize;

use crate::decode::{Cx, MapReader, suggest};
use crate::host::{Host, Role};
use crate::yaml::Spanned;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Targets {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

impl Targets {
    /// True when no host, role or group is named: the entry is for all hosts.
    pub fn is_all(&self) -> bool {
        self.hosts.is_empty() && self.roles.is_empty() && self.groups.is_empty()
    }

    /// Whether `host` is targeted.
    pub fn matches(&self, host: &Host) -> bool {
        self.is_all()
            || self.hosts.contains(&host.name)
            || self.roles.contains(&host.role)
            || host.groups.iter().any(|g| self.groups.contains(g))
    }
}

/// Read `hosts`, `roles` and `groups` from an entry. `known` is the hosts read
/// so far (`None` when the hosts section could not be read, so names cannot
/// be checked).
pub(crate) fn decode(
    cx: &mut Cx<'_>,
    m: &mut MapReader<'_>,
    label: &str,
    known: Option<&[Host]>,
) -> Option<Targets> {
    let hosts = words(
        cx,
        m.get("hosts"),
        &format!("'hosts' of {label}"),
        |cx, yaml, name| {
            let Some(known) = known else { return true };
            if known.iter().any(|h| h.name == name) {
                return true;
            }
            let d = cx.sink.error(
                yaml.pos,
                format!("{label} targets host '{name}', which is not in 'hosts'"),
            );
            if let Some(g) = suggest(name, known.iter().map(|h| h.name.as_str())) {
                d.help(format!("did you mean '{g}'?"));
            }
            false
        },
    );
    // Every key is read before any `?`, so one bad key never hides another.
    let roles = match m.get("roles") {
        None => Some(Vec::new()),
        Some(n) => cx.list(n, &format!("'roles' of {label}"), |cx, item| {
            match cx.one_of(
                item,
                &format!("role in {label}"),
                &["control-plane", "worker"],
            )? {
                "control-plane" => Some(Role::ControlPlane),
                _ => Some(Role::Worker),
            }
        }),
    };
    let groups = words(
        cx,
        m.get("groups"),
        &format!("'groups' of {label}"),
        |cx, yaml, group| {
            let Some(known) = known else { return true };
            if known.iter().any(|h| h.groups.iter().any(|g| g == group)) {
                return true;
            }
            let all: Vec<&str> = known
                .iter()
                .flat_map(|h| h.groups.iter().map(String::as_str))
                .collect();
            let d = cx.sink.error(
                yaml.pos,
                format!("{label} targets group '{group}', which no host belongs to"),
            );
            match suggest(group, all.iter().copied()) {
                Some(g) => d.help(format!("did you mean '{g}'?")),
                None => d.help("add the group to hosts with 'groups: [NAME]'"),
            };
            false
        },
    );
    Some(Targets {
        hosts: hosts?,
        roles: roles?,
        groups: groups?,
    })
}

fn words(
    cx: &mut Cx<'_>,
    yaml: Option<&Spanned>,
    what: &str,
    mut check: impl FnMut(&mut Cx<'_>, &Spanned, &str) -> bool,
) -> Option<Vec<String>> {
    let Some(n) = yaml else {
        return Some(Vec::new());
    };
    let mut ok = true;
    let list = cx.list(n, what, |cx, item| {
        let w = cx.string(item, what)?;
        if check(cx, item, &w) {
            Some(w)
        } else {
            ok = false;
            None
        }
    })?;
    ok.then_some(list)
}
