//! What can go wrong, named after the certificate it concerns.
//!
//! A leaf certificate that cannot be read back is never an error: it is
//! simply issued again (see [`Reason::Unreadable`](crate::Reason)). Errors are
//! kept for what k8sup must not paper over: a CA it cannot use (replacing a
//! CA would silently break every certificate the cluster trusts), a CA key it
//! was not given, and a specification it cannot turn into certificates.
//! No message ever contains key material.

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{cert}: {path} is not a PEM certificate: {reason}")]
    BadCertificate {
        cert: String,
        path: String,
        reason: String,
    },

    #[error("{cert}: {path} is not a PEM private key k8sup can use: {reason}")]
    BadKey {
        cert: String,
        path: String,
        reason: String,
    },

    #[error("{cert}: the key in {key_path} does not belong to the certificate {cert_path}")]
    KeyMismatch {
        cert: String,
        cert_path: String,
        key_path: String,
    },

    #[error("{cert}: {path} is not a CA certificate (basicConstraints CA:TRUE is missing)")]
    NotCa { cert: String, path: String },

    #[error(
        "issuing {leaf} needs the {ca} key {path} from a control plane, and it was not given. \
         Read it from a control plane that has it; if none has it, restore it from a backup: \
         k8sup never replaces a CA whose certificate exists, since every certificate the \
         cluster trusts depends on it"
    )]
    CaKeyNeeded {
        ca: String,
        leaf: String,
        path: String,
    },

    #[error(
        "{ca}: {path} differs between {first} and {other}: the cluster has two CAs. \
         Copy the right one (certificate and key) to every control plane, then run k8sup again"
    )]
    CaDiverged {
        ca: String,
        path: String,
        first: String,
        other: String,
    },

    #[error("{cert}: cannot issue the certificate: {reason}")]
    Issue { cert: String, reason: String },

    #[error(
        "service CIDR {cidr} has no address for the kubernetes service (it needs at least two \
         addresses; the first host address is the service's)"
    )]
    NoServiceIp { cidr: ipnet::IpNet },

    #[error("the cluster has no control plane: its CAs and keys would have nowhere to live")]
    NoControlPlane,

    #[error("{kubeconfig}: {reason}")]
    Kubeconfig { kubeconfig: String, reason: String },
}
