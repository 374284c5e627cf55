//! The configuration file k8sup writes on each node
//! (`/etc/k8sup/apiserver-proxy.json`, from `templates/apiserver-proxy.json`).
//!
//! JSON because k8sup renders it from a template (`tojson` quotes every
//! value correctly) and a human reads it back with `jq`. Unknown keys are
//! refused: a misspelt `upstream` must not silently mean "no upstreams".
//! Everything is checked here, CA file included, so a reload either takes
//! the whole new file or keeps the whole old one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

/// Where k8sup writes the file; the binary's `--config` default.
pub const DEFAULT_PATH: &str = "/etc/k8sup/apiserver-proxy.json";

/// Why a configuration file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read it: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: line {line}, column {column}: {reason}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("{path}: {field}: {reason}")]
    Invalid {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("{path}: caFile {ca}: {reason}")]
    Ca {
        path: PathBuf,
        ca: PathBuf,
        reason: String,
    },
}

/// The file as written. Durations are milliseconds (`…Ms`), so the file
/// needs no duration syntax of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    /// A note for whoever reads the file (JSON has no comments); ignored.
    #[serde(default, rename = "//")]
    _note: Option<String>,
    #[serde(default = "default_listen")]
    listen: String,
    upstreams: Vec<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    tls_server_name: Option<String>,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_ms: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_close_on_down")]
    close_connections_on_down: bool,
    #[serde(default)]
    health_check: HealthFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct HealthFile {
    #[serde(default = "default_path")]
    path: String,
    #[serde(default = "default_interval")]
    interval_ms: u64,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default = "default_fall")]
    fall: u32,
    #[serde(default = "default_rise")]
    rise: u32,
}

impl Default for HealthFile {
    fn default() -> Self {
        HealthFile {
            path: default_path(),
            interval_ms: default_interval(),
            timeout_ms: default_timeout(),
            fall: default_fall(),
            rise: default_rise(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:6443".into()
}
fn default_connect_timeout() -> u64 {
    3000
}
fn default_max_connections() -> usize {
    1024
}
fn default_close_on_down() -> bool {
    true
}
fn default_path() -> String {
    "/readyz".into()
}
fn default_interval() -> u64 {
    2000
}
fn default_timeout() -> u64 {
    1500
}
fn default_fall() -> u32 {
    3
}
fn default_rise() -> u32 {
    2
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The local API port (kubelet and kube-proxy dial it).
    pub listen: SocketAddr,
    /// Control planes as `host:port`, in order of preference.
    pub upstreams: Vec<String>,
    /// How upstreams are judged healthy.
    pub health: HealthCheck,
    /// How long one connect to an upstream may take before the next is tried.
    pub connect_timeout: Duration,
    /// Connections open at once; more are closed at accept, so memory is
    /// bounded (two 8 KiB copy buffers per connection).
    pub max_connections: usize,
    /// Close the connections to an upstream when it is marked down, so
    /// clients reconnect (to a healthy one) instead of waiting on a dead
    /// host until their own keepalive gives up.
    pub close_connections_on_down: bool,
}

/// The periodic check of every upstream.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// HTTPS check when set (GET `path`, verified against this CA);
    /// a TCP connect otherwise.
    pub tls: Option<TlsCheck>,
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures that mark an upstream down.
    pub fall: u32,
    /// Consecutive successes that mark it up again.
    pub rise: u32,
}

/// The cluster CA that upstream serving certificates must chain to.
#[derive(Clone)]
pub struct TlsCheck {
    pub ca_file: PathBuf,
    pub roots: Arc<rustls::RootCertStore>,
    /// The name to verify instead of the upstream's host (for upstreams
    /// addressed by a name or IP the serving certificate does not carry).
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TlsCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsCheck")
            .field("ca_file", &self.ca_file)
            .field("roots", &self.roots.len())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl Config {
    /// Read and check `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::read(path).map(|(c, _)| c)
    }

    /// [`Config::load`], with the bytes it was read from.
    pub fn read(path: &Path) -> Result<(Config, Vec<u8>), ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok((Config::parse(path, &bytes)?, bytes))
    }

    /// Check the bytes of the file at `path` (named in every error).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Config, ConfigError> {
        let f: File = serde_json::from_slice(bytes).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            reason: e.to_string(),
        })?;
        let invalid = |field: &str, reason: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason,
        };
        let listen: SocketAddr = f.listen.parse().map_err(|_| {
            invalid(
                "listen",
                format!(
                    "{:?} is not an IP:port (for example \"127.0.0.1:6443\")",
                    f.listen
                ),
            )
        })?;
        if f.upstreams.is_empty() {
            return Err(invalid(
                "upstreams",
                "is empty; list each control plane's kube-apiserver as \"host:port\"".into(),
            ));
        }
        for (i, u) in f.upstreams.iter().enumerate() {
            check_host_port(u).map_err(|r| invalid(&format!("upstreams[{i}]"), r))?;
            if f.upstreams[..i].contains(u) {
                return Err(invalid(
                    &format!("upstreams[{i}]"),
                    format!("{u:?} is listed twice"),
                ));
            }
        }
        let h = f.health_check;
        if !h.path.starts_with('/') {
            return Err(invalid(
                "healthCheck.path",
                format!("{:?} must start with '/' (for example \"/readyz\")", h.path),
            ));
        }
        if h.interval_ms < 50 {
            return Err(invalid(
                "healthCheck.intervalMs",
                format!("{} is below 50 ms", h.interval_ms),
            ));
        }
        for (field, v) in [
            ("healthCheck.timeoutMs", h.timeout_ms),
            ("connectTimeoutMs", f.connect_timeout_ms),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be above 0".into()));
            }
        }
        for (field, v) in [("healthCheck.fall", h.fall), ("healthCheck.rise", h.rise)] {
            if v == 0 {
                return Err(invalid(field, "must be 1 or more".into()));
            }
        }
        if f.max_connections == 0 {
            return Err(invalid("maxConnections", "must be 1 or more".into()));
        }
        let tls = match f.ca_file {
            None => {
                if f.tls_server_name.is_some() {
                    return Err(invalid(
                        "tlsServerName",
                        "is only used by the HTTPS check; set caFile too".into(),
                    ));
                }
                None
            }
            Some(ca) => {
                let roots = load_roots(&ca).map_err(|reason| ConfigError::Ca {
                    path: path.to_path_buf(),
                    ca: ca.clone(),
                    reason,
                })?;
                if let Some(n) = &f.tls_server_name {
                    rustls::pki_types::ServerName::try_from(n.as_str()).map_err(|e| {
                        invalid(
                            "tlsServerName",
                            format!("{n:?} is not a DNS name or IP: {e}"),
                        )
                    })?;
                }
                Some(TlsCheck {
                    ca_file: ca,
                    roots: Arc::new(roots),
                    server_name: f.tls_server_name,
                })
            }
        };
        Ok(Config {
            listen,
            upstreams: f.upstreams,
            health: HealthCheck {
                tls,
                path: h.path,
                interval: Duration::from_millis(h.interval_ms),
                timeout: Duration::from_millis(h.timeout_ms),
                fall: h.fall,
                rise: h.rise,
            },
            connect_timeout: Duration::from_millis(f.connect_timeout_ms),
            max_connections: f.max_connections,
            close_connections_on_down: f.close_connections_on_down,
        })
    }
}

