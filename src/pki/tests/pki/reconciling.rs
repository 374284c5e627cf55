//! Generated once, never regenerated: what a re-apply issues, and why.

use k8sup_pki::layout::*;
use k8sup_pki::{
    Ca, Existing, Kubeconfig, LeafSpec, Member, PkiError, Policy, Reason, reconcile, to_read,
};

use crate::openssl::{cert_pubkey, verify};
use crate::{changes, days, file, fresh, ip, now, spec, text};

#[test]
fn a_first_apply_issues_everything_because_it_is_missing() {
    let pki = fresh(&spec());
    assert!(pki.items.iter().all(|i| i.change == Some(Reason::Missing)));
    // 3 CAs, 4 shared leaves, sa, 2 per control plane, 4 kubeconfigs, 2 per node.
    assert_eq!(pki.items.len(), 3 + 4 + 1 + 2 * 3 + 4 + 2 * 5);
}

#[test]
fn re_applying_with_every_file_present_issues_nothing_and_keeps_the_bytes() {
    let s = spec();
    let first = fresh(&s);
    let again = reconcile(
        &s,
        &Existing::from_pki(&first),
        now() + days(100),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(changes(&again), Vec::<String>::new());
    for (a, b) in first.items.iter().zip(&again.items) {
        assert_eq!(a.files, b.files, "{}", a.label());
        assert_eq!(a.not_after, b.not_after);
    }
}

#[test]
fn to_read_lists_every_file_of_every_host_and_marks_the_ca_keys() {
    let s = spec();
    let pki = fresh(&s);
    let mut listed: Vec<(String, &str)> = to_read(&s)
        .unwrap()
        .into_iter()
        .map(|r| (r.host, r.path))
        .collect();
    let mut written: Vec<(String, &str)> = pki
        .items
        .iter()
        .flat_map(|i| &i.files)
        .flat_map(|f| f.hosts.iter().map(|h| (h.clone(), f.path)))
        .collect();
    listed.sort();
    written.sort();
    assert_eq!(listed, written);
    let ca_keys: Vec<&str> = to_read(&s)
        .unwrap()
        .into_iter()
        .filter(|r| r.ca_key && r.host == "cp-1")
        .map(|r| r.path)
        .collect();
    assert_eq!(ca_keys, [CA_KEY, FRONT_PROXY_CA_KEY, DATASTORE_CA_KEY]);
}

#[test]
fn adding_a_node_signs_only_its_own_certificates() {
    let s = spec();
    let first = fresh(&s);
    let mut grown = s.clone();
    grown.nodes.push(Member::new("w-3", &[ip("10.0.0.23")]));
    let pki = reconcile(
        &grown,
        &Existing::from_pki(&first),
        now(),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(
        changes(&pki),
        ["kubelet-serving (w-3)", "kubelet.conf (w-3)"]
    );
    // It receives the CA certificate and kube-proxy's kubeconfig as they are.
    assert_eq!(
        file(&pki, "w-3", CA_CRT).contents,
        file(&first, "w-1", CA_CRT).contents
    );
    assert_eq!(
        file(&pki, "w-3", KUBE_PROXY_CONF).contents,
        file(&first, "w-1", KUBE_PROXY_CONF).contents
    );
    let kc = Kubeconfig::parse("kubelet.conf", &file(&pki, "w-3", KUBELET_CONF).contents).unwrap();
    verify(
        text(&first, "cp-1", CA_CRT).as_bytes(),
        kc.cert_pem.as_bytes(),
        Some("sslclient"),
    )
    .unwrap();
}

#[test]
fn adding_a_control_plane_reissues_the_apiserver_certificate_and_signs_its_member_but_keeps_the_cas()
 {
    let s = spec();
    let first = fresh(&s);
    let mut grown = s.clone();
    grown
        .control_planes
        .push(Member::new("cp-4", &[ip("10.0.0.14")]));
    let pki = reconcile(
        &grown,
        &Existing::from_pki(&first),
        now(),
        &Policy::default(),
    )
    .unwrap();
    assert_eq!(
        changes(&pki),
        [
            "apiserver",
            "datastore-peer (cp-4)",
            "datastore-server (cp-4)"
        ]
    );
    assert_eq!(
        pki.item("apiserver", None).unwrap().change,
        Some(Reason::SansChanged {
            added: vec!["DNS:cp-4".into(), "IP:10.0.0.14".into()],
            removed: vec![],
        })
    );
    assert_eq!(
        pki.item("apiserver", None)
            .unwrap()
            .change
            .as_ref()
            .unwrap()
            .to_string(),
        "names changed: +DNS:cp-4 +IP:10.0.0.14"
    );
    // The new control plane gets the same CAs and service-account key as the others.
    for path in [CA_CRT, CA_KEY, FRONT_PROXY_CA_KEY, DATASTORE_CA_KEY, SA_KEY] {
        assert_eq!(
            file(&pki, "cp-4", path).contents,
            file(&first, "cp-1", path).contents,
            "{path}"
        );
    }
    // Every control plane gets the new apiserver certificate.
    assert_eq!(
        file(&pki, "cp-1", APISERVER_CRT),
        file(&pki, "cp-4", APISERVER_CRT)
    );
    assert_ne!(
        file(&pki, "cp-1", APISERVER_CRT).contents,
        file(&first, "cp-1", APISERVER_CRT).contents
    );
    // Removing it again re-issues the apiserver certificate without its names.
    let back = reconcile(&s, &Existing::from_pki(&pki), now(), &Policy::default()).unwrap();
    assert_eq!(changes(&back), ["apiserver"]);
}

#[test]
fn an_existing_ca_is_never_regenerated_and_signs_whatever_is_missing() {
    let s = spec();
    let first = fresh(&s);
    // Only the CAs survive (e.g. restored from a backup onto one control plane).
    let mut existing = Existing::new();
    for path in [
        CA_CRT,
        CA_KEY,
        FRONT_PROXY_CA_CRT,
        FRONT_PROXY_CA_KEY,
        DATASTORE_CA_CRT,
        DATASTORE_CA_KEY,
    ] {
        existing.insert("cp-2", path, file(&first, "cp-2", path).contents.clone());
    }
    let pki = reconcile(&s, &existing, now(), &Policy::default()).unwrap();
    for name in ["ca", "front-proxy-ca", "datastore-ca"] {
        assert_eq!(pki.item(name, None).unwrap().change, None, "{name}");
    }
    assert_eq!(file(&pki, "cp-1", CA_KEY), file(&first, "cp-1", CA_KEY));
    assert_eq!(pki.changes().count(), pki.items.len() - 3);
    let ca = text(&first, "cp-1", CA_CRT).as_bytes();
    verify(
        ca,
        &file(&pki, "cp-3", APISERVER_CRT).contents,
        Some("sslserver"),
    )
    .unwrap();
}

#[test]
fn signing_without_the_ca_key_asks_for_it_and_a_run_that_signs_nothing_does_not() {
    let s = spec();
    let first = fresh(&s);
    let mut existing = Existing::from_pki(&first);
    for cp in ["cp-1", "cp-2", "cp-3"] {
        existing.remove(cp, CA_KEY);
    }
    // Nothing to sign: fine, and the hosts keep their key (it is not in the result).
    let pki = reconcile(&s, &existing, now(), &Policy::default()).unwrap();
    assert_eq!(pki.changes().count(), 0);
    assert!(pki.files_for("cp-1").all(|f| f.path != CA_KEY));
    // A new node needs the key.
    let mut grown = s.clone();
    grown.nodes.push(Member::new("w-3", &[ip("10.0.0.23")]));
    let err = reconcile(&grown, &existing, now(), &Policy::default()).unwrap_err();
    match &err {
        PkiError::CaKeyNeeded { ca, leaf, path } => {
            assert_eq!(
                (ca.as_str(), leaf.as_str(), path.as_str()),
                ("ca", "kubelet.conf (w-3)", CA_KEY)
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("never replaces a CA"), "{err}");
}

#[test]
fn control_planes_holding_different_cas_is_an_error_not_a_choice() {
    let s = spec();
    let first = fresh(&s);
    let mut existing = Existing::from_pki(&first);
    let other = Ca::generate("demo-ca", now()).unwrap();
    existing.insert("cp-3", CA_CRT, other.cert_pem());
    existing.insert("cp-3", CA_KEY, other.key_pem());
    let err = reconcile(&s, &existing, now(), &Policy::default()).unwrap_err();
    assert!(
        matches!(&err, PkiError::CaDiverged { first, other, .. } if first == "cp-1" && other == "cp-3"),
        "{err}"
    );
    // A worker's stale copy of ca.crt is not authoritative: it is overwritten.
    let mut existing = Existing::from_pki(&first);
    existing.insert("w-1", CA_CRT, other.cert_pem());
    let pki = reconcile(&s, &existing, now(), &Policy::default()).unwrap();
    assert_eq!(pki.changes().count(), 0);
    assert_eq!(
        file(&pki, "w-1", CA_CRT).contents,
        file(&first, "cp-1", CA_CRT).contents
    );
}

#[test]
fn a_leaf_expiring_within_the_window_is_reissued_and_the_plan_says_when() {
    let s = spec();
    let first = fresh(&s);
    let existing = Existing::from_pki(&first);
    // 340 days on: 25 days left, inside the 30-day window.
    let later = now() + days(340);
    let pki = reconcile(&s, &existing, later, &Policy::default()).unwrap();
    let leaves = pki
        .items
        .iter()
        .filter(|i| !matches!(i.kind, k8sup_pki::Kind::Ca | k8sup_pki::Kind::KeyPair));
    for item in leaves {
        match &item.change {
            Some(Reason::ExpiresSoon { days_left: 25, .. }) => {}
            other => panic!("{}: {other:?}", item.label()),
        }
        assert_eq!(item.not_after, Some(later + days(365)), "{}", item.label());
    }
    let reason = pki.item("apiserver", None).unwrap().change.clone().unwrap();
    assert!(
        reason.to_string().starts_with("expires 20") && reason.to_string().ends_with("(25 days)"),
        "{reason}"
    );
    for name in ["ca", "front-proxy-ca", "datastore-ca", "sa"] {
        assert_eq!(pki.item(name, None).unwrap().change, None, "{name}");
    }
    // 330 days on, nothing is due.
    let pki = reconcile(&s, &existing, now() + days(330), &Policy::default()).unwrap();
    assert_eq!(pki.changes().count(), 0);
    // Expired ones are renewed too.
    let pki = reconcile(&s, &existing, now() + days(400), &Policy::default()).unwrap();
    let reason = pki
        .item("front-proxy-client", None)
        .unwrap()
        .change
        .clone()
        .unwrap();
    assert!(reason.to_string().starts_with("expired "), "{reason}");
}

#[test]
fn certs_renew_reissues_every_leaf_with_new_keys_and_keeps_the_cas_and_sa_key() {
    let s = spec();
    let first = fresh(&s);
    let pki = reconcile(&s, &Existing::from_pki(&first), now(), &Policy::renew_all()).unwrap();
    for item in &pki.items {
        let renewed = !matches!(item.kind, k8sup_pki::Kind::Ca | k8sup_pki::Kind::KeyPair);
        let want = renewed.then_some(Reason::RenewRequested);
        assert_eq!(item.change, want, "{}", item.label());
    }
    let (old, new) = (
        text(&first, "cp-1", APISERVER_CRT),
        text(&pki, "cp-1", APISERVER_CRT),
    );
    assert_ne!(cert_pubkey(old.as_bytes()), cert_pubkey(new.as_bytes()));
    let info = |pem: &str| k8sup_pki::inspect_pem("apiserver.crt", pem.as_bytes()).unwrap();
    assert_eq!(info(old).dns_names, info(new).dns_names);
    assert_eq!(info(old).ip_addresses, info(new).ip_addresses);
}

#[test]
fn a_changed_server_url_rewrites_kubeconfigs_around_the_same_certificate() {
    let s = spec();
    let first = fresh(&s);
    let mut moved = s.clone();
    moved.api_server_url = "https://127.0.0.1:16443".into();
    let pki = reconcile(
        &moved,
        &Existing::from_pki(&first),
        now(),
        &Policy::default(),
    )
    .unwrap();
    let mut want: Vec<String> = [
        "admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
        "kube-proxy.conf",
    ]
    .map(String::from)
    .into();
    want.extend((1..=3).map(|i| format!("kubelet.conf (cp-{i})")));
    want.extend((1..=2).map(|i| format!("kubelet.conf (w-{i})")));
    want.sort();
    assert_eq!(changes(&pki), want);
    assert!(pki.changes().all(|i| i.change == Some(Reason::Rewritten)));
    let parse = |p: &k8sup_pki::Pki| {
        Kubeconfig::parse("admin.conf", &file(p, "cp-1", ADMIN_CONF).contents).unwrap()
    };
    let (a, b) = (parse(&first), parse(&pki));
    assert_eq!((a.cert_pem, a.key_pem), (b.cert_pem, b.key_pem));
    assert_eq!(b.server, "https://127.0.0.1:16443");
}

#[test]
fn a_broken_or_foreign_leaf_is_reissued_and_says_why() {
    let s = spec();
    let first = fresh(&s);
    let reissue = |path: &str, host: &str, bytes: &[u8]| {
        let mut e = Existing::from_pki(&first);
        e.insert(host, path, bytes.to_vec());
        reconcile(&s, &e, now(), &Policy::default()).unwrap()
    };
    let pki = reissue(APISERVER_CRT, "cp-1", b"garbage");
    assert!(matches!(
        pki.item("apiserver", None).unwrap().change,
        Some(Reason::Unreadable(_))
    ));

    let other = Ca::generate("intruder", now()).unwrap();
    let foreign = other.sign(&s.apiserver_cert().unwrap(), now()).unwrap();
    let pki = reissue(APISERVER_CRT, "cp-1", foreign.cert_pem.as_bytes());
    assert_eq!(
        pki.item("apiserver", None).unwrap().change,
        Some(Reason::NotSignedByCa)
    );

    let pki = reissue(APISERVER_KEY, "cp-1", foreign.key_pem.as_bytes());
    assert_eq!(
        pki.item("apiserver", None).unwrap().change,
        Some(Reason::KeyMismatch)
    );

    // A kubelet client certificate for the wrong node.
    let ca = Ca::from_pem(text(&first, "cp-1", CA_CRT), text(&first, "cp-1", CA_KEY)).unwrap();
    let wrong = ca
        .sign(
            &LeafSpec::client("system:node:w-2", Some("system:nodes")),
            now(),
        )
        .unwrap();
    let mut kc =
        Kubeconfig::parse("kubelet.conf", &file(&first, "w-1", KUBELET_CONF).contents).unwrap();
    (kc.cert_pem, kc.key_pem) = (wrong.cert_pem, wrong.key_pem);
    let pki = reissue(KUBELET_CONF, "w-1", kc.render().unwrap().as_bytes());
    assert_eq!(
        pki.item("kubelet.conf", Some("w-1"))
            .unwrap()
            .change
            .as_ref()
            .unwrap()
            .to_string(),
        "subject CN=system:node:w-2, O=system:nodes must be CN=system:node:w-1, O=system:nodes"
    );
    assert_eq!(changes(&pki), ["kubelet.conf (w-1)"]);

    // A service-account key pair is kept; only a wrong sa.pub is rewritten.
    let pki = reissue(SA_PUB, "cp-1", foreign.cert_pem.as_bytes());
    assert_eq!(
        pki.item("sa", None).unwrap().change,
        Some(Reason::KeyMismatch)
    );
    assert_eq!(file(&pki, "cp-1", SA_KEY), file(&first, "cp-1", SA_KEY));
}

#[test]
fn status_reads_every_expiry_from_the_files_alone() {
    let pki = fresh(&spec());
    let mut dated = 0;
    for item in &pki.items {
        for f in &item.files {
            match k8sup_pki::inspect_file(f.path, &f.contents).unwrap() {
                Some(info) => {
                    assert_eq!(Some(info.not_after), item.not_after, "{}", f.path);
                    dated += 1;
                }
                None => assert!(
                    f.path.ends_with(".key") || f.path.ends_with(".pub"),
                    "{}",
                    f.path
                ),
            }
        }
    }
    // 3 CAs, 4 shared leaves, 2 per control plane, 4 kubeconfigs, 2 per node.
    assert_eq!(dated, 3 + 4 + 2 * 3 + 4 + 2 * 5);
}
