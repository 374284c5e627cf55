//! `k8sup lab ...`: local machines that behave like VMs (systemd-nspawn),
//! for trying k8sup and for its end-to-end tests. The work is done by the
//! `k8sup_lab` crate; this file maps the command line onto it and prints.
//!
//! `lab up` prints only the inventory path on stdout (`INV=$(k8sup lab up)`);
//! progress and summaries go to stderr.

use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8sup_lab::{Ipv4Net, Lab, MachineState, MachineStatus, UpOptions};
use serde::Serialize;

use crate::output::{OutputArgs, OutputFormat};

#[derive(Debug, clap::Subcommand)]
pub enum LabCmd {
    /// Boot the lab's machines (creating the lab if needed); print its inventory's path.
    ///
    /// Idempotent: running machines are left alone, stopped ones are booted,
    /// missing ones added. The first run builds a Debian root with debootstrap
    /// (about a minute, cached under /var/cache/k8sup/lab).
    Up(UpArgs),
    /// Remove the lab: machines, mounts, namespaces, interfaces and its state directory.
    Down(NameArg),
    /// List the lab's machines with address, role and state.
    Status(StatusArgs),
    /// Open an SSH session as root on a machine, or run a command there.
    Ssh(SshArgs),
    /// Power a machine off abruptly (every process killed; its address stops answering).
    Stop(NodeArgs),
    /// Boot a stopped machine again from its disk and wait until SSH answers.
    Start(NodeArgs),
    /// Cut a running machine off the lab network (its processes keep running).
    Partition(NodeArgs),
    /// Put a partitioned machine back on the lab network.
    Heal(NodeArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct NameArg {
    /// Lab name: lowercase letters, digits and dashes. Machines are NAME-1..NAME-N.
    #[arg(
        long,
        short = 'n',
        default_value = "k8sup",
        env = "K8SUP_LAB",
        value_name = "NAME"
    )]
    pub name: String,
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub lab: NameArg,
    /// Number of machines [default: 3, or the lab's current size].
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,
    /// How many of the first machines are control planes [default: 1, or the lab's current count].
    #[arg(long, value_name = "C")]
    pub control_planes: Option<usize>,
    /// The lab's IPv4 /24 [default: a free one in 10.213.0.0/16, kept for the lab's life].
    #[arg(long, value_name = "CIDR")]
    pub subnet: Option<Ipv4Net>,
    /// Seconds to wait for SSH on booting machines.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    pub timeout: u64,
    /// A mirror of the Kubernetes artifacts (the last line printed by
    /// `tests/artifacts/build.sh VERSION`): the lab's inventory takes the
    /// binaries and the pod images from it, so `k8sup apply` on it needs no
    /// internet.
    #[arg(long, value_name = "DIR")]
    pub mirror: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub lab: NameArg,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Machine: its name (NAME-2) or its number (2).
    pub node: String,
    #[command(flatten)]
    pub lab: NameArg,
}

