//! A cgroup of its own for each machine, in every hierarchy.
//!
//! With `--keep-unit` and no systemd on the host to ask for a scope,
//! systemd-nspawn runs the container in the cgroup nspawn itself is in, and
//! creates `payload/` (the container) and `supervisor/` (itself) there. Booted
//! from the same cgroup, every machine would share one `payload/` tree and
//! each machine's systemd would create, kill and remove the others' units'
//! cgroups (seen here: "Failed at step CGROUP spawning systemd-sysusers",
//! machines coming up degraded). So nspawn is moved, between fork and exec,
//! into `k8sup-lab/LAB/MACHINE` of each hierarchy.
//!
//! On hybrid hosts that means the cgroup v1 controllers too (cpu, cpuset,
//! memory, pids…), not only the unified and `name=systemd` hierarchies that
//! the machine's systemd manages: the machine's cgroup namespace makes its
//! cgroup the root it sees, so a kubelet or runc in the machine creating
//! `/kubepods` creates it beneath the machine's cgroup on the host. Left at
//! the host's root, two machines would share one `/kubepods`.
//!
//! In the v1 controller hierarchies the lab's groups go beneath the cgroup
//! this process runs in, never elsewhere: the host's supervisor keeps its
//! processes in its own `memory` cgroups, and the lab must not move anything
//! out of them. Where that is depends on who booted the machine, so the
//! machine's groups are recorded in its directory (`cgroups`) for the
//! `stop` or `down` of another process. The unified and `name=systemd`
//! groups stay at the hierarchy's root as before (machines outlive the shell
//! that booted them, as VMs do).

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::files::write_atomic;
use crate::layout::MachineLayout;

const GROUP: &str = "k8sup-lab";

/// One cgroup hierarchy, as this process sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hierarchy {
    /// Where the lab's `k8sup-lab/` group goes in it.
    base: PathBuf,
    /// cpuset's new groups have no CPUs and memory nodes until given some;
    /// nothing can join them before.
    cpuset: bool,
    /// cpu's groups are weighed against the host's own tasks (see
    /// [`weigh_like_machines`]).
    cpu: bool,
}

/// Every cgroup hierarchy this process is in, from /proc/self/cgroup and
/// the mount table.
fn hierarchies() -> Vec<Hierarchy> {
    let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    hierarchies_from(&cgroup, &mountinfo)
}

/// A cgroup mount: its mount point, whether it is v2, and its super options
/// (the controllers, `name=systemd`).
struct CgroupMount {
    point: PathBuf,
    v2: bool,
    options: BTreeSet<String>,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let options = right.nth(1).unwrap_or_default();
            (fstype == "cgroup" || fstype == "cgroup2").then(|| CgroupMount {
                point: PathBuf::from(crate::mounts::unescape_mount_path(point)),
                v2: fstype == "cgroup2",
                options: options.split(',').map(str::to_owned).collect(),
            })
        })
        .collect()
}

fn hierarchies_from(cgroup: &str, mountinfo: &str) -> Vec<Hierarchy> {
    let mounts = cgroup_mounts(mountinfo);
    let mut found = Vec::new();
    for line in cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(own)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mount = if controllers.is_empty() {
            mounts.iter().find(|m| m.v2)
        } else {
            mounts
                .iter()
                .find(|m| !m.v2 && controllers.split(',').all(|c| m.options.contains(c)))
        };
        let Some(mount) = mount else { continue };
        let v1_controller = !controllers.is_empty() && !controllers.starts_with("name=");
        let own = own.trim_start_matches('/');
        let base = if v1_controller && !own.is_empty() {
            mount.point.join(own)
        } else {
            mount.point.clone()
        };
        let hierarchy = Hierarchy {
            base,
            cpuset: controllers.split(',').any(|c| c == "cpuset"),
            cpu: controllers.split(',').any(|c| c == "cpu"),
        };
        if !found.contains(&hierarchy) {
            found.push(hierarchy);
        }
    }
    found
}

/// The lab's cgroup in every hierarchy, as this process places it.
pub fn lab_groups(lab: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.base.join(GROUP).join(lab))
        .collect()
}

