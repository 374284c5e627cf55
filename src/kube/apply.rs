//! Carrying out the add-ons' plan: exactly its actions, in its order (the
//! objects, the wait, the labels), each reported through the engine's
//! progress as a host's action would be.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use k8sup_cluster::AddonsRequest;
use k8sup_engine::{Action, ActionKind, Event, Executed, HostPlan, HostReport, Progress};
use kube::api::{Api, Patch, PatchParams};

use crate::connect::describe;
use crate::objects::{Object, id_of};
use crate::plan::{WAIT_ID, apply_params, role_label};
use crate::reach::reach;
use crate::readiness::{self, Reports};

/// The step name progress shows.
const STEP: &str = "add-ons";

/// Apply `plan` (made for `want` moments ago), through the first control
/// plane whose API answers (waiting up to `want.wait` for one).
pub async fn apply(
    sessions: &k8sup_engine::Sessions,
    want: &AddonsRequest,
    plan: &HostPlan,
    progress: &dyn Progress,
    before: &Reports,
) -> HostReport {
    // The API was planned as it is; it may have started moments ago.
    let started = Instant::now();
    let c = loop {
        match reach(sessions, want, Duration::from_secs(5)).await {
            Ok(c) => break c,
            Err(why) if started.elapsed() >= want.wait => {
                let host = plan.host.as_str();
                progress.event(Event::HostStarted {
                    host,
                    step: STEP,
                    actions: plan.actions.len(),
                });
                progress.event(Event::HostFinished {
                    host,
                    step: STEP,
                    ok: false,
                });
                return HostReport {
                    host: host.to_string(),
                    unchanged: plan.unchanged,
                    failed: 1,
                    not_run: plan.actions.len().saturating_sub(1),
                    error: Some(format!(
                        "the API did not answer within {} s: {why}",
                        want.wait.as_secs()
                    )),
                    ..Default::default()
                };
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    };
    apply_through(&c.client, want, plan, progress, before).await
}

/// Apply `plan` with a client of the API; `before` as for
/// [`readiness::check`].
pub async fn apply_through(
    client: &kube::Client,
    want: &AddonsRequest,
    plan: &HostPlan,
    progress: &dyn Progress,
    before: &Reports,
) -> HostReport {
    let host = plan.host.as_str();
    let mut report = HostReport {
        host: host.to_string(),
        unchanged: plan.unchanged,
        ..Default::default()
    };
    progress.event(Event::HostStarted {
        host,
        step: STEP,
        actions: plan.actions.len(),
    });
    for (i, a) in plan.actions.iter().enumerate() {
        progress.event(Event::ActionStarted { host, action: a });
        let result = carry_out(client, want, a, before, &|pending| {
            progress.event(Event::Waiting {
                host,
                action: a,
                pending,
            })
        })
        .await;
        progress.event(Event::ActionFinished {
            host,
            action: a,
            ok: result.is_ok(),
        });
        match result {
            Ok(()) => {
                report.changed += 1;
                report.executed.push(Executed {
                    resource: a.resource.clone(),
                    kind: a.kind,
                });
            }
            Err(e) => {
                report.failed = 1;
                report.not_run = plan.actions.len() - i - 1;
                report.error = Some(format!("{}: {e}", a.resource));
                break;
            }
        }
    }
    progress.event(Event::HostFinished {
        host,
        step: STEP,
        ok: report.error.is_none(),
    });
    report
}

async fn carry_out(
    client: &kube::Client,
    want: &AddonsRequest,
    a: &Action,
    before: &Reports,
    waiting: &(dyn Fn(&str) + Sync),
) -> Result<(), String> {
    let id = a.resource.as_str();
    if id == WAIT_ID {
        return wait(client, want, before, waiting).await;
    }
    if let Some(node) = id.strip_prefix("node:") {
        let role = want
            .nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.role)
            .ok_or_else(|| format!("{node} is not a node of this run"))?;
        let patch = serde_json::json!({"metadata": {"labels": {role_label(role): ""}}});
        return Api::<Node>::all(client.clone())
            .patch(
                node,
                &PatchParams {
                    field_manager: Some("k8sup".into()),
                    ..Default::default()
                },
                &Patch::Merge(&patch),
            )
            .await
            .map(drop)
            .map_err(|e| describe(&e));
    }
    let (template, value) = want
        .objects
        .iter()
        .find(|(_, v)| id_of(v) == id)
        .ok_or_else(|| "not an object of this run's templates".to_string())?;
    debug_assert!(matches!(a.kind, ActionKind::Create | ActionKind::Update));
    let o = Object::new(client, template, value)?;
    o.api
        .patch(&o.name, &apply_params(), &Patch::Apply(&o.body))
        .await
        .map(drop)
        .map_err(|e| format!("from {template}: {}", describe(&e)))
}

/// Until the cluster takes workloads, or `want.wait` has passed: then what
/// it still lacks.
async fn wait(
    client: &kube::Client,
    want: &AddonsRequest,
    before: &Reports,
    waiting: &(dyn Fn(&str) + Sync),
) -> Result<(), String> {
    let started = Instant::now();
    let mut said = String::new();
    loop {
        let last = match readiness::check(client, want, before).await {
            Ok(r) if r.ready() => return Ok(()),
            Ok(r) => r.missing.join("; "),
            // The API may restart under us (a control plane that was just
            // changed): look again until the time is up.
            Err(e) => e,
        };
        if last != said {
            waiting(&last);
            said = last.clone();
        }
        if started.elapsed() >= want.wait {
            return Err(format!(
                "the cluster did not take workloads within {} s: {last}",
                want.wait.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
