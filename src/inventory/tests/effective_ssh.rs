//! What the SSH layer gets for each host: defaults, overrides, absolute
//! paths, sudo and resolved jump hosts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8sup_inventory::{HostKeyPolicy, Inventory, parse_str};

fn load(src: &str) -> Inventory {
    let env = |_: &str| None;
    match parse_str(src, Path::new("/srv/clusters/prod/inventory.yaml"), &env) {
        Ok(l) => l.inventory,
        Err(r) => panic!("{r}"),
    }
}

const SRC: &str = "apiVersion: k8sup.io/v1alpha1
kind: Cluster
cluster: { name: prod, kubernetesVersion: v1.31.4 }
ssh:
  user: ops
  identityFile: keys/ops_ed25519
  proxyJump: bastion
  hostKeyPolicy: accept-new
  knownHostsFile: ./known_hosts
  sudoPasswordEnv: K8SUP_SUDO_PASSWORD
  connectTimeout: 1m 30s
hosts:
  - name: bastion
    address: 203.0.113.10
    role: worker
    ssh: { port: 2222, user: jump, identityFile: /etc/k8sup/jump_key }
  - name: cp-1
    address: 10.0.0.11
    role: control-plane
  - name: cp-2
    address: 10.0.0.12
    role: control-plane
    ssh: { user: root, sudo: never, retries: 5, agent: false }
  - name: cp-3
    address: 10.0.0.13
    role: control-plane
    ssh: { proxyJump: 'admin@[2001:db8::5]:2200', identityFile: ~/.ssh/cp3 }
";

#[test]
fn defaults_are_overridden_per_host_and_paths_are_absolute() {
    let inv = load(SRC);
    let cp1 = inv.effective_ssh(inv.host("cp-1").unwrap());
    assert_eq!(cp1.address, "10.0.0.11");
    assert_eq!(cp1.port, 22);
    assert_eq!(cp1.user, "ops");
    assert!(cp1.sudo, "sudo: auto with a non-root user");
    assert_eq!(
        cp1.identity_file.as_deref(),
        Some(Path::new("/srv/clusters/prod/keys/ops_ed25519"))
    );
    assert_eq!(
        cp1.known_hosts_file.as_deref(),
        Some(Path::new("/srv/clusters/prod/./known_hosts"))
    );
    assert_eq!(cp1.host_key_policy, HostKeyPolicy::AcceptNew);
    assert_eq!(cp1.connect_timeout, Duration::from_secs(90));
    assert_eq!(cp1.retries, 2);
    assert!(cp1.agent && cp1.use_ssh_config);
    assert_eq!(
        cp1.sudo_password_env.as_deref(),
        Some("K8SUP_SUDO_PASSWORD")
    );
    assert_eq!(
        cp1.explicit.port, None,
        "not set in the inventory: ~/.ssh/config may fill it"
    );

    let cp2 = inv.effective_ssh(inv.host("cp-2").unwrap());
    assert_eq!(cp2.user, "root");
    assert!(!cp2.sudo);
    assert_eq!(cp2.retries, 5);
    assert!(!cp2.agent);
}

#[test]
fn proxy_jump_naming_a_host_resolves_to_its_connection_details() {
    let inv = load(SRC);
    let cp1 = inv.effective_ssh(inv.host("cp-1").unwrap());
    let jump = cp1.proxy_jump.expect("jumps through the bastion");
    assert_eq!(jump.host.as_deref(), Some("bastion"));
    assert_eq!(
        (jump.address.as_str(), jump.port, jump.user.as_str()),
        ("203.0.113.10", 2222, "jump")
    );
    assert_eq!(
        jump.identity_file.as_deref(),
        Some(Path::new("/etc/k8sup/jump_key"))
    );
    // The default proxyJump does not apply to the bastion itself.
    let bastion = inv.effective_ssh(inv.host("bastion").unwrap());
    assert!(bastion.proxy_jump.is_none());
    assert_eq!(bastion.port, 2222);
}

