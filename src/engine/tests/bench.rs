//! The benchmark workload on 10 lab machines, against the physical
//! floor (a raw parallel OpenSSH `cat > file` push of the same 50 MB binary),
//! measured in the same run. Ignored by default (it boots 10 machines):
//! `cargo test -p k8sup-engine --test bench -- --ignored --nocapture`.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use k8sup_engine::{ApplyOptions, Sessions, apply, plan};

/// Records when each host finished its upload and its step.
struct Timeline {
    start: Instant,
    marks: std::sync::Mutex<Vec<String>>,
}

impl k8sup_engine::Progress for Timeline {
    fn event(&self, e: k8sup_engine::Event<'_>) {
        let at = self.start.elapsed();
        let m = match e {
            k8sup_engine::Event::Upload {
                host, sent, total, ..
            } if sent == total => format!("{at:.2?} {host} uploaded"),
            k8sup_engine::Event::HostFinished { host, ok, .. } => {
                format!("{at:.2?} {host} finished ok={ok}")
            }
            k8sup_engine::Event::StepStarted { .. } => format!("{at:.2?} step started"),
            _ => return,
        };
        self.marks.lock().unwrap().push(m);
    }
}

async fn connect(lab: &TestLab) -> Sessions {
    let specs = lab.hosts().iter().map(|h| lab.spec(h)).collect();
    k8sup_ssh::connect_all(specs, 10)
        .await
        .into_iter()
        .map(|(h, s)| (h, s.expect("connect")))
        .collect()
}

fn raw_push(lab: &TestLab, blob: &std::path::Path, dest: &str) -> Duration {
    let t = Instant::now();
    let children: Vec<_> = lab
        .hosts()
        .iter()
        .map(|h| {
            let mut c = lab.lab.ssh_command(h).unwrap();
            c.arg(format!("cat > {dest}"))
                .stdin(std::fs::File::open(blob).unwrap());
            c.spawn().unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "boots 10 machines; run explicitly"]
async fn benchmark_ten_hosts() {
    require_root();
    let _serial = SERIAL.lock().await;
    let nodes: usize = std::env::var("ENG_BENCH_NODES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);
    let lab = TestLab::up("eng-bench", nodes);
    let dir = tempfile::tempdir().unwrap();
    let bin = blob(dir.path(), "demo-bin", 50, 9);
    let s = connect(&lab).await;
    // Warm the machines' page cache and sshd the same way for both sides.
    for h in lab.hosts() {
        lab.sh(&h, "true");
    }
    let _ = s;

    let raw = raw_push(&lab, &bin, "/root/raw.bin");

    // As `k8sup apply --yes` should: hash and render while connecting; the plan
    // is applied moments after it was made, so each host's drift check is the
    // one under its lock.
    let t = Instant::now();
    let rollout = workload(&lab, &bin, &BTreeMap::new());
    let (sessions, desired) = tokio::join!(connect(&lab), rollout.resolve());
    let desired = desired.unwrap();
    let connected = t.elapsed();
    let resolved = connected;
    let p = plan(&desired, &sessions, 10).await.unwrap();
    let planned = t.elapsed();
    let timeline = Timeline {
        start: Instant::now(),
        marks: Default::default(),
    };
    let opts = ApplyOptions {
        verify_first: false,
        ..Default::default()
    };
    let report = apply(&p, &desired, &sessions, &opts, &timeline)
        .await
        .unwrap();
    let first = t.elapsed();
    for m in timeline.marks.lock().unwrap().iter() {
        println!("  {m}");
    }
    assert!(report.ok(), "{report:?}");

    let raw2 = raw_push(&lab, &bin, "/root/raw2.bin");

    // As the CLI should: hash and render while the connections are made.
    let t = Instant::now();
    let rollout = workload(&lab, &bin, &BTreeMap::new());
    let (sessions, desired) = tokio::join!(connect(&lab), rollout.resolve());
    let desired = desired.unwrap();
    let connected2 = t.elapsed();
    let p = plan(&desired, &sessions, 10).await.unwrap();
    assert!(!p.has_changes());
    let noop = t.elapsed();

    println!("hosts: {nodes}");
    println!("raw parallel OpenSSH push of 50 MB: {raw:.2?} (again after: {raw2:.2?})");
    println!(
        "k8sup first apply: {first:.2?} (connect and resolve {connected:.2?}, observe+plan {:.2?}, apply {:.2?}); ratio to raw {:.2}",
        planned - resolved,
        first - planned,
        first.as_secs_f64() / raw.min(raw2).as_secs_f64()
    );
    println!(
        "k8sup no-op re-apply: {noop:.3?} (connect and resolve {connected2:.3?}, observe+plan {:.3?})",
        noop - connected2
    );
}
