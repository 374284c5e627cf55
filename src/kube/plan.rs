//! What applying the add-ons would change, as the plan of one target
//! ([`API_TARGET`]): the objects that differ from their templates (found by
//! a server-side apply in dry-run, so the API's own defaults and admission
//! decide, as `kubectl diff` does), the wait until the cluster takes
//! workloads, and the role labels nodes lack. Changes nothing.

use std::time::Duration;

use k8sup_cluster::AddonsRequest;
use k8sup_cluster::api::API_TARGET;
use k8sup_engine::{Action, ActionKind, EngineError, HostPlan, ResourceId, diff};
use kube::api::{Patch, PatchParams};
use kube::core::params::ValidationDirective;

use crate::connect::describe;
use crate::objects::{Object, comparable, id_of, text};
use crate::reach::reach;
use crate::readiness::{self, Readiness, Reports};

/// The resource of the wait in the plan.
pub const WAIT_ID: &str = "probe:cluster-ready";

/// How long a plan waits for the API to answer through each control plane.
const PLAN_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests in flight at once (see `objects`): one, measured on a lab
/// cluster as 25-35 ms for the seven objects, against 55-80 ms with four.
const CONCURRENT_REQUESTS: usize = 1;

/// What the cluster takes workloads with, in a line.
const READY_MEANS: &str =
    "every node Ready, the default ServiceAccount, a CoreDNS replica available";

/// The server-side apply k8sup makes: its own field manager, taking over
/// fields another manager set (k8sup owns these objects), and unknown fields
/// refused (a template's typo is an error, not a silent drop).
pub fn apply_params() -> PatchParams {
    let mut p = PatchParams::apply("k8sup").force();
    p.field_validation = Some(ValidationDirective::Strict);
    p
}

/// The label that shows a node's role in `kubectl get nodes`.
pub fn role_label(role: &str) -> String {
    format!("node-role.kubernetes.io/{role}")
}

fn action(resource: String, kind: ActionKind, reason: String, diff: Option<String>) -> Action {
    Action {
        resource: ResourceId(resource),
        kind,
        reason,
        diff,
        sensitive: false,
        observed: String::new(),
        ops: Vec::new(),
        decided_after: None,
    }
}

/// Plan `want` (see the module docs).
pub async fn plan(
    sessions: &k8sup_engine::Sessions,
    want: &AddonsRequest,
    before: &Reports,
) -> Result<(HostPlan, Reports), EngineError> {
    let started = std::time::Instant::now();
    let reached = reach(sessions, want, PLAN_TIMEOUT).await;
    tracing::debug!(elapsed = ?started.elapsed(), ok = reached.is_ok(), "API reached");
    let mut actions = Vec::new();
    match reached {
        Ok(c) => return plan_through(&c.client, &c.host, want, before).await,
        Err(why) => {
            // Nothing to compare with: every object is applied, and the rest
            // is decided once the API answers. A cluster no control plane
            // has an admin kubeconfig for is being made: its objects are new.
            let new = want.through.iter().all(|t| t.admin_kubeconfig.is_none());
            let (kind, when) = if new {
                (ActionKind::Create, "once the API is up".to_string())
            } else {
                (
                    ActionKind::Update,
                    "not known while the API does not answer; applied once it does".to_string(),
                )
            };
            for (template, v) in &want.objects {
                actions.push(action(
                    id_of(v),
                    kind,
                    format!("from {template}, {when}"),
                    None,
                ));
            }
            let wait = if new {
                format!("the API is not up yet; then until {READY_MEANS}")
            } else if want.settled {
                format!(
                    "the API does not answer now ({why}): apply waits up to {} s for it, then until {READY_MEANS}",
                    want.wait.as_secs()
                )
            } else {
                format!("the API does not answer now ({why}); then until {READY_MEANS}")
            };
            actions.push(action(WAIT_ID.into(), ActionKind::Wait, wait, None));
            for n in &want.nodes {
                let label = role_label(n.role);
                actions.push(action(
                    format!("node:{}", n.name),
                    ActionKind::Update,
                    if new {
                        format!("label {label}, once it registers")
                    } else {
                        format!("label {label}, {when}")
                    },
                    None,
                ));
            }
        }
    }
    Ok((
        HostPlan {
            host: API_TARGET.into(),
            fingerprint: String::new(),
            locked_by: None,
            unchanged: 0,
            actions,
            decided_after: None,
        },
        Reports::new(),
    ))
}