#[test]
fn proxy_jump_spec_and_home_expansion() {
    let inv = load(SRC);
    let cp3 = inv.effective_ssh(inv.host("cp-3").unwrap());
    let jump = cp3.proxy_jump.unwrap();
    assert_eq!(jump.host, None);
    assert_eq!(
        (jump.address.as_str(), jump.port, jump.user.as_str()),
        ("2001:db8::5", 2200, "admin")
    );
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap();
    assert_eq!(cp3.identity_file, Some(home.join(".ssh/cp3")));
}

#[test]
fn built_in_defaults() {
    let inv = load(
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster: { name: a, kubernetesVersion: v1.31.4 }\nhosts: [{ name: a, address: a.example.com, role: control-plane }]\n",
    );
    let e = inv.effective_ssh(&inv.hosts[0]);
    assert_eq!((e.user.as_str(), e.port, e.sudo), ("root", 22, false));
    assert_eq!(
        e.host_key_policy,
        HostKeyPolicy::Strict,
        "host keys are verified by default"
    );
    assert_eq!(
        (e.identity_file, e.known_hosts_file, e.proxy_jump),
        (None, None, None)
    );
    assert_eq!(e.connect_timeout, Duration::from_secs(10));
}

#[test]
fn proxy_jump_none_turns_the_default_off_for_one_host() {
    let src = SRC.replace(
        "    ssh: { user: root, sudo: never, retries: 5, agent: false }",
        "    ssh: { proxyJump: none }",
    );
    let inv = load(&src);
    assert!(
        inv.effective_ssh(inv.host("cp-2").unwrap())
            .proxy_jump
            .is_none()
    );
    assert!(
        inv.effective_ssh(inv.host("cp-1").unwrap())
            .proxy_jump
            .is_some()
    );
}

/// Other crates (the lab) write inventories by serializing `Inventory`: what
/// they write must read back as the same inventory.
#[test]
fn serialized_inventory_reads_back_identically() {
    let inv = load(SRC);
    let yaml = serde_saphyr::to_string(&inv).unwrap();
    assert!(yaml.contains("kubernetesVersion: v1.31.4"), "{yaml}");
    let again = load(&yaml);
    assert_eq!(again, inv, "{yaml}");
}

/// The same, with every cluster setting beyond the defaults: taints, flag
/// edits (a null included), the API endpoint, kube-proxy's mode, registry
/// mirrors and an external etcd.
#[test]
fn an_inventory_with_every_cluster_setting_reads_back_identically() {
    let dir = std::env::temp_dir().join(format!("k8sup-roundtrip-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ca.crt", "client.crt", "client.key"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    let src = format!(
        "apiVersion: k8sup.io/v1alpha1
kind: Cluster
cluster:
  name: demo
  kubernetesVersion: v1.37.2
  apiServer: {{endpoint: 'k8s.example.com'}}
  kubeProxyMode: nftables
  controlPlaneTaints: ['node-role.kubernetes.io/control-plane:NoSchedule', 'dedicated=infra:NoExecute']
  extraArgs:
    kube-apiserver: {{--profiling: null, --v: 2}}
  containerRuntime:
    registryMirrors: {{docker.io: ['https://mirror.example.com:5000']}}
  datastore:
    type: external
    servers: ['https://etcd-1:2379']
    caFile: {d}/ca.crt
    certFile: {d}/client.crt
    keyFile: {d}/client.key
hosts:
  - name: cp-1
    address: 10.0.0.11
    role: control-plane
    extraArgs: {{kubelet: {{--max-pods: 50}}}}
",
        d = dir.display()
    );
    let inv = load(&src);
    let yaml = serde_saphyr::to_string(&inv).unwrap();
    let again = load(&yaml);
    assert_eq!(again, inv, "{yaml}");
    let _ = std::fs::remove_dir_all(&dir);
}
