//! Turning a [`ConnectSpec`] into a concrete target: ssh_config applied, defaults filled in.
//!
//! Parsing is done by `ssh2-config` (maintained, handles `Host` patterns, `Include`,
//! first-match-wins like OpenSSH). We only merge its answer with the spec, explicit
//! spec values winning as `ssh -o` would.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use ssh2_config::{ParseRule, SshConfig};

use crate::error::SshError;
use crate::spec::{ConnectSpec, Sudo};

/// The most bastions in a chain; stops a `ProxyJump` loop in ssh_config.
const MAX_JUMP_DEPTH: usize = 8;

/// A spec after ssh_config and defaults: everything needed to open the connection.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Host name or IP to open TCP to and to look up in known_hosts.
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    /// ssh_config `IdentitiesOnly yes`: offer only agent keys that match `identity_files`.
    pub identities_only: bool,
    /// The agent socket (`IdentityAgent`, else `$SSH_AUTH_SOCK`); `None`: no agent.
    pub agent: Option<PathBuf>,
    pub known_hosts_files: Vec<PathBuf>,
    pub proxy_jump: Option<ConnectSpec>,
}

impl Target {
    /// `host:port` for messages.
    pub fn display(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The user's home directory, from `$HOME` (what OpenSSH uses for `~`).
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Expand a leading `~/` (ssh_config and known_hosts paths use it).
pub(crate) fn expand_tilde(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), home_dir()) {
        (Some(rest), Some(home)) => home.join(rest),
        _ if p == "~" => home_dir().unwrap_or_else(|| PathBuf::from(p)),
        _ => PathBuf::from(p),
    }
}

fn config_error(spec: &ConnectSpec, path: &Path, e: impl std::fmt::Display) -> SshError {
    SshError::Config {
        host: spec.name.clone(),
        reason: format!("cannot read ssh config {}: {e}", path.display()),
    }
}

/// Load the ssh_config the spec points at; `None` when it does not exist (as OpenSSH).
fn load_config(spec: &ConnectSpec) -> Result<Option<SshConfig>, SshError> {
    let path = match &spec.ssh_config_file {
        Some(p) => p.clone(),
        None => match home_dir() {
            Some(h) => h.join(".ssh").join("config"),
            None => return Ok(None),
        },
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && spec.ssh_config_file.is_none() => {
            return Ok(None);
        }
        Err(e) => return Err(config_error(spec, &path, e)),
    };
    let mut config = SshConfig::default();
    if let Some(home) = home_dir() {
        config = config.home_dir(home);
    }
    let config = config
        .parse(
            &mut BufReader::new(file),
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map_err(|e| config_error(spec, &path, e))?;
    Ok(Some(config))
}

/// OpenSSH's default identities, in its order, that exist on disk.
fn default_identities() -> Vec<PathBuf> {
    let Some(home) = home_dir() else {
        return Vec::new();
    };
    ["id_rsa", "id_ecdsa", "id_ed25519"]
        .iter()
        .map(|n| home.join(".ssh").join(n))
        .filter(|p| p.exists())
        .collect()
}

fn default_known_hosts() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(home) = home_dir() {
        v.push(home.join(".ssh").join("known_hosts"));
    }
    v.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    v
}

fn local_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_string())
}

/// Parse one `ProxyJump` element: `[user@]host[:port]` or `ssh://[user@]host[:port]`.
fn parse_jump(s: &str) -> (Option<String>, String, Option<u16>) {
    let s = s.strip_prefix("ssh://").unwrap_or(s);
    let (user, rest) = match s.rsplit_once('@') {
        Some((u, r)) => (Some(u.to_string()), r),
        None => (None, s),
    };
    // `[v6]:port`, `host:port` or a bare host / v6 address.
    if let Some((h, p)) = rest
        .strip_prefix('[')
        .and_then(|inner| inner.split_once(']'))
    {
        let port = p.strip_prefix(':').and_then(|p| p.parse().ok());
        return (user, h.to_string(), port);
    }
    match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (user, h.to_string(), p.parse().ok()),
        _ => (user, rest.to_string(), None),
    }
}

/// A spec for a bastion hop, inheriting the target's security and key settings
/// (a hop is a host like any other: its key is verified the same way).
fn hop_spec(parent: &ConnectSpec, hop: &str, via: Option<ConnectSpec>) -> ConnectSpec {
    let (user, address, port) = parse_jump(hop);
    ConnectSpec {
        name: address.clone(),
        address,
        port,
        user,
        default_user: None,
        identity_files: parent.identity_files.clone(),
        use_agent: parent.use_agent,
        use_ssh_config: parent.use_ssh_config,
        ssh_config_file: parent.ssh_config_file.clone(),
        host_key_policy: parent.host_key_policy,
        known_hosts_files: parent.known_hosts_files.clone(),
        proxy_jump: via.map(Box::new),
        sudo: Sudo::Never,
        connect_timeout: parent.connect_timeout,
        retries: parent.retries,
    }
}

