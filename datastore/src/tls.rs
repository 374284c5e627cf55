//! TLS material for the client and peer listeners and for peer clients.
//! Every error names the flag and the file, so a typo is a one-line fix.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

fn read(flag: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("--{flag} {}: {e}", path.display()))
}

/// Server TLS: our certificate, and (when `require_client_cert`) the CA
/// that client certificates must chain to.
pub fn server(
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: Option<&Path>,
    require_client_cert: bool,
    prefix: &str,
) -> anyhow::Result<ServerTlsConfig> {
    let (Some(cert), Some(key)) = (cert, key) else {
        anyhow::bail!(
            "an https listener needs --{prefix}cert-file and --{prefix}key-file (or use http:// URLs with --insecure for tests)"
        );
    };
    let identity = Identity::from_pem(read(&format!("{prefix}cert-file"), cert)?, read(&format!("{prefix}key-file"), key)?);
    let mut cfg = ServerTlsConfig::new().identity(identity);
    match ca {
        Some(ca) => {
            cfg = cfg
                .client_ca_root(Certificate::from_pem(read(&format!("{prefix}trusted-ca-file"), ca)?))
                .client_auth_optional(!require_client_cert);
        }
        None if require_client_cert => anyhow::bail!(
            "client certificates are required but --{prefix}trusted-ca-file is not set; give the CA that signs client certificates"
        ),
        None => {}
    }
    Ok(cfg)
}

/// Client TLS for peer connections: trust `ca`, present our certificate.
pub fn peer_client(cert: &Path, key: &Path, ca: &Path) -> anyhow::Result<ClientTlsConfig> {
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("peer-trusted-ca-file", ca)?))
        .identity(Identity::from_pem(read("peer-cert-file", cert)?, read("peer-key-file", key)?)))
}
