//! The engine end to end on local hosts ([`LocalHost`]: the engine's own
//! scripts under a local `sh`, each host rooted in a temp dir): observe →
//! plan → apply, drift refusal, phases, facts, probes and removal. No root,
//! no lab machines; what only a real host shows (systemd, SSH, sudo) is in
//! `lab.rs`.

// Phase closures return the engine's error, which is large by design (see lib.rs).
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::time::Duration;

use k8sup_engine::{
    ActionKind, ApplyOptions, Content, DesiredState, EngineError, Facts, Guard, LocalHost,
    NoProgress, PhasedPlan, Phases, PrintOptions, ProbeCheck, Resource, Rollout, Sessions, Step,
    apply, apply_phases, phase, plan, plan_phases, print,
};

struct Hosts {
    _dir: tempfile::TempDir,
    hosts: Vec<LocalHost>,
    sessions: Sessions<LocalHost>,
}

fn hosts(names: &[&str]) -> Hosts {
    let dir = tempfile::tempdir().unwrap();
    let hosts: Vec<LocalHost> = names
        .iter()
        .map(|n| LocalHost::new(*n, dir.path().join(n)).unwrap())
        .collect();
    let sessions = hosts
        .iter()
        .map(|h| (k8sup_engine::Transport::name(h).to_string(), h.clone()))
        .collect();
    Hosts {
        _dir: dir,
        hosts,
        sessions,
    }
}

impl Hosts {
    fn h(&self, i: usize) -> &LocalHost {
        &self.hosts[i]
    }

    fn execs(&self) -> Vec<usize> {
        self.hosts.iter().map(LocalHost::execs).collect()
    }
}

fn read(h: &LocalHost, p: &str) -> Option<String> {
    std::fs::read_to_string(h.path(p)).ok()
}

fn mode(h: &LocalHost, p: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(h.path(p)).unwrap().permissions().mode() & 0o7777
}

/// Directories, a config file, a symlink and a guarded command on one host.
fn workload(h: &LocalHost, port: u16) -> DesiredState {
    DesiredState::new("h1")
        .with(Resource::directory(h.path("/etc/demo")).mode(0o755))
        .with(
            Resource::file(
                h.path("/etc/demo/app.conf"),
                Content::text(format!("port={port}\n")),
            )
            .mode(0o644),
        )
        .with(Resource::symlink(
            h.path("/etc/demo/current"),
            h.path("/etc/demo/app.conf"),
        ))
        .with(Resource::command(
            "init",
            format!("echo done > {}", h.path("/etc/demo/initialized")),
            Guard::Creates(h.path("/etc/demo/initialized")),
        ))
}

