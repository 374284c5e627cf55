//! `k8sup apply`: make every host match the inventory.
//!
//! The order of a run, top to bottom:
//! 1. read the inventory and work out the desired state of every host;
//! 2. connect to every host (one connection each, for the whole run);
//! 3. plan: observe every host in one round trip and compare (or read a
//!    saved plan);
//! 4. show the plan and, on a terminal, ask for confirmation;
//! 5. apply: lock each host, re-check it has not drifted, carry out exactly
//!    the plan's actions, restart notified services once, unlock;
//! 6. report per host: changed, unchanged, failed.

use std::collections::BTreeSet;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use k8sup_cluster::RunOptions;
use k8sup_engine::{ApplyOptions, ApplyReport, RunIdentity, print};
use serde::Serialize;

use super::plan::{DisplayArgs, SavedPlan};
use crate::fleet::Fleet;
use crate::output::{OutputArgs, OutputFormat};
use crate::progress::Bars;

/// Make every host match the inventory: push files and binaries, install
/// units, start and restart services, run guarded commands. What it does is
/// exactly what `k8sup plan` shows; a second apply changes nothing and says
/// so.
///
/// On a terminal the plan is shown and confirmed first (`--yes` skips that).
/// A host that fails stops there; the others finish (`--fail-fast` stops
/// all). Ctrl-C stops cleanly: files are replaced atomically, so a host has
/// the old file or the new one, and a rerun converges. A run lock on each
/// host refuses a second, concurrent apply.
///
/// Examples:
///   k8sup apply -i inventory.yaml
///   k8sup apply -i inventory.yaml --yes -o json     # CI
///   k8sup plan -i inventory.yaml --out plan.json && k8sup apply plan.json
///
/// JSON output: `ok`, `changed`, `elapsedSeconds`, and `hosts[]` with
/// `host`, `changed`, `unchanged`, `failed`, `notRun`, `error`, `executed[]`
/// (`resource`, `kind`).
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ApplyArgs {
    /// A plan saved by `k8sup plan --out`: apply exactly it, refusing if any
    /// host changed since it was made.
    #[arg(value_name = "PLAN")]
    pub plan: Option<PathBuf>,

    /// The inventory file (taken from the saved plan when one is given).
    #[arg(short, long, env = "K8SUP_INVENTORY", value_name = "FILE")]
    pub inventory: Option<PathBuf>,

    /// Only these hosts (inventory names; repeat or separate with commas).
    #[arg(long = "host", value_delimiter = ',', value_name = "NAME")]
    pub hosts: Vec<String>,

    #[command(flatten)]
    pub run: RunFlags,

    #[command(flatten)]
    pub display: DisplayArgs,

    #[command(flatten)]
    pub output: OutputArgs,
}

/// How a run that changes hosts goes: the flags `k8sup apply` and
/// `k8sup certs renew` share.
#[derive(Debug, clap::Args)]
pub struct RunFlags {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,

    /// Only show the plan (the same as `k8sup plan`).
    #[arg(long)]
    pub dry_run: bool,

    /// Stop every host at the first failure on any host.
    #[arg(long)]
    pub fail_fast: bool,

    /// Break a run lock left by a dead run (never one that is still held).
    #[arg(long)]
    pub break_lock: bool,

    /// Where the Kubernetes artifacts come from, instead of the inventory's
    /// `cluster.artifacts.source`: a mirror URL, a directory laid out like
    /// the official locations, or a bundle written by `k8sup artifacts bundle`.
    #[arg(long, value_name = "URL|DIR|BUNDLE")]
    pub artifacts: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    ok: bool,
    changed: usize,
    elapsed_seconds: f64,
    hosts: &'a [k8sup_engine::HostReport],
}

pub fn execute(args: ApplyArgs) -> Result<ExitCode> {
    run(args, RunOptions::default())
}

