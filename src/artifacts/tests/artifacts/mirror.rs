//! The real mirror tests/artifacts/build.sh builds from Go modules, and
//! what its index.json says (an oracle independent of this crate: mirror.py
//! hashed every file when it was built).

use std::path::{Path, PathBuf};
use std::process::Command;

pub const VERSION: &str = "v1.37.2";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The mirror's root, built first if it does not hold VERSION yet (build.sh
/// builds only what is missing, one builder at a time).
pub fn root() -> PathBuf {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::var_os("K8SUP_ARTIFACTS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/var/cache/k8sup/mirror".into());
        let complete = index_at(&root).is_some_and(|i| i["kubernetes"][VERSION].is_object());
        if !complete {
            let out = Command::new("bash")
                .arg(repo().join("tests/artifacts/build.sh"))
                .arg(VERSION)
                .output()
                .expect("run tests/artifacts/build.sh");
            assert!(
                out.status.success(),
                "build.sh failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let printed = String::from_utf8_lossy(&out.stdout);
            return PathBuf::from(
                printed
                    .lines()
                    .last()
                    .expect("build.sh prints the root")
                    .trim(),
            );
        }
        root
    })
    .clone()
}

fn index_at(root: &Path) -> Option<serde_json::Value> {
    serde_json::from_slice(&std::fs::read(root.join("index.json")).ok()?).ok()
}

pub fn index() -> serde_json::Value {
    index_at(&root()).expect("the mirror has index.json")
}

/// path → sha256 of every file index.json lists.
pub fn indexed_files() -> std::collections::HashMap<String, String> {
    let index = index();
    let mut out = std::collections::HashMap::new();
    let mut add = |v: &serde_json::Value| {
        out.insert(
            v["path"].as_str().unwrap().to_string(),
            v["sha256"].as_str().unwrap().to_string(),
        );
    };
    for (_, b) in index["kubernetes"][VERSION]["binaries"]
        .as_object()
        .unwrap()
    {
        add(b);
    }
    for (_, c) in index["components"].as_object().unwrap() {
        add(c);
    }
    for (_, i) in index["images"].as_object().unwrap() {
        add(i);
    }
    out
}

/// tests/artifacts/versions.env as KEY → value.
pub fn versions_env() -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(repo().join("tests/artifacts/versions.env")).unwrap();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A copy of the mirror for tests that change it: directories and symlinks
/// to the shared files, so a test replaces one name with a real file of its
/// own and the shared mirror is never written.
pub fn linked_copy(dest: &Path) {
    fn walk(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let name = e.file_name();
            if name == ".tmp" || name == "index.d" {
                continue;
            }
            let ty = e.file_type().unwrap();
            if ty.is_dir() {
                walk(&e.path(), &to.join(&name));
            } else if ty.is_file() {
                std::os::unix::fs::symlink(e.path(), to.join(&name)).unwrap();
            }
        }
    }
    walk(&root(), dest);
}

/// Replaces `rel` in a linked copy with a real copy whose byte at `at` is
/// flipped. Returns the copy's SHA-256.
pub fn tamper(copy: &Path, rel: &str, at: u64) -> String {
    let target = copy.join(rel);
    let mut bytes = std::fs::read(root().join(rel)).unwrap();
    bytes[at as usize] ^= 0x01;
    std::fs::remove_file(&target).unwrap();
    std::fs::write(&target, &bytes).unwrap();
    sha256_bytes(&bytes)
}

pub fn sha256_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(p).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}
