//! A real Kubernetes cluster from one inventory, as a user gets it: a lab of
//! one control plane and two workers whose inventory `k8sup lab up --mirror`
//! wrote (artifacts from the mirror of upstream binaries built from Go
//! modules), `k8sup plan`, `k8sup apply`, then the cluster is checked with
//! the real kubectl and the admin kubeconfig `k8sup kubeconfig` gives:
//! every Node Ready, a 3-replica Deployment spread over the nodes, a
//! ClusterIP Service answering a pod on another node, DNS for
//! `kubernetes.default` and the Service, `kubectl logs` and `exec`; a
//! second apply has nothing to do; the cluster's record is on the control
//! plane and in the datastore; and `k8sup certs renew` renews the
//! certificates of the running cluster (kube-apiserver serves a new one,
//! the Nodes stay Ready, and the next plan has nothing to do).
//!
//! The test workload's image (busybox: a shell, httpd, nslookup) is put on
//! the nodes by the inventory's own `files:` and `commands:` (the workload
//! phase), as a user pre-loads images on hosts without a registry.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{TestLab, image, k8sup, mirror, text};
use k8sup_lab::UpOptions;

struct Kubectl {
    bin: std::path::PathBuf,
    config: std::path::PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.config)
            .args(["--request-timeout", "20s"])
            .args(args)
            .output()
            .expect("run kubectl");
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args);
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    fn apply(&self, yaml: &str) {
        let dir = self.config.parent().unwrap();
        let f = dir.join("manifest.yaml");
        std::fs::write(&f, yaml).unwrap();
        self.ok(&["apply", "-f", f.to_str().unwrap()]);
    }

    /// Waits until `count` Nodes are Ready; the `kubectl get nodes ARGS` output.
    fn wait_ready(&self, what: &str, count: usize, within: Duration, args: &[&str]) -> String {
        let mut all = vec!["get", "nodes"];
        all.extend_from_slice(args);
        self.wait(what, within, &all, |o| {
            o.lines()
                .skip(1)
                .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
                .count()
                == count
        })
    }

    /// Retries `args` until `until` holds on its output (or panics after `within`).
    fn wait(
        &self,
        what: &str,
        within: Duration,
        args: &[&str],
        until: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let (ok, out, err) = self.run(args);
            if ok && until(&out) {
                return out;
            }
            if start.elapsed() > within {
                panic!("{what}: not within {within:?}; last output:\n{out}\n{err}");
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn workload(lab: &TestLab, inventory: &Path, busybox: &str, archive: &Path) -> std::path::PathBuf {
    let stage = inventory.parent().unwrap().join("busybox.tar");
    std::fs::copy(archive, &stage).unwrap();
    lab.inventory_variant("cluster.yaml", |text| {
        format!(
            "{text}files:\n  - {{ path: /var/lib/k8sup-e2e/busybox.tar, src: busybox.tar }}\n\
             commands:\n  - name: import-busybox\n    run: /usr/local/bin/ctr -n k8s.io images import /var/lib/k8sup-e2e/busybox.tar\n    \
             unless: /usr/local/bin/ctr -n k8s.io images ls -q | grep -qxF {busybox}\n"
        )
    })
}

/// The test workload (`tests/workloads/web.yaml`), with the lab's image
/// from the mirror (`IMAGE`, imported from its archive: never pulled).
const DEPLOYMENT: &str = include_str!("../../../tests/workloads/web.yaml");

fn web(image: &str) -> String {
    DEPLOYMENT
        .replace("IMAGE", image)
        .replace("PULL_POLICY", "Never")
}

#[test]
fn a_cluster_of_one_control_plane_and_two_workers_runs_pods_services_and_dns() {
    let (root, index) = mirror();
    let lab = TestLab::up_with(
        "t-e2e-k8s",
        UpOptions {
            nodes: 3,
            control_planes: 1,
            mirror: Some(root.clone()),
            ..Default::default()
        },
    );
    let (busybox, archive) = image(&root, &index, "busybox");
    let inventory = workload(&lab, lab.inventory(), &busybox, &archive);
    let inv = inventory.to_str().unwrap();

    // The plan names every phase and changes nothing.
    let out = k8sup(&["plan", "-i", inv, "--color", "never"]);
    let plan = text(&out.stdout);
    assert!(
        out.status.success(),
        "plan failed:\n{plan}\n{}",
        text(&out.stderr)
    );
    assert!(
        plan.contains("kubernetes-api") && plan.contains("object:Deployment/kube-system/coredns"),
        "the plan does not show the add-ons' objects through the API:\n{plan}"
    );
    for phase in [
        "certificates",
        "binaries",
        "datastore",
        "control plane",
        "nodes",
        "add-ons",
        "workload",
    ] {
        assert!(
            plan.contains(phase),
            "the plan does not show phase {phase:?}:\n{plan}"
        );
    }
    assert!(
        !plan.contains("BEGIN EC PRIVATE KEY") && !plan.contains("BEGIN PRIVATE KEY"),
        "a private key was printed in the plan"
    );
    assert_eq!(
        lab.root(
            0,
            "test -e /etc/kubernetes/pki/ca.crt && echo yes || echo no"
        )
        .trim(),
        "no"
    );

    let started = Instant::now();
    let out = k8sup(&["apply", "-i", inv, "--yes", "-o", "json"]);
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "apply failed:\n{report}\n{}",
        text(&out.stderr)
    );
    eprintln!(
        "apply (1 control plane + 2 workers, artifacts cached): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let json: serde_json::Value = serde_json::from_str(&report).expect("the apply report is JSON");
    for p in json["phases"].as_array().unwrap() {
        eprintln!(
            "  {:<14} {:>6.1} s",
            p["title"].as_str().unwrap(),
            p["elapsedSeconds"].as_f64().unwrap()
        );
    }

    // The admin kubeconfig from the cluster, for the real kubectl.
    let dir = inventory.parent().unwrap().join("kube");
    std::fs::create_dir_all(&dir).unwrap();
    let kubectl = admin_kubectl(inv, &dir, &root, &index);

    let nodes = kubectl.wait_ready(
        "every node Ready",
        3,
        Duration::from_secs(120),
        &["-o", "wide"],
    );
    eprintln!("{nodes}");
    assert!(
        nodes.contains(common::KUBERNETES),
        "nodes do not report {}:\n{nodes}",
        common::KUBERNETES
    );

    kubectl.apply(&web(&busybox));
    kubectl.wait(
        "the deployment is available",
        Duration::from_secs(120),
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.availableReplicas}",
        ],
        |o| o.trim() == "3",
    );
    let pods = kubectl.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName}{\"\\n\"}{end}",
    ]);
    let mut spread: Vec<&str> = pods
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    spread.sort_unstable();
    spread.dedup();
    assert_eq!(
        spread.len(),
        3,
        "the 3 replicas are not on 3 nodes:\n{pods}"
    );

    // From a pod, the Service's ClusterIP answers, served by replicas on
    // other nodes too. (The test image's busybox `wget` crashes, a fault of
    // Debian's static build: HTTP goes through `nc`.)
    let client = pods
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let ip = kubectl.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let get = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {} 80 | tail -n 1",
        ip.trim()
    );
    let served = kubectl.wait(
        "the Service answers",
        Duration::from_secs(60),
        &["exec", &client, "--", "sh", "-c", &get],
        |o| o.trim().starts_with("web-"),
    );
    eprintln!("served by {}", served.trim());
    let mut answered = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (ok, out, _) = kubectl.run(&["exec", &client, "--", "sh", "-c", &get]);
        if ok && out.trim().starts_with("web-") {
            answered.insert(out.trim().to_string());
        }
    }
    assert!(
        answered.iter().any(|h| h != &client),
        "no replica in another pod answered the ClusterIP: {answered:?} (client {client})"
    );
    let dns = kubectl.ok(&[
        "exec",
        &client,
        "--",
        "nslookup",
        "kubernetes.default.svc.cluster.local",
    ]);
    assert!(
        dns.contains("10.152.183.1"),
        "kubernetes.default does not resolve to the service IP:\n{dns}"
    );
    let dns = kubectl.ok(&[
        "exec",
        &client,
        "--",
        "nslookup",
        "web.default.svc.cluster.local",
    ]);
    assert!(
        dns.contains(ip.trim()),
        "the Service's name does not resolve to {ip}:\n{dns}"
    );

    let logs = kubectl.ok(&["logs", &client]);
    assert!(logs.contains("serving from"), "kubectl logs: {logs}");

    // `k8sup status` reads the same from the cluster, over SSH only.
    let out = k8sup(&["status", "-i", inv, "-o", "json"]);
    let status: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap_or_else(|e| {
        panic!(
            "status -o json: {e}\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert!(out.status.success(), "status says unhealthy:\n{status:#}");
    let ready = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["ready"] == true)
        .count();
    assert_eq!(ready, 3, "{status:#}");
    assert_eq!(status["dns"]["found"], true, "{status:#}");
    assert_eq!(status["dns"]["replicas"], 2, "{status:#}");
    assert!(
        status["dns"]["available"].as_i64().unwrap() >= 1,
        "{status:#}"
    );
    assert_eq!(
        status["recorded"]["kubernetesVersion"],
        common::KUBERNETES,
        "{status:#}"
    );
    // What k8sup remembers is in the cluster: the record on the control
    // plane (0600 root) and the same bytes in the datastore, under /k8sup/.
    assert_eq!(
        lab.root(0, "stat -c '%a %U' /etc/k8sup/cluster-state.json")
            .trim(),
        "600 root"
    );
    let record: serde_json::Value =
        serde_json::from_str(&lab.root(0, "cat /etc/k8sup/cluster-state.json")).unwrap();
    assert_eq!(
        record["kubernetesVersion"],
        common::KUBERNETES,
        "{record:#}"
    );
    assert_eq!(
        record["controlPlanes"][0]["name"],
        lab.node(0),
        "{record:#}"
    );
    assert_eq!(
        record["controlPlanes"][0]["address"],
        lab.address(0),
        "{record:#}"
    );
    assert_eq!(record["workers"].as_array().unwrap().len(), 2, "{record:#}");
    assert_eq!(record["podCIDR"], "10.1.0.0/16", "{record:#}");
    assert_eq!(
        lab.root(
            0,
            "/usr/local/bin/k8sup-datastore get /k8sup/cluster-state \
             --cacert=/etc/kubernetes/pki/datastore/ca.crt \
             --cert=/etc/kubernetes/pki/apiserver-datastore-client.crt \
             --key=/etc/kubernetes/pki/apiserver-datastore-client.key \
             | cmp - /etc/k8sup/cluster-state.json && echo same"
        )
        .trim(),
        "same",
        "the datastore does not hold the record"
    );
    let cp = &status["hosts"][0];
    assert_eq!(cp["datastore"]["leader"], true, "{status:#}");
    assert_eq!(cp["components"]["kube-apiserver"], "active", "{status:#}");
    let certs = cp["certificates"].as_array().unwrap();
    assert!(certs.len() >= 10, "{status:#}");
    assert!(
        certs.iter().all(|c| c["daysLeft"].as_i64().unwrap() > 300),
        "{status:#}"
    );

    // Nothing to do the second time.
    nothing_to_do(inv, "a second plan");

    // The add-ons are compared with the cluster through its API: every
    // node has its role, and an object someone changed by hand is in the
    // plan with what differs, and is put back by the next apply.
    let roles = kubectl.ok(&[
        "get",
        "nodes",
        "-l",
        "node-role.kubernetes.io/worker",
        "-o",
        "name",
    ]);
    assert_eq!(roles.lines().count(), 2, "workers labelled:\n{roles}");
    kubectl.ok(&[
        "-n",
        "kube-system",
        "scale",
        "deployment",
        "coredns",
        "--replicas=1",
    ]);
    let out = k8sup(&["plan", "-i", inv, "--color", "never"]);
    let drift = text(&out.stdout);
    assert!(out.status.success(), "{drift}\n{}", text(&out.stderr));
    assert!(
        drift.contains("object:Deployment/kube-system/coredns")
            && drift.contains("\"replicas\": 2"),
        "the plan does not show CoreDNS scaled back to 2 replicas:\n{drift}"
    );
    let out = k8sup(&["apply", "-i", inv, "--yes"]);
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        kubectl
            .ok(&[
                "-n",
                "kube-system",
                "get",
                "deployment",
                "coredns",
                "-o",
                "jsonpath={.spec.replicas}"
            ])
            .trim(),
        "2"
    );
    nothing_to_do(inv, "the plan after CoreDNS was put back");

    // `k8sup certs renew`: the plan first (`--dry-run` changes nothing),
    // then every leaf renewed and its readers restarted: kube-apiserver
    // serves a new certificate, the Nodes stay Ready, and nothing is left
    // to do.
    let serial_before = serving_serial(&lab.address(0));
    let out = k8sup(&["certs", "renew", "-i", inv, "--dry-run", "--color", "never"]);
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown}\n{}", text(&out.stderr));
    for want in [
        "/etc/kubernetes/pki/apiserver.crt",
        "/etc/kubernetes/kubelet.conf",
        "/etc/k8sup/credentials/kube-apiserver.service.sha256",
        "service:kube-apiserver.service",
        "service:k8sup-datastore.service",
        "service:kubelet.service",
    ] {
        assert!(
            shown.contains(want),
            "the renewal's plan lacks {want}:\n{shown}"
        );
    }
    assert!(
        !shown.contains("PRIVATE KEY"),
        "a private key was printed in the renewal's plan"
    );
    // A renewed certificate is shown in words (validity, serial), not base64.
    assert!(
        shown.contains("+valid from ") && !shown.contains("BEGIN CERTIFICATE"),
        "the renewal's plan does not describe the certificates:\n{shown}"
    );
    assert_eq!(
        serving_serial(&lab.address(0)),
        serial_before,
        "--dry-run renewed"
    );
    let out = k8sup(&["certs", "renew", "-i", inv, "--yes", "-o", "json"]);
    assert!(
        out.status.success(),
        "certs renew failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let serial_after = serving_serial(&lab.address(0));
    assert_ne!(
        serial_after, serial_before,
        "kube-apiserver still serves its old certificate"
    );
    kubectl.wait_ready(
        "every node Ready after the renewal",
        3,
        Duration::from_secs(120),
        &[],
    );
    let plan = nothing_to_do(inv, "the plan after `certs renew`");
    // The facts that make a running cluster restart one control plane at a time.
    let cp_facts = &plan["facts"][lab.node(0)];
    assert_eq!(cp_facts["k8sup.apiserver"], "present", "{cp_facts}");
    assert_eq!(cp_facts["k8sup.datastore"], "present", "{cp_facts}");

    // A new build of k8sup's API-server proxy (one more byte): it is pushed
    // and the proxies restart to run it, on the workers only, and nothing
    // else restarts.
    let bins = inventory.parent().unwrap().join("newer-bins");
    std::fs::create_dir_all(&bins).unwrap();
    let here = std::path::Path::new(env!("CARGO_BIN_EXE_k8sup"))
        .parent()
        .unwrap();
    for d in ["k8sup-datastore", "k8sup-apiserver-proxy"] {
        std::fs::copy(here.join(d), bins.join(d)).unwrap();
    }
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(bins.join("k8sup-apiserver-proxy"))
            .unwrap();
        f.write_all(b"\0").unwrap();
    }
    let pid =
        |i: usize, unit: &str| lab.root(i, &format!("systemctl show -p MainPID --value {unit}"));
    let (proxy, kubelet, datastore) = (
        pid(1, "k8sup-apiserver-proxy"),
        pid(1, "kubelet"),
        pid(0, "k8sup-datastore"),
    );
    let with_new = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_k8sup"))
            .args(args)
            .env("K8SUP_NODE_BIN_DIR", &bins)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "k8sup {args:?} with a new proxy build failed:\n{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let plan: serde_json::Value =
        serde_json::from_str(&with_new(&["plan", "-i", inv, "-o", "json"])).unwrap();
    let restarts: Vec<String> = (0..3)
        .flat_map(|i| {
            actions_on(&plan, &lab.node(i))
                .into_iter()
                .filter(|a| a.starts_with("restart "))
                .map(move |a| format!("{i} {a}"))
        })
        .collect();
    assert_eq!(
        restarts,
        [
            "1 restart service:k8sup-apiserver-proxy.service",
            "2 restart service:k8sup-apiserver-proxy.service"
        ],
        "the restarts a new proxy build plans"
    );
    with_new(&["apply", "-i", inv, "--yes"]);
    assert_ne!(
        pid(1, "k8sup-apiserver-proxy"),
        proxy,
        "the proxy runs its old program"
    );
    assert_eq!(pid(1, "kubelet"), kubelet, "the kubelet restarted");
    assert_eq!(
        pid(0, "k8sup-datastore"),
        datastore,
        "the datastore restarted"
    );
    kubectl.wait_ready(
        "every node Ready with the new proxy",
        3,
        Duration::from_secs(60),
        &[],
    );
}

