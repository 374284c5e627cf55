//! Applying a plan: exactly its actions, in its order, batched.
//!
//! Per host, consecutive actions become one remote script; only a streamed
//! upload splits a script (its install becomes the first fragment of the
//! next one). The first script that changes a host takes the run lock and
//! re-runs the observation under it: if the host's fingerprint is not the
//! plan's, nothing is changed. A host whose plan was observed under this
//! run's lock (`ApplyOptions::claimed`) needs no such second look. A host
//! stops at its first failing action; the other hosts of the step go on,
//! unless `fail_fast`; no later step starts after a step with a failure.
//! Locks are released at the end.
//!
//! Before anything, every host of a plan with changes is observed once more,
//! so that a plan made earlier (`apply plan.json`) is refused as a whole when
//! one of its hosts drifted or another run holds a lock. A plan without
//! changes contacts no host at all.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use futures::FutureExt;
use futures::stream::{self, StreamExt};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::content::Body;
use crate::desired::ResolvedState;
use crate::error::{EngineError, tail_lines};
use crate::fleet::{Sessions, observe_hosts, session};
use crate::lock::{self, EXIT_LOCKED, LockSettings, RunIdentity};
use crate::observe;
use crate::ops;
use crate::payload::{MEMORY_BUDGET, Payloads};
use crate::plan::{Action, HostPlan, Op, Plan};
use crate::planner;
use crate::progress::{Event, Progress};
use crate::report::{ApplyReport, Executed, HostReport};
use crate::rollout::ResolvedRollout;
use crate::script;
use crate::transport::Transport;
use crate::upload;

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Hosts worked on at once within a step.
    pub concurrency: usize,
    /// Stop every host at the first failure anywhere.
    pub fail_fast: bool,
    /// Break a stale lock left by a dead run (never a live one).
    pub break_stale_lock: bool,
    /// Observe every host once more before changing any, and refuse the whole
    /// plan if one drifted or is locked (default). Without it, each host is
    /// still checked, under its lock, by its first script, but a drifted host
    /// is found only when its turn comes. Turn off only for a plan made moments
    /// ago in the same process (`apply --yes`), to save that round trip.
    pub verify_first: bool,
    /// Hosts whose run lock this run already holds: its observation took it
    /// ([`crate::plan_claiming`]). They get no second look under the lock;
    /// the apply refreshes and releases their locks like any other.
    pub claimed: BTreeSet<String>,
    pub lock: LockSettings,
    /// Bytes of local files (binaries) the run may hold in memory to send to
    /// every host without reading them from disk again per host; files that do
    /// not fit are streamed from disk (see `payload.rs`). Default 512 MiB.
    pub hold_in_memory: u64,
    /// Written into the lock; a fresh one per run.
    pub identity: RunIdentity,
    /// Cancel to stop cleanly (Ctrl-C): scripts in flight finish, uploads
    /// stop (the old file stays), locks are released.
    pub cancel: CancellationToken,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            concurrency: 10,
            fail_fast: false,
            break_stale_lock: false,
            verify_first: true,
            claimed: BTreeSet::new(),
            lock: LockSettings::default(),
            hold_in_memory: MEMORY_BUDGET,
            identity: RunIdentity::new(),
            cancel: CancellationToken::new(),
        }
    }
}

/// Per-host state across steps.
#[derive(Default)]
struct HostRun {
    locked: bool,
    /// The run id of a stale lock to break when locking.
    break_run: Option<String>,
    refresher: Option<tokio::task::JoinHandle<()>>,
    stopped: bool,
    report: HostReport,
}

struct RunCx<'a, T: Transport> {
    desired: &'a ResolvedRollout,
    sessions: &'a Sessions<T>,
    opts: &'a ApplyOptions,
    progress: &'a dyn Progress,
    cancel: CancellationToken,
    fingerprints: HashMap<String, String>,
    /// The last step in which each host has actions: its final script there
    /// also releases the run lock, saving every host one more round trip.
    last_step: HashMap<String, String>,
    /// Local files read once and sent to every host from memory.
    payloads: Payloads,
}

