//! ssh-agent authentication (own test binary: it sets SSH_AUTH_SOCK for the process).

mod harness;

use std::process::Command;

use harness::{Client, Sshd, keygen, run};
use k8sup_ssh::Session;

/// An ssh-agent started for the test, killed on drop.
struct Agent {
    pid: String,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

fn start_agent() -> (Agent, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let out = run(Command::new("ssh-agent").arg("-a").arg(&sock).arg("-s"));
    let pid = out
        .split(';')
        .find_map(|p| p.trim().strip_prefix("SSH_AGENT_PID="))
        .expect("agent pid")
        .to_string();
    (Agent { pid, _dir: dir }, sock)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_keys_log_in_including_passphrase_protected_ones() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    let (_agent, sock) = start_agent();
    // SAFETY: set before any other thread of this test binary reads the environment.
    unsafe { std::env::set_var("SSH_AUTH_SOCK", &sock) };

    // A passphrase-protected key, usable only because the agent holds it.
    let locked = keygen(&client.dir.path().join("id_locked"), "ed25519", "s3cret");
    // ssh-add reads the passphrase from an askpass program when forced to.
    let askpass = client.dir.path().join("askpass.sh");
    std::fs::write(&askpass, "#!/bin/sh\necho s3cret\n").unwrap();
    run(Command::new("chmod").arg("755").arg(&askpass));
    run(Command::new("ssh-add")
        .arg("-q")
        .arg(&locked)
        .env("SSH_AUTH_SOCK", &sock)
        .env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(std::process::Stdio::null()));
    sshd.authorize("root", &locked);

    // Through the agent alone (no identity files).
    let mut spec = client.spec(&sshd, "root");
    spec.use_agent = true;
    spec.identity_files = vec![];
    let s = Session::connect(&spec).await.expect("agent login");
    assert!(s.exec("true").await.unwrap().success());

    // The locked key file is named, and signed for by the agent holding it.
    spec.identity_files = vec![locked.clone()];
    Session::connect(&spec)
        .await
        .expect("identity file backed by the agent");

    // Without the agent the same key file fails with a message naming it.
    spec.use_agent = false;
    let err = Session::connect(&spec)
        .await
        .expect_err("locked key without agent");
    assert!(
        err.to_string()
            .contains(&format!("{} (passphrase-protected", locked.display())),
        "{err}"
    );
}
