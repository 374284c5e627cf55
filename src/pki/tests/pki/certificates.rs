//! The certificates themselves: who they are for, what they cover, who
//! signed them, and where their keys go.

use k8sup_pki::layout::*;
use k8sup_pki::{Ca, Kind, Kubeconfig, LeafSpec, PkiError, inspect_pem, renew_leaf};

use crate::openssl::{cert_pubkey, key_pubkey, subject, verify, verify_at, x509_text};
use crate::{days, file, fresh, now, spec, text};

#[test]
fn the_apiserver_certificate_verifies_and_carries_every_name_clients_dial() {
    let pki = fresh(&spec());
    let ca = &file(&pki, "cp-1", CA_CRT).contents;
    let cert = &file(&pki, "cp-2", APISERVER_CRT).contents;
    verify(ca, cert, Some("sslserver")).unwrap();
    let text = x509_text(cert);
    for san in [
        "DNS:kubernetes,",
        "DNS:kubernetes.default,",
        "DNS:kubernetes.default.svc,",
        "DNS:kubernetes.default.svc.cluster.local,",
        "IP Address:10.152.183.1,",
        "IP Address:127.0.0.1,",
        "DNS:cp-1,",
        "DNS:cp-2,",
        "DNS:cp-3,",
        "IP Address:10.0.0.11,",
        "IP Address:10.0.0.12,",
        "IP Address:10.0.0.13",
        "DNS:api.example.com,",
        "IP Address:192.0.2.10",
    ] {
        assert!(text.contains(san), "apiserver.crt lacks {san}:\n{text}");
    }
    assert!(subject(cert).contains("CN = kube-apiserver"));
    // The key beside it is its key, and every control plane has the same pair.
    let key = &file(&pki, "cp-2", APISERVER_KEY).contents;
    assert_eq!(cert_pubkey(cert), key_pubkey(key));
    assert_eq!(
        file(&pki, "cp-1", APISERVER_CRT),
        file(&pki, "cp-3", APISERVER_CRT)
    );
}

#[test]
fn the_cluster_domain_names_the_service_in_the_apiserver_certificate() {
    let mut s = spec();
    s.cluster_domain = "corp.internal".into();
    s.service_cidr = "10.96.0.0/12".parse().unwrap();
    let pki = fresh(&s);
    let text = x509_text(&file(&pki, "cp-1", APISERVER_CRT).contents);
    assert!(
        text.contains("DNS:kubernetes.default.svc.corp.internal"),
        "{text}"
    );
    assert!(text.contains("IP Address:10.96.0.1,"), "{text}");
    assert!(!text.contains("cluster.local"));
}

#[test]
fn a_kubelet_is_system_node_name_in_group_system_nodes() {
    let pki = fresh(&spec());
    let ca = &file(&pki, "w-1", CA_CRT).contents;
    let kc = Kubeconfig::parse("kubelet.conf", &file(&pki, "w-1", KUBELET_CONF).contents).unwrap();
    let cert = kc.cert_pem.as_bytes();
    assert_eq!(
        subject(cert),
        "subject=CN = system:node:w-1, O = system:nodes"
    );
    verify(ca, cert, Some("sslclient")).unwrap();
    verify(ca, cert, Some("sslserver")).expect_err("a client certificate must not serve");
    assert_eq!(cert_pubkey(cert), key_pubkey(kc.key_pem.as_bytes()));

    // Its serving certificate covers its name and address, and only serves.
    let serving = &file(&pki, "w-1", KUBELET_SERVING_CRT).contents;
    verify(ca, serving, Some("sslserver")).unwrap();
    verify(ca, serving, Some("sslclient")).expect_err("a serving certificate must not log in");
    let text = x509_text(serving);
    assert!(text.contains("DNS:w-1, IP Address:10.0.0.21"), "{text}");
    assert!(subject(serving).contains("CN = system:node:w-1"));
    // Each node has its own.
    assert_ne!(
        file(&pki, "w-2", KUBELET_SERVING_CRT),
        file(&pki, "w-1", KUBELET_SERVING_CRT)
    );
}

