//! kube-apiserver v1.37.2 on 3 k8sup-datastore members against the same
//! apiserver, same flags and certificates, on 3 etcd 3.6 members, in one
//! run (issue 10 §3's benchmark). Prints every figure and the ratio.
//!
//! Run with `bash benches/kube-apiserver/run.sh` (it builds the release
//! datastore and passes it as `K8SUP_DATASTORE_BIN`). Env: `BENCH_CREATES`
//! (default 10000), `BENCH_CLIENTS` (50), `BENCH_WATCH_SAMPLES` (2000: the
//! p99 is then the median of the 20 slowest writes, not the second slowest
//! of 200, which swung 0.65x-2.5x between runs of the same builds),
//! `BENCH_CHECK_PERF` (loads for `etcdctl check perf`, default `s,m,l`;
//! empty to skip), `BENCH_ONLY=k8sup|etcd`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8sup_testbed::{Api, ControlPlane, ControlPlaneOpts, Store, StoreKind, TestPki};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Default, Debug)]
struct Figures {
    creates_per_s: f64,
    create_p50_ms: f64,
    create_p99_ms: f64,
    create_errors: usize,
    list_ms: f64,
    list_items: usize,
    watch_p50_ms: f64,
    watch_p99_ms: f64,
    rss_mib: f64,
    disk_mib: f64,
    check_perf: Vec<(String, String)>,
    load: String,
}

async fn run_api(api: &Api, creates: usize, clients: usize, samples: usize, f: &mut Figures) {
    for ns in ["bench", "lat"] {
        let (st, _) = api
            .post(
                "/api/v1/namespaces",
                &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )
            .await
            .unwrap();
        assert_eq!(st, 201, "creating namespace {ns}");
    }
    // Write -> watch event, one write at a time on an otherwise idle apiserver.
    let mut w = api
        .watch("/api/v1/namespaces/lat/configmaps", "")
        .await
        .unwrap();
    let mut delays = Vec::new();
    for i in 0..samples {
        let name = format!("lat-{i:04}");
        let t0 = Instant::now();
        let st = api.create_configmap("lat", &name, "x").await.unwrap();
        assert_eq!(st, 201);
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .expect("a watch event within 10 s")
                .expect("the watch ended");
            if ev["object"]["metadata"]["name"] == name.as_str() {
                break;
            }
        }
        delays.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    delays.sort_by(f64::total_cmp);
    f.watch_p50_ms = pct(&delays, 0.5);
    f.watch_p99_ms = pct(&delays, 0.99);

    // N creates from C concurrent clients.
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (api, next) = (api.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= creates {
                    break;
                }
                let t = Instant::now();
                match api
                    .create_configmap("bench", &format!("cm-{i:05}"), "some configuration value")
                    .await
                {
                    Ok(201) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        let (l, e) = t.await.unwrap();
        lat.extend(l);
        f.create_errors += e;
    }
    let secs = t0.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    f.creates_per_s = lat.len() as f64 / secs;
    f.create_p50_ms = pct(&lat, 0.5);
    f.create_p99_ms = pct(&lat, 0.99);

    // A full LIST of them (consistent: from the watch cache once the store
    // confirms its revision, as kube-apiserver 1.37 does), best of 5.
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let (st, body) = api
            .get("/api/v1/namespaces/bench/configmaps")
            .await
            .unwrap();
        assert_eq!(st, 200);
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
        f.list_items = body["items"].as_array().map_or(0, |a| a.len());
    }
    f.list_ms = best;
}

