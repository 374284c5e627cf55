//! Choosing a lab's /24 and refusing one that the host already uses.
//!
//! A lab's subnet must not overlap any address or route on the host (the
//! uplink, a VPN, Docker, another lab): the host routes the lab subnet to the
//! lab bridge, so an overlap would hijack or lose traffic.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde_json::Value;

use crate::error::LabError;
use crate::exec;
use crate::layout::STATE_ROOT;
use crate::naming;
use crate::state::LabState;

/// Default subnets are /24s of this block: private, and clear of the pod
/// (10.244.0.0/16) and service (10.96.0.0/12) ranges of common Kubernetes
/// setups that may later run on the machines.
pub fn lab_block() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 213, 0, 0), 16).expect("valid prefix")
}

/// Something on the host that uses an address range.
#[derive(Debug, Clone)]
struct Claim {
    net: Ipv4Net,
    /// Interface it is on, when known (to ignore the lab's own bridge).
    dev: Option<String>,
    what: String,
}

/// Fails unless `subnet` is an IPv4 /24 network address.
pub fn validate(subnet: Ipv4Net) -> Result<(), LabError> {
    if subnet.prefix_len() == 24 && subnet.trunc() == subnet {
        Ok(())
    } else {
        Err(LabError::BadSubnet { subnet })
    }
}

/// Fails with [`LabError::SubnetTaken`] if `subnet` overlaps an address or
/// route of the host (other than on `own_bridge`) or another lab's subnet.
pub fn check_free(subnet: Ipv4Net, lab: &str, own_bridge: &str) -> Result<()> {
    let claims = claims(lab)?;
    if let Some(claim) = claims
        .iter()
        .find(|c| c.dev.as_deref() != Some(own_bridge) && overlaps(c.net, subnet))
    {
        let suggestion = choose(lab).ok();
        return Err(LabError::SubnetTaken {
            subnet,
            by: claim.what.clone(),
            suggestion,
        }
        .into());
    }
    Ok(())
}

/// Picks a free /24 in [`lab_block`] for a new lab, starting at a place
/// derived from its name.
pub fn choose(lab: &str) -> Result<Ipv4Net> {
    let claims = claims(lab)?;
    let block = lab_block();
    let base = u32::from(block.network());
    let seed = u32::from(naming::subnet_seed(lab));
    for step in 0..256u32 {
        let third = (seed + step) % 256;
        let net = Ipv4Net::new(Ipv4Addr::from(base + (third << 8)), 24).expect("valid prefix");
        if !claims.iter().any(|c| overlaps(c.net, net)) {
            return Ok(net);
        }
    }
    Err(LabError::NoFreeSubnet { block }.into())
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Every address range in use: host addresses, host routes, other labs.
fn claims(lab: &str) -> Result<Vec<Claim>> {
    let mut claims = Vec::new();
    let addrs: Value = serde_json::from_str(&exec::run("ip", &["-j", "-4", "addr", "show"])?)
        .context("parsing `ip -j -4 addr show`")?;
    for link in addrs.as_array().into_iter().flatten() {
        let dev = link["ifname"].as_str().unwrap_or_default().to_owned();
        for info in link["addr_info"].as_array().into_iter().flatten() {
            let (Some(local), Some(len)) = (info["local"].as_str(), info["prefixlen"].as_u64())
            else {
                continue;
            };
            let Ok(net) = format!("{local}/{len}").parse::<Ipv4Net>() else {
                continue;
            };
            if net.addr().is_loopback() {
                continue;
            }
            claims.push(Claim {
                net: net.trunc(),
                what: format!("{dev} has {net}"),
                dev: Some(dev.clone()),
            });
        }
    }
    let routes: Value = serde_json::from_str(&exec::run("ip", &["-j", "-4", "route", "show"])?)
        .context("parsing `ip -j -4 route show`")?;
    for route in routes.as_array().into_iter().flatten() {
        let Some(dst) = route["dst"].as_str() else {
            continue;
        };
        if dst == "default" {
            continue;
        }
        let net = if dst.contains('/') {
            dst.parse::<Ipv4Net>()
        } else {
            format!("{dst}/32").parse()
        };
        let Ok(net) = net else { continue };
        let dev = route["dev"].as_str().map(str::to_owned);
        let what = format!("route {dst} via {}", dev.as_deref().unwrap_or("?"));
        claims.push(Claim { net, dev, what });
    }
    claims.extend(other_labs(lab));
    Ok(claims)
}

/// Subnets recorded by the other labs on this host, running or not.
fn other_labs(lab: &str) -> Vec<Claim> {
    let Ok(entries) = fs::read_dir(Path::new(STATE_ROOT)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str() != Some(lab))
        .filter_map(|e| LabState::load(&e.path().join("lab.json")).ok().flatten())
        .map(|other| Claim {
            net: other.subnet,
            dev: None,
            what: format!("lab {:?} uses it", other.name),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_slash_24_is_valid() {
        assert!(validate("10.1.2.0/24".parse().unwrap()).is_ok());
        assert!(validate("10.1.2.5/24".parse().unwrap()).is_err());
        assert!(validate("10.1.0.0/16".parse().unwrap()).is_err());
    }

    #[test]
    fn overlap_either_way() {
        let a: Ipv4Net = "10.213.0.0/16".parse().unwrap();
        let b: Ipv4Net = "10.213.7.0/24".parse().unwrap();
        assert!(overlaps(a, b) && overlaps(b, a));
        assert!(!overlaps(b, "10.213.8.0/24".parse().unwrap()));
    }
}