/// Apply `plan`, whose contents come from `desired` (the same inputs the plan
/// was made from; checked). Whole-run refusals (drift, lock, changed inputs)
/// are errors; per-host failures are in the report.
pub async fn apply<T: Transport>(
    plan: &Plan,
    desired: &ResolvedRollout,
    sessions: &Sessions<T>,
    opts: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<ApplyReport, EngineError> {
    let started = Instant::now();
    let (fingerprints, mut runs) = match preflight(plan, desired, sessions, opts, progress).await {
        Ok(r) => r,
        Err(e) => {
            crate::fleet::release_claims(sessions, &opts.claimed, &opts.identity).await;
            return Err(e);
        }
    };

    // Every host of the plan gets a report, changed or not.
    for h in plan.steps.iter().flat_map(|s| &s.hosts) {
        let run = runs.entry(h.host.clone()).or_default();
        run.report.host = h.host.clone();
        run.report.unchanged += h.unchanged;
    }
    let runs: HashMap<String, Mutex<HostRun>> =
        runs.into_iter().map(|(k, v)| (k, Mutex::new(v))).collect();
    let cx = RunCx {
        desired,
        sessions,
        opts,
        progress,
        cancel: opts.cancel.child_token(),
        fingerprints,
        last_step: plan
            .steps
            .iter()
            .flat_map(|s| s.hosts.iter().map(move |h| (s, h)))
            .filter(|(_, h)| !h.actions.is_empty())
            .map(|(s, h)| (h.host.clone(), s.name.clone()))
            .collect(),
        payloads: Payloads::choose(
            plan.steps.iter().flat_map(|s| &s.hosts).flat_map(|h| {
                let states = desired.states_of(&h.host);
                h.actions
                    .iter()
                    .filter_map(|a| match source_of(&states, a) {
                        Some(Source::Local(path, stamp)) => Some((path, stamp.len)),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            }),
            opts.hold_in_memory,
        ),
    };

    // Locks taken by the plan's observation are this run's from now on:
    // kept fresh, and released at the end like any other.
    for host in &opts.claimed {
        if let (Some(run), Ok(s)) = (runs.get(host), session(sessions, host)) {
            mark_locked(&cx, s, &mut *run.lock().await);
        }
    }

    // A later step builds on the earlier ones (join after bootstrap): after a
    // step in which a host failed, no further step starts.
    let mut failed_step: Option<String> = None;
    for step in &plan.steps {
        let work: Vec<&HostPlan> = step
            .hosts
            .iter()
            .filter(|h| !h.actions.is_empty())
            .collect();
        if work.is_empty() {
            continue;
        }
        if let Some(failed) = &failed_step {
            for hp in work {
                let mut run = runs[&hp.host].lock().await;
                run.report.not_run += hp.actions.len();
                if run.report.error.is_none() {
                    run.report.error = Some(format!(
                        "{}: step {:?} not run: step {failed:?} failed",
                        hp.host, step.name
                    ));
                }
            }
            continue;
        }
        progress.event(Event::StepStarted {
            step: &step.name,
            hosts: work.len(),
        });
        let tasks: Vec<_> = work
            .iter()
            .map(|hp| run_locked(&cx, &runs, &step.name, hp))
            .collect();
        stream::iter(tasks)
            .buffer_unordered(opts.concurrency.max(1))
            .collect::<Vec<()>>()
            .await;
        for hp in &work {
            if runs[&hp.host].lock().await.stopped {
                failed_step = Some(step.name.clone());
            }
        }
    }

    // Release the locks (also after failures and cancellation).
    let release = lock::release_sh(&opts.identity);
    let mut order: Vec<String> = Vec::new();
    for h in plan.steps.iter().flat_map(|s| &s.hosts) {
        if !order.contains(&h.host) {
            order.push(h.host.clone());
        }
    }
    // All hosts at once: one round trip, not one per host.
    let releases = order.iter().map(|host| {
        let (runs, release) = (&runs, &release);
        async move {
            let mut run = runs[host].lock().await;
            if let Some(t) = run.refresher.take() {
                t.abort();
            }
            if run.locked {
                crate::fleet::release_lock(sessions, host, release).await;
            }
            std::mem::take(&mut run.report)
        }
    });
    let hosts = futures::future::join_all(releases).await;
    Ok(ApplyReport {
        hosts,
        elapsed: started.elapsed(),
    })
}

/// Everything an apply checks before it touches a host: the plan matches the
/// inputs, every host with work has a session, and (unless the plan was made
/// moments ago in this process) no host drifted or is locked by another run.
/// Returns each host's planned fingerprint and its starting state.
async fn preflight<T: Transport>(
    plan: &Plan,
    desired: &ResolvedRollout,
    sessions: &Sessions<T>,
    opts: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<(HashMap<String, String>, HashMap<String, HostRun>), EngineError> {
    // Every host of the plan, with the fingerprint of its first appearance.
    let mut fingerprints: HashMap<String, String> = HashMap::new();
    let mut verify: Vec<String> = Vec::new();
    for h in plan.steps.iter().flat_map(|s| &s.hosts) {
        if !fingerprints.contains_key(&h.host) {
            fingerprints.insert(h.host.clone(), h.fingerprint.clone());
            verify.push(h.host.clone());
        }
    }
    // A plan without changes contacts no host at all.
    // (Breaking a stale lock needs the verification: it names the lock to break.)
    if !plan.has_changes() || (!opts.verify_first && !opts.break_stale_lock) {
        verify.clear();
    }
    for h in plan
        .steps
        .iter()
        .flat_map(|s| &s.hosts)
        .filter(|h| !h.actions.is_empty())
    {
        planner::check_against(h, &desired.states_of(&h.host))?;
        session(sessions, &h.host)?;
    }

    // Drift and locks, on every host of the plan, before touching any: the
    // plan the user approved said "no changes" for some hosts too.
    let mut runs: HashMap<String, HostRun> = HashMap::new();
    if !verify.is_empty() {
        progress.event(Event::Verifying {
            hosts: verify.len(),
        });
        let mut errors = Vec::new();
        let mut drifted = Vec::new();
        for (host, r) in observe_hosts(desired, sessions, &verify, opts.concurrency).await {
            let obs = match r {
                Ok(o) => o,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            if obs.fingerprint != fingerprints[&host] {
                drifted.push(host.clone());
            }
            let mut run = HostRun::default();
            if let Some(l) = &obs.lock
                && l.holder.run_id != opts.identity.holder.run_id
            {
                if !lock::is_stale(l, &opts.identity, &opts.lock) {
                    let hint = if l.holder.workstation == opts.identity.holder.workstation {
                        format!(" (it runs on this workstation as pid {})", l.holder.pid)
                    } else {
                        String::new()
                    };
                    errors.push(EngineError::Locked {
                        host: host.clone(),
                        holder: l.holder.clone(),
                        age_secs: l.age_secs,
                        hint,
                    });
                } else if opts.break_stale_lock {
                    run.break_run = Some(l.holder.run_id.clone());
                } else {
                    errors.push(EngineError::StaleLock {
                        host: host.clone(),
                        holder: l.holder.clone(),
                        age_secs: l.age_secs,
                    });
                }
            }
            runs.insert(host, run);
        }
        if !errors.is_empty() {
            return Err(if errors.len() == 1 {
                errors.remove(0)
            } else {
                EngineError::Hosts(errors)
            });
        }
        if !drifted.is_empty() {
            return Err(EngineError::Drift { hosts: drifted });
        }
    }

    Ok((fingerprints, runs))
}

/// What a batch is made of: the header (lock and drift check) and actions.
#[derive(Default)]
struct Batch {
    header: Option<String>,
    /// Run after every item succeeded (the lock release of a host's last script).
    trailer: Option<String>,
    items: Vec<(usize, String)>,
    /// Actions already announced (uploads, when their stream began).
    announced: Vec<usize>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.header.is_none() && self.items.is_empty()
    }

    fn script(&self) -> String {
        let mut s = String::from("umask 077\n");
        s.push_str(crate::ops::SETTLED_SH);
        if let Some(h) = &self.header {
            s.push_str(h);
        }
        for (i, frag) in &self.items {
            s.push_str(&format!(
                "echo 'K8SUP-BEGIN {i}' >&2\n( set -e\n{frag})\nk8sup_rc=$?\n\
                 if [ \"$k8sup_rc\" -ne 0 ]; then echo \"K8SUP-FAIL {i} $k8sup_rc\"; exit 1; fi\n\
                 echo 'K8SUP-OK {i}'\n"
            ));
        }
        if let Some(t) = &self.trailer {
            s.push_str(t);
            s.push_str("\necho K8SUP-RELEASED\n");
        }
        s
    }
}

/// Why a host stops.
enum Stop {
    Failed(String),
    Cancelled(String),
}

async fn run_locked<T: Transport>(
    cx: &RunCx<'_, T>,
    runs: &HashMap<String, Mutex<HostRun>>,
    step: &str,
    hp: &HostPlan,
) {
    let mut run = runs[&hp.host].lock().await;
    run_host_step(cx, step, hp, &mut run).await;
}

async fn run_host_step<T: Transport>(
    cx: &RunCx<'_, T>,
    step: &str,
    hp: &HostPlan,
    run: &mut HostRun,
) {
    let host = hp.host.as_str();
    if run.stopped || cx.cancel.is_cancelled() {
        run.report.not_run += hp.actions.len();
        if run.report.error.is_none() {
            run.report.error = Some(format!("{host}: not run: the run was stopped"));
        }
        return;
    }
    cx.progress.event(Event::HostStarted {
        host,
        step,
        actions: hp.actions.len(),
    });
    let last = cx.last_step.get(host).is_some_and(|s| s == step);
    let result = execute(cx, hp, run, last).await;
    let ok = result.is_ok();
    if let Err(stop) = result {
        run.stopped = true;
        match stop {
            Stop::Failed(msg) => {
                run.report.error = Some(msg);
                if cx.opts.fail_fast {
                    cx.cancel.cancel();
                }
            }
            Stop::Cancelled(msg) => run.report.error = Some(msg),
        }
    }
    cx.progress.event(Event::HostFinished { host, step, ok });
}

/// The in-memory content of a write op's resource, or its local file.
enum Source<'a> {
    Memory(&'a [u8]),
    Local(&'a std::path::Path, crate::content::FileStamp),
}

fn source_of<'a>(states: &[&'a ResolvedState], a: &Action) -> Option<Source<'a>> {
    let r = states.iter().find_map(|s| s.get(&a.resource))?;
    match &r.body.as_ref()?.body {
        Body::Bytes(b) => Some(Source::Memory(b.as_slice())),
        Body::Local { path, stamp, .. } => Some(Source::Local(path.as_path(), *stamp)),
    }
}

/// A streamed upload of one action: where from, where to.
struct Streamed<'a> {
    index: usize,
    /// Position of the write op in the action's ops.
    op: usize,
    local: &'a std::path::Path,
    stamp: crate::content::FileStamp,
    path: &'a str,
    size: u64,
    tmp: String,
}

fn streamed_uploads<'a, T: Transport>(
    cx: &RunCx<'_, T>,
    hp: &'a HostPlan,
    states: &[&'a ResolvedState],
) -> Vec<Streamed<'a>> {
    let mut out = Vec::new();
    for (index, a) in hp.actions.iter().enumerate() {
        let Some(Source::Local(local, stamp)) = source_of(states, a) else {
            continue;
        };
        for (op, o) in a.ops.iter().enumerate() {
            if let Op::Write { path, size, .. } = o {
                let tmp = ops::temp_for(path, &cx.opts.identity.holder.run_id);
                out.push(Streamed {
                    index,
                    op,
                    local,
                    stamp,
                    path,
                    size: *size,
                    tmp,
                });
            }
        }
    }
    out
}

