//! End to end on lab machines: `k8sup plan` and `k8sup apply` driven from an
//! inventory's `files:`, `services:` and `commands:`, as a user runs them.

mod common;

use std::path::{Path, PathBuf};

use common::{TestLab, k8sup, text};
use serde_json::Value;

const TEMPLATE: &str = "listen={{ vars.port | default(8080) }}\npeers={{ inventory.hosts | map(attribute='address') | join(',') }}\n";

/// A lab with a workload inventory: a directory, a 4 MB binary, a config
/// rendered from a template listing every host's address, a unit and its
/// service (restarted when the binary or config changes), and a guarded
/// command. `port` is the template variable of host 2.
fn workload(lab: &TestLab, file: &str, port: Option<u16>, extra: &str) -> PathBuf {
    let dir = lab.inventory().parent().unwrap().join("demo");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("demo.conf.j2"), TEMPLATE).unwrap();
    let bin = dir.join("demo.bin");
    if !bin.exists() {
        let blob: Vec<u8> = (0..4 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        std::fs::write(&bin, blob).unwrap();
    }
    let body = format!(
        "files:
  - {{ path: /opt/demo, type: directory }}
  - {{ path: /opt/demo/demo.bin, src: demo/demo.bin, mode: '0755', notify: [demo] }}
  - {{ path: /etc/demo.conf, template: demo/demo.conf.j2, notify: [demo] }}
services:
  - name: demo
    unit:
      content: |
        [Unit]
        Description=k8sup e2e demo
        [Service]
        ExecStart=/bin/sleep infinity
        [Install]
        WantedBy=multi-user.target
commands:
  - {{ name: init, run: 'touch /opt/demo/.init', creates: /opt/demo/.init }}
{extra}"
    );
    let path = lab.custom_inventory(file, "", |i| match (i, port) {
        (1, Some(p)) => format!("    vars: {{ port: {p} }}\n"),
        _ => String::new(),
    });
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&body);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = k8sup(args);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

fn plan_json(inv: &Path) -> Value {
    let (code, out, err) = run(&["plan", "-i", inv.to_str().unwrap(), "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn apply_json(inv: &Path) -> Value {
    let (code, out, err) = run(&["apply", "-i", inv.to_str().unwrap(), "--yes", "-o", "json"]);
    assert_eq!(code, 0, "apply failed: {out}\n{err}");
    serde_json::from_str(&out).unwrap()
}

/// (resource, kind) of every planned action of `host`.
fn planned(plan: &Value, host: &str) -> Vec<(String, String)> {
    plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["hosts"].as_array().unwrap().iter())
        .filter(|h| h["host"] == host)
        .flat_map(|h| h["actions"].as_array().unwrap().iter())
        .map(resource_and_kind)
        .collect()
}

/// (resource, kind) of a planned or executed action: the two documents
/// name actions alike, which is what lets the test hold them equal.
fn resource_and_kind(a: &Value) -> (String, String) {
    (
        a["resource"].as_str().unwrap().to_string(),
        a["kind"].as_str().unwrap().to_string(),
    )
}

fn executed(report: &Value, host: &str) -> Vec<(String, String)> {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["host"] == host)
        .flat_map(|h| h["executed"].as_array().unwrap().iter())
        .map(resource_and_kind)
        .collect()
}

/// What a user would look at to see whether a host was touched: inode and
/// mtime of every managed file, and when the service last started.
fn fingerprint(lab: &TestLab, i: usize) -> String {
    lab.root(
        i,
        "stat -c '%n %i %Y %a' /opt/demo /opt/demo/demo.bin /etc/demo.conf /etc/systemd/system/demo.service /opt/demo/.init; \
         systemctl show -p ActiveEnterTimestampMonotonic -p ActiveState demo",
    )
}

#[test]
fn apply_creates_everything_then_a_second_apply_changes_nothing() {
    let lab = TestLab::up("e2e-apply", 3);
    let inv = workload(&lab, "work.yaml", None, "");
    let plan = plan_json(&inv);
    assert!(
        plan["summary"]["create"].as_u64().unwrap() >= 3 * 5,
        "{plan}"
    );

    let report = apply_json(&inv);
    assert_eq!(report["ok"], true);
    for i in 0..3 {
        let host = lab.node(i);
        // Honest: what the plan listed is what apply did, no more, no less.
        let mut p = planned(&plan, &host);
        let mut e = executed(&report, &host);
        p.sort();
        e.sort();
        assert_eq!(p, e, "plan and apply differ on {host}");
        assert_eq!(
            lab.root(i, "systemctl is-active demo; systemctl is-enabled demo"),
            "active\nenabled\n"
        );
        let peers: Vec<String> = (0..3).map(|j| lab.address(j)).collect();
        assert_eq!(
            lab.root(i, "cat /etc/demo.conf"),
            format!("listen=8080\npeers={}\n", peers.join(","))
        );
        assert_eq!(lab.root(i, "stat -c %a /opt/demo/demo.bin").trim(), "755");
    }

    let before: Vec<String> = (0..3).map(|i| fingerprint(&lab, i)).collect();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = run(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("No changes."), "{out}");
    let after: Vec<String> = (0..3).map(|i| fingerprint(&lab, i)).collect();
    assert_eq!(
        before, after,
        "a no-op apply rewrote a file or restarted a service"
    );
    let (code, _, _) = run(&["plan", "-i", inv.to_str().unwrap(), "--detailed-exitcode"]);
    assert_eq!(code, 0, "--detailed-exitcode: 0 means no changes");
}