/// Plan `want` with a client of the API (reached through control plane
/// `via`); `before`: the nodes' reports seen before this run changed them
/// (see `readiness::check`). Also returns the reports seen now.
pub async fn plan_through(
    client: &kube::Client,
    via: &str,
    want: &AddonsRequest,
    before: &Reports,
) -> Result<(HostPlan, Reports), EngineError> {
    let started = std::time::Instant::now();
    let mut actions = Vec::new();
    let objects = objects(client, want).await?;
    tracing::debug!(elapsed = ?started.elapsed(), "objects compared");
    let changes = objects.iter().filter(|a| a.is_some()).count();
    let mut unchanged = objects.len() - changes;
    actions.extend(objects.into_iter().flatten());
    let ready = readiness::check(client, want, before)
        .await
        .map_err(|e| invalid(format!("through {via}: {e}")))?;
    tracing::debug!(elapsed = ?started.elapsed(), "readiness read");
    if !want.settled || changes > 0 || !ready.ready() {
        let reason = if ready.ready() {
            format!("until {READY_MEANS}, after the changes before it")
        } else {
            format!("until {READY_MEANS}; now {}", ready.missing.join("; "))
        };
        actions.push(action(WAIT_ID.into(), ActionKind::Wait, reason, None));
    }
    let (labels, kept) = labels(want, &ready);
    unchanged += kept;
    actions.extend(labels);
    Ok((
        HostPlan {
            host: API_TARGET.into(),
            fingerprint: String::new(),
            locked_by: None,
            unchanged,
            actions,
            decided_after: None,
        },
        ready.reported,
    ))
}

fn invalid(reason: String) -> EngineError {
    EngineError::Invalid {
        host: API_TARGET.into(),
        reason,
    }
}

/// Each object's change (`None`: as wanted), in order.
async fn objects(
    client: &kube::Client,
    want: &AddonsRequest,
) -> Result<Vec<Option<Action>>, EngineError> {
    let checks = want
        .objects
        .iter()
        .map(|(template, v)| -> ObjectCheck<'_> { Box::pin(check(client, template, v)) });
    // kube's client speaks HTTP/1.1: each request in flight needs a TLS
    // connection of its own, and a new one (a channel over SSH, then a
    // handshake whose small writes sshd may hold on the far side until the
    // apiserver's delayed ACK, 40 ms) costs more than the few milliseconds
    // of each request on the connection the client already holds.
    use futures::stream::{StreamExt, TryStreamExt};
    futures::stream::iter(checks.collect::<Vec<_>>())
        .buffered(CONCURRENT_REQUESTS)
        .try_collect()
        .await
}

type ObjectCheck<'a> = futures::future::BoxFuture<'a, Result<Option<Action>, EngineError>>;

/// One object's change (`None`: as wanted).
async fn check(
    client: &kube::Client,
    template: &str,
    v: &serde_json::Value,
) -> Result<Option<Action>, EngineError> {
    {
        let o = Object::new(client, template, v).map_err(invalid)?;
        let dry = apply_params().dry_run();
        let patch = Patch::Apply(&o.body);
        let t = std::time::Instant::now();
        let current = o.api.get_opt(&o.name).await;
        let got = t.elapsed();
        let wanted = o.api.patch(&o.name, &dry, &patch).await;
        tracing::debug!(object = %o.id, ?got, dry_run = ?(t.elapsed() - got), "compared");
        let current =
            current.map_err(|e| invalid(format!("reading {}: {}", o.id, describe(&e))))?;
        let wanted = wanted.map_err(|e| {
            invalid(format!(
                "{} from {template} is refused by the API: {}",
                o.id,
                describe(&e)
            ))
        })?;
        Ok::<_, EngineError>(match current {
            None => Some(action(
                o.id.clone(),
                ActionKind::Create,
                format!("not in the cluster; from {template}"),
                None,
            )),
            Some(current) => {
                let (have, want) = (comparable(&current), comparable(&wanted));
                (have != want).then(|| {
                    action(
                        o.id.clone(),
                        ActionKind::Update,
                        format!("differs from {template}"),
                        diff::unified_from(
                            &o.id,
                            "in the cluster",
                            text(&have).as_bytes(),
                            text(&want).as_bytes(),
                        ),
                    )
                })
            }
        })
    }
}

/// The role labels nodes lack (and how many have theirs).
fn labels(want: &AddonsRequest, ready: &Readiness) -> (Vec<Action>, usize) {
    let mut out = Vec::new();
    let mut kept = 0;
    for n in &want.nodes {
        let key = role_label(n.role);
        match ready.nodes.get(&n.name) {
            Some(labels) if labels.contains_key(&key) => kept += 1,
            Some(_) => out.push(action(
                format!("node:{}", n.name),
                ActionKind::Update,
                format!("label {key}"),
                None,
            )),
            None => out.push(action(
                format!("node:{}", n.name),
                ActionKind::Update,
                format!("label {key}, once it registers"),
                None,
            )),
        }
    }
    (out, kept)
}
