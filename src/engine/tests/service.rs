//! Service phases (`service.rs`): a phase whose changes go through a
//! service the hosts run, planned and applied by the caller's code. Here the
//! service is a key-value map in memory that records what was asked of it;
//! the hosts are [`LocalHost`]s.

#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use k8sup_engine::{
    Action, ActionKind, ApplyOptions, Content, DesiredState, EngineError, Executed, HostPlan,
    HostReport, LocalHost, NoProgress, PhaseContext, PhasedPlan, PhasedReport, Phases,
    PrintOptions, Progress, Resource, ResourceId, ServicePhase, Sessions, Step, apply_phases,
    phase, plan_phases, print, service_phase,
};

/// The service: keys and values, and every call made to it.
#[derive(Default)]
struct Store {
    keys: Mutex<BTreeMap<String, String>>,
    calls: Mutex<Vec<String>>,
}

/// Wants `key` to hold what host `a`'s `/version` file says (a fact).
struct Keys {
    store: Arc<Store>,
    key: &'static str,
}

impl ServicePhase for Keys {
    fn plan<'a>(
        &'a self,
        cx: PhaseContext<'a>,
        settled: bool,
    ) -> BoxFuture<'a, Result<HostPlan, EngineError>> {
        Box::pin(async move {
            self.store
                .calls
                .lock()
                .unwrap()
                .push(format!("plan settled={settled}"));
            let want = cx.facts_of("a").get("version").unwrap_or("").to_string();
            let have = self.store.keys.lock().unwrap().get(self.key).cloned();
            let mut actions = Vec::new();
            if have.as_deref() != Some(want.as_str()) {
                actions.push(Action {
                    resource: ResourceId(format!("key:{}", self.key)),
                    kind: if have.is_none() {
                        ActionKind::Create
                    } else {
                        ActionKind::Update
                    },
                    reason: format!("wants {want:?}"),
                    diff: None,
                    sensitive: false,
                    observed: have.unwrap_or_default(),
                    ops: Vec::new(),
                    decided_after: None,
                });
            }
            Ok(HostPlan {
                host: "store".into(),
                fingerprint: String::new(),
                locked_by: None,
                unchanged: usize::from(actions.is_empty()),
                actions,
                decided_after: None,
            })
        })
    }

    fn apply<'a>(
        &'a self,
        cx: PhaseContext<'a>,
        plan: &'a HostPlan,
        _progress: &'a dyn Progress,
    ) -> BoxFuture<'a, HostReport> {
        Box::pin(async move {
            self.store.calls.lock().unwrap().push("apply".into());
            let want = cx.facts_of("a").get("version").unwrap_or("").to_string();
            let mut report = HostReport {
                host: plan.host.clone(),
                ..Default::default()
            };
            for a in &plan.actions {
                self.store
                    .keys
                    .lock()
                    .unwrap()
                    .insert(self.key.into(), want.clone());
                report.changed += 1;
                report.executed.push(Executed {
                    resource: a.resource.clone(),
                    kind: a.kind,
                });
            }
            report
        })
    }
}

struct Run {
    _dir: tempfile::TempDir,
    sessions: Sessions<LocalHost>,
    phases: Phases,
    store: Arc<Store>,
}

/// Host `a` gets `/version` (which its facts probe reads), then the service
/// is asked to hold it.
fn run(version: &str) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let a = LocalHost::new("a", dir.path().join("a")).unwrap();
    let sessions: Sessions<LocalHost> = [("a".to_string(), a.clone())].into_iter().collect();
    let store = Arc::new(Store::default());
    let file = a.path("/version");
    let probe = format!("printf 'version=%s\\n' \"$(cat {} 2>/dev/null)\"", file);
    let v = version.to_string();
    let phases = Phases::new(vec!["a".into()])
        .facts_probe(probe)
        .then(phase("install", move |_| {
            Ok(vec![Step::new(
                "install",
                vec![
                    DesiredState::new("a")
                        .with(Resource::file(&file, Content::text(v.clone())).mode(0o644)),
                ],
            )])
        }))
        .then(service_phase(
            "keys",
            Keys {
                store: store.clone(),
                key: "version",
            },
        ));
    Run {
        _dir: dir,
        sessions,
        phases,
        store,
    }
}

impl Run {
    async fn apply(&self, p: &PhasedPlan) -> Result<PhasedReport, EngineError> {
        apply_phases(
            &self.phases,
            p,
            &self.sessions,
            &ApplyOptions::default(),
            &NoProgress,
        )
        .await
    }
}

fn calls(s: &Store) -> Vec<String> {
    std::mem::take(&mut *s.calls.lock().unwrap())
}

#[tokio::test]
async fn a_service_phase_is_planned_shown_applied_after_the_hosts_and_then_left_alone() {
    let r = run("2");
    let p = plan_phases(&r.phases, &r.sessions).await.unwrap();
    // Planned before the host phase ran: not settled, marked as decided after it.
    assert_eq!(calls(&r.store), ["plan settled=false"]);
    let keys = &p.phases[1];
    assert_eq!(keys.decided_after, Some(1));
    let host = &keys.steps[0].hosts[0];
    assert_eq!(host.host, "store");
    assert_eq!(host.actions[0].resource.as_str(), "key:version");
    assert_eq!(host.actions[0].kind, ActionKind::Create);
    assert_eq!(p.summary.create, 2, "the file and the key");
    let text = print::render_phased(&p, &PrintOptions::default());
    assert!(text.contains("key:version"), "{text}");

    let report = r.apply(&p).await.unwrap();
    assert!(report.ok(), "{report:?}");
    // Planned again at apply, from the facts the host phase left: the
    // service holds the version the host now has, not the one planned from.
    assert_eq!(calls(&r.store), ["plan settled=true", "apply"]);
    assert_eq!(
        r.store
            .keys
            .lock()
            .unwrap()
            .get("version")
            .map(String::as_str),
        Some("2")
    );
    let keys = report.phase("keys").unwrap();
    assert!(keys.replanned);
    assert_eq!(keys.report.as_ref().unwrap().hosts[0].host, "store");
    assert_eq!(report.changed(), 2);

    // Converged: the service is planned (settled) and not contacted at apply.
    let p = plan_phases(&r.phases, &r.sessions).await.unwrap();
    assert!(!p.has_changes(), "{}", p.to_json());
    assert_eq!(calls(&r.store), ["plan settled=true"]);
    let report = r.apply(&p).await.unwrap();
    assert_eq!(report.changed(), 0);
    assert!(calls(&r.store).is_empty(), "a no-op never applies");
}

#[tokio::test]
async fn a_service_that_changed_since_the_plan_is_refused() {
    let r = run("3");
    let p = plan_phases(&r.phases, &r.sessions).await.unwrap();
    r.apply(&p).await.unwrap();
    // Someone changes the key: the plan wants to update it.
    r.store
        .keys
        .lock()
        .unwrap()
        .insert("version".into(), "old".into());
    let p = plan_phases(&r.phases, &r.sessions).await.unwrap();
    assert_eq!(
        p.phases[1].steps[0].hosts[0].actions[0].kind,
        ActionKind::Update
    );
    assert_eq!(p.phases[1].decided_after, None, "nothing before it changes");
    // ... and, before the apply, removes it: the approved update is now a create.
    r.store.keys.lock().unwrap().clear();
    calls(&r.store);
    let err = r.apply(&p).await.unwrap_err();
    assert!(err.to_string().contains("make the plan again"), "{err}");
    assert_eq!(calls(&r.store), ["plan settled=true"], "nothing applied");
    assert!(r.store.keys.lock().unwrap().is_empty());
}
