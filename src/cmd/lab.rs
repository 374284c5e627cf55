//! `k8sup lab ...`: local machines that behave like VMs.
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum LabCmd {}

pub fn run(_c: LabCmd) -> anyhow::Result<ExitCode> {
    anyhow::bail!("k8sup lab is being written")
}
