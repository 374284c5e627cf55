//! Crash recovery and coexistence: a lab whose processes were killed -9 with
//! mounts, namespaces and links left behind is repaired by the next `up` and
//! removed by `down`; two labs brought up at once get separate subnets.

mod common;

use std::collections::HashSet;

use common::{Cleanup, leftovers, nspawn_pids, ssh};
use k8sup_lab::{Lab, MachineState, UpOptions};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn kill_nspawns(name: &str) {
    for pid in nspawn_pids(name) {
        kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
}

#[test]
fn crashed_lab_is_repaired_by_up_and_removed_by_down() {
    common::require_root();
    let a = Lab::new("t-lab-crash-a");
    let b = Lab::new("t-lab-crash-b");
    let _ = a.down();
    let _ = b.down();
    let _ca = Cleanup(&a);
    let _cb = Cleanup(&b);

    // Two labs at once, from two threads: both come up, on different subnets.
    let opts = UpOptions {
        nodes: 2,
        ..Default::default()
    };
    let (ia, ib) = std::thread::scope(|s| {
        let ha = s.spawn(|| a.up(&opts));
        let hb = s.spawn(|| b.up(&opts));
        (
            ha.join().unwrap().expect("up a"),
            hb.join().unwrap().expect("up b"),
        )
    });
    assert_ne!(ia.subnet, ib.subnet);
    let addrs: HashSet<_> = ia
        .machines
        .iter()
        .chain(&ib.machines)
        .map(|m| m.address)
        .collect();
    assert_eq!(addrs.len(), 4);

    // Crash: nspawn killed -9; its container, mounts, netns and veths stay.
    let old = nspawn_pids("t-lab-crash-a");
    kill_nspawns("t-lab-crash-a");
    assert!(lab_states(&a).iter().all(|s| *s == MachineState::Stopped));
    assert!(
        !leftovers("t-lab-crash-a", 2).is_empty(),
        "the crash should leave things behind"
    );

    let again = a.up(&opts).expect("up after crash");
    assert_eq!(again.machines, ia.machines);
    let new = nspawn_pids("t-lab-crash-a");
    assert_eq!(new.len(), 2);
    assert!(
        new.iter().all(|p| !old.contains(p)),
        "old nspawn pids still around"
    );
    assert_eq!(ssh(&a, "t-lab-crash-a-2", "hostname"), "t-lab-crash-a-2");
    // The other lab did not notice.
    assert_eq!(ssh(&b, "1", "hostname"), "t-lab-crash-b-1");

    // Crash again, then down: nothing may stay.
    kill_nspawns("t-lab-crash-a");
    a.down().expect("down after crash");
    assert_eq!(leftovers("t-lab-crash-a", 2), Vec::<String>::new());
    b.down().expect("down b");
    assert_eq!(leftovers("t-lab-crash-b", 2), Vec::<String>::new());
}

fn lab_states(lab: &Lab) -> Vec<MachineState> {
    lab.status().unwrap().into_iter().map(|s| s.state).collect()
}
