//! `up`: create the lab or complete it. Idempotent: machines already running
//! are left alone, stopped or crashed ones are cleaned and booted, missing
//! ones are added, partitioned ones are put back on the network.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use ipnet::Ipv4Net;

use crate::error::LabError;
use crate::files;
use crate::identity;
use crate::inventory_file;
use crate::lab::{Lab, LabInfo};
use crate::layout::Layout;
use crate::lock::FileLock;
use crate::machine;
use crate::naming::{self, MacOf};
use crate::net;
use crate::preflight;
use crate::rootfs;
use crate::state::{self, FORMAT, LabState, Machine, Role};
use crate::subnet;

/// Highest machine count: addresses run from `.11` to `.250` of the /24.
pub const MAX_NODES: usize = 240;

/// How long `up` and `start` wait for sshd on a booting machine by default.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What `up` should bring up.
#[derive(Debug, Clone)]
pub struct UpOptions {
    /// Number of machines (default 3). An existing lab is grown to this
    /// size; it is never shrunk.
    pub nodes: usize,
    /// The first `control_planes` machines are control planes (default 1).
    pub control_planes: usize,
    /// The lab's /24; by default a free one in 10.213.0.0/16 is chosen when
    /// the lab is created and kept for its life.
    pub subnet: Option<Ipv4Net>,
    /// How long to wait for sshd on booting machines.
    pub ready_timeout: Duration,
    /// A mirror of the Kubernetes artifacts (tests/artifacts/build.sh's
    /// output): the inventory then takes binaries and image archives from it.
    pub mirror: Option<std::path::PathBuf>,
}

impl Default for UpOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            control_planes: 1,
            subnet: None,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            mirror: None,
        }
    }
}

impl Lab {
    /// Brings the lab up and writes its SSH key, known_hosts and inventory;
    /// returns once every machine answers SSH.
    ///
    /// Idempotent: a new lab is created (building the cached root first if
    /// needed); in an existing one, running machines are left alone, stopped
    /// or crashed ones are cleaned up and booted, missing ones are added
    /// (`nodes` above the current count) and partitioned ones are put back
    /// on the network. An existing lab is never shrunk, renumbered or
    /// re-roled: that is an error naming `down` as the way out.
    pub fn up(&self, opts: &UpOptions) -> Result<LabInfo> {
        naming::validate_lab_name(&self.name)?;
        preflight::require_host()?;
        if opts.nodes == 0 || opts.nodes > MAX_NODES {
            return Err(LabError::BadNodeCount {
                nodes: opts.nodes,
                max: MAX_NODES,
            }
            .into());
        }
        if opts.control_planes == 0 || opts.control_planes > opts.nodes {
            return Err(LabError::BadControlPlanes {
                control_planes: opts.control_planes,
                nodes: opts.nodes,
            }
            .into());
        }
        if let Some(s) = opts.subnet {
            subnet::validate(s)?;
        }
        let lock = self.lock()?;
        let state = match LabState::load(&self.layout.state_file())? {
            Some(existing) => self.complete(existing, opts)?,
            None => match self.create(opts) {
                Ok(state) => state,
                Err(e) => {
                    // Without lab.json nothing was created on the host (it is
                    // written before the bridge): leave no lock file behind
                    // for a lab that never existed.
                    if !self.exists() {
                        let _ = lock.remove();
                    }
                    return Err(e);
                }
            },
        };
        let lab_key = identity::ensure_lab_key(&self.layout, &self.name)?;
        self.boot_missing(&state, &lab_key, opts.ready_timeout)?;
        identity::write_known_hosts(&self.layout, &state.machines)?;
        let info = self.info_from(&state);
        inventory_file::write(
            &info.inventory,
            &self.name,
            &info.identity_file,
            &info.known_hosts,
            &state.machines,
            opts.mirror.as_deref(),
        )?;
        files::hand_to_sudo_user(&[
            &info.identity_file,
            &self.layout.public_key_file(),
            &info.known_hosts,
            &info.inventory,
        ])?;
        Ok(info)
    }

    /// A new lab: build (or reuse) the root, claim a subnet, record the lab
    /// before creating anything on the host, then create its bridge.
    fn create(&self, opts: &UpOptions) -> Result<LabState> {
        let bridge = naming::bridge_name(&self.name);
        // Refuse a taken --subnet before spending minutes on debootstrap.
        if let Some(s) = opts.subnet {
            subnet::check_free(s, &self.name, &bridge)?;
        }
        let lower = rootfs::ensure()?;
        // Choosing a subnet and making it visible to other labs (lab.json and
        // the bridge's route) is one step for all labs on the host.
        let _subnets = FileLock::exclusive(&Layout::subnet_lock_file())?;
        let subnet = match opts.subnet {
            Some(s) => {
                subnet::check_free(s, &self.name, &bridge)?;
                s
            }
            None => subnet::choose(&self.name)?,
        };
        let state = LabState {
            format: FORMAT,
            name: self.name.clone(),
            subnet,
            lower,
            machines: machines(
                subnet,
                &self.name,
                1..=opts.nodes as u32,
                opts.control_planes,
            ),
        };
        std::fs::create_dir_all(self.layout.dir())?;
        state.save(&self.layout.state_file())?;
        net::ensure_bridge(
            &bridge,
            &naming::mac_address(&self.name, MacOf::Bridge, 0),
            state.gateway(),
        )?;
        Ok(state)
    }

