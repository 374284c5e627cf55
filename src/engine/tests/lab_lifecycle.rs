//! What only a real host shows of phases, probes and removal: systemd. A
//! phased run over SSH installs the demo service behind a health probe,
//! then a later run removes one host (service stopped and disabled before
//! its unit file goes, everything else deleted), idempotently. Needs root
//! (it boots lab machines); the rest of these features is tested without
//! root in `local.rs`.

// Phase closures return the engine's error, which is large by design (see lib.rs).
#![allow(clippy::result_large_err)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use k8sup_engine::{
    ActionKind, ApplyOptions, DesiredState, NoProgress, PhasedReport, Phases, PrintOptions,
    ProbeCheck, Resource, Step, apply_phases, phase, plan_phases, print,
};

fn healthy(d: DesiredState) -> DesiredState {
    d.with(
        Resource::probe(
            "demo-up",
            ProbeCheck::Command(format!("systemctl is-active {UNIT}")),
            Duration::from_secs(30),
            Duration::from_millis(200),
        )
        .depends_on(format!("service:{UNIT}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_phased_install_behind_a_probe_then_one_host_removed() {
    require_root();
    let _serial = SERIAL.lock().await;
    let Demo {
        lab,
        sessions,
        hosts,
        bin,
        ..
    } = Demo::up("eng-phase", 2, 2, 8).await;
    let states: Vec<DesiredState> = workload(&lab, &bin, &BTreeMap::new()).steps[0]
        .hosts
        .clone();
    let gone = hosts[1].clone();
    let run = |remove: bool| {
        let (install, removal) = (states.clone(), states.clone());
        let gone = gone.clone();
        let gone2 = gone.clone();
        Phases::new(hosts.clone())
            .facts_probe(format!("echo unit=$(systemctl is-active {UNIT})"))
            .then(phase("install", move |_| {
                Ok(vec![Step::new(
                    "all",
                    install
                        .iter()
                        .filter(|d| !(remove && d.host == gone))
                        .cloned()
                        .map(healthy)
                        .collect(),
                )])
            }))
            .then(
                phase("remove", move |_| {
                    Ok(vec![Step::new(
                        "gone",
                        removal
                            .iter()
                            .filter(|d| d.host == gone2)
                            .map(DesiredState::removal)
                            .collect(),
                    )])
                })
                .when(move |_| remove),
            )
    };
    let apply_all = async |phases: &Phases| -> PhasedReport {
        let p = plan_phases(phases, &sessions).await.unwrap();
        println!("{}", print::render_phased(&p, &PrintOptions::default()));
        let r = apply_phases(phases, &p, &sessions, &ApplyOptions::default(), &NoProgress)
            .await
            .unwrap();
        assert!(r.ok(), "{r:?}");
        r
    };

    let phases = run(false);
    let p = plan_phases(&phases, &sessions).await.unwrap();
    assert_eq!(p.facts[&hosts[0]].get("unit"), Some("inactive"));
    let waits: Vec<_> = p.phases[0]
        .steps
        .iter()
        .flat_map(|s| &s.hosts)
        .map(|h| h.actions.last().unwrap().kind)
        .collect();
    assert_eq!(
        waits,
        [ActionKind::Wait, ActionKind::Wait],
        "the probe gates the end"
    );
    let r = apply_all(&phases).await;
    assert!(r.changed() > 0);
    for h in &hosts {
        assert_eq!(lab.sh(h, &format!("systemctl is-active {UNIT}")), "active");
    }
    // Converged: nothing to do, no probe re-run.
    let p = plan_phases(&phases, &sessions).await.unwrap();
    assert!(!p.has_changes(), "{}", p.to_json());
    assert_eq!(p.facts[&hosts[0]].get("unit"), Some("active"));

    // Remove the second host.
    let phases = run(true);
    let p = plan_phases(&phases, &sessions).await.unwrap();
    let text = print::render_phased(&p, &PrintOptions::default());
    assert!(text.contains(&format!("  - unit:{UNIT}")), "{text}");
    assert!(text.contains(&format!("  - dir:{ROOT}/demo")), "{text}");
    apply_all(&phases).await;
    let sh = |cmd: &str| lab.sh(&gone, &format!("{cmd}; true"));
    assert_eq!(sh(&format!("systemctl is-active {UNIT}")), "inactive");
    assert_eq!(
        sh(&format!("test -e /etc/systemd/system/{UNIT} && echo there")),
        ""
    );
    assert_eq!(sh(&format!("test -e {ROOT}/demo && echo there")), "");
    assert_eq!(
        sh(&format!("systemctl show -p LoadState --value {UNIT}")),
        "not-found",
        "systemd forgot the unit in the same run"
    );
    assert_eq!(
        lab.sh(&hosts[0], &format!("systemctl is-active {UNIT}")),
        "active"
    );
    let p = plan_phases(&phases, &sessions).await.unwrap();
    assert!(!p.has_changes(), "removal is idempotent: {}", p.to_json());
}
