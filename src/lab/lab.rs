//! [`Lab`]: a named set of machines and the operations on it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ipnet::Ipv4Net;
use serde::Serialize;

use crate::error::LabError;
use crate::layout::Layout;
use crate::lock::FileLock;
use crate::machine::{self, Parts};
use crate::naming;
use crate::net;
use crate::preflight;
use crate::state::{LabState, Machine};

/// A lab, by name. Creating the value touches nothing; [`Lab::up`] creates
/// or completes the lab, [`Lab::down`] removes it.
#[derive(Debug, Clone)]
pub struct Lab {
    pub(crate) name: String,
    pub(crate) layout: Layout,
}

/// Where a lab's files are and what its machines are.
#[derive(Debug, Clone, Serialize)]
pub struct LabInfo {
    pub name: String,
    pub subnet: Ipv4Net,
    /// The inventory for k8sup (`k8sup ... -i <inventory>`).
    pub inventory: PathBuf,
    /// Private key for root on every machine (ed25519, 0600).
    pub identity_file: PathBuf,
    /// known_hosts holding each machine's host key, by address.
    pub known_hosts: PathBuf,
    pub machines: Vec<Machine>,
}

/// What a machine is doing, as seen from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MachineState {
    /// Booted and on the lab network.
    Running,
    /// Powered off (`stop`, a crash, or not started yet).
    Stopped,
    /// Running but cut off the lab network (`partition`).
    Partitioned,
}

impl std::fmt::Display for MachineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MachineState::Running => "running",
            MachineState::Stopped => "stopped",
            MachineState::Partitioned => "partitioned",
        })
    }
}

/// One line of [`Lab::status`].
#[derive(Debug, Clone, Serialize)]
pub struct MachineStatus {
    #[serde(flatten)]
    pub machine: Machine,
    pub state: MachineState,
}

