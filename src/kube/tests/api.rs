//! The add-ons phase's plan and apply against a real kube-apiserver (v1.37.2,
//! from the artifacts mirror, on etcd 3.6, with k8sup-pki's certificates, on
//! loopback): what a user sees in the plan before the cluster has its
//! objects, after, and after someone changed one by hand; a template the API
//! refuses; and the words a failed wait ends with. The SSH forward in front
//! of the client is the lab's part (`src/cli/tests/e2e_cluster.rs`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8sup_cluster::AddonsRequest;
use k8sup_engine::{ActionKind, Event, HostPlan, Progress};
use k8sup_testbed::{ControlPlane, ControlPlaneOpts, Store, StoreKind, TestPki};
use kube::api::{Api, Patch, PatchParams};

fn request() -> AddonsRequest {
    let inventory = k8sup_inventory::parse_str(
        "apiVersion: k8sup.io/v1alpha1\nkind: Cluster\ncluster: {name: t, serviceCIDR: 10.96.0.0/12}\nhosts:\n  - {name: cp-1, address: 127.0.0.1, role: control-plane}\n",
        Path::new("t.yaml"),
        &|_| None,
    )
    .expect("valid")
    .inventory;
    let facts = BTreeMap::new();
    let t = k8sup_cluster::Topology::new(&inventory, &facts).unwrap();
    let files = k8sup_cluster::NodeFiles {
        coredns_image: "registry.k8s.io/coredns/coredns:v1.15.0".into(),
        coredns_version: "v1.15.0".into(),
        ..Default::default()
    };
    let mut want =
        k8sup_cluster::addons::request(&t, &files, &facts, &|_| true, &|_| false, true).unwrap();
    // No kubelet runs here: the wait can only fail, so it fails soon.
    want.wait = Duration::from_secs(5);
    want
}

/// What the waits said they waited for.
#[derive(Default)]
struct Waiting(std::sync::Mutex<Vec<String>>);

impl Progress for Waiting {
    fn event(&self, e: Event<'_>) {
        if let Event::Waiting { pending, .. } = e {
            self.0.lock().unwrap().push(pending.to_string());
        }
    }
}

fn kinds(plan: &HostPlan) -> Vec<String> {
    plan.actions
        .iter()
        .map(|a| format!("{:?} {}", a.kind, a.resource))
        .collect()
}

