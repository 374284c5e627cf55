//! Becoming root with sudo, safely.
//!
//! The password must never reach a command line (visible in `ps`) or a log, and
//! must never be written to a command's stdin when sudo does not ask for it (the
//! command would read it as data). So, once per connection, we probe what sudo
//! wants and pick a mode:
//! - `sudo -n` works: passwordless, even if a password was configured;
//! - sudo wants a password and we have one: `sudo -k -S -p ''` on every command.
//!   `-k` makes sudo ignore its cached credentials, so it always reads exactly
//!   one password line from stdin before the command starts; the rest of stdin is
//!   the command's.

use crate::exec::tail_lines;
use crate::shell::quote;

/// How root commands are wrapped on this connection (decided by the probe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SudoMode {
    /// Already root, or sudo disabled: run as is.
    Direct,
    /// `sudo -n`.
    Passwordless,
    /// `sudo -k -S -p ''` with the password line first on stdin.
    Password,
}

/// `sh -c` wrapper so pipes, redirections and `&&` run entirely as root.
pub(crate) fn wrap(mode: SudoMode, command: &str) -> String {
    match mode {
        SudoMode::Direct => command.to_string(),
        SudoMode::Passwordless => format!("sudo -n -- sh -c {}", quote(command)),
        SudoMode::Password => format!("sudo -k -S -p '' -- sh -c {}", quote(command)),
    }
}

/// The probe: tells a missing sudo (127) apart from sudo's own refusals.
pub(crate) const PROBE_PASSWORDLESS: &str = "command -v sudo >/dev/null 2>&1 || { echo 'sudo: not installed' >&2; exit 127; }; sudo -n -- sh -c :";

/// Check that a password works (fed on stdin; EOF after it so a wrong one fails fast).
pub(crate) const PROBE_PASSWORD: &str = "sudo -k -S -p '' -- sh -c :";

/// Whether sudo's stderr says it wanted a password.
pub(crate) fn wants_password(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    s.contains("password is required")
        || s.contains("no tty present")
        || s.contains("terminal is required")
}

/// A readable reason from a failed probe's stderr.
pub(crate) fn reason(stderr: &str) -> String {
    let t = tail_lines(stderr.trim(), 3);
    if t.is_empty() {
        "sudo failed without a message".into()
    } else {
        t
    }
}
