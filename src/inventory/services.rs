//! The `services:` section: systemd services to install and keep in a state.
//!
//! ```yaml
//! services:
//!   - name: demo                     # the unit demo.service
//!     unit: { template: demo.service.j2 }   # optional: install this unit file
//!     enabled: true                  # default true
//!     state: running                 # running (default) | stopped
//!     roles: [worker]                # targeting: hosts, roles, groups; none = all
//! ```
//!
//! A service is restarted once per run when its unit file or any file that
//! names it in `notify:` changed, after all files are in place.

use std::path::Path;

use serde::Serialize;

use crate::decode::Cx;
use crate::files::{entry_label, optional};
use crate::host::Host;
use crate::source::{self, Source};
use crate::targets::{self, Targets};
use crate::values;
use crate::yaml::Spanned;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Unit name without `.service`.
    pub name: String,
    /// The unit file to install as /etc/systemd/system/NAME.service; `None`
    /// manages a unit that is already there (from a package).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Source>,
    pub enabled: bool,
    pub state: ServiceState,
    #[serde(flatten)]
    pub targets: Targets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Running,
    Stopped,
}

pub(crate) fn decode(
    cx: &mut Cx<'_>,
    yaml: &Spanned,
    known: Option<&[Host]>,
    base: &Path,
) -> Option<Vec<ServiceSpec>> {
    cx.named_list(
        yaml,
        "service",
        "one entry per service; use hosts/roles/groups to target it",
        |s: &ServiceSpec| &s.name,
        |cx, item, i| decode_one(cx, item, i, known, base),
    )
}

fn decode_one(
    cx: &mut Cx<'_>,
    yaml: &Spanned,
    index: usize,
    known: Option<&[Host]>,
    base: &Path,
) -> Option<ServiceSpec> {
    let label = entry_label(yaml, "name").map_or_else(
        || format!("services[{index}]"),
        |n| format!("service '{n}'"),
    );
    let mut m = cx.map(yaml, &label)?;
    let name = m
        .required(cx, "name")
        .and_then(|n| values::unit_name(cx, n, &format!("'name' of {label}")));
    let unit = optional(m.get("unit"), |n| {
        let what = format!("'unit' of {label}");
        let mut u = cx.map(n, &what)?;
        let s = source::decode(cx, &mut u, &what, base);
        u.finish(cx);
        match s {
            Ok(Some(s)) => Some(s),
            Ok(None) => {
                cx.sink
                    .error(n.pos, format!("{what} is empty"))
                    .help("give one of content:, src: or template:");
                None
            }
            Err(()) => None,
        }
    });
    let enabled = optional(m.get("enabled"), |n| {
        cx.boolean(n, &format!("'enabled' of {label}"))
    });
    let state = optional(m.get("state"), |n| {
        match cx.one_of(n, &format!("'state' of {label}"), &["running", "stopped"])? {
            "running" => Some(ServiceState::Running),
            _ => Some(ServiceState::Stopped),
        }
    });
    let targets = targets::decode(cx, &mut m, &label, known);
    m.finish(cx);
    Some(ServiceSpec {
        name: name?,
        unit: unit?,
        enabled: enabled?.unwrap_or(true),
        state: state?.unwrap_or(ServiceState::Running),
        targets: targets?,
    })
}
