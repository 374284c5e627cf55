//! The datastore terminates TLS with rustls (webpki), and k8sup's own
//! Kubernetes client will too: the strictest verifier the cluster's
//! certificates meet. Members must accept each other and the apiserver's
//! client certificate and load their own keys; the apiserver's certificate
//! must pass for every name a client dials.

use std::sync::Arc;

use k8sup_pki::layout::*;
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;

use crate::{file, fresh, spec};

fn der(pem: &[u8]) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem).unwrap()
}

#[test]
fn the_datastores_tls_stack_accepts_member_and_client_certificates() {
    let pki = fresh(&spec());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(der(&file(&pki, "cp-1", DATASTORE_CA_CRT).contents))
        .unwrap();
    let roots = Arc::new(roots);
    let servers = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .unwrap();
    let clients = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .unwrap();
    let now = UnixTime::now();
    for (cp, addr) in [
        ("cp-1", "10.0.0.11"),
        ("cp-2", "10.0.0.12"),
        ("cp-3", "10.0.0.13"),
    ] {
        for (crt, key) in [
            (DATASTORE_SERVER_CRT, DATASTORE_SERVER_KEY),
            (DATASTORE_PEER_CRT, DATASTORE_PEER_KEY),
        ] {
            let cert = der(&file(&pki, cp, crt).contents);
            for name in [addr, cp, "127.0.0.1", "localhost"] {
                let name = ServerName::try_from(name).unwrap();
                servers
                    .verify_server_cert(&cert, &[], &name, &[], now)
                    .unwrap_or_else(|e| panic!("{crt} of {cp} as {name:?}: {e}"));
            }
            let other = ServerName::try_from("10.0.0.99").unwrap();
            assert!(
                servers
                    .verify_server_cert(&cert, &[], &other, &[], now)
                    .is_err()
            );
            clients
                .verify_client_cert(&cert, &[], now)
                .unwrap_or_else(|e| panic!("{crt} of {cp} as a client: {e}"));
            // A member loads its certificate and key as the datastore does.
            let key = PrivateKeyDer::from_pem_slice(&file(&pki, cp, key).contents).unwrap();
            rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![cert], key)
                .unwrap();
        }
    }
    let client = der(&file(&pki, "cp-2", APISERVER_DATASTORE_CLIENT_CRT).contents);
    clients.verify_client_cert(&client, &[], now).unwrap();
    // A certificate of the Kubernetes CA is not a datastore client.
    let stranger = der(&file(&pki, "cp-2", APISERVER_KUBELET_CLIENT_CRT).contents);
    assert!(clients.verify_client_cert(&stranger, &[], now).is_err());
}

#[test]
fn rustls_accepts_the_apiserver_for_every_name_and_its_clients() {
    let pki = fresh(&spec());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(der(&file(&pki, "w-1", CA_CRT).contents)).unwrap();
    let roots = Arc::new(roots);
    let servers = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .unwrap();
    let clients = WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .unwrap();
    let now = UnixTime::now();
    let apiserver = der(&file(&pki, "cp-1", APISERVER_CRT).contents);
    for name in [
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "10.152.183.1",
        "127.0.0.1",
        "cp-3",
        "10.0.0.13",
        "api.example.com",
        "192.0.2.10",
    ] {
        let sn = ServerName::try_from(name).unwrap();
        servers
            .verify_server_cert(&apiserver, &[], &sn, &[], now)
            .unwrap_or_else(|e| panic!("apiserver as {name}: {e}"));
    }
    let kubelet = der(&file(&pki, "w-2", KUBELET_SERVING_CRT).contents);
    let sn = ServerName::try_from("10.0.0.22").unwrap();
    servers
        .verify_server_cert(&kubelet, &[], &sn, &[], now)
        .unwrap();
    let client = der(&file(&pki, "cp-1", APISERVER_KUBELET_CLIENT_CRT).contents);
    clients.verify_client_cert(&client, &[], now).unwrap();
}
