//! `k8sup inventory ...`: validate inventory files.
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum InventoryCmd {}

pub fn run(_c: InventoryCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("k8sup inventory is being written")
}
