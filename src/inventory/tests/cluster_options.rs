//! The cluster options a platform engineer sets beyond the defaults:
//! component flags (`extraArgs`), control-plane taints, registry mirrors and
//! an external datastore. Each mistake is reported at its line with a fix.

use std::path::Path;

use k8sup_inventory::{ArgsComponent, Diagnostic, Loaded, Report, parse_str};

fn parse(src: &str) -> Result<Loaded, Report> {
    parse_str(src, Path::new("inv.yaml"), &|_| None)
}

fn report(src: &str) -> Report {
    match parse(src) {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(r) => r,
    }
}

fn find<'a>(r: &'a [Diagnostic], needle: &str) -> &'a Diagnostic {
    let found: Vec<_> = r.iter().filter(|d| d.message.contains(needle)).collect();
    assert_eq!(found.len(), 1, "one diagnostic with {needle:?}:\n{r:#?}");
    found[0]
}

/// `cluster:` settings (indented two spaces) and one control plane.
fn with_cluster(settings: &str) -> String {
    format!(
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster:\n  name: demo\n{settings}hosts:\n  - {{ name: cp-1, address: 10.0.0.11, role: control-plane }}\n"
    )
}

#[test]
fn extra_args_keep_nulls_and_normalise_flag_names() {
    let inv = parse(&with_cluster(
        "  extraArgs:\n    kube-apiserver:\n      --profiling: null\n      audit-log-maxage: 30\n      --feature-gates: \"A=true,B=false\"\n",
    ))
    .unwrap()
    .inventory;
    let a = inv.cluster.extra_args.of(ArgsComponent::KubeApiserver);
    assert_eq!(a.get("--profiling"), Some(&None));
    assert_eq!(a.get("--audit-log-maxage"), Some(&Some("30".into())));
    assert_eq!(
        a.get("--feature-gates"),
        Some(&Some("A=true,B=false".into()))
    );
}

#[test]
fn extra_args_mistakes_are_reported_at_their_line() {
    let r = report(&with_cluster(
        "  extraArgs:\n    kube-apiservr:\n      --v: 2\n    kubelet:\n      '--bad flag': 1\n      --max-pods: [1, 2]\n",
    ));
    let d = find(&r.diagnostics, "kube-apiservr");
    assert_eq!((d.line, d.column), (6, 5));
    assert!(
        d.help.as_deref().unwrap_or("").contains("kube-apiserver"),
        "{d:?}"
    );
    let d = find(&r.diagnostics, "'--bad flag' is not a flag name");
    assert_eq!(d.line, 9);
    let d = find(
        &r.diagnostics,
        "the value of --max-pods must be a scalar or null",
    );
    assert_eq!(d.line, 10);
}

#[test]
fn a_worker_with_control_plane_flags_gets_a_warning() {
    let src = "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster: {name: demo}\nhosts:\n  - { name: cp-1, address: 10.0.0.11, role: control-plane }\n  - name: w-1\n    address: 10.0.0.21\n    role: worker\n    extraArgs:\n      kube-scheduler: {--v: 2}\n      kubelet: {--max-pods: 50}\n";
    let loaded = parse(src).unwrap();
    let w = &loaded.inventory.hosts[1];
    assert_eq!(
        w.extra_args.of(ArgsComponent::Kubelet).get("--max-pods"),
        Some(&Some("50".into()))
    );
    let d = find(
        &loaded.warnings,
        "kube-scheduler run only on control planes",
    );
    assert_eq!(d.line, 10);
}

#[test]
fn taints_are_parsed_and_bad_ones_named() {
    let inv = parse(&with_cluster(
        "  controlPlaneTaints: [node-role.kubernetes.io/control-plane:NoSchedule, dedicated=infra:NoExecute]\n",
    ))
    .unwrap()
    .inventory;
    let shown: Vec<String> = inv
        .cluster
        .control_plane_taints
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [
            "node-role.kubernetes.io/control-plane:NoSchedule",
            "dedicated=infra:NoExecute"
        ]
    );
    let r = report(&with_cluster(
        "  controlPlaneTaints:\n    - dedicated:NoWay\n    - 'bad key:NoSchedule'\n",
    ));
    let d = find(&r.diagnostics, "'dedicated:NoWay' is not a taint");
    assert_eq!((d.line, d.column), (6, 7));
    assert!(
        d.help
            .as_deref()
            .unwrap()
            .contains("NoSchedule, PreferNoSchedule or NoExecute")
    );
    find(&r.diagnostics, "'bad key:NoSchedule' is not a taint");
}

