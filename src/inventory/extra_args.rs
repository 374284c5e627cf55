//! `extraArgs`: command-line flags added to, changed in or removed from a
//! component's unit, cluster-wide (`cluster.extraArgs`) or for one host
//! (`hosts[].extraArgs`), as Canonical Kubernetes' `extra-node-*-args`.
//!
//! ```yaml
//! extraArgs:
//!   kube-apiserver:
//!     --audit-log-maxage: 30     # added, or replaces k8sup's value
//!     --profiling: null          # removes a flag k8sup sets
//! ```
//!
//! Why a null removes: k8sup's defaults are flags in its unit templates, and
//! a user who must drop one (a flag a future version removed, a policy that
//! forbids it) has no other way short of editing a file k8sup overwrites.
//! A host's edits apply after the cluster's: its value wins, and its null
//! removes a flag whether k8sup or the cluster's `extraArgs` added it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::decode::Cx;
use crate::yaml::{Kind, Spanned};

/// The components whose command line k8sup renders, by binary name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArgsComponent {
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
    KubeProxy,
    Containerd,
    K8supDatastore,
}

impl ArgsComponent {
    pub const ALL: [ArgsComponent; 7] = [
        ArgsComponent::KubeApiserver,
        ArgsComponent::KubeControllerManager,
        ArgsComponent::KubeScheduler,
        ArgsComponent::Kubelet,
        ArgsComponent::KubeProxy,
        ArgsComponent::Containerd,
        ArgsComponent::K8supDatastore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ArgsComponent::KubeApiserver => "kube-apiserver",
            ArgsComponent::KubeControllerManager => "kube-controller-manager",
            ArgsComponent::KubeScheduler => "kube-scheduler",
            ArgsComponent::Kubelet => "kubelet",
            ArgsComponent::KubeProxy => "kube-proxy",
            ArgsComponent::Containerd => "containerd",
            ArgsComponent::K8supDatastore => "k8sup-datastore",
        }
    }

    /// Runs only on control-plane hosts.
    pub fn control_plane_only(self) -> bool {
        matches!(
            self,
            ArgsComponent::KubeApiserver
                | ArgsComponent::KubeControllerManager
                | ArgsComponent::KubeScheduler
                | ArgsComponent::K8supDatastore
        )
    }
}

/// Flag edits by component: `--flag` → `Some(value)` (set) or `None`
/// (remove k8sup's default). Flag names are kept with their leading `--`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExtraArgs(pub BTreeMap<ArgsComponent, BTreeMap<String, Option<String>>>);

impl ExtraArgs {
    pub fn is_empty(&self) -> bool {
        self.0.values().all(BTreeMap::is_empty)
    }

    /// The edits for one component (empty when there are none).
    pub fn of(&self, c: ArgsComponent) -> BTreeMap<String, Option<String>> {
        self.0.get(&c).cloned().unwrap_or_default()
    }
}

/// Decode an `extraArgs` mapping; `what` names it in messages
/// (`'extraArgs' in 'cluster'`, `'extraArgs' of host 'w1'`).
pub(crate) fn decode(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<ExtraArgs> {
    let mut m = cx.map(yaml, what)?;
    let mut out = ExtraArgs::default();
    let mut ok = true;
    for c in ArgsComponent::ALL {
        let Some(flags) = m.get(c.as_str()) else {
            continue;
        };
        match flags_of(cx, flags, &format!("'{}' in {what}", c.as_str())) {
            Some(f) => {
                out.0.insert(c, f);
            }
            None => ok = false,
        }
    }
    m.finish(cx);
    ok.then_some(out)
}

fn flags_of(
    cx: &mut Cx<'_>,
    yaml: &Spanned,
    what: &str,
) -> Option<BTreeMap<String, Option<String>>> {
    let Kind::Map(entries) = &yaml.kind else {
        cx.sink
            .error(
                yaml.pos,
                format!(
                    "{what} must be a mapping of flags, found {}",
                    yaml.describe()
                ),
            )
            .help("for example '--v: 2' to set a flag, '--profiling: null' to remove one");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for e in entries {
        let bare = e.key.trim_start_matches('-');
        let valid = !bare.is_empty()
            && bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
            && bare.starts_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            cx.sink
                .error(e.key_pos, format!("{what}: '{}' is not a flag name", e.key))
                .help(
                    "write the flag as the component spells it, for example '--v' or '--max-pods'",
                );
            ok = false;
            continue;
        }
        let flag = format!("--{bare}");
        let value = match &e.value.kind {
            Kind::Scalar(s) if s.poisoned => {
                ok = false;
                continue;
            }
            Kind::Scalar(s) if s.is_null() => None,
            Kind::Scalar(s) => {
                if s.value.contains(['\n', '\r']) {
                    cx.sink.error(
                        e.value.pos,
                        format!(
                            "{what}: the value of {flag} spans lines; a flag's value is one line"
                        ),
                    );
                    ok = false;
                    continue;
                }
                Some(s.value.clone())
            }
            _ => {
                cx.sink
                    .error(
                        e.value.pos,
                        format!(
                            "{what}: the value of {flag} must be a scalar or null, found {}",
                            e.value.describe()
                        ),
                    )
                    .help("a list value is written as the component expects it, e.g. '--tls-cipher-suites: A,B'");
                ok = false;
                continue;
            }
        };
        if out.insert(flag.clone(), value).is_some() {
            cx.sink.error(
                e.key_pos,
                format!("{what}: {flag} is given twice (with and without its dashes)"),
            );
            ok = false;
        }
    }
    ok.then_some(out)
}