/// The cluster's admin kubeconfig, from `k8sup kubeconfig`, written to
/// `dir/admin.conf`, with the mirror's kubectl.
fn admin_kubectl(inv: &str, dir: &Path, root: &Path, index: &serde_json::Value) -> Kubectl {
    let config = dir.join("admin.conf");
    let out = k8sup(&["kubeconfig", "-i", inv, "--out", config.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "kubeconfig failed: {}",
        text(&out.stderr)
    );
    Kubectl {
        bin: common::kube_binary(root, index, "kubectl"),
        config,
    }
}

/// `k8sup plan` on `inv` has nothing to do (and shows no credential); the
/// plan's JSON.
fn nothing_to_do(inv: &str, what: &str) -> serde_json::Value {
    let out = k8sup(&["plan", "-i", inv, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    let total: u64 = again["summary"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|v| v.as_u64())
        .sum();
    assert_eq!(total, 0, "{what} has changes:\n{}", text(&out.stdout));
    let facts = again["facts"].to_string();
    assert!(
        !facts.contains("secret."),
        "credentials leaked into the plan's facts"
    );
    again
}

/// The serial number of the certificate kube-apiserver serves at `address`.
fn serving_serial(address: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect {address}:6443 </dev/null 2>/dev/null | openssl x509 -noout -serial"
        ))
        .output()
        .expect("openssl runs");
    let serial = text(&out.stdout).trim().to_string();
    assert!(
        serial.starts_with("serial="),
        "no certificate served at {address}:6443: {serial}\n{}",
        text(&out.stderr)
    );
    serial
}

#[test]
fn a_tampered_artifact_is_refused_before_any_host_is_touched() {
    let (root, index) = mirror();
    // A mirror like the real one, with one byte more in the kubelet.
    let work = std::env::temp_dir().join(format!("k8sup-e2e-tampered-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let tampered = work.join("mirror");
    let status = Command::new("cp")
        .arg("-rs")
        .arg(&root)
        .arg(&tampered)
        .status()
        .unwrap();
    assert!(status.success(), "cp -rs of the mirror");
    let kubelet = common::kube_binary(&root, &index, "kubelet");
    let copy = tampered.join(kubelet.strip_prefix(&root).unwrap());
    let mut bytes = std::fs::read(&kubelet).unwrap();
    bytes.extend_from_slice(b"tampered");
    std::fs::remove_file(&copy).unwrap();
    std::fs::write(&copy, bytes).unwrap();

    let lab = TestLab::up_with(
        "t-e2e-tamper",
        UpOptions {
            nodes: 1,
            mirror: Some(tampered.clone()),
            ..Default::default()
        },
    );
    // An empty workstation cache, so that the mirror is read.
    let out = Command::new(env!("CARGO_BIN_EXE_k8sup"))
        .args(["apply", "-i", lab.inventory().to_str().unwrap(), "--yes"])
        .env("XDG_CACHE_HOME", work.join("cache"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a tampered kubelet was accepted:\n{}",
        text(&out.stdout)
    );
    assert!(
        err.contains("kubelet"),
        "the error does not name the artifact:\n{err}"
    );
    assert!(
        err.to_lowercase().contains("sha-256") || err.contains("checksum"),
        "{err}"
    );
    assert_eq!(
        lab.root(0, "test -e /etc/kubernetes -o -e /usr/local/bin/kubelet -o -e /var/lib/k8sup && echo touched || echo untouched")
            .trim(),
        "untouched",
        "the host was changed before the artifacts were verified"
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// The datastore's members, as the real etcdctl sees them through
/// control plane `i`, with the apiserver's client certificate.
fn members(lab: &TestLab, i: usize, dir: &Path) -> serde_json::Value {
    for (name, path) in [
        ("ca.crt", "/etc/kubernetes/pki/datastore/ca.crt"),
        (
            "client.crt",
            "/etc/kubernetes/pki/apiserver-datastore-client.crt",
        ),
        (
            "client.key",
            "/etc/kubernetes/pki/apiserver-datastore-client.key",
        ),
    ] {
        std::fs::write(dir.join(name), lab.root(i, &format!("cat {path}"))).unwrap();
    }
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{}:2379", lab.address(i)))
        .arg(format!("--cacert={}", dir.join("ca.crt").display()))
        .arg(format!("--cert={}", dir.join("client.crt").display()))
        .arg(format!("--key={}", dir.join("client.key").display()))
        .args(["member", "list", "-w", "json"])
        .output()
        .expect("run etcdctl");
    assert!(
        out.status.success(),
        "etcdctl member list: {}",
        text(&out.stderr)
    );
    serde_json::from_str(&text(&out.stdout)).unwrap()
}

/// `artifacts fetch` fills an empty cache from the mirror; `artifacts bundle`
/// packs it; a second empty cache is filled from the bundle alone, every
/// file verified again (what an air-gapped workstation does before `apply
/// --artifacts BUNDLE`).
#[test]
fn artifacts_fetch_and_an_air_gap_bundle_round_trip() {
    let (root, _) = mirror();
    let work = std::env::temp_dir().join(format!("k8sup-e2e-bundle-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let inventory = work.join("inventory.yaml");
    std::fs::write(
        &inventory,
        format!(
            "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster:\n  name: air\n  kubernetesVersion: {}\n  artifacts: {{ source: {}, images: archives }}\nhosts:\n  - {{ name: cp-1, address: 10.0.0.11, role: control-plane }}\n",
            common::KUBERNETES,
            root.display()
        ),
    )
    .unwrap();
    let run = |cache: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_k8sup"))
            .args(args)
            .env("XDG_CACHE_HOME", work.join(cache))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "k8sup {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let inv = inventory.to_str().unwrap();
    let fetched: serde_json::Value =
        serde_json::from_str(&run("a", &["artifacts", "fetch", "-i", inv, "-o", "json"])).unwrap();
    let names: Vec<&str> = fetched
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    for n in [
        "kubelet",
        "kube-apiserver",
        "containerd",
        "runc",
        "cni-plugins",
        "image-pause",
        "image-coredns",
    ] {
        assert!(names.contains(&n), "{n} not fetched: {names:?}");
    }
    assert!(
        fetched
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "downloaded")
    );
    // A second fetch reads nothing.
    let again: serde_json::Value =
        serde_json::from_str(&run("a", &["artifacts", "fetch", "-i", inv, "-o", "json"])).unwrap();
    assert!(
        again
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "cached"),
        "{again}"
    );
    let bundle = work.join("bundle.tar");
    run(
        "a",
        &[
            "artifacts",
            "bundle",
            "-i",
            inv,
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    let imported: serde_json::Value = serde_json::from_str(&run(
        "b",
        &[
            "artifacts",
            "fetch",
            "-i",
            inv,
            "--artifacts",
            bundle.to_str().unwrap(),
            "-o",
            "json",
        ],
    ))
    .unwrap();
    assert_eq!(
        imported.as_array().unwrap().len(),
        fetched.as_array().unwrap().len()
    );
    assert!(
        imported
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["outcome"] == "imported"),
        "{imported}"
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// The lab's inventory with only the hosts `keep` (by index), written as
/// JSON (which is YAML) beside it.
fn inventory_of(lab: &TestLab, file: &str, keep: &[usize]) -> std::path::PathBuf {
    let text = std::fs::read_to_string(lab.inventory()).unwrap();
    let mut doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let hosts: Vec<serde_json::Value> = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(i, _)| keep.contains(i))
        .map(|(_, h)| h.clone())
        .collect();
    doc["hosts"] = serde_json::Value::Array(hosts);
    let path = lab.inventory().with_file_name(file);
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

/// The plan's actions on `host`, as `kind resource` strings.
fn actions_on(plan: &serde_json::Value, host: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in plan["phases"].as_array().into_iter().flatten() {
        for s in p["steps"].as_array().into_iter().flatten() {
            for h in s["hosts"].as_array().into_iter().flatten() {
                if h["host"] != host {
                    continue;
                }
                for a in h["actions"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "{} {}",
                        a["kind"].as_str().unwrap_or("?"),
                        a["resource"].as_str().unwrap_or("?")
                    ));
                }
            }
        }
    }
    out
}

/// Scenario 2 of the cluster issue: a 3+2 cluster with three voting
/// members grows by a control plane and a worker (the plan shows their
/// additions and one learner join; running nodes keep their datastore
/// units, their kubelets and their pod networks), then loses the control
/// plane a worker's API-server proxy prefers: the API answers through the
/// others and that Node stays Ready.
#[test]
fn three_control_planes_grow_by_one_of_each_then_keep_serving_when_one_stops() {
    let (root, index) = mirror();
    // Machines 0-3 can be control planes, 4-6 workers.
    let lab = TestLab::up_with(
        "t-e2e-ha",
        UpOptions {
            nodes: 7,
            control_planes: 4,
            mirror: Some(root.clone()),
            ..Default::default()
        },
    );
    let first = inventory_of(&lab, "first.yaml", &[0, 1, 2, 4, 5]);
    let out = k8sup(&["apply", "-i", first.to_str().unwrap(), "--yes"]);
    assert!(
        out.status.success(),
        "apply of 3+2 failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let dir = lab.inventory().parent().unwrap().join("ha");
    std::fs::create_dir_all(&dir).unwrap();

    // Three voting members, none a learner.
    let m = members(&lab, 0, &dir);
    let list = m["members"].as_array().expect("members");
    assert_eq!(list.len(), 3, "{m}");
    assert!(
        list.iter().all(|x| x["isLearner"].as_bool() != Some(true)),
        "{m}"
    );
    let conflist = "cat /etc/cni/net.d/10-k8sup-bridge.conflist";
    let worker_net = lab.root(4, conflist);

    // The grown inventory lists the new control plane before the running
    // workers: the plan adds it as a learner and the new worker, and leaves
    // what runs on the other hosts alone.
    let full = inventory_of(&lab, "full.yaml", &[0, 1, 2, 3, 4, 5, 6]);
    let out = k8sup(&["plan", "-i", full.to_str().unwrap(), "--color", "never"]);
    let plan = text(&out.stdout);
    assert!(out.status.success(), "{plan}\n{}", text(&out.stderr));
    let joins: Vec<&str> = plan
        .lines()
        .filter(|l| l.contains("add ") && l.contains("as a learner"))
        .collect();
    assert_eq!(joins.len(), 1, "one learner join: {plan}");
    assert!(joins[0].contains(&lab.node(3)), "{plan}");
    let out = k8sup(&["plan", "-i", full.to_str().unwrap(), "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    for i in [0, 1, 2, 4, 5] {
        let touched: Vec<String> = actions_on(&json, &lab.node(i))
            .into_iter()
            .filter(|a| {
                [
                    "k8sup-datastore.service",
                    "kubelet",
                    "containerd",
                    "10-k8sup-bridge",
                    "kube-proxy",
                ]
                .iter()
                .any(|k| a.contains(k))
            })
            .collect();
        assert!(
            touched.is_empty(),
            "{}: growing the cluster touches what runs there: {touched:?}",
            lab.node(i)
        );
    }
    assert!(
        !actions_on(&json, &lab.node(6)).is_empty(),
        "the new worker has nothing to do:\n{plan}"
    );
    let out = k8sup(&["apply", "-i", full.to_str().unwrap(), "--yes"]);
    assert!(
        out.status.success(),
        "apply of 4+3 failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // Four voters: the learner was promoted.
    let m = members(&lab, 0, &dir);
    let list = m["members"].as_array().expect("members");
    assert_eq!(list.len(), 4, "{m}");
    assert!(
        list.iter().all(|x| x["isLearner"].as_bool() != Some(true)),
        "a learner was not promoted: {m}"
    );
    assert_eq!(
        lab.root(4, conflist),
        worker_net,
        "a running worker's pod network moved"
    );
    let kubectl = admin_kubectl(full.to_str().unwrap(), &dir, &root, &index);
    let config = kubectl.config.clone();
    kubectl.wait_ready("seven Ready nodes", 7, Duration::from_secs(180), &[]);
    nothing_to_do(full.to_str().unwrap(), "the plan after the growth");

    // The first worker's proxy prefers the first control plane: stop that one.
    let proxy = lab.root(4, "cat /etc/k8sup/apiserver-proxy.json");
    assert!(
        proxy.contains(&format!("\"{}:6443\"", lab.address(0))),
        "worker 1's proxy does not name the first control plane:\n{proxy}"
    );
    lab.lab
        .stop(&lab.node(0))
        .expect("stop the first control plane");

    // Through another control plane: the API answers, and worker 1 stays
    // Ready well past the node monitor's grace period (its kubelet fails over).
    let out = k8sup(&[
        "kubeconfig",
        "-i",
        full.to_str().unwrap(),
        "--out",
        config.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "kubeconfig with a control plane down: {}",
        text(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(60));
    let worker = lab.node(4);
    let ready = kubectl.wait(
        "worker 1 Ready with the first control plane down",
        Duration::from_secs(60),
        &[
            "get",
            "node",
            &worker,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ],
        |o| o.trim() == "True",
    );
    assert_eq!(ready.trim(), "True");
    let m = members(&lab, 1, &dir);
    assert_eq!(m["members"].as_array().unwrap().len(), 4, "{m}");
}

/// Run `script` with sh in `dir`; panics with its output when it fails.
fn sh_in(dir: &Path, script: &str) -> String {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{script}` failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `cluster.datastore.type: external`: a control plane and a worker on the
/// user's etcd 3.6 (on a third machine, mTLS with the user's own CA, made
/// here with openssl): no k8sup datastore runs, the Nodes are Ready, and
/// the cluster's objects and k8sup's record are in the user's etcd.
#[test]
fn a_cluster_on_an_external_etcd() {
    let (root, index) = mirror();
    let lab = TestLab::up_with(
        "t-e2e-ext",
        UpOptions {
            nodes: 3,
            control_planes: 1,
            mirror: Some(root.clone()),
            ..Default::default()
        },
    );
    let dir = lab.inventory().parent().unwrap().join("user-etcd");
    std::fs::create_dir_all(&dir).unwrap();
    // The user's etcd on machine 2, which is not in the cluster's inventory.
    let ip = lab.address(2);
    sh_in(
        &dir,
        &format!(
            "tar -xzf {tarball} --strip-components=1 etcd-v3.6.17-linux-amd64/etcd etcd-v3.6.17-linux-amd64/etcdctl
             key() {{ openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out \"$1\" 2>/dev/null; }}
             key ca.key
             openssl req -x509 -new -key ca.key -out ca.crt -days 2 -subj /CN=user-etcd-ca
             for who in server client; do
               key $who.key
               openssl req -new -key $who.key -out $who.csr -subj /CN=$who
             done
             printf 'subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n' > server.ext
             printf 'extendedKeyUsage=clientAuth\n' > client.ext
             for who in server client; do
               openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile $who.ext -out $who.crt 2>/dev/null
             done",
            tarball = common::component(&root, &index, "etcd").display(),
        ),
    );
    lab.root(2, "mkdir -p /etc/user-etcd");
    lab.copy_to(2, &dir.join("etcd"), "/usr/local/bin/etcd");
    for f in ["ca.crt", "server.crt", "server.key"] {
        lab.copy_to(2, &dir.join(f), &format!("/etc/user-etcd/{f}"));
    }
    lab.root(
        2,
        &format!(
            "systemd-run --unit=user-etcd /usr/local/bin/etcd --name user-etcd \
             --data-dir /var/lib/user-etcd \
             --listen-client-urls https://{ip}:2379 --advertise-client-urls https://{ip}:2379 \
             --cert-file /etc/user-etcd/server.crt --key-file /etc/user-etcd/server.key \
             --trusted-ca-file /etc/user-etcd/ca.crt --client-cert-auth \
             --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
             --initial-cluster user-etcd=http://127.0.0.1:2380"
        ),
    );
    let etcdctl = format!(
        "./etcdctl --endpoints=https://{ip}:2379 --cacert=ca.crt --cert=client.crt --key=client.key"
    );
    let start = Instant::now();
    while !Command::new("sh")
        .arg("-c")
        .arg(format!("{etcdctl} endpoint health"))
        .current_dir(&dir)
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the user's etcd did not start"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The cluster's inventory: machines 0 and 1, on the user's etcd.
    let inventory = inventory_of(&lab, "external.yaml", &[0, 1]);
    let mut doc: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&inventory).unwrap()).unwrap();
    doc["cluster"]["datastore"] = serde_json::json!({
        "type": "external",
        "servers": [format!("https://{ip}:2379")],
        "caFile": dir.join("ca.crt"),
        "certFile": dir.join("client.crt"),
        "keyFile": dir.join("client.key"),
    });
    std::fs::write(&inventory, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let inv = inventory.to_str().unwrap();
    let out = k8sup(&["apply", "-i", inv, "--yes"]);
    assert!(
        out.status.success(),
        "apply on an external etcd:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );

    // No k8sup datastore member anywhere; the key 0600.
    let active = lab.root(0, "systemctl is-active k8sup-datastore.service || true");
    assert_ne!(active.trim(), "active");
    let mode = lab.root(
        0,
        "stat -c %a /etc/kubernetes/pki/external-datastore/client.key",
    );
    assert_eq!(mode.trim(), "600");
    let kubectl = admin_kubectl(inv, &dir, &root, &index);
    kubectl.wait_ready("two Ready nodes", 2, Duration::from_secs(120), &[]);
    kubectl.ok(&["create", "namespace", "on-user-etcd"]);
    // The cluster's objects and k8sup's record are in the user's etcd.
    let keys = sh_in(
        &dir,
        &format!("{etcdctl} get /registry/namespaces/on-user-etcd --keys-only"),
    );
    assert!(keys.contains("/registry/namespaces/on-user-etcd"), "{keys}");
    let record = sh_in(
        &dir,
        &format!("{etcdctl} get /k8sup/cluster-state --print-value-only"),
    );
    assert!(record.contains("\"datastore\": \"external\""), "{record}");
    let out = k8sup(&["status", "-i", inv]);
    assert!(
        out.status.success(),
        "status on an external etcd:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains(&format!("external etcd at https://{ip}:2379")));
    nothing_to_do(inv, "a second plan on an external etcd");
}
