//! Local machines that behave like VMs, for trying k8sup in a minute and for
//! its end-to-end tests: the substitute for Vagrant or multipass on one Linux
//! box.
//!
//! A lab is a set of Debian bookworm machines, each booted by
//! `systemd-nspawn` with systemd as init and OpenSSH running, with its own
//! hostname, its own disk (an overlay over a root built once with debootstrap
//! and cached), its own network namespace and an address on a private bridge
//! that only the host and the other machines of the lab can reach.
//!
//! ```no_run
//! use k8sup_lab::{Lab, UpOptions};
//! # fn main() -> anyhow::Result<()> {
//! let lab = Lab::new("t-facts");
//! let info = lab.up(&UpOptions { nodes: 3, ..Default::default() })?;
//! println!("inventory at {}", info.inventory.display());
//! lab.stop("t-facts-2")?; // power cut
//! lab.start("t-facts-2")?; // boots again, same disk
//! lab.down()?;
//! # Ok(()) }
//! ```
//!
//! Everything needs root and the host tools `systemd-nspawn`
//! (systemd-container), `ip` (iproute2), `ssh-keygen` (openssh-client), and
//! `debootstrap` the first time. All operations are synchronous; operations
//! on one lab are serialised by a file lock, and different labs may be used
//! from several processes at once.

mod cgroups;
mod down;
mod error;
mod exec;
mod files;
mod identity;
mod inventory_file;
mod lab;
mod layout;
mod lock;
mod machine;
mod mounts;
mod naming;
mod net;
mod node;
mod preflight;
mod procs;
mod rootfs;
mod state;
mod subnet;
mod up;

pub use error::LabError;
pub use ipnet::Ipv4Net;
pub use lab::{Lab, LabInfo, MachineState, MachineStatus};
pub use layout::{CACHE_ROOT, STATE_ROOT};
pub use machine::answers_ssh;
pub use naming::{bridge_name, netns_name, veth_name};
pub use state::{Machine, Role};
pub use up::UpOptions;

/// Lab `lab`'s cgroup in every hierarchy, as a lab brought up by this
/// process places it (for checks that nothing is left behind).
pub fn lab_cgroups(lab: &str) -> Vec<std::path::PathBuf> {
    cgroups::lab_groups(lab)
}

/// Whether the machines' root for the current recipe is already built (when
/// it is not, the next `up` runs debootstrap first, a minute or two).
pub fn root_is_cached() -> bool {
    rootfs::is_cached()
}
