//! End to end on real machines (systemd-nspawn lab, real sshd and systemd):
//! what a user of `k8sup plan` / `k8sup apply` would see.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::*;
use k8sup_engine::{
    ActionKind, ApplyOptions, EngineError, Executed, NoProgress, Plan, PrintOptions, apply, plan,
    print,
};

/// Records progress events as lines.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl k8sup_engine::Progress for Recorder {
    fn event(&self, e: k8sup_engine::Event<'_>) {
        use k8sup_engine::Event::*;
        let line = match e {
            HostStarted { host, .. } => format!("host-started {host} "),
            ActionStarted { host, action } => format!("action-started {host} {}", action.resource),
            ActionFinished { host, action, ok } => format!(
                "action-{} {host} {}",
                if ok { "ok" } else { "failed" },
                action.resource
            ),
            Upload { host, sent, .. } => format!("upload {host} {sent}"),
            HostFinished { host, ok, .. } => {
                format!("host-{} {host} ", if ok { "ok" } else { "failed" })
            }
            _ => return,
        };
        self.0.lock().unwrap().push(line);
    }
}

fn executed_of(plan: &Plan, host: &str) -> Vec<Executed> {
    plan.actions()
        .filter(|(h, _)| *h == host)
        .map(|(_, a)| Executed {
            resource: a.resource.clone(),
            kind: a.kind,
        })
        .collect()
}

/// Apply on fresh machines creates everything, exactly as planned; a second
/// apply plans nothing, runs nothing, and touches nothing on the hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fresh_apply_then_noop() {
    require_root();
    let _serial = SERIAL.lock().await;
    let Demo {
        lab,
        sessions,
        desired,
        ..
    } = Demo::up("eng-fresh", 3, 8, 1).await;

    let p = plan(&desired, &sessions, 10).await.unwrap();
    let text = print::render(&p, &PrintOptions::default());
    println!("{text}");
    // Per host: 2 dirs, 1 binary, 3 configs, 1 link, 1 unit, the service and the command are
    // created; no daemon-reload (systemd loads a unit it never saw by itself); no restart
    // (the service is started by this run).
    assert_eq!(p.summary.create, 3 * 9, "{text}");
    assert_eq!(p.summary.run, 3, "{text}");
    assert_eq!(p.summary.reload, 0, "{text}");
    assert_eq!(p.summary.restart, 0, "{text}");
    assert_eq!(p.summary.update + p.summary.delete, 0, "{text}");
    assert!(
        text.contains("Plan: 27 to create, 0 to update, 0 to delete, 0 restarts, 3 to run."),
        "{text}"
    );
    assert!(
        text.contains("+port=8080"),
        "new text files are shown as diffs:\n{text}"
    );
    assert!(
        !text.contains("name=eng-fresh-1\n"),
        "node.conf is 0640, so sensitive:\n{text}"
    );

    let progress = Recorder::default();
    let report = apply(&p, &desired, &sessions, &ApplyOptions::default(), &progress)
        .await
        .unwrap();
    let events = progress.0.lock().unwrap().clone();
    for h in lab.hosts() {
        // What a progress bar needs: each host starts, every action starts and finishes once, the host ends.
        let mine: Vec<&String> = events
            .iter()
            .filter(|e| e.contains(&format!(" {h} ")))
            .collect();
        assert_eq!(
            mine.iter()
                .filter(|e| e.starts_with("host-started"))
                .count(),
            1,
            "{mine:?}"
        );
        assert_eq!(
            mine.iter()
                .filter(|e| e.starts_with("action-started"))
                .count(),
            10,
            "{mine:?}"
        );
        assert_eq!(
            mine.iter().filter(|e| e.starts_with("action-ok")).count(),
            10,
            "{mine:?}"
        );
        assert!(mine.last().unwrap().starts_with("host-ok"), "{mine:?}");
        assert!(mine.iter().any(|e| e.starts_with("upload")), "{mine:?}");
    }
    for h in &report.hosts {
        assert!(h.error.is_none(), "{h:?}");
        assert_eq!(
            h.executed,
            executed_of(&p, &h.host),
            "apply did exactly the plan on {}",
            h.host
        );
        assert_eq!((h.changed, h.failed, h.not_run), (10, 0, 0), "{h:?}");
    }
    for h in lab.hosts() {
        assert_eq!(
            lab.sh(
                &h,
                &format!("systemctl is-active {UNIT}; systemctl is-enabled {UNIT}")
            ),
            "active\nenabled"
        );
        let addr = lab
            .info
            .machines
            .iter()
            .find(|m| m.name == h)
            .unwrap()
            .address
            .to_string();
        assert_eq!(
            lab.sh(&h, &format!("cat {ROOT}/demo/conf.d/node.conf")),
            format!("name={h}\naddress={addr}")
        );
        assert_eq!(lab.sh(&h, &format!("stat -c '%a %U' {ROOT}/demo/conf.d/node.conf {ROOT}/demo/conf.d {ROOT}/demo/demo-bin")), "640 root\n750 root\n755 root");
        let peers = lab.sh(&h, &format!("cat {ROOT}/demo/conf.d/peers.conf"));
        assert_eq!(peers.lines().count(), 3, "{peers}");
        assert_eq!(
            lab.sh(&h, &format!("readlink {ROOT}/demo/current")),
            format!("{ROOT}/demo/demo-bin")
        );
        assert_eq!(
            lab.sh(
                &h,
                &format!("sha256sum < {ROOT}/demo/demo-bin | cut -c1-64")
            ),
            desired.steps[0].hosts[0]
                .resources
                .iter()
                .find(|r| r.id.as_str().starts_with("binary:"))
                .unwrap()
                .body
                .as_ref()
                .unwrap()
                .sha256
        );
        assert_eq!(
            lab.sh(
                &h,
                "ls /var/lib/k8sup/run.lock 2>/dev/null || echo released"
            ),
            "released"
        );
    }

    let before: Vec<String> = lab.hosts().iter().map(|h| footprint(&lab, h)).collect();
    let t = Instant::now();
    let again = plan(&desired, &sessions, 10).await.unwrap();
    let planned_in = t.elapsed();
    assert!(
        !again.has_changes(),
        "{}",
        print::render(&again, &PrintOptions::default())
    );
    assert!(print::render(&again, &PrintOptions::default()).contains("No changes."));
    let report = apply(
        &again,
        &desired,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let noop_in = t.elapsed();
    assert_eq!(report.changed(), 0);
    assert!(
        report
            .hosts
            .iter()
            .all(|h| h.unchanged == 10 && h.executed.is_empty()),
        "{report:?}"
    );
    let after: Vec<String> = lab.hosts().iter().map(|h| footprint(&lab, h)).collect();
    assert_eq!(
        before, after,
        "a no-op apply rewrote or restarted something"
    );
    println!("no-op plan on 3 hosts: {planned_in:?}; plan + apply: {noop_in:?}");
}

