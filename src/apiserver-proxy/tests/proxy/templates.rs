//! The templates k8sup renders for a node render into a config this proxy
//! accepts and a unit systemd accepts.

use std::path::Path;

use k8sup_apiserver_proxy::Config;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, context, syntax::SyntaxConfig};

const CONFIG: &str = include_str!("../../../../templates/apiserver-proxy.json");
const UNIT: &str = include_str!("../../../../templates/k8sup-apiserver-proxy.service");

/// The environment `k8sup-pki` renders `templates/kubeconfig.yaml` with.
fn render(name: &str, template: &str, ctx: minijinja::Value) -> String {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_syntax(
        SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .trim_blocks(true)
            .build()
            .unwrap(),
    );
    env.render_named_str(name, template, ctx).unwrap()
}

#[test]
fn the_config_template_renders_a_config_the_proxy_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    let (kca, _) = crate::common::ca_and_leaf("kubernetes-ca");
    std::fs::write(&ca, kca.cert_pem()).unwrap();
    let path = Path::new("/etc/k8sup/apiserver-proxy.json");

    let text = render(
        "apiserver-proxy.json",
        CONFIG,
        context! {
            node => "w-1",
            listen => "127.0.0.1:6443",
            upstreams => ["10.0.0.12:6443", "10.0.0.11:6443", "[fd00::13]:6443"],
            ca_file => ca.to_str().unwrap(),
        },
    );
    let c = Config::parse(path, text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        c.upstreams,
        ["10.0.0.12:6443", "10.0.0.11:6443", "[fd00::13]:6443"]
    );
    assert_eq!(c.health.tls.unwrap().ca_file, ca);
    assert_eq!(c.health.path, "/readyz");

    let text = render(
        "apiserver-proxy.json",
        CONFIG,
        context! {
            node => "w-1",
            listen => "127.0.0.1:6443",
            upstreams => ["cp-1.example:6443"],
            ca_file => (),
        },
    );
    let c = Config::parse(path, text.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(c.health.tls.is_none(), "no CA: the TCP check");
}

#[test]
fn the_unit_template_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let text = render(
        "k8sup-apiserver-proxy.service",
        UNIT,
        context! {
            bin => env!("CARGO_BIN_EXE_k8sup-apiserver-proxy"),
            config => "/etc/k8sup/apiserver-proxy.json",
        },
    );
    assert!(text.contains("Restart=always"));
    let unit = dir.path().join("k8sup-apiserver-proxy.service");
    std::fs::write(&unit, &text).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no", unit.to_str().unwrap()])
        .output()
        .expect("systemd-analyze (package systemd) runs");
    let err = String::from_utf8_lossy(&out.stderr);
    // Lines about other units on this machine are not this unit's problem.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("k8sup-apiserver-proxy.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{err}");
}
