//! Every validation rule, asserted the way a user sees it: file, line,
//! column, message and help.

use std::path::Path;

use k8sup_inventory::{Diagnostic, Loaded, Report, Role, Severity, parse_str};

fn env(name: &str) -> Option<String> {
    match name {
        "SSH_USER" => Some("deploy".into()),
        "SSH_PORT" => Some("2200".into()),
        "BAD_PORT" => Some("hunter2-secret".into()),
        "ROLE" => Some("worker".into()),
        _ => None,
    }
}

fn parse(src: &str) -> Result<Loaded, Report> {
    parse_str(src, Path::new("inv.yaml"), &env)
}

fn report(src: &str) -> Report {
    match parse(src) {
        Ok(_) => panic!("expected errors for:\n{src}"),
        Err(r) => r,
    }
}

/// The one diagnostic whose message contains `needle`.
fn find<'a>(r: &'a [Diagnostic], needle: &str) -> &'a Diagnostic {
    let found: Vec<_> = r.iter().filter(|d| d.message.contains(needle)).collect();
    assert_eq!(
        found.len(),
        1,
        "expected one diagnostic containing {needle:?}, got:\n{r:#?}"
    );
    found[0]
}

fn at(d: &Diagnostic) -> (usize, usize) {
    (d.line, d.column)
}

const HEADER: &str = "apiVersion: k8sup.io/v1alpha1
kind: Cluster
cluster:
  name: demo
  kubernetesVersion: v1.31.4
";

fn with_hosts(hosts: &str) -> String {
    format!("{HEADER}hosts:\n{hosts}")
}

#[test]
fn minimal_inventory_loads_with_defaults() {
    let src = with_hosts("  - { name: cp-1, address: 10.0.0.11, role: control-plane }\n");
    let loaded = parse(&src).expect("valid");
    let inv = loaded.inventory;
    assert!(loaded.warnings.is_empty());
    assert_eq!(inv.cluster.kubernetes_version.to_string(), "1.31.4");
    assert_eq!(inv.cluster.pod_cidr.to_string(), "10.1.0.0/16");
    assert_eq!(inv.cluster.service_cidr.to_string(), "10.152.183.0/24");
    assert_eq!(inv.cluster.api_server.port, 6443);
    assert_eq!(inv.options.concurrency, 64);
    assert_eq!(inv.hosts[0].role, Role::ControlPlane);
    assert_eq!(inv.control_planes().count(), 1);
    assert_eq!(inv.workers().count(), 0);
    assert!(inv.host("cp-1").is_some());
    assert!(inv.path.is_absolute());
}

#[test]
fn version_without_v_and_unquoted_is_normalised() {
    let src = HEADER.replace("v1.31.4", "1.30.2")
        + "hosts: [{ name: a, address: h, role: control-plane }]\n";
    assert_eq!(
        parse(&src)
            .unwrap()
            .inventory
            .cluster
            .kubernetes_version
            .to_string(),
        "1.30.2"
    );
    let src = HEADER.replace("v1.31.4", "1.30")
        + "hosts: [{ name: a, address: h, role: control-plane }]\n";
    let r = report(&src);
    let d = find(&r.diagnostics, "is not a version");
    assert_eq!(at(d), (5, 22));
    assert!(
        d.message.contains("'1.30'"),
        "raw text kept, not the float 1.3: {}",
        d.message
    );
    assert_eq!(
        d.help.as_deref(),
        Some("give the full version including the patch release, e.g. 'v1.30.0'")
    );
}