fn ports(host: &str, port: u16) -> BTreeMap<String, u16> {
    BTreeMap::from([(host.to_string(), port)])
}

fn lines_without(footprint: &str, needles: &[&str]) -> Vec<String> {
    footprint
        .lines()
        .filter(|l| !needles.iter().any(|n| l.contains(n)))
        .map(str::to_string)
        .collect()
}

/// Changing one template variable plans `~` for exactly the affected file,
/// with its diff, and one restart of the service; apply does that and only that.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn template_variable_change_updates_one_file_and_restarts_once() {
    require_root();
    let _serial = SERIAL.lock().await;
    let Demo {
        lab,
        sessions,
        bin,
        desired: first,
        ..
    } = Demo::up("eng-tmpl", 3, 4, 2).await;
    let p = plan(&first, &sessions, 10).await.unwrap();
    assert!(
        apply(&p, &first, &sessions, &ApplyOptions::default(), &NoProgress)
            .await
            .unwrap()
            .ok()
    );

    let hosts = lab.hosts();
    let before: Vec<String> = hosts.iter().map(|h| footprint(&lab, h)).collect();
    let changed = workload(&lab, &bin, &ports(&hosts[0], 9090))
        .resolve()
        .await
        .unwrap();
    let p = plan(&changed, &sessions, 10).await.unwrap();
    let text = print::render(&p, &PrintOptions::default());
    println!("{text}");
    let h0 = &p.steps[0].hosts[0];
    let kinds: Vec<(String, ActionKind)> = h0
        .actions
        .iter()
        .map(|a| (a.resource.to_string(), a.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                format!("file:{ROOT}/demo/conf.d/app.conf"),
                ActionKind::Update
            ),
            (format!("service:{UNIT}"), ActionKind::Restart),
        ],
        "{text}"
    );
    let diff = h0.actions[0].diff.as_deref().unwrap();
    assert!(diff.contains("-port=8080\n+port=9090\n"), "{diff}");
    assert!(
        h0.actions[1].reason.contains("app.conf"),
        "{}",
        h0.actions[1].reason
    );
    assert!(
        p.steps[0].hosts[1..].iter().all(|h| h.actions.is_empty()),
        "{text}"
    );
    assert!(
        text.contains("Plan: 0 to create, 1 to update, 0 to delete, 1 restart."),
        "{text}"
    );

    let report = apply(
        &p,
        &changed,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        report.host(&hosts[0]).unwrap().executed,
        executed_of(&p, &hosts[0])
    );
    let after: Vec<String> = hosts.iter().map(|h| footprint(&lab, h)).collect();
    assert_eq!(before[1..], after[1..], "other hosts were touched");
    assert_ne!(before[0], after[0]);
    // app.conf is replaced (so its directory's mtime moves too) and the service restarts; nothing else.
    let changing = [
        "app.conf",
        &format!("{ROOT}/demo/conf.d 1"),
        "ActiveEnterTimestampMonotonic",
    ];
    assert_eq!(
        lines_without(&before[0], &changing),
        lines_without(&after[0], &changing),
        "only app.conf and the service may change"
    );
    let started = |f: &str| {
        f.lines()
            .find(|l| l.starts_with("ActiveEnter"))
            .unwrap()
            .to_string()
    };
    assert_ne!(
        started(&before[0]),
        started(&after[0]),
        "the service was not restarted"
    );
    assert_eq!(
        lab.sh(&hosts[0], &format!("grep port {ROOT}/demo/conf.d/app.conf")),
        "port=9090"
    );
    assert!(!plan(&changed, &sessions, 10).await.unwrap().has_changes());

    // A changed unit systemd has loaded: one daemon-reload after it, one
    // restart, and systemd runs the new definition.
    let unit_changed =
        workload_with_unit_lines(&lab, &bin, &ports(&hosts[0], 9090), "Environment=DEMO=2\n")
            .resolve()
            .await
            .unwrap();
    let p = plan(&unit_changed, &sessions, 10).await.unwrap();
    let text = print::render(&p, &PrintOptions::default());
    for h in &p.steps[0].hosts {
        assert_eq!(
            h.actions
                .iter()
                .map(|a| (a.resource.to_string(), a.kind))
                .collect::<Vec<_>>(),
            vec![
                (format!("unit:{UNIT}"), ActionKind::Update),
                ("systemd:daemon-reload".to_string(), ActionKind::Reload),
                (format!("service:{UNIT}"), ActionKind::Restart),
            ],
            "{text}"
        );
    }
    let report = apply(
        &p,
        &unit_changed,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    for h in &hosts {
        assert_eq!(
            lab.sh(
                h,
                &format!("systemctl show -p Environment -p NeedDaemonReload {UNIT}")
            ),
            "Environment=DEMO=2\nNeedDaemonReload=no"
        );
    }
    assert!(
        !plan(&unit_changed, &sessions, 10)
            .await
            .unwrap()
            .has_changes()
    );
}