#[test]
fn a_changed_template_variable_updates_exactly_that_file_and_restarts_its_service_once() {
    let lab = TestLab::up("e2e-tvar", 2);
    let inv = workload(&lab, "work.yaml", None, "");
    apply_json(&inv);
    let untouched = fingerprint(&lab, 0);
    let changed = workload(&lab, "work-9090.yaml", Some(9090), "");

    let (code, out, _) = run(&[
        "plan",
        "-i",
        changed.to_str().unwrap(),
        "--detailed-exitcode",
        "--color",
        "never",
    ]);
    assert_eq!(code, 2, "changes pending: {out}");
    assert!(
        out.contains(&format!("{}: no changes", lab.node(0))),
        "{out}"
    );
    assert!(
        out.contains("~ file:/etc/demo.conf")
            && out.contains("-listen=8080")
            && out.contains("+listen=9090"),
        "{out}"
    );
    let plan = plan_json(&changed);
    assert_eq!(
        planned(&plan, &lab.node(1)),
        vec![
            ("file:/etc/demo.conf".into(), "update".into()),
            ("service:demo.service".into(), "restart".into())
        ]
    );
    assert!(planned(&plan, &lab.node(0)).is_empty());

    let started = lab.root(1, "systemctl show -p ActiveEnterTimestampMonotonic demo");
    let report = apply_json(&changed);
    assert_eq!(
        executed(&report, &lab.node(1)),
        planned(&plan, &lab.node(1))
    );
    assert_ne!(
        lab.root(1, "systemctl show -p ActiveEnterTimestampMonotonic demo"),
        started,
        "restarted"
    );
    assert!(
        lab.root(1, "cat /etc/demo.conf")
            .starts_with("listen=9090\n")
    );
    assert_eq!(
        fingerprint(&lab, 0),
        untouched,
        "the other host was not touched"
    );
}

