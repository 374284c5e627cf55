//! known_hosts: reading, matching and the verdict on a presented host key.
//!
//! russh's own `check_known_hosts` only understands plain `host key` lines: it
//! misreads `@cert-authority` / `@revoked` lines, ignores wildcards and negations
//! and splits on single spaces. We parse each line with `ssh_key`'s entry parser
//! (keeping file and line number for error messages) and implement OpenSSH's
//! matching rules here, in one place.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{KeyInit, Mac};
use russh::keys::ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use russh::keys::ssh_key::{Certificate, Fingerprint, HashAlg, PublicKey, public::KeyData};
use russh::keys::{Algorithm, EcdsaCurve, PublicKeyOrCertificate};

/// One usable line of a known_hosts file.
#[derive(Debug, Clone)]
struct Line {
    file: PathBuf,
    line: usize,
    marker: Option<Marker>,
    hosts: HostPatterns,
    key: PublicKey,
}

/// All lines of the configured known_hosts files, in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct KnownHosts {
    files: Vec<PathBuf>,
    lines: Vec<Line>,
}

/// The outcome of checking a presented host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A recorded key, or a certificate from a trusted CA, matched.
    Trusted,
    /// Nothing is recorded for this host.
    Unknown,
    /// A different key is recorded for this host at `file:line`.
    Mismatch {
        file: PathBuf,
        line: usize,
        algorithm: String,
    },
    /// The key is revoked, or a certificate failed validation.
    Rejected(String),
}

/// The name OpenSSH looks up: `host` on port 22, `[host]:port` otherwise.
pub(crate) fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// SHA-256 fingerprint as OpenSSH prints it (`SHA256:...`).
pub(crate) fn fingerprint(key: &KeyData) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// `*` and `?` glob over the whole string, as in OpenSSH's `match_pattern`.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Whether a line's host field applies to `lookup`. A matching negated pattern
/// (`!pattern`) excludes the line even if another pattern matches.
fn host_matches(hosts: &HostPatterns, lookup: &str) -> bool {
    match hosts {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(lookup.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(patterns) => {
            let mut matched = false;
            for p in patterns {
                let p = p.to_ascii_lowercase();
                if let Some(neg) = p.strip_prefix('!') {
                    if glob(neg, lookup) {
                        return false;
                    }
                } else if glob(&p, lookup) {
                    matched = true;
                }
            }
            matched
        }
    }
}

/// Parse one line, tolerating runs of spaces or tabs between fields.
fn parse_line(raw: &str) -> Option<Entry> {
    let content = raw.split('#').next().unwrap_or("").trim();
    if content.is_empty() {
        return None;
    }
    let normalized = content.split_whitespace().collect::<Vec<_>>().join(" ");
    normalized.parse::<Entry>().ok()
}

impl KnownHosts {
    /// Read every file; a missing file is simply empty (as in OpenSSH). Lines we cannot
    /// parse (unknown key types, garbage) are skipped with a debug log.
    pub fn load(files: &[PathBuf]) -> std::io::Result<Self> {
        let mut lines = Vec::new();
        for file in files {
            let text = match std::fs::read_to_string(file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!("reading {}: {e}", file.display()),
                    ));
                }
            };
            for (i, raw) in text.lines().enumerate() {
                match parse_line(raw) {
                    Some(entry) => lines.push(Line {
                        file: file.clone(),
                        line: i + 1,
                        marker: entry.marker().copied(),
                        hosts: entry.host_patterns().clone(),
                        key: entry.public_key().clone(),
                    }),
                    None if !raw.trim().is_empty() && !raw.trim_start().starts_with('#') => {
                        tracing::debug!(file = %file.display(), line = i + 1, "skipping unparsable known_hosts line");
                    }
                    None => {}
                }
            }
        }
        Ok(KnownHosts {
            files: files.to_vec(),
            lines,
        })
    }

    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    fn for_host<'a, 'b>(&'a self, lookup: &'b str) -> impl Iterator<Item = &'a Line> + use<'a, 'b> {
        self.lines
            .iter()
            .filter(move |l| host_matches(&l.hosts, lookup))
    }

    /// Host-key algorithms to offer, most wanted first: the types already recorded for
    /// this host, then the rest of russh's defaults. Without this russh asks for
    /// ed25519 first, and a host recorded only by its RSA key would look unknown.
    pub fn preferred_key_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let lookup = lookup_name(host, port);
        let known: BTreeSet<String> = self
            .for_host(&lookup)
            .filter(|l| l.marker.is_none())
            .map(|l| l.key.algorithm().as_str().to_string())
            .collect();
        let defaults: Vec<Algorithm> = russh::Preferred::DEFAULT.key.to_vec();
        let is_known = |a: &Algorithm| {
            let base = match a {
                Algorithm::Rsa { .. } => "ssh-rsa".to_string(),
                other => other.as_str().to_string(),
            };
            known.contains(&base)
        };
        let mut out: Vec<Algorithm> = defaults.iter().filter(|a| is_known(a)).cloned().collect();
        out.extend(defaults.into_iter().filter(|a| !is_known(a)));
        out
    }

    /// Certificate algorithms to offer: only when a `@cert-authority` line covers this
    /// host, so a server with a certificate never has to prove itself to a client that
    /// cannot check it.
    pub fn certificate_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let lookup = lookup_name(host, port);
        if !self
            .for_host(&lookup)
            .any(|l| l.marker == Some(Marker::CertAuthority))
        {
            return Vec::new();
        }
        vec![
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP256,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP384,
            },
            Algorithm::Ecdsa {
                curve: EcdsaCurve::NistP521,
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
        ]
    }

    fn revoked(&self, lookup: &str, key: &KeyData) -> Option<&Line> {
        self.for_host(lookup)
            .find(|l| l.marker == Some(Marker::Revoked) && l.key.key_data() == key)
    }

    /// Judge the key (or certificate) a server presented for `host:port`.
    pub fn verify(
        &self,
        host: &str,
        port: u16,
        presented: &PublicKeyOrCertificate,
        now_unix: u64,
    ) -> Verdict {
        let lookup = lookup_name(host, port);
        match presented {
            PublicKeyOrCertificate::Certificate(cert) => {
                self.verify_certificate(host, &lookup, cert, now_unix)
            }
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                self.verify_key(&lookup, key.key_data())
            }
        }
    }

    fn verify_key(&self, lookup: &str, key: &KeyData) -> Verdict {
        if let Some(l) = self.revoked(lookup, key) {
            return Verdict::Rejected(format!(
                "key {} is marked @revoked at {}:{}",
                fingerprint(key),
                l.file.display(),
                l.line
            ));
        }
        let plain: Vec<&Line> = self
            .for_host(lookup)
            .filter(|l| l.marker.is_none())
            .collect();
        if plain.iter().any(|l| l.key.key_data() == key) {
            return Verdict::Trusted;
        }
        // Same type but different key: changed. A recorded key of another type is also a
        // change: we asked for the recorded types first, so a host still holding that key
        // would have used it.
        let alg = key.algorithm();
        let changed = plain
            .iter()
            .find(|l| l.key.algorithm() == alg)
            .or(plain.first());
        match changed {
            Some(l) => Verdict::Mismatch {
                file: l.file.clone(),
                line: l.line,
                algorithm: l.key.algorithm().to_string(),
            },
            None => Verdict::Unknown,
        }
    }

    fn verify_certificate(
        &self,
        host: &str,
        lookup: &str,
        cert: &Certificate,
        now_unix: u64,
    ) -> Verdict {
        for k in [cert.public_key(), cert.signature_key()] {
            if let Some(l) = self.revoked(lookup, k) {
                return Verdict::Rejected(format!(
                    "certificate key {} is marked @revoked at {}:{}",
                    fingerprint(k),
                    l.file.display(),
                    l.line
                ));
            }
        }
        if !cert.cert_type().is_host() {
            return Verdict::Rejected(
                "the server presented a user certificate as its host key".into(),
            );
        }
        let cas: Vec<Fingerprint> = self
            .for_host(lookup)
            .filter(|l| l.marker == Some(Marker::CertAuthority))
            .map(|l| l.key.key_data().fingerprint(HashAlg::Sha256))
            .collect();
        let ca_fp = cert.signature_key().fingerprint(HashAlg::Sha256);
        if !cas.contains(&ca_fp) {
            return Verdict::Rejected(format!(
                "host certificate is signed by CA {ca_fp}, which no @cert-authority line for {lookup} trusts"
            ));
        }
        if cert.validate_at(now_unix, cas.iter()).is_err() {
            return Verdict::Rejected(format!(
                "host certificate (id {:?}) is expired, not yet valid or has a bad signature (valid from {} to {} unix time)",
                cert.key_id(),
                cert.valid_after(),
                cert.valid_before()
            ));
        }
        if !cert.critical_options().is_empty() {
            return Verdict::Rejected(
                "host certificate has critical options, which host certificates may not carry"
                    .into(),
            );
        }
        let host_lc = host.to_ascii_lowercase();
        let principals = cert.valid_principals();
        if !principals.is_empty()
            && !principals
                .iter()
                .any(|p| glob(&p.to_ascii_lowercase(), &host_lc))
        {
            return Verdict::Rejected(format!(
                "host certificate is valid for {principals:?}, not for {host}"
            ));
        }
        Verdict::Trusted
    }
}

