//! `k8sup plan`: what `apply` would change on every host, changing nothing.
//!
//! Computing the plan (observe every host in one round trip each, compare
//! with the desired state) is the engine's job; this command only chooses the
//! hosts, prints the plan as text or JSON, and saves it for `apply`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use k8sup_engine::{Plan, PrintOptions, print};
use serde::{Deserialize, Serialize};

use crate::fleet::Fleet;
use crate::output::{OutputArgs, OutputFormat};

/// Show exactly what `k8sup apply` would change on every host: `+` create,
/// `~` update (with a diff of text files), `-` delete, and the services it
/// would restart. Nothing on the hosts changes; each host is observed in one
/// round trip.
///
/// Examples:
///   k8sup plan -i inventory.yaml
///   k8sup plan -i inventory.yaml --out plan.json && k8sup apply plan.json
///   k8sup plan -i inventory.yaml --detailed-exitcode -o json > plan.json   # CI: 2 means changes
///
/// JSON output (`-o json`) is the plan itself: `formatVersion`, `createdAt`,
/// `steps[]` (each with `name` and `hosts[]`: `host`, `fingerprint`,
/// `unchanged`, `actions[]` with `resource`, `kind`, `reason`, `diff`), and
/// `summary` (`create`, `update`, `delete`, `restart`, `reload`, `run`).
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct PlanArgs {
    /// The inventory file.
    #[arg(short, long, env = "K8SUP_INVENTORY", value_name = "FILE")]
    pub inventory: PathBuf,

    /// Only these hosts (inventory names; repeat or separate with commas).
    #[arg(long = "host", value_delimiter = ',', value_name = "NAME")]
    pub hosts: Vec<String>,

    /// Save the plan; `k8sup apply FILE` then applies exactly it, and refuses
    /// if any host changed since.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Exit 0 when there is nothing to change, 2 when there is, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Where the Kubernetes artifacts come from, instead of the inventory's
    /// `cluster.artifacts.source`: a mirror URL, a directory laid out like
    /// the official locations, or a bundle written by `k8sup artifacts bundle`.
    #[arg(long, value_name = "URL|DIR|BUNDLE")]
    pub artifacts: Option<String>,

    #[command(flatten)]
    pub display: DisplayArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// How plans are shown (shared with `apply`).
#[derive(Debug, Clone, clap::Args)]
pub struct DisplayArgs {
    /// Leave the content diffs of text files out.
    #[arg(long)]
    pub no_diff: bool,

    /// Colours: auto (on a terminal), always, never.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

impl DisplayArgs {
    pub fn print_options(&self) -> PrintOptions {
        let color = match self.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        PrintOptions {
            color,
            no_diff: self.no_diff,
        }
    }
}

/// A plan saved by `--out`: the plan plus what it was made from, so that
/// `k8sup apply FILE` needs nothing else.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SavedPlan {
    pub k8sup_saved_plan: u32,
    /// Absolute path of the inventory the plan was made from.
    pub inventory: PathBuf,
    /// The `--host` selection (empty: all hosts).
    pub hosts: Vec<String>,
    pub plan: Plan,
}

impl SavedPlan {
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Diffs may show configuration: readable by its owner only.
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    pub fn read(path: &Path) -> Result<SavedPlan> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the plan {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a k8sup plan (not JSON)", path.display()))?;
        if value.get("k8supSavedPlan").is_none() {
            anyhow::bail!(
                "{} is not a plan saved by `k8sup plan --out`",
                path.display()
            );
        }
        let plan = Plan::from_json(&value["plan"].to_string())
            .with_context(|| format!("plan {}", path.display()))?;
        let mut saved: SavedPlan =
            serde_json::from_value(value).with_context(|| format!("plan {}", path.display()))?;
        saved.plan = plan;
        Ok(saved)
    }
}

pub fn execute(args: PlanArgs) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let fleet = Fleet::prepare(
            super::load_inventory(&args.inventory)?,
            &args.hosts,
            args.artifacts.as_deref(),
        )
        .await?;
        if fleet.phases.is_some() && args.out.is_some() {
            fleet.close().await;
            anyhow::bail!(
                "a cluster's plan cannot be saved yet: its later phases are decided at apply \
                 (run `k8sup apply -i FILE`, which shows the plan and asks first)"
            );
        }
        if let Some(phased) = fleet.plan_phases().await? {
            fleet.close().await;
            match args.output.output {
                OutputFormat::Json => println!("{}", phased.to_json()),
                OutputFormat::Text => print!(
                    "{}",
                    print::render_phased(&phased, &args.display.print_options())
                ),
            }
            return Ok(if args.detailed_exitcode && phased.has_changes() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            });
        }
        let plan = fleet.plan().await?;
        if let Some(out) = &args.out {
            SavedPlan {
                k8sup_saved_plan: 1,
                inventory: fleet.inventory.path.clone(),
                hosts: args.hosts.clone(),
                plan: plan.clone(),
            }
            .write(out)?;
        }
        match args.output.output {
            OutputFormat::Json => println!("{}", plan.to_json()),
            OutputFormat::Text => {
                print!("{}", print::render(&plan, &args.display.print_options()));
                if let Some(out) = &args.out {
                    println!(
                        "Saved the plan to {}; apply it with: k8sup apply {}",
                        out.display(),
                        out.display()
                    );
                }
            }
        }
        fleet.close().await;
        Ok(if args.detailed_exitcode && plan.has_changes() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        })
    })
}
