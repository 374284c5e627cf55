//! What a Kubernetes node needs from its machine that a systemd-nspawn
//! container lacks by default, and how the lab gives it without touching the
//! host. A cloud VM has all of this from its own kernel and boot; k8sup's
//! defaults are written for such VMs, so every quirk of running in a
//! container stays here, in the lab.
//!
//! - **Privileges**: containerd and runc create namespaces, mounts, device
//!   nodes and cgroups: `--capability=all`. runc also gives each container a
//!   session keyring, and nspawn's seccomp filter refuses `keyctl`:
//!   `--system-call-filter=@keyring` allows that group only (the rest of the
//!   filter stays).
//! - **`/dev/kmsg`**: nspawn hides it, and the kubelet will not start
//!   without it (its OOM watcher reads the kernel log). Bound read-only.
//! - **cgroup v1 controllers** (hybrid hosts): nspawn mounts them read-only
//!   in the machine, so runc could not create a container's cgroups. The
//!   machine's own cgroup in every hierarchy is created by `cgroups.rs`; the
//!   setup unit below remounts each controller read-write inside the machine,
//!   where its cgroup namespace makes that cgroup the root: whatever runs in
//!   the machine (a kubelet's `/kubepods`) stays beneath it on the host.
//! - **Kernel settings**: the kubelet writes `vm.overcommit_memory`,
//!   `kernel.panic` and a few more at start and fails if it cannot. They are
//!   global: a write from a machine would change the whole host (and nspawn
//!   keeps /proc/sys read-only for that reason). Instead the setup unit binds
//!   small files holding the kubelet's values over those /proc/sys entries
//!   inside the machine: the kubelet reads what it wants and writes nothing,
//!   and the host keeps its own values. (nspawn's own `--bind-ro=FILE:/proc/sys/…`
//!   was tried first: systemd 252 fails to boot with it, since /proc is
//!   mounted after custom binds.)
//! - **Storage**: containerd's overlay snapshotter cannot put its upper layer
//!   on overlayfs, which is the machine's root. `/var/lib/containerd`,
//!   `/var/lib/kubelet` and `/var/log/pods` are bound from per-machine
//!   directories in the lab's state directory (the host's own filesystem);
//!   they live as long as the machine's disk and go with `lab down`.
//! - **Network settings**: `/proc/sys/net` belongs to the machine's own
//!   network namespace (every lab machine has one), but nspawn leaves it
//!   read-only when handed a namespace by path; CNI plugins (ip_forward) and
//!   kube-proxy write there. The setup unit makes it read-write.
//! - **Mount propagation**: the kubelet needs a shared root (volume mounts
//!   must reach containers); systemd makes `/` shared on a real boot but not
//!   in a container. The setup unit runs `mount --make-rshared /`.
//! - **Identity**: each machine has its own `/etc/machine-id` (see
//!   `identity.rs`), hostname = machine name = the inventory's node name.
//!
//! Not done here, by design:
//! - fs.inotify limits are per user and global to the host; the lab never
//!   changes them (see `preflight::check_inotify_budget`).
//! - The kubelet's `failCgroupV1: false` and the cgroupfs driver on hybrid
//!   hosts belong to the cluster configuration for these machines (see the
//!   note in `inventory.rs`).
//! - OOM scores: `--capability=all` gives the machine what the host's root
//!   has. Where that lacks CAP_SYS_RESOURCE (this project's sandboxed
//!   hosts), no process may lower its OOM score below its parent's, so
//!   containerd needs `restrict_oom_score_adj = true` there (also a cluster
//!   setting for these machines, see `inventory.rs`).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::files::write_atomic;
use crate::layout::MachineLayout;

/// systemd-nspawn arguments every lab machine boots with (besides the
/// per-machine storage binds of [`storage_binds`]).
pub const NSPAWN_ARGS: &[&str] = &[
    "--capability=all",
    "--system-call-filter=@keyring",
    "--bind-ro=/dev/kmsg",
];

/// Directories of a node that must not be on overlayfs: (name of the
/// per-machine directory on the host, path inside the machine).
pub const STORAGE: &[(&str, &str)] = &[
    ("containerd", "/var/lib/containerd"),
    ("kubelet", "/var/lib/kubelet"),
    ("pods", "/var/log/pods"),
];

/// The kernel settings the kubelet insists on (kubelet's
/// `setupKernelTunables`), as shown inside each machine: /proc/sys path
/// below `/proc/sys`, value.
pub const KERNEL_SETTINGS: &[(&str, &str)] = &[
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// Where the lab root keeps the files bound over /proc/sys entries, one per
/// setting, named after the setting with dots (`kernel.panic`).
const SETTINGS_DIR: &str = "etc/k8sup-lab/proc-sys";

const SETUP_PATH: &str = "usr/local/lib/k8sup-lab/node-setup";

/// Runs inside the machine before anything else (see [`SETUP_UNIT`]).
/// Fails loudly: a machine without these is no use as a node, and a failed
/// unit shows as a "degraded" machine.
const SETUP_SCRIPT: &str = r#"#!/bin/sh
# Written by k8sup lab: what a VM's kernel and boot give a Kubernetes node,
# done inside a systemd-nspawn container without touching the host.
set -eu

# cgroup v1 controllers read-write. They are mounted read-only by nspawn;
# the cgroup namespace makes this machine's own cgroup their root here.
for dir in /sys/fs/cgroup/*; do
  [ -d "$dir" ] && [ ! -L "$dir" ] || continue
  name=${dir##*/}
  case $name in unified|systemd) continue ;; esac
  mountpoint -q "$dir" || continue
  [ "$(findmnt -no FSTYPE "$dir")" = cgroup ] || continue
  case ",$(findmnt -no OPTIONS "$dir")," in
    *,ro,*)
      umount "$dir"
      mount -t cgroup -o "nosuid,nodev,noexec,$name" cgroup "$dir"
      ;;
  esac
