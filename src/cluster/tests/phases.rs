//! The cluster's phase list, computed without hosts: for a 1+2 and a 3+2
//! inventory, on cgroup v1 and v2 facts, every phase resolves (its
//! dependencies are declared, its templates render), each host gets what
//! its role needs, and the same inputs give the same credentials.

use std::collections::BTreeMap;

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
        let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
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
                    "cluster state",
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
            // The add-ons go through the API: no host resources.
            assert!(ids(phase("add-ons"), "cp-0").is_empty());
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
    let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
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
    let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
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
    let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
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
    let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
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
    let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
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
            "datastore on cp-0",
            "datastore on cp-1",
            "add cp-2 as a learner",
            "start cp-2's member",
            "promote cp-2"
        ]
    );
    // Each running member is a step of its own (one restart at a time).
    // The running members keep their units and write no bootstrap file; the
    // new one is told to join the existing cluster of all three.
    let first: Vec<String> = ids(ds, "cp-0");
    assert!(
        !first.iter().any(|i| i.contains("datastore-bootstrap.env")),
        "{first:?}"
    );
    assert!(first.iter().any(|i| i == "command:datastore-add-cp-2"));
    assert!(first.iter().any(|i| i == "command:datastore-promote-cp-2"));
    let env = ds.steps[3].hosts[0]
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
    let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
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
    let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
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

/// Every file of phase `title` on `host`, by path: its bytes.
fn files_of(
    desired: &[(String, bool, ResolvedRollout)],
    title: &str,
    host: &str,
) -> BTreeMap<String, Vec<u8>> {
    let r = &desired.iter().find(|(t, _, _)| t == title).unwrap().2;
    r.states_of(host)
        .iter()
        .flat_map(|s| s.resources.iter())
        .filter_map(|r| match &r.resource.spec {
            k8sup_engine::Spec::File {
                path,
                content: k8sup_engine::Content::Inline(b),
                ..
            } => Some((path.clone(), b.clone())),
            _ => None,
        })
        .collect()
}

/// Facts of a running cluster whose hosts hold `certs` (path -> bytes, per host).
fn running_facts(
    names: &[String],
    certs: &BTreeMap<String, BTreeMap<String, Vec<u8>>>,
) -> BTreeMap<String, Facts> {
    use base64::Engine as _;
    names
        .iter()
        .map(|h| {
            let mut f = Facts::default().with("cgroup", "v2");
            if h.starts_with("cp-") {
                f = f
                    .with("k8sup.datastore", "present")
                    .with("k8sup.apiserver", "present");
            }
            for (path, bytes) in &certs[h] {
                f = f.with(
                    format!("secret.pki.{path}"),
                    base64::engine::general_purpose::STANDARD.encode(bytes),
                );
            }
            (h.clone(), f)
        })
        .collect()
}

/// The digest files (`/etc/k8sup/credentials/UNIT.sha256`) of every phase
/// on `host`: unit -> (content, the service it notifies).
fn digests(
    desired: &[(String, bool, ResolvedRollout)],
    host: &str,
) -> BTreeMap<String, (Vec<u8>, Vec<String>)> {
    digests_in(desired, host, "/etc/k8sup/credentials/")
}

/// The units whose digest differs between two runs' digests (or is new).
fn changed_units<'a>(
    before: &BTreeMap<String, (Vec<u8>, Vec<String>)>,
    after: &'a BTreeMap<String, (Vec<u8>, Vec<String>)>,
) -> Vec<&'a str> {
    after
        .iter()
        .filter(|(u, (content, _))| before.get(*u).map(|x| &x.0) != Some(content))
        .map(|(u, _)| u.as_str())
        .collect()
}

/// The digest files under `dir` of every phase on `host`.
fn digests_in(
    desired: &[(String, bool, ResolvedRollout)],
    host: &str,
    dir: &str,
) -> BTreeMap<String, (Vec<u8>, Vec<String>)> {
    let mut out = BTreeMap::new();
    for (_, _, r) in desired {
        for res in r.states_of(host).iter().flat_map(|s| s.resources.iter()) {
            if let k8sup_engine::Spec::File {
                path,
                content: k8sup_engine::Content::Inline(b),
                ..
            } = &res.resource.spec
                && let Some(unit) = path
                    .strip_prefix(dir)
                    .and_then(|u| u.strip_suffix(".sha256"))
            {
                let notifies = res.resource.notify.iter().map(|n| n.to_string()).collect();
                out.insert(unit.to_string(), (b.clone(), notifies));
            }
        }
    }
    out
}

