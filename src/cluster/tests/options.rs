//! The inventory's cluster options, as the hosts would get them: per-node
//! extra flags (set, replace, remove), control-plane taints, registry
//! mirrors. Computed without hosts.

use std::path::Path;

use k8sup_cluster::cluster_phases;
use k8sup_engine::ResolvedRollout;

mod common;
use common::{facts, files, text, tmp};

const INVENTORY: &str = "\
apiVersion: k8sup.io/v1alpha1
kind: Cluster
cluster:
  name: t
  extraArgs:
    kube-apiserver:
      --kubelet-preferred-address-types: null
      --audit-log-maxage: 30
      --authorization-mode: RBAC,Node
    kubelet:
      --v: 2
  controlPlaneTaints: [node-role.kubernetes.io/control-plane:NoSchedule, dedicated=infra:NoExecute]
  containerRuntime:
    registryMirrors:
      docker.io: [https://mirror.internal:5000]
      _default: [http://10.0.0.5:5000, https://backup.internal]
hosts:
  - name: cp-0
    address: 10.0.0.10
    role: control-plane
    extraArgs:
      kube-apiserver:
        --audit-log-maxage: 7
  - name: w-0
    address: 10.0.0.20
    role: worker
    extraArgs:
      kubelet:
        max-pods: 50
        --v: null
";

async fn resolved(yaml: &str, test: &str) -> Vec<(String, bool, ResolvedRollout)> {
    let inv = k8sup_inventory::parse_str(yaml, Path::new("t.yaml"), &|_| None)
        .expect("valid")
        .inventory;
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&tmp(test)), common::no_api()).unwrap();
    phases.desired(&facts(&names, "v2")).await.unwrap()
}

fn phase<'a>(d: &'a [(String, bool, ResolvedRollout)], title: &str) -> &'a ResolvedRollout {
    &d.iter().find(|(t, _, _)| t == title).unwrap().2
}

/// The flags of a unit's command line, one per entry.
fn flags(unit: &str) -> Vec<String> {
    let exec = unit
        .split("ExecStart=")
        .nth(1)
        .expect("ExecStart")
        .split("\nRestart")
        .next()
        .unwrap()
        .replace("\\\n", " ");
    exec.split_whitespace()
        .skip(1)
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn extra_args_set_replace_and_remove_flags_host_over_cluster() {
    let d = resolved(INVENTORY, "extra-args").await;
    let api = text(phase(&d, "control plane"), "cp-0", "kube-apiserver.service").unwrap();
    let f = flags(&api);
    assert!(
        !f.iter()
            .any(|x| x.starts_with("--kubelet-preferred-address-types")),
        "{api}"
    );
    // The host's value wins over the cluster's.
    assert!(f.contains(&"--audit-log-maxage=7".to_string()), "{api}");
    // A default flag is replaced where it stands, not given twice.
    assert_eq!(
        f.iter()
            .filter(|x| x.starts_with("--authorization-mode"))
            .count(),
        1
    );
    assert!(
        f.contains(&"--authorization-mode=RBAC,Node".to_string()),
        "{api}"
    );
    // k8sup's other defaults are kept.
    assert!(f.iter().any(|x| x.starts_with("--etcd-servers=")), "{api}");

    let nodes = phase(&d, "nodes");
    let cp_kubelet = text(nodes, "cp-0", "kubelet.service").unwrap();
    assert!(
        flags(&cp_kubelet).contains(&"--v=2".to_string()),
        "{cp_kubelet}"
    );
    let w_kubelet = text(nodes, "w-0", "kubelet.service").unwrap();
    let wf = flags(&w_kubelet);
    // `max-pods` without dashes is `--max-pods`; the host's null drops the
    // cluster's `--v` there only.
    assert!(wf.contains(&"--max-pods=50".to_string()), "{w_kubelet}");
    assert!(!wf.iter().any(|x| x.starts_with("--v")), "{w_kubelet}");
    // A component without edits is the template's text.
    let proxy = text(nodes, "w-0", "kube-proxy.service").unwrap();
    assert!(
        proxy.contains("ExecStart=/usr/local/bin/kube-proxy --config="),
        "{proxy}"
    );
}

#[tokio::test]
async fn removing_a_flag_k8sup_does_not_set_names_the_host_and_the_fix() {
    let yaml = INVENTORY.replace(
        "--kubelet-preferred-address-types: null",
        "--no-such-flag: null",
    );
    let inv = k8sup_inventory::parse_str(&yaml, Path::new("t.yaml"), &|_| None)
        .unwrap()
        .inventory;
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases =
        cluster_phases(&inv, &hosts, files(&tmp("bad-removal")), common::no_api()).unwrap();
    let err = phases.desired(&facts(&names, "v2")).await.unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("cp-0"), "{msg}");
    assert!(msg.contains("kube-apiserver"), "{msg}");
    assert!(msg.contains("k8sup does not set --no-such-flag"), "{msg}");
}

