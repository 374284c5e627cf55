//! End to end on lab machines: `k8sup facts` and how it reports hosts that
//! cannot be trusted or reached. Each test boots its own small lab.

mod common;

use std::time::{Duration, Instant};

use common::{TestLab, facts_json, k8sup, row, text};

#[test]
fn facts_reports_every_machine_with_its_real_values() {
    let lab = TestLab::up("e2e-facts", 3);
    let (ok, rows, stderr) = facts_json(lab.inventory());
    assert!(ok, "facts failed: {stderr}");
    assert_eq!(rows.len(), 3);
    let local_kernel = text(
        &std::process::Command::new("uname")
            .arg("-r")
            .output()
            .unwrap()
            .stdout,
    );
    for i in 0..3 {
        let r = row(&rows, &lab.node(i));
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["address"], lab.address(i));
        // Each value checked against the machine itself, read by other tools.
        assert_eq!(r["hostname"], lab.root(i, "hostname").trim());
        assert_eq!(r["os"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(
            (r["os_id"].as_str(), r["os_version"].as_str()),
            (Some("debian"), Some("12"))
        );
        assert_eq!(
            r["kernel"],
            local_kernel.trim(),
            "containers share the host's kernel"
        );
        assert_eq!(r["machine"], lab.root(i, "uname -m").trim());
        assert_eq!(r["arch"], lab.root(i, "dpkg --print-architecture").trim());
        assert_eq!(
            r["cpus"].as_u64().unwrap().to_string(),
            lab.root(i, "nproc").trim()
        );
        let mem_kib: u64 = lab
            .root(i, "awk '/^MemTotal/ {print $2}' /proc/meminfo")
            .trim()
            .parse()
            .unwrap();
        assert_eq!(r["memory_bytes"].as_u64().unwrap(), mem_kib * 1024);
        assert_eq!(r["init"], "systemd");
        assert_eq!(r["role"], if i == 0 { "control-plane" } else { "worker" });
    }

    // The table names every host with its OS.
    let out = k8sup(&["facts", "-i", lab.inventory().to_str().unwrap()]);
    assert!(out.status.success());
    let table = text(&out.stdout);
    for i in 0..3 {
        let line = table
            .lines()
            .find(|l| l.starts_with(&lab.node(i)))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(
            line.contains(&lab.address(i)) && line.contains("Debian GNU/Linux 12"),
            "{line}"
        );
    }
}

#[test]
fn a_stopped_machine_is_named_unreachable_in_bounded_time_and_the_others_answer() {
    let lab = TestLab::up("e2e-stop", 2);
    lab.lab.stop(&lab.node(1)).unwrap();
    let inventory = lab.custom_inventory(
        "short-timeout.yaml",
        "  connectTimeout: 3s\n  retries: 1\n",
        |_| String::new(),
    );
    let started = Instant::now();
    let (ok, rows, stderr) = facts_json(&inventory);
    let took = started.elapsed();
    assert!(!ok, "exit status must say a host failed");
    assert_eq!(row(&rows, &lab.node(0))["ok"], true);
    let down = row(&rows, &lab.node(1));
    assert_eq!(down["ok"], false);
    let err = down["error"].as_str().unwrap();
    assert!(
        err.contains(&lab.node(1)) && err.contains("cannot reach"),
        "{err}"
    );
    assert!(stderr.contains(&lab.node(1)), "{stderr}");
    // Two attempts of at most 3 s each, plus backoff: well under 15 s.
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[test]
fn a_changed_host_key_is_refused_and_the_other_hosts_still_answer() {
    let lab = TestLab::up("e2e-hostkey", 2);
    // The machine gets a new identity: what an attacker in the middle would present.
    lab.root(
        0,
        "rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key \
         && systemctl restart ssh",
    );
    let (ok, rows, _) = facts_json(lab.inventory());
    assert!(!ok);
    let refused = row(&rows, &lab.node(0));
    assert_eq!(refused["ok"], false);
    let err = refused["error"].as_str().unwrap();
    assert!(err.contains(&lab.node(0)), "names the host: {err}");
    assert!(err.to_lowercase().contains("host key"), "says why: {err}");
    assert!(
        err.contains(&lab.info.known_hosts.display().to_string()),
        "names the known_hosts file: {err}"
    );
    assert!(err.contains("ssh-keygen -R"), "gives the fix: {err}");
    assert_eq!(row(&rows, &lab.node(1))["ok"], true);
}