#[test]
fn a_saved_plan_is_refused_when_a_host_drifted_and_applied_when_not() {
    let lab = TestLab::up("e2e-drift", 1);
    let inv = workload(&lab, "work.yaml", None, "");
    let saved = inv.with_file_name("plan.json");
    let (code, _, err) = run(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        "--out",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    // Someone changes the host behind k8sup's back.
    lab.root(0, "mkdir -p /opt/demo && echo drift > /opt/demo/demo.bin");
    let (code, out, err) = run(&["apply", saved.to_str().unwrap(), "--yes"]);
    assert_ne!(code, 0, "a drifted host must refuse the saved plan: {out}");
    assert!(
        err.contains(&lab.node(0)) && err.to_lowercase().contains("changed since"),
        "{err}"
    );
    assert_eq!(
        lab.root(0, "cat /opt/demo/demo.bin"),
        "drift\n",
        "nothing was applied"
    );

    let (code, _, err) = run(&[
        "plan",
        "-i",
        inv.to_str().unwrap(),
        "--out",
        saved.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["apply", saved.to_str().unwrap(), "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lab.root(0, "systemctl is-active demo").trim(), "active");
}

/// Starts `k8sup apply -i INV --yes` in the background and returns once it
/// holds the run lock on the lab's first host.
fn apply_holding_the_lock(lab: &TestLab, inv: &Path) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_k8sup"))
        .args(["apply", "-i", inv.to_str().unwrap(), "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while lab
        .root(0, "test -e /var/lib/k8sup/run.lock && echo held || true")
        .trim()
        != "held"
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the apply never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child
}

#[test]
fn a_second_concurrent_apply_is_refused_by_the_lock() {
    let lab = TestLab::up("e2e-lock", 1);
    // A slow command keeps the first apply (and its lock) busy for a while.
    let inv = workload(
        &lab,
        "work.yaml",
        None,
        "  - { name: slow, run: 'sleep 6; touch /opt/demo/.slow', creates: /opt/demo/.slow }\n",
    );
    let first = apply_holding_the_lock(&lab, &inv);
    let (code, out, err) = run(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_ne!(code, 0, "{out}");
    let all = format!("{out}{err}");
    assert!(all.contains("lock"), "names the lock: {all}");
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "the first apply finishes: {}",
        text(&first.stderr)
    );
    let (code, out, _) = run(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(code, 0);
    assert!(out.contains("No changes."), "{out}");
}

#[test]
fn ctrl_c_while_planning_releases_the_locks_taken_and_changes_nothing() {
    let lab = TestLab::up("e2e-int", 1);
    // A slow guard keeps the observation (which takes the lock of this new
    // host for `apply --yes`) busy for a while.
    let inv = workload(
        &lab,
        "work.yaml",
        None,
        "  - { name: slowcheck, run: 'true', unless: 'sleep 4; false' }\n",
    );
    let child = apply_holding_the_lock(&lab, &inv);
    // Ctrl-C, as a terminal sends it.
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(
        lab.root(
            0,
            "ls /var/lib/k8sup/run.lock 2>/dev/null || echo unlocked; ls /opt/demo 2>/dev/null || echo absent"
        )
        .trim(),
        "unlocked\nabsent",
        "the lock released and nothing created"
    );
    // And the next apply goes ahead, with no stale lock to break.
    let (code, out, err) = run(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_failing_command_is_reported_by_host_with_its_stderr_and_other_hosts_finish() {
    let lab = TestLab::up("e2e-fail", 2);
    let inv = workload(
        &lab,
        "work.yaml",
        None,
        "  - { name: breaks, run: 'echo cannot-frobnicate-the-widget >&2; exit 3', creates: /nonexistent, hosts: [e2e-fail-2] }\n",
    );
    let (code, out, err) = run(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("e2e-fail-2") && all.contains("cannot-frobnicate-the-widget"),
        "{all}"
    );
    assert_eq!(
        lab.root(0, "systemctl is-active demo").trim(),
        "active",
        "the healthy host finished"
    );
}

/// Apply the lab's inventory plus one service `name` whose unit's
/// `[Service]` section is `service_lines`: the inventory, exit code, and
/// stdout + stderr.
fn apply_one_service(
    lab: &TestLab,
    name: &str,
    service_lines: &[&str],
) -> (std::path::PathBuf, i32, String) {
    let inv = lab.custom_inventory(&format!("{name}.yaml"), "", |_| String::new());
    let mut text = std::fs::read_to_string(&inv).unwrap();
    text.push_str(&format!(
        "services:\n  - name: {name}\n    unit:\n      content: |\n        [Service]\n"
    ));
    for line in service_lines {
        text.push_str(&format!("        {line}\n"));
    }
    std::fs::write(&inv, text).unwrap();
    let (code, out, err) = run(&["apply", "-i", inv.to_str().unwrap(), "--yes"]);
    (inv, code, format!("{out}{err}"))
}

#[test]
fn a_service_whose_binary_is_missing_fails_the_apply_instead_of_passing_unseen() {
    let lab = TestLab::up("e2e-unit", 1);
    let (inv, code, all) = apply_one_service(
        &lab,
        "broken",
        &[
            "ExecStart=/usr/local/bin/not-installed-yet",
            "Restart=on-failure",
        ],
    );
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("e2e-unit-1") && all.contains("broken.service did not stay up"),
        "{all}"
    );
    assert!(
        all.contains("203/EXEC"),
        "systemd's own reason is shown: {all}"
    );
    // The crash loop is visible in a plan, not taken for a running service.
    // A plan that lands in the instant systemd starts the next attempt (a
    // fresh activation, nothing failed yet) cannot tell; the next one can.
    let mut plans = Vec::new();
    for _ in 0..5 {
        let (code, out, _) = run(&["plan", "-i", inv.to_str().unwrap(), "--detailed-exitcode"]);
        if code == 2 && out.contains("start (crash loop") {
            return;
        }
        plans.push(out);
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    panic!("five plans in a row took the crash-looping service for a running one: {plans:?}");
}

/// A service that starts, runs a moment and dies is restarted by systemd
/// (Restart=always); `systemctl start` succeeded and a single look may find it
/// `active` again. The apply must still see that it did not stay up.
#[test]
fn a_service_that_dies_after_starting_and_is_restarted_by_systemd_fails_the_apply() {
    let lab = TestLab::up("e2e-flaky", 1);
    let (_, code, all) = apply_one_service(
        &lab,
        "flaky",
        &[
            "ExecStart=/bin/sh -c 'sleep 0.1; exit 3'",
            "Restart=always",
            "RestartSec=10ms",
            "StartLimitIntervalSec=0",
        ],
    );
    assert_eq!(code, 1, "{all}");
    assert!(
        all.contains("e2e-flaky-1") && all.contains("flaky.service did not stay up"),
        "{all}"
    );
}