    /// An existing lab: check the request fits it, add missing machines and
    /// make sure its bridge is there (a reboot or crash may have removed it).
    fn complete(&self, mut state: LabState, opts: &UpOptions) -> Result<LabState> {
        if let Some(requested) = opts.subnet
            && requested != state.subnet
        {
            return Err(LabError::SubnetChanged {
                lab: self.name.clone(),
                current: state.subnet,
                requested,
            }
            .into());
        }
        let existing = state.machines.len();
        let existing_cp = state
            .machines
            .iter()
            .filter(|m| m.role == Role::ControlPlane)
            .count();
        if opts.nodes < existing || opts.control_planes != existing_cp {
            return Err(LabError::ShapeConflict {
                lab: self.name.clone(),
                existing,
                existing_cp,
            }
            .into());
        }
        if !state.lower.join("etc/os-release").exists() {
            anyhow::bail!(
                "lab {} was built on the cached root {}, which is gone; take the lab down and bring it up again",
                self.name,
                state.lower.display(),
            );
        }
        if opts.nodes > existing {
            let new = (existing as u32 + 1)..=(opts.nodes as u32);
            state
                .machines
                .extend(machines(state.subnet, &self.name, new, opts.control_planes));
            state.save(&self.layout.state_file())?;
        }
        self.ensure_bridge(&state)?;
        Ok(state)
    }

    /// Makes sure the bridge of an existing lab is up. When it is missing (a
    /// host reboot or a crash removed it), its subnet is checked again first:
    /// something else may have taken the range since.
    pub(crate) fn ensure_bridge(&self, state: &LabState) -> Result<()> {
        let bridge = naming::bridge_name(&self.name);
        if !net::link_exists(&bridge)? {
            let _subnets = FileLock::exclusive(&Layout::subnet_lock_file())?;
            subnet::check_free(state.subnet, &self.name, &bridge)?;
        }
        net::ensure_bridge(
            &bridge,
            &naming::mac_address(&self.name, MacOf::Bridge, 0),
            state.gateway(),
        )
    }

    /// Boots every machine that is not running, heals partitioned ones, and
    /// waits for sshd on all of them, one thread per machine.
    fn boot_missing(&self, state: &LabState, lab_key: &str, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let bridge = &naming::bridge_name(&self.name);
        preflight::check_inotify_budget(
            state
                .machines
                .iter()
                .filter(|m| !self.parts(m).is_running())
                .count(),
        );
        let failures: Vec<String> = thread::scope(|scope| {
            let handles: Vec<_> = state
                .machines
                .iter()
                .map(|m| {
                    scope.spawn(move || -> Result<()> {
                        let parts = self.parts(m);
                        if !parts.is_running() {
                            tracing::info!(machine = %m.name, address = %m.address, "booting");
                            machine::power_on(state, &self.layout, m, lab_key)?;
                        } else if !net::is_attached(&parts.veth, bridge)? {
                            tracing::info!(machine = %m.name, "healing partition");
                            net::attach(&parts.veth, bridge)?;
                        }
                        machine::wait_ready(&self.name, &self.layout, m, timeout)
                    })
                })
                .collect();
            handles
                .into_iter()
                .zip(&state.machines)
                .filter_map(|(h, m)| match h.join() {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(format!("{}: {e:#}", m.name)),
                    Err(_) => Some(format!("{}: the boot thread panicked", m.name)),
                })
                .collect()
        });
        if !failures.is_empty() {
            return Err(anyhow!(
                "{} of {} machines of lab {} did not come up (the others are running; `up` again retries \
                 only the missing ones):\n{}",
                failures.len(),
                state.machines.len(),
                self.name,
                failures.join("\n")
            ));
        }
        tracing::info!(lab = %self.name, elapsed = ?started.elapsed(), "all machines answer SSH");
        Ok(())
    }
}

/// Machines `indices` of a lab on `subnet`; the first `control_planes`
/// machines of the lab are control planes.
fn machines(
    subnet: Ipv4Net,
    lab: &str,
    indices: std::ops::RangeInclusive<u32>,
    control_planes: usize,
) -> Vec<Machine> {
    indices
        .map(|index| Machine {
            name: naming::machine_name(lab, index),
            index,
            address: state::machine_address(subnet, index),
            role: if index as usize <= control_planes {
                Role::ControlPlane
            } else {
                Role::Worker
            },
        })
        .collect()
}
