//! A helper program of the engine's lab tests, not a test: it applies the
//! test workload with a new binary to an existing lab, slowly (as over a slow
//! link), and prints `UPLOADING` once the binary's first bytes have left, so
//! that `killed_mid_upload_keeps_the_old_file_and_a_rerun_converges` can kill
//! it mid-stream. It is an example target so that it is built with the
//! tests and may use their helpers and dev-dependencies.
//!
//! Environment: `ENG_KILL_LAB` (the lab's name), `ENG_KILL_BLOB` (the binary).

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;

use common::{SlowUploads, TestLab, workload};
use k8sup_engine::{ApplyOptions, apply, plan};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let (Ok(name), Ok(blob)) = (
        std::env::var("ENG_KILL_LAB"),
        std::env::var("ENG_KILL_BLOB"),
    ) else {
        eprintln!(
            "apply-slowly: set ENG_KILL_LAB and ENG_KILL_BLOB (run by the engine's lab tests)"
        );
        std::process::exit(2);
    };
    let lab = TestLab::attach(&name);
    let sessions = lab.sessions().await;
    let desired = workload(&lab, std::path::Path::new(&blob), &BTreeMap::new())
        .resolve()
        .await
        .expect("the workload resolves");
    let p = plan(&desired, &sessions, 10).await.expect("plan");
    let slow = SlowUploads {
        pause: std::time::Duration::from_millis(200),
        announce: true,
        said: Default::default(),
    };
    // Killed before it finishes; should it finish, the test sees a new file.
    let _ = apply(&p, &desired, &sessions, &ApplyOptions::default(), &slow).await;
}