/// Serialises appends from parallel connections of this process.
static LEARN_LOCK: Mutex<()> = Mutex::new(());

/// Append `lookup keytype base64` to `file` (created 0600 in a 0700 directory if missing).
pub(crate) fn learn(file: &Path, host: &str, port: u16, key: &KeyData) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let _guard = LEARN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let key_text = PublicKey::new(key.clone(), "")
        .to_openssh()
        .map_err(std::io::Error::other)?;
    let needs_newline = match std::fs::read(file) {
        Ok(bytes) => !bytes.is_empty() && !bytes.ends_with(b"\n"),
        Err(_) => false,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)?;
    let line = format!(
        "{}{} {}\n",
        if needs_newline { "\n" } else { "" },
        lookup_name(host, port),
        key_text.trim()
    );
    f.write_all(line.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_and_negation() {
        assert!(glob("*.example.com", "a.example.com"));
        assert!(!glob("*.example.com", "example.com"));
        assert!(glob("10.0.0.?", "10.0.0.7"));
        let pats = HostPatterns::Patterns(vec!["*.lab".into(), "!db.lab".into()]);
        assert!(host_matches(&pats, "web.lab"));
        assert!(!host_matches(&pats, "db.lab"));
    }

    #[test]
    fn lookup_uses_brackets_off_port_22() {
        assert_eq!(lookup_name("Host", 22), "host");
        assert_eq!(lookup_name("127.0.0.2", 2222), "[127.0.0.2]:2222");
    }
}