#[tokio::test]
async fn control_planes_register_with_the_inventory_taints_workers_with_none() {
    let d = resolved(INVENTORY, "taints").await;
    let nodes = phase(&d, "nodes");
    let cp: serde_json::Value =
        serde_saphyr::from_str(&text(nodes, "cp-0", "/var/lib/kubelet/config.yaml").unwrap())
            .unwrap();
    assert_eq!(
        cp["registerWithTaints"],
        serde_json::json!([
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "infra", "effect": "NoExecute"},
        ])
    );
    let w: serde_json::Value =
        serde_saphyr::from_str(&text(nodes, "w-0", "/var/lib/kubelet/config.yaml").unwrap())
            .unwrap();
    assert!(w.get("registerWithTaints").is_none(), "{w}");
}

#[tokio::test]
async fn kube_proxy_runs_in_the_inventory_mode() {
    let yaml = "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster: {name: t, kubeProxyMode: nftables}\nhosts:\n  - {name: cp-0, address: 10.0.0.10, role: control-plane}\n";
    let d = resolved(yaml, "nftables").await;
    let config: serde_json::Value = serde_saphyr::from_str(
        &text(
            phase(&d, "nodes"),
            "cp-0",
            "/var/lib/kube-proxy/config.yaml",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(config["mode"], "nftables");
}

#[tokio::test]
async fn registry_mirrors_become_containerd_hosts_files() {
    let d = resolved(INVENTORY, "mirrors").await;
    let nodes = phase(&d, "nodes");
    for host in ["cp-0", "w-0"] {
        let config = text(nodes, host, "/etc/containerd/config.toml").unwrap();
        assert!(
            config.contains("config_path = '/etc/containerd/certs.d'"),
            "{config}"
        );
        let docker = text(nodes, host, "/etc/containerd/certs.d/docker.io/hosts.toml").unwrap();
        assert!(
            docker.contains("server = \"https://registry-1.docker.io\""),
            "{docker}"
        );
        assert!(
            docker.contains("[host.\"https://mirror.internal:5000\"]"),
            "{docker}"
        );
        let any = text(nodes, host, "/etc/containerd/certs.d/_default/hosts.toml").unwrap();
        assert!(!any.contains("server ="), "{any}");
        let first = any.find("http://10.0.0.5:5000").unwrap();
        let second = any.find("https://backup.internal").unwrap();
        assert!(first < second, "mirrors keep their order: {any}");
    }
    // Without mirrors, containerd keeps its built-in registry hosts.
    let plain = resolved(
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster: {name: t}\nhosts:\n  - {name: cp-0, address: 10.0.0.10, role: control-plane}\n",
        "no-mirrors",
    )
    .await;
    let config = text(
        phase(&plain, "nodes"),
        "cp-0",
        "/etc/containerd/config.toml",
    )
    .unwrap();
    assert!(!config.contains("config_path"), "{config}");
}

/// `datastore.type: external`: no k8sup datastore anywhere, the user's
/// credentials on each control plane (the key 0600), kube-apiserver pointed
/// at the user's endpoints with them, and no datastore CA issued.
#[tokio::test]
async fn an_external_datastore_replaces_k8sups_on_every_control_plane() {
    let dir = tmp("external");
    for f in ["ca.crt", "client.crt", "client.key"] {
        std::fs::write(dir.join(f), format!("user's {f}\n")).unwrap();
    }
    let yaml = format!(
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster:\n  name: t\n  datastore:\n    type: external\n    servers: [https://etcd-1:2379, https://etcd-2:2379]\n    caFile: {d}/ca.crt\n    certFile: {d}/client.crt\n    keyFile: {d}/client.key\nhosts:\n  - {{name: cp-0, address: 10.0.0.10, role: control-plane}}\n  - {{name: w-0, address: 10.0.0.20, role: worker}}\n",
        d = dir.display()
    );
    let d = resolved(&yaml, "external-run").await;
    let all_ids = |host: &str| -> Vec<String> {
        d.iter()
            .flat_map(|(_, _, r)| common::ids(r, host))
            .collect()
    };
    for host in ["cp-0", "w-0"] {
        let ids = all_ids(host);
        assert!(
            !ids.iter()
                .any(|i| i.contains("k8sup-datastore.service") || i.contains("pki/datastore")),
            "{host}: {ids:#?}"
        );
    }
    let ds = phase(&d, "datastore");
    let key = ds
        .states_of("cp-0")
        .iter()
        .flat_map(|s| s.resources.iter())
        .find(|r| r.id.to_string().ends_with("external-datastore/client.key"))
        .expect("the client key on the control plane");
    let k8sup_engine::Spec::File { attrs, .. } = &key.resource.spec else {
        panic!("the key is a file: {:?}", key.resource.spec);
    };
    assert_eq!(attrs.mode, Some(0o600));
    assert!(ds.states_of("w-0").iter().all(|s| s.resources.is_empty()));
    let api = text(phase(&d, "control plane"), "cp-0", "kube-apiserver.service").unwrap();
    let f = flags(&api);
    assert!(
        f.contains(&"--etcd-servers=https://etcd-1:2379,https://etcd-2:2379".to_string()),
        "{api}"
    );
    assert!(
        f.contains(&"--etcd-keyfile=/etc/kubernetes/pki/external-datastore/client.key".to_string()),
        "{api}"
    );
    assert!(
        !api.contains("After=network-online.target k8sup-datastore"),
        "{api}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `apiServer.endpoint` (a load balancer users reach) is a name of the API
/// server's certificate, on every control plane.
#[tokio::test]
async fn the_api_endpoint_is_in_the_api_servers_certificate() {
    let yaml = "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster:\n  name: t\n  apiServer: {endpoint: 'https://k8s.example.com:443'}\nhosts:\n  - {name: cp-0, address: 10.0.0.10, role: control-plane}\n";
    let d = resolved(yaml, "endpoint").await;
    let pem = text(
        phase(&d, "certificates"),
        "cp-0",
        "/etc/kubernetes/pki/apiserver.crt",
    )
    .expect("the apiserver certificate");
    let info = k8sup_pki::inspect_file("/etc/kubernetes/pki/apiserver.crt", pem.as_bytes())
        .unwrap()
        .unwrap();
    assert!(
        info.dns_names.iter().any(|n| n == "k8s.example.com"),
        "{:?}",
        info.dns_names
    );
}

/// The add-ons phase asks the API for the objects of `templates/addons/`,
/// in order, reached through the run's control planes with the admin
/// kubeconfig each holds, and for the run's nodes Ready with their roles.
#[test]
fn add_ons_ask_the_api_for_the_templates_objects_and_the_runs_nodes() {
    use base64::Engine as _;
    let inv = common::inventory(3, 2, "");
    let mut f = facts(
        &inv.hosts.iter().map(|h| h.name.clone()).collect::<Vec<_>>(),
        "v2",
    );
    let admin = "apiVersion: v1\nkind: Config\n";
    f.get_mut("cp-1").unwrap().0.insert(
        "secret.pki./etc/kubernetes/admin.conf".into(),
        base64::engine::general_purpose::STANDARD.encode(admin),
    );
    let t = k8sup_cluster::Topology::new(&inv, &f).unwrap();
    let files = files(&tmp("addons-request"));
    // A run of cp-1 and w-1 only (`--host cp-1,w-1`).
    let chosen = |h: &str| h == "cp-1" || h == "w-1";
    let want =
        k8sup_cluster::addons::request(&t, &files, &f, &chosen, &|h| h == "w-1", false).unwrap();
    assert_eq!(want.restarted, ["w-1"]);
    assert_eq!(want.through.len(), 1, "only the chosen control plane");
    assert_eq!(want.through[0].host, "cp-1");
    assert_eq!(want.through[0].port, 6443);
    assert_eq!(want.through[0].admin_kubeconfig.as_deref(), Some(admin));
    let shown = format!("{want:?}");
    assert!(
        !shown.contains("kind: Config") && shown.contains("(held, not shown)"),
        "the request's Debug shows the admin kubeconfig: {shown}"
    );
    let nodes: Vec<(&str, &str)> = want
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.role))
        .collect();
    assert_eq!(nodes, [("cp-1", "control-plane"), ("w-1", "worker")]);
    let kinds: Vec<String> = want
        .objects
        .iter()
        .map(|(tpl, o)| {
            format!(
                "{tpl} {} {}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "addons/rbac.yaml ClusterRoleBinding k8sup:kube-apiserver-kubelet-client",
            "addons/coredns.yaml ServiceAccount coredns",
            "addons/coredns.yaml ClusterRole k8sup:coredns",
            "addons/coredns.yaml ClusterRoleBinding k8sup:coredns",
            "addons/coredns.yaml ConfigMap coredns",
            "addons/coredns.yaml Deployment coredns",
            "addons/coredns.yaml Service kube-dns",
        ]
    );
    let deployment = &want.objects[5].1;
    assert_eq!(deployment["spec"]["replicas"], 2, "two replicas on 5 nodes");
    let service = &want.objects[6].1;
    assert_eq!(service["spec"]["clusterIP"], "10.152.183.10");
    // The Corefile keeps its booleans-looking words as text.
    let corefile = want.objects[4].1["data"]["Corefile"].as_str().unwrap();
    assert!(corefile.contains("cluster.local"), "{corefile}");
    // No control plane has an admin kubeconfig yet: none to go through.
    let fresh = facts(&["cp-0".into(), "cp-1".into()], "v2");
    let want =
        k8sup_cluster::addons::request(&t, &files, &fresh, &|_| true, &|_| false, false).unwrap();
    assert!(want.through.iter().all(|t| t.admin_kubeconfig.is_none()));
    assert_eq!(want.through.len(), 3);
}