/// `host:port`, where host is a DNS name, an IPv4 address or a bracketed
/// IPv6 address (`[fd00::1]:6443`), as `TcpStream::connect` takes them.
fn check_host_port(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not \"host:port\" (for example \"10.0.0.11:6443\")");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    if host.is_empty() {
        return Err(bad());
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!(
            "{s:?}: an IPv6 address goes in brackets (\"[fd00::1]:6443\")"
        ));
    }
    Ok(())
}

/// The host part of `host:port`, without IPv6 brackets: the name the
/// upstream's serving certificate must carry.
pub fn host_of(upstream: &str) -> &str {
    let host = upstream.rsplit_once(':').map_or(upstream, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn load_roots(ca: &Path) -> Result<rustls::RootCertStore, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (expected the cluster CA, ca.crt)".into());
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| format!("not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/k8sup/apiserver-proxy.json"), s.as_bytes())
    }

    #[test]
    fn defaults_fill_a_minimal_file() {
        let c = parse(r#"{"upstreams": ["10.0.0.11:6443", "[fd00::2]:6443"]}"#).unwrap();
        assert_eq!(c.listen, "127.0.0.1:6443".parse().unwrap());
        assert_eq!(c.health.path, "/readyz");
        assert!(c.health.tls.is_none());
        assert_eq!(host_of(&c.upstreams[1]), "fd00::2");
        assert_eq!(host_of(&c.upstreams[0]), "10.0.0.11");
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = parse(r#"{"upstream": ["10.0.0.11:6443"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/etc/k8sup/apiserver-proxy.json: line 1"),
            "{e}"
        );
        assert!(e.contains("unknown field `upstream`"), "{e}");
        let e = parse(r#"{"upstreams": ["10.0.0.11"]}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("upstreams[0]: \"10.0.0.11\" is not \"host:port\""),
            "{e}"
        );
        let e = parse(r#"{"upstreams": []}"#).unwrap_err().to_string();
        assert!(e.contains("upstreams: is empty"), "{e}");
        let e = parse(r#"{"upstreams": ["a:1", "a:1"]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("listed twice"), "{e}");
        let e = parse(r#"{"upstreams": ["a:1"], "caFile": "/nonexistent/ca.crt"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("caFile /nonexistent/ca.crt"), "{e}");
    }
}