/// Which CA must have signed each leaf, and what it may be used for.
#[test]
fn every_leaf_verifies_against_its_own_ca_for_its_own_use_only() {
    let pki = fresh(&spec());
    let ca = |path| file(&pki, "cp-1", path).contents.clone();
    let (k8s, front, store) = (ca(CA_CRT), ca(FRONT_PROXY_CA_CRT), ca(DATASTORE_CA_CRT));
    let mut checked = 0;
    for item in &pki.items {
        let (cert, host) = match item.kind {
            Kind::Leaf => {
                let host = item.node.clone().unwrap_or("cp-1".into());
                let f = item
                    .files
                    .iter()
                    .find(|f| f.path.ends_with(".crt"))
                    .unwrap();
                (f.contents.clone(), host)
            }
            Kind::Kubeconfig => {
                let kc = Kubeconfig::parse(&item.name, &item.files[0].contents).unwrap();
                (kc.cert_pem.into_bytes(), String::new())
            }
            Kind::Ca | Kind::KeyPair => continue,
        };
        let signer = match item.name.as_str() {
            "front-proxy-client" => &front,
            "apiserver-datastore-client" | "datastore-server" | "datastore-peer" => &store,
            _ => &k8s,
        };
        let (server, client) = match item.name.as_str() {
            "apiserver" | "kubelet-serving" => (true, false),
            "datastore-server" | "datastore-peer" => (true, true),
            _ => (false, true),
        };
        let label = format!("{} {host}", item.label());
        assert_eq!(
            verify(signer, &cert, Some("sslserver")).is_ok(),
            server,
            "{label} serverAuth"
        );
        assert_eq!(
            verify(signer, &cert, Some("sslclient")).is_ok(),
            client,
            "{label} clientAuth"
        );
        for other in [&k8s, &front, &store].into_iter().filter(|c| *c != signer) {
            verify(other, &cert, None).expect_err(&format!("{label} verifies against another CA"));
        }
        checked += 1;
    }
    // 4 shared leaves, 2 per control plane, 4 kubeconfigs, kubelet.conf and serving per node.
    assert_eq!(checked, 4 + 2 * 3 + 4 + 2 * 5);
}

#[test]
fn each_datastore_member_has_its_own_server_and_peer_certificates() {
    let pki = fresh(&spec());
    let ca = &file(&pki, "cp-1", DATASTORE_CA_CRT).contents;
    for path in [DATASTORE_SERVER_CRT, DATASTORE_PEER_CRT] {
        let cert = &file(&pki, "cp-2", path).contents;
        verify(ca, cert, Some("sslserver")).unwrap();
        verify(ca, cert, Some("sslclient")).unwrap();
        let text = x509_text(cert);
        for san in [
            "DNS:cp-2",
            "DNS:localhost",
            "IP Address:10.0.0.12",
            "IP Address:127.0.0.1",
        ] {
            assert!(text.contains(san), "{path} lacks {san}:\n{text}");
        }
        assert!(!text.contains("cp-1") && !text.contains("10.0.0.11"));
        assert_ne!(file(&pki, "cp-1", path), file(&pki, "cp-2", path));
    }
    // The apiserver's client to the datastore is trusted by the datastore's CA.
    let client = &file(&pki, "cp-3", APISERVER_DATASTORE_CLIENT_CRT).contents;
    verify(ca, client, Some("sslclient")).unwrap();
    // Workers hold nothing of the datastore.
    assert!(pki.files_for("w-1").all(|f| !f.path.contains("datastore")));
}