/// A plan applied after its host changed is refused as a whole; nothing is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drifted_host_refuses_the_plan() {
    require_root();
    let _serial = SERIAL.lock().await;
    let Demo {
        lab,
        sessions,
        bin,
        desired: first,
        ..
    } = Demo::up("eng-drift", 2, 2, 3).await;
    let p = plan(&first, &sessions, 10).await.unwrap();
    assert!(
        apply(&p, &first, &sessions, &ApplyOptions::default(), &NoProgress)
            .await
            .unwrap()
            .ok()
    );

    let hosts = lab.hosts();
    let changed = workload(&lab, &bin, &ports(&hosts[0], 9191))
        .resolve()
        .await
        .unwrap();
    let p = plan(&changed, &sessions, 10).await.unwrap();
    // Saved and read back, as `k8sup plan --out` / `k8sup apply plan.json` do.
    let p = Plan::from_json(&p.to_json()).unwrap();
    assert_eq!(p.summary.update, 1);
    let started = service_started_at(&lab, &hosts[0]);

    // Someone edits a file on the *other* host, which the plan said was fine.
    lab.sh(
        &hosts[1],
        &format!("echo '# hand edit' >> {ROOT}/demo/conf.d/peers.conf"),
    );
    let err = apply(
        &p,
        &changed,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    match &err {
        EngineError::Drift { hosts: drifted } => assert_eq!(drifted, &vec![hosts[1].clone()]),
        other => panic!("expected a drift refusal, got {other}"),
    }
    assert!(err.to_string().contains("run plan again"), "{err}");
    assert_eq!(
        lab.sh(&hosts[0], &format!("grep port {ROOT}/demo/conf.d/app.conf")),
        "port=8080",
        "nothing applied"
    );
    assert_eq!(service_started_at(&lab, &hosts[0]), started);
    assert_eq!(
        lab.sh(
            &hosts[0],
            "ls /var/lib/k8sup/run.lock 2>/dev/null || echo none"
        ),
        "none"
    );

    // A mode change is drift too.
    let p = plan(&changed, &sessions, 10).await.unwrap();
    lab.sh(
        &hosts[0],
        &format!("chmod 600 {ROOT}/demo/conf.d/peers.conf"),
    );
    assert!(matches!(
        apply(
            &p,
            &changed,
            &sessions,
            &ApplyOptions::default(),
            &NoProgress
        )
        .await,
        Err(EngineError::Drift { .. })
    ));
    // A fresh plan repairs both.
    let p = plan(&changed, &sessions, 10).await.unwrap();
    assert!(
        apply(
            &p,
            &changed,
            &sessions,
            &ApplyOptions::default(),
            &NoProgress
        )
        .await
        .unwrap()
        .ok()
    );
    assert!(!plan(&changed, &sessions, 10).await.unwrap().has_changes());
}

