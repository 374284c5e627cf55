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
    common::require_root();
    // A network the host already uses: an address on an empty bridge of
    // our own (no traffic leaves it), removed when the test ends.
    struct Dummy;
    impl Drop for Dummy {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", "k8t-taken"])
                .status();
        }
    }
    let ip = |args: &[&str]| {
        assert!(
            std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap()
                .success(),
            "ip {args:?}"
        )
    };
    let _ = std::process::Command::new("ip")
        .args(["link", "del", "k8t-taken"])
        .status();
    ip(&["link", "add", "k8t-taken", "type", "bridge"]);
    let _dummy = Dummy;
    ip(&["addr", "add", "10.213.254.1/24", "dev", "k8t-taken"]);
    let subnet: k8sup_lab::Ipv4Net = "10.213.254.0/24".parse().unwrap();
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
    assert!(text.contains(&subnet.to_string()), "{text}");
}

#[test]
fn bad_requests_are_refused() {
    common::require_root();
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
        matches!(
            err.downcast_ref::<LabError>(),
            Some(LabError::NoSuchLab { lab, .. }) if lab == "t-lab-never-created"
        ),
        "{err:#}"
    );
    assert!(Lab::open("t-lab-never-created").is_err());
}
