//! Non-root logins becoming root through sudo (passwordless, with a password, refused).

mod harness;

use std::sync::Once;

use harness::{Client, Sshd, SshdOptions, ensure_user};
use k8sup_ssh::{Secret, Session, SshError, Sudo};

const PASSWORD: &str = "s3cr3t pw'$x";

fn users() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        ensure_user("k8sup-nopw", true, None);
        ensure_user("k8sup-pw", true, Some(PASSWORD));
        ensure_user("k8sup-nosudo", false, None);
    });
}

fn setup(user: &str) -> (Sshd, Client) {
    users();
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize(user, &client.key);
    (sshd, client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwordless_sudo_runs_commands_as_root() {
    let (sshd, client) = setup("k8sup-nopw");
    let s = Session::connect(&client.spec(&sshd, "k8sup-nopw"))
        .await
        .unwrap();
    assert_eq!(s.exec("id -un").await.unwrap().stdout_str().trim(), "root");
    assert_eq!(
        s.exec_as_login("id -un").await.unwrap().stdout_str().trim(),
        "k8sup-nopw"
    );
    // The whole command line runs as root, pipes and redirections included.
    let out = s.exec("echo hi > /root/k8sup-sudo-test && cat /root/k8sup-sudo-test | tr a-z A-Z; rm -f /root/k8sup-sudo-test").await.unwrap();
    assert_eq!(out.stdout_str(), "HI\n");
    // stdin reaches the command.
    let out = s
        .exec_with_stdin(
            "cat > /dev/null; id -un; wc -c < /etc/hostname >/dev/null",
            &b"data"[..],
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str().trim(), "root");

    // A configured password that sudo does not ask for is never sent: the
    // command's stdin is exactly what the caller gave.
    let mut spec = client.spec(&sshd, "k8sup-nopw");
    spec.sudo = Sudo::Password(Secret::new("unused-secret"));
    let s = Session::connect(&spec).await.unwrap();
    let out = s.exec_with_stdin("cat", &b"exact\n"[..]).await.unwrap();
    assert_eq!(out.stdout_str(), "exact\n");
    assert_eq!(s.exec("cat").await.unwrap().stdout_str(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sudo_password_is_fed_on_stdin_and_never_on_a_command_line() {
    let (sshd, client) = setup("k8sup-pw");
    let mut spec = client.spec(&sshd, "k8sup-pw");

    // Without a password: a clear error saying what to do.
    let s = Session::connect(&spec).await.unwrap();
    let err = s.exec("true").await.expect_err("sudo wants a password");
    let msg = err.to_string();
    assert!(matches!(err, SshError::Sudo { .. }), "{msg}");
    assert!(
        msg.contains("sudo wants a password for k8sup-pw") && msg.starts_with("node-127.0.0.2:"),
        "{msg}"
    );

    // A wrong password is reported as such.
    spec.sudo = Sudo::Password(Secret::new("wrong"));
    let s = Session::connect(&spec).await.unwrap();
    let err = s.exec("true").await.expect_err("wrong password");
    assert!(
        err.to_string()
            .contains("sudo rejected the configured password"),
        "{err}"
    );
    assert!(
        !format!("{err:?}").contains("wrong\""),
        "the password must not be echoed: {err:?}"
    );

    // The right one works, every time (sudo's credential cache is bypassed with -k).
    spec.sudo = Sudo::Password(Secret::new(PASSWORD));
    assert!(
        !format!("{spec:?}").contains(PASSWORD),
        "Debug must hide the password"
    );
    let s = Session::connect(&spec).await.unwrap();
    for _ in 0..3 {
        assert_eq!(s.exec("id -un").await.unwrap().stdout_str().trim(), "root");
    }
    // The command's own stdin comes after the password line, intact.
    let out = s.exec_with_stdin("cat", &b"payload\n"[..]).await.unwrap();
    assert_eq!(out.stdout_str(), "payload\n");
    // No process on the host carries the password in its arguments.
    let ps = s
        .exec("ps -eo args")
        .await
        .unwrap()
        .stdout_str()
        .into_owned();
    assert!(ps.contains("ps -eo args") && !ps.contains("s3cr3t"), "{ps}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_without_sudo_rights_gets_a_clear_error() {
    let (sshd, client) = setup("k8sup-nosudo");
    let s = Session::connect(&client.spec(&sshd, "k8sup-nosudo"))
        .await
        .unwrap();
    let err = s.exec("true").await.expect_err("no sudo rights");
    assert!(matches!(err, SshError::Sudo { .. }), "{err}");
    // exec_as_login still works.
    assert!(s.exec_as_login("true").await.unwrap().success());
    // With Sudo::Never, exec runs as the login user.
    let mut spec = client.spec(&sshd, "k8sup-nosudo");
    spec.sudo = Sudo::Never;
    let s = Session::connect(&spec).await.unwrap();
    assert_eq!(
        s.exec("id -un").await.unwrap().stdout_str().trim(),
        "k8sup-nosudo"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_sudo_is_reported_as_such() {
    users();
    // Sessions on this server cannot find sudo (nor anything else) on PATH.
    let sshd = Sshd::start_with(
        "127.0.0.2",
        SshdOptions {
            extra_config: "SetEnv PATH=/nonexistent\n".into(),
            ..Default::default()
        },
    );
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("k8sup-nopw", &client.key);
    let s = Session::connect(&client.spec(&sshd, "k8sup-nopw"))
        .await
        .unwrap();
    let err = s.exec("true").await.expect_err("no sudo on PATH");
    assert!(
        err.to_string()
            .contains("sudo is not installed on the host"),
        "{err}"
    );
}
