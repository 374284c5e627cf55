//! Commands on one reused connection: status, output, signals, stdin, timings.

mod harness;

use std::time::Instant;

use harness::{Client, Sshd};
use k8sup_ssh::{ExitStatus, Session, SshError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_status_stdout_stderr_and_signals() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("root", &client.key);
    let s = Session::connect(&client.spec(&sshd, "root"))
        .await
        .expect("connect");

    let out = s.exec("echo out; echo err >&2; exit 3").await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(3));
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");

    let out = s.exec("kill -TERM $$").await.unwrap();
    assert_eq!(
        out.status,
        ExitStatus::Signal {
            signal: "TERM".into(),
            core_dumped: false
        }
    );
    assert!(!out.success());

    // A command reading stdin gets EOF at once instead of hanging.
    let out = s.exec("cat; echo done").await.unwrap();
    assert_eq!(out.stdout_str(), "done\n");

    // Binary-safe output.
    let out = s.exec("head -c 300000 /dev/zero").await.unwrap();
    assert_eq!(out.stdout.len(), 300000);

    // The server side of the connection dying is noticed, and calls fail with the host named.
    assert!(!s.is_closed());
    let _ = s.exec("kill -9 $PPID").await;
    let err = s.exec("true").await.expect_err("connection is gone");
    assert!(err.to_string().starts_with("node-127.0.0.2: "), "{err}");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(s.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_checked_names_host_command_and_stderr_tail() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("root", &client.key);
    let s = Session::connect(&client.spec(&sshd, "root")).await.unwrap();
    let err = s
        .exec_checked("for i in $(seq 1 40); do echo line$i >&2; done; false")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SshError::CommandFailed { .. }), "{msg}");
    assert!(
        msg.starts_with("node-127.0.0.2: command `for i in"),
        "{msg}"
    );
    assert!(msg.contains("exit code 1"), "{msg}");
    assert!(
        msg.contains("line40") && msg.contains("line21") && !msg.contains("line20\n"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_serves_many_commands_even_concurrently() {
    // A user whose login shell is /bin/sh: root's bash on a dev machine may source a
    // slow ~/.bashrc (Debian's bash reads it under sshd), which would hide the
    // transport's own round-trip time.
    harness::ensure_user("k8sup-nopw", true, None);
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("k8sup-nopw", &client.key);

    let t = Instant::now();
    let s = Session::connect(&client.spec(&sshd, "k8sup-nopw"))
        .await
        .unwrap();
    let connect = t.elapsed();

    // Every command's shell has the same parent: the one sshd process of this connection.
    let first = s
        .exec_as_login("echo $PPID")
        .await
        .unwrap()
        .stdout_str()
        .trim()
        .to_string();
    let n = 50;
    let t = Instant::now();
    for _ in 0..n {
        let out = s.exec_as_login("echo $PPID").await.unwrap();
        assert_eq!(
            out.stdout_str().trim(),
            first,
            "a command ran on another connection"
        );
    }
    let per_exec = t.elapsed() / n;
    let t = Instant::now();
    for _ in 0..n {
        assert!(s.exec("true").await.unwrap().success());
    }
    let per_sudo_exec = t.elapsed() / n;

    // 30 concurrent commands on clones of the session: more than sshd's MaxSessions
    // would allow at once if the session did not bound its channels.
    let mut tasks = Vec::new();
    for i in 0..30 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.exec(&format!("sleep 0.05; echo {i}")).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap().stdout_str().trim(), i.to_string());
    }
    let connections = sshd.log().matches("Accepted publickey").count();
    assert_eq!(
        connections,
        1,
        "expected one login, sshd log:\n{}",
        sshd.log()
    );
    eprintln!(
        "TIMING connect={connect:?} exec_round_trip={per_exec:?} exec_via_sudo={per_sudo_exec:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_stdin_streams_input() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("root", &client.key);
    let s = Session::connect(&client.spec(&sshd, "root")).await.unwrap();
    let data = vec![b'x'; 5 * 1024 * 1024];
    let out = s.exec_with_stdin("wc -c", &data[..]).await.unwrap();
    assert_eq!(out.stdout_str().trim(), "5242880");
    // A command that exits without reading its stdin does not hang the call.
    let out = s.exec_with_stdin("exit 4", &data[..]).await.unwrap();
    assert_eq!(out.status, ExitStatus::Code(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_chunks_sends_every_chunk_in_order_and_stops_on_a_local_error() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("root", &client.key);
    let s = Session::connect(&client.spec(&sshd, "root")).await.unwrap();
    // One buffer, sent as slices of it (what a file held once for many hosts is).
    let data: bytes::Bytes = (0..3 * 1024 * 1024 + 7).map(|i| (i % 251) as u8).collect();
    let chunks = |d: bytes::Bytes| -> k8sup_ssh::Chunks<'static> {
        Box::pin(futures::stream::iter(
            (0..d.len())
                .step_by(1 << 20)
                .map(move |o| Ok(d.slice(o..(o + (1 << 20)).min(d.len())))),
        ))
    };
    let dest = tempfile::NamedTempFile::new().unwrap();
    let cmd = format!("cat > {}; echo done", dest.path().display());
    let out = s
        .exec_with_chunks_signalling(&cmd, chunks(data.clone()), None)
        .await
        .unwrap();
    assert!(out.success(), "{}", out.stderr_str());
    assert_eq!(std::fs::read(dest.path()).unwrap(), &data[..]);

    // A chunk that cannot be produced fails the call: the command must not
    // act on a truncated input as if it were whole.
    let failing: k8sup_ssh::Chunks<'static> = Box::pin(futures::stream::iter(vec![
        Ok(bytes::Bytes::from_static(b"half")),
        Err(std::io::Error::other("disk read failed")),
    ]));
    let r = s
        .exec_with_chunks_signalling("cat > /dev/null; sleep 5", failing, None)
        .await;
    match r {
        Err(SshError::Io { .. }) => {}
        other => panic!("expected a local read error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_exec_stops_the_remote_command_and_frees_its_channel() {
    // sshd honours signal requests only on privilege-separated (non-root) logins;
    // for root logins the channel is still closed and its slot freed.
    harness::ensure_user("k8sup-nopw", true, None);
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("k8sup-nopw", &client.key);
    let s = Session::connect(&client.spec(&sshd, "k8sup-nopw"))
        .await
        .unwrap();
    assert!(s.exec("true").await.unwrap().success()); // sudo probed before timing starts
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // More cancelled commands than sshd's MaxSessions (10): each must give its slot back.
    for i in 0..12 {
        let marker = dir.path().join(format!("m{i}"));
        let cmd = format!("sleep 3; touch {}", marker.display());
        let r = if i % 2 == 0 {
            tokio::time::timeout(std::time::Duration::from_millis(400), s.exec(&cmd)).await
        } else {
            tokio::time::timeout(std::time::Duration::from_millis(400), s.exec_as_login(&cmd)).await
        };
        assert!(r.is_err(), "the command should still be running");
    }
    assert_eq!(s.exec("echo alive").await.unwrap().stdout_str(), "alive\n");
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        left.is_empty(),
        "cancelled commands ran to completion: {left:?}\n{}",
        sshd.log()
    );
}
