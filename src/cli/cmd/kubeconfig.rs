//! `k8sup kubeconfig`: the cluster's admin kubeconfig, for the user.
//!
//! The cluster keeps it (k8sup keeps no state on the workstation): it is
//! read over SSH from the first control plane that answers, and its server
//! is pointed at an address the user can reach: the inventory's
//! `cluster.apiServer.endpoint` (a load balancer, a DNS name) when it names
//! one, else that control plane's inventory address (the certificate covers
//! every control plane's names and addresses, the endpoint and the
//! inventory's extra SANs).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use k8sup_inventory::Role;

use crate::connect::connect_hosts;

/// Print or write the cluster's admin kubeconfig (cluster-admin: keep it
/// safe). It is read from a control plane over SSH; its server is the
/// inventory's `cluster.apiServer.endpoint`, else that control plane's
/// address.
///
/// Examples:
///   k8sup kubeconfig -i inventory.yaml > ~/.kube/config
///   k8sup kubeconfig -i inventory.yaml --out admin.conf   # written 0600
///   kubectl --kubeconfig admin.conf get nodes
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct KubeconfigArgs {
    /// The inventory file.
    #[arg(short, long, env = "K8SUP_INVENTORY", value_name = "FILE")]
    pub inventory: PathBuf,

    /// Write it to FILE (mode 0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn execute(args: KubeconfigArgs) -> Result<ExitCode> {
    let inventory = super::load_inventory(&args.inventory)?;
    let cps: Vec<&k8sup_inventory::Host> = inventory
        .hosts
        .iter()
        .filter(|h| h.role == Role::ControlPlane)
        .collect();
    if cps.is_empty() {
        bail!("the inventory has no control-plane host to read the kubeconfig from");
    }
    let port = inventory.cluster.api_server.port;
    let runtime = tokio::runtime::Runtime::new()?;
    let (host, text) = runtime.block_on(async {
        let mut errors = Vec::new();
        for (host, session) in connect_hosts(&inventory, &cps).await {
            let s = match session {
                Ok(s) => s,
                Err(e) => {
                    errors.push(format!("  {e:#}"));
                    continue;
                }
            };
            let out = s
                .exec_checked(&format!("cat {}", k8sup_pki::layout::ADMIN_CONF))
                .await;
            s.close().await;
            match out {
                Ok(o) => return Ok((host.clone(), o.stdout_str().into_owned())),
                Err(e) => errors.push(format!("  {}: {e:#}", host.name)),
            }
        }
        bail!(
            "no control plane gave its admin kubeconfig (has `k8sup apply` run?):\n{}",
            errors.join("\n")
        )
    })?;
    // The endpoint the inventory names for users (a load balancer), else
    // the control plane that answered.
    let server = match &inventory.cluster.api_server.endpoint {
        Some(e) => e.url(),
        None => format!("https://{}:{port}", bracket(&host.address)),
    };
    let Some(text) = with_server(&text, &server) else {
        bail!(
            "{}: {} has no server line",
            host.name,
            k8sup_pki::layout::ADMIN_CONF
        );
    };
    match &args.out {
        Some(path) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            f.write_all(text.as_bytes())?;
            eprintln!(
                "Wrote the admin kubeconfig (server {server}) to {}",
                path.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `kubeconfig` (k8sup's: one cluster) with its server pointed at `server`;
/// `None` when it names no server. Shared with `status`, which points it at
/// a forwarded port.
pub(crate) fn with_server(kubeconfig: &str, server: &str) -> Option<String> {
    let mut replaced = false;
    let text = kubeconfig
        .lines()
        .map(|l| {
            if !replaced && l.trim_start().starts_with("server:") {
                replaced = true;
                let indent = &l[..l.len() - l.trim_start().len()];
                format!("{indent}server: {server}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    replaced.then_some(text)
}

fn bracket(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}
