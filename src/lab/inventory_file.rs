//! The inventory `up` writes: a k8sup cluster file describing the lab's
//! machines, ready for `k8sup -i PATH`. The schema belongs to the
//! k8sup-inventory crate; this writes its documented shape (camelCase keys).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::files::write_atomic;
use crate::state::{Machine, Role};

// Lab machines on a hybrid host (this project's CI) see cgroup v1: the
// cluster layer refuses v1 unless the inventory allows it, and the kubelet
// (1.35+) needs `failCgroupV1: false` with the cgroupfs driver there. That
// allowance belongs in this inventory, in `Cluster`, when the cluster layer
// defines its key; real VMs (cgroup v2) keep k8sup's defaults. Likewise, on
// hosts whose root lacks CAP_SYS_RESOURCE (this project's sandboxes) no OOM
// score can be lowered in a machine: containerd there needs
// `restrict_oom_score_adj = true` (tests/e2e_containerd.rs).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Inventory<'a> {
    api_version: &'static str,
    kind: &'static str,
    cluster: Cluster<'a>,
    ssh: Ssh<'a>,
    hosts: Vec<Host<'a>>,
}

#[derive(Serialize)]
struct Cluster<'a> {
    name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Ssh<'a> {
    user: &'static str,
    identity_file: &'a Path,
    known_hosts_file: &'a Path,
    host_key_policy: &'static str,
}

#[derive(Serialize)]
struct Host<'a> {
    name: &'a str,
    address: String,
    role: Role,
}

/// Renders the inventory for `lab` as YAML.
pub fn render(
    lab: &str,
    identity_file: &Path,
    known_hosts: &Path,
    machines: &[Machine],
) -> Result<String> {
    let inventory = Inventory {
        api_version: "k8sup.io/v1alpha1",
        kind: "Cluster",
        cluster: Cluster { name: lab },
        ssh: Ssh {
            user: "root",
            identity_file,
            known_hosts_file: known_hosts,
            host_key_policy: "strict",
        },
        hosts: machines
            .iter()
            .map(|m| Host {
                name: &m.name,
                address: m.address.to_string(),
                role: m.role,
            })
            .collect(),
    };
    // Indented list items, as in the inventory documentation and `k8sup init`.
    let mut options = serde_saphyr::SerializerOptions::default();
    options.compact_list_indent = false;
    let yaml = serde_saphyr::to_string_with_options(&inventory, options)?;
    Ok(format!(
        "# Written by k8sup for its lab {lab}; rewritten each time the lab is brought up.\n{yaml}"
    ))
}

/// Writes the inventory to `path` (atomically).
pub fn write(
    path: &Path,
    lab: &str,
    identity_file: &Path,
    known_hosts: &Path,
    machines: &[Machine],
) -> Result<()> {
    let text = render(lab, identity_file, known_hosts, machines)?;
    write_atomic(path, text.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_documented_shape() {
        let machines = vec![
            Machine {
                name: "k-1".into(),
                index: 1,
                address: "10.213.5.11".parse().unwrap(),
                role: Role::ControlPlane,
            },
            Machine {
                name: "k-2".into(),
                index: 2,
                address: "10.213.5.12".parse().unwrap(),
                role: Role::Worker,
            },
        ];
        let text = render(
            "k",
            Path::new("/var/lib/k8sup/lab/k/id_ed25519"),
            Path::new("/var/lib/k8sup/lab/k/known_hosts"),
            &machines,
        )
        .unwrap();
        for needle in [
            "apiVersion: k8sup.io/v1alpha1",
            "kind: Cluster",
            "identityFile: /var/lib/k8sup/lab/k/id_ed25519",
            "knownHostsFile: /var/lib/k8sup/lab/k/known_hosts",
            "hostKeyPolicy: strict",
            "role: control-plane",
            "role: worker",
            "\n  - name: k-2\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }
}
