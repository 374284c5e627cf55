//! Loading the inventory for a command that works on hosts: errors become
//! one error listing every diagnostic, and `--host` filters name hosts that
//! must exist. Nothing here prints: the command shows the warnings.

use std::path::Path;

use anyhow::{Result, bail};
use k8sup_inventory::{Host, Inventory, Loaded};

/// Load and validate `path`; fail with every error at once. The warnings
/// are the caller's to show.
pub fn inventory(path: &Path) -> Result<Loaded> {
    match k8sup_inventory::load(path) {
        Ok(loaded) => Ok(loaded),
        Err(report) => bail!(
            "{report}\nfix the inventory, then check it with: k8sup inventory check -i {}",
            path.display()
        ),
    }
}

/// The hosts named by `names` (all hosts when empty), in inventory order.
pub fn select_hosts<'a>(inventory: &'a Inventory, names: &[String]) -> Result<Vec<&'a Host>> {
    if names.is_empty() {
        return Ok(inventory.hosts.iter().collect());
    }
    let unknown: Vec<&str> = names
        .iter()
        .filter(|n| inventory.host(n).is_none())
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
        bail!(
            "no host named {} in the inventory (hosts: {})",
            unknown.join(", "),
            known.join(", ")
        );
    }
    Ok(inventory
        .hosts
        .iter()
        .filter(|h| names.contains(&h.name))
        .collect())
}
