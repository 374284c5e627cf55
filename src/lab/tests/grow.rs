//! An existing lab grows on `up` with more nodes, keeps its running machines,
//! and refuses to shrink or re-role.

mod common;

use common::{Cleanup, nspawn_pids, ssh};
use k8sup_lab::{Lab, LabError, Role, UpOptions};

#[test]
fn up_adds_machines_and_never_removes_them() {
    common::require_root();
    let lab = Lab::new("t-lab-grow");
    let _ = lab.down();
    let _cleanup = Cleanup(&lab);

    let one = lab
        .up(&UpOptions {
            nodes: 1,
            ..Default::default()
        })
        .expect("up 1");
    let first_pid = nspawn_pids("t-lab-grow");
    assert_eq!(first_pid.len(), 1);

    let two = lab
        .up(&UpOptions {
            nodes: 2,
            ..Default::default()
        })
        .expect("up 2");
    assert_eq!(two.subnet, one.subnet);
    assert_eq!(two.machines[0], one.machines[0]);
    assert_eq!(two.machines[1].role, Role::Worker);
    assert!(
        nspawn_pids("t-lab-grow").contains(&first_pid[0]),
        "growing restarted the first machine"
    );
    assert_eq!(ssh(&lab, "t-lab-grow-2", "hostname"), "t-lab-grow-2");
    assert!(
        std::fs::read_to_string(&two.inventory)
            .unwrap()
            .contains("t-lab-grow-2")
    );

    let shrink = lab
        .up(&UpOptions {
            nodes: 1,
            ..Default::default()
        })
        .expect_err("shrinking");
    assert!(
        matches!(
            shrink.downcast_ref::<LabError>(),
            Some(LabError::ShapeConflict { .. })
        ),
        "{shrink:#}"
    );
    let other_subnet = lab
        .up(&UpOptions {
            nodes: 2,
            subnet: Some("10.213.250.0/24".parse().unwrap()),
            ..Default::default()
        })
        .expect_err("renumbering");
    assert!(
        matches!(
            other_subnet.downcast_ref::<LabError>(),
            Some(LabError::SubnetChanged { lab, .. }) if lab == "t-lab-grow"
        ),
        "{other_subnet:#}"
    );
}
