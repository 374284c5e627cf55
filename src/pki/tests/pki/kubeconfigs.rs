//! Kubeconfigs, read the way kubectl and the components read them: as YAML
//! with base64-embedded PEM.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use k8sup_pki::layout::*;
use serde::Deserialize;

use crate::openssl::{cert_pubkey, key_pubkey, subject, verify};
use crate::{file, fresh, spec, text};

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Config {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    current_context: String,
    clusters: Vec<Cluster>,
    users: Vec<User>,
    contexts: Vec<Context>,
}

#[derive(Deserialize)]
struct Cluster {
    name: String,
    cluster: ClusterData,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterData {
    server: String,
    certificate_authority_data: String,
}

#[derive(Deserialize)]
struct User {
    name: String,
    user: UserData,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct UserData {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Deserialize)]
struct Context {
    name: String,
    context: ContextData,
}

#[derive(Deserialize)]
struct ContextData {
    cluster: String,
    user: String,
}

fn decode(b64: &str) -> Vec<u8> {
    STANDARD.decode(b64).unwrap()
}

#[test]
fn every_kubeconfig_is_yaml_with_the_server_the_ca_and_its_users_certificate() {
    let pki = fresh(&spec());
    let ca = text(&pki, "cp-1", CA_CRT).as_bytes();
    for (host, path, want_subject) in [
        ("cp-1", ADMIN_CONF, "CN = admin, O = system:masters"),
        (
            "cp-2",
            CONTROLLER_MANAGER_CONF,
            "CN = system:kube-controller-manager",
        ),
        ("cp-3", SCHEDULER_CONF, "CN = system:kube-scheduler"),
        ("w-1", KUBE_PROXY_CONF, "CN = system:kube-proxy"),
        (
            "w-2",
            KUBELET_CONF,
            "CN = system:node:w-2, O = system:nodes",
        ),
        (
            "cp-1",
            KUBELET_CONF,
            "CN = system:node:cp-1, O = system:nodes",
        ),
    ] {
        let yaml = text(&pki, host, path);
        let c: Config =
            serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{path}: {e}\n{yaml}"));
        assert_eq!((c.api_version.as_str(), c.kind.as_str()), ("v1", "Config"));
        let user = want_subject
            .split(',')
            .next()
            .unwrap()
            .trim_start_matches("CN = ");
        assert_eq!(c.current_context, format!("{user}@demo"));
        assert_eq!(c.contexts.len(), 1);
        assert_eq!(c.contexts[0].name, c.current_context);
        assert_eq!(
            (
                c.contexts[0].context.cluster.as_str(),
                c.contexts[0].context.user.as_str()
            ),
            ("demo", user)
        );
        assert_eq!(c.clusters[0].name, "demo");
        assert_eq!(c.clusters[0].cluster.server, "https://127.0.0.1:6443");
        assert_eq!(
            decode(&c.clusters[0].cluster.certificate_authority_data),
            ca
        );
        assert_eq!(c.users[0].name, user);
        let cert = decode(&c.users[0].user.client_certificate_data);
        let key = decode(&c.users[0].user.client_key_data);
        assert_eq!(
            subject(&cert),
            format!("subject={want_subject}"),
            "{path} on {host}"
        );
        verify(ca, &cert, Some("sslclient")).unwrap();
        assert_eq!(cert_pubkey(&cert), key_pubkey(&key));
        assert_eq!(file(&pki, host, path).mode, 0o600);
    }
}

#[test]
fn the_server_is_a_parameter_of_each_kubeconfig() {
    let mut s = spec();
    s.api_server_url = "https://10.0.0.11:7443".into();
    let pki = fresh(&s);
    let c: Config = serde_saphyr::from_str(text(&pki, "w-1", KUBELET_CONF)).unwrap();
    assert_eq!(c.clusters[0].cluster.server, "https://10.0.0.11:7443");
    // The same kubeconfig, rendered for the workstation with another URL.
    let mut kc =
        k8sup_pki::Kubeconfig::parse("admin.conf", &file(&pki, "cp-1", ADMIN_CONF).contents)
            .unwrap();
    kc.server = "https://api.example.com:6443".into();
    let c: Config = serde_saphyr::from_str(&kc.render().unwrap()).unwrap();
    assert_eq!(c.clusters[0].cluster.server, "https://api.example.com:6443");
}
