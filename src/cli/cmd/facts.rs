//! `k8sup facts`: connect to every host and report what it is.
//!
//! Hosts are connected in parallel the way `plan` and `apply` connect them
//! (one shared connection per bastion), then each runs the facts script in
//! one exec. A host that fails is reported by name with its reason; the
//! others still answer, and the exit status is 1 when any host failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::connect::connect_hosts;
use crate::output::{OutputArgs, OutputFormat};
use k8sup_facts::{self as facts, HostFacts};

/// Connect to all hosts of an inventory in parallel and print, for each, its
/// OS and version, kernel, architecture, CPUs, memory, init system, and the
/// k8sup components already installed.
///
/// Each host answers in one round trip (one remote script). Hosts that cannot
/// be reached are named with the reason; the others still answer. Exit status
/// is 1 when any host failed.
///
/// JSON output (`--output json`) is an array with one object per host, in
/// inventory order: `host`, `address`, `role`, `ok`, `error` (a string when
/// `ok` is false), and when `ok`: `hostname`, `os`, `os_id`, `os_version`,
/// `kernel`, `arch` (GOARCH: amd64, arm64, ...), `machine` (uname -m),
/// `cpus`, `memory_bytes`, `init`, `uptime_seconds`, `machine_id`, `installed`
/// (component name → `{path, version, active, enabled}`).
///
/// Example: k8sup facts -i inventory.yaml --output json | jq '.[] | select(.ok | not)'
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct FactsArgs {
    /// The inventory file.
    #[arg(short, long, env = "K8SUP_INVENTORY", value_name = "FILE")]
    pub inventory: PathBuf,

    /// Only these hosts (inventory names; repeat or separate with commas).
    #[arg(long = "host", value_delimiter = ',', value_name = "NAME")]
    pub hosts: Vec<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// One host's line of the report; its fields are the JSON schema.
#[derive(Debug, Serialize)]
pub struct FactsRow {
    pub host: String,
    pub address: String,
    pub role: String,
    pub ok: bool,
    pub error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub facts: Option<HostFacts>,
}

pub fn execute(args: FactsArgs) -> Result<ExitCode> {
    let inventory = super::load_inventory(&args.inventory)?;
    let hosts = crate::load::select_hosts(&inventory, &args.hosts)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let rows = runtime.block_on(gather(&inventory, &hosts));
    let failed = rows.iter().filter(|r| !r.ok).count();
    match args.output.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        OutputFormat::Text => print_table(&rows),
    }
    // Failures go to stderr in both formats, so CI logs name the hosts.
    for r in rows.iter().filter(|r| !r.ok) {
        eprintln!(
            "error: {}: {}",
            r.host,
            r.error.as_deref().unwrap_or("failed")
        );
    }
    if failed > 0 {
        eprintln!("error: {failed} of {} hosts failed", rows.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Facts of every host, in the order given. The hosts are connected as
/// `plan` and `apply` connect them (`connect::connect_hosts`: in parallel,
/// one shared connection to each bastion, so a fleet behind one jump host
/// stays under sshd's `MaxStartups`); then each connected host runs the
/// script once. A host that cannot be reached gets its own row and error.
pub async fn gather(
    inventory: &k8sup_inventory::Inventory,
    hosts: &[&k8sup_inventory::Host],
) -> Vec<FactsRow> {
    let script = facts::script();
    let concurrency = inventory.options.concurrency as usize;
    let connected = connect_hosts(inventory, hosts).await;
    stream::iter(connected)
        .map(|(host, session)| {
            let script = &script;
            async move {
                let mut row = FactsRow {
                    host: host.name.clone(),
                    address: host.address.clone(),
                    role: host.role.to_string(),
                    ok: false,
                    error: None,
                    facts: None,
                };
                let result = match session {
                    Ok(s) => {
                        let out = s.exec_checked(script).await;
                        s.close().await;
                        out.map(|o| HostFacts::parse(&o.stdout_str()))
                            .map_err(|e| format!("{e:#}"))
                    }
                    Err(e) => Err(format!("{e:#}")),
                };
                match result {
                    Ok(f) => {
                        row.ok = true;
                        row.facts = Some(f);
                    }
                    Err(e) => row.error = Some(e),
                }
                row
            }
        })
        .buffered(concurrency.max(1))
        .collect()
        .await
}

fn print_table(rows: &[FactsRow]) {
    let header = [
        "HOST", "ADDRESS", "ROLE", "OS", "KERNEL", "ARCH", "CPUS", "MEMORY", "INIT", "K8SUP",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        match &r.facts {
            Some(f) => table.push(vec![
                r.host.clone(),
                r.address.clone(),
                r.role.clone(),
                f.os.clone(),
                f.kernel.clone(),
                f.arch.clone(),
                f.cpus.to_string(),
                human_bytes(f.memory_bytes),
                f.init.clone(),
                installed_summary(f),
            ]),
            None => {
                let mut line = vec![
                    r.host.clone(),
                    r.address.clone(),
                    r.role.clone(),
                    "FAILED".into(),
                ];
                line.resize(header.len(), String::new());
                table.push(line);
            }
        }
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn installed_summary(f: &HostFacts) -> String {
    if f.installed.is_empty() {
        return "-".into();
    }
    f.installed
        .iter()
        .map(|(name, c)| match c.active.as_deref() {
            Some(state) => format!("{name}({state})"),
            None => name.clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn human_bytes(b: u64) -> String {
    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
    const MIB: f64 = 1024.0 * 1024.0;
    if b as f64 >= GIB {
        format!("{:.1} GiB", b as f64 / GIB)
    } else {
        format!("{:.0} MiB", b as f64 / MIB)
    }
}