/// `k8sup certs renew` on a running 3+2 cluster: every leaf certificate and
/// kubeconfig changes on every host that holds it, no CA and not the
/// service-account key; the digest of each component that reads a renewed
/// file changes and notifies that component's service (the API-server
/// proxy reads only the CA: no restart); the datastore and the API servers
/// restart one control plane per step. Planned again after the certificates
/// were written (the same run), nothing is renewed a second time; a normal
/// run afterwards wants exactly what the renewal wrote.
#[tokio::test]
async fn renewing_changes_every_leaf_and_no_ca_and_restarts_each_reader() {
    let dir = tmp("renew");
    let inv = inventory(3, 2, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    // A cluster as a first apply left it.
    let first = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
    let d0 = first.desired(&facts(&names, "v2")).await.unwrap();
    let held: BTreeMap<String, BTreeMap<String, Vec<u8>>> = names
        .iter()
        .map(|h| (h.clone(), files_of(&d0, "certificates", h)))
        .collect();
    let running = running_facts(&names, &held);

    // A normal run on it: the same credentials, the same digests.
    let normal = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
    let d1 = normal.desired(&running).await.unwrap();
    for h in &names {
        assert_eq!(files_of(&d1, "certificates", h), held[h], "{h}");
    }

    let renew = k8sup_cluster::cluster_phases_with(
        &inv,
        &hosts,
        files(&dir),
        k8sup_cluster::RunOptions {
            renew_certificates: true,
        },
        common::no_api(),
    )
    .unwrap();
    let d2 = renew.desired(&running).await.unwrap();
    let kept = [
        "/etc/kubernetes/pki/ca.crt",
        "/etc/kubernetes/pki/ca.key",
        "/etc/kubernetes/pki/front-proxy-ca.crt",
        "/etc/kubernetes/pki/front-proxy-ca.key",
        "/etc/kubernetes/pki/datastore/ca.crt",
        "/etc/kubernetes/pki/datastore/ca.key",
        "/etc/kubernetes/pki/sa.key",
        "/etc/kubernetes/pki/sa.pub",
    ];
    for h in &names {
        let renewed = files_of(&d2, "certificates", h);
        assert_eq!(
            renewed.keys().collect::<Vec<_>>(),
            held[h].keys().collect::<Vec<_>>(),
            "{h}: the same files"
        );
        for (path, bytes) in &renewed {
            if kept.contains(&path.as_str()) {
                assert_eq!(bytes, &held[h][path], "{h}: {path} was renewed");
            } else {
                assert_ne!(bytes, &held[h][path], "{h}: {path} was not renewed");
            }
        }
        // Which readers restart.
        let (before, after) = (digests(&d1, h), digests(&d2, h));
        let changed = changed_units(&before, &after);
        let want: &[&str] = if h.starts_with("cp-") {
            &[
                "k8sup-datastore.service",
                "kube-apiserver.service",
                "kube-controller-manager.service",
                "kube-proxy.service",
                "kube-scheduler.service",
                "kubelet.service",
            ]
        } else {
            &["kube-proxy.service", "kubelet.service"]
        };
        assert_eq!(changed, want, "{h}");
        if h.starts_with("w-") {
            assert!(after.contains_key("k8sup-apiserver-proxy.service"), "{h}");
        }
        for (unit, (_, notifies)) in &after {
            assert_eq!(notifies, &[format!("service:{unit}")], "{h}: {unit}");
        }
        // No key in a digest file.
        for (unit, (b, _)) in &after {
            assert!(
                !String::from_utf8_lossy(b).contains("PRIVATE KEY"),
                "{unit}"
            );
        }
    }
    // A first apply starts every member and every apiserver in one step;
    // a running cluster has one control plane per step in the datastore
    // and control-plane phases.
    for title in ["datastore", "control plane"] {
        let r = &d0.iter().find(|(t, _, _)| t == title).unwrap().2;
        let steps: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(steps, [title], "first apply: {title}");
    }
    for title in ["datastore", "control plane"] {
        let r = &d2.iter().find(|(t, _, _)| t == title).unwrap().2;
        let steps: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            steps,
            [
                format!("{title} on cp-0"),
                format!("{title} on cp-1"),
                format!("{title} on cp-2")
            ],
            "{title}"
        );
    }

    // The same run, planned again once the certificates phase wrote them:
    // nothing is renewed twice, and the digests are the ones planned.
    let written: BTreeMap<String, BTreeMap<String, Vec<u8>>> = names
        .iter()
        .map(|h| (h.clone(), files_of(&d2, "certificates", h)))
        .collect();
    let after = running_facts(&names, &written);
    let d3 = renew.desired(&after).await.unwrap();
    for h in &names {
        assert_eq!(
            files_of(&d3, "certificates", h),
            written[h],
            "{h}: renewed twice"
        );
        assert_eq!(digests(&d3, h), digests(&d2, h), "{h}");
    }
    // The next normal run wants exactly what the renewal wrote.
    let next = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
    let d4 = next.desired(&after).await.unwrap();
    for h in &names {
        assert_eq!(files_of(&d4, "certificates", h), written[h], "{h}");
        assert_eq!(digests(&d4, h), digests(&d2, h), "{h}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cluster's record (`state.rs`) of `desired`'s "cluster state" phase on `host`.
fn record_of(desired: &[(String, bool, ResolvedRollout)], host: &str) -> Option<Vec<u8>> {
    files_of(desired, "cluster state", host).remove(k8sup_cluster::state::STATE_PATH)
}

/// The record renders from its template as the JSON it means, on every
/// control plane (0600) and no worker; the first control plane also puts it
/// into the datastore under `/k8sup/`, guarded by a comparison with the
/// datastore's copy.
#[tokio::test]
async fn the_cluster_record_is_on_every_control_plane_and_put_into_the_datastore() {
    let dir = tmp("record");
    let inv = inventory(3, 2, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
    let desired = phases.desired(&facts(&names, "v2")).await.unwrap();
    let bytes = record_of(&desired, "cp-0").expect("a record on cp-0");
    let r: serde_json::Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&bytes)));
    assert_eq!(r["formatVersion"], 1);
    assert_eq!(r["cluster"], "t");
    assert_eq!(
        r["kubernetesVersion"],
        format!("v{}", inv.cluster.kubernetes_version)
    );
    assert_eq!(r["podCIDR"], "10.1.0.0/16");
    assert_eq!(r["serviceCIDR"], "10.152.183.0/24");
    assert_eq!(r["clusterDomain"], "cluster.local");
    assert_eq!(r["datastore"], "k8sup");
    assert_eq!(r["k8supVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r["controlPlanes"].as_array().unwrap().len(), 3);
    assert_eq!(r["controlPlanes"][1]["name"], "cp-1");
    assert_eq!(r["controlPlanes"][1]["address"], "10.0.0.11");
    assert_eq!(r["workers"][0]["name"], "w-0");
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.contains("  \"workers\": [\n    {\"name\": \"w-0\", \"address\": \"10.0.0.20\"},\n"),
        "{text}"
    );
    let parsed: k8sup_cluster::state::Record = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(parsed.workers.len(), 2);
    for cp in ["cp-1", "cp-2"] {
        assert_eq!(
            record_of(&desired, cp).as_deref(),
            Some(bytes.as_slice()),
            "{cp}"
        );
    }
    assert!(record_of(&desired, "w-0").is_none());
    let state = &desired
        .iter()
        .find(|(t, _, _)| t == "cluster state")
        .unwrap()
        .2;
    let commands = |h: &str| -> Vec<(String, String)> {
        state
            .states_of(h)
            .iter()
            .flat_map(|s| s.resources.iter())
            .filter_map(|r| match &r.resource.spec {
                k8sup_engine::Spec::Command {
                    command,
                    guard: k8sup_engine::Guard::Unless(check),
                    ..
                } => Some((command.clone(), check.clone())),
                _ => None,
            })
            .collect()
    };
    assert!(commands("cp-1").is_empty());
    let c = commands("cp-0");
    assert_eq!(c.len(), 1, "{c:?}");
    let (put, guard) = &c[0];
    assert!(
        put.contains(" put /k8sup/cluster-state --from-file=/etc/k8sup/cluster-state.json"),
        "{put}"
    );
    assert!(
        put.contains("--cert=/etc/kubernetes/pki/apiserver-datastore-client.crt"),
        "{put}"
    );
    assert!(guard.contains(" get /k8sup/cluster-state "), "{guard}");
    let mode = state
        .states_of("cp-0")
        .iter()
        .flat_map(|s| s.resources.iter())
        .find_map(|r| match &r.resource.spec {
            k8sup_engine::Spec::File { path, attrs, .. }
                if path == k8sup_cluster::state::STATE_PATH =>
            {
                attrs.mode
            }
            _ => None,
        });
    assert_eq!(mode, Some(0o600));

    // The guard, run by sh with a stand-in for the datastore's `get` (which
    // prints the datastore's copy): a no-op when the copies are equal, the
    // put otherwise (different, or no copy in the datastore).
    let stub = dir.join("k8sup-datastore");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\ncat {} 2>/dev/null\n",
            dir.join("in-datastore").display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("755")
        .arg(&stub)
        .status()
        .unwrap();
    let check = guard.replace("/usr/local/bin/k8sup-datastore", stub.to_str().unwrap());
    assert_ne!(&check, guard, "the guard names the tool: {guard}");
    // It compares with the record this run wants, not with the file on the
    // host, which the same step may rewrite after the guard was checked
    // (growing the cluster changes the record).
    assert!(!guard.contains(k8sup_cluster::state::STATE_PATH), "{guard}");
    let passes = || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(&check)
            .status()
            .unwrap()
            .success()
    };
    assert!(!passes(), "nothing in the datastore, yet no put");
    std::fs::write(dir.join("in-datastore"), b"{}").unwrap();
    assert!(!passes(), "a different copy in the datastore, yet no put");
    std::fs::write(dir.join("in-datastore"), &bytes).unwrap();
    assert!(passes(), "the same copy in the datastore, yet a put");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pod CIDR, service CIDR and cluster domain a cluster was built with
/// cannot change: an inventory that changes one is refused before any
/// phase, naming the host, the record and the fix; the same settings pass.
#[tokio::test]
async fn an_inventory_that_changes_the_recorded_cidrs_is_refused() {
    use base64::Engine as _;
    let dir = tmp("cidr");
    let inv = inventory(1, 1, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let phases = cluster_phases(&inv, &hosts, files(&dir), common::no_api()).unwrap();
    let desired = phases.desired(&facts(&names, "v2")).await.unwrap();
    let record = record_of(&desired, "cp-0").unwrap();
    let with_record = |bytes: &[u8]| {
        let mut f = facts(&names, "v2");
        let cp = f.remove("cp-0").unwrap().with(
            k8sup_cluster::state::FACT_STATE,
            base64::engine::general_purpose::STANDARD.encode(bytes),
        );
        f.insert("cp-0".into(), cp);
        f
    };
    // The same settings: planned as usual.
    assert!(phases.desired(&with_record(&record)).await.is_ok());
    for (key, inventory_line, fix) in [
        (
            "podCIDR",
            "  podCIDR: 10.9.0.0/16\n",
            "cluster.podCIDR: 10.1.0.0/16",
        ),
        (
            "serviceCIDR",
            "  serviceCIDR: 10.96.0.0/24\n",
            "cluster.serviceCIDR: 10.152.183.0/24",
        ),
        (
            "clusterDomain",
            "  clusterDomain: example.internal\n",
            "cluster.clusterDomain: cluster.local",
        ),
    ] {
        let changed = inventory(1, 1, inventory_line);
        let hosts: Vec<&k8sup_inventory::Host> = changed.hosts.iter().collect();
        let phases = cluster_phases(&changed, &hosts, files(&dir), common::no_api()).unwrap();
        let e = phases
            .desired(&with_record(&record))
            .await
            .unwrap_err()
            .to_string();
        for want in ["cp-0", "/etc/k8sup/cluster-state.json", key, fix] {
            assert!(e.contains(want), "{key}: the refusal lacks {want:?}: {e}");
        }
        // Without a record (a new cluster), the same inventory is fine.
        assert!(phases.desired(&facts(&names, "v2")).await.is_ok(), "{key}");
    }
    // A record k8sup cannot read is named, with what to do.
    let e = phases
        .desired(&with_record(b"not json"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cp-0") && e.contains("/etc/k8sup/cluster-state.json"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A run on some hosts only (the CLI's host selection) that observes no
/// control plane cannot read the cluster's CAs: it is refused, rather than
/// a new CA issued for the chosen hosts (which would cut them off).
#[tokio::test]
async fn a_run_without_a_control_plane_never_issues_a_second_ca() {
    let dir = tmp("no-cp");
    let inv = inventory(1, 1, "");
    let all: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let first = cluster_phases(&inv, &all, files(&dir), common::no_api()).unwrap();
    let d0 = first.desired(&facts(&names, "v2")).await.unwrap();
    let held: BTreeMap<String, BTreeMap<String, Vec<u8>>> = names
        .iter()
        .map(|h| (h.clone(), files_of(&d0, "certificates", h)))
        .collect();
    let mut running = running_facts(&names, &held);
    running.remove("cp-0");
    let worker: Vec<&k8sup_inventory::Host> =
        inv.hosts.iter().filter(|h| h.name == "w-0").collect();
    for renew in [false, true] {
        let phases = k8sup_cluster::cluster_phases_with(
            &inv,
            &worker,
            files(&dir),
            k8sup_cluster::RunOptions {
                renew_certificates: renew,
            },
            common::no_api(),
        )
        .unwrap();
        let e = phases.desired(&running).await.unwrap_err().to_string();
        assert!(
            e.contains("w-0") && e.contains("no control plane") && e.contains("ca.crt"),
            "renew={renew}: {e}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A new program (a new k8sup's datastore, a patch release of the kubelet)
/// restarts the services that run it, and only those: each service's phase
/// holds a digest of its programs that notifies it.
#[tokio::test]
async fn a_new_program_restarts_the_services_that_run_it() {
    let dir = tmp("programs");
    let inv = inventory(1, 1, "");
    let hosts: Vec<&k8sup_inventory::Host> = inv.hosts.iter().collect();
    let names: Vec<String> = inv.hosts.iter().map(|h| h.name.clone()).collect();
    let before = cluster_phases(&inv, &hosts, files(&dir), common::no_api())
        .unwrap()
        .desired(&facts(&names, "v2"))
        .await
        .unwrap();
    let mut newer = files(&dir);
    for p in ["k8sup-datastore", "kubelet"] {
        newer.program_sha256.insert(p.into(), "ab".repeat(32));
    }
    let after = cluster_phases(&inv, &hosts, newer, common::no_api())
        .unwrap()
        .desired(&facts(&names, "v2"))
        .await
        .unwrap();
    for h in &names {
        let (b, a) = (
            digests_in(&before, h, "/etc/k8sup/programs/"),
            digests_in(&after, h, "/etc/k8sup/programs/"),
        );
        let mut units: Vec<&str> = a.keys().map(String::as_str).collect();
        units.sort_unstable();
        let want: &[&str] = if h == "cp-0" {
            &[
                "containerd.service",
                "k8sup-datastore.service",
                "kube-apiserver.service",
                "kube-controller-manager.service",
                "kube-proxy.service",
                "kube-scheduler.service",
                "kubelet.service",
            ]
        } else {
            &[
                "containerd.service",
                "k8sup-apiserver-proxy.service",
                "kube-proxy.service",
                "kubelet.service",
            ]
        };
        assert_eq!(units, want, "{h}");
        let changed = changed_units(&b, &a);
        let expected: &[&str] = if h == "cp-0" {
            &["k8sup-datastore.service", "kubelet.service"]
        } else {
            &["kubelet.service"]
        };
        assert_eq!(changed, expected, "{h}");
        for (unit, (content, notifies)) in &a {
            assert_eq!(notifies, &[format!("service:{unit}")], "{h}: {unit}");
            let text = String::from_utf8_lossy(content);
            assert!(text.contains("/usr/local/bin/"), "{h}: {unit}: {text}");
        }
    }
}
