//! k8sup-ssh: the SSH transport of k8sup, built on russh.
//!
//! One authenticated connection per host, reused for every command of a run
//! (each command on its own channel). Host keys are verified against known_hosts
//! the way OpenSSH does it (hashed entries, wildcards, `@cert-authority`,
//! `@revoked`, `accept-new`), before anything is run. Non-root logins become root
//! through sudo without ever putting a password on a command line. Files are
//! sent by streaming them into a command's stdin (`exec_with_*`): the engine
//! builds its atomic installs on that; this crate has no upload of its own.
//!
//! ```no_run
//! # async fn demo() -> Result<(), k8sup_ssh::SshError> {
//! use k8sup_ssh::{ConnectSpec, Session};
//! let mut spec = ConnectSpec::new("cp-1", "10.0.0.11");
//! spec.user = Some("admin".into());
//! let s = Session::connect(&spec).await?;
//! let out = s.exec_checked("systemctl is-active containerd").await?;
//! println!("{}", out.stdout_str());
//! # Ok(()) }
//! ```
//!
//! Layout, one concept per file: `spec` (what to connect to), `config`
//! (ssh_config and defaults), `known_hosts` + `handler` (the host-key verdict),
//! `auth` (agent and key files), `session` (connection, retries, sudo probe),
//! `exec` (one command on one channel), `sudo`, `shell` (quoting),
//! `fleet` (many hosts, shared bastions), `forward` (a local port to the
//! remote side, OpenSSH's `-L`), `error`.
//!
//! Tests (`cargo test -p k8sup-ssh`) start real OpenSSH servers on 127.0.0.x
//! (see `tests/harness`). They need root, `openssh-server`, `openssh-client` and
//! `sudo`, and create the local users `k8sup-nopw`, `k8sup-pw`, `k8sup-nosudo`
//! with `/etc/sudoers.d/k8sup-test-*` rules.

// Errors carry the host, file, line and fix as text, which makes `SshError` large;
// it is only built on the failure path, where the size does not matter.
#![allow(clippy::result_large_err)]

mod auth;
mod config;
mod error;
mod exec;
mod fleet;
mod forward;
mod handler;
mod known_hosts;
mod quickack;
mod session;
mod shell;
mod spec;
mod sudo;

pub use error::{SshError, UnreachableCause};
pub use exec::{Chunks, ExitStatus, Output, Signal};
pub use fleet::connect_all;
pub use forward::Forward;
pub use session::Session;
pub use shell::quote;
pub use spec::{ConnectSpec, HostKeyPolicy, Secret, Sudo};

#[cfg(test)]
mod tests {
    /// Sessions are shared across tasks of a fleet run.
    #[test]
    fn session_is_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<crate::Session>();
    }
}
