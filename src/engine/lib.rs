//! k8sup-engine: the plan/apply engine of k8sup.
//!
//! The desired state of each host is an ordered set of [`Resource`]s
//! (directories, files rendered from minijinja templates, streamed binaries,
//! symlinks, systemd units, service states, guarded commands) with owners,
//! modes, dependencies and notifications. A [`Rollout`] orders hosts in steps.
//!
//! - **Observe**: one remote script per host, one round trip: stats, links and
//!   hashes of every managed path (a stat cache avoids re-hashing large files),
//!   one `systemctl show` for every unit, guard checks, the run lock.
//! - **Plan**: data ([`Plan`], stable JSON): per host, actions with their kind,
//!   reason, diff, observed fingerprint and the exact ops apply will run.
//!   Printing ([`mod@print`]) is separate.
//! - **Apply**: exactly the plan's ops, batched into as few scripts as possible
//!   per host, under a run lock that also re-checks the host's fingerprint
//!   (or was already taken by the observation the plan came from);
//!   uploads are atomic; notified services restart once, after their files.
//!
//! - **Phases** ([`Phases`], [`plan_phases`], [`apply_phases`]): a run as an
//!   ordered list of [`Phase`]s, each deciding from the hosts' [`Facts`]
//!   (gathered by a caller's probe in the observation's exec) and from what
//!   earlier phases did whether it runs and what hosts must look like. All
//!   are planned up front ([`PhasedPlan`]); at apply, each phase after one
//!   that changed something is observed and planned again.
//! - **Service phases** ([`ServicePhase`], [`service_phase`]): a phase whose
//!   changes go through a service the hosts run (an API), planned and
//!   applied by the caller's code, shown and reported like a host's.
//! - **Probes** ([`ProbeCheck`], [`Resource::probe`]): health gates that wait
//!   for a condition after what they depend on changed.
//! - **Removal**: [`Resource::absent`], [`DesiredState::removal`], [`hosts_to_remove`].
//! - **Transport** ([`Transport`]): SSH sessions in production,
//!   [`LocalHost`] (scripts under a local `sh`, rooted in a temp dir) in tests.
//!
//! What the engine leaves on a host: `/var/lib/k8sup/run.lock` while a run
//! changes it, `/var/lib/k8sup/engine/sums` (the stat cache of large files'
//! hashes), `/var/lib/k8sup/probes/NAME.failed` after a probe failed, and, only after an interrupted run, `.NAME.k8sup-tmp.*` temp files
//! next to a destination (removed by the next install of that file).
//!
//! ```no_run
//! # async fn demo(sessions: k8sup_engine::Sessions) -> Result<(), k8sup_engine::EngineError> {
//! use k8sup_engine::*;
//! let desired = DesiredState::new("cp-1")
//!     .with(Resource::directory("/etc/demo"))
//!     .with(Resource::file("/etc/demo/demo.conf", Content::text("port=8080\n")).notify("service:demo.service"))
//!     .with(Resource::unit("demo.service", Content::text("[Service]\nExecStart=/bin/sleep infinity\n")))
//!     .with(Resource::service("demo.service"));
//! let rollout = Rollout::single("files", vec![desired]).resolve().await?;
//! let plan = plan(&rollout, &sessions, 10).await?;
//! print!("{}", print::render(&plan, &PrintOptions::default()));
//! let report = apply(&plan, &rollout, &sessions, &ApplyOptions::default(), &NoProgress).await?;
//! # let _ = report; Ok(()) }
//! ```

// Errors carry hosts, paths and stderr tails as text; they are built only on failure paths.
#![allow(clippy::result_large_err)]

mod apply;
mod content;
mod desired;
pub mod diff;
mod digest_cache;
mod error;
mod facts;
mod fleet;
mod local;
mod lock;
mod observe;
mod observe_many;
mod observe_rebase;
mod ops;
mod payload;
mod phase;
mod phased;
mod phased_plan;
mod plan;
mod planner;
pub mod print;
mod probe;
mod progress;
mod removal;
mod report;
mod resource;
mod rollout;
mod script;
mod service;
mod template;
mod transport;
mod upload;

pub use apply::{ApplyOptions, apply, plan_and_apply};
pub use content::{Body, Content, FileStamp, Resolved, local_sha256};
pub use desired::{DesiredState, ResolvedResource, ResolvedState};
pub use error::EngineError;
pub use facts::Facts;
pub use fleet::{Sessions, observe_hosts, plan, plan_claiming, release_claims};
pub use local::LocalHost;
pub use lock::{LOCK_PATH, LockHolder, LockSettings, ObservedLock, RunIdentity};
pub use observe::{
    GuardState, MAX_DIFF_BYTES, Observation, PathState, UnitState, observe, observe_claiming,
};
pub use phase::{FnPhase, Phase, PhaseContext, PhaseOutcome, Phases, phase, service_phase};
pub use phased::{PhaseReport, PhasedReport, apply_phases, plan_phases};
pub use phased_plan::{PhasePlan, PhasedPlan, SECRET_FACT_PREFIX};
pub use plan::{Action, ActionKind, FORMAT_VERSION, HostPlan, Op, Plan, StepPlan, Summary};
pub use planner::{DAEMON_RELOAD_ID, plan_host};
pub use print::PrintOptions;
pub use probe::ProbeCheck;
pub use progress::{Event, NoProgress, Progress};
pub use removal::hosts_to_remove;
pub use report::{ApplyReport, Executed, HostReport};
pub use resource::{Attrs, DiffView, Ensure, Guard, Resource, ResourceId, Spec, UNIT_DIR};
pub use rollout::{ResolvedRollout, ResolvedStep, Rollout, Step};
pub use service::ServicePhase;
pub use template::TemplateContext;
pub use tokio_util::sync::CancellationToken;
pub use transport::Transport;
