mod common;
use common::*;
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn probe() {
    let lab = TestLab::attach("eng-bench");
    let dir = tempfile::tempdir().unwrap();
    let bin = blob(dir.path(), "b", 50, 11);
    let specs = lab.hosts().iter().map(|h| lab.spec(h)).collect();
    let sessions: Vec<_> = k8sup_ssh::connect_all(specs, 10).await.into_iter().map(|(_, s)| s.unwrap()).collect();
    for (label, cmd) in [("cat>file", "cat > /root/p.bin"), ("cat>file+sync", "cat > /root/p2.bin && sync -- /root/p2.bin"), ("cat>/dev/null", "cat > /dev/null")] {
        let t = Instant::now();
        let futs = sessions.iter().map(|s| { let b = bin.clone(); async move {
            let f = tokio::fs::File::open(&b).await.unwrap();
            let r = tokio::io::BufReader::with_capacity(256*1024, f);
            s.exec_with_stdin(cmd, r).await.unwrap()
        }});
        futures::future::join_all(futs).await;
        println!("{label}: {:?}", t.elapsed());
    }
    let t = Instant::now();
    let futs = sessions.iter().map(|s| { let b = bin.clone(); async move {
        s.upload(&b, "/root/p3.bin", &Default::default()).await.unwrap()
    }});
    futures::future::join_all(futs).await;
    println!("Session::upload (sftp): {:?}", t.elapsed());
}
