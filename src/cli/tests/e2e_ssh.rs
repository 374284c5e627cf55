//! End to end on lab machines: the SSH transport as the CLI drives it from
//! an inventory (sudo for non-root users, jump hosts). The engine's uploads
//! are tested with the engine (src/engine/tests) and by `e2e_apply.rs`.

mod common;

use common::{TestLab, facts_json, row};
use k8sup_ssh::Session;

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