#[test]
fn keys_and_kubeconfigs_are_root_only_and_workers_get_no_ca_key() {
    let pki = fresh(&spec());
    let mut files = 0;
    for f in pki.items.iter().flat_map(|i| &i.files) {
        files += 1;
        assert_eq!(f.owner, "root", "{}", f.path);
        let secret = f.path.ends_with(".key") || f.path.ends_with(".conf");
        let want = if secret { 0o600 } else { 0o644 };
        assert_eq!(f.mode, want, "{} has mode {:o}", f.path, f.mode);
        let text = String::from_utf8_lossy(&f.contents);
        assert_eq!(
            text.contains("PRIVATE KEY") || f.path.ends_with(".conf"),
            secret,
            "{}",
            f.path
        );
    }
    assert!(files > 30);
    // A worker holds the CA certificate, its own credentials and kube-proxy's.
    let paths: Vec<&str> = pki.files_for("w-2").map(|f| f.path).collect();
    assert_eq!(
        paths,
        [
            CA_CRT,
            KUBE_PROXY_CONF,
            KUBELET_CONF,
            KUBELET_SERVING_CRT,
            KUBELET_SERVING_KEY
        ]
    );
    // No Debug output shows a private key.
    let shown = format!("{pki:?}");
    assert!(!shown.contains("PRIVATE KEY") && !shown.contains("client-key-data"));
}

#[test]
fn the_service_account_public_key_is_the_signing_keys_public_half() {
    let pki = fresh(&spec());
    assert_eq!(
        key_pubkey(&file(&pki, "cp-3", SA_KEY).contents),
        text(&pki, "cp-3", SA_PUB)
    );
}

#[test]
fn the_cas_are_ten_year_cas_and_leaves_last_a_year() {
    let pki = fresh(&spec());
    for ca in [CA_CRT, FRONT_PROXY_CA_CRT, DATASTORE_CA_CRT] {
        let pem = &file(&pki, "cp-1", ca).contents;
        let text = x509_text(pem);
        assert!(text.contains("CA:TRUE"), "{text}");
        assert!(
            text.contains("Digital Signature, Certificate Sign, CRL Sign"),
            "{text}"
        );
        let info = inspect_pem(ca, pem).unwrap();
        assert_eq!((info.not_after - now()).whole_days(), 3650);
        assert!(
            info.common_name.starts_with("demo-"),
            "{}",
            info.common_name
        );
    }
    let info = inspect_pem("apiserver.crt", &file(&pki, "cp-1", APISERVER_CRT).contents).unwrap();
    assert_eq!(info.not_after - now(), days(365));
    assert!(
        info.not_before < now(),
        "backdated for hosts whose clock is behind"
    );
    assert!(!info.is_ca);
    assert_eq!(info.issuer, "demo-ca");
    let text = x509_text(&file(&pki, "cp-1", APISERVER_CRT).contents);
    assert!(
        text.contains("CA:FALSE") || !text.contains("CA:TRUE"),
        "{text}"
    );
}

#[test]
fn a_ca_read_back_from_pem_signs_leaves_the_original_certificate_verifies() {
    let original = Ca::generate("demo-ca", now()).unwrap();
    let (cert, key) = (
        original.cert_pem().to_string(),
        original.key_pem().to_string(),
    );
    let loaded = Ca::from_pem(&cert, &key).unwrap();
    let leaf = loaded
        .sign(&LeafSpec::client("alice", Some("devs")), now())
        .unwrap();
    verify(cert.as_bytes(), leaf.cert_pem.as_bytes(), Some("sslclient")).unwrap();
    assert!(original.signed(&leaf.cert_pem));
    assert_eq!(
        subject(leaf.cert_pem.as_bytes()),
        "subject=CN = alice, O = devs"
    );

    // A key that is not the certificate's, or a leaf posing as a CA, is refused.
    let other = Ca::generate("other", now()).unwrap();
    assert!(matches!(
        Ca::from_pem(&cert, other.key_pem()),
        Err(PkiError::KeyMismatch { .. })
    ));
    assert!(matches!(
        Ca::from_pem(&leaf.cert_pem, &leaf.key_pem),
        Err(PkiError::NotCa { .. })
    ));
    assert!(matches!(
        Ca::from_pem("junk", &key),
        Err(PkiError::BadCertificate { .. })
    ));
    // Debug never shows the key.
    assert!(!format!("{loaded:?} {leaf:?}").contains("PRIVATE KEY"));
}

