//! Running host tools (`ip`, `mount` helpers, `ssh-keygen`, `debootstrap`)
//! with errors that show the command line and what it printed.

use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, bail};

/// Runs `program args...`, failing with its stderr when it exits non-zero.
/// Returns stdout.
pub fn run(program: &str, args: &[&str]) -> Result<String> {
    let out = output(program, args)?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            command_line(program, args),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args...` and reports only whether it succeeded; for probes
/// such as "does this interface exist".
pub fn succeeds(program: &str, args: &[&str]) -> Result<bool> {
    Ok(output(program, args)?.status.success())
}

fn output(program: &str, args: &[&str]) -> Result<Output> {
    let resolved = crate::preflight::which(program).unwrap_or_else(|| program.into());
    Command::new(resolved)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{}`", command_line(program, args)))
}

fn command_line(program: &str, args: &[&str]) -> String {
    std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ")
}
