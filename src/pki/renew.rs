//! When a leaf certificate is renewed, and how.
//!
//! Leaves are renewed when they come close to expiry (every plan checks) or
//! when the user asks (`k8sup certs renew`). CAs never are: a new CA means
//! new trust everywhere, which is a migration, not a renewal.
//!
//! A renewed leaf keeps its subject, names and usage and gets a new
//! validity and a **new key**. A new key costs nothing more (every consumer
//! reads the certificate and key as a pair of files, or one kubeconfig that
//! holds both), retires a key that may have been copied anywhere over a
//! year, and keeps serial numbers unique (rcgen derives a certificate's
//! serial from its public key).

use time::{Duration, OffsetDateTime};

use crate::ca::Ca;
use crate::error::PkiError;
use crate::inspect::{self, CertInfo};
use crate::leaf::{LEAF_VALIDITY, Leaf, LeafSpec, Usage};

/// Renew a leaf within this of its expiry: a month, so that a cluster
/// applied monthly never meets an expired certificate.
pub const RENEW_WITHIN: Duration = Duration::days(30);

/// What [`reconcile`](crate::reconcile) renews besides what is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A leaf expiring within this is re-issued.
    pub renew_within: Duration,
    /// Re-issue every leaf (and kubeconfig) even if it is fine:
    /// `k8sup certs renew`. CAs and the service-account key are kept.
    pub renew_all: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            renew_within: RENEW_WITHIN,
            renew_all: false,
        }
    }
}

impl Policy {
    /// `k8sup certs renew`: every leaf, now.
    pub fn renew_all() -> Policy {
        Policy {
            renew_all: true,
            ..Policy::default()
        }
    }

    /// Whether a certificate expiring at `not_after` is due at `now`.
    pub fn due(&self, not_after: OffsetDateTime, now: OffsetDateTime) -> bool {
        not_after - now < self.renew_within
    }
}

/// What an existing certificate says, as a spec to issue it again.
pub fn spec_of(info: &CertInfo) -> LeafSpec {
    LeafSpec {
        common_name: info.common_name.clone(),
        organization: info.organizations.first().cloned(),
        dns_names: info.dns_names.clone(),
        ip_addresses: info.ip_addresses.clone(),
        usage: match (info.server_auth, info.client_auth) {
            (true, true) => Usage::ServerAndClient,
            (true, false) => Usage::Server,
            _ => Usage::Client,
        },
        validity: LEAF_VALIDITY,
    }
}

/// Renews one leaf without a cluster spec: same subject, names and usage,
/// a year from `now`, a new key, signed by `ca`. Refuses a CA certificate.
pub fn renew_leaf(ca: &Ca, cert_pem: &str, now: OffsetDateTime) -> Result<Leaf, PkiError> {
    let info =
        inspect::inspect(cert_pem.as_bytes()).map_err(|reason| PkiError::BadCertificate {
            cert: "leaf".to_string(),
            path: "the certificate to renew".to_string(),
            reason,
        })?;
    if info.is_ca {
        return Err(PkiError::Issue {
            cert: info.common_name,
            reason: "it is a CA; k8sup renews leaf certificates only".to_string(),
        });
    }
    ca.sign(&spec_of(&info), now)
}
