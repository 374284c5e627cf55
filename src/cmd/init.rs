//! `k8sup init`: write a commented example inventory.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct InitArgs {}

pub fn run(_args: InitArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("k8sup init is being written")
}
