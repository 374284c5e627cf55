//! The layering rules of ARCHITECTURE.md that a test can check, read from
//! the crates' manifests and sources:
//! - node daemons (the datastore and the API-server proxy) depend on no
//!   workstation crate;
//! - no crate but the CLI depends on clap or indicatif (a node daemon has its
//!   own command line and is exempt);
//! - only the CLI prints: no library crate writes to stdout or stderr itself;
//! - no library crate names a flag of the CLI (read from clap's definition):
//!   they return typed errors, and the CLI adds the flag that fixes them;
//! - the engine never knows Kubernetes: its sources name none of it.
//!
//! Comment lines are not checked (doc examples show how a caller prints);
//! `build.rs` talks to cargo on stdout by design.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Node daemons: their own processes on cluster hosts.
const DAEMONS: &[&str] = &["datastore", "apiserver-proxy"];

/// Test support, never shipped: it starts upstream programs with their own
/// flags (etcd's `--name`), so the CLI's flag names are no concern of it.
const TEST_SUPPORT: &[&str] = &["testbed"];

fn is_test_support(dir: &Path) -> bool {
    TEST_SUPPORT.iter().any(|d| dir.ends_with(d))
}

/// Every crate of the workspace but the CLI: (directory, manifest text).
fn other_crates() -> Vec<(PathBuf, String)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(repo().join("src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists() && !p.ends_with("cli"))
        .collect();
    dirs.push(repo().join("datastore"));
    dirs.sort();
    assert!(dirs.len() >= 7, "the crates under src/: {dirs:?}");
    dirs.into_iter()
        .map(|d| {
            let manifest = std::fs::read_to_string(d.join("Cargo.toml")).unwrap();
            (d, manifest)
        })
        .collect()
}

fn is_daemon(dir: &Path) -> bool {
    DAEMONS.iter().any(|d| dir.ends_with(d))
}

/// The names in a manifest's `[dependencies]` and `[build-dependencies]`
/// (what ships; dev-dependencies serve tests only).
fn shipped_dependencies(manifest: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]" || line == "[build-dependencies]";
            continue;
        }
        if in_deps && let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            let name = key.strip_suffix(".workspace").unwrap_or(key);
            if !name.is_empty() && !name.starts_with('#') {
                out.insert(name.to_string());
            }
        }
    }
    out
}

/// The code lines (comments left out) of every `.rs` and `.sh` file under
/// `dir`, skipping `tests/`, `benches/` and `build.rs` unless `with_tests`.
fn code_lines(dir: &Path, with_tests: bool) -> Vec<(PathBuf, usize, String)> {
    let mut out = Vec::new();
    walk(dir, with_tests, &mut out);
    out
}

fn walk(dir: &Path, with_tests: bool, out: &mut Vec<(PathBuf, usize, String)>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            // Examples are programs of their own, like tests and benches.
            if with_tests || !matches!(name.as_str(), "tests" | "benches" | "examples" | "target") {
                walk(&p, with_tests, out);
            }
            continue;
        }
        if !(name.ends_with(".rs") || name.ends_with(".sh")) || (name == "build.rs" && !with_tests)
        {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for (i, line) in text.lines().enumerate() {
            let t = line.trim_start();
            if t.starts_with("//") || (name.ends_with(".sh") && t.starts_with('#')) {
                continue;
            }
            out.push((p.clone(), i + 1, line.to_string()));
        }
    }
}

#[test]
fn node_daemons_depend_on_no_workstation_crate() {
    for (dir, manifest) in other_crates().into_iter().filter(|(d, _)| is_daemon(d)) {
        let deps = shipped_dependencies(&manifest);
        let ours: Vec<&String> = deps.iter().filter(|d| d.starts_with("k8sup")).collect();
        assert!(
            ours.is_empty(),
            "{} is a node daemon and depends on workstation crates {ours:?}",
            dir.display()
        );
        assert!(deps.contains("tokio"), "the manifest was read: {deps:?}");
    }
}