/// Run a host's actions. Streamed uploads start as soon as the host is
/// locked and run alongside the scripts; each is installed (renamed into
/// place) at its own position in the plan, after waiting for its stream.
async fn execute<T: Transport>(
    cx: &RunCx<'_, T>,
    hp: &HostPlan,
    run: &mut HostRun,
    last: bool,
) -> Result<(), Stop> {
    let host = hp.host.as_str();
    let session = session(cx.sessions, host)
        .map_err(|e| Stop::Failed(e.to_string()))?
        .clone();
    let states = cx.desired.states_of(host);
    let uploads = streamed_uploads(cx, hp, &states);
    let mut batch = Batch::default();
    let mut next = 0usize; // index of the first action not yet reported
    // The lock and drift check comes before any change. With streams, the
    // first stream runs it ahead of its bytes (which wait in the channel
    // meanwhile); everything else waits for its go. Nothing may start (nor
    // create a directory) before the host is known unchanged.
    let mut lead: Option<String> = None;
    if !run.locked {
        let h = header(cx, host, &states, run.break_run.as_deref());
        if uploads.is_empty() {
            batch.header = Some(h);
        } else if h.len() <= LEAD_LIMIT {
            lead = Some(h);
        } else {
            batch.header = Some(h);
            flush(cx, &session, hp, &mut batch, run, &mut next).await?;
        }
    }
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
    let go = go_rx.shared();
    let mut go_tx = lead.as_ref().map(|_| go_tx);

    let stop_uploads = cx.cancel.child_token();
    let mut waiting = HashMap::new();
    let mut streams = Vec::new();
    for (k, u) in uploads.iter().enumerate() {
        let (tx, rx) = tokio::sync::oneshot::channel();
        waiting.insert(u.index, rx);
        let (session, stop) = (&session, &stop_uploads);
        let my_lead = match (k, lead.as_deref(), go_tx.take()) {
            (0, Some(script), Some(go)) => Some(upload::Lead { script, go }),
            _ => None,
        };
        let wait_for_go = (k > 0 && lead.is_some()).then(|| go.clone());
        streams.push(async move {
            if let Some(go) = wait_for_go
                && go.await.is_err()
            {
                let _ = tx.send(Err(EngineError::Cancelled {
                    host: host.to_string(),
                    reason: "the host was not locked for this run".into(),
                }));
                return;
            }
            cx.progress.event(Event::ActionStarted {
                host,
                action: &hp.actions[u.index],
            });
            let report = |sent: u64| {
                cx.progress.event(Event::Upload {
                    host,
                    path: u.path,
                    sent,
                    total: u.size,
                })
            };
            let held = cx.payloads.get(u.local, u.stamp);
            tracing::debug!(host, path = u.path, held = held.is_some(), "stream started");
            let r = upload::stream(
                session,
                u.local,
                u.stamp,
                held,
                u.path,
                &u.tmp,
                u.size,
                my_lead,
                &header_refusal,
                stop,
                &report,
            )
            .await;
            tracing::debug!(host, path = u.path, ok = r.is_ok(), "stream finished");
            let _ = tx.send(r);
        });
    }

    let pipeline = async {
        if lead.is_some() {
            if go.clone().await.is_err() {
                // The first stream ended without passing the check: its result says why.
                stop_uploads.cancel();
                run.report.not_run += hp.actions.len();
                let first = waiting
                    .remove(&uploads[0].index)
                    .expect("the first stream has a result channel");
                return Err(match first.await {
                    Ok(Err(EngineError::Refused { reason, .. })) => {
                        Stop::Failed(format!("{host}: {reason}"))
                    }
                    Ok(Err(e @ EngineError::Cancelled { .. })) => Stop::Cancelled(e.to_string()),
                    Ok(Err(e)) => Stop::Failed(e.to_string()),
                    Ok(Ok(())) | Err(_) => Stop::Failed(format!(
                        "{host}: the upload ended without taking the run lock"
                    )),
                });
            }
            mark_locked(cx, &session, run);
        }
        let r = run_actions(
            cx,
            &session,
            hp,
            &uploads,
            &mut waiting,
            &mut batch,
            run,
            &mut next,
            last,
        )
        .await;
        if r.is_err() {
            stop_uploads.cancel();
        }
        r
    };
    let (result, _) = futures::future::join(pipeline, futures::future::join_all(streams)).await;
    if result.is_err() && !uploads.is_empty() {
        // Best effort: the next install of these paths removes leftovers anyway.
        let tmps: Vec<String> = uploads.iter().map(|u| k8sup_ssh::quote(&u.tmp)).collect();
        let _ = session.exec(&format!("rm -f -- {}", tmps.join(" "))).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_actions<T: Transport>(
    cx: &RunCx<'_, T>,
    session: &T,
    hp: &HostPlan,
    uploads: &[Streamed<'_>],
    waiting: &mut HashMap<usize, tokio::sync::oneshot::Receiver<Result<(), EngineError>>>,
    batch: &mut Batch,
    run: &mut HostRun,
    next: &mut usize,
    last: bool,
) -> Result<(), Stop> {
    let host = hp.host.as_str();
    let states = cx.desired.states_of(host);
    for (i, a) in hp.actions.iter().enumerate() {
        let Some(rx) = waiting.remove(&i) else {
            let mut frag = String::new();
            for op in &a.ops {
                let content = match (op, source_of(&states, a)) {
                    (Op::Write { .. }, Some(Source::Memory(b))) => Some(b),
                    _ => None,
                };
                frag.push_str(&ops::fragment(op, content));
            }
            batch.items.push((i, frag));
            continue;
        };
        // Everything before it goes first; then its stream must be complete.
        flush(cx, session, hp, batch, run, next).await?;
        let streamed = rx.await.unwrap_or_else(|_| {
            Err(EngineError::Cancelled {
                host: host.to_string(),
                reason: "the upload was abandoned".into(),
            })
        });
        if let Err(e) = streamed {
            run.report.not_run += hp.actions.len() - i - 1;
            if matches!(e, EngineError::Cancelled { .. }) {
                run.report.not_run += 1;
                return Err(Stop::Cancelled(e.to_string()));
            }
            run.report.failed += 1;
            cx.progress.event(Event::ActionFinished {
                host,
                action: a,
                ok: false,
            });
            return Err(Stop::Failed(e.to_string()));
        }
        let u = uploads
            .iter()
            .find(|u| u.index == i)
            .expect("every waiting action has its upload");
        let mut frag = String::new();
        for (k, op) in a.ops.iter().enumerate() {
            frag.push_str(&if k == u.op {
                ops::finalize_upload(op, &u.tmp)
            } else {
                ops::fragment(op, None)
            });
        }
        batch.items.push((i, frag));
        batch.announced.push(i);
    }
    if last {
        batch.trailer = Some(lock::release_sh(&cx.opts.identity));
    }
    flush(cx, session, hp, batch, run, next).await
}

fn stopped(hp: &HostPlan, run: &mut HostRun, next: usize, why: &str) -> Stop {
    run.report.not_run += hp.actions.len() - next;
    Stop::Cancelled(format!("{}: stopped before finishing ({why})", hp.host))
}

/// The lock and drift check that starts the first script changing a host.
fn header<T: Transport>(
    cx: &RunCx<'_, T>,
    host: &str,
    states: &[&ResolvedState],
    break_run: Option<&str>,
) -> String {
    let functions = observe::functions(&observe::manifest(states));
    format!(
        "{functions}\n{acquire}\
         k8sup_fp=$(k8sup_observe | sha256sum)\nk8sup_fp=${{k8sup_fp%% *}}\n\
         if [ \"$k8sup_fp\" != {fp} ]; then rm -f -- \"$K8SUP_LOCK\"; echo K8SUP-DRIFT; exit 76; fi\n",
        acquire = lock::acquire_sh(&cx.opts.identity, break_run),
        fp = cx.fingerprints[host],
    )
}

/// Above this, the lock-and-drift check runs as a script of its own rather
/// than on a stream's command line (Linux limits one argument to 128 KiB).
const LEAD_LIMIT: usize = 48 * 1024;

/// Why the lock-and-drift check refused to go on, from its stdout.
fn header_refusal(stdout: &str) -> Option<String> {
    let mut lines = stdout.lines();
    while let Some(line) = lines.next() {
        if line == "K8SUP-LOCKED" {
            let holder = lines
                .next()
                .and_then(|l| lock::parse_observed(l).ok().flatten())
                .map(|l| l.holder.to_string())
                .unwrap_or_else(|| "another run".into());
            return Some(format!(
                "another k8sup run took the lock first: {holder}; nothing was changed"
            ));
        }
        if line == "K8SUP-DRIFT" {
            return Some(
                "the host changed since the plan was made (its fingerprint no longer matches); nothing was changed. Run plan again".into(),
            );
        }
    }
    None
}

/// The host is locked for this run: keep the lock fresh until it is released.
fn mark_locked<T: Transport>(cx: &RunCx<'_, T>, session: &T, run: &mut HostRun) {
    tracing::debug!(host = %session.name(), "locked, fingerprint unchanged");
    run.locked = true;
    let s = session.clone();
    let cmd = lock::refresh_sh(&cx.opts.identity);
    let every = cx.opts.lock.refresh_every;
    run.refresher = Some(tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = s.exec(&cmd).await {
                tracing::warn!(host = %s.name(), error = %e, "could not refresh the run lock");
            }
        }
    }));
}