#[test]
fn the_add_ons_plan_shows_what_the_api_lacks_and_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let port = ControlPlane::port();
    let pki = TestPki::issue(
        &dir.path().join("pki"),
        1,
        &format!("https://127.0.0.1:{port}"),
    );
    let store = Store::start(
        StoreKind::Etcd(k8sup_testbed::etcd_dir()),
        &pki,
        &dir.path().join("store"),
        &[],
    );
    // The testbed's apiserver serves 10.96.0.0/12 (the inventory says so too).
    let _cp = ControlPlane::start(
        &pki,
        port,
        &store.endpoints(),
        dir.path(),
        &ControlPlaneOpts::default(),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let kubeconfig = kube::config::Kubeconfig::read_from(pki.admin_conf()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let want = request();
        let none = Default::default();

        // A new cluster: every object is a create, then the wait, then the
        // label of a node that has not registered.
        let plan = k8sup_kube::plan::plan_through(&client, "cp-1", &want, &none)
            .await
            .unwrap()
            .0;
        let shown = kinds(&plan);
        assert_eq!(shown.len(), 9, "{shown:#?}");
        assert!(
            shown[..7].iter().all(|a| a.starts_with("Create object:")),
            "{shown:#?}"
        );
        assert_eq!(shown[7], "Wait probe:cluster-ready");
        assert_eq!(shown[8], "Update node:cp-1");
        assert!(
            plan.actions[7].reason.contains("node cp-1 has not registered")
                && plan.actions[7]
                    .reason
                    .contains("the CoreDNS Deployment kube-system/coredns does not exist"),
            "{}",
            plan.actions[7].reason
        );
        assert!(plan.actions[8].reason.contains("once it registers"));

        // Applied: the objects are created; the wait fails, saying why, and
        // said while it waited what it waited for.
        let waiting = Waiting::default();
        let report = k8sup_kube::apply::apply_through(&client, &want, &plan, &waiting, &none).await;
        let said = waiting.0.lock().unwrap().clone();
        assert!(
            !said.is_empty() && said[0].contains("node cp-1 has not registered"),
            "{said:?}"
        );
        assert_eq!(report.changed, 7, "{report:?}");
        assert_eq!(report.failed, 1);
        assert_eq!(report.not_run, 1, "the label waits for the node");
        let error = report.error.clone().unwrap();
        assert!(
            error.contains("the cluster did not take workloads within 5 s")
                && error.contains("node cp-1 has not registered")
                && error.contains("no CoreDNS replica is available"),
            "{error}"
        );

        // Planned again: no object changes, only the wait and the label.
        let plan = k8sup_kube::plan::plan_through(&client, "cp-1", &want, &none)
            .await
            .unwrap()
            .0;
        assert_eq!(
            kinds(&plan),
            ["Wait probe:cluster-ready", "Update node:cp-1"],
            "the objects applied once are as wanted"
        );
        assert_eq!(plan.unchanged, 7);

        // Someone scales CoreDNS by hand: the plan puts it back, with a diff.
        Api::<Deployment>::namespaced(client.clone(), "kube-system")
            .patch(
                "coredns",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 5}})),
            )
            .await
            .unwrap();
        let plan = k8sup_kube::plan::plan_through(&client, "cp-1", &want, &none)
            .await
            .unwrap()
            .0;
        let update = &plan.actions[0];
        assert_eq!(update.kind, ActionKind::Update);
        assert_eq!(update.resource.as_str(), "object:Deployment/kube-system/coredns");
        let diff = update.diff.as_deref().unwrap();
        assert!(
            diff.contains("-    \"replicas\": 5,") && diff.contains("+    \"replicas\": 1,"),
            "{diff}"
        );
        assert!(diff.contains("(in the cluster)"), "{diff}");

        // A template the API refuses (a misspelt field): the plan says which
        // object, from which template, and the API's own words.
        let mut bad = want.clone();
        let (_, deployment) = bad
            .objects
            .iter_mut()
            .find(|(_, o)| o["kind"] == "Deployment")
            .unwrap();
        deployment["spec"]["replicaz"] = serde_json::json!(2);
        let err = k8sup_kube::plan::plan_through(&client, "cp-1", &bad, &none)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("object:Deployment/kube-system/coredns from addons/coredns.yaml is refused by the API")
                && err.contains("replicaz"),
            "{err}"
        );

        // A node whose kubelet this run restarts counts as Ready only once
        // it reported again: the API still shows the old kubelet's Ready.
        let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
        nodes
            .create(
                &Default::default(),
                &serde_json::from_value(serde_json::json!({
                    "apiVersion": "v1", "kind": "Node", "metadata": {"name": "cp-1"}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let report = |at: &str| {
            serde_json::json!({"status": {"conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status",
                "lastHeartbeatTime": at, "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]}})
        };
        let post = |at: &'static str| {
            let nodes = nodes.clone();
            async move {
                nodes
                    .patch_status("cp-1", &PatchParams::default(), &Patch::Merge(report(at)))
                    .await
                    .unwrap();
            }
        };
        post("2026-01-01T00:00:10Z").await;
        let (_, seen) = k8sup_kube::plan::plan_through(&client, "cp-1", &want, &none)
            .await
            .unwrap();
        assert!(seen.contains_key("cp-1"), "{seen:?}");
        let mut changed = want.clone();
        changed.restarted = vec!["cp-1".into()];
        let stale = "node cp-1 has not reported since this run changed it";
        let r = k8sup_kube::readiness::check(&client, &changed, &seen)
            .await
            .unwrap();
        assert!(r.missing.iter().any(|m| m.contains(stale)), "{:?}", r.missing);
        post("2026-01-01T00:00:20Z").await;
        let r = k8sup_kube::readiness::check(&client, &changed, &seen)
            .await
            .unwrap();
        assert!(
            !r.missing.iter().any(|m| m.contains("node cp-1")),
            "{:?}",
            r.missing
        );
    });
}
