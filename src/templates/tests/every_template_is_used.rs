//! A template nothing uses is an error: every file under templates/ must be
//! named, in a string literal (`"kubeconfig.yaml"`, or a path ending in it),
//! by the product code of some crate (tests do not count). Dead templates would otherwise pass for
//! files k8sup writes.

use std::path::{Path, PathBuf};

use k8sup_templates::Templates;

/// The templates of `names` that no source of `sources` names.
fn unused<'a>(names: &[&'a str], sources: &[(PathBuf, String)]) -> Vec<&'a str> {
    names
        .iter()
        .copied()
        .filter(|name| {
            // By name (`"kubeconfig.yaml"`) or by a path ending in it
            // (`"../../templates/kubeconfig.yaml"`).
            let by_name = format!("\"{name}\"");
            let by_path = format!("/{name}\"");
            !sources
                .iter()
                .any(|(_, text)| text.contains(&by_name) || text.contains(&by_path))
        })
        .collect()
}

/// Every `.rs` file of every crate but this one, outside `tests/` and `benches/`.
fn product_sources() -> Vec<(PathBuf, String)> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in ["src", "datastore"] {
        walk(&repo.join(dir), &mut out);
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy();
        if p.is_dir() {
            if !matches!(name.as_ref(), "tests" | "benches" | "templates" | "target") {
                walk(&p, out);
            }
        } else if name.ends_with(".rs") {
            out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
    }
}

#[test]
fn every_template_is_used_by_product_code() {
    let names = Templates::embedded().names();
    let dead = unused(names, &product_sources());
    assert!(
        dead.is_empty(),
        "templates nothing uses (name each in the code that writes it, or delete it): {dead:?}"
    );
}

#[test]
fn the_check_finds_a_template_nobody_names() {
    let sources = vec![(
        PathBuf::from("x.rs"),
        r#"render("used.conf", ctx)"#.to_string(),
    )];
    assert_eq!(
        unused(&["used.conf", "dead.conf", "x/used.conf"], &sources),
        vec!["dead.conf", "x/used.conf"]
    );
    let by_path = vec![(
        PathBuf::from("y.rs"),
        r#"include_str!("../../templates/kubeconfig.yaml")"#.to_string(),
    )];
    assert!(unused(&["kubeconfig.yaml"], &by_path).is_empty());
}
