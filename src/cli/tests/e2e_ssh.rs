//! End to end on lab machines: the SSH transport as the CLI drives it from
//! an inventory (uploads, sudo for non-root users, jump hosts).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{TestLab, facts_json, row};
use k8sup_ssh::{Session, UploadOptions, UploadOutcome};

fn session(inventory: &std::path::Path, host: &str) -> (tokio::runtime::Runtime, Session) {
    let inv = k8sup_inventory::load(inventory)
        .expect("inventory")
        .inventory;
    let spec = k8sup::connect::spec_for(&inv, inv.host(host).unwrap()).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(Session::connect(&spec)).expect("connect");
    (rt, s)
}

#[test]
fn uploads_are_skipped_when_equal_and_replaced_atomically_when_changed() {
    let lab = TestLab::up("e2e-upload", 1);
    let (rt, s) = session(lab.inventory(), &lab.node(0));
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("blob");
    let content: Vec<u8> = (0..8 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    std::fs::write(&local, &content).unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dest = "/opt/e2e/blob";
    lab.root(0, "mkdir -p /opt/e2e");
    let opts = UploadOptions {
        mode: 0o640,
        ..Default::default()
    };

    let first = rt.block_on(s.upload(&local, dest, &opts)).unwrap();
    assert!(matches!(first, UploadOutcome::Written { .. }), "{first:?}");
    let stat =
        |lab: &TestLab| lab.root(0, &format!("stat -c '%i %a %Y' {dest} && sha256sum {dest}"));
    let before = stat(&lab);
    assert!(before.contains(" 640 "), "{before}");
    let local_sum = text_sha256(&content);
    assert!(
        before.contains(&local_sum),
        "remote content equals local: {before}"
    );

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = rt.block_on(s.upload(&local, dest, &opts)).unwrap();
    assert!(matches!(second, UploadOutcome::Unchanged), "{second:?}");
    assert_eq!(
        stat(&lab),
        before,
        "a skipped upload touches nothing (inode, mode, mtime)"
    );

    let mut changed = content.clone();
    changed[4_000_000] ^= 0xff;
    std::fs::write(&local, &changed).unwrap();
    let third = rt.block_on(s.upload(&local, dest, &opts)).unwrap();
    assert!(matches!(third, UploadOutcome::Written { .. }), "{third:?}");
    let after = stat(&lab);
    let inode = |s: &str| s.split_whitespace().next().unwrap().to_string();
    assert_ne!(
        inode(&after),
        inode(&before),
        "replaced by rename, not rewritten in place"
    );
    assert!(after.contains(&text_sha256(&changed)), "{after}");
    assert_eq!(
        lab.root(0, "ls -A /opt/e2e").trim(),
        "blob",
        "no temporary file left behind"
    );
}

fn text_sha256(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

#[test]
fn a_non_root_user_works_through_sudo_with_and_without_a_password() {
    let lab = TestLab::up("e2e-sudo", 1);
    lab.root(
        0,
        "set -e; for u in ops opspw; do useradd -m -s /bin/bash $u; install -d -m 700 -o $u -g $u /home/$u/.ssh; \
         install -m 600 -o $u -g $u /root/.ssh/authorized_keys /home/$u/.ssh/authorized_keys; done; \
         echo 'ops ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/ops; \
         echo 'opspw:s3cret-pw' | chpasswd; echo 'opspw ALL=(ALL) ALL' > /etc/sudoers.d/opspw",
    );
    let passwordless = lab.custom_inventory("ops.yaml", "  user: ops\n", |_| String::new());
    let (ok, rows, stderr) = facts_json(&passwordless);
    assert!(ok, "{stderr}");
    assert_eq!(row(&rows, &lab.node(0))["ok"], true);
    let (rt, s) = session(&passwordless, &lab.node(0));
    let out = rt
        .block_on(s.exec_checked("id -u; cat /etc/shadow >/dev/null && echo can-read-shadow"))
        .unwrap();
    assert_eq!(
        out.stdout_str(),
        "0\ncan-read-shadow\n",
        "commands run as root"
    );
    let login = rt.block_on(s.exec_as_login("id -un")).unwrap();
    assert_eq!(login.stdout_str().trim(), "ops");

    // A sudo that wants a password, given through an environment variable.
    let with_pw = lab.custom_inventory(
        "opspw.yaml",
        "  user: opspw\n  sudoPasswordEnv: E2E_SUDO_PW\n",
        |_| String::new(),
    );
    // SAFETY: set before any thread of this test reads the environment.
    unsafe { std::env::set_var("E2E_SUDO_PW", "s3cret-pw") };
    let (rt, s) = session(&with_pw, &lab.node(0));
    let out = rt.block_on(s.exec_checked("id -u")).unwrap();
    assert_eq!(out.stdout_str().trim(), "0");
    let cmd = common::k8sup(&["facts", "-i", with_pw.to_str().unwrap()]);
    let all = format!("{}{}", common::text(&cmd.stdout), common::text(&cmd.stderr));
    assert!(!all.contains("s3cret-pw"), "the password is never printed");
}

#[test]
fn proxy_jump_through_one_machine_reaches_another() {
    let lab = TestLab::up("e2e-jump", 2);
    // Machine 2 accepts the lab key only from machine 1's address, so only a
    // connection that really goes through machine 1 can log in.
    let jump_addr = lab.address(0);
    lab.root(
        1,
        &format!("sed -i 's/^/from=\"{jump_addr}\" /' /root/.ssh/authorized_keys"),
    );
    let (ok, rows, _) = facts_json(lab.inventory());
    assert!(!ok, "direct login to machine 2 is refused");
    assert_eq!(row(&rows, &lab.node(1))["ok"], false);

    let jump = lab.node(0);
    let via = lab.custom_inventory("jump.yaml", "", |i| {
        if i == 1 {
            format!("    ssh:\n      proxyJump: {jump}\n")
        } else {
            String::new()
        }
    });
    let (ok, rows, stderr) = facts_json(&via);
    assert!(ok, "{stderr}");
    assert_eq!(row(&rows, &lab.node(1))["hostname"], lab.node(1));
}
