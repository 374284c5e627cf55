//! A leaf certificate: what it says (subject, names, usage, lifetime) and
//! the signed result.
//!
//! rcgen's defaults are a placeholder common name, a validity from 1975 to
//! 4096 and no key usage at all; a [`LeafSpec`] sets all three every time, so
//! no certificate k8sup issues carries a default it did not choose.

use std::fmt;
use std::net::IpAddr;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::error::PkiError;

/// A leaf lives a year, as kubeadm's do: long enough that renewal is a
/// yearly chore, short enough that a leaked key stops working.
pub const LEAF_VALIDITY: Duration = Duration::days(365);

/// Certificates start an hour in the past: k8sup signs on the workstation,
/// and a host whose clock is a little behind must not see a certificate
/// from its future (kubeadm, which signs on the host itself, backdates 5
/// minutes).
pub const BACKDATE: Duration = Duration::hours(1);

/// Which side of a TLS connection the certificate may be used on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Proves a user's identity to a server (`clientAuth`).
    Client,
    /// Serves TLS (`serverAuth`).
    Server,
    /// Both: datastore members dial each other and serve each other.
    ServerAndClient,
}

impl Usage {
    pub fn server(self) -> bool {
        matches!(self, Usage::Server | Usage::ServerAndClient)
    }
    pub fn client(self) -> bool {
        matches!(self, Usage::Client | Usage::ServerAndClient)
    }
}

/// What a leaf certificate must say. Kubernetes reads the user from the
/// common name and the groups from the organizations, so these two are the
/// identity; the names and addresses are what a client checks on a server.
///
/// At most one organization: rcgen keeps one value per attribute type, and
/// no certificate of a cluster needs two groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    pub common_name: String,
    pub organization: Option<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub usage: Usage,
    pub validity: Duration,
}

impl LeafSpec {
    /// A client certificate for user `common_name` in group `organization`.
    pub fn client(common_name: &str, organization: Option<&str>) -> LeafSpec {
        LeafSpec {
            common_name: common_name.to_string(),
            organization: organization.map(str::to_string),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage: Usage::Client,
            validity: LEAF_VALIDITY,
        }
    }

    /// A serving certificate for these names and addresses.
    pub fn server(
        common_name: &str,
        dns_names: Vec<String>,
        ip_addresses: Vec<IpAddr>,
    ) -> LeafSpec {
        LeafSpec {
            common_name: common_name.to_string(),
            organization: None,
            dns_names,
            ip_addresses,
            usage: Usage::Server,
            validity: LEAF_VALIDITY,
        }
    }

    /// Every subject alternative name, as `openssl x509 -text` and the plan
    /// show them (`DNS:x`, `IP:a.b.c.d`).
    pub fn sans(&self) -> Vec<String> {
        let dns = self.dns_names.iter().map(|d| format!("DNS:{d}"));
        let ips = self.ip_addresses.iter().map(|i| format!("IP:{i}"));
        dns.chain(ips).collect()
    }

    /// rcgen's parameters for this leaf, issued at `now`.
    fn params(&self, now: OffsetDateTime) -> Result<CertificateParams, PkiError> {
        let fail = |reason: String| PkiError::Issue {
            cert: self.common_name.clone(),
            reason,
        };
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, self.common_name.as_str());
        if let Some(o) = &self.organization {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        p.distinguished_name = dn;
        for d in &self.dns_names {
            let name = d
                .as_str()
                .try_into()
                .map_err(|e| fail(format!("{d:?} is not a DNS name: {e}")))?;
            p.subject_alt_names.push(SanType::DnsName(name));
        }
        p.subject_alt_names
            .extend(self.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
        // ECDSA keys sign the handshake; keyEncipherment is for RSA key transport.
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if self.usage.server() {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if self.usage.client() {
            p.extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        p.not_before = now - BACKDATE;
        p.not_after = now + self.validity;
        p.use_authority_key_identifier_extension = true;
        Ok(p)
    }

    /// A new key pair and this certificate for it, signed by `issuer`.
    /// The key is always new: the serial number rcgen writes is a digest
    /// of the public key, so reusing a key would repeat a serial.
    pub(crate) fn sign(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        now: OffsetDateTime,
    ) -> Result<Leaf, PkiError> {
        let fail = |reason: String| PkiError::Issue {
            cert: self.common_name.clone(),
            reason,
        };
        let key = KeyPair::generate().map_err(|e| fail(e.to_string()))?;
        let cert = self
            .params(now)?
            .signed_by(&key, issuer)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A signed certificate and its private key (ECDSA P-256, PKCS#8), as PEM.
/// `Debug` leaves the key out, so a stray `{:?}` never logs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl fmt::Debug for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leaf")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}
