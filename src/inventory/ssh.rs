//! SSH settings as written in the inventory: the top-level `ssh:` defaults and
//! each host's `ssh:` overrides share one type whose fields are all optional,
//! so merging is a field-by-field "override wins" (see
//! [`SshSettings::overlay`]). Concrete values and defaults are applied later,
//! in [`crate::EffectiveSsh`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::decode::Cx;
use crate::yaml::{Pos, Spanned};

/// How unknown host keys are treated. Changed keys are always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicy {
    /// The host key must already be in a known_hosts file (the secure default).
    Strict,
    /// Unknown hosts are trusted on first use and their key recorded, like
    /// OpenSSH's `StrictHostKeyChecking=accept-new`.
    AcceptNew,
}

/// When commands run through `sudo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SudoMode {
    /// Use sudo when the SSH user is not root.
    Auto,
    Always,
    Never,
}

/// One layer of SSH settings. `None` means "not set at this layer".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SshSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// As written; relative paths are resolved against the inventory's
    /// directory and `~` is expanded in [`crate::EffectiveSsh`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub identity_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_key_policy: Option<HostKeyPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
    /// An inventory host name, `[user@]host[:port]`, or `none` (as in
    /// OpenSSH) to turn off a default for one host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy_jump: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo: Option<SudoMode>,
    /// The *name* of the environment variable holding the sudo password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo_password_env: Option<String>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "humantime_opt"
    )]
    pub connect_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_ssh_config: Option<bool>,
}

impl SshSettings {
    /// `self` with every field that `over` sets replaced by `over`'s value.
    pub fn overlay(&self, over: &SshSettings) -> SshSettings {
        fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        SshSettings {
            user: pick(&self.user, &over.user),
            port: pick(&self.port, &over.port),
            identity_file: pick(&self.identity_file, &over.identity_file),
            agent: pick(&self.agent, &over.agent),
            host_key_policy: pick(&self.host_key_policy, &over.host_key_policy),
            known_hosts_file: pick(&self.known_hosts_file, &over.known_hosts_file),
            proxy_jump: pick(&self.proxy_jump, &over.proxy_jump),
            sudo: pick(&self.sudo, &over.sudo),
            sudo_password_env: pick(&self.sudo_password_env, &over.sudo_password_env),
            connect_timeout: pick(&self.connect_timeout, &over.connect_timeout),
            retries: pick(&self.retries, &over.retries),
            use_ssh_config: pick(&self.use_ssh_config, &over.use_ssh_config),
        }
    }
}

fn humantime_opt<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
        None => s.serialize_none(),
    }
}

/// Positions kept for checks that need the whole inventory.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SshPos {
    pub proxy_jump: Option<Pos>,
}

/// Read an `ssh:` mapping; `what` names it in messages ("'ssh'",
/// "'ssh' of host 'cp-1'").
pub(crate) fn decode(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> (SshSettings, SshPos) {
    let mut s = SshSettings::default();
    let mut pos = SshPos::default();
    let Some(mut m) = cx.map(yaml, what) else {
        return (s, pos);
    };
    let key = |k: &str| format!("'{k}' in {what}");
    if let Some(n) = m.get("user") {
        s.user = cx.string(n, &key("user"));
        if let Some(u) = &s.user
            && (u.is_empty()
                || u.chars()
                    .any(|c| c.is_whitespace() || matches!(c, '@' | ':' | '/')))
        {
            let shown = cx.shown(n);
            cx.sink
                .error(
                    n.pos,
                    format!("{}: {shown} is not a valid user name", key("user")),
                )
                .help("a login name only, without '@host' or ':port'");
            s.user = None;
        }
    }
    if let Some(n) = m.get("port") {
        s.port = cx.port(n, &key("port"));
    }
    if let Some(n) = m.get("identityFile") {
        s.identity_file = cx.string(n, &key("identityFile")).map(PathBuf::from);
    }
    if let Some(n) = m.get("agent") {
        s.agent = cx.boolean(n, &key("agent"));
    }
    if let Some(n) = m.get("hostKeyPolicy") {
        s.host_key_policy = cx
            .one_of(n, &key("hostKeyPolicy"), &["strict", "accept-new"])
            .map(|v| match v {
                "strict" => HostKeyPolicy::Strict,
                _ => HostKeyPolicy::AcceptNew,
            });
    }
    if let Some(n) = m.get("knownHostsFile") {
        s.known_hosts_file = cx.string(n, &key("knownHostsFile")).map(PathBuf::from);
    }
    if let Some(n) = m.get("proxyJump") {
        s.proxy_jump = cx.string(n, &key("proxyJump")).map(|v| v.trim().to_owned());
        pos.proxy_jump = Some(n.pos);
    }
    if let Some(n) = m.get("sudo") {
        s.sudo = cx
            .one_of(n, &key("sudo"), &["auto", "always", "never"])
            .map(|v| match v {
                "auto" => SudoMode::Auto,
                "always" => SudoMode::Always,
                _ => SudoMode::Never,
            });
    }
    if let Some(n) = m.get("sudoPasswordEnv") {
        s.sudo_password_env = cx.string(n, &key("sudoPasswordEnv"));
        let valid = s.sudo_password_env.as_deref().is_some_and(|v| {
            let mut c = v.chars();
            matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
                && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if s.sudo_password_env.is_some() && !valid {
            // Never echo the value: it may well be the password itself.
            cx.sink
                .error(n.pos, format!("{} must be the name of an environment variable", key("sudoPasswordEnv")))
                .help("write the variable's name (e.g. K8SUP_SUDO_PASSWORD) and export the password in it; never put the password in the inventory");
            s.sudo_password_env = None;
        }
    }
    if let Some(n) = m.get("connectTimeout") {
        s.connect_timeout = cx.duration(n, &key("connectTimeout"));
        if s.connect_timeout == Some(Duration::ZERO) {
            cx.sink.error(
                n.pos,
                format!("{} must be more than zero", key("connectTimeout")),
            );
        }
    }
    if let Some(n) = m.get("retries") {
        s.retries = cx.integer::<u32>(n, &key("retries"), 0, 100);
    }
    if let Some(n) = m.get("useSshConfig") {
        s.use_ssh_config = cx.boolean(n, &key("useSshConfig"));
    }
    m.finish(cx);
    (s, pos)
}