/// Run the queued batch and account for each action in it.
async fn flush<T: Transport>(
    cx: &RunCx<'_, T>,
    session: &T,
    hp: &HostPlan,
    batch: &mut Batch,
    run: &mut HostRun,
    next: &mut usize,
) -> Result<(), Stop> {
    if batch.is_empty() {
        return Ok(());
    }
    let host = hp.host.as_str();
    if cx.cancel.is_cancelled() {
        return Err(stopped(hp, run, *next, "the run was stopped"));
    }
    let b = std::mem::take(batch);
    for (i, _) in b.items.iter().filter(|(i, _)| !b.announced.contains(i)) {
        cx.progress.event(Event::ActionStarted {
            host,
            action: &hp.actions[*i],
        });
    }
    let script = b.script();
    tracing::debug!(
        host,
        actions = b.items.len(),
        bytes = script.len(),
        "script started"
    );
    let out = match script::run(session, &script).await {
        Ok(o) => o,
        Err(e) => {
            run.report.not_run += hp.actions.len() - *next;
            return Err(Stop::Failed(format!("{e}")));
        }
    };
    tracing::debug!(host, code = ?out.status.code(), "script finished");
    let stdout = out.stdout_str().into_owned();
    let stderr = out.stderr_str().into_owned();
    if b.header.is_some() {
        if let Some(reason) = header_refusal(&stdout) {
            run.report.not_run += hp.actions.len() - *next;
            return Err(Stop::Failed(format!("{host}: {reason}")));
        }
        if out.status.code() != Some(EXIT_LOCKED) {
            mark_locked(cx, session, run);
        }
    }
    let mut failed: Option<(usize, String)> = None;
    for line in stdout.lines() {
        if let Some(i) = line
            .strip_prefix("K8SUP-OK ")
            .and_then(|s| s.trim().parse::<usize>().ok())
        {
            let a = &hp.actions[i];
            run.report.changed += 1;
            run.report.executed.push(Executed {
                resource: a.resource.clone(),
                kind: a.kind,
            });
            cx.progress.event(Event::ActionFinished {
                host,
                action: a,
                ok: true,
            });
            *next = i + 1;
        } else if let Some(rest) = line.strip_prefix("K8SUP-FAIL ") {
            let i: usize = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(*next);
            failed = Some((i, rest.split_whitespace().nth(1).unwrap_or("?").to_string()));
        }
    }
    if let Some((i, rc)) = failed {
        let a = &hp.actions[i];
        run.report.failed += 1;
        run.report.not_run += hp.actions.len() - i - 1;
        cx.progress.event(Event::ActionFinished {
            host,
            action: a,
            ok: false,
        });
        let marker = format!("K8SUP-BEGIN {i}");
        let own = stderr
            .rsplit_once(&marker)
            .map(|(_, s)| s)
            .unwrap_or(&stderr);
        let tail = tail_lines(own.trim_start_matches('\n'), 20);
        return Err(Stop::Failed(format!(
            "{host}: {} {} failed (exit {rc}){}",
            kind_word(a),
            a.resource,
            if tail.is_empty() {
                String::new()
            } else {
                format!("; stderr:\n{tail}")
            }
        )));
    }
    if !out.success() {
        run.report.not_run += hp.actions.len() - *next;
        return Err(Stop::Failed(
            EngineError::remote(host, format!("the apply script ({})", out.status), &stderr)
                .to_string(),
        ));
    }
    if b.trailer.is_some() && stdout.lines().any(|l| l == "K8SUP-RELEASED") {
        run.locked = false;
        if let Some(t) = run.refresher.take() {
            t.abort();
        }
    }
    Ok(())
}

