//! The datastore's real consumer: kube-apiserver, kube-controller-manager,
//! kube-scheduler and kubectl v1.37.2 (from the artifacts mirror) on a
//! 3-member mutual-TLS k8sup-datastore cluster on loopback, with the
//! certificates of `k8sup-pki`, driven through kubectl as a user would
//! (issue 10 §3). The same scenario runs on three etcd 3.6 members, the
//! oracle: both must give the same outcomes.
//!
//! Needs the mirror (`K8SUP_MIRROR`, or `tests/artifacts/build.sh` builds or
//! finds it) and fails, never skips, without it.

use std::io::BufReader;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8sup_testbed::process::wait_for;
use k8sup_testbed::{Api, ControlPlane, ControlPlaneOpts, Store, StoreKind, TestPki};
use serde_json::Value;

const NS: &str = "t";

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testbed.k8sup.io
spec:
  group: testbed.k8sup.io
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
"#;

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

/// `kubectl get configmaps -w --output-watch-events -o json`, collected
/// in the background as (event type, name).
struct Watching {
    child: Child,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Watching {
    fn start(cp: &ControlPlane) -> Watching {
        let mut child = cp
            .kubectl_command(&[
                "get",
                "configmaps",
                "-n",
                NS,
                "-w",
                "--watch-only",
                "--output-watch-events",
                "-o",
                "json",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get -w");
        let out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            let stream = serde_json::Deserializer::from_reader(BufReader::new(out));
            for v in stream.into_iter::<Value>().flatten() {
                let t = v["type"].as_str().unwrap_or("").to_string();
                let n = v["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                s.lock().unwrap().push((t, n));
            }
        });
        Watching { child, seen }
    }

    /// Waits until `(type, name)` was seen.
    fn wait(&self, t: &str, name: &str) -> bool {
        wait_for(Duration::from_secs(20), || {
            self.seen
                .lock()
                .unwrap()
                .iter()
                .any(|(a, b)| a == t && b == name)
                .then_some(())
        })
        .is_some()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the scenario observed, compared between the two stores.
#[derive(Debug, PartialEq)]
struct Outcome {
    readyz_all_ok: bool,
    consistent_reads_from_cache: bool,
    deployment_pods: usize,
    replicasets: usize,
    widgets: Vec<String>,
    paged_names_equal_full: bool,
    paged_requests_over_3: bool,
    watch_saw: Vec<bool>,
    pods_gone_after_delete: bool,
    event_expired: bool,
    store_compacted: bool,
    compaction_errors: Vec<String>,
    recovered_within_15s: bool,
    lost_acknowledged_writes: Vec<String>,
}

fn fail(name: &str, what: &str, cp: &ControlPlane, store: &Store) -> ! {
    panic!("{name}: {what}\n{}\n{}", cp.logs(), store.logs())
}

/// One control plane at a time (`cargo test` runs a binary's tests in
/// parallel): each takes most of a small machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn scenario(kind: StoreKind) -> Outcome {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let mut dir = tempfile::Builder::new()
        .prefix("kube-apiserver-")
        .tempdir()
        .unwrap();
    // K8SUP_KEEP=1 keeps the logs, certificates and data for a look after.
    dir.disable_cleanup(std::env::var_os("K8SUP_KEEP").is_some());
    let port = ControlPlane::port();
    let pki = TestPki::issue(
        &dir.path().join("pki"),
        3,
        &format!("https://127.0.0.1:{port}"),
    );
    let name = kind.name();
    let mut store = Store::start(kind, &pki, &dir.path().join("store"), &[]);
    let opts = ControlPlaneOpts {
        event_ttl: "8s".into(),
        compaction_interval: "10s".into(),
        controllers: true,
        apiserver_extra: Vec::new(),
    };
    let cp = ControlPlane::start(&pki, port, &store.endpoints(), dir.path(), &opts);

    // Every readiness check, the store's among them.
    let readyz = cp.ctl(&["get", "--raw=/readyz?verbose"]);
    let checks: Vec<&str> = readyz.lines().filter(|l| l.starts_with('[')).collect();
    let readyz_all_ok = checks.len() > 20
        && checks
            .iter()
            .all(|l| l.starts_with("[+]") && l.ends_with(" ok"))
        && checks.contains(&"[+]etcd ok")
        && readyz.contains("readyz check passed");
    assert!(readyz_all_ok, "{name}: /readyz?verbose:\n{readyz}");

    cp.ctl(&["create", "namespace", NS]);
    let watching = Watching::start(&cp);
    // An Event, early: it must be gone by its lease (8 s TTL) near the end.
    cp.ctl_stdin(
        &["create", "-f", "-"],
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "probe", "namespace": NS},
            "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm-a", "namespace": NS},
            "reason": "Probe", "message": "expires with its lease", "type": "Normal",
        })
        .to_string(),
    );
    let event_created = Instant::now();
    assert!(
        cp.ctl(&["get", "event", "probe", "-n", NS, "-o", "name"])
            .contains("probe")
    );

    // ConfigMaps and Secrets: create, read back, change, and the watch sees it.
    cp.ctl(&[
        "create",
        "configmap",
        "cm-a",
        "-n",
        NS,
        "--from-literal=k=v1",
    ]);
    cp.ctl(&[
        "create",
        "secret",
        "generic",
        "s-a",
        "-n",
        NS,
        "--from-literal=password=hunter2",
    ]);
    assert_eq!(
        cp.ctl(&[
            "get",
            "configmap",
            "cm-a",
            "-n",
            NS,
            "-o",
            "jsonpath={.data.k}"
        ]),
        "v1"
    );
    assert_eq!(
        cp.ctl(&[
            "get",
            "secret",
            "s-a",
            "-n",
            NS,
            "-o",
            "jsonpath={.data.password}"
        ]),
        "aHVudGVyMg=="
    );
    cp.ctl(&[
        "patch",
        "configmap",
        "cm-a",
        "-n",
        NS,
        "--type=merge",
        "-p",
        r#"{"data":{"k":"v2"}}"#,
    ]);

    // A Deployment: the controller manager makes its ReplicaSet and Pods
    // (Pending: no node runs them here).
    cp.ctl(&[
        "create",
        "deployment",
        "web",
        "-n",
        NS,
        "--image=k8sup.local/busybox:1",
        "--replicas=2",
    ]);
    let pods = wait_for(Duration::from_secs(60), || {
        let p = lines(&cp.ctl(&["get", "pods", "-n", NS, "-l", "app=web", "-o", "name"]));
        (p.len() == 2).then_some(p)
    })
    .unwrap_or_else(|| fail(name, "the Deployment's 2 Pods never appeared", &cp, &store));
    let rs = lines(&cp.ctl(&[
        "get",
        "replicasets",
        "-n",
        NS,
        "-l",
        "app=web",
        "-o",
        "name",
    ]));

    // A CRD and its objects.
    cp.ctl_stdin(&["apply", "-f", "-"], CRD);
    cp.ctl(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.testbed.k8sup.io",
        "--timeout=60s",
    ]);
    for (i, w) in ["w1", "w2", "w3"].iter().enumerate() {
        cp.ctl_stdin(
            &["apply", "-f", "-"],
            &serde_json::json!({
                "apiVersion": "testbed.k8sup.io/v1", "kind": "Widget",
                "metadata": {"name": w, "namespace": NS}, "spec": {"size": i},
            })
            .to_string(),
        );
    }
    let widgets = lines(&cp.ctl(&["get", "widgets", "-n", NS, "-o", "name"]));

    // Pagination: 30 more ConfigMaps, listed 7 at a time.
    let many: Vec<Value> = (0..30)
        .map(|i| {
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("page-{i:02}"), "namespace": NS}, "data": {"i": i.to_string()}})
        })
        .collect();
    cp.ctl_stdin(
        &["create", "-f", "-"],
        &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": many}).to_string(),
    );
    let paged = cp.kubectl(&[
        "get",
        "configmaps",
        "-n",
        NS,
        "--chunk-size=7",
        "-o",
        "name",
        "-v=6",
    ]);
    assert!(paged.status.success());
    let paged_names = lines(&String::from_utf8_lossy(&paged.stdout));
    let requests = String::from_utf8_lossy(&paged.stderr)
        .lines()
        .filter(|l| l.contains("/configmaps?") && l.contains("limit=7"))
        .count();
    let full = lines(&cp.ctl(&["get", "configmaps", "-n", NS, "-o", "name"]));

    // The consistent lists above came from the watch cache: the apiserver
    // found RequestWatchProgress working on this store.
    let metrics = cp.ctl(&["get", "--raw=/metrics"]);
    let consistent_reads_from_cache = metrics.lines().any(|l| {
        l.starts_with("apiserver_watch_cache_consistent_read_total")
            && l.contains("fallback=\"false\"")
            && !l.ends_with(" 0")
    });

    // Deletes, and the watch saw each change.
    cp.ctl(&["delete", "configmap", "cm-a", "-n", NS]);
    cp.ctl(&["delete", "secret", "s-a", "-n", NS]);
    cp.ctl(&["delete", "deployment", "web", "-n", NS]);
    let pods_gone_after_delete = wait_for(Duration::from_secs(60), || {
        lines(&cp.ctl(&["get", "pods,replicasets", "-n", NS, "-o", "name"]))
            .is_empty()
            .then_some(())
    })
    .is_some();
    let watch_saw = vec![
        watching.wait("ADDED", "cm-a"),
        watching.wait("MODIFIED", "cm-a"),
        watching.wait("ADDED", "page-29"),
        watching.wait("DELETED", "cm-a"),
    ];
    assert!(
        cp.kubectl(&["get", "secret", "s-a", "-n", NS])
            .status
            .code()
            == Some(1),
        "{name}: the deleted Secret is still there"
    );

    // The Event is deleted by its lease: TTL 8 s (+1 s of lease reuse).
    let event_expired = wait_for(Duration::from_secs(45), || {
        let out = cp.kubectl(&["get", "event", "probe", "-n", NS, "-o", "name"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("NotFound")
            .then_some(())
    })
    .is_some();
    let expired_after = event_created.elapsed();

    // The apiserver's own compaction (every 10 s, of the revision it saw one
    // interval earlier): old revisions are gone from the store.
    let store_compacted = wait_for(Duration::from_secs(60), || {
        let out = store.etcdctl(&["get", "/registry", "--prefix", "--keys-only", "--rev=2"]);
        String::from_utf8_lossy(&out.stderr)
            .contains("required revision has been compacted")
            .then_some(())
    })
    .is_some();
    let compaction_errors: Vec<String> = cp
        .apiserver
        .log_text()
        .lines()
        // The compactor's own errors (k8s.io/apiserver storage/etcd3/compact.go).
        .filter(|l| {
            l.contains("compact failed") || (l.starts_with('E') && l.contains("etcd: endpoint ("))
        })
        .map(String::from)
        .collect();

    // kill -9 of the store's leader under a stream of writes: served again
    // within seconds, and every acknowledged write is still there.
    let api = Api::from_kubeconfig(&pki.admin_conf());
    cp.ctl(&["create", "namespace", "ack"]);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let writer = {
        let (stop, acked, api) = (stop.clone(), acked.clone(), api.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    let name = format!("w-{i:05}");
                    i += 1;
                    let r = tokio::time::timeout(
                        Duration::from_secs(5),
                        api.create_configmap("ack", &name, "x"),
                    )
                    .await;
                    if let Ok(Ok(201)) = r {
                        acked.lock().unwrap().push((name, Instant::now()));
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
    };
    std::thread::sleep(Duration::from_secs(3));
    let leader = store
        .leader()
        .unwrap_or_else(|| fail(name, "no store leader", &cp, &store));
    store.kill9(leader);
    let killed = Instant::now();
    let recovered = wait_for(Duration::from_secs(30), || {
        acked
            .lock()
            .unwrap()
            .iter()
            .find(|(_, t)| *t > killed)
            .map(|(_, t)| *t - killed)
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Release);
    writer.join().unwrap();
    let recovered_within_15s = recovered.is_some_and(|d| d < Duration::from_secs(15));
    store.restart(leader);
    store.wait_healthy(Duration::from_secs(60));
    let present: std::collections::BTreeSet<String> =
        lines(&cp.ctl(&["get", "configmaps", "-n", "ack", "-o", "name"]))
            .into_iter()
            .map(|l| l.trim_start_matches("configmap/").to_string())
            .collect();
    let acked = acked.lock().unwrap().clone();
    let lost_acknowledged_writes: Vec<String> = acked
        .iter()
        .filter(|(n, _)| !present.contains(n))
        .map(|(n, _)| n.clone())
        .collect();
    assert!(
        acked.len() > 10,
        "{name}: only {} writes acknowledged around the kill",
        acked.len()
    );
    let outcome = Outcome {
        readyz_all_ok,
        consistent_reads_from_cache,
        deployment_pods: pods.len(),
        replicasets: rs.len(),
        widgets,
        paged_names_equal_full: paged_names == full && full.len() >= 30,
        paged_requests_over_3: requests > 3,
        watch_saw,
        pods_gone_after_delete,
        event_expired,
        store_compacted,
        compaction_errors,
        recovered_within_15s,
        lost_acknowledged_writes,
    };
    let expected = Outcome {
        readyz_all_ok: true,
        consistent_reads_from_cache: true,
        deployment_pods: 2,
        replicasets: 1,
        widgets: vec![
            "widget.testbed.k8sup.io/w1".into(),
            "widget.testbed.k8sup.io/w2".into(),
            "widget.testbed.k8sup.io/w3".into(),
        ],
        paged_names_equal_full: true,
        paged_requests_over_3: true,
        watch_saw: vec![true; 4],
        pods_gone_after_delete: true,
        event_expired: true,
        store_compacted: true,
        compaction_errors: Vec::new(),
        recovered_within_15s: true,
        lost_acknowledged_writes: Vec::new(),
    };
    if outcome != expected {
        fail(name, &format!("outcome {outcome:#?}"), &cp, &store);
    }
    eprintln!(
        "{name}: all as expected in {:?}; Event gone after {expired_after:?}; \
         writes again {:?} after kill -9 of the leader; {} acknowledged, all present",
        started.elapsed(),
        recovered.unwrap(),
        acked.len()
    );
    outcome
}

#[test]
fn kube_apiserver_on_k8sup_datastore() {
    // `K8SUP_DATASTORE_BIN`: another build (checkouts sharing a
    // CARGO_TARGET_DIR overwrite cargo's copy in turn).
    let bin = std::env::var("K8SUP_DATASTORE_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_k8sup-datastore").to_string());
    scenario(StoreKind::K8sup(bin.into()));
}

/// The oracle: the same scenario on etcd 3.6 must give the same outcome.
#[test]
fn kube_apiserver_on_etcd_3_6() {
    scenario(StoreKind::Etcd(k8sup_testbed::etcd_dir()));
}
