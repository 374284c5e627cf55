//! The cluster layer's rules (ARCHITECTURE.md), checked on its sources:
//! - every file it puts on a host for the cluster is rendered from a
//!   template under `templates/` (`k8sup_templates`); the user's workload
//!   (`workload.rs`) and the credentials of the user's own etcd
//!   (`external_datastore.rs`) are the user's data and exempt, and `render.rs` is
//!   where rendered text becomes content;
//! - it never opens a connection: no transport among its dependencies, and
//!   its sources name no session or connect.

use std::path::{Path, PathBuf};

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The crate's own sources (not its tests), with their text.
fn sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(crate_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "rs") {
            out.push((p.clone(), std::fs::read_to_string(&p).unwrap()));
        }
    }
    assert!(!out.is_empty());
    out
}

/// Lines of `text` that give a file content not rendered from a template.
/// File content in the engine is a `Content`: inline text must come straight
/// from `k8sup_templates`, and local files or user templates are not the
/// cluster's (they are the user's workload).
fn untemplated(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .filter(|l| {
            l.contains("Content::local(")
                || l.contains("Content::template_file(")
                || (l.contains("Content::text(") && !l.contains("k8sup_templates::"))
                || l.contains("Content::template(")
        })
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn every_file_of_the_cluster_layer_comes_from_templates() {
    let mut bad = Vec::new();
    for (path, text) in sources() {
        // The user's own files: their content is the inventory's.
        if path
            .file_name()
            .is_some_and(|n| n == "workload.rs" || n == "external_datastore.rs")
        {
            continue;
        }
        // Where a template's output becomes content (and a unit's flags are
        // edited): every line there starts from `k8sup_templates::render`.
        if path.file_name().is_some_and(|n| n == "render.rs") {
            assert!(
                text.contains("k8sup_templates::render("),
                "{}",
                path.display()
            );
            continue;
        }
        for line in untemplated(&text) {
            bad.push(format!("{}: {line}", path.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "file content that is not rendered from templates/ (put the file under templates/ and \
         render it with k8sup_templates):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_template_check_catches_inline_content() {
    assert_eq!(
        untemplated("let r = Resource::file(\"/etc/x\", Content::text(format!(\"a={a}\")));"),
        vec!["let r = Resource::file(\"/etc/x\", Content::text(format!(\"a={a}\")));"]
    );
    assert!(
        untemplated(
            "Resource::file(p, Content::text(k8sup_templates::render(\"kubeconfig.yaml\", &cx)?))"
        )
        .is_empty()
    );
}

#[test]
fn the_cluster_layer_never_opens_a_connection() {
    let manifest = std::fs::read_to_string(crate_dir().join("Cargo.toml")).unwrap();
    for transport in ["k8sup-ssh", "russh"] {
        assert!(
            !manifest.contains(transport),
            "k8sup-cluster depends on {transport}: it decides what hosts must look like and \
             never connects to them"
        );
    }
    for (path, text) in sources() {
        let code: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect();
        for word in ["Session", "connect"] {
            assert!(
                !code.iter().any(|l| l.contains(word)),
                "{} names {word}: the cluster layer never opens a connection",
                path.display()
            );
        }
    }
}