#[tokio::test]
async fn a_fresh_host_converges_and_a_second_run_is_one_exec_that_changes_nothing() {
    let t = hosts(&["h1"]);
    let h = t.h(0);
    let desired = Rollout::single("files", vec![workload(h, 80)])
        .resolve()
        .await
        .unwrap();
    let p = plan(&desired, &t.sessions, 4).await.unwrap();
    assert_eq!(p.summary.create, 3, "{}", p.to_json());
    assert_eq!(p.summary.run, 1);
    let report = apply(
        &p,
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(read(h, "/etc/demo/app.conf").as_deref(), Some("port=80\n"));
    assert_eq!(read(h, "/etc/demo/initialized").as_deref(), Some("done\n"));
    assert_eq!(
        std::fs::read_link(h.path("/etc/demo/current")).unwrap(),
        std::path::PathBuf::from(h.path("/etc/demo/app.conf"))
    );
    assert!(
        !h.state_dir().join("run.lock").exists(),
        "the lock is released"
    );

    let before = h.execs();
    let again = plan(&desired, &t.sessions, 4).await.unwrap();
    assert!(
        !again.has_changes(),
        "{}",
        print::render(&again, &PrintOptions::default())
    );
    let report = apply(
        &again,
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(report.changed(), 0);
    assert_eq!(
        h.execs() - before,
        1,
        "a no-op is one exec: {:?}",
        h.commands()
    );
    assert!(
        !h.state_dir().join("run.lock").exists(),
        "a no-op never locks"
    );
}

#[tokio::test]
async fn a_host_changed_after_the_plan_is_refused_and_left_alone() {
    let t = hosts(&["h1"]);
    let h = t.h(0);
    let desired = Rollout::single("files", vec![workload(h, 80)])
        .resolve()
        .await
        .unwrap();
    apply(
        &plan(&desired, &t.sessions, 4).await.unwrap(),
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let changed = Rollout::single("files", vec![workload(h, 81)])
        .resolve()
        .await
        .unwrap();
    let p = plan(&changed, &t.sessions, 4).await.unwrap();
    std::fs::write(h.path("/etc/demo/app.conf"), "edited by hand\n").unwrap();
    let e = apply(
        &p,
        &changed,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, EngineError::Drift { .. }), "{e}");
    assert_eq!(
        read(h, "/etc/demo/app.conf").as_deref(),
        Some("edited by hand\n")
    );
    // Without the check before the run, the host's first script refuses under the lock.
    let opts = ApplyOptions {
        verify_first: false,
        ..ApplyOptions::default()
    };
    let report = apply(&p, &changed, &t.sessions, &opts, &NoProgress)
        .await
        .unwrap();
    let err = report.hosts[0].error.as_deref().unwrap_or_default();
    assert!(
        err.contains("the host changed since the plan was made"),
        "{err}"
    );
    assert_eq!(
        read(h, "/etc/demo/app.conf").as_deref(),
        Some("edited by hand\n")
    );
}

#[tokio::test]
async fn removal_is_planned_as_deletions_and_applied_idempotently() {
    let t = hosts(&["h1"]);
    let h = t.h(0);
    let present = workload(h, 80);
    let desired = Rollout::single("s", vec![present.clone()])
        .resolve()
        .await
        .unwrap();
    let p = plan(&desired, &t.sessions, 4).await.unwrap();
    apply(
        &p,
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();

    let gone = Rollout::single("s", vec![present.removal()])
        .resolve()
        .await
        .unwrap();
    let p = plan(&gone, &t.sessions, 4).await.unwrap();
    let text = print::render(&p, &PrintOptions::default());
    assert_eq!(p.summary.delete, 3, "{text}");
    assert!(
        text.contains(&format!("  - file:{}", h.path("/etc/demo/app.conf"))),
        "{text}"
    );
    assert!(text.contains("3 to delete"), "{text}");
    let report = apply(
        &p,
        &gone,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert!(!std::path::Path::new(&h.path("/etc/demo")).exists());
    let again = plan(&gone, &t.sessions, 4).await.unwrap();
    assert!(!again.has_changes(), "{}", again.to_json());
}

/// A probe whose check passes on its third try (it counts its tries in a file).
fn counting_probe(h: &LocalHost, passes_at: u32) -> ProbeCheck {
    let c = h.path("/tries");
    ProbeCheck::Command(format!(
        "n=$(cat {c} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {c}; echo \"try $n\"; [ $n -ge {passes_at} ]"
    ))
}

#[tokio::test]
async fn a_probe_waits_after_a_change_and_a_noop_does_not_run_it() {
    let t = hosts(&["h1"]);
    let h = t.h(0);
    let conf = h.path("/app.conf");
    let d = |v: &str| {
        DesiredState::new("h1")
            .with(Resource::file(conf.clone(), Content::text(v)))
            .with(
                Resource::probe(
                    "ready",
                    counting_probe(h, 3),
                    Duration::from_secs(30),
                    Duration::from_millis(50),
                )
                .depends_on(format!("file:{conf}")),
            )
    };
    let desired = Rollout::single("s", vec![d("a\n")])
        .resolve()
        .await
        .unwrap();
    let p = plan(&desired, &t.sessions, 4).await.unwrap();
    let kinds: Vec<ActionKind> = p.actions().map(|(_, a)| a.kind).collect();
    assert_eq!(kinds, [ActionKind::Create, ActionKind::Wait]);
    assert!(
        print::render(&p, &PrintOptions::default()).contains("⧗ wait for probe:ready"),
        "{}",
        print::render(&p, &PrintOptions::default())
    );
    let report = apply(
        &p,
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        read(h, "/tries").as_deref(),
        Some("3\n"),
        "it waited for the third try"
    );

    let again = plan(&desired, &t.sessions, 4).await.unwrap();
    assert!(
        !again.has_changes(),
        "a no-op does not wait: {}",
        again.to_json()
    );
    assert_eq!(again.steps[0].hosts[0].unchanged, 2);
}

#[tokio::test]
async fn a_probe_that_never_passes_names_host_probe_and_last_output_and_is_checked_again_next_time()
{
    let t = hosts(&["h1"]);
    let h = t.h(0);
    let conf = h.path("/app.conf");
    let flag = h.path("/healthy");
    let desired = Rollout::single(
        "s",
        vec![
            DesiredState::new("h1")
                .with(Resource::file(conf.clone(), Content::text("a\n")))
                .with(Resource::probe(
                    "api",
                    ProbeCheck::Command(format!("echo still starting; test -f {flag}")),
                    Duration::from_millis(600),
                    Duration::from_millis(100),
                )),
        ],
    )
    .resolve()
    .await
    .unwrap();
    let p = plan(&desired, &t.sessions, 4).await.unwrap();
    let report = apply(
        &p,
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(!report.ok());
    let err = report.hosts[0].error.clone().unwrap();
    assert!(err.starts_with("h1: waiting for probe:api failed"), "{err}");
    assert!(err.contains("did not pass within 0.6 s"), "{err}");
    assert!(err.contains("last output:\nstill starting"), "{err}");

    // Nothing else changes, but the failed gate is not forgotten.
    let again = plan(&desired, &t.sessions, 4).await.unwrap();
    let a: Vec<_> = again.actions().map(|(_, a)| a.clone()).collect();
    assert_eq!(a.len(), 1, "{}", again.to_json());
    assert_eq!(a[0].kind, ActionKind::Wait);
    assert_eq!(a[0].reason, "its last check failed on this host");
    std::fs::write(&flag, "").unwrap();
    let report = apply(
        &again,
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert!(!plan(&desired, &t.sessions, 4).await.unwrap().has_changes());
}

#[tokio::test]
async fn a_tcp_probe_passes_once_the_port_accepts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = hosts(&["h1"]);
    let h = t.h(0);
    let desired = Rollout::single(
        "s",
        vec![
            DesiredState::new("h1")
                .with(Resource::file(h.path("/x"), Content::text("x\n")))
                .with(Resource::probe(
                    "port",
                    ProbeCheck::Tcp {
                        host: "127.0.0.1".into(),
                        port,
                    },
                    Duration::from_secs(10),
                    Duration::from_millis(100),
                )),
        ],
    )
    .resolve()
    .await
    .unwrap();
    let p = plan(&desired, &t.sessions, 4).await.unwrap();
    let report = apply(
        &p,
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    drop(listener);
}

/// Facts read from `ROOT/version` by the probe.
fn version_probe(t: &Hosts) -> String {
    // Each host's root is its working directory.
    let _ = t;
    "echo version=$(cat version 2>/dev/null); echo name=$(basename \"$PWD\")".into()
}

/// Phases over `t`'s hosts: "install" writes the version file unless the
/// facts say version 2 is there; "configure" writes a config naming the
/// installed version (from facts) on every host; "join" runs a command on
/// every host but the first, unless it already ran (its guard).
fn lifecycle(t: &Hosts) -> Phases {
    let roots: BTreeMap<String, LocalHost> = t
        .hosts
        .iter()
        .map(|h| (k8sup_engine::Transport::name(h).to_string(), h.clone()))
        .collect();
    let names: Vec<String> = roots.keys().cloned().collect();
    let (r1, r2, r3) = (roots.clone(), roots.clone(), roots);
    Phases::new(names)
        .facts_probe(version_probe(t))
        .then(
            phase("install", move |_| {
                Ok(vec![Step::new(
                    "all",
                    r1.iter()
                        .map(|(n, h)| {
                            DesiredState::new(n)
                                .with(Resource::file(h.path("/version"), Content::text("2\n")))
                        })
                        .collect(),
                )])
            })
            .when(|cx| cx.facts.values().any(|f| f.get("version") != Some("2"))),
        )
        .then(phase("configure", move |cx| {
            Ok(vec![Step::new(
                "all",
                r2.iter()
                    .map(|(n, h)| {
                        let v = cx.facts_of(n).get("version").unwrap_or("none").to_string();
                        DesiredState::new(n).with(Resource::file(
                            h.path("/app.conf"),
                            Content::text(format!("installed={v}\n")),
                        ))
                    })
                    .collect(),
            )])
        }))
        .then(phase("join", move |_| {
            Ok(vec![Step::new(
                "others",
                r3.iter()
                    .skip(1)
                    .map(|(n, h)| {
                        DesiredState::new(n).with(Resource::command(
                            "join",
                            format!("echo joined >> {}", h.path("/joined")),
                            Guard::Unless(format!("test -f {}", h.path("/app.conf"))),
                        ))
                    })
                    .collect(),
            )])
        }))
}

#[tokio::test]
async fn phases_plan_up_front_with_marks_then_replan_after_each_change() {
    let t = hosts(&["a", "b"]);
    let phases = lifecycle(&t);
    let p = plan_phases(&phases, &t.sessions).await.unwrap();
    assert_eq!(
        t.execs(),
        [1, 1],
        "facts and every phase: one exec per host"
    );
    assert_eq!(
        p.facts["a"].get("name"),
        Some("a"),
        "facts come from the same exec"
    );
    assert_eq!(p.facts["a"].get("version"), Some(""));
    let titles: Vec<&str> = p.phases.iter().map(|p| p.title.as_str()).collect();
    assert_eq!(titles, ["install", "configure", "join"]);
    assert!(p.phases.iter().all(|p| p.runs));
    // Phase 1 is certain; the later ones are planned from the hosts as they are.
    assert_eq!(p.phases[0].decided_after, None);
    assert_eq!(p.phases[1].decided_after, Some(1));
    assert_eq!(p.phases[2].decided_after, Some(2));
    let join = &p.phases[2].steps[0].hosts[0];
    assert_eq!(join.host, "b");
    assert_eq!(join.decided_after, Some(2));
    assert_eq!(join.actions[0].kind, ActionKind::Run);
    assert_eq!(join.actions[0].decided_after, Some(2));
    let json = p.to_json();
    assert!(json.contains("\"decidedAfter\": 2"), "{json}");
    assert!(json.contains("\"kind\": \"phased\""), "{json}");
    assert_eq!(PhasedPlan::from_json(&json).unwrap(), p);
    let text = print::render_phased(&p, &PrintOptions::default());
    assert!(
        text.contains("Phase 2/3: configure  (decided after phase 1"),
        "{text}"
    );
    assert!(text.contains("[decided after phase 2]"), "{text}");
    // Configure was planned from the facts as they are: no version yet.
    assert!(
        p.phases[1].steps[0].hosts[0].actions[0]
            .diff
            .as_deref()
            .unwrap()
            .contains("+installed=\n")
            || p.phases[1].steps[0].hosts[0].actions[0]
                .diff
                .as_deref()
                .unwrap()
                .contains("+installed=none"),
        "{json}"
    );

    let r = apply_phases(
        &phases,
        &p,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(r.ok(), "{r:?}");
    let replanned: Vec<bool> = r.phases.iter().map(|p| p.replanned).collect();
    assert_eq!(replanned, [false, true, true]);
    // Configure was planned again after install: it sees the installed version.
    assert_eq!(read(t.h(0), "/app.conf").as_deref(), Some("installed=2\n"));
    // Join's guard was checked again after configure wrote app.conf: it did not run.
    assert!(read(t.h(1), "/joined").is_none());
    assert_eq!(r.phase("join").unwrap().plan.summary.total(), 0);

    // Converged: install is skipped by its facts, and the whole run is one exec per host.
    let before = t.execs();
    let p = plan_phases(&phases, &t.sessions).await.unwrap();
    assert!(!p.has_changes(), "{}", p.to_json());
    assert!(!p.phases[0].runs);
    let r = apply_phases(
        &phases,
        &p,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(r.changed(), 0);
    let after = t.execs();
    assert_eq!(
        [after[0] - before[0], after[1] - before[1]],
        [1, 1],
        "a no-op phased run is one exec per host"
    );
}

#[tokio::test]
async fn a_phase_that_sees_an_earlier_change_is_planned_again_instead_of_refused_as_drift() {
    // Phase 2 manages the file phase 1 creates: planned before phase 1 ran
    // it would "create" it; at apply it only fixes the mode.
    let t = hosts(&["a"]);
    let h = t.h(0).clone();
    let (h1, h2) = (h.clone(), h.clone());
    let phases = Phases::new(vec!["a".into()])
        .then(phase("write", move |_| {
            Ok(vec![Step::new(
                "s",
                vec![
                    DesiredState::new("a")
                        .with(Resource::file(h1.path("/f"), Content::text("x\n")).mode(0o644)),
                ],
            )])
        }))
        .then(phase("tighten", move |_| {
            Ok(vec![Step::new(
                "s",
                vec![
                    DesiredState::new("a")
                        .with(Resource::file(h2.path("/f"), Content::text("x\n")).mode(0o600)),
                ],
            )])
        }));
    let p = plan_phases(&phases, &t.sessions).await.unwrap();
    assert_eq!(
        p.phases[1].steps[0].hosts[0].actions[0].kind,
        ActionKind::Create
    );
    let r = apply_phases(
        &phases,
        &p,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(r.ok(), "{r:?}");
    let tighten = r.phase("tighten").unwrap();
    assert!(tighten.replanned);
    let done = &tighten.report.as_ref().unwrap().hosts[0].executed;
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].kind, ActionKind::Update);
    assert_eq!(mode(&h, "/f"), 0o600);
}

#[tokio::test]
async fn the_first_phase_keeps_the_drift_refusal() {
    let t = hosts(&["a"]);
    let h = t.h(0).clone();
    let h1 = h.clone();
    let phases = Phases::new(vec!["a".into()]).then(phase("write", move |_| {
        Ok(vec![Step::new(
            "s",
            vec![DesiredState::new("a").with(Resource::file(h1.path("/f"), Content::text("x\n")))],
        )])
    }));
    let p = plan_phases(&phases, &t.sessions).await.unwrap();
    std::fs::write(h.path("/f"), "someone else\n").unwrap();
    let e = apply_phases(
        &phases,
        &p,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(e, EngineError::Drift { .. }), "{e}");
    assert_eq!(read(&h, "/f").as_deref(), Some("someone else\n"));
}

#[tokio::test]
async fn facts_that_change_what_is_observed_cost_one_more_exec_unless_hinted() {
    // The phase's path depends on the installed version (a fact).
    let t = hosts(&["a"]);
    std::fs::write(t.h(0).path("/version"), "7\n").unwrap();
    let h = t.h(0).clone();
    let build = |hint: Option<Facts>| {
        let h = h.clone();
        let mut p = Phases::new(vec!["a".into()])
            .facts_probe("echo version=$(cat version)")
            .then(phase("link", move |cx| {
                let v = cx
                    .facts_of("a")
                    .get("version")
                    .unwrap_or("unknown")
                    .to_string();
                Ok(vec![Step::new(
                    "s",
                    vec![DesiredState::new("a").with(Resource::symlink(
                        h.path(&format!("/current-{v}")),
                        h.path("/version"),
                    ))],
                )])
            }));
        if let Some(f) = hint {
            p = p.facts_hint("a", f);
        }
        p
    };
    let p = plan_phases(&build(None), &t.sessions).await.unwrap();
    assert_eq!(
        t.execs(),
        [2],
        "observed with the expected facts, then again"
    );
    assert!(
        p.phases[0].steps[0].hosts[0].actions[0]
            .resource
            .as_str()
            .ends_with("/current-7")
    );
    let p2 = plan_phases(
        &build(Some(Facts::default().with("version", "7"))),
        &t.sessions,
    )
    .await
    .unwrap();
    assert_eq!(t.execs(), [3], "a right hint: one exec");
    assert_eq!(p2.phases, p.phases);
}

#[tokio::test]
async fn secret_facts_reach_the_phases_but_never_the_plans_json() {
    // A probe that reads a credential back, as the cluster's does.
    let t = hosts(&["a"]);
    std::fs::write(t.h(0).path("/key"), "hunter2\n").unwrap();
    let h = t.h(0).clone();
    let phases = Phases::new(vec!["a".into()])
        .facts_probe("echo secret.key=$(cat key); echo arch=x86_64")
        .then(phase("use", move |cx| {
            let key = cx
                .facts_of("a")
                .get("secret.key")
                .unwrap_or("none")
                .to_string();
            Ok(vec![Step::new(
                "s",
                vec![DesiredState::new("a").with(
                    Resource::file(h.path("/copy"), Content::text(format!("{key}\n"))).mode(0o600),
                )],
            )])
        }));
    let p = plan_phases(&phases, &t.sessions).await.unwrap();
    assert_eq!(
        p.facts["a"].get("secret.key"),
        Some("hunter2"),
        "the phase sees it"
    );
    let json = p.to_json();
    assert!(
        !json.contains("hunter2") && !json.contains("secret.key"),
        "{json}"
    );
    assert!(
        json.contains("\"arch\": \"x86_64\""),
        "other facts stay: {json}"
    );
    let r = apply_phases(
        &phases,
        &p,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(r.ok());
    assert_eq!(read(&t.h(0).clone(), "/copy").as_deref(), Some("hunter2\n"));
}

/// A loopback HTTP server answering each request with the next status of
/// `statuses` (the last one repeats).
fn http_server(statuses: Vec<u16>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let s = statuses[i.min(statuses.len() - 1)];
            let _ = c.write_all(
                format!("HTTP/1.1 {s} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    port
}

#[tokio::test]
async fn an_http_probe_waits_for_the_wanted_status_and_reports_the_last_one() {
    let t = hosts(&["h1"]);
    let h = t.h(0);
    let probe = |port: u16, name: &str| {
        DesiredState::new("h1")
            .with(Resource::file(
                h.path(&format!("/{name}")),
                Content::text("x\n"),
            ))
            .with(Resource::probe(
                name,
                ProbeCheck::Http {
                    url: format!("http://127.0.0.1:{port}/healthz"),
                    status: 200,
                    insecure: false,
                },
                Duration::from_millis(800),
                Duration::from_millis(50),
            ))
    };
    let up = http_server(vec![503, 503, 200]);
    let desired = Rollout::single("s", vec![probe(up, "up")])
        .resolve()
        .await
        .unwrap();
    let p = plan(&desired, &t.sessions, 4).await.unwrap();
    let report = apply(
        &p,
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");

    let down = http_server(vec![503]);
    let desired = Rollout::single("s", vec![probe(down, "down")])
        .resolve()
        .await
        .unwrap();
    let p = plan(&desired, &t.sessions, 4).await.unwrap();
    let report = apply(
        &p,
        &desired,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let err = report.hosts[0].error.clone().unwrap_or_default();
    assert!(err.contains("probe:down"), "{err}");
    assert!(err.contains("answers 200) did not pass"), "{err}");
    assert!(err.contains("wanted HTTP 200, got: 503"), "{err}");
}

/// A file with a diff view (`Resource::diff_view`): the plan diffs what the
/// view makes of the old and new contents; apply writes the raw bytes.
#[tokio::test]
async fn a_diff_view_shows_what_changed_in_words() {
    fn view(b: &[u8]) -> String {
        let n = String::from_utf8_lossy(b).trim().len();
        format!("a secret-looking blob of {n} characters\n")
    }
    let t = hosts(&["h1"]);
    let h = t.h(0);
    let file = |text: &str| {
        Rollout::single(
            "files",
            vec![
                DesiredState::new("h1")
                    .with(Resource::file(h.path("/blob"), Content::text(text)).diff_view(view)),
            ],
        )
    };
    let first = file("aaaa\n").resolve().await.unwrap();
    let p = plan(&first, &t.sessions, 4).await.unwrap();
    apply(
        &p,
        &first,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let second = file("bbbbbb\n").resolve().await.unwrap();
    let p = plan(&second, &t.sessions, 4).await.unwrap();
    let diff = p.steps[0].hosts[0].actions[0].diff.clone().unwrap();
    assert!(
        diff.contains("-a secret-looking blob of 4 characters")
            && diff.contains("+a secret-looking blob of 6 characters")
            && !diff.contains("bbbbbb"),
        "{diff}"
    );
    apply(
        &p,
        &second,
        &t.sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(read(h, "/blob").as_deref(), Some("bbbbbb\n"));
}
