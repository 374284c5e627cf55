//! `k8sup facts`: what each host is.
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct FactsArgs {}

pub fn run(_a: FactsArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("k8sup facts is being written")
}
