//! `k8sup artifacts`: the cluster's files on the workstation, ahead of an
//! apply (`fetch`), or packed for hosts and workstations without internet
//! (`bundle`). Both verify every file against its published SHA-256 before
//! trusting it; neither touches a host.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use serde::Serialize;

use crate::node_files;
use crate::output::{OutputArgs, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum ArtifactsCmd {
    /// Download (or find cached) and verify every file of the inventory's
    /// Kubernetes version, so that `apply` reads nothing from the network.
    ///
    /// Examples:
    ///   k8sup artifacts fetch -i inventory.yaml
    ///   k8sup artifacts fetch -i inventory.yaml --artifacts http://mirror.internal/ -o json
    #[command(verbatim_doc_comment)]
    Fetch(FetchArgs),
    /// Write an air-gap bundle (binaries, image archives, a manifest with
    /// every SHA-256) that `k8sup apply --artifacts BUNDLE.tar` uses.
    ///
    /// Examples:
    ///   k8sup artifacts bundle -i inventory.yaml --out k8s-v1.37.2.tar
    ///   k8sup apply -i inventory.yaml --artifacts k8s-v1.37.2.tar   # on the air-gapped side
    #[command(verbatim_doc_comment)]
    Bundle(BundleArgs),
}

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The inventory file (its Kubernetes version and `cluster.artifacts`).
    #[arg(short, long, env = "K8SUP_INVENTORY", value_name = "FILE")]
    pub inventory: PathBuf,

    /// Where to fetch from instead of the inventory's `cluster.artifacts.source`.
    #[arg(long, value_name = "URL|DIR|BUNDLE")]
    pub artifacts: Option<String>,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    #[command(flatten)]
    pub fetch: FetchArgs,

    /// The bundle to write (a .tar; written atomically).
    #[arg(long = "out", value_name = "FILE.tar")]
    pub out: PathBuf,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    name: &'a str,
    version: &'a str,
    outcome: k8sup_artifacts::Outcome,
    path: String,
    sha256: &'a str,
}

pub fn execute(cmd: ArtifactsCmd) -> Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new()?;
    match cmd {
        ArtifactsCmd::Fetch(a) => runtime.block_on(async {
            let inventory = super::load_inventory(&a.inventory)?;
            let request = node_files::request(&inventory)?;
            let source = node_files::source(&inventory, a.artifacts.as_deref())?;
            let set = node_files::fetch_set(&request, &source).await?;
            let rows: Vec<Row> = set
                .items
                .iter()
                .map(|f| Row {
                    name: &f.artifact.name,
                    version: &f.artifact.version,
                    outcome: f.outcome,
                    path: f.file.path.display().to_string(),
                    sha256: &f.file.sha256,
                })
                .collect();
            match a.output.output {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
                OutputFormat::Text => {
                    for r in &rows {
                        println!(
                            "{:<24} {:<10} {:<10} {}",
                            r.name,
                            r.version,
                            format!("{:?}", r.outcome).to_lowercase(),
                            r.path
                        );
                    }
                    println!(
                        "{} artifacts for Kubernetes {} ({}) verified in the cache; {} read from {}.",
                        rows.len(),
                        set.kubernetes,
                        set.arch,
                        set.transferred(),
                        set.source
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }),
        ArtifactsCmd::Bundle(b) => runtime.block_on(async {
            let inventory = super::load_inventory(&b.fetch.inventory)?;
            let request = node_files::request(&inventory)?;
            let source = node_files::source(&inventory, b.fetch.artifacts.as_deref())?;
            let set = node_files::fetch_set(&request, &source).await?;
            let written = k8sup_artifacts::bundle::write(&set, &b.out)?;
            match b.fetch.output.output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::json!({
                        "bundle": b.out.display().to_string(),
                        "size": written.size,
                        "artifacts": written.manifest.artifacts.len(),
                    })
                ),
                OutputFormat::Text => println!(
                    "Wrote {} ({} artifacts, {:.1} MB); on the other side: k8sup apply -i FILE --artifacts {}",
                    b.out.display(),
                    written.manifest.artifacts.len(),
                    written.size as f64 / 1e6,
                    b.out.display()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }),
    }
}
