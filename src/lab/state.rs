//! The lab's description on disk (`lab.json` in its state directory).
//!
//! Only the lab's *shape* is stored (subnet, machines, the root they boot
//! from). Whether a machine is running or partitioned is always read from the
//! host itself (processes, links), never from a file that a crash could leave
//! out of date.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// What a machine is for in the cluster: the inventory's own role, since the
/// lab writes an inventory.
pub use k8sup_inventory::Role;

/// One machine of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Hostname and machine name, `LAB-N`.
    pub name: String,
    /// N in `LAB-N`, from 1.
    pub index: u32,
    /// Its address on the lab bridge (`.10 + N` of the lab's /24).
    pub address: Ipv4Addr,
    pub role: Role,
}

/// Contents of `lab.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    /// Bumped if this file's meaning changes.
    pub format: u32,
    pub name: String,
    pub subnet: Ipv4Net,
    /// The cached root the machines' overlays use as lower layer. Kept so
    /// that a recipe change (new cache) never swaps the lower layer under an
    /// existing machine's upper layer.
    pub lower: PathBuf,
    pub machines: Vec<Machine>,
}

pub const FORMAT: u32 = 1;

impl LabState {
    /// Reads `path`; `None` when the lab does not exist.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let state = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a lab state file; remove the lab's directory by hand",
                path.display()
            )
        })?;
        Ok(Some(state))
    }

    /// Writes `path` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::files::write_atomic(path, text.as_bytes(), 0o644)
    }

    /// The gateway address on the bridge: `.1` of the subnet.
    pub fn gateway(&self) -> Ipv4Addr {
        gateway(self.subnet)
    }
}

pub fn gateway(subnet: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 1)
}

/// Address of machine `index`: `.10 + index` of the subnet.
pub fn machine_address(subnet: Ipv4Net, index: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + 10 + index)
}
