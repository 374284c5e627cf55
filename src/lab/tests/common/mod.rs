//! Helpers for the lab's tests. They boot real machines, so they need root
//! and the host tools; without root each test says so on stderr and returns.

#![allow(dead_code)]

use std::fs;
use std::net::Ipv4Addr;
use std::process::Output;
use std::time::{Duration, Instant};

use k8sup_lab::{Lab, STATE_ROOT, answers_ssh, bridge_name, netns_name, veth_name};

/// The lab tests boot machines: without root they fail loudly rather than
/// pass without having run.
pub fn require_root() {
    assert!(
        nix_is_root(),
        "k8sup lab tests boot machines and need root: run them as root (see README, Test)"
    );
}

fn nix_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Takes the lab down when dropped, so that a failed assertion does not
/// leave machines behind for the next run.
pub struct Cleanup<'a>(pub &'a Lab);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.0.down() {
            eprintln!("cleanup of lab {} failed: {e:#}", self.0.name());
        }
    }
}

/// Runs `cmd` on `node` over SSH (strict host-key checking), expecting success.
pub fn ssh(lab: &Lab, node: &str, cmd: &str) -> String {
    let out = ssh_output(lab, node, cmd);
    assert!(
        out.status.success(),
        "ssh {node} {cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn ssh_output(lab: &Lab, node: &str, cmd: &str) -> Output {
    let mut command = lab.ssh_command(node).expect("ssh command");
    command.arg(cmd);
    command.output().expect("running ssh")
}

/// Polls until `address` stops (or starts) answering SSH, up to `within`.
pub fn wait_answers(address: Ipv4Addr, want: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if answers_ssh(address) == want {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// PIDs of systemd-nspawn processes booting a machine of lab `name`.
pub fn nspawn_pids(name: &str) -> Vec<i32> {
    let dir = format!("--directory={STATE_ROOT}/{name}/");
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.first().is_some_and(|a| a.ends_with("systemd-nspawn"))
                && args.iter().any(|a| a.starts_with(&dir))
        })
        .collect()
}

/// Everything of lab `name` still on the host: processes, mounts, network
/// namespaces, veths, bridge, state directory. Empty when it is all gone.
pub fn leftovers(name: &str, max_nodes: u32) -> Vec<String> {
    let mut left = Vec::new();
    for pid in nspawn_pids(name) {
        left.push(format!("nspawn process {pid}"));
    }
    let state_dir = format!("{STATE_ROOT}/{name}");
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    for line in mounts
        .lines()
        .filter(|l| l.contains(&format!("{state_dir}/")))
    {
        left.push(format!("mount {line}"));
    }
    let links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let bridge = bridge_name(name);
    if links.contains(&format!(": {bridge}:")) {
        left.push(format!("bridge {bridge}"));
    }
    for i in 1..=max_nodes {
        let veth = veth_name(name, i);
        if links.contains(&format!(": {veth}@")) || links.contains(&format!(": {veth}:")) {
            left.push(format!("veth {veth}"));
        }
        let ns = netns_name(&format!("{name}-{i}"));
        if fs::metadata(format!("/run/netns/{ns}")).is_ok() {
            left.push(format!("netns {ns}"));
        }
    }
    // In every hierarchy (on hybrid hosts, the v1 controllers' beneath this
    // process's own cgroup).
    for group in k8sup_lab::lab_cgroups(name) {
        if fs::metadata(&group).is_ok() {
            left.push(format!("cgroup {}", group.display()));
        }
    }
    if fs::metadata(&state_dir).is_ok() {
        left.push(format!("state dir {state_dir}"));
    }
    left
}
