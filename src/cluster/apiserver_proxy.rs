//! The API-server proxy's files on a node that runs no kube-apiserver: its
//! config (which control planes to forward to) and its systemd unit, both
//! rendered from `templates/`.
//!
//! Why the upstream list is rotated per node: the proxy sends every new
//! connection to the *first* healthy upstream in its list, so that a node's
//! kubelet and kube-proxy stay on one kube-apiserver (one watch cache, one
//! log to read) and return to it after it recovers. Were every worker given
//! the same order, every worker would load the same control plane. Rotating
//! by the node's position spreads them evenly and keeps each one stable
//! across applies (the same inventory gives the same files, so a re-apply
//! changes nothing).

use anyhow::{Context, Result, bail};
use k8sup_engine::Resource;

use crate::render;
use serde::Serialize;

/// Where the proxy reads its config (the proxy's own default).
pub const CONFIG_PATH: &str = "/etc/k8sup/apiserver-proxy.json";
/// The proxy's unit.
pub const UNIT_NAME: &str = "k8sup-apiserver-proxy.service";
/// The proxy's binary on a node.
pub const BIN_PATH: &str = "/usr/local/bin/k8sup-apiserver-proxy";
/// The local API endpoint the kubelet and kube-proxy of a worker talk to.
pub const LISTEN: &str = "127.0.0.1:6443";

/// The rendered files of one node's proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyFiles {
    /// `CONFIG_PATH`'s content (0644: the service runs as a dynamic user).
    pub config: String,
    /// `UNIT_NAME`'s content.
    pub unit: String,
}

#[derive(Serialize)]
struct ConfigContext<'a> {
    node: &'a str,
    listen: &'a str,
    upstreams: Vec<&'a str>,
    ca_file: Option<&'a str>,
}

#[derive(Serialize)]
struct UnitContext<'a> {
    bin: &'a str,
    config: &'a str,
}

/// What the templates are rendered with, for `node`, the `position`-th node
/// that needs a proxy (0-based, in inventory order), forwarding to
/// `control_planes` (`host:port`, in inventory order). `ca_file` is the
/// cluster CA on the node, against which the proxy verifies each upstream's
/// `/readyz`.
fn contexts<'a>(
    node: &'a str,
    position: usize,
    control_planes: &'a [String],
    ca_file: Option<&'a str>,
) -> Result<(ConfigContext<'a>, UnitContext<'static>)> {
    if control_planes.is_empty() {
        bail!("{node}: the API-server proxy needs at least one control plane to forward to");
    }
    let shift = position % control_planes.len();
    let upstreams = control_planes[shift..]
        .iter()
        .chain(&control_planes[..shift])
        .map(String::as_str)
        .collect();
    Ok((
        ConfigContext {
            node,
            listen: LISTEN,
            upstreams,
            ca_file,
        },
        UnitContext {
            bin: BIN_PATH,
            config: CONFIG_PATH,
        },
    ))
}

/// The proxy's files for `node` (see [`contexts`] for the arguments).
pub fn proxy_files(
    node: &str,
    position: usize,
    control_planes: &[String],
    ca_file: Option<&str>,
) -> Result<ProxyFiles> {
    let (config, unit) = contexts(node, position, control_planes, ca_file)?;
    let config = k8sup_templates::render("apiserver-proxy.json", config)
        .with_context(|| format!("{node}: rendering the API-server proxy's config"))?;
    let unit = k8sup_templates::render("k8sup-apiserver-proxy.service", unit)
        .with_context(|| format!("{node}: rendering the API-server proxy's unit"))?;
    Ok(ProxyFiles { config, unit })
}

/// The proxy as engine resources for `node`: its config, its unit, and the
/// service enabled and running (see [`contexts`] for the arguments).
pub fn resources(
    node: &str,
    position: usize,
    control_planes: &[String],
    ca_file: Option<&str>,
) -> Result<Vec<Resource>> {
    let (config, unit) = contexts(node, position, control_planes, ca_file)?;
    Ok(vec![
        Resource::file(
            CONFIG_PATH,
            render::template(node, "apiserver-proxy.json", config)?,
        )
        .mode(0o644),
        Resource::unit(
            UNIT_NAME,
            render::template(node, "k8sup-apiserver-proxy.service", unit)?,
        ),
        Resource::service(UNIT_NAME).enabled(true).running(true),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cps() -> Vec<String> {
        ["10.0.0.11:6443", "10.0.0.12:6443", "10.0.0.13:6443"]
            .map(String::from)
            .to_vec()
    }

    fn upstreams(files: &ProxyFiles) -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&files.config).expect("the config is JSON");
        v["upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn workers_prefer_different_control_planes_and_keep_every_one_as_fallback() {
        let first: Vec<String> = (0..6)
            .map(|i| upstreams(&proxy_files("w", i, &cps(), None).unwrap())[0].clone())
            .collect();
        assert_eq!(
            first,
            [
                "10.0.0.11:6443",
                "10.0.0.12:6443",
                "10.0.0.13:6443",
                "10.0.0.11:6443",
                "10.0.0.12:6443",
                "10.0.0.13:6443"
            ]
        );
        let mut all = upstreams(&proxy_files("w", 4, &cps(), None).unwrap());
        assert_eq!(all, ["10.0.0.12:6443", "10.0.0.13:6443", "10.0.0.11:6443"]);
        all.sort();
        assert_eq!(all, cps());
    }

    #[test]
    fn the_same_inputs_render_the_same_bytes() {
        let a = proxy_files("w-1", 1, &cps(), Some("/etc/kubernetes/pki/ca.crt")).unwrap();
        let b = proxy_files("w-1", 1, &cps(), Some("/etc/kubernetes/pki/ca.crt")).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn the_config_names_the_listen_address_and_ca_and_the_unit_runs_it() {
        let f = proxy_files("w-1", 0, &cps(), Some("/etc/kubernetes/pki/ca.crt")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&f.config).unwrap();
        assert_eq!(v["listen"], LISTEN);
        assert_eq!(v["caFile"], "/etc/kubernetes/pki/ca.crt");
        let no_ca = proxy_files("w-1", 0, &cps(), None).unwrap();
        let v: serde_json::Value = serde_json::from_str(&no_ca.config).unwrap();
        assert!(
            v.get("caFile").is_none(),
            "without a CA the proxy checks TCP only"
        );
        assert!(
            f.unit
                .contains(&format!("ExecStart={BIN_PATH} --config {CONFIG_PATH}")),
            "{}",
            f.unit
        );
    }

    #[test]
    fn no_control_plane_is_an_error_naming_the_node() {
        let e = proxy_files("w-9", 0, &[], None).unwrap_err();
        assert!(e.to_string().contains("w-9"), "{e}");
    }
}
