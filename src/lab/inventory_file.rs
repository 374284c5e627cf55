//! The inventory `up` writes: a k8sup cluster file describing the lab's
//! machines, ready for `k8sup -i PATH`. The schema belongs to the
//! k8sup-inventory crate; this writes its documented shape (camelCase keys).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::files::write_atomic;
use crate::state::{Machine, Role};

// The lab's quirks stay in the lab's inventory; real VMs keep k8sup's
// defaults. Lab machines on a hybrid host (this project's CI) see cgroup v1:
// the cluster layer refuses v1 unless the inventory allows it
// (`allowCgroupV1`), and then gives the kubelet `failCgroupV1: false` and the
// cgroupfs driver. On hosts whose root lacks CAP_SYS_RESOURCE (this
// project's sandboxes) no OOM score can be lowered in a machine: containerd
// there needs `restrict_oom_score_adj` (`containerRuntime.restrictOOMScoreAdj`).
// Lab machines share the host's disk, whose free space says nothing about
// one machine: the kubelet would evict every pod when the host's disk is
// 85% full (its default `imagefs.available<15%`). As kind does, the lab's
// kubelets get no disk eviction (a `0%` threshold is ignored) and keep the
// memory one (`extraArgs`).
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
#[serde(rename_all = "camelCase")]
struct Cluster<'a> {
    name: &'a str,
    /// Lab machines on a hybrid or v1 host see cgroup v1.
    #[serde(rename = "allowCgroupV1")]
    allow_cgroup_v1: bool,
    container_runtime: Runtime,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifacts: Option<Artifacts<'a>>,
    extra_args: BTreeMap<&'static str, BTreeMap<&'static str, &'static str>>,
}

/// The kubelet's eviction thresholds on a lab machine (see above).
const LAB_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%";

#[derive(Serialize)]
struct Runtime {
    /// Nothing in a lab machine may lower an OOM score below its own.
    #[serde(rename = "restrictOOMScoreAdj")]
    restrict_oom_score_adj: bool,
}

/// The mirror built by tests/artifacts/build.sh: binaries and the image
/// archives the machines import (they reach no registry).
#[derive(Serialize)]
struct Artifacts<'a> {
    source: &'a Path,
    images: &'static str,
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
    mirror: Option<&Path>,
) -> Result<String> {
    let inventory = Inventory {
        api_version: "k8sup.io/v1alpha1",
        kind: "Cluster",
        cluster: Cluster {
            name: lab,
            allow_cgroup_v1: true,
            container_runtime: Runtime {
                restrict_oom_score_adj: true,
            },
            artifacts: mirror.map(|source| Artifacts {
                source,
                images: "archives",
            }),
            extra_args: BTreeMap::from([(
                "kubelet",
                BTreeMap::from([("--eviction-hard", LAB_EVICTION_HARD)]),
            )]),
        },
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
    mirror: Option<&Path>,
) -> Result<()> {
    let text = render(lab, identity_file, known_hosts, machines, mirror)?;
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
            Some(Path::new("/var/cache/k8sup/mirror/v1.37.2")),
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
            "allowCgroupV1: true",
            "restrictOOMScoreAdj: true",
            "source: /var/cache/k8sup/mirror/v1.37.2",
            "images: archives",
            "--eviction-hard:",
            "memory.available<100Mi,nodefs.available<0%,nodefs.inodesFree<0%,imagefs.available<0%",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
    }
}