/// The machine's cgroups: those recorded when it was booted and those this
/// process would use (the same, unless another process booted it).
fn machine_groups(lab: &str, machine: &str, files: &MachineLayout) -> Vec<PathBuf> {
    let mut groups = recorded(files);
    for group in lab_groups(lab).into_iter().map(|g| g.join(machine)) {
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

/// The machine's cgroups as recorded at its last boot.
pub fn recorded(files: &MachineLayout) -> Vec<PathBuf> {
    fs::read_to_string(files.cgroups_record())
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Creates the machine's cgroups (recording them first, so that a crash
/// half-way leaves nothing unrecorded) and returns the `cgroup.procs` files
/// to join from the child (see [`join_in_child`]).
pub fn prepare(lab: &str, machine: &str, files: &MachineLayout) -> Result<Vec<CString>> {
    let hierarchies = hierarchies();
    let groups: Vec<PathBuf> = hierarchies
        .iter()
        .map(|h| h.base.join(GROUP).join(lab).join(machine))
        .collect();
    let record: String = groups
        .iter()
        .map(|g| format!("{}\n", g.display()))
        .collect();
    write_atomic(&files.cgroups_record(), record.as_bytes(), 0o644)?;
    hierarchies
        .iter()
        .zip(&groups)
        .map(|(hierarchy, group)| {
            if hierarchy.cpuset {
                create_cpuset(&hierarchy.base, group)?;
            } else {
                fs::create_dir_all(group)
                    .with_context(|| format!("creating cgroup {}", group.display()))?;
            }
            if hierarchy.cpu {
                weigh_like_machines(&hierarchy.base.join(GROUP));
            }
            Ok(CString::new(
                group.join("cgroup.procs").as_os_str().as_bytes(),
            )?)
        })
        .collect()
}

/// One task's weight in cgroup v1's cpu controller (`cpu.shares`).
const TASK_SHARES: u64 = 1024;

/// Gives the lab's cpu groups the weight of their machines. In cgroup v1 a
/// group competes with the tasks beside it as one task: left at the default
/// weight, all machines of all labs together got one task's share of the
/// CPU against the host's busy processes (a 10-machine boot went from 4 s to
/// 25 s on a loaded host). Each lab group, and the top group, weighs one
/// task per machine below it, about what the machines' processes weighed
/// when they ran at the host's root. Best effort: a weight is only a share.
fn weigh_like_machines(top: &Path) {
    let children = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default()
    };
    let shares = |count: usize| (count.max(1) as u64 * TASK_SHARES).min(262_144).to_string();
    let mut total = 0;
    for lab in children(top) {
        let machines = children(&lab).len();
        total += machines;
        let _ = fs::write(lab.join("cpu.shares"), shares(machines));
    }
    let _ = fs::write(top.join("cpu.shares"), shares(total));
}

/// Creates `group` and its missing parents below `base` in the cpuset
/// hierarchy, each given its parent's CPUs and memory nodes (a new cpuset
/// group has none, and joining it fails with ENOSPC).
fn create_cpuset(base: &Path, group: &Path) -> Result<()> {
    let below = group.strip_prefix(base).unwrap_or(group);
    let mut current = base.to_path_buf();
    for part in below.components() {
        let parent = current.clone();
        current.push(part);
        match fs::create_dir(&current) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("creating cgroup {}", current.display()));
            }
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let mine = current.join(file);
            if fs::read_to_string(&mine)
                .unwrap_or_default()
                .trim()
                .is_empty()
            {
                let theirs = parent.join(file);
                let value = fs::read_to_string(&theirs)
                    .with_context(|| format!("reading {}", theirs.display()))?;
                fs::write(&mine, value.trim())
                    .with_context(|| format!("writing {}", mine.display()))?;
            }
        }
    }
    Ok(())
}

/// Moves the calling process into the given cgroups by writing "0" (the
/// writer itself) to each `cgroup.procs`. Runs between fork and exec, so it
/// only makes raw system calls on memory prepared before the fork.
pub fn join_in_child(procs: &[CString]) -> std::io::Result<()> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    for path in procs {
        let fd = open(
            path.as_c_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        nix::unistd::write(&fd, b"0")?;
    }
    Ok(())
}