/// Two concurrent applies: the second is refused by the lock, naming the
/// first. A stale lock of a dead run is refused too, and broken only on request.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_lock_refuses_a_second_apply_and_breaks_stale_locks_on_request() {
    require_root();
    let _serial = SERIAL.lock().await;
    let lab = TestLab::up("eng-lock", 2);
    let dir = tempfile::tempdir().unwrap();
    let small = blob(dir.path(), "small", 1, 4);
    let big = blob(dir.path(), "big", 40, 5);
    let sessions = lab.sessions().await;
    let hosts = lab.hosts();
    let first = workload(&lab, &small, &BTreeMap::new())
        .resolve()
        .await
        .unwrap();
    let p = plan(&first, &sessions, 10).await.unwrap();
    assert!(
        apply(&p, &first, &sessions, &ApplyOptions::default(), &NoProgress)
            .await
            .unwrap()
            .ok()
    );

    // Run A: a slow upload of a new binary.
    let a_desired = workload(&lab, &big, &BTreeMap::new())
        .resolve()
        .await
        .unwrap();
    let a_plan = plan(&a_desired, &sessions, 10).await.unwrap();
    let a_opts = ApplyOptions {
        lock: k8sup_engine::LockSettings {
            refresh_every: std::time::Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    };
    let a_run = a_opts.identity.holder.run_id.clone();
    let slow = SlowUploads {
        pause: std::time::Duration::from_millis(500),
        announce: false,
        said: Default::default(),
    };
    let a = {
        let sessions = sessions.clone();
        tokio::spawn(async move { apply(&a_plan, &a_desired, &sessions, &a_opts, &slow).await })
    };
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while lab
        .sh(&hosts[0], "cat /var/lib/k8sup/run.lock 2>/dev/null || true")
        .is_empty()
    {
        assert!(Instant::now() < deadline, "run A never took the lock");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // Run B, while A holds the lock: plan shows the holder, apply is refused before changing anything.
    let b_desired = workload(&lab, &small, &ports(&hosts[1], 7070))
        .resolve()
        .await
        .unwrap();
    let b_plan = plan(&b_desired, &sessions, 10).await.unwrap();
    assert!(
        print::render(&b_plan, &PrintOptions::default()).contains("another run holds the lock")
    );
    let err = apply(
        &b_plan,
        &b_desired,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    let locked =
        |e: &EngineError| matches!(e, EngineError::Locked { holder, .. } if holder.run_id == a_run);
    assert!(
        locked(&err) || matches!(&err, EngineError::Hosts(all) if all.iter().all(locked)),
        "{msg}"
    );
    assert!(msg.contains(&a_run) && msg.contains(&hosts[0]), "{msg}");
    assert_eq!(
        lab.sh(&hosts[1], &format!("grep port {ROOT}/demo/conf.d/app.conf")),
        "port=8080",
        "B changed nothing"
    );

    // A refreshes its lock while it runs.
    let mtime = || {
        lab.sh(
            &hosts[0],
            "stat -c %.9Y /var/lib/k8sup/run.lock 2>/dev/null || echo 0",
        )
        .parse::<f64>()
        .unwrap()
    };
    let m1 = mtime();
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let m2 = mtime();
    assert!(
        m2 > m1 || m2 == 0.0,
        "the lock was not refreshed ({m1} then {m2})"
    );
    let a_report = a.await.unwrap().unwrap();
    assert!(a_report.ok(), "{a_report:?}");
    assert_eq!(
        lab.sh(
            &hosts[0],
            "ls /var/lib/k8sup/run.lock 2>/dev/null || echo none"
        ),
        "none"
    );

    // A lock from a run that died elsewhere and stopped refreshing it.
    lab.sh(
        &hosts[1],
        "mkdir -p /var/lib/k8sup && printf 'run=dead-run\\nworkstation=elsewhere\\npid=4242\\nstarted=1\\n' > /var/lib/k8sup/run.lock \
         && touch -d '-5 min' /var/lib/k8sup/run.lock",
    );
    let b_plan = plan(&b_desired, &sessions, 10).await.unwrap();
    let err = apply(
        &b_plan,
        &b_desired,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EngineError::StaleLock { .. }), "{err}");
    assert!(
        err.to_string().contains("dead-run"),
        "names the holder: {err}"
    );
    let opts = ApplyOptions {
        break_stale_lock: true,
        ..Default::default()
    };
    let report = apply(&b_plan, &b_desired, &sessions, &opts, &NoProgress)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        lab.sh(&hosts[1], &format!("grep port {ROOT}/demo/conf.d/app.conf")),
        "port=7070"
    );
    assert_eq!(
        lab.sh(
            &hosts[1],
            "ls /var/lib/k8sup/run.lock 2>/dev/null || echo none"
        ),
        "none"
    );
}

