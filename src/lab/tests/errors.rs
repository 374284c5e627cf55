//! Errors a user meets before any machine boots: they must say what is wrong
//! and what to do.

mod common;

use k8sup_lab::{Lab, LabError, UpOptions};

fn up_error(lab: &Lab, opts: UpOptions) -> anyhow::Error {
    let err = lab.up(&opts).expect_err("up should fail");
    assert!(!lab.exists(), "a failed up left lab {} behind", lab.name());
    let lock = format!("{}/.locks/{}.lock", k8sup_lab::STATE_ROOT, lab.name());
    assert!(
        std::fs::metadata(&lock).is_err(),
        "a failed up left {lock} behind"
    );
    err
}

#[test]
fn taken_subnet_is_refused_with_a_hint() {
    if !common::can_run() {
        return;
    }
    // The host's own uplink network, read from its routes.
    let routes = std::process::Command::new("ip")
        .args(["-4", "route", "show", "scope", "link"])
        .output()
        .unwrap();
    let routes = String::from_utf8_lossy(&routes.stdout).into_owned();
    let Some(net) = routes
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .find_map(|d| d.parse::<k8sup_lab::Ipv4Net>().ok())
    else {
        eprintln!("skipped: no link route on this host to collide with");
        return;
    };
    let subnet = k8sup_lab::Ipv4Net::new(net.network(), 24).unwrap().trunc();
    let lab = Lab::new("t-lab-taken");
    let err = up_error(
        &lab,
        UpOptions {
            subnet: Some(subnet),
            ..Default::default()
        },
    );
    let text = format!("{err:#}");
    assert!(
        matches!(
            err.downcast_ref::<LabError>(),
            Some(LabError::SubnetTaken { .. })
        ),
        "{text}"
    );
    assert!(
        text.contains("--subnet") && text.contains(&subnet.to_string()),
        "{text}"
    );
}

#[test]
fn bad_requests_are_refused() {
    if !common::can_run() {
        return;
    }
    let bad_name = up_error(&Lab::new("Bad_Name"), UpOptions::default());
    assert!(matches!(
        bad_name.downcast_ref::<LabError>(),
        Some(LabError::InvalidName { .. })
    ));

    let lab = Lab::new("t-lab-bad");
    let zero = up_error(
        &lab,
        UpOptions {
            nodes: 0,
            ..Default::default()
        },
    );
    assert!(matches!(
        zero.downcast_ref::<LabError>(),
        Some(LabError::BadNodeCount { .. })
    ));
    let cps = up_error(
        &lab,
        UpOptions {
            nodes: 2,
            control_planes: 3,
            ..Default::default()
        },
    );
    assert!(matches!(
        cps.downcast_ref::<LabError>(),
        Some(LabError::BadControlPlanes { .. })
    ));
    let subnet = up_error(
        &lab,
        UpOptions {
            subnet: Some("10.213.0.7/24".parse().unwrap()),
            ..Default::default()
        },
    );
    assert!(matches!(
        subnet.downcast_ref::<LabError>(),
        Some(LabError::BadSubnet { .. })
    ));

    let missing = Lab::new("t-lab-never-created");
    let err = missing.stop("1").expect_err("stop on a missing lab");
    assert!(
        format!("{err:#}").contains("k8sup lab up --name t-lab-never-created"),
        "{err:#}"
    );
    assert!(Lab::open("t-lab-never-created").is_err());
}
