//! The SSH settings that apply to one host: the inventory's `ssh:` defaults,
//! overridden by the host's own `ssh:`, then k8sup's built-in defaults, with
//! paths made absolute, `sudo` decided and `proxyJump` resolved. This is what
//! the SSH layer connects with.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::document::Inventory;
use crate::host::Host;
use crate::ssh::{HostKeyPolicy, SshSettings, SudoMode};
use crate::values::JumpSpec;

pub const DEFAULT_SSH_USER: &str = "root";
pub const DEFAULT_SSH_PORT: u16 = 22;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRIES: u32 = 2;

/// Concrete SSH settings for one host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveSsh {
    /// The inventory host name (for messages).
    pub host: String,
    /// Where to connect: the host's `address`.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Absolute. `None`: no key configured; use the agent and OpenSSH's
    /// default key files.
    pub identity_file: Option<PathBuf>,
    pub agent: bool,
    pub host_key_policy: HostKeyPolicy,
    /// Absolute. `None`: `~/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts`.
    pub known_hosts_file: Option<PathBuf>,
    pub proxy_jump: Option<JumpHost>,
    /// Whether to run commands through sudo (resolved from `sudo: auto` and
    /// the user).
    pub sudo: bool,
    /// Name of the environment variable holding the sudo password.
    pub sudo_password_env: Option<String>,
    #[serde(serialize_with = "humantime_ser")]
    pub connect_timeout: Duration,
    pub retries: u32,
    pub use_ssh_config: bool,
    /// The values the inventory set explicitly (defaults ← host overrides),
    /// before built-in defaults. With `use_ssh_config`, `~/.ssh/config`
    /// should fill only what is `None` here, as OpenSSH gives command-line
    /// options precedence over its config file.
    pub explicit: SshSettings,
}

/// The host to jump through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JumpHost {
    /// Set when the jump host is an inventory host.
    pub host: Option<String>,
    pub address: String,
    pub port: u16,
    /// For an inventory host, its effective user; for `host[:port]`
    /// without a user, the user of the host being reached.
    pub user: String,
    /// For an inventory host, its identity file; otherwise the target's.
    pub identity_file: Option<PathBuf>,
}

impl Inventory {
    /// The inventory's `ssh:` defaults overridden by `host.ssh`, without
    /// built-in defaults.
    pub fn merged_ssh(&self, host: &Host) -> SshSettings {
        let mut merged = self.ssh.overlay(&host.ssh);
        // A host never jumps through itself (a default `proxyJump: bastion`
        // applies to every host except the bastion); `none` (as in OpenSSH)
        // turns a default off for one host.
        if merged
            .proxy_jump
            .as_deref()
            .is_some_and(|j| j == host.name || j == "none")
        {
            merged.proxy_jump = None;
        }
        merged
    }

    /// Concrete SSH settings for `host` (see [`EffectiveSsh`]).
    pub fn effective_ssh(&self, host: &Host) -> EffectiveSsh {
        let mut e = self.direct_ssh(host);
        e.proxy_jump = e
            .explicit
            .proxy_jump
            .as_deref()
            .map(|j| match self.host(j) {
                Some(jump) => {
                    let via = self.direct_ssh(jump);
                    JumpHost {
                        host: Some(jump.name.clone()),
                        address: via.address,
                        port: via.port,
                        user: via.user,
                        identity_file: via.identity_file,
                    }
                }
                None => {
                    // Validation guarantees it parses; fall back to a bare host.
                    let spec = JumpSpec::parse(j).unwrap_or(JumpSpec {
                        user: None,
                        host: j.to_owned(),
                        port: None,
                    });
                    JumpHost {
                        host: None,
                        address: spec.host,
                        port: spec.port.unwrap_or(DEFAULT_SSH_PORT),
                        user: spec.user.unwrap_or_else(|| e.user.clone()),
                        identity_file: e.identity_file.clone(),
                    }
                }
            });
        e
    }

    /// Effective settings ignoring `proxyJump` (jumps are one level deep).
    fn direct_ssh(&self, host: &Host) -> EffectiveSsh {
        let s = self.merged_ssh(host);
        let base = self.path.parent().unwrap_or(Path::new("/"));
        let user = s
            .user
            .clone()
            .unwrap_or_else(|| DEFAULT_SSH_USER.to_owned());
        let sudo = match s.sudo.unwrap_or(SudoMode::Auto) {
            SudoMode::Auto => user != "root",
            SudoMode::Always => true,
            SudoMode::Never => false,
        };
        EffectiveSsh {
            host: host.name.clone(),
            address: host.address.clone(),
            port: s.port.unwrap_or(DEFAULT_SSH_PORT),
            identity_file: s.identity_file.as_deref().map(|p| resolve_path(p, base)),
            agent: s.agent.unwrap_or(true),
            host_key_policy: s.host_key_policy.unwrap_or(HostKeyPolicy::Strict),
            known_hosts_file: s.known_hosts_file.as_deref().map(|p| resolve_path(p, base)),
            proxy_jump: None,
            sudo,
            sudo_password_env: s.sudo_password_env.clone(),
            connect_timeout: s.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            retries: s.retries.unwrap_or(DEFAULT_RETRIES),
            use_ssh_config: s.use_ssh_config.unwrap_or(true),
            user,
            explicit: s,
        }
    }
}

/// `~` and `~/x` expand to the home directory; relative paths are relative
/// to the inventory's directory (`base`), so an inventory works the same from
/// any working directory.
pub fn resolve_path(p: &Path, base: &Path) -> PathBuf {
    if let Ok(rest) = p.strip_prefix("~")
        && let Some(home) = home_dir()
    {
        return home.join(rest);
    }
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
}

fn humantime_ser<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}
