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

/// A command whose arguments are a struct takes its one-line summary from
/// `about` here and its long help (with examples, line breaks kept) from
/// the struct's doc comment: a doc comment here would replace that help.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(about = "Write a commented example inventory to stdout (or --out FILE)")]
    Init(cmd::init::InitArgs),
    /// Check an inventory file, and show the connection settings each host gets.
    #[command(subcommand)]
    Inventory(cmd::inventory::InventoryCmd),
    #[command(about = "Connect to every host and report what it is and what k8sup finds there")]
    Facts(cmd::facts::FactsArgs),
    #[command(about = "Show what `apply` would change on every host, changing nothing")]
    Plan(cmd::plan::PlanArgs),
    #[command(about = "Make every host match the inventory (exactly what `plan` shows)")]
    Apply(cmd::apply::ApplyArgs),
    /// Fetch and verify the cluster's files ahead of time, or bundle them for air gaps.
    #[command(subcommand)]
    Artifacts(cmd::artifacts::ArtifactsCmd),
    /// The cluster's certificates: renew every leaf certificate and kubeconfig now.
    #[command(subcommand)]
    Certs(cmd::certs::CertsCmd),
    #[command(about = "Show the cluster: nodes, datastore members, components, certificate expiry")]
    Status(cmd::status::StatusArgs),
    #[command(about = "Print or write the cluster's admin kubeconfig, read from a control plane")]
    Kubeconfig(cmd::kubeconfig::KubeconfigArgs),
    /// Local systemd-nspawn machines that behave like VMs, for trying k8sup
    /// and for its end-to-end tests.
    #[command(subcommand)]
    Lab(cmd::lab::LabCmd),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    if matches!(
        cli.command,
        Command::Init(_)
            | Command::Inventory(_)
            | Command::Facts(_)
            | Command::Plan(_)
            | Command::Status(_)
            | Command::Kubeconfig(_)
    ) {
        quiet_on_closed_stdout();
    }
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

/// `k8sup status | head`: when the reader of stdout goes away, end quietly
/// as any Unix tool does (the default action of SIGPIPE), instead of a
/// panic in `println!`. Only for commands that read and print: one that
/// changes hosts or runs machines never dies half-way on a closed pipe
/// (sockets are written with MSG_NOSIGNAL either way).
fn quiet_on_closed_stdout() {
    // SAFETY: restoring the default disposition of a signal has no
    // preconditions; it runs before any other thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
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
