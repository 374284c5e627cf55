//! What the caller asks for: one host to connect to, and how.
//!
//! The CLI maps the inventory onto [`ConnectSpec`]; this crate never reads the
//! inventory itself, so it can be tested (and reused) on its own.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

/// How to treat a host key that is not in known_hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse unknown keys (OpenSSH `StrictHostKeyChecking yes`). The default: a first
    /// connection to a machine must be vouched for by someone.
    #[default]
    Strict,
    /// Record unknown keys, refuse changed ones (OpenSSH `StrictHostKeyChecking accept-new`).
    AcceptNew,
}

/// A secret string (a sudo password). Its `Debug` and `Display` never show the
/// value, and its memory is wiped on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret itself: only for feeding it to the remote sudo on stdin.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The secret as one line for a program's stdin (`sudo -S`), wiped
    /// from memory when dropped.
    pub(crate) fn stdin_line(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}\n", self.expose()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How commands that need root are run when the login user is not root.
#[derive(Debug, Clone, Default)]
pub enum Sudo {
    /// Never use sudo: [`crate::Session::exec`] runs as the login user.
    Never,
    /// `sudo -n`: fails clearly if sudo wants a password.
    #[default]
    Passwordless,
    /// `sudo -S -p ''` with this password written on the command's stdin (never on a
    /// command line, never logged). If sudo turns out not to need it, it is not sent.
    Password(Secret),
}

/// One host to connect to.
///
/// Explicit values win over `~/.ssh/config`, like `ssh -o` does: `port`, `user` and
/// `proxy_jump` replace the config's, `identity_files` are tried before the config's.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Label used in every error and log line (the inventory host name).
    pub name: String,
    /// IP, DNS name or ssh_config `Host` alias.
    pub address: String,
    pub port: Option<u16>,
    /// Login user; defaults to ssh_config's `User`, then `default_user`,
    /// then `$USER`.
    pub user: Option<String>,
    /// The user when neither `user` nor ssh_config names one: lets a caller
    /// keep its own default (the inventory's `root`) without overriding
    /// ssh_config's `User`, as an explicit `user` would.
    pub default_user: Option<String>,
    /// Private key files, tried in order after matching agent keys.
    pub identity_files: Vec<PathBuf>,
    /// Offer keys held by the agent at `$SSH_AUTH_SOCK` (or ssh_config's `IdentityAgent`).
    pub use_agent: bool,
    /// Read ssh_config for `address` (HostName, User, Port, IdentityFile, ProxyJump,
    /// UserKnownHostsFile, IdentitiesOnly, IdentityAgent).
    pub use_ssh_config: bool,
    /// The ssh_config file; `None` means `~/.ssh/config` (a missing file is fine).
    pub ssh_config_file: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    /// known_hosts files; empty means ssh_config's `UserKnownHostsFile`, else OpenSSH's
    /// defaults (`~/.ssh/known_hosts`, `/etc/ssh/ssh_known_hosts`). `accept-new` writes to
    /// the first one.
    pub known_hosts_files: Vec<PathBuf>,
    /// Bastion to tunnel through (`ssh -J`). When `None` and `use_ssh_config` is set,
    /// ssh_config's `ProxyJump` is used.
    pub proxy_jump: Option<Box<ConnectSpec>>,
    pub sudo: Sudo,
    /// Bound on TCP connect + SSH handshake + authentication, per attempt.
    pub connect_timeout: Duration,
    /// Extra attempts after a transport failure (never after host-key or auth failures).
    pub retries: u32,
}

impl ConnectSpec {
    /// A spec with secure defaults: strict host keys, agent and ssh_config on,
    /// passwordless sudo, 10 s timeout, 2 retries.
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        ConnectSpec {
            name: name.into(),
            address: address.into(),
            port: None,
            user: None,
            default_user: None,
            identity_files: Vec::new(),
            use_agent: true,
            use_ssh_config: true,
            ssh_config_file: None,
            host_key_policy: HostKeyPolicy::Strict,
            known_hosts_files: Vec::new(),
            proxy_jump: None,
            sudo: Sudo::Passwordless,
            connect_timeout: Duration::from_secs(10),
            retries: 2,
        }
    }
}
