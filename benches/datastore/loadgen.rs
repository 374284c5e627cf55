//! Side-by-side load generator: starts a 3-member etcd 3.6 cluster (from the
//! artifacts mirror: `K8SUP_ETCD_DIR`, `K8SUP_MIRROR` or `tests/artifacts/build.sh`)
//! and a 3-member k8sup-datastore cluster on loopback (plaintext, so both
//! pay the same transport), drives the same workloads against each and
//! prints every figure with the k8sup/etcd ratio.
//!
//! Run: `cargo bench -p k8sup-datastore --bench loadgen`
//! Env: `BENCH_SECS` (per point, default 10), `BENCH_KEYS` (memory test,
//! default 100000), `BENCH_CHECK_PERF=1` to also run `etcdctl check perf
//! --load=l` against both (60 s each), `BENCH_ONLY=k8sup|etcd`,
//! `BENCH_VALUE_BYTES` (put value size, default 256),
//! `BENCH_KEYS_SHAPE=check-perf` (a new zero-padded 256-byte key per put),
//! `BENCH_CONNS_PER_MEMBER` (client connections to each member, default 4;
//! `etcdctl check perf --load=l` opens 500 in all), `BENCH_WORKLOADS` (comma list of `put,range,watch,lag,mem`; default all),
//! `BENCH_K8SUP_BIN` (another k8sup-datastore binary, e.g. an older build
//! to measure a change against), `BENCH_X1_MEMBER=leader|follower` (where
//! the 1-client points and the fan-out writer go; default member 0, whichever
//! it is). The load average is printed with each
//! store's figures: on a shared machine, repeat a run taken under load.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8sup_datastore::proto::kv_client::KvClient;
use k8sup_datastore::proto::maintenance_client::MaintenanceClient;
use k8sup_datastore::proto::watch_client::WatchClient;
use k8sup_datastore::proto::{
    DeleteRangeRequest, PutRequest, RangeRequest, StatusRequest, WatchCreateRequest, WatchRequest,
    watch_request,
};
use tonic::transport::Channel;

/// etcd 3.6's etcdctl (`check perf`, health): the peer's own client.
fn etcdctl() -> PathBuf {
    k8sup_testbed::etcd_dir().join("etcdctl")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Cluster {
    name: &'static str,
    procs: Vec<Child>,
    urls: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.kill();
            let _ = p.wait();
        }
    }
}

fn start(name: &'static str, bin: &str, dir: &Path, extra: &[&str]) -> Cluster {
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, p))| format!("n{i}=http://127.0.0.1:{p}"))
        .collect();
    let initial = initial.join(",");
    let mut procs = Vec::new();
    let mut urls = Vec::new();
    for (i, (c, p)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("{name}-n{i}.log"))).unwrap();
        let mut cmd = Command::new(bin);
        cmd.args([
            format!("--name=n{i}"),
            format!("--data-dir={}", dir.join(format!("{name}-n{i}")).display()),
            format!("--listen-client-urls=http://127.0.0.1:{c}"),
            format!("--advertise-client-urls=http://127.0.0.1:{c}"),
            format!("--listen-peer-urls=http://127.0.0.1:{p}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{p}"),
            format!("--initial-cluster={initial}"),
            "--initial-cluster-state=new".into(),
        ]);
        cmd.args(extra).stdout(Stdio::null()).stderr(log);
        procs.push(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("starting {bin}: {e}")),
        );
        urls.push(format!("http://127.0.0.1:{c}"));
    }
    let c = Cluster { name, procs, urls };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new(etcdctl())
            .env("ETCDCTL_API", "3")
            .args([
                &format!("--endpoints={}", c.urls.join(",")),
                "endpoint",
                "health",
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{name} cluster did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

async fn channels(urls: &[String], per_endpoint: usize) -> Vec<Channel> {
    let mut out = Vec::new();
    for _ in 0..per_endpoint {
        for u in urls {
            out.push(
                tonic::transport::Endpoint::from_shared(u.clone())
                    .unwrap()
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .unwrap(),
            );
        }
    }
    out
}

fn pct(lat: &mut [u32], p: f64) -> f64 {
    if lat.is_empty() {
        return 0.0;
    }
    lat.sort_unstable();
    let i = ((lat.len() as f64 - 1.0) * p).round() as usize;
    lat[i] as f64 / 1000.0
}

#[derive(Clone, Copy, Default)]
struct Point {
    ops: f64,
    p50: f64,
    p99: f64,
    /// CPU time all members spent per operation, in microseconds: the
    /// figure that the shared machine's load disturbs least.
    cpu_us: f64,
}

/// User + system CPU seconds used so far by the cluster's processes.
fn cpu_secs(c: &Cluster) -> f64 {
    let tick = 100.0; // USER_HZ on Linux
    c.procs
        .iter()
        .map(|p| {
            let stat =
                std::fs::read_to_string(format!("/proc/{}/stat", p.id())).unwrap_or_default();
            // Fields after the command name (which may contain spaces).
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            // utime and stime are fields 14 and 15 of stat; 12 and 13 here.
            (t(11) + t(12)) / tick
        })
        .sum()
}

async fn drive<F, Fut>(chans: &[Channel], clients: usize, secs: f64, op: F) -> Point
where
    F: Fn(KvClient<Channel>, u64) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = bool> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let kv = KvClient::new(chans[c % chans.len()].clone());
        let stop = stop.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = c as u64 * 1_000_003;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                if op(kv.clone(), n).await {
                    lat.push(t.elapsed().as_micros() as u32);
                }
                n += 1;
            }
            lat
        }));
    }
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let el = t0.elapsed().as_secs_f64();
    let ops = all.len() as f64 / el;
    Point {
        ops,
        p50: pct(&mut all, 0.5),
        p99: pct(&mut all, 0.99),
        cpu_us: 0.0,
    }
}