/// A failing guarded command and a failing unit start are reported by host
/// with their stderr; that host stops, the others finish. With fail_fast,
/// hosts not started yet do not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_are_reported_by_host_with_stderr() {
    use k8sup_engine::{Content, DesiredState, Guard, Resource, Rollout};
    require_root();
    let _serial = SERIAL.lock().await;
    let lab = TestLab::up("eng-fail", 3);
    let sessions = lab.sessions().await;
    let hosts = lab.hosts();
    let marker = |h: &str| Resource::file(format!("{ROOT}/after"), Content::text(format!("{h}\n")));
    let states = vec![
        DesiredState::new(&hosts[0]).with(Resource::directory(ROOT)).with(marker(&hosts[0])),
        DesiredState::new(&hosts[1])
            .with(Resource::directory(ROOT))
            .with(Resource::command("explode", "echo 'boom: the disk is on fire' >&2; exit 3", Guard::Unless("false".into())))
            .with(marker(&hosts[1]).depends_on("command:explode")),
        DesiredState::new(&hosts[2])
            .with(Resource::directory(ROOT))
            .with(Resource::unit(
                "eng-bad.service",
                Content::text("[Service]\nType=oneshot\nExecStart=/bin/sh -c 'echo bad-unit-says-no >&2; exit 1'\n"),
            ))
            .with(Resource::service("eng-bad.service").enabled(false))
            .with(marker(&hosts[2]).depends_on("service:eng-bad.service")),
    ];
    let desired = Rollout::single("fail", states.clone())
        .resolve()
        .await
        .unwrap();
    let p = plan(&desired, &sessions, 10).await.unwrap();
    println!("{}", print::render(&p, &PrintOptions::default()));
    let report = apply(
        &p,
        &desired,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    println!("{report:#?}");
    assert!(!report.ok());
    let r0 = report.host(&hosts[0]).unwrap();
    assert!(r0.error.is_none() && r0.changed == 2, "{r0:?}");
    let r1 = report.host(&hosts[1]).unwrap();
    let e1 = r1.error.as_deref().unwrap();
    assert!(
        e1.starts_with(&hosts[1])
            && e1.contains("command:explode")
            && e1.contains("boom: the disk is on fire"),
        "{e1}"
    );
    assert_eq!((r1.changed, r1.failed, r1.not_run), (1, 1, 1), "{r1:?}");
    let r2 = report.host(&hosts[2]).unwrap();
    let e2 = r2.error.as_deref().unwrap();
    assert!(
        e2.starts_with(&hosts[2]) && e2.contains("service:eng-bad.service"),
        "{e2}"
    );
    assert!(
        e2.contains("bad-unit-says-no") || e2.contains("status=1/FAILURE"),
        "the unit's own failure is shown: {e2}"
    );
    assert_eq!(r2.not_run, 1, "{r2:?}");
    assert_eq!(
        lab.sh(
            &hosts[1],
            &format!("ls {ROOT}/after 2>/dev/null || echo absent")
        ),
        "absent"
    );
    for h in &hosts {
        assert_eq!(
            lab.sh(h, "ls /var/lib/k8sup/run.lock 2>/dev/null || echo none"),
            "none",
            "lock released on {h}"
        );
    }

    // fail_fast, one host at a time: the failure on host 2 stops host 3 before it starts.
    let reset = Rollout::single("fail", states).resolve().await.unwrap();
    for h in &hosts[1..] {
        lab.sh(h, &format!("rm -rf {ROOT}"));
    }
    let p = plan(&reset, &sessions, 10).await.unwrap();
    let opts = ApplyOptions {
        fail_fast: true,
        concurrency: 1,
        ..Default::default()
    };
    let report = apply(&p, &reset, &sessions, &opts, &NoProgress)
        .await
        .unwrap();
    let r2 = report.host(&hosts[2]).unwrap();
    assert!(
        r2.executed.is_empty() && r2.error.as_deref().unwrap().contains("stopped"),
        "{r2:?}"
    );
}

/// Killed (SIGKILL) in the middle of a 50 MB upload: the host keeps the old
/// file, never a partial one; the dead run's lock is recognised as stale;
/// a rerun breaking it converges and leaves no temp file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_mid_upload_keeps_the_old_file_and_a_rerun_converges() {
    require_root();
    let _serial = SERIAL.lock().await;
    let lab = TestLab::up("eng-kill", 1);
    let dir = tempfile::tempdir().unwrap();
    let old = blob(dir.path(), "old", 50, 6);
    let new = blob(dir.path(), "new", 50, 7);
    let sessions = lab.sessions().await;
    let host = lab.hosts()[0].clone();
    let first = workload(&lab, &old, &BTreeMap::new())
        .resolve()
        .await
        .unwrap();
    let p = plan(&first, &sessions, 10).await.unwrap();
    assert!(
        apply(&p, &first, &sessions, &ApplyOptions::default(), &NoProgress)
            .await
            .unwrap()
            .ok()
    );
    let sha = |r: &k8sup_engine::ResolvedRollout| {
        r.steps[0].hosts[0]
            .resources
            .iter()
            .find(|r| r.id.as_str().starts_with("binary:"))
            .unwrap()
            .body
            .as_ref()
            .unwrap()
            .sha256
            .clone()
    };
    let old_sha = sha(&first);

    // A separate process applies the new binary, slowly; it is killed mid-stream.
    let mut child = std::process::Command::new(helper("apply-slowly"))
        .env("ENG_KILL_LAB", lab.lab.name())
        .env("ENG_KILL_BLOB", &new)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "the child ended before uploading"
        );
        if line.contains("UPLOADING") {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();

    let bin = format!("{ROOT}/demo/demo-bin");
    assert_eq!(
        lab.sh(&host, &format!("sha256sum < {bin} | cut -c1-64")),
        old_sha,
        "the old file, whole"
    );
    let partial = lab.sh(
        &host,
        &format!("stat -c %s {ROOT}/demo/.demo-bin.k8sup-tmp.* 2>/dev/null || true"),
    );
    println!("partial temp file after the kill: {partial:?} bytes");
    assert!(
        partial.parse::<u64>().is_ok_and(|n| n < 50 << 20),
        "the kill landed mid-upload: {partial:?}"
    );
    assert!(
        !lab.sh(&host, "cat /var/lib/k8sup/run.lock").is_empty(),
        "the dead run's lock is still there"
    );

    let second = workload(&lab, &new, &BTreeMap::new())
        .resolve()
        .await
        .unwrap();
    let p = plan(&second, &sessions, 10).await.unwrap();
    let err = apply(
        &p,
        &second,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EngineError::StaleLock { .. }),
        "a dead local pid makes the lock stale at once: {err}"
    );
    let opts = ApplyOptions {
        break_stale_lock: true,
        ..Default::default()
    };
    let report = apply(&p, &second, &sessions, &opts, &NoProgress)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        lab.sh(&host, &format!("sha256sum < {bin} | cut -c1-64")),
        sha(&second)
    );
    assert_eq!(
        lab.sh(
            &host,
            &format!("ls -a {ROOT}/demo | grep -c k8sup-tmp || true")
        ),
        "0",
        "temp files cleaned up"
    );
    assert!(!plan(&second, &sessions, 10).await.unwrap().has_changes());

    // Ctrl-C (cancellation) in the middle of an upload back to the old binary: the
    // host stops cleanly, keeps the new file, releases the lock; a rerun converges.
    let back = workload(&lab, &old, &BTreeMap::new())
        .resolve()
        .await
        .unwrap();
    let p = plan(&back, &sessions, 10).await.unwrap();
    let opts = ApplyOptions::default();
    let stop = CancelOnUpload(opts.cancel.clone());
    let report = apply(&p, &back, &sessions, &opts, &stop).await.unwrap();
    let r = report.host(&host).unwrap();
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("interrupted while uploading"),
        "{r:?}"
    );
    assert_eq!(
        lab.sh(&host, &format!("sha256sum < {bin} | cut -c1-64")),
        sha(&second),
        "the file in place is whole"
    );
    assert_eq!(
        lab.sh(&host, "ls /var/lib/k8sup/run.lock 2>/dev/null || echo none"),
        "none",
        "lock released"
    );
    // The rerun reads the binary from disk (as for files over the memory
    // budget), not from one buffer shared by the hosts: that path too
    // delivers exactly the hashed bytes.
    let p = plan(&back, &sessions, 10).await.unwrap();
    let from_disk = ApplyOptions {
        hold_in_memory: 0,
        ..Default::default()
    };
    assert!(
        apply(&p, &back, &sessions, &from_disk, &NoProgress)
            .await
            .unwrap()
            .ok()
    );
    assert_eq!(
        lab.sh(&host, &format!("sha256sum < {bin} | cut -c1-64")),
        old_sha
    );
    assert_eq!(
        lab.sh(
            &host,
            &format!("ls -a {ROOT}/demo | grep -c k8sup-tmp || true")
        ),
        "0"
    );
}

