//! Host-key verification against real sshd host keys.

mod harness;

use std::process::Command;

use harness::{Client, Sshd, SshdOptions, keygen, run};
use k8sup_ssh::{HostKeyPolicy, Session, SshError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_key_is_refused_with_file_line_and_fix() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    // Line 1: a comment, line 2: another host, line 3: our host with a different key.
    let other = Sshd::start("127.0.0.3");
    client.append_known_hosts("# managed by test\n");
    client.append_known_hosts(&other.known_hosts_line("ed25519"));
    client.append_known_hosts(
        &other
            .known_hosts_line("ed25519")
            .replace(&other.lookup(), &sshd.lookup()),
    );
    sshd.authorize("root", &client.key);

    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let mut spec = client.spec(&sshd, "root");
        spec.host_key_policy = policy;
        spec.retries = 2;
        let err = Session::connect(&spec)
            .await
            .expect_err("a changed key must be refused");
        let msg = err.to_string();
        assert!(
            matches!(err, SshError::HostKeyMismatch { line: 3, .. }),
            "{msg}"
        );
        assert!(
            msg.starts_with("node-127.0.0.2: HOST KEY MISMATCH"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("{}:3", client.known_hosts.display())),
            "{msg}"
        );
        assert!(
            msg.contains(&format!(
                "ssh-keygen -R '{}' -f {}",
                sshd.lookup(),
                client.known_hosts.display()
            )),
            "{msg}"
        );
        assert!(msg.contains("SHA256:"), "{msg}");
    }
    // Refused during key exchange: the server never saw a login attempt, and the
    // refusal was not retried (one connection per policy, plus the harness's readiness probe).
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    assert_eq!(
        sshd.log().matches("Connection from").count(),
        1 + 2,
        "{}",
        sshd.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_refused_when_strict_and_recorded_with_accept_new() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    sshd.authorize("root", &client.key);

    let err = Session::connect(&client.spec(&sshd, "root"))
        .await
        .expect_err("strict refuses unknown keys");
    let msg = err.to_string();
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{msg}");
    assert!(
        msg.contains("hostKeyPolicy: accept-new") && msg.contains("ssh-keyscan -p"),
        "{msg}"
    );
    assert!(
        !client.known_hosts.exists(),
        "strict mode must not write known_hosts"
    );

    let mut spec = client.spec(&sshd, "root");
    spec.host_key_policy = HostKeyPolicy::AcceptNew;
    let s = Session::connect(&spec)
        .await
        .expect("accept-new records and connects");
    assert!(s.exec("true").await.unwrap().success());
    let text = harness::read(&client.known_hosts);
    assert_eq!(text, sshd.known_hosts_line("ed25519"), "recorded line");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&client.known_hosts)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "a new known_hosts is private");

    // Now the key is known: strict connects.
    Session::connect(&client.spec(&sshd, "root"))
        .await
        .expect("strict after accept-new");

    // The host is "reinstalled" (new host keys, same address and port): refused even under accept-new.
    drop(s);
    let mut sshd = sshd;
    sshd.reinstall();
    let err = Session::connect(&spec)
        .await
        .expect_err("accept-new refuses changed keys");
    assert!(
        matches!(err, SshError::HostKeyMismatch { line: 1, .. }),
        "{err}"
    );
    assert_eq!(
        harness::read(&client.known_hosts).lines().count(),
        1,
        "nothing appended for a changed key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashed_entries_match() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    run(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&client.known_hosts));
    let text = harness::read(&client.known_hosts);
    assert!(
        text.starts_with("|1|") && !text.contains("127.0.0.2"),
        "hashed: {text}"
    );
    sshd.authorize("root", &client.key);
    let s = Session::connect(&client.spec(&sshd, "root"))
        .await
        .expect("hashed entry accepted");
    assert!(s.exec("true").await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_hosts_with_only_the_rsa_key_still_matches() {
    let sshd = Sshd::start_with(
        "127.0.0.2",
        SshdOptions {
            rsa_host_key: true,
            ..Default::default()
        },
    );
    let client = Client::new();
    client.append_known_hosts(&sshd.known_hosts_line("rsa"));
    sshd.authorize("root", &client.key);
    let s = Session::connect(&client.spec(&sshd, "root"))
        .await
        .expect("RSA-only known_hosts accepted");
    assert!(s.exec("true").await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_certificate_from_trusted_ca_is_accepted_and_revocation_refused() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = keygen(&ca_dir.path().join("host_ca"), "ed25519", "");
    let sshd = Sshd::start_with(
        "127.0.0.2",
        SshdOptions {
            host_cert: Some((ca.clone(), vec!["127.0.0.2".into()])),
            ..Default::default()
        },
    );
    let client = Client::new();
    let ca_pub = harness::read(&ca.with_extension("pub"));
    client.append_known_hosts(&format!("@cert-authority [127.0.0.*]:* {ca_pub}"));
    sshd.authorize("root", &client.key);
    // Nothing but the CA is known about this host.
    let s = Session::connect(&client.spec(&sshd, "root"))
        .await
        .expect("certificate from trusted CA");
    assert!(s.exec("true").await.unwrap().success());

    // A CA that does not cover this host name does not help.
    let other = Client::new();
    other.append_known_hosts(&format!("@cert-authority *.example.com {ca_pub}"));
    sshd.authorize("root", &other.key);
    let err = Session::connect(&other.spec(&sshd, "root"))
        .await
        .expect_err("CA not trusted for this host");
    assert!(matches!(err, SshError::HostKeyUnknown { .. }), "{err}");

    // Revoking the CA key refuses the certificate.
    client.append_known_hosts(&format!("@revoked * {ca_pub}"));
    let err = Session::connect(&client.spec(&sshd, "root"))
        .await
        .expect_err("revoked CA");
    assert!(matches!(err, SshError::HostKeyRejected { .. }), "{err}");
    assert!(err.to_string().contains("@revoked"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_certificate_for_another_principal_is_refused() {
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = keygen(&ca_dir.path().join("host_ca"), "ed25519", "");
    let sshd = Sshd::start_with(
        "127.0.0.2",
        SshdOptions {
            host_cert: Some((ca.clone(), vec!["db.example.com".into()])),
            ..Default::default()
        },
    );
    let client = Client::new();
    client.append_known_hosts(&format!(
        "@cert-authority * {}",
        harness::read(&ca.with_extension("pub"))
    ));
    sshd.authorize("root", &client.key);
    let err = Session::connect(&client.spec(&sshd, "root"))
        .await
        .expect_err("wrong principal");
    assert!(matches!(err, SshError::HostKeyRejected { .. }), "{err}");
    assert!(err.to_string().contains("db.example.com"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_plain_key_is_refused() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    let key = sshd.host_key_pub("ed25519");
    client.append_known_hosts(&format!("@revoked * {key}"));
    sshd.authorize("root", &client.key);
    let err = Session::connect(&client.spec(&sshd, "root"))
        .await
        .expect_err("revoked key");
    assert!(matches!(err, SshError::HostKeyRejected { .. }), "{err}");
}
