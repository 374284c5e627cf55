//! The speed targets: 3 machines in under 15 s and 10 in under 30 s once the
//! root is cached. Ignored by default (it boots 13 machines and timing on a
//! busy CI host is noisy); run with
//! `cargo test -p k8sup-lab --test perf -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::{Cleanup, leftovers};
use k8sup_lab::{Lab, UpOptions};

fn timed_up(name: &str, nodes: usize, limit: Duration) {
    let lab = Lab::new(name);
    let _ = lab.down();
    let _cleanup = Cleanup(&lab);
    // Build the cache outside the measurement.
    assert!(
        k8sup_lab::root_is_cached(),
        "run `k8sup lab up` once first to build the cached root"
    );
    let started = Instant::now();
    lab.up(&UpOptions {
        nodes,
        ..Default::default()
    })
    .expect("up");
    let took = started.elapsed();
    eprintln!("{nodes} machines answer SSH after {took:?}");
    assert!(
        took < limit,
        "{nodes} machines took {took:?}, over {limit:?}"
    );
    let down = Instant::now();
    lab.down().expect("down");
    eprintln!("down of {nodes} machines took {:?}", down.elapsed());
    assert!(leftovers(name, nodes as u32).is_empty());
}

#[test]
#[ignore = "boots 13 machines; run explicitly"]
fn three_machines_under_15s() {
    common::require_root();
    timed_up("t-lab-perf3", 3, Duration::from_secs(15));
}

#[test]
#[ignore = "boots 13 machines; run explicitly"]
fn ten_machines_under_30s() {
    common::require_root();
    timed_up("t-lab-perf10", 10, Duration::from_secs(30));
}