#[derive(Debug, clap::Args)]
pub struct SshArgs {
    /// Machine: its name (NAME-2) or its number (2).
    pub node: String,
    #[command(flatten)]
    pub lab: NameArg,
    /// Command to run instead of an interactive shell (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

pub fn execute(c: LabCmd) -> Result<ExitCode> {
    match c {
        LabCmd::Up(a) => up(a),
        LabCmd::Down(a) => {
            Lab::new(&a.name).down()?;
            eprintln!("lab {}: down", a.name);
            Ok(ExitCode::SUCCESS)
        }
        LabCmd::Status(a) => status(a),
        LabCmd::Ssh(a) => ssh(a),
        LabCmd::Stop(a) => node_op(a, "stopped", |lab, node| lab.stop(node)),
        LabCmd::Start(a) => node_op(a, "started", |lab, node| lab.start(node)),
        LabCmd::Partition(a) => node_op(a, "partitioned", |lab, node| lab.partition(node)),
        LabCmd::Heal(a) => node_op(a, "healed", |lab, node| lab.heal(node)),
    }
}

fn up(a: UpArgs) -> Result<ExitCode> {
    let lab = Lab::new(&a.lab.name);
    // Without flags, an existing lab keeps its shape.
    let current = if lab.exists() {
        Some(lab.info()?)
    } else {
        None
    };
    let current_nodes = current.as_ref().map(|i| i.machines.len());
    let current_cp = current.as_ref().map(|i| {
        i.machines
            .iter()
            .filter(|m| m.role == k8sup_lab::Role::ControlPlane)
            .count()
    });
    let opts = UpOptions {
        nodes: a.nodes.or(current_nodes).unwrap_or(3),
        control_planes: a.control_planes.or(current_cp).unwrap_or(1),
        subnet: a.subnet,
        ready_timeout: Duration::from_secs(a.timeout),
        mirror: a.mirror.as_deref().map(std::path::absolute).transpose()?,
    };
    if !k8sup_lab::root_is_cached() {
        eprintln!(
            "lab {}: building the Debian bookworm root with debootstrap (once; a minute or two)...",
            lab.name()
        );
    }
    let plural = |n: usize| if n == 1 { "machine" } else { "machines" };
    eprintln!(
        "lab {}: bringing up {} {}...",
        lab.name(),
        opts.nodes,
        plural(opts.nodes)
    );
    let started = Instant::now();
    let info = lab.up(&opts)?;
    eprintln!(
        "lab {}: {} {} answer SSH ({:.1} s) on {}",
        info.name,
        info.machines.len(),
        plural(info.machines.len()),
        started.elapsed().as_secs_f64(),
        info.subnet
    );
    for m in &info.machines {
        eprintln!("  {:<20} {:<15} {}", m.name, m.address, m.role);
    }
    eprintln!(
        "try: k8sup lab ssh {} --name {}",
        info.machines[0].name, info.name
    );
    println!("{}", info.inventory.display());
    Ok(ExitCode::SUCCESS)
}

/// `lab status --output json`: one document, stable keys.
#[derive(Serialize)]
struct StatusDoc<'a> {
    name: &'a str,
    subnet: Ipv4Net,
    inventory: std::path::PathBuf,
    machines: &'a [MachineStatus],
}

fn status(a: StatusArgs) -> Result<ExitCode> {
    let lab = Lab::new(&a.lab.name);
    let info = lab.info()?;
    let machines = lab.status()?;
    match a.output.output {
        OutputFormat::Json => {
            let doc = StatusDoc {
                name: &info.name,
                subnet: info.subnet,
                inventory: info.inventory,
                machines: &machines,
            };
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        OutputFormat::Text => {
            println!(
                "lab {} on {} (inventory {})",
                info.name,
                info.subnet,
                info.inventory.display()
            );
            println!("{:<20} {:<15} {:<14} STATE", "MACHINE", "ADDRESS", "ROLE");
            for s in &machines {
                println!(
                    "{:<20} {:<15} {:<14} {}",
                    s.machine.name,
                    s.machine.address,
                    s.machine.role.as_str(),
                    s.state
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ssh(a: SshArgs) -> Result<ExitCode> {
    let lab = Lab::new(&a.lab.name);
    let machine = lab.machine(&a.node)?;
    // Say why rather than let ssh time out on a machine that cannot answer.
    if let Some(s) = lab
        .status()?
        .into_iter()
        .find(|s| s.machine.name == machine.name)
        && s.state != MachineState::Running
    {
        anyhow::bail!(
            "machine {} is {}; bring it back with `k8sup lab {} {} --name {}`",
            machine.name,
            s.state,
            if s.state == MachineState::Stopped {
                "start"
            } else {
                "heal"
            },
            machine.name,
            lab.name()
        );
    }
    let mut command = lab.ssh_command(&a.node)?;
    command.args(&a.command);
    // exec only returns on failure; on success ssh's exit status is ours.
    let err = command.exec();
    Err(err).context("running ssh")
}

fn node_op(a: NodeArgs, done: &str, op: impl FnOnce(&Lab, &str) -> Result<()>) -> Result<ExitCode> {
    let lab = Lab::new(&a.lab.name);
    let machine = lab.machine(&a.node)?;
    op(&lab, &a.node)?;
    eprintln!(
        "lab {}: {done} {} ({})",
        lab.name(),
        machine.name,
        machine.address
    );
    Ok(ExitCode::SUCCESS)
}
