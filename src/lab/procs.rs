//! Finding and killing a machine's processes through /proc.
//!
//! A machine is a `systemd-nspawn` process and, below it, the container's
//! init (PID 1 of its own PID namespace) with everything it started. Killing
//! nspawn alone is not enough: the container's init is re-parented and keeps
//! running (seen on this host). Killing the container's init makes the kernel
//! kill every process of its PID namespace, including nested ones (pods, if
//! Kubernetes runs inside). Processes are found both from nspawn's children
//! and from the machine's network namespace, so that the leftovers of a
//! crashed run (nspawn gone, container still alive) are found too.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Numeric entries of /proc.
fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The command line of `pid`; empty for zombies and kernel threads.
fn cmdline(pid: i32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Live systemd-nspawn processes booting `rootfs` (matched on the
/// `--directory=` argument the lab passes).
pub fn nspawn_pids(rootfs: &Path) -> Vec<i32> {
    let wanted = format!("--directory={}", rootfs.display());
    all_pids()
        .into_iter()
        .filter(|&pid| {
            let args = cmdline(pid);
            args.first()
                .is_some_and(|a0| a0.ends_with("systemd-nspawn"))
                && args.contains(&wanted)
        })
        .collect()
}

/// Live processes whose network namespace is the one bound at `netns_path`.
pub fn pids_in_netns(netns_path: &Path) -> Vec<i32> {
    let Ok(meta) = fs::metadata(netns_path) else {
        return Vec::new();
    };
    let wanted = format!("net:[{}]", meta.ino());
    all_pids()
        .into_iter()
        .filter(|pid| {
            fs::read_link(format!("/proc/{pid}/ns/net"))
                .is_ok_and(|link| link.to_string_lossy() == wanted)
        })
        .collect()
}

/// Direct children of `pid` (all its threads').
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| {
            s.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect()
}

/// Whether `pid` is PID 1 of a nested PID namespace (a container's init).
fn is_namespace_init(pid: i32) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() >= 2 && ids.last() == Some(&"1")
        })
        .unwrap_or(false)
}

/// Kills a machine abruptly (SIGKILL, like pulling the power) and waits
/// until none of its processes is left.
pub fn kill_machine(rootfs: &Path, netns_path: &Path) -> Result<()> {
    let nspawns = nspawn_pids(rootfs);
    let in_netns = pids_in_netns(netns_path);
    let mut inits: Vec<i32> = nspawns.iter().flat_map(|&p| children(p)).collect();
    inits.extend(in_netns.iter().copied().filter(|&p| is_namespace_init(p)));
    // The container's init first: the kernel then empties its PID namespace.
    for &pid in inits.iter().chain(&nspawns).chain(&in_netns) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left: Vec<i32> = nspawn_pids(rootfs)
            .into_iter()
            .chain(pids_in_netns(netns_path))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "processes {left:?} of the machine at {} survived SIGKILL for 15 s",
                rootfs.display()
            );
        }
        for &pid in &left {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        thread::sleep(Duration::from_millis(50));
    }
}