fn kind_word(a: &Action) -> &'static str {
    match a.kind {
        crate::ActionKind::Create => "creating",
        crate::ActionKind::Update => "updating",
        crate::ActionKind::Delete => "deleting",
        crate::ActionKind::Restart => "restarting",
        crate::ActionKind::Reload => "reloading",
        crate::ActionKind::Run => "running",
        crate::ActionKind::Wait => "waiting for",
    }
}

/// Plan and apply in one go (no confirmation in between): what `apply`
/// without a saved plan does once confirmed. Returns the plan it executed.
pub async fn plan_and_apply<T: Transport>(
    desired: &ResolvedRollout,
    sessions: &Sessions<T>,
    opts: &ApplyOptions,
    progress: &dyn Progress,
) -> Result<(Plan, ApplyReport), EngineError> {
    let (plan, claimed) = if opts.verify_first {
        let plan = crate::fleet::plan(desired, sessions, opts.concurrency).await?;
        (plan, BTreeSet::new())
    } else {
        crate::fleet::plan_claiming(desired, sessions, opts.concurrency, &opts.identity).await?
    };
    let opts = ApplyOptions {
        claimed,
        ..opts.clone()
    };
    let report = apply(&plan, desired, sessions, &opts, progress).await?;
    Ok((plan, report))
}