async fn put_point(chans: &[Channel], clients: usize, secs: f64) -> Point {
    let size = std::env::var("BENCH_VALUE_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let value = Arc::new(vec![b'x'; size]);
    // `check-perf` keys: every write a new 256-byte key, zero-padded, as
    // `etcdctl check perf` writes them; otherwise 100k keys rewritten.
    let check_perf_keys = std::env::var("BENCH_KEYS_SHAPE").as_deref() == Ok("check-perf");
    drive(chans, clients, secs, move |mut kv, n| {
        let value = value.clone();
        async move {
            let key = if check_perf_keys {
                let mut k = format!("/etcdctl-check-perf/{n:016x}").into_bytes();
                k.resize(20 + 256, 0);
                k
            } else {
                format!("/bench/put/{:08}", n % 100_000).into_bytes()
            };
            kv.put(PutRequest {
                key,
                value: value.to_vec(),
                ..Default::default()
            })
            .await
            .is_ok()
        }
    })
    .await
}

async fn range_point(chans: &[Channel], clients: usize, secs: f64) -> Point {
    drive(chans, clients, secs, |mut kv, n| async move {
        let key = format!("/bench/put/{:08}", n % 1000).into_bytes();
        kv.range(RangeRequest {
            key,
            ..Default::default()
        })
        .await
        .is_ok()
    })
    .await
}

async fn watch_fanout(chans: &[Channel], watchers: usize, secs: f64) -> f64 {
    let received = Arc::new(AtomicU64::new(0));
    let mut keep = Vec::new();
    for w in 0..watchers {
        let mut client = WatchClient::new(chans[w % chans.len()].clone());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"/bench/fan/".to_vec(),
                    range_end: b"/bench/fan0".to_vec(),
                    ..Default::default()
                },
            )),
        })
        .await
        .unwrap();
        let mut stream = client
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let received = received.clone();
        keep.push(tx);
        tokio::spawn(async move {
            while let Ok(Some(r)) = stream.message().await {
                received.fetch_add(r.events.len() as u64, Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = received.load(Ordering::Relaxed);
    let mut kv = KvClient::new(chans[0].clone());
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        let key = format!("/bench/fan/{}", n % 100).into_bytes();
        let _ = kv
            .put(PutRequest {
                key,
                value: vec![b'y'; 256],
                ..Default::default()
            })
            .await;
        n += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received.load(Ordering::Relaxed) - before;
    drop(keep);
    got as f64 / t0.elapsed().as_secs_f64()
}

/// A write's delay to its watch event on each member: one writer (the
/// 1-client member), one watcher on every member, one put at a time, each
/// timed from its start until every watcher has its event. kube-apiserver's
/// watch cache sits on one member and its writes go to any: this is the
/// store's share of its write -> watch delay. Returns, per watcher, its
/// member's role and the delay's p50 and p99 in ms.
async fn watch_lag(chans: &[Channel], members: usize, secs: f64) -> Vec<(String, f64, f64)> {
    let roles = roles(&chans[..members]).await;
    let mut feeds = Vec::new();
    let mut keep = Vec::new();
    for ch in &chans[..members] {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"/bench/lag".to_vec(),
                    ..Default::default()
                },
            )),
        })
        .await
        .unwrap();
        let mut stream = WatchClient::new(ch.clone())
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        keep.push(tx);
        let (etx, erx) = tokio::sync::mpsc::unbounded_channel::<(i64, Instant)>();
        tokio::spawn(async move {
            while let Ok(Some(r)) = stream.message().await {
                let at = Instant::now();
                for e in r.events {
                    let _ = etx.send((e.kv.map(|kv| kv.mod_revision).unwrap_or(0), at));
                }
            }
        });
        feeds.push(erx);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut kv = KvClient::new(chans[0].clone());
    let mut lat: Vec<Vec<u32>> = vec![Vec::new(); members];
    let t_end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < t_end {
        let t0 = Instant::now();
        let rev = kv
            .put(PutRequest {
                key: b"/bench/lag".to_vec(),
                value: vec![b'z'; 256],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .header
            .map(|h| h.revision)
            .unwrap_or(0);
        for (m, feed) in feeds.iter_mut().enumerate() {
            loop {
                let (r, at) = tokio::time::timeout(Duration::from_secs(10), feed.recv())
                    .await
                    .expect("a watch event within 10 s")
                    .expect("the watch ended");
                if r >= rev {
                    lat[m].push(at.saturating_duration_since(t0).as_micros() as u32);
                    break;
                }
            }
        }
    }
    drop(keep);
    // The writer's member first, then the leader, then followers: the same
    // rows for both stores whichever member leads.
    let mut out: Vec<(u8, String, f64, f64)> = roles
        .iter()
        .zip(lat.iter_mut())
        .enumerate()
        .map(|(m, (role, l))| {
            let (rank, who) = match (m, *role) {
                (0, role) => (0, format!("the writer's member ({role})")),
                (_, "leader") => (1, "the leader".to_string()),
                (_, role) => (2, format!("a {role}")),
            };
            (rank, who, pct(l, 0.5), pct(l, 0.99))
        })
        .collect();
    out.sort_by_key(|o| o.0);
    out.into_iter().map(|(_, w, a, b)| (w, a, b)).collect()
}

/// "leader" or "follower" for the member behind each channel.
async fn roles(chans: &[Channel]) -> Vec<&'static str> {
    let mut out = Vec::new();
    for ch in chans {
        let s = MaintenanceClient::new(ch.clone())
            .status(StatusRequest {})
            .await
            .map(|r| r.into_inner())
            .ok();
        let leads = s
            .map(|s| s.leader != 0 && Some(s.leader) == s.header.map(|h| h.member_id))
            .unwrap_or(false);
        out.push(if leads { "leader" } else { "follower" });
    }
    out
}