#[test]
fn only_the_cli_depends_on_clap_or_indicatif() {
    for (dir, manifest) in other_crates() {
        if is_daemon(&dir) {
            continue;
        }
        let deps = shipped_dependencies(&manifest);
        for ui in ["clap", "indicatif"] {
            assert!(
                !deps.contains(ui),
                "{} depends on {ui}: only the CLI parses arguments and draws progress",
                dir.display()
            );
        }
    }
}

#[test]
fn only_the_cli_prints() {
    let printing = [
        "print!(",
        "println!(",
        "eprint!(",
        "eprintln!(",
        "dbg!(",
        "io::stdout()",
        "io::stderr()",
    ];
    let mut bad = Vec::new();
    for (dir, _) in other_crates() {
        if is_daemon(&dir) {
            continue;
        }
        for (path, n, line) in code_lines(&dir, false) {
            if printing.iter().any(|p| line.contains(p)) {
                bad.push(format!("{}:{n}: {}", path.display(), line.trim()));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "library crates print (return data or errors, report through tracing or the \
         engine's Progress; the CLI prints):\n{}",
        bad.join("\n")
    );
}

/// Every long flag of the CLI, from clap's definition, as `--name`.
fn cli_flags() -> BTreeSet<String> {
    fn collect(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(long) = a.get_long() {
                out.insert(format!("--{long}"));
            }
        }
        for sub in cmd.get_subcommands() {
            collect(sub, out);
        }
    }
    let mut out = BTreeSet::new();
    collect(&k8sup::app::Cli::command(), &mut out);
    out
}

/// Whether `line` names `flag` as a whole word (`--out` is not in `--output`).
fn names_flag(line: &str, flag: &str) -> bool {
    line.match_indices(flag).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + flag.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '-')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn no_library_crate_names_a_flag_of_the_cli() {
    let flags = cli_flags();
    for expected in ["--break-lock", "--yes", "--inventory", "--name", "--subnet"] {
        assert!(flags.contains(expected), "clap's definition: {flags:?}");
    }
    let mut bad = Vec::new();
    for (dir, _) in other_crates() {
        // A node daemon has its own command line (etcd's flag names), and
        // the testbed runs upstream programs with theirs.
        if is_daemon(&dir) || is_test_support(&dir) {
            continue;
        }
        for (path, n, line) in code_lines(&dir, true) {
            for flag in &flags {
                if names_flag(&line, flag) {
                    bad.push(format!("{}:{n}: {flag}: {}", path.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "library crates name the CLI's flags (return a typed error; the CLI's hints add the \
         flag):\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_flag_check_matches_whole_flags_only() {
    assert!(names_flag("break it with --break-lock", "--break-lock"));
    assert!(names_flag("\"--yes\"", "--yes"));
    assert!(!names_flag("systemctl --output=json", "--out"));
    assert!(!names_flag("--break-lock-now", "--break-lock"));
}

#[test]
fn the_engine_never_knows_kubernetes() {
    let mut bad = Vec::new();
    for (path, n, line) in code_lines(&repo().join("src/engine"), true) {
        let lower = line.to_lowercase();
        for word in ["kube", "etcd"] {
            if lower.contains(word) {
                bad.push(format!("{}:{n}: {}", path.display(), line.trim()));
            }
        }
    }
    // Comments too: the engine's documentation explains resources, not clusters.
    for e in walk_all(&repo().join("src/engine")) {
        let text = std::fs::read_to_string(&e).unwrap().to_lowercase();
        if text.contains("kubernetes") || text.contains("kubelet") {
            bad.push(format!("{}: mentions Kubernetes", e.display()));
        }
    }
    assert!(
        bad.is_empty(),
        "the engine is generic (hosts, files, units, commands); Kubernetes belongs to the \
         cluster layer:\n{}",
        bad.join("\n")
    );
}

fn walk_all(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk_all(&p));
        } else if p
            .extension()
            .is_some_and(|x| x == "rs" || x == "sh" || x == "toml")
        {
            out.push(p);
        }
    }
    out
}