/// Build the bastion chain from a `ProxyJump` list: `a,b` means "reach a, then b through
/// a, then the target through b", so the last element is the target's direct hop.
fn jump_chain(parent: &ConnectSpec, list: &[String]) -> Option<ConnectSpec> {
    let mut via: Option<ConnectSpec> = None;
    for hop in list {
        via = Some(hop_spec(parent, hop, via.take()));
    }
    via
}

/// What makes two bastion specs the same connection (everything but the label),
/// so a fleet can share one connection per bastion.
pub(crate) fn jump_key(spec: &ConnectSpec) -> String {
    format!(
        "{}|{:?}|{:?}|{:?}|{}|{}|{:?}|{:?}|{:?}|{}",
        spec.address,
        spec.port,
        spec.user,
        spec.identity_files,
        spec.use_agent,
        spec.use_ssh_config,
        spec.ssh_config_file,
        spec.host_key_policy,
        spec.known_hosts_files,
        spec.proxy_jump.as_deref().map(jump_key).unwrap_or_default()
    )
}

/// Apply ssh_config and defaults to a spec.
pub(crate) fn resolve(spec: &ConnectSpec) -> Result<Target, SshError> {
    resolve_depth(spec, 0)
}

fn resolve_depth(spec: &ConnectSpec, depth: usize) -> Result<Target, SshError> {
    if depth > MAX_JUMP_DEPTH {
        return Err(SshError::Config {
            host: spec.name.clone(),
            reason: format!(
                "ProxyJump chain longer than {MAX_JUMP_DEPTH} hops (a loop in ssh_config?)"
            ),
        });
    }
    if spec.address.trim().is_empty() {
        return Err(SshError::Config {
            host: spec.name.clone(),
            reason: "empty address".into(),
        });
    }
    let params = if spec.use_ssh_config {
        load_config(spec)?.map(|c| c.query(&spec.address))
    } else {
        None
    };

    let host = params
        .as_ref()
        .and_then(|p| p.host_name.clone())
        .map(|h| h.replace("%h", &spec.address))
        .unwrap_or_else(|| spec.address.clone());
    let port = spec
        .port
        .or(params.as_ref().and_then(|p| p.port))
        .unwrap_or(22);
    let user = spec
        .user
        .clone()
        .or_else(|| params.as_ref().and_then(|p| p.user.clone()))
        .or_else(|| spec.default_user.clone())
        .unwrap_or_else(local_user);

    let mut identity_files = spec.identity_files.clone();
    if let Some(files) = params.as_ref().and_then(|p| p.identity_file.clone()) {
        for f in files {
            if !identity_files.contains(&f) {
                identity_files.push(f);
            }
        }
    }
    if identity_files.is_empty() {
        identity_files = default_identities();
    }

    // Options ssh2-config parses but does not model; first match wins there too.
    let field = |name: &str| {
        params.as_ref().and_then(|p| {
            p.unsupported_fields
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.join(" "))
        })
    };
    let identities_only =
        field("identitiesonly").is_some_and(|v| v.trim().eq_ignore_ascii_case("yes"));
    let env_agent = || {
        std::env::var_os("SSH_AUTH_SOCK")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    };
    let agent = if !spec.use_agent {
        None
    } else {
        match field("identityagent").map(|v| v.trim().to_string()) {
            Some(v) if v.eq_ignore_ascii_case("none") => None,
            Some(v) if v == "SSH_AUTH_SOCK" || v == "$SSH_AUTH_SOCK" => env_agent(),
            Some(v) => Some(expand_tilde(&v)),
            None => env_agent(),
        }
    };

    let mut known_hosts_files = spec.known_hosts_files.clone();
    if known_hosts_files.is_empty() {
        match field("userknownhostsfile") {
            Some(files) => {
                known_hosts_files = files.split_whitespace().map(expand_tilde).collect();
                known_hosts_files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
            }
            None => known_hosts_files = default_known_hosts(),
        }
    }

    let proxy_jump = match &spec.proxy_jump {
        Some(j) => Some((**j).clone()),
        None => params
            .as_ref()
            .and_then(|p| p.proxy_jump.clone())
            .filter(|list| !(list.len() == 1 && list[0].eq_ignore_ascii_case("none")))
            .and_then(|list| jump_chain(spec, &list)),
    };
    // Validate the chain up front so a loop fails before any connection is made.
    if let Some(j) = &proxy_jump {
        resolve_depth(j, depth + 1)?;
    }

    Ok(Target {
        host,
        port,
        user,
        identity_files,
        identities_only,
        agent,
        known_hosts_files,
        proxy_jump,
    })
}

#[cfg(test)]
mod tests {
    use super::parse_jump;

    #[test]
    fn jump_forms() {
        assert_eq!(parse_jump("bastion"), (None, "bastion".into(), None));
        assert_eq!(
            parse_jump("ops@bastion:2222"),
            (Some("ops".into()), "bastion".into(), Some(2222))
        );
        assert_eq!(
            parse_jump("ssh://ops@10.0.0.1:22"),
            (Some("ops".into()), "10.0.0.1".into(), Some(22))
        );
        assert_eq!(parse_jump("[::1]:2200"), (None, "::1".into(), Some(2200)));
    }
}
