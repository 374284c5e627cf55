//! Command-line definition and dispatch. Each subcommand's arguments and
//! behaviour live in `cmd::<name>`; this file only wires them together.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;

/// k8sup manages the whole life of a Kubernetes cluster from your
/// workstation, over SSH, with nothing to install on the hosts first.
///
/// Start with `k8sup init > inventory.yaml`, edit it, check it with
/// `k8sup inventory check -i inventory.yaml`, then look at your hosts with
/// `k8sup facts -i inventory.yaml`. To try k8sup without VMs, `k8sup lab up`
/// boots local machines and writes an inventory for them.
#[derive(Debug, Parser)]
#[command(
    name = "k8sup",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Log verbosity for diagnostics on stderr (error, warn, info, debug, trace).
    /// K8SUP_LOG takes a full tracing filter and overrides this.
    #[arg(long, global = true, default_value = "warn", value_name = "LEVEL")]
    pub log_level: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented example inventory to stdout (or --out FILE).
    Init(cmd::init::InitArgs),
    /// Check an inventory file, and show the connection settings each host gets.
    #[command(subcommand)]
    Inventory(cmd::inventory::InventoryCmd),
    /// Connect to every host and report what it is and what k8sup finds there.
    Facts(cmd::facts::FactsArgs),
    /// Show what `apply` would change on every host, changing nothing.
    Plan(cmd::plan::PlanArgs),
    /// Make every host match the inventory (exactly what `plan` shows).
    Apply(cmd::apply::ApplyArgs),
    /// Fetch and verify the cluster's files ahead of time, or bundle them for air gaps.
    #[command(subcommand)]
    Artifacts(cmd::artifacts::ArtifactsCmd),
    /// The cluster's certificates: renew every leaf certificate and kubeconfig now.
    #[command(subcommand)]
    Certs(cmd::certs::CertsCmd),
    /// Show the cluster: nodes, datastore members, components, certificate expiry.
    Status(cmd::status::StatusArgs),
    /// Print or write the cluster's admin kubeconfig, read from a control plane.
    Kubeconfig(cmd::kubeconfig::KubeconfigArgs),
    /// Local systemd-nspawn machines that behave like VMs, for trying k8sup
    /// and for its end-to-end tests.
    #[command(subcommand)]
    Lab(cmd::lab::LabCmd),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let result = match cli.command {
        Command::Init(args) => cmd::init::execute(args),
        Command::Inventory(c) => cmd::inventory::execute(c),
        Command::Facts(args) => cmd::facts::execute(args),
        Command::Plan(args) => cmd::plan::execute(args),
        Command::Apply(args) => cmd::apply::execute(args),
        Command::Kubeconfig(args) => cmd::kubeconfig::execute(args),
        Command::Status(args) => cmd::status::execute(args),
        Command::Certs(c) => cmd::certs::execute(c),
        Command::Artifacts(c) => cmd::artifacts::execute(c),
        Command::Lab(c) => cmd::lab::execute(c),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            crate::output::print_error(&err);
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("K8SUP_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    /// clap's own consistency checks (unique short flags, valid defaults),
    /// which otherwise only fire when a user runs that subcommand.
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
