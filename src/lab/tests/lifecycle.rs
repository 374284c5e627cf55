//! A lab's whole life on real machines: up, idempotent up, status, the fault
//! controls (stop/start, partition/heal) and a clean down.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{Cleanup, leftovers, nspawn_pids, ssh, wait_answers};
use k8sup_lab::{Lab, MachineState, Role, UpOptions, answers_ssh};

#[test]
fn three_machines_live_fail_recover_and_go() {
    common::require_root();
    let lab = Lab::new("t-lab-life");
    let _ = lab.down();
    let _cleanup = Cleanup(&lab);

    let started = Instant::now();
    let info = lab
        .up(&UpOptions {
            nodes: 3,
            ..Default::default()
        })
        .expect("up");
    eprintln!("up 3 machines: {:?}", started.elapsed());
    assert_eq!(info.machines.len(), 3);
    assert_eq!(
        info.machines
            .iter()
            .filter(|m| m.role == Role::ControlPlane)
            .count(),
        1
    );
    assert_eq!(info.machines[0].role, Role::ControlPlane);

    // Every machine answers on 22 and is itself: hostname, machine-id and
    // host key all distinct, logins verified against the lab's known_hosts.
    let mut ids = HashSet::new();
    for m in &info.machines {
        assert!(answers_ssh(m.address), "{} does not answer on 22", m.name);
        assert_eq!(ssh(&lab, &m.name, "hostname"), m.name);
        assert!(
            ids.insert(ssh(&lab, &m.name, "cat /etc/machine-id")),
            "machine-id of {} not unique",
            m.name
        );
        assert_eq!(
            ssh(&lab, &m.name, "systemctl is-system-running --wait"),
            "running"
        );
    }
    let known_hosts = fs::read_to_string(&info.known_hosts).unwrap();
    let keys: HashSet<&str> = known_hosts
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(keys.len(), 3, "host keys not distinct:\n{known_hosts}");
    for m in &info.machines {
        assert!(
            known_hosts.contains(&format!("{} ssh-ed25519 ", m.address)),
            "{} missing from known_hosts",
            m.address
        );
    }
    let mode = fs::metadata(&info.identity_file)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "lab key mode");

    // The inventory names the machines, the key and the known_hosts.
    let inventory = fs::read_to_string(&info.inventory).unwrap();
    for needle in [
        "apiVersion: k8sup.io/v1alpha1".to_owned(),
        "name: t-lab-life".to_owned(),
        format!("identityFile: {}", info.identity_file.display()),
        format!("knownHostsFile: {}", info.known_hosts.display()),
        "hostKeyPolicy: strict".to_owned(),
        "name: t-lab-life-3".to_owned(),
    ] {
        assert!(
            inventory.contains(&needle),
            "inventory lacks {needle:?}:\n{inventory}"
        );
    }

    // Up again: nothing restarted, and quick.
    let pids_before = {
        let mut p = nspawn_pids("t-lab-life");
        p.sort();
        p
    };
    let again = Instant::now();
    lab.up(&UpOptions {
        nodes: 3,
        ..Default::default()
    })
    .expect("second up");
    let again = again.elapsed();
    let mut pids_after = nspawn_pids("t-lab-life");
    pids_after.sort();
    assert_eq!(pids_before, pids_after, "second up restarted machines");
    assert!(again < Duration::from_secs(3), "second up took {again:?}");

    let states: Vec<MachineState> = lab.status().unwrap().iter().map(|s| s.state).collect();
    assert_eq!(states, vec![MachineState::Running; 3]);

    // Power cut: processes gone, address silent; start: back with the same disk.
    let m2 = &info.machines[1];
    ssh(&lab, &m2.name, "echo persisted > /root/marker");
    lab.stop(&m2.name).expect("stop");
    assert!(
        !answers_ssh(m2.address),
        "{} still answers after stop",
        m2.name
    );
    assert_eq!(lab.status().unwrap()[1].state, MachineState::Stopped);
    assert_eq!(nspawn_pids("t-lab-life").len(), 2);
    lab.start(&m2.name).expect("start");
    assert_eq!(ssh(&lab, &m2.name, "cat /root/marker"), "persisted");
    assert_eq!(lab.status().unwrap()[1].state, MachineState::Running);

    // Partition: unreachable, but still running inside; heal: back.
    let m3 = &info.machines[2];
    ssh(
        &lab,
        &m3.name,
        "nohup sleep 600 >/dev/null 2>&1 & echo $! > /root/sleeper",
    );
    lab.partition("3").expect("partition");
    assert!(
        wait_answers(m3.address, false, Duration::from_secs(3)),
        "{} answers while partitioned",
        m3.name
    );
    assert_eq!(lab.status().unwrap()[2].state, MachineState::Partitioned);
    // The other machines cannot reach it either.
    let from_peer = common::ssh_output(
        &lab,
        &info.machines[0].name,
        &format!("timeout 2 bash -c '</dev/tcp/{}/22'", m3.address),
    );
    assert!(
        !from_peer.status.success(),
        "a peer reaches the partitioned machine"
    );
    lab.heal("3").expect("heal");
    assert!(
        wait_answers(m3.address, true, Duration::from_secs(5)),
        "{} silent after heal",
        m3.name
    );
    assert_eq!(
        ssh(&lab, &m3.name, "kill -0 $(cat /root/sleeper) && echo alive"),
        "alive"
    );
    // Machines reach each other over the bridge.
    ssh(
        &lab,
        &info.machines[0].name,
        &format!("timeout 2 bash -c '</dev/tcp/{}/22'", m3.address),
    );

    lab.down().expect("down");
    assert_eq!(leftovers("t-lab-life", 3), Vec::<String>::new());
    assert!(!lab.exists());
    // Down of a lab that is gone is fine.
    lab.down().expect("second down");
}
