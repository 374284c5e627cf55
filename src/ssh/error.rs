//! The one error type of the crate.
//!
//! Every message starts with the host's name (the inventory label), because a
//! fleet run prints many of these side by side and an error that does not say
//! which machine it is about is useless. Where the user can fix the cause, the
//! message says how.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Why a host could not be reached at the TCP / SSH-handshake level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnreachableCause {
    /// Nothing answered (TCP connect or SSH handshake) within the connect timeout.
    Timeout(Duration),
    /// The host answered with a TCP reset: no sshd listening on that port.
    Refused,
    /// The network has no route to the host (host down, wrong subnet, firewall reject).
    NoRoute,
    /// The name did not resolve.
    Resolve(String),
    /// The connection was cut during the SSH handshake, or any other socket error.
    Other(String),
}

impl fmt::Display for UnreachableCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnreachableCause::Timeout(d) => write!(f, "timed out after {:.1}s", d.as_secs_f64()),
            UnreachableCause::Refused => {
                f.write_str("connection refused (is sshd running on that port?)")
            }
            UnreachableCause::NoRoute => f.write_str("no route to host"),
            UnreachableCause::Resolve(e) => write!(f, "name did not resolve: {e}"),
            UnreachableCause::Other(e) => f.write_str(e),
        }
    }
}

/// Everything that can go wrong talking to one host.
///
/// `host` is always the inventory name given in [`crate::ConnectSpec::name`].
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// TCP connect or SSH handshake failed (retried with backoff before giving up).
    #[error("{host}: cannot reach {target} after {attempts} attempt(s): {cause}")]
    Unreachable {
        host: String,
        target: String,
        attempts: u32,
        cause: UnreachableCause,
    },

    /// The host presented a key that differs from the one recorded for it. Nothing was run.
    #[error(
        "{host}: HOST KEY MISMATCH for {target}: {file}:{line} records a different {algorithm} key, \
         the host presented {fingerprint}. This is either a reinstalled host or an attack; nothing was run. \
         If the host was reinstalled, remove the old key with `ssh-keygen -R '{lookup}' -f {file}` and connect again"
    )]
    HostKeyMismatch {
        host: String,
        target: String,
        /// The name looked up in known_hosts (`host` or `[host]:port`).
        lookup: String,
        file: PathBuf,
        line: usize,
        algorithm: String,
        fingerprint: String,
    },

    /// The host's key is not in any known_hosts file and the policy is strict.
    #[error(
        "{host}: host key for {target} is not known ({fingerprint}, searched {searched}). \
         Verify it out of band, then either set hostKeyPolicy: accept-new for the first connection \
         or record it with `ssh-keyscan -p {port} {addr} >> {first_file}`"
    )]
    HostKeyUnknown {
        host: String,
        target: String,
        addr: String,
        port: u16,
        fingerprint: String,
        searched: String,
        first_file: String,
    },

    /// The key is known but may not be used: `@revoked`, or a host certificate that does not
    /// validate (expired, wrong principal, untrusted CA).
    #[error("{host}: host key for {target} refused: {reason}")]
    HostKeyRejected {
        host: String,
        target: String,
        reason: String,
    },

    /// No offered identity was accepted.
    #[error("{host}: authentication as {user}@{target} failed; tried: {tried}")]
    AuthFailed {
        host: String,
        user: String,
        target: String,
        tried: String,
    },

    /// sudo is missing, wants a password we do not have, or refused ours.
    #[error("{host}: sudo as {user} failed: {reason}")]
    Sudo {
        host: String,
        user: String,
        reason: String,
    },

    /// A command exited non-zero (only from the `*_checked` calls).
    #[error("{host}: command `{command}` failed ({status}){}", stderr_block(.stderr_tail))]
    CommandFailed {
        host: String,
        command: String,
        status: crate::ExitStatus,
        stderr_tail: String,
    },

    /// The ssh_config file or the spec is unusable.
    #[error("{host}: {reason}")]
    Config { host: String, reason: String },

    /// The bastion this host is reached through failed (shared by every host behind it).
    #[error("{host}: through jump host: {source}")]
    Jump {
        host: String,
        #[source]
        source: std::sync::Arc<SshError>,
    },

    /// A local or remote I/O error, or the SSH connection broke mid-operation.
    #[error("{host}: {context}: {source}")]
    Io {
        host: String,
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn stderr_block(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr:\n{tail}")
    }
}

impl SshError {
    /// The inventory name of the host the error is about.
    pub fn host(&self) -> &str {
        match self {
            SshError::Unreachable { host, .. }
            | SshError::HostKeyMismatch { host, .. }
            | SshError::HostKeyUnknown { host, .. }
            | SshError::HostKeyRejected { host, .. }
            | SshError::AuthFailed { host, .. }
            | SshError::Sudo { host, .. }
            | SshError::CommandFailed { host, .. }
            | SshError::Config { host, .. }
            | SshError::Jump { host, .. }
            | SshError::Io { host, .. } => host,
        }
    }

    /// Whether trying again could help. Host-key and authentication failures never
    /// change by retrying (and retrying auth can trip fail2ban), so only transport
    /// failures are retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(self, SshError::Unreachable { .. })
    }

    pub(crate) fn io(host: &str, context: impl Into<String>, source: std::io::Error) -> Self {
        SshError::Io {
            host: host.to_string(),
            context: context.into(),
            source,
        }
    }

    /// A russh error after the connection was established: the link broke or the
    /// server refused a channel.
    pub(crate) fn ssh(host: &str, context: impl Into<String>, e: russh::Error) -> Self {
        let source = match e {
            russh::Error::IO(io) => io,
            other => std::io::Error::other(other.to_string()),
        };
        SshError::Io {
            host: host.to_string(),
            context: context.into(),
            source,
        }
    }
}
