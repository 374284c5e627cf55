//! ~/.ssh/config handling and ProxyJump through real bastions.

mod harness;

use harness::{Client, Sshd, SshdOptions};
use k8sup_ssh::{ConnectSpec, Session, SshError, UnreachableCause};

/// A spec that relies on ssh_config for everything but the alias.
fn alias_spec(client: &Client, config: &std::path::Path, alias: &str) -> ConnectSpec {
    let mut spec = ConnectSpec::new(alias, alias);
    spec.use_agent = false;
    spec.use_ssh_config = true;
    spec.ssh_config_file = Some(config.to_path_buf());
    spec.known_hosts_files = vec![client.known_hosts.clone()];
    spec.retries = 0;
    spec.connect_timeout = std::time::Duration::from_secs(5);
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_hostname_port_user_identityfile_and_known_hosts_come_from_ssh_config() {
    let sshd = Sshd::start("127.0.0.2");
    let client = Client::new();
    client.trust(&sshd);
    sshd.authorize("root", &client.key);
    let config = client.dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "# first match wins, like OpenSSH\nHost web1 web1.lab\n  HostName 127.0.0.2\n  Port {}\n  User root\n  IdentityFile {}\n  UserKnownHostsFile {}\n\nHost *\n  User nobody\n  Port 1\n",
            sshd.port,
            client.key.display(),
            client.known_hosts.display()
        ),
    )
    .unwrap();

    let mut spec = alias_spec(&client, &config, "web1");
    spec.known_hosts_files = vec![]; // from UserKnownHostsFile
    let s = Session::connect(&spec)
        .await
        .expect("connect through the alias");
    assert_eq!(s.user(), "root");
    assert_eq!(s.exec("whoami").await.unwrap().stdout_str().trim(), "root");

    // Explicit values win over the config (like ssh -o): an explicit port that is closed.
    let closed = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut spec = alias_spec(&client, &config, "web1.lab");
    spec.port = Some(closed);
    let err = Session::connect(&spec)
        .await
        .expect_err("explicit port wins");
    assert!(
        matches!(
            err,
            SshError::Unreachable {
                cause: UnreachableCause::Refused,
                ..
            }
        ),
        "{err}"
    );

    // A config that cannot be read is a clear error naming the file.
    let mut spec = alias_spec(&client, &client.dir.path().join("nope"), "web1");
    spec.use_ssh_config = true;
    let err = Session::connect(&spec)
        .await
        .expect_err("missing explicit config");
    assert!(
        err.to_string().contains("cannot read ssh config") && err.to_string().contains("nope"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxyjump_from_ssh_config_goes_through_the_bastion_and_verifies_both_keys() {
    let debug = SshdOptions {
        log_level: Some("DEBUG1"),
        ..Default::default()
    };
    let bastion = Sshd::start_with("127.0.0.2", debug.clone());
    let hop2 = Sshd::start_with("127.0.0.4", debug);
    let target = Sshd::start("127.0.0.3");
    let client = Client::new();
    for s in [&bastion, &hop2, &target] {
        client.trust(s);
        s.authorize("root", &client.key);
    }
    let config = client.dir.path().join("config");
    let entry = |name: &str, s: &Sshd, jump: &str| {
        format!(
            "Host {name}\n  HostName {}\n  Port {}\n  User root\n  IdentityFile {}\n{jump}",
            s.addr,
            s.port,
            client.key.display()
        )
    };
    std::fs::write(
        &config,
        [
            entry("bastion", &bastion, ""),
            entry("hop2", &hop2, ""),
            entry("target", &target, "  ProxyJump bastion\n"),
            entry("deep", &target, "  ProxyJump bastion,hop2\n"),
        ]
        .concat(),
    )
    .unwrap();

    let s = Session::connect(&alias_spec(&client, &config, "target"))
        .await
        .expect("through one bastion");
    assert_eq!(s.exec("echo via").await.unwrap().stdout_str(), "via\n");
    let forwarded = format!("target {} port {}", target.addr, target.port);
    assert!(
        bastion.log().contains(&forwarded),
        "bastion did not forward; log:\n{}",
        bastion.log()
    );

    let s = Session::connect(&alias_spec(&client, &config, "deep"))
        .await
        .expect("through two bastions");
    assert_eq!(s.exec("echo deep").await.unwrap().stdout_str(), "deep\n");
    assert!(
        hop2.log().contains(&forwarded),
        "hop2 did not forward; log:\n{}",
        hop2.log()
    );
    assert!(
        bastion
            .log()
            .contains(&format!("target {} port {}", hop2.addr, hop2.port)),
        "{}",
        bastion.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_proxy_jump_checks_the_target_key_too() {
    let bastion = Sshd::start("127.0.0.2");
    let target = Sshd::start("127.0.0.3");
    let client = Client::new();
    client.trust(&bastion);
    bastion.authorize("root", &client.key);
    target.authorize("root", &client.key);

    let mut spec = client.spec(&target, "root");
    spec.proxy_jump = Some(Box::new(client.spec(&bastion, "root")));
    // The target's key is not known: refused, although the bastion's is.
    let err = Session::connect(&spec)
        .await
        .expect_err("target key unknown");
    assert!(
        matches!(err, SshError::HostKeyUnknown { ref target, .. } if target.starts_with("127.0.0.3:")),
        "{err}"
    );

    client.trust(&target);
    let s = Session::connect(&spec).await.expect("explicit jump");
    assert!(s.exec("true").await.unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_bastion_is_named_in_the_target_error() {
    let target = Sshd::start("127.0.0.3");
    let client = Client::new();
    client.trust(&target);
    let closed = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = client.dir.path().join("config");
    std::fs::write(
        &config,
        format!(
            "Host bastion\n  HostName 127.0.0.2\n  Port {closed}\n  User root\n  IdentityFile {key}\n\
             Host target\n  HostName 127.0.0.3\n  Port {}\n  User root\n  IdentityFile {key}\n  ProxyJump bastion\n",
            target.port,
            key = client.key.display()
        ),
    )
    .unwrap();
    let err = Session::connect(&alias_spec(&client, &config, "target"))
        .await
        .expect_err("bastion down");
    assert!(matches!(err, SshError::Jump { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "target: through jump host: bastion: cannot reach 127.0.0.2:{closed}"
        )),
        "{err}"
    );
}