/// Kills every process in the machine's cgroups at once (cgroup v2
/// `cgroup.kill`), when the kernel offers it.
pub fn kill(lab: &str, machine: &str, files: &MachineLayout) {
    for group in machine_groups(lab, machine, files) {
        let _ = fs::write(group.join("cgroup.kill"), "1");
    }
}

/// Removes the machine's (empty) cgroup trees, with whatever the machine
/// created in them (its services', its containers').
pub fn remove_machine(lab: &str, machine: &str, files: &MachineLayout) -> Result<()> {
    machine_groups(lab, machine, files)
        .iter()
        .try_for_each(|g| remove_tree(g))?;
    for hierarchy in hierarchies().iter().filter(|h| h.cpu) {
        let top = hierarchy.base.join(GROUP);
        if top.is_dir() {
            weigh_like_machines(&top);
        }
    }
    Ok(())
}

/// Removes the lab's (empty) cgroup trees, those of its machines' records
/// and those this process would use, and the top `k8sup-lab` group when no
/// other lab uses it.
pub fn remove_lab(lab: &str, machines: &[MachineLayout]) -> Result<()> {
    let mut groups = lab_groups(lab);
    for files in machines {
        for group in recorded(files) {
            if let Some(lab_group) = group.parent()
                && !groups.iter().any(|g| g == lab_group)
            {
                groups.push(lab_group.to_path_buf());
            }
        }
    }
    for group in groups {
        remove_tree(&group)?;
        if let Some(top) = group.parent() {
            let _ = fs::remove_dir(top);
        }
    }
    Ok(())
}

/// rmdir's a cgroup and its children, deepest first. cgroupfs directories
/// hold only virtual files and are removed with rmdir once empty of
/// processes.
fn remove_tree(group: &Path) -> Result<()> {
    let entries = match fs::read_dir(group) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading cgroup {}", group.display())),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    // Killed processes leave their cgroup only once reaped, which their new
    // parent (the host's init) does a moment later: EBUSY until then.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match fs::remove_dir(group) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc_ebusy()) && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                return Err(e).with_context(|| format!("removing cgroup {}", group.display()));
            }
        }
    }
}

fn libc_ebusy() -> i32 {
    nix::errno::Errno::EBUSY as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:12 - cgroup cgroup rw,cpu
34 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime shared:13 - cgroup cgroup rw,cpuset
35 30 0:31 / /sys/fs/cgroup/memory rw,relatime shared:14 - cgroup cgroup rw,memory
36 30 0:32 / /sys/fs/cgroup/net_cls,net_prio rw,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
";

    const HYBRID_CGROUP: &str = "\
6:net_cls,net_prio:/
5:memory:/process_api/f92a
4:cpuset:/
3:cpu:/
2:name=systemd:/some/where
0::/some/where
";

    fn bases(hs: &[Hierarchy]) -> Vec<&str> {
        hs.iter().map(|h| h.base.to_str().unwrap()).collect()
    }

    #[test]
    fn hybrid_v1_controllers_go_beneath_our_own_cgroup() {
        let hs = hierarchies_from(HYBRID_CGROUP, HYBRID_MOUNTINFO);
        assert_eq!(
            bases(&hs),
            [
                "/sys/fs/cgroup/net_cls,net_prio",
                "/sys/fs/cgroup/memory/process_api/f92a",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/cpu",
                // systemd's hierarchies keep the lab at their root.
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified",
            ]
        );
        let cpusets: Vec<bool> = hs.iter().map(|h| h.cpuset).collect();
        assert_eq!(cpusets, [false, false, true, false, false, false]);
        let cpus: Vec<bool> = hs.iter().map(|h| h.cpu).collect();
        assert_eq!(cpus, [false, false, false, true, false, false]);
    }

    #[test]
    fn pure_v2_has_one_hierarchy_at_its_root() {
        let mountinfo =
            "30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:9 - cgroup2 cgroup2 rw\n";
        let hs = hierarchies_from("0::/user.slice/session-1.scope\n", mountinfo);
        assert_eq!(bases(&hs), ["/sys/fs/cgroup"]);
    }
}
