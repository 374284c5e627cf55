//! A cgroup of its own for each machine.
//!
//! With `--keep-unit` and no systemd on the host to ask for a scope,
//! systemd-nspawn runs the container in the cgroup nspawn itself is in, and
//! creates `payload/` (the container) and `supervisor/` (itself) there. Booted
//! from the same cgroup, every machine would share one `payload/` tree and
//! each machine's systemd would create, kill and remove the others' units'
//! cgroups (seen here: "Failed at step CGROUP spawning systemd-sysusers",
//! machines coming up degraded). So nspawn is moved, between fork and exec,
//! into `k8sup-lab/LAB/MACHINE` of each writable hierarchy: the unified (v2)
//! one and, on hybrid hosts, systemd's named v1 hierarchy that nspawn
//! delegates to the container.

use std::ffi::CString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

const ROOT: &str = "/sys/fs/cgroup";
const GROUP: &str = "k8sup-lab";

/// The cgroup hierarchies a container's systemd manages on this host.
fn hierarchies() -> Vec<PathBuf> {
    let root = Path::new(ROOT);
    if root.join("cgroup.controllers").exists() {
        // Pure cgroup v2.
        return vec![root.to_path_buf()];
    }
    [root.join("unified"), root.join("systemd")]
        .into_iter()
        .filter(|h| h.join("cgroup.procs").exists())
        .collect()
}

/// The lab's cgroup in every hierarchy.
fn lab_groups(lab: &str) -> Vec<PathBuf> {
    hierarchies()
        .into_iter()
        .map(|h| h.join(GROUP).join(lab))
        .collect()
}

/// The machine's cgroup in every hierarchy.
fn machine_groups(lab: &str, machine: &str) -> Vec<PathBuf> {
    lab_groups(lab)
        .into_iter()
        .map(|g| g.join(machine))
        .collect()
}

/// Creates the machine's cgroups and returns the `cgroup.procs` files to
/// join from the child (see [`join_in_child`]).
pub fn prepare(lab: &str, machine: &str) -> Result<Vec<CString>> {
    machine_groups(lab, machine)
        .into_iter()
        .map(|group| {
            fs::create_dir_all(&group)
                .with_context(|| format!("creating cgroup {}", group.display()))?;
            Ok(CString::new(
                group.join("cgroup.procs").as_os_str().as_bytes(),
            )?)
        })
        .collect()
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
pub fn kill(lab: &str, machine: &str) {
    for group in machine_groups(lab, machine) {
        let _ = fs::write(group.join("cgroup.kill"), "1");
    }
}

/// Removes the machine's (empty) cgroup trees.
pub fn remove_machine(lab: &str, machine: &str) -> Result<()> {
    machine_groups(lab, machine)
        .iter()
        .try_for_each(|g| remove_tree(g))
}

/// Removes the lab's (empty) cgroup trees, and the top `k8sup-lab` group
/// when no other lab uses it.
pub fn remove_lab(lab: &str) -> Result<()> {
    for group in lab_groups(lab) {
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
