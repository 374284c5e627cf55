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
    let identity = Identity::from_pem(
        read(&format!("{prefix}cert-file"), cert)?,
        read(&format!("{prefix}key-file"), key)?,
    );
    let mut cfg = ServerTlsConfig::new().identity(identity);
    match ca {
        Some(ca) => {
            cfg = cfg
                .client_ca_root(Certificate::from_pem(read(
                    &format!("{prefix}trusted-ca-file"),
                    ca,
                )?))
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
        .identity(Identity::from_pem(
            read("peer-cert-file", cert)?,
            read("peer-key-file", key)?,
        )))
}

/// rustls configuration for the client listener. We terminate TLS
/// ourselves (instead of letting tonic do it) so the decrypted stream can
/// pass through [`crate::h2authority`] before hyper parses it.
pub fn client_listener(
    cert: Option<&Path>,
    key: Option<&Path>,
    ca: Option<&Path>,
    require_client_cert: bool,
) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert), Some(key)) = (cert, key) else {
        anyhow::bail!(
            "an https client listener needs --cert-file and --key-file (or use http:// URLs with --insecure for tests)"
        );
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("--cert-file {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("--key-file {}: {e}", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .map_err(|e| anyhow::anyhow!("--trusted-ca-file {}: {e}", ca.display()))?
            {
                roots
                    .add(c.map_err(|e| anyhow::anyhow!("--trusted-ca-file {}: {e}", ca.display()))?)
                    .map_err(|e| anyhow::anyhow!("--trusted-ca-file {}: {e}", ca.display()))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider,
            );
            let v = if require_client_cert {
                v.build()?
            } else {
                v.allow_unauthenticated().build()?
            };
            builder.with_client_cert_verifier(v)
        }
        None if require_client_cert => anyhow::bail!(
            "client certificates are required (--client-cert-auth) but --trusted-ca-file is not set; give the CA that signs client certificates"
        ),
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("--cert-file/--key-file: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}
