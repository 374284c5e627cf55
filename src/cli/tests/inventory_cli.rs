//! `k8sup inventory check` and `k8sup init` as a user or a CI job runs them:
//! the built binary, its exit code, stdout and stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn k8sup() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_k8sup"));
    c.env_remove("K8SUP_INVENTORY")
        .env_remove("K8SUP_TEST_SSH_USER")
        .env_remove("K8SUP_TEST_SSH_PORT");
    c
}

/// The repository's root, where `inventories/` is.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root")
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inventory")
        .join(name)
}

fn run(c: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = c.output().expect("k8sup runs");
    (
        status.code().expect("exit code"),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

#[test]
fn check_valid_inventory_prints_one_line_summary() {
    let (code, out, err) = run(k8sup()
        .args(["inventory", "check", "-i"])
        .arg(root().join("inventories/ha.yaml")));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "{}: ok, 5 hosts (3 control-plane, 2 workers)\n",
            root().join("inventories/ha.yaml").display()
        )
    );
    assert_eq!(err, "");
}

#[test]
fn every_shipped_example_passes_check() {
    for name in ["minimal.yaml", "ha.yaml", "bastion.yaml"] {
        let (code, out, err) = run(k8sup()
            .args(["inventory", "check", "-i"])
            .arg(root().join("inventories").join(name)));
        assert_eq!(code, 0, "{name}: {err}");
        assert!(out.contains(": ok, "), "{out}");
    }
}

#[test]
fn check_reports_every_error_with_position_and_fails() {
    let file = fixture("many-errors.yaml");
    let (code, out, err) = run(k8sup().args(["inventory", "check", "-i"]).arg(&file));
    assert_eq!(code, 1, "{err}");
    assert_eq!(out, "", "nothing on stdout when invalid");
    let f = file.display();
    for expected in [
        format!("{f}:8:16: error: podCIDR 10.1.0.0/16 and serviceCIDR 10.1.0.0/24 overlap"),
        format!(
            "{f}:10:18: error: unknown value 'acept-new' for 'hostKeyPolicy' in 'ssh', expected one of 'strict', 'accept-new'"
        ),
        format!("{f}:13:5: error: unknown key 'adress' in host 'cp-1'"),
        format!("{f}:16:11: error: duplicate host name 'cp-1'"),
        format!(
            "{f}:18:11: error: unknown role 'master' for host 'cp-1', expected 'control-plane' or 'worker'"
        ),
        "= help: did you mean 'accept-new'?".to_owned(),
        "= help: did you mean 'address'?".to_owned(),
        "= help: k8sup calls this role 'control-plane'".to_owned(),
        "13 |     adress: 10.0.0.11\n   |     ^^^^^^".to_owned(),
        format!("{f}: 5 errors"),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_json_output_is_one_document() {
    let (code, out, err) = run(k8sup()
        .args(["inventory", "check", "--output", "json", "-i"])
        .arg(fixture("many-errors.yaml")));
    assert_eq!(code, 1);
    assert_eq!(err, "", "JSON mode keeps stderr clean");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"], 5);
    assert_eq!(v["hosts"], 0);
    let d = &v["diagnostics"][2];
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(13), Some(5))
    );
    assert_eq!(d["severity"], "error");
    assert_eq!(d["message"], "unknown key 'adress' in host 'cp-1'");
    assert_eq!(d["help"], "did you mean 'address'?");

    let (code, out, _) = run(k8sup()
        .args(["inventory", "check", "-o", "json", "-i"])
        .arg(root().join("inventories/ha.yaml")));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v["ok"].as_bool(),
            v["hosts"].as_u64(),
            v["controlPlanes"].as_u64(),
            v["workers"].as_u64()
        ),
        (Some(true), Some(5), Some(3), Some(2))
    );
    assert_eq!(v["kubernetesVersion"], "v1.37.2");
}

#[test]
fn warnings_are_printed_but_do_not_fail() {
    let file = fixture("four-control-planes.yaml");
    let (code, out, err) = run(k8sup().args(["inventory", "check", "-i"]).arg(&file));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains(&format!(
            "{}:10:5: warning: 4 control-plane hosts",
            file.display()
        )),
        "{err}"
    );
    assert!(
        out.ends_with("ok, 4 hosts (4 control-plane, 0 workers), 1 warning\n"),
        "{out}"
    );
}

