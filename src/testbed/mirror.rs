//! The artifacts mirror: real upstream binaries built from Go modules by
//! `tests/artifacts/build.sh` (see `tests/artifacts/README.md`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

/// The Kubernetes version the tests run.
pub const KUBERNETES: &str = "v1.37.2";

pub struct Mirror {
    pub root: PathBuf,
    pub index: Value,
}

static MIRROR: OnceLock<Mirror> = OnceLock::new();

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Mirror {
    /// `K8SUP_MIRROR` (a mirror root), else the one `tests/artifacts/build.sh`
    /// builds or finds complete (cached under /var/cache/k8sup; seconds when
    /// present, about 25 minutes from nothing). Panics with the reason.
    pub fn get() -> &'static Mirror {
        MIRROR.get_or_init(|| {
            let root = match std::env::var_os("K8SUP_MIRROR") {
                Some(root) => PathBuf::from(root),
                None => {
                    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../../tests/artifacts/build.sh");
                    let out = Command::new("bash")
                        .arg(&script)
                        .arg(KUBERNETES)
                        .output()
                        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
                    assert!(
                        out.status.success(),
                        "{} {KUBERNETES} failed (the real components come from the artifacts \
                         mirror; set K8SUP_MIRROR to an existing mirror root):\n{}",
                        script.display(),
                        text(&out.stderr)
                    );
                    PathBuf::from(
                        text(&out.stdout)
                            .lines()
                            .last()
                            .expect("build.sh printed no mirror root")
                            .trim(),
                    )
                }
            };
            let index = std::fs::read_to_string(root.join("index.json"))
                .unwrap_or_else(|e| panic!("{}/index.json: {e}", root.display()));
            Mirror {
                root,
                index: serde_json::from_str(&index).expect("the mirror's index.json"),
            }
        })
    }

    /// A Kubernetes binary (kube-apiserver, kubectl, ...) of [`KUBERNETES`].
    pub fn kube_binary(&self, name: &str) -> PathBuf {
        let rel = self.index["kubernetes"][KUBERNETES]["binaries"][name]["path"]
            .as_str()
            .unwrap_or_else(|| panic!("the mirror's index has no {name} {KUBERNETES}"));
        let path = self.root.join(rel);
        assert!(path.is_file(), "{} is missing", path.display());
        path
    }

    /// The etcd release's directory (`etcd`, `etcdctl`, `etcdutl`), unpacked
    /// once from the mirror's tarball into the temp directory (keyed by its
    /// SHA-256, so a new version or build never reuses an old one).
    pub fn etcd_dir(&self) -> PathBuf {
        let etcd = &self.index["components"]["etcd"];
        let (Some(rel), Some(sha), Some(first)) = (
            etcd["path"].as_str(),
            etcd["sha256"].as_str(),
            etcd["contents"][0].as_str(),
        ) else {
            panic!("the mirror's index has no etcd component: {etcd}");
        };
        let top = first.split('/').next().unwrap_or(first);
        let base = std::env::temp_dir().join(format!("k8sup-testbed-etcd-{}", &sha[..16]));
        let dir = base.join(top);
        if dir.join("etcd").is_file() {
            return dir;
        }
        // Unpack beside, then rename: concurrent tests never see half a tree.
        let tmp = std::env::temp_dir().join(format!(
            "k8sup-testbed-etcd-{}.{}",
            &sha[..16],
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let out = Command::new("tar")
            .arg("-xzf")
            .arg(self.root.join(rel))
            .arg("-C")
            .arg(&tmp)
            .output()
            .expect("running tar");
        assert!(
            out.status.success(),
            "unpacking {rel}: {}",
            text(&out.stderr)
        );
        if std::fs::rename(&tmp, &base).is_err() {
            // Another process got there first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        assert!(dir.join("etcd").is_file(), "{} has no etcd", dir.display());
        dir
    }
}

/// etcd 3.6's directory (`etcd`, `etcdctl`, `etcdutl`): the datastore's
/// oracle and benchmark peer. `K8SUP_ETCD_DIR` if set, else the mirror's.
pub fn etcd_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("K8SUP_ETCD_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("etcd").is_file() && dir.join("etcdctl").is_file(),
            "K8SUP_ETCD_DIR={} holds no etcd and etcdctl",
            dir.display()
        );
        return dir;
    }
    Mirror::get().etcd_dir()
}