#[test]
fn yaml_syntax_error_has_position() {
    let src =
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\nhosts:\n  - name: a\n   address: [1, 2\n";
    let r = report(src);
    assert_eq!(r.diagnostics.len(), 1, "{r}");
    let d = &r.diagnostics[0];
    assert!(d.message.starts_with("invalid YAML"), "{}", d.message);
    assert_eq!(d.file, "inv.yaml");
    assert!(
        d.line >= 4,
        "points into the broken block, got line {}",
        d.line
    );
}

#[test]
fn unknown_key_with_did_you_mean() {
    let src = with_hosts("  - name: cp-1\n    adress: 10.0.0.11\n    role: control-plane\n");
    let r = report(&src);
    let d = find(&r.diagnostics, "unknown key 'adress'");
    assert_eq!(d.message, "unknown key 'adress' in host 'cp-1'");
    assert_eq!(at(d), (8, 5));
    assert_eq!(d.help.as_deref(), Some("did you mean 'address'?"));
    // Not also "missing required key 'address'": one typo, one error.
    assert_eq!(r.error_count(), 1, "{r}");
    let rendered = r.to_string();
    assert!(
        rendered.contains("inv.yaml:8:5: error: unknown key 'adress' in host 'cp-1'"),
        "{rendered}"
    );
    assert!(
        rendered.contains("8 |     adress: 10.0.0.11\n  |     ^^^^^^"),
        "{rendered}"
    );
    assert!(
        rendered.contains("= help: did you mean 'address'?"),
        "{rendered}"
    );
}

#[test]
fn unknown_top_level_and_cluster_keys() {
    let src = format!(
        "{HEADER}  podCidr: 10.1.0.0/16\nhosts: [{{ name: a, address: h, role: control-plane }}]\nsssh: {{}}\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "unknown key 'podCidr'");
    assert_eq!(
        (at(d), d.help.as_deref()),
        ((6, 3), Some("did you mean 'podCIDR'?"))
    );
    let d = find(&r.diagnostics, "unknown key 'sssh'");
    assert_eq!(
        (at(d), d.help.as_deref()),
        ((8, 1), Some("did you mean 'ssh'?"))
    );
}

#[test]
fn wrong_types() {
    let src = with_hosts(
        "  - name: cp-1\n    address: [10.0.0.11]\n    role: control-plane\n    groups: rack-a\n    ssh: { agent: yes, connectTimeout: 10 }\n",
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "'address' of host 'cp-1' must be a string");
    assert_eq!(
        d.message,
        "'address' of host 'cp-1' must be a string, found a list"
    );
    assert_eq!(at(d), (8, 14));
    let d = find(&r.diagnostics, "'groups' of host 'cp-1' must be a list");
    assert_eq!(at(d), (10, 13));
    let d = find(&r.diagnostics, "'agent'");
    assert_eq!(at(d), (11, 19));
    assert!(
        d.help
            .as_deref()
            .unwrap()
            .contains("yes/no/on/off are not booleans")
    );
    let d = find(&r.diagnostics, "'connectTimeout'");
    assert_eq!(at(d), (11, 40));
    assert_eq!(d.help.as_deref(), Some("add a unit, e.g. '10s'"));
}

#[test]
fn missing_required_keys() {
    let src = "apiVersion: k8sup.io/v1alpha1\ncluster:\n  name: demo\nhosts:\n  - name: cp-1\n    role: control-plane\n";
    let r = report(src);
    let d = find(&r.diagnostics, "missing required key 'kind'");
    assert_eq!(at(d), (1, 1));
    assert!(
        !r.diagnostics
            .iter()
            .any(|d| d.message.contains("kubernetesVersion")),
        "kubernetesVersion has a default"
    );
    let d = find(
        &r.diagnostics,
        "missing required key 'address' in host 'cp-1'",
    );
    assert_eq!(at(d), (5, 5));
}

#[test]
fn unknown_api_version_lists_supported_ones() {
    let src = HEADER.replace("k8sup.io/v1alpha1", "k8sup.io/v1alpha2")
        + "hosts: [{ name: a, address: h, role: control-plane }]\n";
    let r = report(&src);
    let d = find(&r.diagnostics, "unsupported apiVersion");
    assert_eq!(
        d.message,
        "unsupported apiVersion 'k8sup.io/v1alpha2'; this k8sup reads: k8sup.io/v1alpha1"
    );
    assert_eq!(at(d), (1, 13));
    assert_eq!(d.help.as_deref(), Some("did you mean 'k8sup.io/v1alpha1'?"));
}

#[test]
fn duplicate_host_names_and_addresses() {
    let src = with_hosts(
        "  - { name: cp-1, address: 10.0.0.11, role: control-plane }\n  - { name: cp-1, address: 10.0.0.12, role: worker }\n  - { name: w-2, address: 10.0.0.11, role: worker }\n  - { name: w-3, address: 10.0.0.11, role: worker, ssh: { port: 2222 } }\n",
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "duplicate host name 'cp-1'");
    assert_eq!(at(d), (8, 13));
    assert!(d.help.as_deref().unwrap().contains("line 7"));
    // Same address, same port: an error; same address behind another port: fine.
    let d = find(&r.diagnostics, "duplicate address '10.0.0.11'");
    assert_eq!(
        d.message,
        "duplicate address '10.0.0.11' (ssh port 22) in host 'w-2'"
    );
    assert_eq!(at(d), (9, 27));
    assert!(d.help.as_deref().unwrap().contains("host 'cp-1' on line 7"));
}

#[test]
fn bad_and_overlapping_cidrs() {
    let src = format!(
        "{HEADER}  podCIDR: 10.1.0.0/33\n  serviceCIDR: 10.152.183.1/24\nhosts: [{{ name: a, address: h, role: control-plane }}]\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "'podCIDR'");
    assert_eq!(
        (at(d), d.message.as_str()),
        (
            (6, 12),
            "'podCIDR' in 'cluster': '10.1.0.0/33' is not a CIDR such as '10.1.0.0/16'"
        )
    );
    let d = find(&r.diagnostics, "host bits set");
    assert_eq!(
        (at(d), d.help.as_deref()),
        ((7, 16), Some("did you mean '10.152.183.0/24'?"))
    );

    let src = format!(
        "{HEADER}  podCIDR: 10.0.0.0/8\n  serviceCIDR: 10.152.183.0/24\nhosts: [{{ name: a, address: 192.0.2.1, role: control-plane }}]\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "overlap");
    assert_eq!(
        d.message,
        "podCIDR 10.0.0.0/8 and serviceCIDR 10.152.183.0/24 overlap"
    );
    assert_eq!(at(d), (7, 16));
}

#[test]
fn host_address_inside_pod_network() {
    let r = report(&with_hosts(
        "  - { name: a, address: 10.1.2.3, role: control-plane }\n",
    ));
    let d = find(&r.diagnostics, "inside the cluster's podCIDR");
    assert_eq!(at(d), (7, 25));
}

#[test]
fn no_control_plane_and_unknown_role() {
    let src = with_hosts(
        "  - name: w-1\n    address: 10.0.0.21\n    role: worker\n  - name: w-2\n    address: 10.0.0.22\n    role: wroker\n",
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "unknown role");
    assert_eq!(
        d.message,
        "unknown role 'wroker' for host 'w-2', expected 'control-plane' or 'worker'"
    );
    assert_eq!(
        (at(d), d.help.as_deref()),
        ((12, 11), Some("did you mean 'worker'?"))
    );
    // With a host unreadable, "no control plane" would be a guess: not reported.
    assert!(
        !r.diagnostics
            .iter()
            .any(|d| d.message.contains("no control-plane"))
    );

    let r = report(&with_hosts(
        "  - { name: w-1, address: 10.0.0.21, role: worker }\n",
    ));
    let d = find(&r.diagnostics, "no control-plane host");
    assert_eq!(at(d), (7, 5));

    let r = report(&with_hosts(
        "  - { name: m, address: 10.0.0.21, role: master }\n",
    ));
    let d = find(&r.diagnostics, "unknown role");
    assert_eq!(
        d.help.as_deref(),
        Some("k8sup calls this role 'control-plane'")
    );
}

#[test]
fn two_control_planes_are_an_error_and_four_a_warning() {
    let src = with_hosts(
        "  - { name: cp-1, address: 10.0.0.11, role: control-plane }\n  - { name: cp-2, address: 10.0.0.12, role: control-plane }\n",
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "2 control-plane hosts");
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(
        d.message,
        "2 control-plane hosts: the datastore stops when either one stops"
    );
    assert!(d.help.as_deref().unwrap().contains("use 1, or 3"), "{d:?}");
    assert_eq!(at(d), (8, 5));

    // Four is where three grow to five: allowed, with a warning.
    let four: String = (1..=4)
        .map(|i| format!("  - {{ name: cp-{i}, address: 10.0.0.1{i}, role: control-plane }}\n"))
        .collect();
    let loaded = parse(&with_hosts(&four)).expect("a warning does not fail");
    assert_eq!(loaded.warnings.len(), 1);
    let d = &loaded.warnings[0];
    assert_eq!(d.severity, Severity::Warning);
    assert_eq!(
        d.message,
        "4 control-plane hosts: an even number adds no fault tolerance"
    );
    assert_eq!(at(d), (10, 5));
}

#[test]
fn invalid_dns_labels() {
    let src = HEADER.replace("name: demo", "name: Demo_Cluster")
        + "hosts:\n  - { name: CP.1, address: 10.0.0.11, role: control-plane }\n";
    let r = report(&src);
    let d = find(&r.diagnostics, "cluster name");
    assert_eq!(at(d), (4, 9));
    assert!(d.help.as_deref().unwrap().ends_with("e.g. 'demo-cluster'"));
    let d = find(&r.diagnostics, "host name");
    assert_eq!(
        d.message,
        "host name: 'CP.1' is not a valid DNS label (RFC 1123)"
    );
    assert_eq!(at(d), (7, 13));
}

#[test]
fn bad_ports() {
    let src = format!(
        "{HEADER}  apiServer: {{ port: 70000 }}\n  datastore: {{ clientPort: 0, peerPort: http }}\nssh: {{ port: -1 }}\nhosts: [{{ name: a, address: h, role: control-plane }}]\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "'port' in 'cluster.apiServer'");
    assert_eq!(
        (at(d), d.message.as_str()),
        (
            (6, 22),
            "'port' in 'cluster.apiServer' must be a whole number from 1 to 65535, found '70000'"
        )
    );
    assert_eq!(at(find(&r.diagnostics, "'clientPort'")), (7, 28));
    assert_eq!(at(find(&r.diagnostics, "'peerPort'")), (7, 41));
    assert_eq!(at(find(&r.diagnostics, "'port' in 'ssh'")), (8, 14));
}

#[test]
fn clashing_cluster_ports() {
    let src = format!(
        "{HEADER}  datastore: {{ clientPort: 6443 }}\nhosts: [{{ name: a, address: h, role: control-plane }}]\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "uses port 6443");
    assert_eq!(
        d.message,
        "'cluster' uses port 6443 for both apiServer.port and datastore.clientPort"
    );
}

#[test]
fn proxy_jump_must_be_a_host_or_a_spec() {
    let src = with_hosts(
        "  - { name: bastion, address: 203.0.113.5, role: worker }\n  - { name: cp-1, address: 10.0.0.11, role: control-plane, ssh: { proxyJump: 'ops@bad host' } }\n  - { name: cp-2, address: 10.0.0.12, role: control-plane, ssh: { proxyJump: bastoin } }\n  - { name: cp-3, address: 10.0.0.13, role: control-plane, ssh: { proxyJump: 'jump:99999' } }\n",
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "proxyJump 'ops@bad host'");
    assert_eq!(at(d), (8, 78));
    assert!(
        d.message
            .contains("neither an inventory host nor [user@]host[:port]"),
        "{}",
        d.message
    );
    let d = find(&r.diagnostics, "proxyJump 'jump:99999'");
    assert!(
        d.message.ends_with("'99999' is not a port (1-65535)"),
        "{}",
        d.message
    );
    // A bare word close to a host name is probably a typo: a warning.
    let d = find(&r.diagnostics, "proxyJump 'bastoin'");
    assert_eq!((d.severity, at(d)), (Severity::Warning, (9, 78)));
    assert_eq!(d.help.as_deref(), Some("did you mean host 'bastion'?"));
}

#[test]
fn chained_and_self_jumps_are_refused() {
    let src = format!(
        "{HEADER}ssh: {{ proxyJump: ops@jump.example.com }}\nhosts:\n  - {{ name: bastion, address: 203.0.113.5, role: worker }}\n  - {{ name: cp-1, address: 10.0.0.11, role: control-plane, ssh: {{ proxyJump: bastion }} }}\n  - {{ name: w-1, address: 10.0.0.21, role: worker, ssh: {{ proxyJump: w-1 }} }}\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "chained jumps are not supported");
    assert_eq!(at(d), (9, 78));
    let d = find(&r.diagnostics, "cannot jump through itself");
    assert_eq!(at(d), (10, 70));
}

#[test]
fn unknown_host_key_policy_and_sudo() {
    let src = format!(
        "{HEADER}ssh:\n  hostKeyPolicy: accept_new\n  sudo: sometimes\nhosts: [{{ name: a, address: h, role: control-plane }}]\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "hostKeyPolicy");
    assert_eq!(
        d.message,
        "unknown value 'accept_new' for 'hostKeyPolicy' in 'ssh', expected one of 'strict', 'accept-new'"
    );
    assert_eq!(
        (at(d), d.help.as_deref()),
        ((7, 18), Some("did you mean 'accept-new'?"))
    );
    assert_eq!(at(find(&r.diagnostics, "'sudo' in 'ssh'")), (8, 9));
}

#[test]
fn sudo_password_must_be_a_variable_name_and_is_never_echoed() {
    let src = format!(
        "{HEADER}ssh: {{ sudoPasswordEnv: 'S3cr3t pass!' }}\nhosts: [{{ name: a, address: h, role: control-plane }}]\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "sudoPasswordEnv");
    assert_eq!(at(d), (6, 25));
    assert!(
        !r.to_string()
            .replace("ssh: { sudoPasswordEnv: 'S3cr3t pass!' }", "")
            .contains("S3cr3t")
    );
}

#[test]
fn address_with_user_or_port_says_where_they_go() {
    let r = report(&with_hosts(
        "  - { name: a, address: 'root@10.0.0.1', role: control-plane }\n  - { name: b, address: '10.0.0.2:2222', role: worker }\n",
    ));
    let d = find(&r.diagnostics, "'address' of host 'a'");
    assert_eq!(
        d.help.as_deref(),
        Some("put the user in 'ssh: { user: root }' and the address '10.0.0.1' here")
    );
    let d = find(&r.diagnostics, "'address' of host 'b'");
    assert_eq!(
        d.help.as_deref(),
        Some("put the port in 'ssh: { port: 2222 }' and the address '10.0.0.2' here")
    );
}

#[test]
fn duplicate_yaml_keys() {
    let src = with_hosts(
        "  - name: a\n    address: 10.0.0.1\n    role: control-plane\n    address: 10.0.0.2\n",
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "duplicate key 'address'");
    assert_eq!(at(d), (10, 5));
    assert_eq!(
        d.help.as_deref(),
        Some("'address' is already set on line 8; keep only one")
    );
}

#[test]
fn empty_file_and_non_mapping() {
    let r = report("# nothing here\n");
    assert_eq!(r.diagnostics[0].message, "the inventory file is empty");
    let r = report("- a\n- b\n");
    assert_eq!(
        r.diagnostics[0].message,
        "the inventory must be a mapping of 'key: value' lines, found a list"
    );
    assert_eq!(at(&r.diagnostics[0]), (1, 1));
}

#[test]
fn every_problem_of_a_bad_file_is_reported_together() {
    let src = "apiVersion: k8sup.io/v1alpha1
kind: Cluster
cluster:
  name: Demo
  kubernetesVersion: v1.31.4
  podCIDR: 10.1.0.0/16
  serviceCIDR: 10.1.0.0/24
ssh:
  hostKeyPolicy: loose
  port: 0
hosts:
  - name: cp-1
    adress: 10.0.0.11
    role: control-plane
  - name: cp-1
    address: 10.0.0.12
    role: controlplane
  - name: w-1
    address: ${WORKER_ADDR}
    role: worker
";
    let r = report(src);
    let got: Vec<(usize, usize, &str)> = r
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column, d.message.as_str()))
        .collect();
    let expected: Vec<(usize, usize, &str)> = vec![
        (
            4,
            9,
            "cluster name: 'Demo' is not a valid DNS label (RFC 1123)",
        ),
        (
            7,
            16,
            "podCIDR 10.1.0.0/16 and serviceCIDR 10.1.0.0/24 overlap",
        ),
        (
            9,
            18,
            "unknown value 'loose' for 'hostKeyPolicy' in 'ssh', expected one of 'strict', 'accept-new'",
        ),
        (
            10,
            9,
            "'port' in 'ssh' must be a whole number from 1 to 65535, found '0'",
        ),
        (13, 5, "unknown key 'adress' in host 'cp-1'"),
        (15, 11, "duplicate host name 'cp-1'"),
        (
            17,
            11,
            "unknown role 'controlplane' for host 'cp-1', expected 'control-plane' or 'worker'",
        ),
        (19, 14, "environment variable 'WORKER_ADDR' is not set"),
    ];
    assert_eq!(got, expected, "\n{r}");
    assert_eq!(r.error_count(), 8);
    assert!(
        r.to_string()
            .starts_with("invalid inventory inv.yaml (8 errors)")
    );
}

#[test]
fn env_substitution_in_values() {
    let src = with_hosts(
        "  - name: cp-1\n    address: ${CP_ADDR:-10.0.0.11}\n    role: ${ROLE:-control-plane}\n    ssh: { user: \"${SSH_USER}\", port: '${SSH_PORT}' }\n    vars: { literal: '$${NOT_A_VAR}', n: 3, q: '3' }\n  - { name: cp-2, address: 10.0.0.12, role: control-plane }\n",
    );
    let inv = parse(&src).expect("valid").inventory;
    let h = &inv.hosts[0];
    assert_eq!(h.address, "10.0.0.11");
    assert_eq!(h.role, Role::Worker, "ROLE is set to worker");
    assert_eq!(h.ssh.user.as_deref(), Some("deploy"));
    assert_eq!(h.ssh.port, Some(2200));
    assert_eq!(h.vars["literal"], serde_json::json!("${NOT_A_VAR}"));
    assert_eq!(h.vars["n"], serde_json::json!(3));
    assert_eq!(h.vars["q"], serde_json::json!("3"));
}

#[test]
fn unset_env_vars_are_errors_at_their_position_in_the_file() {
    let src = with_hosts(
        "  - name: cp-1\n    address: \"x-${A}-${SSH_USER}-${B}\"\n    role: control-plane\n    ssh: { identityFile: '~/.ssh/${KEY}' }\n",
    );
    let r = report(&src);
    assert_eq!(at(find(&r.diagnostics, "'A' is not set")), (8, 17));
    assert_eq!(at(find(&r.diagnostics, "'B' is not set")), (8, 34));
    let d = find(&r.diagnostics, "'KEY' is not set");
    assert_eq!(at(d), (10, 34));
    assert_eq!(
        d.help.as_deref(),
        Some("export KEY=..., or give a default: '${KEY:-value}'")
    );
}

#[test]
fn substituted_values_are_never_printed() {
    let src = with_hosts(
        "  - { name: cp-1, address: 10.0.0.11, role: control-plane, ssh: { port: '${BAD_PORT}' } }\n",
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "'port' in 'ssh' of host 'cp-1'");
    assert_eq!(
        d.message,
        "'port' in 'ssh' of host 'cp-1' must be a whole number from 1 to 65535, found the value from ${BAD_PORT}"
    );
    assert!(!r.to_string().contains("hunter2"), "{r}");
    assert!(
        !serde_json::to_string(&r.diagnostics)
            .unwrap()
            .contains("hunter2")
    );
}

#[test]
fn anchors_and_merge_keys() {
    // `x-` keys at the top level are a home for anchors; other unknown keys
    // stay errors.
    let src = format!(
        "{HEADER}x-workers: &worker {{ role: worker, ssh: {{ user: ubuntu }} }}\nhosts:\n  - {{ name: cp-1, address: 10.0.0.11, role: control-plane }}\n  - {{ <<: *worker, name: w-1, address: 10.0.0.21 }}\n"
    );
    let inv = parse(&src).unwrap_or_else(|r| panic!("{r}")).inventory;
    assert_eq!(inv.hosts[1].role, Role::Worker);
    assert_eq!(inv.hosts[1].ssh.user.as_deref(), Some("ubuntu"));
    let src = with_hosts(
        "  - &cp { name: cp-1, address: 10.0.0.11, role: control-plane, ssh: { user: ubuntu } }\n  - { <<: *cp, name: cp-2, address: 10.0.0.12 }\n  - { <<: *cp, name: cp-3, address: 10.0.0.13, ssh: { user: admin } }\n",
    );
    let inv = parse(&src).expect("valid").inventory;
    assert_eq!(inv.hosts[1].role, Role::ControlPlane);
    assert_eq!(inv.hosts[1].ssh.user.as_deref(), Some("ubuntu"));
    assert_eq!(
        inv.hosts[2].ssh.user.as_deref(),
        Some("admin"),
        "explicit keys win over merged ones"
    );
}

#[test]
fn group_named_like_a_host_is_a_warning() {
    let src =
        with_hosts("  - { name: cp-1, address: 10.0.0.11, role: control-plane, groups: [cp-1] }\n");
    let loaded = parse(&src).expect("valid");
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(
        loaded.warnings[0].message,
        "group 'cp-1' of host 'cp-1' has the same name as a host"
    );
}

#[test]
fn diagnostics_serialize_for_json_output() {
    let r = report(&with_hosts(
        "  - { name: cp-1, adress: x, address: 10.0.0.11, role: control-plane }\n",
    ));
    let v = serde_json::to_value(&r.diagnostics).unwrap();
    assert_eq!(
        v[0],
        serde_json::json!({
            "severity": "error", "file": "inv.yaml", "line": 7, "column": 19,
            "message": "unknown key 'adress' in host 'cp-1'", "help": "did you mean 'address'?"
        })
    );
}

#[test]
fn alias_bombs_are_stopped() {
    let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        src.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let started = std::time::Instant::now();
    let r = report(&src);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let d = find(&r.diagnostics, "aliases expand this document");
    // a5 (line 6) is the first list bigger than the limit: 1 + 10 * 111_111 values.
    assert_eq!(d.line, 6, "stopped at the alias that crosses the limit");
}

#[test]
fn one_problem_in_an_aliased_value_is_reported_once() {
    let src = format!(
        "{HEADER}x-ssh: &ssh {{ user: '${{NOPE}}' }}\nhosts:\n  - {{ name: a, address: 10.0.0.1, role: control-plane, ssh: *ssh }}\n  - {{ name: b, address: 10.0.0.2, role: worker, ssh: *ssh }}\n"
    );
    let r = report(&src);
    assert_eq!(r.error_count(), 1, "{r}");
    assert_eq!(at(find(&r.diagnostics, "'NOPE' is not set")), (6, 22));
}

#[test]
fn key_in_the_wrong_section_says_where_it_belongs() {
    let src = format!(
        "{HEADER}  extraSANs: [k8s.example.com]\n  apiServer: {{ port: 6443 }}\nssh: {{ port: 22 }}\nhosts:\n  - name: cp-1\n    address: 10.0.0.11\n    role: control-plane\n    user: ubuntu\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "unknown key 'extraSANs' in 'cluster'");
    assert_eq!(
        (at(d), d.help.as_deref()),
        (
            (6, 3),
            Some("'extraSANs' belongs under 'cluster.apiServer'")
        )
    );
    let d = find(&r.diagnostics, "unknown key 'user' in host 'cp-1'");
    assert_eq!(
        (at(d), d.help.as_deref()),
        ((13, 5), Some("'user' belongs under 'ssh'"))
    );
}

#[test]
fn tabs_in_indentation_get_a_specific_hint() {
    let r = report("apiVersion: k8sup.io/v1alpha1\ncluster:\n\tname: x\n");
    let d = &r.diagnostics[0];
    assert_eq!(
        (d.line, d.help.as_deref()),
        (
            3,
            Some("indent with spaces: YAML does not allow tabs for indentation")
        )
    );
}

#[test]
fn cluster_components_artifacts_and_runtime_settings() {
    let src = format!(
        "{HEADER}  components: none\n  allowCgroupV1: true\n  containerRuntime: {{ restrictOOMScoreAdj: true }}\n  artifacts: {{ source: ./mirror, images: archives }}\nhosts:\n  - {{ name: cp-1, address: 10.0.0.11, role: control-plane }}\n"
    );
    let c = parse(&src).expect("valid").inventory.cluster;
    assert_eq!(c.components, k8sup_inventory::Components::None);
    assert!(c.allow_cgroup_v1);
    assert!(c.container_runtime.restrict_oom_score_adj);
    assert_eq!(c.artifacts.source.as_deref(), Some("./mirror"));
    assert_eq!(c.artifacts.images, k8sup_inventory::ImageSource::Archives);

    // The defaults: a Kubernetes cluster, official artifacts, registry images, cgroup v2 only.
    let d = parse(&with_hosts(
        "  - { name: cp-1, address: 10.0.0.11, role: control-plane }\n",
    ))
    .unwrap()
    .inventory
    .cluster;
    assert_eq!(d.components, k8sup_inventory::Components::Kubernetes);
    assert_eq!(d.artifacts.source, None);
    assert_eq!(d.artifacts.images, k8sup_inventory::ImageSource::Registry);
    assert!(!d.allow_cgroup_v1 && !d.container_runtime.restrict_oom_score_adj);
}

#[test]
fn wrong_cluster_settings_are_reported_at_their_line_with_the_choices() {
    let src = format!(
        "{HEADER}  components: kubernets\n  allowCgroupV1: yes\n  artifacts: {{ images: pull }}\nhosts:\n  - {{ name: cp-1, address: 10.0.0.11, role: control-plane }}\n"
    );
    let r = report(&src);
    let d = find(&r.diagnostics, "'components' in 'cluster'");
    assert_eq!(at(d).0, 6);
    assert!(d.message.contains("'kubernetes', 'none'"), "{}", d.message);
    assert_eq!(d.help.as_deref(), Some("did you mean 'kubernetes'?"));
    let d = find(&r.diagnostics, "'allowCgroupV1' in 'cluster'");
    assert_eq!(at(d).0, 7);
    let d = find(&r.diagnostics, "'images' in 'cluster.artifacts'");
    assert_eq!(at(d).0, 8);
}
