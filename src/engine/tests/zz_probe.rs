mod common;
use common::*;
use std::collections::BTreeMap;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn probe() {
    let lab = TestLab::attach("eng-bench");
    let dir = tempfile::tempdir().unwrap();
    let bin = blob(dir.path(), "demo-bin", 50, 9);
    let sessions = lab.sessions().await;
    let s = sessions.values().next().unwrap();
    let desired = workload(&lab, &bin, &BTreeMap::new()).resolve().await.unwrap();
    let st = desired.states_of(s.name());
    for _ in 0..3 {
        let t = Instant::now();
        s.exec("true").await.unwrap();
        let e1 = t.elapsed();
        let t = Instant::now();
        k8sup_engine::observe(s, &st).await.unwrap();
        let e2 = t.elapsed();
        let t = Instant::now();
        k8sup_engine::plan(&desired, &sessions, 10).await.unwrap();
        let e3 = t.elapsed();
        let t = Instant::now();
        let _ = workload(&lab, &bin, &BTreeMap::new()).resolve().await.unwrap();
        println!("exec true {e1:?}; observe one host {e2:?}; plan all {e3:?}; resolve {:?}", t.elapsed());
    }
}