#[test]
fn registry_mirrors_need_a_registry_host_and_urls() {
    let inv = parse(&with_cluster(
        "  containerRuntime:\n    registryMirrors:\n      docker.io: [https://mirror.internal:5000]\n      _default: [http://10.0.0.5:5000]\n",
    ))
    .unwrap()
    .inventory;
    assert_eq!(
        inv.cluster.container_runtime.registry_mirrors["docker.io"],
        ["https://mirror.internal:5000"]
    );
    let r = report(&with_cluster(
        "  containerRuntime:\n    registryMirrors:\n      'not a host': [https://m]\n      quay.io: [mirror.internal]\n",
    ));
    let d = find(&r.diagnostics, "'not a host' is not a registry host");
    assert_eq!(d.line, 7);
    let d = find(&r.diagnostics, "'mirror.internal' is not a mirror URL");
    assert_eq!(d.line, 8);
}

#[test]
fn an_external_datastore_needs_tls_urls_and_existing_files() {
    let dir = std::env::temp_dir().join(format!("k8sup-ext-ds-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ca.crt", "client.crt", "client.key"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    let file = dir.join("inv.yaml");
    let good = with_cluster(
        "  datastore:\n    type: external\n    servers: [https://etcd-1:2379, https://10.0.0.5:2379]\n    caFile: ca.crt\n    certFile: client.crt\n    keyFile: client.key\n",
    );
    let inv = parse_str(&good, &file, &|_| None).unwrap().inventory;
    let ext = inv.cluster.datastore.external.as_ref().expect("external");
    assert_eq!(ext.servers.len(), 2);
    assert_eq!(ext.ca_file, dir.join("ca.crt"));

    let bad = with_cluster(
        "  datastore:\n    type: external\n    servers: [http://etcd-1:2379]\n    caFile: ca.crt\n    certFile: missing.crt\n",
    );
    let r = parse_str(&bad, &file, &|_| None).unwrap_err();
    let d = find(
        &r.diagnostics,
        "'http://etcd-1:2379' is not an etcd client URL",
    );
    assert_eq!(d.line, 7);
    let d = find(
        &r.diagnostics,
        "'certFile' in 'cluster.datastore': cannot read",
    );
    assert_eq!(d.line, 9);
    find(&r.diagnostics, "no 'keyFile'");

    // Settings of an external datastore without `type: external`.
    let r = report(&with_cluster(
        "  datastore:\n    servers: [https://etcd-1:2379]\n",
    ));
    let d = find(&r.diagnostics, "are for an external datastore");
    assert_eq!(d.line, 6);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_api_endpoint_takes_a_host_a_port_or_a_url() {
    let url = |e: &str| {
        parse(&with_cluster(&format!(
            "  apiServer: {{endpoint: '{e}'}}\n"
        )))
        .unwrap_or_else(|r| panic!("{e}: {r}"))
        .inventory
        .cluster
        .api_server
        .endpoint
        .expect("an endpoint")
        .url()
    };
    assert_eq!(url("k8s.example.com"), "https://k8s.example.com:6443");
    assert_eq!(url("k8s.example.com:443"), "https://k8s.example.com:443");
    assert_eq!(url("https://192.0.2.10:8443/"), "https://192.0.2.10:8443");
    assert_eq!(url("[2001:db8::1]"), "https://[2001:db8::1]:6443");
    let r = report(&with_cluster("  apiServer:\n    endpoint: http://lb/api\n"));
    let d = find(&r.diagnostics, "'http://lb/api' is not a host[:port]");
    assert_eq!(d.line, 6);
}
