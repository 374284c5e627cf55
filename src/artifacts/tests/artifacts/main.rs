//! What a user of `k8sup artifacts` would notice, against the real upstream
//! binaries of tests/artifacts/build.sh's mirror, served over HTTP on
//! loopback (no internet, ever): every file arrives verified, once; a
//! changed file or a cut transfer is refused and leaves nothing trusted;
//! a bundle holds the same bytes as the mirror.

mod bundles;
mod fetching;
mod mirror;
mod refusing;
mod server;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use k8sup_artifacts::{Artifact, Images, Progress, Request};

pub fn request(images: Images) -> Request {
    Request::new(mirror::VERSION, "amd64", images).unwrap()
}

/// Counts what a fetch reported.
#[derive(Default)]
pub struct Counted {
    pub cached: AtomicUsize,
    pub started: AtomicUsize,
    pub verified: AtomicUsize,
    pub bytes: AtomicU64,
    pub failed: Mutex<Vec<String>>,
}

impl Progress for Counted {
    fn cached(&self, _: &Artifact) {
        self.cached.fetch_add(1, Ordering::SeqCst);
    }
    fn started(&self, _: &Artifact, _: Option<u64>) {
        self.started.fetch_add(1, Ordering::SeqCst);
    }
    fn advanced(&self, _: &Artifact, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
    }
    fn verified(&self, _: &Artifact, _: &str) {
        self.verified.fetch_add(1, Ordering::SeqCst);
    }
    fn failed(&self, a: &Artifact, _: &k8sup_artifacts::ArtifactError) {
        self.failed.lock().unwrap().push(a.name.clone());
    }
}

impl Counted {
    pub fn new() -> Arc<Counted> {
        Arc::new(Counted::default())
    }
    pub fn get(n: &AtomicUsize) -> usize {
        n.load(Ordering::SeqCst)
    }
}

/// Every file (recursively) under a cache's `.tmp`: downloads in progress.
pub fn leftovers(cache: &std::path::Path) -> Vec<std::path::PathBuf> {
    fn walk(d: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                out.push(e.path());
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&cache.join(".tmp"), &mut out);
    out
}