impl Lab {
    /// The lab called `name` (it need not exist yet). The name is checked by
    /// each operation: lowercase letters, digits and inner dashes.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let layout = Layout::new(&name);
        Self { name, layout }
    }

    /// The existing lab called `name`; fails if it was never brought up.
    pub fn open(name: impl Into<String>) -> Result<Self> {
        let lab = Self::new(name);
        lab.load()?;
        Ok(lab)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The lab's state directory (/var/lib/k8sup/lab/NAME).
    pub fn dir(&self) -> PathBuf {
        self.layout.dir().to_path_buf()
    }

    /// Whether the lab exists (was brought up and not taken down).
    pub fn exists(&self) -> bool {
        self.layout.state_file().exists()
    }

    /// Paths and machines of the existing lab.
    pub fn info(&self) -> Result<LabInfo> {
        Ok(self.info_from(&self.load()?))
    }

    pub(crate) fn info_from(&self, state: &LabState) -> LabInfo {
        LabInfo {
            name: self.name.clone(),
            subnet: state.subnet,
            inventory: self.layout.inventory(),
            identity_file: self.layout.identity_file(),
            known_hosts: self.layout.known_hosts(),
            machines: state.machines.clone(),
        }
    }

    /// Each machine and whether it is running, stopped or partitioned, read
    /// from the host (processes and links), not from a cached record.
    pub fn status(&self) -> Result<Vec<MachineStatus>> {
        let state = self.load()?;
        let bridge = naming::bridge_name(&self.name);
        state
            .machines
            .iter()
            .map(|m| {
                let parts = self.parts(m);
                let state = if !parts.is_running() {
                    MachineState::Stopped
                } else if net::is_attached(&parts.veth, &bridge)? {
                    MachineState::Running
                } else {
                    MachineState::Partitioned
                };
                Ok(MachineStatus {
                    machine: m.clone(),
                    state,
                })
            })
            .collect()
    }

    /// The machine called `node`: its full name (`LAB-2`) or its number (`2`).
    pub fn machine(&self, node: &str) -> Result<Machine> {
        let state = self.load()?;
        find(&state, node).cloned()
    }

    /// The address of machine `node` on the lab network.
    pub fn address(&self, node: &str) -> Result<Ipv4Addr> {
        Ok(self.machine(node)?.address)
    }

    /// An `ssh` command (OpenSSH client) logged in as root on machine
    /// `node` with the lab's key and strict host-key checking against the
    /// lab's known_hosts. Append the remote command, if any, with `.arg`.
    pub fn ssh_command(&self, node: &str) -> Result<Command> {
        preflight::require_tools(&[preflight::SSH])?;
        let machine = self.machine(node)?;
        let mut command = Command::new(preflight::which("ssh").unwrap_or_else(|| "ssh".into()));
        command
            .arg("-i")
            .arg(self.layout.identity_file())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.layout.known_hosts().display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "LogLevel=ERROR",
            ])
            // Never prompt (there is no password; a changed host key must fail).
            .args(["-o", "BatchMode=yes"])
            .args(["-o", "ConnectTimeout=10", "-l", "root", "--"])
            .arg(machine.address.to_string());
        Ok(command)
    }

    /// The host cgroups machine `node` was last booted in, one per cgroup
    /// hierarchy: everything it runs (its services, the containers of a
    /// node) lives beneath them. Empty if it never booted.
    pub fn machine_cgroups(&self, node: &str) -> Result<Vec<PathBuf>> {
        let machine = self.machine(node)?;
        Ok(crate::cgroups::recorded(&self.parts(&machine).files))
    }

    /// Cuts the power of machine `node`: every process of it is killed at
    /// once (SIGKILL, no shutdown) and its address stops answering. Its disk
    /// is kept for [`Lab::start`].
    pub fn stop(&self, node: &str) -> Result<()> {
        let (_lock, state) = self.lock_existing()?;
        let machine = find(&state, node)?;
        self.parts(machine).power_off()
    }

    /// Boots machine `node` again from its disk and waits until sshd answers
    /// (up to `timeout`). A running machine is left alone.
    pub fn start(&self, node: &str) -> Result<()> {
        self.start_with_timeout(node, crate::up::DEFAULT_READY_TIMEOUT)
    }

    /// [`Lab::start`] with an explicit readiness timeout.
    pub fn start_with_timeout(&self, node: &str, timeout: Duration) -> Result<()> {
        let (_lock, state) = self.lock_existing()?;
        let machine = find(&state, node)?.clone();
        if self.parts(&machine).is_running() {
            return Ok(());
        }
        self.ensure_bridge(&state)?;
        let lab_key = crate::identity::ensure_lab_key(&self.layout, &self.name)?;
        machine::power_on(&state, &self.layout, &machine, &lab_key)?;
        machine::wait_ready(&self.name, &self.layout, &machine, timeout)
    }

    /// Takes running machine `node` off the lab network: nothing reaches it
    /// and it reaches nothing, while its processes keep running.
    pub fn partition(&self, node: &str) -> Result<()> {
        let (_lock, state) = self.lock_existing()?;
        let machine = find(&state, node)?;
        let parts = self.require_running(machine)?;
        net::detach(&parts.veth)
    }

    /// Puts a partitioned machine back on the lab network.
    pub fn heal(&self, node: &str) -> Result<()> {
        let (_lock, state) = self.lock_existing()?;
        let machine = find(&state, node)?;
        let parts = self.require_running(machine)?;
        net::attach(&parts.veth, &naming::bridge_name(&self.name))
    }

    fn require_running(&self, machine: &Machine) -> Result<Parts> {
        let parts = self.parts(machine);
        if !parts.is_running() {
            bail!(
                "machine {} of lab {} is stopped; start it first",
                machine.name,
                self.name
            );
        }
        Ok(parts)
    }

    pub(crate) fn parts(&self, machine: &Machine) -> Parts {
        Parts::new(&self.name, &self.layout, machine.index)
    }

    /// Checks the name, reads lab.json; fails if the lab does not exist.
    pub(crate) fn load(&self) -> Result<LabState> {
        naming::validate_lab_name(&self.name)?;
        let path = self.layout.state_file();
        LabState::load(&path)?.ok_or_else(|| {
            LabError::NoSuchLab {
                lab: self.name.clone(),
                state: path,
            }
            .into()
        })
    }

    /// Takes the lab's lock (after the root and tool checks) and reads its state.
    fn lock_existing(&self) -> Result<(FileLock, LabState)> {
        naming::validate_lab_name(&self.name)?;
        preflight::require_host()?;
        // Fail on a missing lab before creating its lock file.
        self.load()?;
        let lock = self.lock()?;
        let state = self.load()?;
        Ok((lock, state))
    }

    pub(crate) fn lock(&self) -> Result<FileLock> {
        FileLock::exclusive(&Layout::lock_file(&self.name))
            .with_context(|| format!("locking lab {}", self.name))
    }
}

/// Finds a machine by full name or by number.
fn find<'a>(state: &'a LabState, node: &str) -> Result<&'a Machine> {
    let by_number = node.parse::<u32>().ok();
    state
        .machines
        .iter()
        .find(|m| m.name == node || Some(m.index) == by_number)
        .ok_or_else(|| {
            let known = state
                .machines
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            LabError::NoSuchMachine {
                lab: state.name.clone(),
                node: node.to_owned(),
                known,
            }
            .into()
        })
}
