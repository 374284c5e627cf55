//! The lab's network: one Linux bridge per lab holding the `.1` gateway
//! address, and per machine a network namespace joined to the bridge by a
//! veth pair (host end on the bridge, `eth0` inside the namespace).
//!
//! Everything is configured from the host with `ip` before the machine boots:
//! the minbase root has no network manager, so nothing inside undoes it.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::exec;

/// Where `ip netns add` bind-mounts namespaces.
pub fn netns_path(netns: &str) -> PathBuf {
    Path::new("/run/netns").join(netns)
}

pub fn link_exists(name: &str) -> Result<bool> {
    exec::succeeds("ip", &["link", "show", "dev", name])
}

/// Creates the bridge if needed, gives it `gateway/24` and brings it up.
/// Its MAC is fixed at creation: a bridge given an address keeps it, instead
/// of taking the lowest of its ports' MACs as they come and go.
pub fn ensure_bridge(bridge: &str, mac: &str, gateway: Ipv4Addr) -> Result<()> {
    if !link_exists(bridge)? {
        exec::run(
            "ip",
            &["link", "add", bridge, "address", mac, "type", "bridge"],
        )?;
    }
    let wanted = format!("{gateway}/24");
    // Leave a correct address alone: flushing it would drop the route to
    // running machines for a moment. A stale bridge may carry another one.
    if bridge_addresses(bridge)? != [wanted.clone()] {
        exec::run("ip", &["-4", "addr", "flush", "dev", bridge])?;
        exec::run("ip", &["addr", "add", &wanted, "dev", bridge])?;
    }
    exec::run("ip", &["link", "set", bridge, "up"])?;
    Ok(())
}

/// IPv4 addresses of `dev` as `ADDR/LEN`.
fn bridge_addresses(dev: &str) -> Result<Vec<String>> {
    let out = exec::run("ip", &["-j", "-4", "addr", "show", "dev", dev])?;
    let links: Value = serde_json::from_str(&out).context("parsing `ip -j -4 addr show`")?;
    Ok(links[0]["addr_info"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            Some(format!(
                "{}/{}",
                a["local"].as_str()?,
                a["prefixlen"].as_u64()?
            ))
        })
        .collect())
}

/// Deletes a link (bridge or veth; deleting one end of a veth deletes both).
/// Missing links are fine: cleanup must work on partial leftovers.
pub fn delete_link(name: &str) -> Result<()> {
    if link_exists(name)? {
        exec::run("ip", &["link", "delete", name])?;
    }
    Ok(())
}

pub fn netns_exists(netns: &str) -> bool {
    netns_path(netns).exists()
}

pub fn delete_netns(netns: &str) -> Result<()> {
    if netns_exists(netns) {
        exec::run("ip", &["netns", "delete", netns])?;
    }
    Ok(())
}

/// What a machine needs on the network.
#[derive(Debug, Clone)]
pub struct Plug<'a> {
    pub netns: &'a str,
    pub veth: &'a str,
    pub bridge: &'a str,
    pub address: Ipv4Addr,
    pub gateway: Ipv4Addr,
    /// Fixed MACs of the host end and of `eth0` (see `naming::mac_address`).
    pub host_mac: &'a str,
    pub machine_mac: &'a str,
}

/// Creates the machine's namespace and veth pair, puts the host end on the
/// bridge, and gives `eth0` its address and a default route via the bridge.
pub fn plug(p: &Plug<'_>) -> Result<()> {
    let ns = p.netns;
    exec::run("ip", &["netns", "add", ns])?;
    exec::run(
        "ip",
        &[
            "link",
            "add",
            p.veth,
            "address",
            p.host_mac,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            p.machine_mac,
            "netns",
            ns,
        ],
    )?;
    exec::run("ip", &["link", "set", p.veth, "master", p.bridge, "up"])?;
    exec::run(
        "ip",
        &[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{}/24", p.address),
            "dev",
            "eth0",
        ],
    )?;
    exec::run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
    exec::run("ip", &["-n", ns, "link", "set", "eth0", "up"])?;
    exec::run(
        "ip",
        &[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &p.gateway.to_string(),
        ],
    )?;
    Ok(())
}

/// Whether the host end `veth` is on `bridge` and up, i.e. not partitioned.
pub fn is_attached(veth: &str, bridge: &str) -> Result<bool> {
    let out = match exec::run("ip", &["-j", "link", "show", "dev", veth]) {
        Ok(out) => out,
        Err(_) => return Ok(false),
    };
    let links: Value = serde_json::from_str(&out).context("parsing `ip -j link show`")?;
    let link = &links[0];
    let on_bridge = link["master"].as_str() == Some(bridge);
    let up = link["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|f| f.as_str() == Some("UP"));
    Ok(on_bridge && up)
}

/// Takes the machine off the bridge: its link goes down and nothing reaches
/// it, while its processes keep running.
pub fn detach(veth: &str) -> Result<()> {
    exec::run("ip", &["link", "set", veth, "nomaster"])?;
    exec::run("ip", &["link", "set", veth, "down"])?;
    Ok(())
}

/// Puts a detached machine back on the bridge.
pub fn attach(veth: &str, bridge: &str) -> Result<()> {
    exec::run("ip", &["link", "set", veth, "master", bridge, "up"])?;
    Ok(())
}

/// Names of all links starting with `prefix` (finds a crashed lab's veths).
pub fn links_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let out = exec::run("ip", &["-j", "link", "show"])?;
    let links: Value = serde_json::from_str(&out).context("parsing `ip -j link show`")?;
    Ok(links
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect())
}

/// Names of all network namespaces under /run/netns.
pub fn netns_names() -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
