//! One module per subcommand: its clap arguments and its `execute` function.

pub mod apply;
pub mod artifacts;
pub mod certs;
pub mod facts;
pub mod init;
pub mod inventory;
pub mod kubeconfig;
pub mod lab;
pub mod plan;
pub mod status;

use std::path::Path;

use anyhow::Result;
use k8sup_inventory::Inventory;

/// The inventory of a command that works on hosts, its warnings shown on
/// stderr (commands print; `crate::load` does not).
pub(crate) fn load_inventory(path: &Path) -> Result<Inventory> {
    let loaded = crate::load::inventory(path)?;
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    Ok(loaded.inventory)
}