#[test]
fn inventory_path_from_environment() {
    let (code, out, err) = run(k8sup()
        .args(["inventory", "check"])
        .env("K8SUP_INVENTORY", root().join("inventories/minimal.yaml")));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("ok, 1 host (1 control-plane, 0 workers)"),
        "{out}"
    );
}

#[test]
fn env_variables_are_substituted_and_secrets_not_printed() {
    let file = fixture("env.yaml");
    let (code, _, err) = run(k8sup().args(["inventory", "check", "-i"]).arg(&file));
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "{}:6:9: error: environment variable 'K8SUP_TEST_SSH_USER' is not set",
            file.display()
        )),
        "{err}"
    );

    let (code, _, err) = run(k8sup()
        .args(["inventory", "check", "-i"])
        .arg(&file)
        .env("K8SUP_TEST_SSH_USER", "deploy"));
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = run(k8sup()
        .args(["inventory", "check", "-i"])
        .arg(&file)
        .env("K8SUP_TEST_SSH_USER", "deploy")
        .env("K8SUP_TEST_SSH_PORT", "s3cr3t-value"));
    assert_eq!(code, 1);
    assert!(
        err.contains("found the value from ${K8SUP_TEST_SSH_PORT}"),
        "{err}"
    );
    assert!(
        !err.contains("s3cr3t"),
        "a substituted value was printed:\n{err}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let (code, _, err) =
        run(k8sup().args(["inventory", "check", "-i", "/nonexistent/inventory.yaml"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/inventory.yaml: error: cannot read the inventory"),
        "{err}"
    );
    assert!(err.contains("`k8sup init`"), "{err}");
}

#[test]
fn init_writes_an_example_that_passes_check() {
    let dir = tempfile::tempdir().unwrap();
    let (code, example, _) = run(k8sup().arg("init"));
    assert_eq!(code, 0);
    assert!(example.starts_with("# k8sup inventory"), "commented");
    let file = dir.path().join("inventory.yaml");
    std::fs::write(&file, &example).unwrap();
    let (code, out, err) = run(k8sup().args(["inventory", "check", "-i"]).arg(&file));
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(
        out.ends_with("ok, 3 hosts (1 control-plane, 2 workers)\n"),
        "{out}"
    );
}

#[test]
fn init_out_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inventory.yaml");
    let (code, out, err) = run(k8sup().args(["init", "--out"]).arg(&file));
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(written.contains("apiVersion: k8sup.io/v1alpha1"));

    std::fs::write(&file, "mine\n").unwrap();
    let (code, _, err) = run(k8sup().args(["init", "--out"]).arg(&file));
    assert_eq!(code, 1);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "mine\n",
        "left alone"
    );

    let (code, _, err) = run(k8sup().args(["init", "--force", "--out"]).arg(&file));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), written);
}

#[test]
fn show_prints_effective_connections() {
    let (code, out, err) = run(k8sup()
        .args(["inventory", "show", "-i"])
        .arg(root().join("inventories/bastion.yaml")));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "cluster private: Kubernetes v1.37.2, pods 10.1.0.0/16, services 10.152.183.0/24, API server port 6443"
    );
    assert!(lines[2].starts_with("HOST "), "{out}");
    let cp = lines
        .iter()
        .find(|l| l.starts_with("cp-1 "))
        .expect("a row for cp-1");
    let cells: Vec<&str> = cp.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "cp-1",
            "control-plane",
            "ubuntu@10.20.0.11:22",
            "ubuntu@203.0.113.10:2222",
            "(edge)",
            "yes",
            "-"
        ]
    );
    let edge = lines.iter().find(|l| l.starts_with("edge ")).unwrap();
    assert!(
        edge.contains("ubuntu@203.0.113.10:2222  -"),
        "the bastion is reached directly: {edge}"
    );

    let (code, out, _) = run(k8sup()
        .args(["inventory", "show", "-o", "json", "-i"])
        .arg(root().join("inventories/bastion.yaml")));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ssh = &v["hosts"][1]["ssh"];
    assert_eq!(
        (ssh["user"].as_str(), ssh["sudo"].as_bool()),
        (Some("ubuntu"), Some(true))
    );
    assert_eq!(ssh["proxyJump"]["host"], "edge");
    assert_eq!(ssh["sudoPasswordEnv"], "K8SUP_SUDO_PASSWORD");
    assert!(
        ssh["knownHostsFile"]
            .as_str()
            .unwrap()
            .starts_with(root().join("inventories").to_str().unwrap())
    );

    let (code, out, err) = run(k8sup()
        .args(["inventory", "show", "-i"])
        .arg(fixture("many-errors.yaml")));
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(err.contains("5 errors"), "{err}");
}

