//! One machine's life: power on (overlay, identity, network, systemd-nspawn),
//! wait until sshd answers, power off, and the leftovers cleanup in between.

use std::fs::{self, File};
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::cgroups;
use crate::identity;
use crate::layout::{Layout, MachineLayout};
use crate::mounts;
use crate::naming::{self, MacOf};
use crate::net;
use crate::node;
use crate::preflight::{self, NSPAWN};
use crate::procs;
use crate::rootfs;
use crate::state::{LabState, Machine};

/// The host-side names of machine `index` of a lab (derivable without its
/// address, so that cleanup can work from names alone).
#[derive(Debug, Clone)]
pub struct Parts {
    pub lab: String,
    pub name: String,
    pub netns: String,
    pub veth: String,
    pub files: MachineLayout,
}

impl Parts {
    pub fn new(lab: &str, layout: &Layout, index: u32) -> Self {
        let name = naming::machine_name(lab, index);
        Self {
            netns: naming::netns_name(&name),
            veth: naming::veth_name(lab, index),
            files: layout.machine(&name),
            lab: lab.to_owned(),
            name,
        }
    }

    /// Whether the machine's systemd-nspawn is running.
    pub fn is_running(&self) -> bool {
        !procs::nspawn_pids(&self.files.rootfs()).is_empty()
    }

    /// Pulls the plug and removes what the machine holds on the host
    /// (processes, veth, namespace, mount), keeping its disk (the overlay's
    /// upper layer). Safe on any partial state, including a crashed run's.
    pub fn power_off(&self) -> Result<()> {
        let rootfs = self.files.rootfs();
        cgroups::kill(&self.lab, &self.name, &self.files);
        procs::kill_machine(&rootfs, &net::netns_path(&self.netns))
            .with_context(|| format!("stopping machine {}", self.name))?;
        cgroups::remove_machine(&self.lab, &self.name, &self.files)?;
        net::delete_link(&self.veth)?;
        net::delete_netns(&self.netns)?;
        mounts::unmount_all_under(self.files.dir())?;
        Ok(())
    }
}

/// Boots `machine` of `state` from scratch (after clearing any leftovers).
/// Returns once systemd-nspawn is started; see [`wait_ready`].
pub fn power_on(state: &LabState, layout: &Layout, machine: &Machine, lab_key: &str) -> Result<()> {
    let parts = Parts::new(&state.name, layout, machine.index);
    parts.power_off()?;
    let files = &parts.files;
    let rootfs = files.rootfs();
    mounts::mount_overlay(&state.lower, &files.upper(), &files.work(), &rootfs)?;
    identity::write_machine_identity(&rootfs, &files.upper(), machine, lab_key)
        .with_context(|| format!("writing the identity of {}", machine.name))?;
    net::plug(&net::Plug {
        netns: &parts.netns,
        veth: &parts.veth,
        bridge: &naming::bridge_name(&state.name),
        address: machine.address,
        gateway: state.gateway(),
        host_mac: &naming::mac_address(&state.name, MacOf::HostVeth, machine.index),
        machine_mac: &naming::mac_address(&state.name, MacOf::Machine, machine.index),
    })
    .with_context(|| format!("connecting {} to the lab network", machine.name))?;
    spawn_nspawn(&parts, &rootfs)
}

/// Starts systemd-nspawn detached from us: its own session (no controlling
/// terminal, not killed with our process group), output to the console log.
/// The host's PID 1 may not be systemd, so there is no systemd-run or
/// machinectl to hand it to; `--keep-unit --register=no` keep nspawn from
/// asking for one.
fn spawn_nspawn(parts: &Parts, rootfs: &Path) -> Result<()> {
    // nspawn keeps per-machine propagation directories here.
    fs::create_dir_all("/run/systemd/nspawn").context("creating /run/systemd/nspawn")?;
    let log_path = parts.files.console_log();
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let program = preflight::which(NSPAWN.name).unwrap_or_else(|| PathBuf::from(NSPAWN.name));
    let mut command = Command::new(program);
    command
        .arg(format!("--directory={}", rootfs.display()))
        .args([
            "--boot",
            "--register=no",
            "--keep-unit",
            "--console=read-only",
            "--resolv-conf=off",
        ])
        .arg(format!(
            "--network-namespace-path={}",
            net::netns_path(&parts.netns).display()
        ))
        .arg(format!("--machine={}", parts.name))
        .arg(format!("--hostname={}", parts.name))
        // What makes the machine able to be a Kubernetes node (see `node`).
        .args(node::NSPAWN_ARGS)
        .args(node::storage_binds(&parts.files)?)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let cgroup_procs = cgroups::prepare(&parts.lab, &parts.name, &parts.files)?;
    // SAFETY: between fork and exec this only makes system calls (setsid,
    // open, write) on memory prepared before the fork; nothing allocates or
    // takes a lock.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            cgroups::join_in_child(&cgroup_procs)
        });
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("starting systemd-nspawn for {}", parts.name))?;
    // Reap it when it exits so that a long-lived caller (a test process that
    // stops and starts machines) does not collect zombies.
    thread::spawn(move || child.wait());
    Ok(())
}

/// Waits until sshd on `machine` sends its banner, or fails with the end of
/// the machine's console log if it does not boot in time.
pub fn wait_ready(lab: &str, layout: &Layout, machine: &Machine, timeout: Duration) -> Result<()> {
    let parts = Parts::new(lab, layout, machine.index);
    let deadline = Instant::now() + timeout;
    let target = SocketAddr::from((machine.address, 22));
    loop {
        if ssh_banner(target) {
            return Ok(());
        }
        let log = parts.files.console_log();
        if !parts.is_running() {
            bail!(
                "machine {} ({}) stopped while booting; its console log {} ends with:\n{}",
                machine.name,
                machine.address,
                log.display(),
                rootfs::tail(&log, 20)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "machine {} ({}) did not answer SSH within {:?}; its console log {} ends with:\n{}",
                machine.name,
                machine.address,
                timeout,
                log.display(),
                rootfs::tail(&log, 20)
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Whether something at `target` speaks SSH (sends an `SSH-` banner).
pub fn ssh_banner(target: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&target, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"SSH-"
}

/// Whether `address` answers SSH right now (for status checks and tests).
pub fn answers_ssh(address: Ipv4Addr) -> bool {
    ssh_banner(SocketAddr::from((address, 22)))
}
