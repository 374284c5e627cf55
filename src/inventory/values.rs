//! Checks for the kinds of values an inventory holds: DNS labels, host
//! addresses, CIDRs, versions, certificate SANs and `[user@]host[:port]` jump
//! specs. Each reader reports what was expected and, where it can tell, the
//! likely fix.

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::decode::Cx;
use crate::yaml::Spanned;

/// RFC 1123 label as Kubernetes uses it for names: lowercase letters, digits
/// and '-', starting and ending with a letter or digit, at most 63 chars.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS name: dot-separated labels (case-insensitive), at most 253 chars.
pub fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| is_dns_label(&l.to_ascii_lowercase()))
}

pub(crate) fn dns_label(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<String> {
    let value = cx.string(yaml, what)?;
    if is_dns_label(&value) {
        return Some(value);
    }
    let shown = cx.shown(yaml);
    let fixed: String = value
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .trim_matches('-')
        .chars()
        .take(63)
        .collect();
    let d = cx.sink.error(
        yaml.pos,
        format!("{what}: {shown} is not a valid DNS label (RFC 1123)"),
    );
    if is_dns_label(&fixed) {
        d.help(format!(
            "use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters, e.g. '{fixed}'"
        ));
    } else {
        d.help("use lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters");
    }
    None
}

/// Where to reach a host: an IP address, a DNS name or an `~/.ssh/config`
/// alias. Users and ports have their own keys, so `root@h` and `h:22` are
/// errors that say where those belong.
pub(crate) fn host_address(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<String> {
    let value = cx.string(yaml, what)?;
    let v = value.trim();
    if v.parse::<IpAddr>().is_ok() {
        return Some(v.to_owned());
    }
    let shown = cx.shown(yaml);
    let help = if let Some((user, host)) = v.split_once('@') {
        Some(format!(
            "put the user in 'ssh: {{ user: {user} }}' and the address '{host}' here"
        ))
    } else if let Some((host, port)) = v.rsplit_once(':').filter(|(_, p)| p.parse::<u16>().is_ok())
    {
        Some(format!(
            "put the port in 'ssh: {{ port: {port} }}' and the address '{host}' here"
        ))
    } else if v.contains("://") {
        Some("give a bare IP address or host name, without a scheme".to_owned())
    } else {
        None
    };
    let alias_ok = !v.is_empty()
        && !v.starts_with('-')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if help.is_none() && alias_ok {
        return Some(v.to_owned());
    }
    let d = cx.sink.error(
        yaml.pos,
        format!("{what}: {shown} is not an IP address, DNS name or ssh config alias"),
    );
    d.help(help.unwrap_or_else(|| "use letters, digits, '.', '-' and '_' only".to_owned()));
    None
}

/// An IP network in CIDR notation, with no host bits set.
pub(crate) fn cidr(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<IpNet> {
    let value = cx.string(yaml, what)?;
    let shown = cx.shown(yaml);
    match value.trim().parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            cx.sink
                .error(yaml.pos, format!("{what}: {shown} has host bits set"))
                .help(format!("did you mean '{}'?", net.trunc()));
            None
        }
        Err(_) => {
            let d = cx.sink.error(
                yaml.pos,
                format!("{what}: {shown} is not a CIDR such as '10.1.0.0/16'"),
            );
            if let Ok(ip) = value.trim().parse::<IpAddr>() {
                d.help(format!(
                    "add a prefix length, e.g. '{ip}/{}'",
                    if ip.is_ipv4() { 16 } else { 64 }
                ));
            }
            None
        }
    }
}

/// A Kubernetes version: semver with an optional leading `v`, normalised.
pub(crate) fn version(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<semver::Version> {
    let value = cx.string(yaml, what)?;
    let trimmed = value.trim();
    let bare = trimmed
        .strip_prefix('v')
        .or_else(|| trimmed.strip_prefix('V'))
        .unwrap_or(trimmed);
    match semver::Version::parse(bare) {
        Ok(v) => Some(v),
        Err(e) => {
            let shown = cx.shown(yaml);
            let d = cx.sink.error(
                yaml.pos,
                format!("{what}: {shown} is not a version such as 'v1.31.4' ({e})"),
            );
            if bare.split('.').count() == 2 && bare.split('.').all(|p| p.parse::<u64>().is_ok()) {
                d.help(format!(
                    "give the full version including the patch release, e.g. 'v{bare}.0'"
                ));
            }
            None
        }
    }
}

/// An extra name or IP for the API server certificate (`*.` wildcards allowed).
pub(crate) fn san(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<String> {
    let value = cx.string(yaml, what)?;
    let v = value.trim();
    let name = v.strip_prefix("*.").unwrap_or(v);
    if v.parse::<IpAddr>().is_ok() || is_dns_name(name) {
        return Some(v.to_owned());
    }
    let shown = cx.shown(yaml);
    cx.sink
        .error(
            yaml.pos,
            format!("{what}: {shown} is neither an IP address nor a DNS name"),
        )
        .help("certificate SANs are bare names or IPs, without scheme or port");
    None
}

/// An absolute path on the hosts (not on the workstation).
pub(crate) fn host_path(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<PathBuf> {
    let value = cx.string(yaml, what)?;
    if value.starts_with('/') {
        return Some(PathBuf::from(value));
    }
    let shown = cx.shown(yaml);
    cx.sink
        .error(
            yaml.pos,
            format!("{what}: {shown} must be an absolute path on the hosts"),
        )
        .help("start it with '/', e.g. '/var/lib/k8sup/datastore'");
    None
}

/// An OpenSSH-style jump target written out: `[user@]host[:port]`
/// (IPv6 as `[addr]:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpSpec {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl JumpSpec {
    pub fn parse(s: &str) -> Result<JumpSpec, String> {
        let s = s.trim();
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, s),
        };
        if let Some(u) = user
            && (u.is_empty() || u.chars().any(|c| c.is_whitespace() || c == ':' || c == '/'))
        {
            return Err(format!("'{u}' is not a valid user name"));
        }
        let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or("missing ']' after an IPv6 address")?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("expected ':port' after ']'")?),
            };
            (addr, port)
        } else if rest.matches(':').count() > 1 {
            (rest, None) // a bare IPv6 address
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            }
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("'{p}' is not a port (1-65535)"))?,
            ),
        };
        let host_ok = host.parse::<IpAddr>().is_ok()
            || (!host.is_empty()
                && !host.starts_with('-')
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
        if !host_ok {
            return Err(format!("'{host}' is not a host name or IP address"));
        }
        Ok(JumpSpec {
            user: user.map(str::to_owned),
            host: host.to_owned(),
            port,
        })
    }
}

