//! Atomic, idempotent uploads (the "remote" is this machine, reached through sshd).

mod harness;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Once;
use std::time::{Duration, Instant};

use harness::{Client, Sshd, SshdOptions, ensure_user};
use k8sup_ssh::{Secret, Session, Sudo, UploadOptions, UploadOutcome};

fn root_session_parts() -> (Sshd, Client) {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("root", &client.key);
    (sshd, client)
}

fn write_file(path: &Path, len: usize, seed: u8) {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(path, data).unwrap();
}

fn temps_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".k8sup-tmp."))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_writes_then_skips_identical_then_replaces_changed() {
    let (sshd, client) = root_session_parts();
    let s = Session::connect(&client.spec(&sshd, "root")).await.unwrap();
    let remote_dir = tempfile::tempdir().unwrap();
    let dest = remote_dir.path().join("sub/dir/app.conf");
    let local = client.dir.path().join("app.conf");
    write_file(&local, 100_000, 1);
    let opts = UploadOptions {
        mode: 0o640,
        owner: Some("root".into()),
        group: Some("daemon".into()),
        ..Default::default()
    };
    let dest_s = dest.to_str().unwrap();

    assert_eq!(
        s.upload(&local, dest_s, &opts).await.unwrap(),
        UploadOutcome::Written { bytes: 100_000 }
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&local).unwrap()
    );
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
    assert_eq!(meta.gid(), 1, "group daemon");
    let (ino, mtime) = (meta.ino(), meta.mtime_nsec());

    // Same content: nothing touched (same inode, same mtime).
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(
        s.upload(&local, dest_s, &opts).await.unwrap(),
        UploadOutcome::Unchanged
    );
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!((meta.ino(), meta.mtime_nsec()), (ino, mtime));

    // Same content, other mode: only the attributes change.
    let opts600 = UploadOptions {
        mode: 0o600,
        ..opts.clone()
    };
    assert_eq!(
        s.upload(&local, dest_s, &opts600).await.unwrap(),
        UploadOutcome::AttributesChanged
    );
    let meta = std::fs::metadata(&dest).unwrap();
    assert_eq!(
        (meta.ino(), meta.permissions().mode() & 0o7777),
        (ino, 0o600)
    );

    // Changed content: replaced by rename (new inode), no temp file left.
    write_file(&local, 123_456, 2);
    assert_eq!(
        s.upload(&local, dest_s, &opts600).await.unwrap(),
        UploadOutcome::Written { bytes: 123_456 }
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert_ne!(std::fs::metadata(&dest).unwrap().ino(), ino);
    assert!(temps_in(dest.parent().unwrap()).is_empty());

    // Errors name host, both paths and the reason.
    let err = s
        .upload(&client.dir.path().join("missing"), dest_s, &opts)
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("node-127.0.0.2: upload of")
            && err.to_string().contains("missing"),
        "{err}"
    );
    let err = s.upload(&local, "relative/path", &opts).await.unwrap_err();
    assert!(err.to_string().contains("absolute"), "{err}");
    // A directory in the way is refused, not written into.
    let err = s
        .upload(&local, dest.parent().unwrap().to_str().unwrap(), &opts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert!(temps_in(dest.parent().unwrap()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_upload_leaves_the_old_file_and_a_cleanable_temp() {
    let (sshd, client) = root_session_parts();
    let remote_dir = tempfile::tempdir().unwrap();
    let dest = remote_dir.path().join("big.bin");
    let dest_s = dest.to_str().unwrap().to_string();
    std::fs::write(&dest, b"old content\n").unwrap();
    let local = client.dir.path().join("big.bin");
    write_file(&local, 50 * 1024 * 1024, 3);

    let s = Session::connect(&client.spec(&sshd, "root")).await.unwrap();
    let task = {
        let (s, local, dest_s) = (s.clone(), local.clone(), dest_s.clone());
        tokio::spawn(async move { s.upload(&local, &dest_s, &UploadOptions::default()).await })
    };
    // Kill it once a few MB have reached the temp file.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let partial = temps_in(remote_dir.path())
            .iter()
            .map(|n| {
                std::fs::metadata(remote_dir.path().join(n))
                    .map(|m| m.len())
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0);
        if partial > 4 * 1024 * 1024 {
            assert!(
                partial < 50 * 1024 * 1024,
                "upload finished before it could be interrupted"
            );
            break;
        }
        assert!(
            !task.is_finished(),
            "upload finished before it could be interrupted"
        );
        assert!(Instant::now() < deadline, "no temp file appeared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    let _ = task.await;
    s.close().await;

    // The destination is untouched; the partial temp file is recognisable.
    assert_eq!(std::fs::read(&dest).unwrap(), b"old content\n");
    let temps = temps_in(remote_dir.path());
    assert_eq!(temps.len(), 1, "{temps:?}");
    assert!(temps[0].starts_with(".big.bin.k8sup-tmp."), "{temps:?}");
    assert_eq!(
        k8sup_ssh::stale_temp_glob(&dest_s).unwrap(),
        format!("{}/.big.bin.k8sup-tmp.*", remote_dir.path().display())
    );

    // The next run writes the new file and removes the leftover.
    let s = Session::connect(&client.spec(&sshd, "root")).await.unwrap();
    let t = Instant::now();
    let outcome = s
        .upload(&local, &dest_s, &UploadOptions::default())
        .await
        .unwrap();
    let sftp_time = t.elapsed();
    assert_eq!(
        outcome,
        UploadOutcome::Written {
            bytes: 50 * 1024 * 1024
        }
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert!(temps_in(remote_dir.path()).is_empty());

    // For comparison: the same bytes through `cat` over exec.
    let t = Instant::now();
    let f = tokio::fs::File::open(&local).await.unwrap();
    let cat_dest = remote_dir.path().join("cat.bin");
    let out = s
        .exec_with_stdin(&format!("cat > {}", cat_dest.display()), f)
        .await
        .unwrap();
    assert!(out.success());
    let cat_time = t.elapsed();
    assert_eq!(
        std::fs::metadata(&cat_dest).unwrap().len(),
        50 * 1024 * 1024
    );
    eprintln!(
        "TIMING upload_50MiB_sftp={sftp_time:?} (incl. local+remote sha256) cat_over_exec={cat_time:?}"
    );
}

fn users() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        ensure_user("k8sup-nopw", true, None);
        ensure_user("k8sup-uplpw", true, Some("upl0ad pw"));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_root_users_upload_to_root_owned_directories_through_sudo() {
    users();
    let (sshd, client) = root_session_parts();
    let remote_dir = tempfile::tempdir().unwrap(); // 0700 root: the login users cannot write here
    std::fs::set_permissions(remote_dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let local = client.dir.path().join("secret.key");
    write_file(&local, 70_000, 4);

    for (user, sudo) in [
        ("k8sup-nopw", Sudo::Passwordless),
        ("k8sup-uplpw", Sudo::Password(Secret::new("upl0ad pw"))),
    ] {
        sshd.authorize(user, &client.key);
        let mut spec = client.spec(&sshd, user);
        spec.sudo = sudo;
        let s = Session::connect(&spec).await.unwrap();
        let dest = remote_dir.path().join(format!("{user}.key"));
        let opts = UploadOptions {
            mode: 0o600,
            owner: Some("root".into()),
            group: Some("root".into()),
            ..Default::default()
        };
        let outcome = s
            .upload(&local, dest.to_str().unwrap(), &opts)
            .await
            .unwrap_or_else(|e| panic!("{user}: {e}"));
        assert_eq!(outcome, UploadOutcome::Written { bytes: 70_000 });
        let meta = std::fs::metadata(&dest).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777),
            (0, 0, 0o600)
        );
        assert_eq!(
            std::fs::read(&dest).unwrap(),
            std::fs::read(&local).unwrap()
        );
        assert_eq!(
            s.upload(&local, dest.to_str().unwrap(), &opts)
                .await
                .unwrap(),
            UploadOutcome::Unchanged
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_falls_back_to_cat_when_sftp_is_disabled() {
    let sshd = Sshd::start_with(
        "127.0.0.2",
        SshdOptions {
            no_sftp: true,
            ..Default::default()
        },
    );
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("root", &client.key);
    let s = Session::connect(&client.spec(&sshd, "root")).await.unwrap();
    let remote_dir = tempfile::tempdir().unwrap();
    let dest = remote_dir.path().join("f.bin");
    let local = client.dir.path().join("f.bin");
    write_file(&local, 3_000_000, 5);
    let outcome = s
        .upload(&local, dest.to_str().unwrap(), &UploadOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome, UploadOutcome::Written { bytes: 3_000_000 });
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&local).unwrap()
    );
    assert!(
        sshd.log().contains("subsystem request for sftp"),
        "SFTP was not even tried:\n{}",
        sshd.log()
    );
    assert!(temps_in(remote_dir.path()).is_empty());
}
