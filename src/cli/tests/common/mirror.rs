//! The mirror of real upstream artifacts that tests/artifacts/build.sh
//! builds from Go modules: found (or built) once per test binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::text;

/// The Kubernetes version the mirror is built for (its pause image).
pub const KUBERNETES: &str = "v1.37.2";

/// The mirror's root and its index, built (or found complete) by the
/// artifacts script. `K8SUP_MIRROR` points at an existing mirror instead.
pub fn mirror() -> (PathBuf, Value) {
    let root = match std::env::var_os("K8SUP_MIRROR") {
        Some(root) => PathBuf::from(root),
        None => {
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/artifacts/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg(KUBERNETES)
                .output()
                .expect("run tests/artifacts/build.sh");
            assert!(
                out.status.success(),
                "{} {KUBERNETES} failed:\n{}",
                script.display(),
                text(&out.stderr)
            );
            let stdout = text(&out.stdout);
            PathBuf::from(
                stdout
                    .lines()
                    .last()
                    .expect("build.sh printed no mirror root")
                    .trim(),
            )
        }
    };
    let index = fs::read_to_string(root.join("index.json"))
        .unwrap_or_else(|e| panic!("{}/index.json: {e}", root.display()));
    (root, serde_json::from_str(&index).expect("index.json"))
}

/// Path in the mirror of component `name`'s release file.
pub fn component(root: &Path, index: &Value, name: &str) -> PathBuf {
    let rel = index["components"][name]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("the mirror's index has no component {name}"));
    root.join(rel)
}

/// (name, path) of the mirror's image with `role` (pause, busybox).
pub fn image(root: &Path, index: &Value, role: &str) -> (String, PathBuf) {
    let images = index["images"].as_object().expect("images in index.json");
    let (name, entry) = images
        .iter()
        .find(|(_, e)| e["role"] == role)
        .unwrap_or_else(|| panic!("the mirror has no {role} image"));
    (
        name.clone(),
        root.join(entry["path"].as_str().expect("image path")),
    )
}

/// Path in the mirror of Kubernetes binary `name` (kubectl, kubelet, ...).
pub fn kube_binary(root: &Path, index: &Value, name: &str) -> PathBuf {
    let rel = index["kubernetes"][KUBERNETES]["binaries"][name]["path"]
        .as_str()
        .unwrap_or_else(|| {
            panic!("the mirror's index has no Kubernetes {KUBERNETES} binary {name}")
        });
    root.join(rel)
}
