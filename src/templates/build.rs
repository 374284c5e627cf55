//! Embeds every file under the repository's `templates/` directory: writes
//! `$OUT_DIR/templates.rs`, a sorted list of `(name, include_str!(path))`,
//! names relative to `templates/` with `/` separators. `README.md` (the
//! directory's own documentation) is left out. Cargo re-runs this when any
//! file or directory under `templates/` changes, so an added template is
//! embedded by the next build.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../../templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    if root.is_dir() {
        walk(&root, &root, &mut files);
    }
    files.sort();
    let mut out = String::from("pub(crate) static FILES: &[(&str, &str)] = &[\n");
    for (name, path) in &files {
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("templates.rs");
    std::fs::write(&dest, out).expect("write templates.rs");
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    println!("cargo:rerun-if-changed={}", dir.display());
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            walk(root, &path, files);
            continue;
        }
        let name = path
            .strip_prefix(root)
            .expect("under templates/")
            .to_string_lossy()
            .replace('\\', "/");
        if name == "README.md" {
            continue;
        }
        println!("cargo:rerun-if-changed={}", path.display());
        let absolute = path.canonicalize().expect("an existing file");
        files.push((name, absolute));
    }
}
