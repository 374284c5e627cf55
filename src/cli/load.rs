//! Loading the inventory for a command that works on hosts: errors become
//! one error listing every diagnostic, and `--host` filters name hosts that
//! must exist. Nothing here prints: the command shows the warnings.

use std::path::Path;

use anyhow::{Result, bail};
use k8sup_inventory::{Components, Diagnostic, Host, Inventory, Loaded, Report, Severity};

/// Load and validate `path`; fail with every error at once. The warnings
/// are the caller's to show.
pub fn inventory(path: &Path) -> Result<Loaded> {
    let report = match k8sup_inventory::load(path) {
        Ok(loaded) => match installable(&loaded.inventory) {
            None => return Ok(loaded),
            Some(d) => Report {
                file: d.file.clone(),
                diagnostics: vec![d],
            },
        },
        Err(report) => report,
    };
    bail!(
        "{report}\nfix the inventory, then check it with: k8sup inventory check -i {}",
        path.display()
    )
}

/// A cluster's Kubernetes version that k8sup cannot install, reported at
/// its line before anything runs (the inventory crate knows the syntax of a
/// version; which ones k8sup installs is the artifact catalogue's).
pub fn installable(inventory: &Inventory) -> Option<Diagnostic> {
    let c = &inventory.cluster;
    if c.components != Components::Kubernetes {
        return None;
    }
    let version = format!("v{}", c.kubernetes_version);
    let err = version
        .parse::<k8sup_artifacts::KubeVersion>()
        .and_then(|v| v.pinned().map(|_| ()))
        .err()?;
    let file = inventory.path.display().to_string();
    let mut d = Diagnostic::whole_file(
        Severity::Error,
        &file,
        format!("'kubernetesVersion' in 'cluster': {err}"),
    );
    if let Some((line, column)) = c.kubernetes_version_at.0 {
        d.line = line;
        d.column = column;
    }
    d.help = Some(format!(
        "write one of {} (the patch release of your choice)",
        k8sup_artifacts::catalog::supported_versions().join(", ")
    ));
    Some(d)
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