#[test]
fn renewing_one_leaf_keeps_its_subject_and_names_with_a_new_key() {
    let pki = fresh(&spec());
    let ca = Ca::from_pem(text(&pki, "cp-1", CA_CRT), text(&pki, "cp-1", CA_KEY)).unwrap();
    let old = text(&pki, "cp-1", APISERVER_CRT);
    let later = now() + days(300);
    let new = renew_leaf(&ca, old, later).unwrap();
    let (a, b) = (
        inspect_pem("old", old.as_bytes()).unwrap(),
        inspect_pem("new", new.cert_pem.as_bytes()).unwrap(),
    );
    assert_eq!(
        (&a.common_name, &a.dns_names, &a.ip_addresses),
        (&b.common_name, &b.dns_names, &b.ip_addresses)
    );
    assert_eq!(
        (a.server_auth, a.client_auth),
        (b.server_auth, b.client_auth)
    );
    assert_eq!(b.not_after, later + days(365));
    assert_ne!(
        cert_pubkey(old.as_bytes()),
        cert_pubkey(new.cert_pem.as_bytes())
    );
    verify_at(ca.cert_pem().as_bytes(), new.cert_pem.as_bytes(), later).unwrap();
    // CAs are not renewed.
    assert!(renew_leaf(&ca, ca.cert_pem(), later).is_err());
}

#[test]
fn the_kubernetes_service_ip_is_the_first_address_of_the_service_cidr() {
    let mut s = spec();
    assert_eq!(s.service_ip().unwrap(), crate::ip("10.152.183.1"));
    s.service_cidr = "fd00:10:96::/108".parse().unwrap();
    assert_eq!(s.service_ip().unwrap(), crate::ip("fd00:10:96::1"));
    s.service_cidr = "10.0.0.7/32".parse().unwrap();
    assert!(matches!(s.service_ip(), Err(PkiError::NoServiceIp { .. })));
}

/// What a plan shows when a certificate changes: who it is for, its names,
/// its validity and serial, one per line (checked against openssl's own
/// reading of the same certificate); other text is shown as it is.
#[test]
fn a_certificate_is_described_for_the_plan_in_words() {
    let pki = fresh(&spec());
    let cert = &file(&pki, "cp-1", APISERVER_CRT).contents;
    let shown = k8sup_pki::describe_pem(cert);
    let lines: Vec<&str> = shown.lines().collect();
    assert_eq!(lines[0], "subject CN=kube-apiserver", "{shown}");
    assert!(lines.contains(&"issuer CN=demo-ca"), "{shown}");
    let names = lines.iter().find(|l| l.starts_with("names ")).unwrap();
    assert!(
        names.contains("kubernetes.default.svc.cluster.local"),
        "{names}"
    );
    assert!(
        names.contains("10.0.0.11") && names.contains("api.example.com"),
        "{names}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("valid from ") && l.contains(" until "))
    );
    // The same serial openssl reads.
    let serial = lines
        .iter()
        .find_map(|l| l.strip_prefix("serial "))
        .unwrap();
    let openssl = x509_text(cert);
    let plain: String = serial.chars().filter(|c| *c != ':').collect();
    assert!(
        openssl
            .to_lowercase()
            .replace(':', "")
            .contains(&plain.to_lowercase()),
        "serial {serial} is not openssl's:\n{openssl}"
    );
    assert!(!shown.contains("BEGIN CERTIFICATE"));
    // A client certificate names its groups (the Kubernetes user's).
    let client =
        k8sup_pki::describe_pem(&file(&pki, "cp-1", APISERVER_KUBELET_CLIENT_CRT).contents);
    let groups = subject(&file(&pki, "cp-1", APISERVER_KUBELET_CLIENT_CRT).contents);
    assert_eq!(
        client.contains("\ngroups "),
        groups.contains("O ="),
        "{client}\n{groups}"
    );
    assert_eq!(
        k8sup_pki::describe_pem(b"not a certificate\n"),
        "not a certificate\n"
    );
}