fn rss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

async fn memory_after(chans: &[Channel], c: &Cluster, keys: usize) -> Vec<f64> {
    let value = vec![b'm'; 256];
    let per = keys / 128;
    let mut tasks = Vec::new();
    for t in 0..128 {
        let mut kv = KvClient::new(chans[t % chans.len()].clone());
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let key = format!("/bench/mem/{t:03}/{i:06}").into_bytes();
                let _ = kv
                    .put(PutRequest {
                        key,
                        value: value.clone(),
                        ..Default::default()
                    })
                    .await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    c.procs.iter().map(|p| rss_mib(p.id())).collect()
}

/// Seconds one DeleteRange of the memory test's keys takes (what
/// `etcdctl check perf` does to clean up after itself).
async fn delete_all(chans: &[Channel]) -> f64 {
    let mut kv = KvClient::new(chans[0].clone());
    let t0 = Instant::now();
    let req = DeleteRangeRequest {
        key: b"/bench/mem/".to_vec(),
        range_end: b"/bench/mem0".to_vec(),
        ..Default::default()
    };
    match kv.delete_range(req).await {
        Ok(r) => {
            eprintln!("deleted {} keys", r.into_inner().deleted);
            t0.elapsed().as_secs_f64()
        }
        Err(e) => {
            eprintln!(
                "delete failed after {:.1} s: {e}",
                t0.elapsed().as_secs_f64()
            );
            f64::NAN
        }
    }
}

fn check_perf(c: &Cluster) -> String {
    let out = Command::new(etcdctl())
        .env("ETCDCTL_API", "3")
        .args([
            &format!("--endpoints={}", c.urls.join(",")),
            "check",
            "perf",
            "--load=l",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("PASS") || l.contains("FAIL") || l.contains("Slowest"))
        .collect();
    if verdict.is_empty() {
        // etcdctl failed before judging: show why instead of an empty verdict.
        return format!(
            "no verdict (etcdctl exit {}): {}",
            out.status,
            text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
        );
    }
    verdict.join(" | ")
}

#[derive(Default)]
struct Results {
    puts: Vec<(usize, Point)>,
    range1: Point,
    range128: Point,
    fanout: f64,
    lag: Vec<(String, f64, f64)>,
    rss: Vec<f64>,
    del_secs: f64,
    perf: String,
    load_before: String,
    load_after: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn wants(workload: &str) -> bool {
    match std::env::var("BENCH_WORKLOADS") {
        Ok(list) if !list.is_empty() => list.split(',').any(|w| w.trim() == workload),
        _ => true,
    }
}

async fn bench(c: &Cluster, secs: f64, keys: usize) -> Results {
    let per_member = std::env::var("BENCH_CONNS_PER_MEMBER")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let mut chans = channels(&c.urls, per_member).await;
    // The 1-client points and the fan-out writer use the first channel:
    // put it on the member asked for (a write to a follower is forwarded).
    let all = roles(&chans[..c.urls.len()]).await;
    if let Ok(want) = std::env::var("BENCH_X1_MEMBER")
        && let Some(k) = all.iter().position(|r| *r == want)
    {
        chans.rotate_left(k);
    }
    let mut r = Results {
        load_before: loadavg(),
        ..Default::default()
    };
    let first = roles(&chans[..1]).await.remove(0);
    eprintln!(
        "{}: load average {}; the 1-client points go to the {first} (BENCH_X1_MEMBER=leader|follower)",
        c.name, r.load_before
    );
    for clients in [1usize, 16, 128, 512] {
        if !wants("put") {
            break;
        }
        let cpu0 = cpu_secs(c);
        let t0 = Instant::now();
        let mut p = put_point(&chans, clients, secs).await;
        p.cpu_us = (cpu_secs(c) - cpu0) * 1e6 / (p.ops * t0.elapsed().as_secs_f64()).max(1.0);
        eprintln!(
            "{}: put x{clients}: {:.0}/s p50 {:.2} ms p99 {:.2} ms, {:.0} us CPU/op",
            c.name, p.ops, p.p50, p.p99, p.cpu_us
        );
        r.puts.push((clients, p));
    }
    if wants("range") {
        r.range1 = range_point(&chans, 1, secs).await;
        let cpu0 = cpu_secs(c);
        let t0 = Instant::now();
        r.range128 = range_point(&chans, 128, secs).await;
        r.range128.cpu_us =
            (cpu_secs(c) - cpu0) * 1e6 / (r.range128.ops * t0.elapsed().as_secs_f64()).max(1.0);
        eprintln!(
            "{}: range x1 {:.0}/s p99 {:.2} ms, x128 {:.0}/s p99 {:.2} ms, {:.0} us CPU/op",
            c.name, r.range1.ops, r.range1.p99, r.range128.ops, r.range128.p99, r.range128.cpu_us
        );
    }
    if wants("watch") {
        r.fanout = watch_fanout(&chans, 100, secs).await;
        eprintln!("{}: watch fan-out {:.0} events/s", c.name, r.fanout);
    }
    if wants("lag") {
        r.lag = watch_lag(&chans, c.urls.len(), secs).await;
        for (who, p50, p99) in &r.lag {
            eprintln!(
                "{}: put -> watch event on {who}: p50 {p50:.2} ms p99 {p99:.2} ms",
                c.name
            );
        }
    }
    if wants("mem") {
        r.rss = memory_after(&chans, c, keys).await;
        eprintln!("{}: RSS after {keys} keys: {:?} MiB", c.name, r.rss);
        r.del_secs = delete_all(&chans).await;
        eprintln!(
            "{}: one DeleteRange of the {keys} keys: {:.2} s",
            c.name, r.del_secs
        );
    }
    if std::env::var("BENCH_CHECK_PERF").as_deref() == Ok("1") {
        r.perf = check_perf(c);
        eprintln!("{}: check perf --load=l: {}", c.name, r.perf);
    }
    r.load_after = loadavg();
    eprintln!("{}: load average {}", c.name, r.load_after);
    r
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "-".into()
    } else {
        format!("{:.2}x", a / b)
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let secs: f64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let keys: usize = std::env::var("BENCH_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let ours_bin: PathBuf = std::env::var_os("BENCH_K8SUP_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_k8sup-datastore")));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut etcd_r = None;
    let mut ours_r = None;
    if only != "k8sup" {
        let etcd = k8sup_testbed::etcd_dir().join("etcd");
        let c = start("etcd", etcd.to_str().unwrap(), dir.path(), &[]);
        etcd_r = Some(rt.block_on(bench(&c, secs, keys)));
    }
    if only != "etcd" {
        let c = start(
            "k8sup",
            ours_bin.to_str().unwrap(),
            dir.path(),
            &["--insecure", "--log-level=warn"],
        );
        ours_r = Some(rt.block_on(bench(&c, secs, keys)));
    }
    let (Some(e), Some(o)) = (etcd_r, ours_r) else {
        return;
    };
    println!(
        "\nload average (1/5/15 min) before/after: etcd {} / {}, k8sup {} / {}",
        e.load_before, e.load_after, o.load_before, o.load_after
    );
    println!("\n| workload | etcd 3.6 | k8sup-datastore | k8sup/etcd |");
    println!("|---|---:|---:|---:|");
    for ((c, pe), (_, po)) in e.puts.iter().zip(o.puts.iter()) {
        println!(
            "| put x{c} throughput | {:.0}/s | {:.0}/s | {} |",
            pe.ops,
            po.ops,
            ratio(po.ops, pe.ops)
        );
        println!(
            "| put x{c} p50 | {:.2} ms | {:.2} ms | {} |",
            pe.p50,
            po.p50,
            ratio(po.p50, pe.p50)
        );
        println!(
            "| put x{c} p99 | {:.2} ms | {:.2} ms | {} |",
            pe.p99,
            po.p99,
            ratio(po.p99, pe.p99)
        );
        println!(
            "| put x{c} CPU per op (all members) | {:.0} us | {:.0} us | {} |",
            pe.cpu_us,
            po.cpu_us,
            ratio(po.cpu_us, pe.cpu_us)
        );
    }
    println!(
        "| linearizable range x1 | {:.0}/s | {:.0}/s | {} |",
        e.range1.ops,
        o.range1.ops,
        ratio(o.range1.ops, e.range1.ops)
    );
    println!(
        "| linearizable range x1 p99 | {:.2} ms | {:.2} ms | {} |",
        e.range1.p99,
        o.range1.p99,
        ratio(o.range1.p99, e.range1.p99)
    );
    println!(
        "| linearizable range x128 | {:.0}/s | {:.0}/s | {} |",
        e.range128.ops,
        o.range128.ops,
        ratio(o.range128.ops, e.range128.ops)
    );
    println!(
        "| linearizable range x128 p99 | {:.2} ms | {:.2} ms | {} |",
        e.range128.p99,
        o.range128.p99,
        ratio(o.range128.p99, e.range128.p99)
    );
    println!(
        "| linearizable range x128 CPU per op | {:.0} us | {:.0} us | {} |",
        e.range128.cpu_us,
        o.range128.cpu_us,
        ratio(o.range128.cpu_us, e.range128.cpu_us)
    );
    println!(
        "| watch fan-out (1 writer, 100 watchers) | {:.0} ev/s | {:.0} ev/s | {} |",
        e.fanout,
        o.fanout,
        ratio(o.fanout, e.fanout)
    );
    for ((who, e50, e99), (_, o50, o99)) in e.lag.iter().zip(o.lag.iter()) {
        println!(
            "| put -> watch event on {who}, p50 / p99 | {e50:.2} / {e99:.2} ms | {o50:.2} / {o99:.2} ms | {} / {} |",
            ratio(*o50, *e50),
            ratio(*o99, *e99)
        );
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    println!(
        "| RSS per member after {keys} keys | {:.0} MiB | {:.0} MiB | {} |",
        avg(&e.rss),
        avg(&o.rss),
        ratio(avg(&o.rss), avg(&e.rss))
    );
    println!(
        "| one DeleteRange of those keys | {:.2} s | {:.2} s | {} |",
        e.del_secs,
        o.del_secs,
        ratio(o.del_secs, e.del_secs)
    );
    if !e.perf.is_empty() {
        println!(
            "\ncheck perf --load=l\n- etcd: {}\n- k8sup: {}",
            e.perf, o.perf
        );
    }
}
