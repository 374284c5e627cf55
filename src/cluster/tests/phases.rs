//! The cluster's phase list, computed without hosts: for a 1+2 and a 3+2
//! inventory, on cgroup v1 and v2 facts, every phase resolves (its
//! dependencies are declared, its templates render), each host gets what
//! its role needs, and the same inputs give the same credentials.

use k8sup_cluster::cluster_phases;
use k8sup_engine::{Facts, ResolvedRollout};

mod common;
use common::{facts, files, ids, inventory, tmp};

#[tokio::test]
async fn every_phase_resolves_and_each_role_gets_its_components() {
    let dir = tmp("roles");
    for (cps, workers) in [(1, 2), (3, 2)] {
        let inv = inventory(cps, workers, "  allowCgroupV1: true\n");
        let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
        let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
        let phases = cluster_phases(&inv, &hosts, files(&dir)).unwrap();
        for cgroup in ["v1", "v2"] {
            let desired = phases.desired(&facts(&names, cgroup)).await.unwrap();
            let titles: Vec<&str> = desired.iter().map(|(t, _, _)| t.as_str()).collect();
            assert_eq!(
                titles,
                [
                    "prepare hosts",
                    "certificates",
                    "binaries",
                    "datastore",
                    "control plane",
                    "nodes",
                    "add-ons",
                    "workload"
                ]
            );
            let phase = |t: &str| &desired.iter().find(|(x, _, _)| x == t).unwrap().2;
            // Control planes: datastore and apiserver; workers: the proxy, no apiserver.
            assert!(
                ids(phase("datastore"), "cp-0")
                    .iter()
                    .any(|i| i.contains("k8sup-datastore.service"))
            );
            assert!(ids(phase("datastore"), "w-0").is_empty());
            assert!(
                ids(phase("control plane"), "cp-0")
                    .iter()
                    .any(|i| i.contains("kube-apiserver.service"))
            );
            let w = ids(phase("nodes"), "w-0");
            assert!(
                w.iter()
                    .any(|i| i.contains("k8sup-apiserver-proxy.service")),
                "{w:?}"
            );
            assert!(w.iter().any(|i| i.contains("kubelet.service")));
            let cp = ids(phase("nodes"), "cp-0");
            assert!(!cp.iter().any(|i| i.contains("apiserver-proxy")), "{cp:?}");
            // Add-ons only on the first control plane.
            assert!(!ids(phase("add-ons"), "cp-0").is_empty());
            if cps > 1 {
                assert!(ids(phase("add-ons"), "cp-1").is_empty());
            }
            // The CA key only on control planes.
            assert!(
                ids(phase("certificates"), "cp-0")
                    .iter()
                    .any(|i| i.ends_with("/pki/ca.key"))
            );
            assert!(
                !ids(phase("certificates"), "w-0")
                    .iter()
                    .any(|i| i.ends_with("/pki/ca.key"))
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn cgroup_v1_is_refused_unless_the_inventory_allows_it() {
    let dir = tmp("cgroup");
    let inv = inventory(1, 1, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&dir)).unwrap();
    let e = phases
        .desired(&facts(&names, "v1"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cp-0") && e.contains("allowCgroupV1: true"),
        "{e}"
    );
    assert!(phases.desired(&facts(&names, "v2")).await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A host without the programs a node needs is refused before anything
/// changes, naming the host, what it lacks and how to install it.
#[tokio::test]
async fn a_host_that_lacks_node_tools_is_refused_naming_them() {
    let dir = tmp("tools");
    let inv = inventory(1, 1, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&dir)).unwrap();
    let mut f = facts(&names, "v2");
    f.insert(
        "w-0".into(),
        Facts::default()
            .with("cgroup", "v2")
            .with("k8sup.missing", "conntrack iptables-restore"),
    );
    let e = phases.desired(&f).await.unwrap_err().to_string();
    assert!(e.contains("w-0"), "{e}");
    assert!(e.contains("lacks conntrack, iptables-restore"), "{e}");
    assert!(e.contains("apt-get install"), "{e}");
    f.insert(
        "w-0".into(),
        Facts::default()
            .with("cgroup", "v2")
            .with("k8sup.missing", ""),
    );
    assert!(phases.desired(&f).await.is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The probe's shell, run here on files laid out as a node has them,
/// prints the pod networks the node has and routes to.
#[tokio::test]
async fn the_probe_reads_a_nodes_pod_networks_back() {
    let dir = tmp("probe");
    let inv = inventory(1, 2, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&dir)).unwrap();
    let desired = phases.desired(&facts(&names, "v2")).await.unwrap();
    let nodes = &desired.iter().find(|(t, _, _)| t == "nodes").unwrap().2;
    let conflist = common::text(nodes, "w-0", "10-k8sup-bridge.conflist").unwrap();
    let routes = common::text(nodes, "w-0", "k8sup-pod-routes.service").unwrap();
    // The probe with the node's paths moved under a scratch root.
    let root = dir.join("root");
    for (path, body) in [
        ("etc/cni/net.d/10-k8sup-bridge.conflist", &conflist),
        ("etc/systemd/system/k8sup-pod-routes.service", &routes),
    ] {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let probe = phases
        .probe()
        .expect("a cluster has a facts probe")
        .replace(" /etc/", &format!(" {}/etc/", root.display()));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&probe)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("k8sup.podcidr=10.1.1.0/24\n"), "{out}");
    assert!(out.contains("k8sup.route.10.0.0.10=10.1.0.0/24\n"), "{out}");
    assert!(out.contains("k8sup.route.10.0.0.21=10.1.2.0/24\n"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_same_inputs_give_the_same_credentials_within_a_run() {
    let dir = tmp("memo");
    let inv = inventory(1, 1, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&dir)).unwrap();
    let a = phases.desired(&facts(&names, "v2")).await.unwrap();
    let b = phases.desired(&facts(&names, "v2")).await.unwrap();
    let hashes = |d: &Vec<(String, bool, ResolvedRollout)>| -> Vec<String> {
        d[1].2
            .states_of("cp-0")
            .iter()
            .flat_map(|s| {
                s.resources
                    .iter()
                    .map(|r| format!("{:?}", r.body.as_ref().map(|c| c.sha256.clone())))
            })
            .collect()
    };
    assert_eq!(
        hashes(&a),
        hashes(&b),
        "a second computation issued new keys"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_control_plane_added_to_a_running_datastore_joins_as_a_learner_then_is_promoted() {
    let dir = tmp("join");
    let inv = inventory(3, 1, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&dir)).unwrap();
    let mut f = facts(&names, "v2");
    for cp in ["cp-0", "cp-1"] {
        f.insert(
            cp.into(),
            Facts::default()
                .with("cgroup", "v2")
                .with("k8sup.datastore", "present"),
        );
    }
    let desired = phases.desired(&f).await.unwrap();
    let ds = &desired.iter().find(|(t, _, _)| t == "datastore").unwrap().2;
    let steps: Vec<&str> = ds.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        steps,
        [
            "datastore",
            "add cp-2 as a learner",
            "start cp-2's member",
            "promote cp-2"
        ]
    );
    // The running members keep their units and write no bootstrap file; the
    // new one is told to join the existing cluster of all three.
    let first: Vec<String> = ids(ds, "cp-0");
    assert!(
        !first.iter().any(|i| i.contains("datastore-bootstrap.env")),
        "{first:?}"
    );
    assert!(first.iter().any(|i| i == "command:datastore-add-cp-2"));
    assert!(first.iter().any(|i| i == "command:datastore-promote-cp-2"));
    let env = ds.steps[2].hosts[0]
        .resources
        .iter()
        .find(|r| r.id.to_string().ends_with("datastore-bootstrap.env"))
        .and_then(|r| r.body.as_ref().and_then(|b| b.text()).map(str::to_string))
        .unwrap();
    assert!(env.contains("INITIAL_CLUSTER_STATE=existing"), "{env}");
    assert!(
        env.contains(
            "cp-0=https://10.0.0.10:2380,cp-1=https://10.0.0.11:2380,cp-2=https://10.0.0.12:2380"
        ),
        "{env}"
    );
    // A first apply: one step, every member founding the cluster together.
    let desired = phases.desired(&facts(&names, "v2")).await.unwrap();
    let ds = &desired.iter().find(|(t, _, _)| t == "datastore").unwrap().2;
    assert_eq!(ds.steps.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every unit the cluster writes passes `systemd-analyze verify` (its
/// programs replaced by /bin/true, which exists here), and its command line
/// is whole: each continued line starts a flag.
#[tokio::test]
async fn every_unit_passes_systemd_analyze_verify() {
    let dir = tmp("units");
    let inv = inventory(1, 1, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&dir)).unwrap();
    let desired = phases.desired(&facts(&names, "v2")).await.unwrap();
    let units = dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    let mut written = Vec::new();
    for (_, _, r) in &desired {
        for host in &names {
            for s in r.states_of(host) {
                for res in &s.resources {
                    let k8sup_engine::Spec::Unit { name, .. } = &res.resource.spec else {
                        continue;
                    };
                    let text = res
                        .body
                        .as_ref()
                        .and_then(|b| b.text())
                        .expect("a unit is text")
                        .to_string();
                    let mut lines = text.lines().peekable();
                    while let Some(l) = lines.next() {
                        if l.ends_with('\\') {
                            let next = lines.peek().copied().unwrap_or("");
                            assert!(
                                next.starts_with("  --"),
                                "{name}: a continued line does not start a flag: {next:?}\n{text}"
                            );
                        }
                    }
                    let text = regex_lite_replace(&text);
                    let path = units.join(name);
                    std::fs::write(&path, text).unwrap();
                    written.push(path);
                }
            }
        }
    }
    assert!(written.len() >= 8, "{written:?}");
    written.sort();
    written.dedup();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&written)
        .output()
        .expect("systemd-analyze runs");
    let err = String::from_utf8_lossy(&out.stderr);
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| {
            written
                .iter()
                .any(|w| l.contains(w.file_name().unwrap().to_str().unwrap()))
        })
        .collect();
    assert!(ours.is_empty(), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `ExecStart=/usr/local/bin/X` and `/sbin/ip` become `/bin/true` (which
/// exists on the test machine; the units' own programs do not).
fn regex_lite_replace(text: &str) -> String {
    text.lines()
        .map(|l| {
            for key in [
                "ExecStart=-",
                "ExecStart=",
                "ExecStop=-",
                "ExecStop=",
                "ExecReload=",
            ] {
                if let Some(rest) = l.strip_prefix(key) {
                    let args = rest
                        .split_once(' ')
                        .map(|(_, a)| format!(" {a}"))
                        .unwrap_or_default();
                    return format!("{key}/bin/true{args}\n");
                }
            }
            format!("{l}\n")
        })
        .collect()
}

/// The kubelet's and kube-proxy's configs are the YAML they mean to be, with
/// the cgroup v1 allowance only on v1 hosts.
#[tokio::test]
async fn the_kubelet_and_kube_proxy_configs_parse_as_meant() {
    let dir = tmp("configs");
    let inv = inventory(1, 1, "  allowCgroupV1: true\n");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&dir)).unwrap();
    for (cgroup, driver) in [("v1", "cgroupfs"), ("v2", "systemd")] {
        let desired = phases.desired(&facts(&names, cgroup)).await.unwrap();
        let nodes = &desired.iter().find(|(t, _, _)| t == "nodes").unwrap().2;
        let file = |path: &str| -> serde_json::Value {
            let text = nodes
                .states_of("w-0")
                .iter()
                .flat_map(|s| s.resources.iter())
                .find(|r| r.id.to_string().ends_with(path))
                .and_then(|r| r.body.as_ref().and_then(|b| b.text()).map(str::to_string))
                .unwrap_or_else(|| panic!("no {path}"));
            serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}\n{text}"))
        };
        let k = file("/var/lib/kubelet/config.yaml");
        assert_eq!(k["cgroupDriver"], driver);
        assert_eq!(
            k["failCgroupV1"].as_bool(),
            (cgroup == "v1").then_some(false),
            "{k}"
        );
        assert_eq!(k["clusterDNS"][0], "10.152.183.10");
        assert_eq!(k["authentication"]["anonymous"]["enabled"], false);
        // TOML booleans are lowercase (a Python-style `True` stops containerd).
        let toml = nodes
            .states_of("w-0")
            .iter()
            .flat_map(|s| s.resources.iter())
            .find(|r| r.id.to_string().ends_with("/etc/containerd/config.toml"))
            .and_then(|r| r.body.as_ref().and_then(|b| b.text()).map(str::to_string))
            .unwrap();
        let want = format!("SystemdCgroup = {}", cgroup == "v2");
        assert!(toml.contains(&want), "{toml}");
        assert!(!toml.contains("True") && !toml.contains("False"), "{toml}");
        let p = file("/var/lib/kube-proxy/config.yaml");
        assert_eq!(p["mode"], "iptables");
        assert_eq!(p["clusterCIDR"], "10.1.0.0/16");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
