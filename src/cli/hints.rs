//! What the command line adds to the errors of the crates below it: the
//! command or flag that fixes them.
//!
//! Library crates name no command-line flag (a test holds them to it): they
//! return typed errors that say what is wrong and what would fix it, and
//! this module, which knows the command line, says how to ask for that fix.
//! Flags are read from clap's definition, so a renamed flag cannot leave a
//! stale hint behind.

use clap::CommandFactory;
use k8sup_engine::EngineError;
use k8sup_lab::LabError;

use crate::app::Cli;

/// The long form of argument `id` of the subcommand at `path` (e.g.
/// `["apply"]`, `"break_lock"` gives `--break-lock`).
///
/// Panics when there is no such argument: a hint that names a flag the
/// command line does not have is a bug (the tests call every hint).
pub fn flag(path: &[&str], id: &str) -> String {
    let mut cmd = Cli::command();
    for name in path {
        cmd = cmd
            .find_subcommand(name)
            .unwrap_or_else(|| panic!("no subcommand {name} in {path:?}"))
            .clone();
    }
    let long = cmd
        .get_arguments()
        .find(|a| a.get_id() == id)
        .and_then(|a| a.get_long())
        .unwrap_or_else(|| panic!("no long flag for argument {id} of {path:?}"));
    format!("--{long}")
}

/// The hints for `err`, from its whole cause chain, one line each.
pub fn for_error(err: &anyhow::Error) -> Vec<String> {
    let mut hints = Vec::new();
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<EngineError>() {
            engine(e, &mut hints);
        } else if let Some(e) = cause.downcast_ref::<LabError>() {
            lab(e, &mut hints);
        }
    }
    hints.dedup();
    hints
}

fn engine(err: &EngineError, hints: &mut Vec<String>) {
    match err {
        EngineError::StaleLock { .. } => hints.push(format!(
            "if no k8sup run is working on this cluster, break the stale lock: run the same `k8sup apply` again with {}",
            flag(&["apply"], "break_lock")
        )),
        EngineError::Hosts(errors) => {
            for e in errors {
                engine(e, hints);
            }
        }
        _ => {}
    }
}

fn lab(err: &LabError, hints: &mut Vec<String>) {
    let up = |lab: &str| format!("k8sup lab up {} {lab}", flag(&["lab", "up"], "name"));
    let down = |lab: &str| format!("k8sup lab down {} {lab}", flag(&["lab", "down"], "name"));
    let subnet = || flag(&["lab", "up"], "subnet");
    match err {
        LabError::NoSuchLab { lab, .. } => hints.push(format!("create it with: {}", up(lab))),
        LabError::SubnetTaken { suggestion, .. } => hints.push(match suggestion {
            Some(s) => format!("choose a free /24 with {} {s}", subnet()),
            None => format!("choose a free /24 with {}", subnet()),
        }),
        LabError::NoFreeSubnet { .. } => {
            hints.push(format!("choose a free range with {}", subnet()))
        }
        LabError::BadSubnet { .. } => hints.push(format!(
            "give {} a /24 network address, such as 10.213.7.0/24",
            subnet()
        )),
        LabError::SubnetChanged { lab, .. } | LabError::ShapeConflict { lab, .. } => {
            hints.push(format!("take the lab down first: {}", down(lab)))
        }
        LabError::BadControlPlanes { .. } => hints.push(format!(
            "set {} between 1 and {}",
            flag(&["lab", "up"], "control_planes"),
            flag(&["lab", "up"], "nodes")
        )),
        LabError::BadNodeCount { .. } => hints.push(format!(
            "set {} to a count the lab allows",
            flag(&["lab", "up"], "nodes")
        )),
        // The others say all there is (run as root, install a package, a
        // valid name, the machines there are): no flag fixes them.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8sup_engine::LockHolder;

    fn stale() -> EngineError {
        EngineError::StaleLock {
            host: "cp-1".into(),
            holder: LockHolder {
                run_id: "dead-run".into(),
                workstation: "elsewhere".into(),
                pid: 4242,
                started: 1,
            },
            age_secs: 300,
        }
    }

    #[test]
    fn a_stale_lock_error_tells_the_user_the_apply_flag_that_breaks_it() {
        let shown = crate::output::render_error(&anyhow::Error::from(stale()));
        assert!(shown.contains("dead-run"), "the engine's message: {shown}");
        assert!(
            shown.contains("k8sup apply") && shown.contains("--break-lock"),
            "the CLI's hint: {shown}"
        );
        // Also when the stale lock is one of several hosts' errors.
        let many = EngineError::Hosts(vec![
            stale(),
            EngineError::Drift {
                hosts: vec!["w-1".into()],
            },
        ]);
        let shown = crate::output::render_error(&anyhow::Error::from(many));
        assert!(shown.contains("--break-lock"), "{shown}");
    }

    #[test]
    fn lab_errors_get_the_command_that_fixes_them() {
        let err = anyhow::Error::from(LabError::NoSuchLab {
            lab: "demo".into(),
            state: "/var/lib/k8sup/lab/demo".into(),
        });
        let shown = crate::output::render_error(&err.context("lab status"));
        assert!(shown.contains("k8sup lab up --name demo"), "{shown}");
        let err = anyhow::Error::from(LabError::SubnetTaken {
            subnet: "10.213.1.0/24".parse().unwrap(),
            by: "eth0".into(),
            suggestion: Some("10.213.2.0/24".parse().unwrap()),
        });
        assert!(
            crate::output::render_error(&err).contains("--subnet 10.213.2.0/24"),
            "{}",
            crate::output::render_error(&err)
        );
    }

    #[test]
    fn every_hint_names_a_flag_the_command_line_has() {
        // `flag` panics on a flag clap does not define: call every hint.
        let mut hints = Vec::new();
        engine(&stale(), &mut hints);
        let net: k8sup_lab::Ipv4Net = "10.213.1.0/24".parse().unwrap();
        for e in [
            LabError::NoSuchLab {
                lab: "l".into(),
                state: "/x".into(),
            },
            LabError::SubnetTaken {
                subnet: net,
                by: "x".into(),
                suggestion: None,
            },
            LabError::NoFreeSubnet { block: net },
            LabError::BadSubnet { subnet: net },
            LabError::SubnetChanged {
                lab: "l".into(),
                current: net,
                requested: net,
            },
            LabError::BadControlPlanes {
                control_planes: 3,
                nodes: 2,
            },
            LabError::BadNodeCount { nodes: 0, max: 9 },
        ] {
            lab(&e, &mut hints);
        }
        assert_eq!(hints.len(), 8, "{hints:#?}");
        assert!(hints.iter().all(|h| h.contains("--")), "{hints:#?}");
    }
}