/// File permission bits written in octal, as in chmod: `"0644"`, `0644`,
/// `644`, `"0o644"`. The raw text of the value is read, so YAML's own number
/// rules never turn `0644` into decimal 420 or 644.
pub(crate) fn mode(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<u32> {
    let s = cx.scalar(yaml, "octal permission bits such as '0644'", what)?;
    let text = s.value.trim();
    let digits = text.strip_prefix("0o").unwrap_or(text);
    if (1..=4).contains(&digits.len())
        && let Ok(v) = u32::from_str_radix(digits, 8)
        && v <= 0o7777
    {
        return Some(v);
    }
    let shown = cx.shown(yaml);
    cx.sink
        .error(
            yaml.pos,
            format!("{what} must be octal permission bits, found {shown}"),
        )
        .help("write it as chmod does, e.g. \"0644\" or \"0755\"");
    None
}

/// A user or group name as `useradd` accepts it (or a numeric id).
pub(crate) fn account(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<String> {
    let v = cx.string(yaml, what)?;
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !v.starts_with('-');
    if ok {
        return Some(v);
    }
    let shown = cx.shown(yaml);
    cx.sink.error(
        yaml.pos,
        format!("{what}: {shown} is not a user or group name"),
    );
    None
}

/// A systemd service name; a trailing `.service` is dropped.
pub(crate) fn unit_name(cx: &mut Cx<'_>, yaml: &Spanned, what: &str) -> Option<String> {
    let v = cx.string(yaml, what)?;
    let name = v.strip_suffix(".service").unwrap_or(&v);
    let ok = !name.is_empty()
        && name.len() <= 200
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '.' | '@' | '-' | '\\'));
    if ok && !name.contains('.') {
        return Some(name.to_owned());
    }
    let shown = cx.shown(yaml);
    let d = cx.sink.error(
        yaml.pos,
        format!("{what}: {shown} is not a systemd service name"),
    );
    if name.contains('.') {
        d.help("only services are managed here: write the name without a suffix, e.g. 'nginx'");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("cp-1"));
        assert!(!is_dns_label("CP-1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a_b"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn jump_specs() {
        let j = JumpSpec::parse("ops@bastion.example.com:2222").unwrap();
        assert_eq!(
            (j.user.as_deref(), j.host.as_str(), j.port),
            (Some("ops"), "bastion.example.com", Some(2222))
        );
        assert_eq!(
            JumpSpec::parse("[2001:db8::1]:22").unwrap().host,
            "2001:db8::1"
        );
        assert_eq!(JumpSpec::parse("2001:db8::1").unwrap().port, None);
        assert!(JumpSpec::parse("bastion:99999").is_err());
        assert!(JumpSpec::parse("bad host").is_err());
        assert!(JumpSpec::parse("@h").is_err());
    }
}
