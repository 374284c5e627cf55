//! Reading a certificate back: who it is for, which names it covers, who
//! signed it and when it expires.
//!
//! This is how k8sup decides, from what it read on the hosts, whether a
//! certificate is still right (the plan) and how long it has left
//! (`k8sup status`).

use std::net::IpAddr;

use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;
use x509_parser::x509::X509Name;

use crate::error::PkiError;

/// What a certificate says, as far as a cluster cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's CN: the Kubernetes user name of a client certificate.
    pub common_name: String,
    /// The subject's O values: the Kubernetes groups of a client certificate.
    pub organizations: Vec<String>,
    /// The issuer's CN (the CA's name).
    pub issuer: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub server_auth: bool,
    pub client_auth: bool,
}

impl CertInfo {
    /// Whole days from `now` until it expires (negative once expired).
    pub fn days_left(&self, now: OffsetDateTime) -> i64 {
        (self.not_after - now).whole_days()
    }
}

/// Reads the first certificate in `pem`. `path` names it in the error.
pub fn inspect_pem(path: &str, pem: &[u8]) -> Result<CertInfo, PkiError> {
    inspect(pem).map_err(|reason| PkiError::BadCertificate {
        cert: "certificate".to_string(),
        path: path.to_string(),
        reason,
    })
}

/// What the certificate in a file k8sup wrote says, whatever the file: a
/// `.crt`, or a kubeconfig (its client certificate). `None` for a key or
/// `sa.pub`, which have no expiry. For `k8sup status`, which reads the
/// files [`to_read`](crate::to_read) lists and never needs a CA key.
pub fn inspect_file(path: &str, contents: &[u8]) -> Result<Option<CertInfo>, PkiError> {
    if path.ends_with(".crt") {
        inspect_pem(path, contents).map(Some)
    } else if path.ends_with(".conf") {
        let kc = crate::Kubeconfig::parse(path, contents)?;
        inspect_pem(path, kc.cert_pem.as_bytes()).map(Some)
    } else {
        Ok(None)
    }
}

/// A certificate as a person reads it, one fact per line (subject, groups,
/// issuer, names, validity, serial): what the plan diffs when a certificate
/// changes, instead of its base64. Text that is not a certificate is shown
/// as it is.
pub fn describe_pem(pem: &[u8]) -> String {
    let described = with_cert(pem, |cert| {
        let info = inspect(pem)?;
        let mut out = format!("subject CN={}\n", info.common_name);
        if !info.organizations.is_empty() {
            out += &format!("groups {}\n", info.organizations.join(", "));
        }
        out += &format!("issuer CN={}\n", info.issuer);
        let names: Vec<String> = info
            .dns_names
            .iter()
            .cloned()
            .chain(info.ip_addresses.iter().map(ToString::to_string))
            .collect();
        if !names.is_empty() {
            out += &format!("names {}\n", names.join(", "));
        }
        out += &format!(
            "valid from {} until {}\n",
            rfc3339(info.not_before),
            rfc3339(info.not_after)
        );
        out += &format!("serial {}\n", cert.raw_serial_as_string());
        Ok(out)
    });
    described.unwrap_or_else(|_| String::from_utf8_lossy(pem).into_owned())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// [`inspect_pem`] with the reason as text, for callers that add the name.
pub(crate) fn inspect(pem: &[u8]) -> Result<CertInfo, String> {
    with_cert(pem, |cert| {
        let mut info = CertInfo {
            common_name: first(&cert.subject().iter_common_name().collect::<Vec<_>>()),
            organizations: cert
                .subject()
                .iter_organization()
                .filter_map(|a| a.as_str().ok().map(str::to_string))
                .collect(),
            issuer: common_name(cert.issuer()),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            not_before: cert.validity().not_before.to_datetime(),
            not_after: cert.validity().not_after.to_datetime(),
            is_ca: cert.is_ca(),
            server_auth: false,
            client_auth: false,
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(d) => info.dns_names.push(d.to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Some(ip) = ip_from_bytes(b) {
                            info.ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            info.server_auth = eku.value.server_auth;
            info.client_auth = eku.value.client_auth;
        }
        Ok(info)
    })
}

/// Whether `ca_pem` signed `cert_pem`: the issuer name is the CA's subject
/// and the signature verifies with the CA's public key.
pub(crate) fn signed_by(cert_pem: &[u8], ca_pem: &[u8]) -> bool {
    with_cert(ca_pem, |ca| {
        with_cert(cert_pem, |cert| {
            Ok(cert.issuer().as_raw() == ca.subject().as_raw()
                && cert.verify_signature(Some(ca.public_key())).is_ok())
        })
    })
    .unwrap_or(false)
}

/// Whether `key` is the private half of the certificate's public key.
pub(crate) fn key_matches(cert_pem: &[u8], key: &rcgen::KeyPair) -> bool {
    with_cert(cert_pem, |cert| {
        Ok(cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
    })
    .unwrap_or(false)
}

fn with_cert<T>(
    pem: &[u8],
    f: impl FnOnce(&X509Certificate<'_>) -> Result<T, String>,
) -> Result<T, String> {
    let (_, pem) = parse_x509_pem(pem).map_err(|e| format!("no PEM block: {e}"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!("a PEM {:?} block, not a CERTIFICATE", pem.label));
    }
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    f(&cert)
}

fn common_name(name: &X509Name<'_>) -> String {
    first(&name.iter_common_name().collect::<Vec<_>>())
}

fn first(attrs: &[&x509_parser::x509::AttributeTypeAndValue<'_>]) -> String {
    attrs
        .first()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(b).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(b).ok()?)),
        _ => None,
    }
}
