//! `down`: remove a lab entirely, including the leftovers of a crashed run.
//!
//! Cleanup is driven both by what lab.json lists and by what can be found on
//! the host under the lab's derived names (namespaces `k8sup-LAB-N`, veths
//! with the lab's hash, nspawn processes booting a root in its directory), so
//! that a lab is removed even when its state file is incomplete.

use std::collections::BTreeSet;
use std::fs;

use anyhow::{Context, Result};

use crate::cgroups;
use crate::lab::Lab;
use crate::machine::Parts;
use crate::mounts;
use crate::naming;
use crate::net;
use crate::preflight;
use crate::state::LabState;

impl Lab {
    /// Stops every machine and removes everything the lab created: processes,
    /// mounts, network namespaces, veths, the bridge and the state directory.
    /// The cached root stays for the next lab. Succeeds if there is nothing to
    /// remove.
    pub fn down(&self) -> Result<()> {
        naming::validate_lab_name(&self.name)?;
        preflight::require_root()?;
        preflight::require_tools(&[preflight::IP])?;
        let lock = self.lock()?;
        let machines: Vec<Parts> = self
            .machine_indices()?
            .into_iter()
            .map(|index| Parts::new(&self.name, &self.layout, index))
            .collect();
        for parts in &machines {
            parts.power_off()?;
        }
        let files: Vec<_> = machines.into_iter().map(|p| p.files).collect();
        cgroups::remove_lab(&self.name, &files)?;
        net::delete_link(&naming::bridge_name(&self.name))?;
        let dir = self.layout.dir();
        mounts::unmount_all_under(dir)?;
        if dir.exists() {
            fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        lock.remove()
    }

    /// Every machine number lab.json or the host knows of for this lab.
    fn machine_indices(&self) -> Result<BTreeSet<u32>> {
        let mut indices = BTreeSet::new();
        if let Ok(Some(state)) = LabState::load(&self.layout.state_file()) {
            indices.extend(state.machines.iter().map(|m| m.index));
        }
        // Machine directories (an overlay may be mounted there).
        if let Ok(entries) = fs::read_dir(self.layout.dir().join("machines")) {
            indices.extend(
                entries
                    .flatten()
                    .filter_map(|e| self.index_of(e.file_name().to_str()?)),
            );
        }
        // Namespaces named after the lab's machines.
        indices.extend(
            net::netns_names()
                .iter()
                .filter_map(|ns| ns.strip_prefix("k8sup-"))
                .filter_map(|machine| self.index_of(machine)),
        );
        // Host ends of veths carrying the lab's hash.
        let prefix = naming::veth_name(&self.name, 0);
        let prefix = prefix.trim_end_matches('0');
        for link in net::links_with_prefix(prefix)? {
            if let Some(index) = link.strip_prefix(prefix).and_then(|n| n.parse().ok()) {
                indices.insert(index);
            }
        }
        Ok(indices)
    }

    /// N when `machine` is `LAB-N`.
    fn index_of(&self, machine: &str) -> Option<u32> {
        let n = machine.strip_prefix(&self.name)?.strip_prefix('-')?;
        if n.bytes().all(|b| b.is_ascii_digit()) {
            n.parse().ok()
        } else {
            None
        }
    }
}
