//! A certificate authority: its certificate and key as PEM, nothing more.
//!
//! A CA is generated once, on the first apply, and then lives on the
//! control planes (as kubeadm keeps it). To sign anything later, k8sup reads
//! it back over SSH and hands the PEM to [`Ca::from_pem`]; a CA loaded that
//! way signs leaves that verify against the original certificate, because
//! the issuer name and key identifier are taken from that certificate, not
//! rebuilt.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use crate::error::PkiError;
use crate::inspect::{self, CertInfo};
use crate::leaf::{BACKDATE, Leaf, LeafSpec};

/// Ten years, as kubeadm: a CA outlives the cluster's usual life, and
/// replacing one means re-issuing everything that trusts it.
pub const CA_VALIDITY: Duration = Duration::days(3650);

/// A CA's certificate and key (ECDSA P-256, PKCS#8). `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq)]
pub struct Ca {
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl Ca {
    /// A new self-signed CA named `common_name`, valid from `now` for
    /// [`CA_VALIDITY`], allowed to sign certificates (keyCertSign) and CRLs.
    pub fn generate(common_name: &str, now: OffsetDateTime) -> Result<Ca, PkiError> {
        let fail = |e: rcgen::Error| PkiError::Issue {
            cert: common_name.to_string(),
            reason: e.to_string(),
        };
        let key = KeyPair::generate().map_err(fail)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        p.distinguished_name = dn;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        p.not_before = now - BACKDATE;
        p.not_after = now + CA_VALIDITY;
        let cert = p.self_signed(&key).map_err(fail)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA read back from a host. Checks that the certificate is a CA and
    /// that the key is its key, so a mixed-up pair fails here rather than
    /// signing certificates nothing trusts.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        Ca::load("CA", "the certificate", "the key", cert_pem, key_pem)
    }

    /// [`Ca::from_pem`], with the names errors should use.
    pub(crate) fn load(
        name: &str,
        cert_path: &str,
        key_path: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Ca, PkiError> {
        let info =
            inspect::inspect(cert_pem.as_bytes()).map_err(|reason| PkiError::BadCertificate {
                cert: name.to_string(),
                path: cert_path.to_string(),
                reason,
            })?;
        if !info.is_ca {
            return Err(PkiError::NotCa {
                cert: name.to_string(),
                path: cert_path.to_string(),
            });
        }
        check_key(name, cert_path, key_path, cert_pem, key_pem)?;
        Ok(Ca {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// What the CA's certificate says (its expiry, for `k8sup status`).
    pub fn info(&self) -> CertInfo {
        inspect::inspect(self.cert_pem.as_bytes()).expect("a Ca holds a parsed certificate")
    }

    /// A new key and a certificate for it as `spec` says, signed by this CA.
    pub fn sign(&self, spec: &LeafSpec, now: OffsetDateTime) -> Result<Leaf, PkiError> {
        let fail = |e: rcgen::Error| PkiError::Issue {
            cert: spec.common_name.clone(),
            reason: format!("the CA cannot sign: {e}"),
        };
        let key = KeyPair::from_pem(&self.key_pem).map_err(fail)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, key).map_err(fail)?;
        spec.sign(&issuer, now)
    }

    /// Whether this CA signed `cert_pem` (its signature verifies with the
    /// CA's key, and it names the CA as issuer).
    pub fn signed(&self, cert_pem: &str) -> bool {
        inspect::signed_by(cert_pem.as_bytes(), self.cert_pem.as_bytes())
    }
}

/// Errors unless `key_pem` is a key k8sup can sign with and is the key of
/// `cert_pem`.
pub(crate) fn check_key(
    name: &str,
    cert_path: &str,
    key_path: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<(), PkiError> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::BadKey {
        cert: name.to_string(),
        path: key_path.to_string(),
        reason: e.to_string(),
    })?;
    if !inspect::key_matches(cert_pem.as_bytes(), &key) {
        return Err(PkiError::KeyMismatch {
            cert: name.to_string(),
            cert_path: cert_path.to_string(),
            key_path: key_path.to_string(),
        });
    }
    Ok(())
}
