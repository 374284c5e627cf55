//! `k8sup inventory ...`: validate inventory files and show what they mean.
//!
//! `check` is meant for people and for CI: diagnostics go to stderr in the
//! compiler format (`file:line:col: error: ...` with the source line and a
//! caret), a one-line summary goes to stdout, and `--output json` prints one
//! document for scripts. The exit code is 1 when there are errors; warnings
//! are printed but do not fail the check. `show` prints, per host, the
//! connection k8sup will make once defaults and overrides are merged.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use k8sup_inventory::{Diagnostic, Inventory, Report};
use serde::Serialize;

use crate::output::{OutputArgs, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum InventoryCmd {
    /// Validate an inventory file and report every problem at once.
    ///
    /// Checks the YAML syntax, unknown or misspelt keys (with suggestions),
    /// types, required keys, unique host names and addresses, CIDRs, the
    /// number of control-plane hosts, ports, proxyJump targets, host key
    /// policies and ${ENV} variables. Each problem is shown with its file,
    /// line and column. Nothing is contacted over the network.
    ///
    /// Exit status: 0 when valid (warnings are printed but allowed), 1 when
    /// there are errors.
    ///
    /// Examples:
    ///
    ///   k8sup inventory check -i inventory.yaml
    ///
    ///   K8SUP_INVENTORY=prod.yaml k8sup inventory check --output json | jq .diagnostics
    #[command(verbatim_doc_comment)]
    Check(FileArgs),

    /// Show each host's effective settings: the SSH connection (user,
    /// address, port, jump host, sudo) after the top-level `ssh:` defaults,
    /// the host's own overrides and k8sup's defaults are merged.
    ///
    /// The inventory is validated first; on errors they are printed as by
    /// `check` and the exit status is 1. Nothing is contacted.
    ///
    /// Examples:
    ///
    ///   k8sup inventory show -i inventory.yaml
    ///
    ///   k8sup inventory show -i inventory.yaml -o json | jq '.hosts[].ssh.user'
    #[command(verbatim_doc_comment)]
    Show(FileArgs),
}

#[derive(Debug, clap::Args)]
pub struct FileArgs {
    /// The inventory file.
    #[arg(short = 'i', long, env = "K8SUP_INVENTORY", value_name = "FILE")]
    pub inventory: PathBuf,

    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn execute(c: InventoryCmd) -> anyhow::Result<ExitCode> {
    match c {
        InventoryCmd::Check(args) => check(&args),
        InventoryCmd::Show(args) => show(&args),
    }
}

/// The `--output json` document of `k8sup inventory check`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckJson<'a> {
    /// The file as given on the command line.
    file: String,
    /// True when there are no errors (warnings allowed).
    ok: bool,
    errors: usize,
    warnings: usize,
    /// Errors first, then warnings, each in file order.
    diagnostics: &'a [Diagnostic],
    /// Number of hosts; 0 when the inventory is invalid.
    hosts: usize,
    control_planes: usize,
    workers: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kubernetes_version: Option<String>,
}

fn check(args: &FileArgs) -> anyhow::Result<ExitCode> {
    let file = args.inventory.display().to_string();
    let (inventory, diagnostics) = match k8sup_inventory::load(&args.inventory) {
        Ok(loaded) => match crate::load::installable(&loaded.inventory) {
            // A version k8sup cannot install: reported like any inventory error.
            Some(d) => {
                let mut all = loaded.warnings;
                all.insert(0, d);
                (None, all)
            }
            None => (Some(loaded.inventory), loaded.warnings),
        },
        Err(Report { diagnostics, .. }) => (None, diagnostics),
    };
    let errors = diagnostics.iter().filter(|d| d.is_error()).count();
    let warnings = diagnostics.len() - errors;
    match args.output.output {
        OutputFormat::Json => {
            let doc = CheckJson {
                file: file.clone(),
                ok: errors == 0,
                errors,
                warnings,
                diagnostics: &diagnostics,
                hosts: inventory.as_ref().map_or(0, |i| i.hosts.len()),
                control_planes: inventory.as_ref().map_or(0, |i| i.control_planes().count()),
                workers: inventory.as_ref().map_or(0, |i| i.workers().count()),
                cluster: inventory.as_ref().map(|i| i.cluster.name.as_str()),
                kubernetes_version: inventory
                    .as_ref()
                    .map(|i| format!("v{}", i.cluster.kubernetes_version)),
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        OutputFormat::Text => {
            for d in &diagnostics {
                eprintln!("{d}\n");
            }
            match &inventory {
                Some(inv) => println!("{}", summary(&args.inventory, inv, warnings)),
                None => eprintln!("{file}: {}", counts(errors, warnings)),
            }
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The `--output json` document of `k8sup inventory show`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ShowJson<'a> {
    cluster: &'a k8sup_inventory::Cluster,
    options: &'a k8sup_inventory::Options,
    hosts: Vec<ShowHost<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ShowHost<'a> {
    name: &'a str,
    role: k8sup_inventory::Role,
    address: &'a str,
    groups: &'a [String],
    ssh: k8sup_inventory::EffectiveSsh,
}

fn show(args: &FileArgs) -> anyhow::Result<ExitCode> {
    let loaded = match k8sup_inventory::load(&args.inventory) {
        Ok(l) => l,
        Err(report) => {
            for d in &report.diagnostics {
                eprintln!("{d}\n");
            }
            eprintln!(
                "{}: {}",
                report.file,
                counts(report.error_count(), report.warning_count())
            );
            return Ok(ExitCode::from(1));
        }
    };
    for d in &loaded.warnings {
        eprintln!("{d}\n");
    }
    let inv = &loaded.inventory;
    match args.output.output {
        OutputFormat::Json => {
            let doc = ShowJson {
                cluster: &inv.cluster,
                options: &inv.options,
                hosts: inv
                    .hosts
                    .iter()
                    .map(|h| ShowHost {
                        name: &h.name,
                        role: h.role,
                        address: &h.address,
                        groups: &h.groups,
                        ssh: inv.effective_ssh(h),
                    })
                    .collect(),
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        OutputFormat::Text => print!("{}", show_text(inv)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A header line for the cluster, then one row per host.
fn show_text(inv: &Inventory) -> String {
    let c = &inv.cluster;
    let mut out = format!(
        "cluster {}: Kubernetes v{}, pods {}, services {}, API server port {}\n\n",
        c.name, c.kubernetes_version, c.pod_cidr, c.service_cidr, c.api_server.port
    );
    let mut rows = vec![["HOST", "ROLE", "CONNECT", "VIA", "SUDO", "GROUPS"].map(String::from)];
    for h in &inv.hosts {
        let e = inv.effective_ssh(h);
        let via = e.proxy_jump.as_ref().map_or("-".to_owned(), |j| {
            let name = j
                .host
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!("{}@{}{name}", j.user, host_port(&j.address, j.port))
        });
        rows.push([
            h.name.clone(),
            h.role.to_string(),
            format!("{}@{}", e.user, host_port(&e.address, e.port)),
            via,
            if e.sudo { "yes" } else { "no" }.to_owned(),
            if h.groups.is_empty() {
                "-".to_owned()
            } else {
                h.groups.join(",")
            },
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `host:port`, with IPv6 addresses in brackets as OpenSSH writes them.
fn host_port(address: &str, port: u16) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// `inventory.yaml: ok, 3 hosts (1 control-plane, 2 workers)`.
fn summary(path: &Path, inv: &Inventory, warnings: usize) -> String {
    let hosts = inv.hosts.len();
    let cps = inv.control_planes().count();
    let workers = inv.workers().count();
    let mut s = format!(
        "{}: ok, {hosts} host{} ({cps} control-plane, {workers} worker{})",
        path.display(),
        plural(hosts),
        plural(workers)
    );
    if warnings > 0 {
        s.push_str(&format!(", {warnings} warning{}", plural(warnings)));
    }
    s
}

fn counts(errors: usize, warnings: usize) -> String {
    let mut s = format!("{errors} error{}", plural(errors));
    if warnings > 0 {
        s.push_str(&format!(", {warnings} warning{}", plural(warnings)));
    }
    s
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
