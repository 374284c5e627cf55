//! Output conventions shared by all commands: the `--output` switch and how
//! errors are shown. Human output goes to stdout, diagnostics to stderr; JSON
//! output is one document on stdout so that CI can pipe it into `jq`.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Shared by every command that prints results.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// `text` for people, `json` for CI and scripts (a stable, documented schema).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Print an error as [`render_error`] shows it, on stderr.
pub fn print_error(err: &anyhow::Error) {
    eprintln!("{}", render_error(err));
}

/// An error chain as `error: outer` followed by `  caused by: inner` lines,
/// so that the host, file and fix named by inner layers stay visible, then
/// the command line's own `hint:` lines (the flag or command that fixes it,
/// which the library crates do not name; see `hints`).
pub fn render_error(err: &anyhow::Error) -> String {
    let mut s = format!("error: {err}");
    for cause in err.chain().skip(1) {
        let _ = write!(s, "\n  caused by: {cause}");
    }
    for hint in crate::hints::for_error(err) {
        let _ = write!(s, "\nhint: {hint}");
    }
    s
}
