//! Names derived from a lab's name: machines, network namespaces, bridge and
//! veth interfaces.
//!
//! Linux limits interface names to 15 bytes (IFNAMSIZ - 1), far less than a
//! readable lab name, so interfaces carry a short hash of the lab name instead.
//! The hash keeps several labs apart on one host and lets `down` find every
//! interface of a lab, even one left behind by a crashed run, by exact name.

use sha2::{Digest, Sha256};

use crate::error::LabError;

/// Longest lab name accepted: machine names (`NAME-N`) must stay valid
/// hostname labels (63 bytes) with room for the node number.
pub const MAX_NAME_LEN: usize = 40;

/// Prefix of every interface k8sup's lab creates ("k8sup lab").
const IF_PREFIX: &str = "k8l";

/// Checks that `name` can name a lab: lowercase letters, digits and inner
/// dashes (it becomes part of hostnames and file names).
pub fn validate_lab_name(name: &str) -> Result<(), LabError> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && ok_chars
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidName {
            name: name.to_owned(),
            max: MAX_NAME_LEN,
        })
    }
}

/// Eight hex digits of SHA-256 of the lab name: short enough for interface
/// names, wide enough that two labs on one host do not collide in practice.
fn short_hash(lab: &str) -> String {
    let digest = Sha256::digest(lab.as_bytes());
    hex::encode(&digest[..4])
}

/// Hostname and machine name of node `index` (1-based): `NAME-1`, `NAME-2`, ...
pub fn machine_name(lab: &str, index: u32) -> String {
    format!("{lab}-{index}")
}

/// The lab's bridge, e.g. `k8l-1a2b3c4d` (12 bytes).
pub fn bridge_name(lab: &str) -> String {
    format!("{IF_PREFIX}-{}", short_hash(lab))
}

/// Host end of node `index`'s veth pair, e.g. `k8l1a2b3c4dv12` (at most 15
/// bytes for up to 999 nodes). The machine end is `eth0` in its namespace.
pub fn veth_name(lab: &str, index: u32) -> String {
    format!("{IF_PREFIX}{}v{index}", short_hash(lab))
}

/// Network namespace of a machine, as listed by `ip netns`: `k8sup-NAME-N`.
/// Namespace names are file names under /run/netns, so they have no 15-byte
/// limit and can stay readable.
pub fn netns_name(machine: &str) -> String {
    format!("k8sup-{machine}")
}

/// What a MAC address from [`mac_address`] belongs to.
#[derive(Debug, Clone, Copy)]
pub enum MacOf {
    Bridge = 0,
    /// `eth0` inside machine N.
    Machine = 1,
    /// The host end of machine N's veth.
    HostVeth = 2,
}

/// A fixed, locally administered MAC address per lab and interface.
///
/// Random MACs break a machine that boots again: the host and the other
/// machines still hold its old MAC in their ARP caches and send it frames
/// nobody takes, for up to a minute (seen here as connect timeouts after
/// `start`). Likewise a bridge takes the lowest MAC of its ports unless
/// given one, so it would change under the machines as ports come and go.
/// Fixed MACs, like a VM's, make restarts invisible to ARP.
pub fn mac_address(lab: &str, of: MacOf, index: u32) -> String {
    let h = Sha256::digest(lab.as_bytes());
    format!(
        "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        of as u8, h[5], h[6], h[7], index as u8
    )
}

/// A default /24 for a new lab is searched from this index (0..=255) within
/// the lab address block, so that different lab names usually start on
/// different subnets and do not race for the same one.
pub fn subnet_seed(lab: &str) -> u8 {
    Sha256::digest(lab.as_bytes())[4]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_ifnamsiz() {
        let lab = "a-very-long-lab-name-that-would-never-fit-in-15";
        assert!(bridge_name(lab).len() <= 15);
        assert!(veth_name(lab, 999).len() <= 15);
        assert_ne!(bridge_name("a"), bridge_name("b"));
        assert_ne!(veth_name("a", 1), veth_name("a", 11));
    }

    #[test]
    fn macs_are_unicast_local_and_distinct() {
        let m = mac_address("k8sup", MacOf::Machine, 3);
        assert!(m.starts_with("02:01:") && m.ends_with(":03"), "{m}");
        assert_ne!(m, mac_address("k8sup", MacOf::HostVeth, 3));
        assert_ne!(m, mac_address("other", MacOf::Machine, 3));
    }

    #[test]
    fn lab_names_are_hostname_safe() {
        assert!(validate_lab_name("k8sup").is_ok());
        assert!(validate_lab_name("t-facts-2").is_ok());
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            &"x".repeat(MAX_NAME_LEN + 1),
        ] {
            assert!(validate_lab_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