#[test]
fn a_kubernetes_version_k8sup_cannot_install_is_reported_at_its_line() {
    let dir = std::env::temp_dir().join(format!("k8sup-inv-version-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("inventory.yaml");
    std::fs::write(
        &path,
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster:\n  name: demo\n  kubernetesVersion: v1.29.4\nhosts:\n  - { name: cp-1, address: 10.0.0.11, role: control-plane }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_k8sup"))
        .args(["inventory", "check", "-i", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("inventory.yaml:5:22"),
        "not at its line and column: {err}"
    );
    assert!(err.contains("v1.29.4") && err.contains("v1.37.x"), "{err}");
    // The same refusal before a plan touches anything (no host is reachable here).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_k8sup"))
        .args(["plan", "-i", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("inventory.yaml:5:22"),
        "{err}"
    );
    // A workload-only inventory installs no Kubernetes: any version is fine.
    std::fs::write(
        &path,
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster:\n  name: demo\n  components: none\n  kubernetesVersion: v1.29.4\nhosts:\n  - { name: cp-1, address: 10.0.0.11, role: control-plane }\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_k8sup"))
        .args(["inventory", "check", "-i", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `k8sup certs renew` teaches itself and refuses what it cannot do before
/// connecting to anything.
#[test]
fn certs_renew_help_and_argument_errors() {
    let (code, out, err) = run(k8sup().args(["--help"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("certs"), "{out}");

    let (code, out, err) = run(k8sup().args(["certs", "renew", "--help"]));
    assert_eq!(code, 0, "{err}");
    // As one line of words (clap wraps the help to the terminal).
    let out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    for want in [
        "--inventory",
        "--dry-run",
        "--yes",
        "--host",
        "--output",
        "CAs",
        "service-account key",
        "restarts",
        "one control plane at a time",
        "k8sup certs renew -i inventory.yaml --dry-run",
    ] {
        assert!(
            out.contains(want),
            "`certs renew --help` lacks {want:?}:\n{out}"
        );
    }

    // No inventory: clap's usage error names the flag.
    let (code, _, err) = run(k8sup().args(["certs", "renew"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--inventory"), "{err}");
    // No subcommand: the group's usage lists `renew`.
    let (code, _, err) = run(k8sup().args(["certs"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("renew"), "{err}");
    // A missing file is named.
    let (code, _, err) = run(k8sup().args(["certs", "renew", "-i", "/nonexistent/inv.yaml"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/inv.yaml"), "{err}");

    // An inventory without a cluster has nothing to renew (refused before
    // any host is reached: its address is not routable).
    let dir = std::env::temp_dir().join(format!("k8sup-certs-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let inv = dir.join("none.yaml");
    std::fs::write(
        &inv,
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster:\n  name: t\n  components: none\n\
         hosts:\n  - { name: h, address: 192.0.2.1, role: control-plane }\n",
    )
    .unwrap();
    let (code, _, err) = run(k8sup().args(["certs", "renew", "--yes", "-i"]).arg(&inv));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no certificates to renew") && err.contains("none.yaml"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `k8sup init | head -0`: when the reader of stdout is gone, the command
/// ends quietly (SIGPIPE, as any Unix tool), not with a panic on stderr.
#[test]
fn a_closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = k8sup()
        .arg("init")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    const SIGPIPE: i32 = 13;
    assert_eq!(out.status.signal(), Some(SIGPIPE), "{:?} {err}", out.status);
}
