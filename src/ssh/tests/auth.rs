//! Key-file authentication and its failure messages.

mod harness;

use harness::{Client, Sshd, keygen};
use k8sup_ssh::{Session, SshError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ed25519_rsa_and_ecdsa_key_files_log_in() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    for kind in ["ed25519", "rsa", "ecdsa"] {
        let key = keygen(&client.dir.path().join(format!("id_{kind}_only")), kind, "");
        sshd.authorize("root", &key);
        let mut spec = client.spec(&sshd, "root");
        spec.identity_files = vec![key];
        let s = Session::connect(&spec)
            .await
            .unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(s.exec("whoami").await.unwrap().stdout_str().trim(), "root");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_identity_is_tried_after_a_rejected_one() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    let unauthorized = keygen(&client.dir.path().join("id_other"), "ed25519", "");
    sshd.authorize("root", &client.key);
    let mut spec = client.spec(&sshd, "root");
    spec.identity_files = vec![unauthorized, client.key.clone()];
    Session::connect(&spec).await.expect("second key accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_login_names_host_user_and_every_key_tried() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    let locked = keygen(
        &client.dir.path().join("id_locked"),
        "ed25519",
        "correct horse",
    );
    let missing = client.dir.path().join("id_missing");
    let mut spec = client.spec(&sshd, "root");
    spec.identity_files = vec![client.key.clone(), locked.clone(), missing.clone()];
    spec.retries = 3;
    let started = std::time::Instant::now();
    let err = Session::connect(&spec)
        .await
        .expect_err("no authorized key");
    let msg = err.to_string();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{msg}");
    assert!(
        msg.starts_with(&format!(
            "node-127.0.0.2: authentication as root@127.0.0.2:{} failed",
            sshd.port
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{} (ssh-ed25519 SHA256:", client.key.display())),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "{} (passphrase-protected and not loaded in ssh-agent: run `ssh-add {}`)",
            locked.display(),
            locked.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{} (cannot read", missing.display())),
        "{msg}"
    );
    // Auth failures are not retried.
    assert!(
        started.elapsed() < std::time::Duration::from_millis(900),
        "retried? {:?}",
        started.elapsed()
    );
    assert_eq!(
        sshd.log().matches("Connection from").count(),
        1 + 1,
        "{}",
        sshd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_keys_for_max_auth_tries_is_still_an_auth_failure_listing_them() {
    let sshd = Sshd::start_with(
        "127.0.0.2",
        harness::SshdOptions {
            extra_config: "MaxAuthTries 2\n".into(),
            ..Default::default()
        },
    );
    let client = Client::new();
    client.trust(&sshd);
    let keys: Vec<_> = (0..4)
        .map(|i| keygen(&client.dir.path().join(format!("id_{i}")), "ed25519", ""))
        .collect();
    let mut spec = client.spec(&sshd, "root");
    spec.identity_files = keys.clone();
    let err = Session::connect(&spec)
        .await
        .expect_err("no key authorized");
    let msg = err.to_string();
    assert!(matches!(err, SshError::AuthFailed { .. }), "{msg}");
    assert!(msg.contains(&keys[0].display().to_string()), "{msg}");
}