done

# The machine's own network namespace's settings read-write, as they are on
# a VM: CNI plugins turn on ip_forward, kube-proxy sets route_localnet and
# the bridge's netfilter hooks. nspawn leaves them read-only when handed a
# namespace (--network-namespace-path); they belong to that namespace only.
if ! touch /proc/sys/net/ipv4/ip_forward 2>/dev/null; then
  mount --bind /proc/sys/net /proc/sys/net
  mount -o remount,bind,rw /proc/sys/net
fi

# The kernel settings the kubelet wants, shown here only (they are global).
for file in /etc/k8sup-lab/proc-sys/*; do
  target=/proc/sys/$(basename "$file" | tr . /)
  [ -e "$target" ] || continue
  mount --bind "$file" "$target"
  mount -o remount,bind,ro "$target"
done

# Mounts made later (volumes) propagate to containers, as on a booted VM.
mount --make-rshared /
"#;

/// Runs [`SETUP_SCRIPT`] early in every boot, before sysinit.target (so
/// before any service a node runs).
const SETUP_UNIT: &str = "\
# Written by k8sup lab; see /usr/local/lib/k8sup-lab/node-setup.
[Unit]
Description=k8sup lab: what a Kubernetes node needs from its machine
DefaultDependencies=no
Before=sysinit.target
ConditionVirtualization=container

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/lib/k8sup-lab/node-setup

[Install]
WantedBy=sysinit.target
";

const SETUP_UNIT_NAME: &str = "k8sup-lab-node.service";

/// Everything [`install_in_root`] writes, for the cached root's recipe key:
/// a change here builds a new root.
pub fn recipe() -> String {
    format!("{SETUP_SCRIPT}|{SETUP_UNIT}|{KERNEL_SETTINGS:?}|{SETTINGS_DIR}")
}

/// Writes the setup script, its unit (enabled) and the settings' files into
/// the shared root being built.
pub fn install_in_root(root: &Path) -> Result<()> {
    write_atomic(&root.join(SETUP_PATH), SETUP_SCRIPT.as_bytes(), 0o755)?;
    let unit_dir = root.join("etc/systemd/system");
    write_atomic(
        &unit_dir.join(SETUP_UNIT_NAME),
        SETUP_UNIT.as_bytes(),
        0o644,
    )?;
    let wants = unit_dir.join("sysinit.target.wants");
    fs::create_dir_all(&wants).with_context(|| format!("creating {}", wants.display()))?;
    let link = wants.join(SETUP_UNIT_NAME);
    if link.is_symlink() || link.exists() {
        fs::remove_file(&link)?;
    }
    symlink(format!("../{SETUP_UNIT_NAME}"), &link)
        .with_context(|| format!("enabling {SETUP_UNIT_NAME}"))?;
    for (key, value) in KERNEL_SETTINGS {
        let file = root.join(SETTINGS_DIR).join(key.replace('/', "."));
        write_atomic(&file, format!("{value}\n").as_bytes(), 0o644)?;
    }
    Ok(())
}

/// Creates the machine's storage directories on the host and returns the
/// nspawn `--bind=` arguments that put them in place.
pub fn storage_binds(machine: &MachineLayout) -> Result<Vec<String>> {
    STORAGE
        .iter()
        .map(|(name, inside)| {
            let dir = storage_dir(machine, name);
            fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            Ok(format!("--bind={}:{inside}", dir.display()))
        })
        .collect()
}

fn storage_dir(machine: &MachineLayout, name: &str) -> PathBuf {
    machine.storage().join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_holds_the_setup_and_the_kubelets_values() {
        let dir = std::env::temp_dir().join(format!("k8sup-lab-node-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        install_in_root(&dir).unwrap();
        // Twice: a rebuilt staging root must not fail on the existing link.
        install_in_root(&dir).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("etc/k8sup-lab/proc-sys/vm.overcommit_memory")).unwrap(),
            "1\n"
        );
        assert_eq!(
            fs::read_to_string(dir.join("etc/k8sup-lab/proc-sys/kernel.keys.root_maxbytes"))
                .unwrap(),
            "25000000\n"
        );
        let link = dir.join("etc/systemd/system/sysinit.target.wants/k8sup-lab-node.service");
        assert_eq!(
            fs::read_link(&link).unwrap(),
            Path::new("../k8sup-lab-node.service")
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join(SETUP_PATH))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_script_maps_file_names_back_to_proc_sys_paths() {
        // The script turns `kernel.keys.root_maxkeys` back into a path with
        // `tr . /`: no setting may have a dot in a path component.
        for (key, _) in KERNEL_SETTINGS {
            assert!(!key.contains('.'), "{key}");
        }
    }
}
