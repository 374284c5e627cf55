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

    // ssh_config: IdentityAgent names the socket; IdentitiesOnly limits the agent to
    // the configured identity files, as in OpenSSH.
    let other = keygen(&client.dir.path().join("id_other"), "ed25519", "");
    let config = client.dir.path().join("config");
    let write_config = |only: &str| {
        std::fs::write(
            &config,
            format!(
                "Host node\n  HostName {}\n  Port {}\n  User root\n  IdentityFile {}\n  IdentitiesOnly {only}\n  IdentityAgent {}\n",
                sshd.addr,
                sshd.port,
                other.display(),
                sock.display()
            ),
        )
        .unwrap()
    };
    let mut spec = client.spec(&sshd, "root");
    spec.address = "node".into();
    spec.port = None;
    spec.user = None;
    spec.identity_files = vec![];
    spec.use_agent = true;
    spec.use_ssh_config = true;
    spec.ssh_config_file = Some(config.clone());
    // SAFETY: as above; IdentityAgent must be what finds the agent now.
    unsafe { std::env::remove_var("SSH_AUTH_SOCK") };
    write_config("no");
    Session::connect(&spec)
        .await
        .expect("agent found through IdentityAgent");
    write_config("yes");
    let err = Session::connect(&spec)
        .await
        .expect_err("IdentitiesOnly: the agent's key is not offered");
    let msg = err.to_string();
    assert!(
        msg.contains(&other.display().to_string()) && !msg.contains("agent key"),
        "{msg}"
    );
}