/// Cancels the run (as Ctrl-C would) once an upload is under way.
struct CancelOnUpload(k8sup_engine::CancellationToken);

impl k8sup_engine::Progress for CancelOnUpload {
    fn event(&self, e: k8sup_engine::Event<'_>) {
        if let k8sup_engine::Event::Upload { sent, total, .. } = e
            && sent < total
        {
            self.0.cancel();
            // Let the cancellation land while bytes are still in flight.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

/// Steps run in order (every host of a step finishes before the next step
/// starts), and no step starts after a step in which a host failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steps_run_in_order_and_stop_after_a_failed_step() {
    use k8sup_engine::{Content, DesiredState, Guard, Resource, Rollout, Step};
    require_root();
    let _serial = SERIAL.lock().await;
    let lab = TestLab::up("eng-steps", 3);
    let sessions = lab.sessions().await;
    let hosts = lab.hosts();
    let stamp = |h: &str, cmd: &str| {
        DesiredState::new(h).with(Resource::directory(ROOT)).with(
            Resource::command("stamp", cmd, Guard::Creates(format!("{ROOT}/stamp")))
                .depends_on(format!("dir:{ROOT}")),
        )
    };
    let write = format!("sleep 0.5; date +%s%N > {ROOT}/stamp");
    let rollout = Rollout::single("first", vec![stamp(&hosts[0], &write)]).then(Step::new(
        "others",
        vec![stamp(&hosts[1], &write), stamp(&hosts[2], &write)],
    ));
    let desired = rollout.resolve().await.unwrap();
    let p = plan(&desired, &sessions, 10).await.unwrap();
    let text = print::render(&p, &PrintOptions::default());
    assert!(
        text.starts_with("Step first:\n") && text.contains("Step others:\n"),
        "{text}"
    );
    let report = apply(
        &p,
        &desired,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    let at = |h: &str| {
        lab.sh(h, &format!("cat {ROOT}/stamp"))
            .parse::<u128>()
            .unwrap()
    };
    let first_done = at(&hosts[0]);
    for h in &hosts[1..] {
        // Each later command slept 0.5 s before stamping, after the first step had finished.
        assert!(
            at(h) > first_done + 400_000_000,
            "{h} ran before step first finished"
        );
    }

    for h in &hosts {
        lab.sh(h, &format!("rm -rf {ROOT}"));
    }
    let broken = DesiredState::new(&hosts[0]).with(Resource::command(
        "fail",
        "echo 'first step broke' >&2; exit 1",
        Guard::Unless("false".into()),
    ));
    // The later hosts each want a new file: an apply that does not ask
    // locks them while planning, and must release them although their step
    // never runs.
    let with_file = |h: &str| {
        stamp(h, &write).with(
            Resource::file(format!("{ROOT}/conf"), Content::text("x\n"))
                .depends_on(format!("dir:{ROOT}")),
        )
    };
    let rollout = Rollout::single("first", vec![broken]).then(Step::new(
        "others",
        vec![with_file(&hosts[1]), with_file(&hosts[2])],
    ));
    let desired = rollout.resolve().await.unwrap();
    let opts = ApplyOptions {
        verify_first: false,
        ..Default::default()
    };
    let (_, report) = k8sup_engine::plan_and_apply(&desired, &sessions, &opts, &NoProgress)
        .await
        .unwrap();
    assert!(
        report
            .host(&hosts[0])
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("first step broke")
    );
    for h in &hosts[1..] {
        let r = report.host(h).unwrap();
        assert_eq!((r.changed, r.not_run), (0, 3), "{r:?}");
        assert!(
            r.error
                .as_deref()
                .unwrap()
                .contains("step \"first\" failed"),
            "{r:?}"
        );
        assert_eq!(
            lab.sh(
                h,
                &format!(
                    "ls {ROOT} 2>/dev/null || echo untouched; ls /var/lib/k8sup/run.lock 2>/dev/null || echo unlocked"
                )
            ),
            "untouched\nunlocked"
        );
    }
}

/// Logged in as an ordinary user with passwordless sudo: observation, scripts
/// fed on stdin (large configs), streamed uploads and installs all run as root.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn works_through_sudo_for_a_non_root_login() {
    use k8sup_engine::{Content, DesiredState, Resource, Rollout};
    require_root();
    let _serial = SERIAL.lock().await;
    let lab = TestLab::up("eng-sudo", 1);
    let host = lab.hosts()[0].clone();
    lab.sh(
        &host,
        "useradd -m -s /bin/bash deploy && install -d -o deploy -m 700 /home/deploy/.ssh \
         && install -o deploy -m 600 /root/.ssh/authorized_keys /home/deploy/.ssh/authorized_keys \
         && echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy && chmod 440 /etc/sudoers.d/deploy",
    );
    let mut spec = lab.spec(&host);
    spec.user = Some("deploy".into());
    spec.sudo = k8sup_ssh::Sudo::Passwordless;
    let session = k8sup_ssh::Session::connect(&spec).await.unwrap();
    let sessions = k8sup_engine::Sessions::from([(host.clone(), session)]);
    let dir = tempfile::tempdir().unwrap();
    let bin = blob(dir.path(), "tool", 3, 12);
    // Over the 60 KiB inline limit: this script travels on stdin.
    let big: String = (0..4000)
        .map(|i| format!("line {i} of a large config\n"))
        .collect();
    let desired = Rollout::single(
        "sudo",
        vec![
            DesiredState::new(&host)
                .with(Resource::directory("/opt/eng").mode(0o750))
                .with(Resource::binary("/opt/eng/tool", &bin).mode(0o755))
                .with(Resource::file(
                    "/opt/eng/big.conf",
                    Content::text(big.clone()),
                ))
                .with(Resource::unit(
                    "eng-sudo.service",
                    Content::text("[Service]\nExecStart=/bin/sleep infinity\n"),
                ))
                .with(Resource::service("eng-sudo.service").enabled(false)),
        ],
    )
    .resolve()
    .await
    .unwrap();
    let p = plan(&desired, &sessions, 10).await.unwrap();
    let report = apply(
        &p,
        &desired,
        &sessions,
        &ApplyOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(
        lab.sh(
            &host,
            "stat -c '%U %a' /opt/eng /opt/eng/tool /opt/eng/big.conf"
        ),
        "root 750\nroot 755\nroot 644"
    );
    assert_eq!(lab.sh(&host, "wc -l < /opt/eng/big.conf"), "4000");
    assert_eq!(
        lab.sh(&host, "systemctl is-active eng-sudo.service"),
        "active"
    );
    assert!(!plan(&desired, &sessions, 10).await.unwrap().has_changes());
}

/// Without a verification pass (`apply -i --yes`), a host's first stream
/// takes the lock and checks for drift before its bytes. Another run's lock
/// or a host changed since the plan stops that host before any change: no
/// directory created, no temp file left, every action reported not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_stream_refuses_a_locked_or_drifted_host_before_any_change() {
    require_root();
    let _serial = SERIAL.lock().await;
    let Demo {
        lab,
        sessions,
        hosts,
        desired,
        ..
    } = Demo::up("eng-lead", 3, 8, 6).await;
    let p = plan(&desired, &sessions, 10).await.unwrap();
    // After the plan: another run locks host 0; host 1 changes.
    lab.sh(
        &hosts[0],
        "mkdir -p /var/lib/k8sup && printf 'run=other-run\\nworkstation=elsewhere\\npid=4242\\nstarted=1\\n' > /var/lib/k8sup/run.lock",
    );
    lab.sh(&hosts[1], &format!("mkdir -p {ROOT}/demo"));
    let opts = ApplyOptions {
        verify_first: false,
        ..Default::default()
    };
    let report = apply(&p, &desired, &sessions, &opts, &NoProgress)
        .await
        .unwrap();
    let r0 = report.host(&hosts[0]).unwrap();
    let e0 = r0.error.as_deref().unwrap_or_default();
    assert!(
        e0.contains("took the lock first") && e0.contains("other-run"),
        "{r0:?}"
    );
    let r1 = report.host(&hosts[1]).unwrap();
    assert!(
        r1.error
            .as_deref()
            .unwrap_or_default()
            .contains("changed since the plan was made"),
        "{r1:?}"
    );
    for r in [r0, r1] {
        assert_eq!((r.changed, r.not_run), (0, 10), "{r:?}");
    }
    assert_eq!(
        lab.sh(
            &hosts[0],
            &format!("ls -A {ROOT} 2>/dev/null; cat /var/lib/k8sup/run.lock | head -1")
        ),
        "run=other-run",
        "nothing created on the locked host, and its lock is untouched"
    );
    assert_eq!(
        lab.sh(
            &hosts[1],
            &format!("ls -A {ROOT}/demo; ls /var/lib/k8sup/run.lock 2>/dev/null || echo unlocked")
        ),
        "unlocked",
        "no temp file and no lock left on the drifted host"
    );
    // Host 2 was neither: it got everything.
    let r2 = report.host(&hosts[2]).unwrap();
    assert!(r2.error.is_none() && r2.changed == 10, "{r2:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_apply_that_does_not_ask_locks_hosts_certain_to_change_while_observing() {
    require_root();
    let _serial = SERIAL.lock().await;
    let Demo {
        lab,
        sessions,
        hosts,
        bin,
        desired,
        ..
    } = Demo::up("eng-claim", 2, 4, 7).await;
    let lock_of = |h: &str| {
        lab.sh(
            h,
            "head -1 /var/lib/k8sup/run.lock 2>/dev/null || echo unlocked",
        )
    };

    // New hosts: the observation itself takes each lock for this run.
    let me = k8sup_engine::RunIdentity::new();
    let (p, claimed) = k8sup_engine::plan_claiming(&desired, &sessions, 10, &me)
        .await
        .unwrap();
    assert_eq!(claimed.iter().cloned().collect::<Vec<_>>(), {
        let mut h = hosts.clone();
        h.sort();
        h
    });
    for h in &hosts {
        assert_eq!(lock_of(h), format!("run={}", me.holder.run_id));
        let hp = p.steps[0].hosts.iter().find(|x| &x.host == h).unwrap();
        assert_eq!(
            hp.locked_by, None,
            "our own lock is not shown as another run's"
        );
    }
    // Another run planning now sees the hosts locked and claims nothing.
    let other = k8sup_engine::RunIdentity::new();
    let (p2, claimed2) = k8sup_engine::plan_claiming(&desired, &sessions, 10, &other)
        .await
        .unwrap();
    assert!(claimed2.is_empty(), "{claimed2:?}");
    assert!(
        p2.steps[0].hosts.iter().all(|h| h
            .locked_by
            .as_deref()
            .is_some_and(|l| l.contains(&me.holder.run_id))),
        "{p2:?}"
    );
    // An apply that does not follow releases them.
    k8sup_engine::release_claims(&sessions, &claimed, &me).await;
    for h in &hosts {
        assert_eq!(lock_of(h), "unlocked");
    }

    // An apply refused before it starts (the inputs changed since the plan)
    // releases what its plan locked.
    let (p, claimed) = k8sup_engine::plan_claiming(&desired, &sessions, 10, &me)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let changed = workload(&lab, &bin, &ports(&hosts[0], 9191))
        .resolve()
        .await
        .unwrap();
    let opts = ApplyOptions {
        verify_first: false,
        claimed: claimed.clone(),
        identity: me.clone(),
        ..Default::default()
    };
    let refused = apply(&p, &changed, &sessions, &opts, &NoProgress).await;
    assert!(
        matches!(refused, Err(EngineError::PlanMismatch { .. })),
        "{refused:?}"
    );
    for h in &hosts {
        assert_eq!(lock_of(h), "unlocked");
    }

    // The real thing: claimed hosts are changed without a second look, and
    // their locks are gone afterwards.
    let (p, claimed) = k8sup_engine::plan_claiming(&desired, &sessions, 10, &me)
        .await
        .unwrap();
    let opts = ApplyOptions {
        verify_first: false,
        claimed,
        identity: me.clone(),
        ..Default::default()
    };
    let report = apply(&p, &desired, &sessions, &opts, &NoProgress)
        .await
        .unwrap();
    assert!(report.ok(), "{report:?}");
    for h in &hosts {
        assert_eq!(report.host(h).unwrap().changed, 10);
        assert_eq!(lock_of(h), "unlocked");
    }

    // Nothing to change: nothing is locked, nothing is written (the lock's
    // directory is not even touched).
    let before = lab.sh(&hosts[0], "stat -c %y /var/lib/k8sup");
    let (p, claimed) = k8sup_engine::plan_claiming(&desired, &sessions, 10, &me)
        .await
        .unwrap();
    assert!(!p.has_changes() && claimed.is_empty(), "{claimed:?}");
    assert_eq!(lab.sh(&hosts[0], "stat -c %y /var/lib/k8sup"), before);

    // A host missing one of its files is locked; one that also holds another
    // run's (stale) lock is left alone: the lock is neither taken over nor
    // broken here (that is `ApplyOptions::break_stale_lock`'s job, with its own check).
    for h in &hosts {
        lab.sh(h, &format!("rm -f {ROOT}/demo/conf.d/app.conf"));
    }
    lab.sh(
        &hosts[1],
        "printf 'run=dead-run\\nworkstation=elsewhere\\npid=1\\nstarted=1\\n' > /var/lib/k8sup/run.lock",
    );
    let (_, claimed) = k8sup_engine::plan_claiming(&desired, &sessions, 10, &me)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().cloned().collect::<Vec<_>>(),
        vec![hosts[0].clone()]
    );
    assert_eq!(lock_of(&hosts[1]), "run=dead-run");
    k8sup_engine::release_claims(&sessions, &claimed, &me).await;
    assert_eq!(lock_of(&hosts[0]), "unlocked");
}