fn bench(kind: StoreKind, creates: usize, clients: usize, samples: usize) -> Figures {
    let name = kind.name();
    eprintln!(
        "== {name}: starting 3 members and kube-apiserver (load {})",
        load()
    );
    let dir = tempfile::tempdir().unwrap();
    let port = ControlPlane::port();
    let pki = TestPki::issue(
        &dir.path().join("pki"),
        3,
        &format!("https://127.0.0.1:{port}"),
    );
    let mut store = Store::start(kind, &pki, &dir.path().join("store"), &[]);
    let opts = ControlPlaneOpts {
        controllers: false,
        ..Default::default()
    };
    let mut cp = ControlPlane::start(&pki, port, &store.endpoints(), dir.path(), &opts);
    let api = Api::from_kubeconfig(&pki.admin_conf());
    let mut f = Figures {
        load: load(),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_api(&api, creates, clients, samples, &mut f));
    f.rss_mib = store.rss_kib().iter().sum::<u64>() as f64 / 1024.0;
    f.disk_mib = store.disk_bytes().iter().sum::<u64>() as f64 / (1024.0 * 1024.0);
    eprintln!("== {name}: {f:?}");
    cp.apiserver.kill9();
    let loads = std::env::var("BENCH_CHECK_PERF").unwrap_or_else(|_| "s,m,l".into());
    for l in loads.split(',').filter(|l| !l.is_empty()) {
        eprintln!("== {name}: etcdctl check perf --load={l} (load {})", load());
        let out = store.etcdctl(&["check", "perf", &format!("--load={l}")]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("PASS")
                    || l.starts_with("FAIL")
                    || l.contains("took too long")
                    || l.contains("Error")
            })
            .collect();
        eprintln!("== {name}: check perf --load={l}: {}", summary.join("; "));
        f.check_perf.push((l.to_string(), summary.join("; ")));
    }
    f
}

fn main() {
    let creates: usize = env_or("BENCH_CREATES", 10_000);
    let clients: usize = env_or("BENCH_CLIENTS", 50);
    let samples: usize = env_or("BENCH_WATCH_SAMPLES", 2000);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let ours: PathBuf = std::env::var_os("K8SUP_DATASTORE_BIN")
        .map(PathBuf::from)
        .expect("K8SUP_DATASTORE_BIN: the k8sup-datastore binary to measure (run.sh sets it)");
    let etcd = (only != "k8sup").then(|| {
        bench(
            StoreKind::Etcd(k8sup_testbed::etcd_dir()),
            creates,
            clients,
            samples,
        )
    });
    let k8sup = (only != "etcd").then(|| bench(StoreKind::K8sup(ours), creates, clients, samples));
    let (Some(e), Some(o)) = (etcd, k8sup) else {
        return;
    };
    let r = |a: f64, b: f64| {
        if b == 0.0 {
            "-".to_string()
        } else {
            format!("{:.2}x", a / b)
        }
    };
    println!(
        "\nkube-apiserver v1.37.2 on 3 members, {creates} ConfigMap creates from {clients} clients \
         (load average at start: etcd {}, k8sup {})\n",
        e.load, o.load
    );
    println!("| figure | etcd 3.6 | k8sup-datastore | k8sup/etcd | better |");
    println!("|---|---:|---:|---:|---|");
    let rows: [(&str, f64, f64, &str, bool); 9] = [
        ("creates/s", e.creates_per_s, o.creates_per_s, "/s", true),
        ("create p50", e.create_p50_ms, o.create_p50_ms, " ms", false),
        ("create p99", e.create_p99_ms, o.create_p99_ms, " ms", false),
        ("full LIST (best of 5)", e.list_ms, o.list_ms, " ms", false),
        (
            "write -> watch event p50",
            e.watch_p50_ms,
            o.watch_p50_ms,
            " ms",
            false,
        ),
        (
            "write -> watch event p99",
            e.watch_p99_ms,
            o.watch_p99_ms,
            " ms",
            false,
        ),
        ("store RSS, 3 members", e.rss_mib, o.rss_mib, " MiB", false),
        (
            "store disk, 3 members",
            e.disk_mib,
            o.disk_mib,
            " MiB",
            false,
        ),
        (
            "create errors",
            e.create_errors as f64,
            o.create_errors as f64,
            "",
            false,
        ),
    ];
    for (what, a, b, unit, higher_better) in rows {
        let ours_better = if higher_better { b >= a } else { b <= a };
        println!(
            "| {what} | {a:.1}{unit} | {b:.1}{unit} | {} | {} |",
            r(b, a),
            if ours_better {
                "k8sup (target met)"
            } else {
                "etcd (target not met)"
            }
        );
    }
    println!("\nLIST returned {} / {} items", e.list_items, o.list_items);
    for ((l, a), (_, b)) in e.check_perf.iter().zip(&o.check_perf) {
        println!("\netcdctl check perf --load={l}\n- etcd 3.6: {a}\n- k8sup:    {b}");
    }
}
