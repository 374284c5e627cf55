//! `k8sup certs`: the cluster's certificates. `renew` is an apply (the
//! same plan, confirmation, locks and report as `k8sup apply`) whose
//! certificates phase renews every leaf certificate and kubeconfig.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use k8sup_cluster::RunOptions;

use super::apply::{ApplyArgs, RunFlags};
use super::plan::DisplayArgs;
use crate::output::OutputArgs;

#[derive(Debug, clap::Subcommand)]
pub enum CertsCmd {
    /// Renew every leaf certificate and kubeconfig now, and restart what uses them.
    ///
    /// What is renewed: the apiserver's serving and client certificates,
    /// the front-proxy client, each datastore member's server and peer
    /// certificates, each kubelet's serving certificate, and the admin,
    /// controller-manager, scheduler, kube-proxy and kubelet kubeconfigs.
    /// Each gets a new key and a year of validity; its subject and names
    /// stay. The CAs and the service-account key are never renewed (a new CA
    /// is a migration, not a renewal), so existing kubeconfigs and
    /// service-account tokens stay valid.
    ///
    /// Every component that reads a renewed file restarts once, after its
    /// files are in place: the datastore members and then the API servers one
    /// control plane at a time (each waits for the one before to be healthy),
    /// then each node's kubelet and kube-proxy. `k8sup apply` renews a
    /// certificate by itself within 30 days of its expiry; `k8sup status`
    /// shows when each expires.
    ///
    /// It is an apply: the plan is shown first (which credential files change
    /// on which host, and which services restart; keys are never shown),
    /// confirmed on a terminal (`--yes` skips that), then applied; anything
    /// else that differs from the inventory is converged too, as `k8sup apply`
    /// would. `--dry-run` shows the plan only.
    ///
    /// Examples:
    ///   k8sup certs renew -i inventory.yaml --dry-run
    ///   k8sup certs renew -i inventory.yaml
    ///   k8sup certs renew -i inventory.yaml --yes -o json     # CI
    ///
    /// JSON output: as `k8sup apply -o json` (the plan's JSON with `--dry-run`).
    #[command(verbatim_doc_comment)]
    Renew(RenewArgs),
}

/// The arguments of `k8sup certs renew` (its help is on `CertsCmd::Renew`).
#[derive(Debug, clap::Args)]
pub struct RenewArgs {
    /// The inventory file.
    #[arg(short, long, env = "K8SUP_INVENTORY", value_name = "FILE")]
    pub inventory: PathBuf,

    /// Only these hosts (inventory names; repeat or separate with commas).
    /// The cluster-wide certificates are renewed on every chosen host that
    /// holds them.
    #[arg(long = "host", value_delimiter = ',', value_name = "NAME")]
    pub hosts: Vec<String>,

    #[command(flatten)]
    pub run: RunFlags,

    #[command(flatten)]
    pub display: DisplayArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn execute(cmd: CertsCmd) -> Result<ExitCode> {
    match cmd {
        CertsCmd::Renew(a) => super::apply::run(
            ApplyArgs {
                plan: None,
                inventory: Some(a.inventory),
                hosts: a.hosts,
                run: a.run,
                display: a.display,
                output: a.output,
            },
            RunOptions {
                renew_certificates: true,
            },
        ),
    }
}