/// An apply with `options` (`k8sup certs renew` is an apply that renews
/// every leaf certificate).
pub(crate) fn run(args: ApplyArgs, options: RunOptions) -> Result<ExitCode> {
    let saved = args.plan.as_deref().map(SavedPlan::read).transpose()?;
    let (inventory, hosts) = match (&saved, &args.inventory) {
        (Some(s), None) => (s.inventory.clone(), s.hosts.clone()),
        (Some(s), Some(i)) => (i.clone(), s.hosts.clone()),
        (None, Some(i)) => (i.clone(), args.hosts.clone()),
        (None, None) => bail!(
            "give the inventory with -i FILE (or K8SUP_INVENTORY), or a saved plan: k8sup apply PLAN"
        ),
    };
    let json = args.output.output == OutputFormat::Json;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let inventory = super::load_inventory(&inventory)?;
        if options.renew_certificates
            && inventory.cluster.components != k8sup_inventory::Components::Kubernetes
        {
            bail!(
                "{}: this inventory has no Kubernetes cluster (cluster.components: none), \
                 so there are no certificates to renew",
                inventory.path.display()
            );
        }
        let fleet =
            Fleet::prepare_with(inventory, &hosts, args.run.artifacts.as_deref(), options).await?;
        let from_file = saved.is_some();
        let asked = !args.run.yes && std::io::stdin().is_terminal();
        let identity = RunIdentity::new();
        if fleet.phases.is_some() {
            if from_file {
                fleet.close().await;
                bail!("this plan file is not a cluster's plan; run `k8sup apply -i FILE`");
            }
            return apply_cluster(fleet, &args, asked, identity, json).await;
        }
        // An apply that goes on straight after planning locks the hosts that
        // are certain to change while it observes them, saving each a second
        // look under the lock before its first change.
        let (plan, claimed) = match saved {
            Some(s) => (s.plan, BTreeSet::new()),
            None if !asked && !args.run.dry_run => match claiming_plan(&fleet, &identity).await? {
                Some(planned) => planned,
                None => {
                    fleet.close().await;
                    return Ok(ExitCode::from(130));
                }
            },
            None => (fleet.plan().await?, BTreeSet::new()),
        };
        let shown = print::render(&plan, &args.display.print_options());
        if !plan.has_changes() || args.run.dry_run {
            k8sup_engine::release_claims(&fleet.sessions, &claimed, &identity).await;
            if json {
                println!("{}", plan.to_json());
            } else {
                print!("{shown}");
            }
            fleet.close().await;
            return Ok(ExitCode::SUCCESS);
        }
        if !json {
            print!("{shown}");
        }
        if asked && !confirm(fleet.hosts.len())? {
            eprintln!("Apply cancelled; nothing was changed.");
            fleet.close().await;
            return Ok(ExitCode::from(1));
        }
        let opts = ApplyOptions {
            concurrency: fleet.concurrency(),
            fail_fast: args.run.fail_fast,
            break_stale_lock: args.run.break_lock,
            // A plan made a moment ago in this process needs no second look
            // before starting (each host is re-checked under its lock, unless
            // its observation already took the lock); a saved plan, or one a
            // person read first, is checked on every host before any is
            // touched.
            verify_first: from_file || asked,
            claimed,
            identity,
            ..ApplyOptions::default()
        };
        stop_on_ctrl_c(&opts);
        let bars = Bars::new(&plan);
        let result =
            k8sup_engine::apply(&plan, &fleet.desired, &fleet.sessions, &opts, &bars).await;
        bars.finish();
        fleet.close().await;
        let report = result?;
        if json {
            let j = JsonReport {
                ok: report.ok(),
                changed: report.changed(),
                elapsed_seconds: report.elapsed.as_secs_f64(),
                hosts: &report.hosts,
            };
            println!("{}", serde_json::to_string_pretty(&j)?);
        } else {
            print_report(&report);
        }
        Ok(if report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

/// A cluster's apply: plan every phase, show it, ask, then apply phase by
/// phase (the engine plans each phase again once an earlier one changed the
/// hosts). The report says what each phase did and how long it took.
async fn apply_cluster(
    fleet: Fleet,
    args: &ApplyArgs,
    asked: bool,
    identity: RunIdentity,
    json: bool,
) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    let planned = fleet.plan_phases().await;
    let plan = match planned {
        Ok(p) => p.expect("a cluster fleet has phases"),
        Err(e) => {
            fleet.close().await;
            return Err(e);
        }
    };
    let shown = print::render_phased(&plan, &args.display.print_options());
    if !plan.has_changes() || args.run.dry_run {
        if json {
            println!("{}", plan.to_json());
        } else {
            print!("{shown}");
        }
        fleet.close().await;
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        print!("{shown}");
    }
    if asked && !confirm(fleet.hosts.len())? {
        eprintln!("Apply cancelled; nothing was changed.");
        fleet.close().await;
        return Ok(ExitCode::from(1));
    }
    let opts = ApplyOptions {
        concurrency: fleet.concurrency(),
        fail_fast: args.run.fail_fast,
        break_stale_lock: args.run.break_lock,
        verify_first: asked,
        identity,
        ..ApplyOptions::default()
    };
    stop_on_ctrl_c(&opts);
    let bars = Bars::new(&plan.as_plan());
    let phases = fleet.phases.as_ref().expect("a cluster fleet has phases");
    let result = k8sup_engine::apply_phases(phases, &plan, &fleet.sessions, &opts, &bars).await;
    bars.finish();
    fleet.close().await;
    let report = result?;
    let elapsed = started.elapsed().as_secs_f64();
    if json {
        let phases: Vec<JsonPhase> = report
            .phases
            .iter()
            .map(|p| JsonPhase {
                title: &p.title,
                ran: p.ran,
                replanned: p.replanned,
                changed: p.report.as_ref().map_or(0, ApplyReport::changed),
                elapsed_seconds: p.report.as_ref().map_or(0.0, |r| r.elapsed.as_secs_f64()),
                hosts: p
                    .report
                    .as_ref()
                    .map(|r| r.hosts.as_slice())
                    .unwrap_or_default(),
            })
            .collect();
        let j = JsonClusterReport {
            ok: report.ok(),
            changed: report.changed(),
            elapsed_seconds: elapsed,
            stopped_at: report.stopped_at.as_deref(),
            phases,
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        for p in &report.phases {
            match &p.report {
                None => println!("== {}: nothing to do", p.title),
                Some(r) => {
                    println!("== {} ({:.1} s)", p.title, r.elapsed.as_secs_f64());
                    print_report(r);
                }
            }
        }
        match &report.stopped_at {
            Some(t) => println!(
                "\nApply stopped at phase {t:?} after {elapsed:.1} s; fix the failure above and apply again."
            ),
            None => println!(
                "\nApply: {} changed in {} phases, {elapsed:.1} s.",
                report.changed(),
                report.phases.len()
            ),
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonPhase<'a> {
    title: &'a str,
    ran: bool,
    replanned: bool,
    changed: usize,
    elapsed_seconds: f64,
    hosts: &'a [k8sup_engine::HostReport],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonClusterReport<'a> {
    ok: bool,
    changed: usize,
    elapsed_seconds: f64,
    stopped_at: Option<&'a str>,
    phases: Vec<JsonPhase<'a>>,
}

/// [`Fleet::plan_claiming`], stoppable with Ctrl-C: the observations under
/// way finish (each takes a moment), then every lock they took is released
/// and the run ends having changed nothing (`None`). A second Ctrl-C quits
/// at once; locks left then are this process's, stale once it is gone.
async fn claiming_plan(
    fleet: &Fleet,
    identity: &RunIdentity,
) -> Result<Option<(k8sup_engine::Plan, BTreeSet<String>)>> {
    let planning = fleet.plan_claiming(identity);
    tokio::pin!(planning);
    tokio::select! {
        planned = &mut planning => return planned.map(Some),
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("\nstopping: waiting for the hosts being observed, then releasing their locks");
    let claimed = tokio::select! {
        planned = planning => planned.map(|(_, c)| c).unwrap_or_default(),
        _ = tokio::signal::ctrl_c() => std::process::exit(130),
    };
    k8sup_engine::release_claims(&fleet.sessions, &claimed, identity).await;
    eprintln!("Apply stopped before any change; nothing was changed.");
    Ok(None)
}

/// Ctrl-C during an apply: actions in flight finish, nothing else starts.
fn stop_on_ctrl_c(opts: &ApplyOptions) {
    let cancel = opts.cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "\nstopping: actions in flight finish, nothing else starts; run apply again to converge"
            );
            cancel.cancel();
        }
    });
}

fn confirm(hosts: usize) -> Result<bool> {
    eprint!(
        "Apply these changes to {hosts} host{}? Only 'yes' is accepted: ",
        if hosts == 1 { "" } else { "s" }
    );
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

fn print_report(report: &ApplyReport) {
    let width = report.hosts.iter().map(|h| h.host.len()).max().unwrap_or(0);
    let (mut changed, mut unchanged, mut failed) = (0, 0, 0);
    for h in &report.hosts {
        changed += h.changed;
        unchanged += h.unchanged;
        failed += h.failed;
        match &h.error {
            None => println!(
                "{:<width$}  {} changed, {} unchanged",
                h.host, h.changed, h.unchanged
            ),
            Some(e) => println!(
                "{:<width$}  FAILED: {} changed, {} unchanged, {} failed, {} not run\n{:<width$}  {}",
                h.host,
                h.changed,
                h.unchanged,
                h.failed,
                h.not_run,
                "",
                e.replace('\n', &format!("\n{:<width$}  ", ""))
            ),
        }
    }
    let bad = report.hosts.iter().filter(|h| h.error.is_some()).count();
    println!(
        "\nApply: {changed} changed, {unchanged} unchanged, {failed} failed on {} host{}{} in {:.1} s.",
        report.hosts.len(),
        if report.hosts.len() == 1 { "" } else { "s" },
        if bad > 0 {
            format!(" ({bad} failed)")
        } else {
            String::new()
        },
        report.elapsed.as_secs_f64()
    );
}
