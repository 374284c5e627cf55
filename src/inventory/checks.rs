//! Checks that need the whole inventory rather than one value: uniqueness of
//! host names and addresses, the control-plane count, `proxyJump` targets,
//! host addresses inside the cluster's own networks, ambiguous group names.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::decode::{Cx, suggest};
use crate::document::Draft;
use crate::host::Role;
use crate::values::JumpSpec;
use crate::yaml::Pos;

pub(crate) fn run(cx: &mut Cx<'_>, d: &Draft) {
    unique_names_and_addresses(cx, d);
    control_planes(cx, d);
    proxy_jumps(cx, d);
    addresses_outside_cluster_networks(cx, d);
    group_names(cx, d);
}

fn unique_names_and_addresses(cx: &mut Cx<'_>, d: &Draft) {
    let mut names: HashMap<&str, Pos> = HashMap::new();
    for (name, pos) in &d.positions.names {
        if let Some(first) = names.get(name.as_str()) {
            cx.sink
                .error(*pos, format!("duplicate host name '{name}'"))
                .help(format!("'{name}' is already used on line {}; host names must be unique (they become node names)", first.line));
        } else {
            names.insert(name, *pos);
        }
    }
    let mut addresses: HashMap<(String, u16), (&str, Pos)> = HashMap::new();
    for (h, p) in d.hosts.iter().zip(&d.positions.hosts) {
        // Several hosts may share an address behind different SSH ports
        // (port forwarding, local test machines); the pair must be unique.
        let port = h.ssh.port.or(d.ssh.port).unwrap_or(22);
        let key = (h.address.to_ascii_lowercase(), port);
        if let Some((other, first)) = addresses.get(&key) {
            cx.sink
                .error(
                    p.address,
                    format!(
                        "duplicate address '{}' (ssh port {port}) in host '{}'",
                        h.address, h.name
                    ),
                )
                .help(format!(
                    "host '{other}' on line {} has the same address and port",
                    first.line
                ));
        } else {
            addresses.insert(key, (&h.name, p.address));
        }
    }
}

fn control_planes(cx: &mut Cx<'_>, d: &Draft) {
    if !d.positions.all_hosts_read || d.hosts.is_empty() {
        return;
    }
    let cps: Vec<_> = d
        .hosts
        .iter()
        .zip(&d.positions.hosts)
        .filter(|(h, _)| h.role == Role::ControlPlane)
        .collect();
    let hosts_pos = d
        .positions
        .hosts
        .first()
        .map_or(d.positions.root, |p| p.entry);
    match cps.len() {
        0 => {
            cx.sink
                .error(
                    hosts_pos,
                    "no control-plane host: a cluster needs at least one",
                )
                .help("set 'role: control-plane' on one host (or three, for high availability)");
        }
        2 => {
            let last = cps.last().map_or(hosts_pos, |(_, p)| p.entry);
            cx.sink
                .error(
                    last,
                    "2 control-plane hosts: the datastore stops when either one stops",
                )
                .help(
                    "the datastore needs a majority (2 of 2) to work, so two control planes fail \
                     twice as often as one; use 1, or 3 for high availability (k8sup adds them \
                     one at a time, so 1 grows to 3 in one apply)",
                );
        }
        n if n % 2 == 0 => {
            let last = cps.last().map_or(hosts_pos, |(_, p)| p.entry);
            cx.sink
                .warning(last, format!("{n} control-plane hosts: an even number adds no fault tolerance"))
                .help(format!(
                    "the datastore needs a majority ({} of {n}) to work, so {n} tolerate as many failures as {}; use {} or {}",
                    n / 2 + 1,
                    n - 1,
                    n - 1,
                    n + 1
                ));
        }
        _ => {}
    }
}

/// A `proxyJump` names an inventory host or is `[user@]host[:port]`. A host
/// never jumps through itself, so `ssh.proxyJump: bastion` as a default
/// applies to every host except the bastion; `none` turns a default off.
/// Chains of jumps are refused.
fn proxy_jumps(cx: &mut Cx<'_>, d: &Draft) {
    let names: Vec<&str> = d.hosts.iter().map(|h| h.name.as_str()).collect();
    let check_value = |cx: &mut Cx<'_>, value: &str, pos: Pos, owner: &str| {
        if names.contains(&value) || value == "none" {
            return;
        }
        match JumpSpec::parse(value) {
            Err(why) => {
                let d = cx.sink.error(
                    pos,
                    format!("proxyJump '{value}' in {owner} is neither an inventory host nor [user@]host[:port]: {why}"),
                );
                match suggest(value, names.iter().copied()) {
                    Some(g) => d.help(format!("did you mean host '{g}'?")),
                    None => d.help(
                        "name a host of this inventory, or write e.g. 'ops@bastion.example.com:22'",
                    ),
                };
            }
            Ok(spec) if spec.user.is_none() && spec.port.is_none() && !spec.host.contains('.') => {
                if let Some(g) = suggest(value, names.iter().copied()) {
                    cx.sink
                        .warning(pos, format!("proxyJump '{value}' in {owner} is not an inventory host; it will be resolved as a host name"))
                        .help(format!("did you mean host '{g}'?"));
                }
            }
            Ok(_) => {}
        }
    };
    if let (Some(v), Some(p)) = (&d.ssh.proxy_jump, d.positions.ssh.proxy_jump) {
        check_value(cx, v, p, "'ssh'");
    }
    for (h, p) in d.hosts.iter().zip(&d.positions.hosts) {
        if let (Some(v), Some(pos)) = (&h.ssh.proxy_jump, p.ssh.proxy_jump) {
            if *v == h.name {
                cx.sink
                    .error(pos, format!("host '{}' cannot jump through itself", h.name))
                    .help("remove 'proxyJump' from this host's ssh settings");
                continue;
            }
            check_value(cx, v, pos, &format!("host '{}'", h.name));
        }
    }
    // Chains: the jump host must itself be reachable directly.
    let jump_of = |name: &str| -> Option<&str> {
        let h = d.hosts.iter().find(|h| h.name == name)?;
        let j = h
            .ssh
            .proxy_jump
            .as_deref()
            .or(d.ssh.proxy_jump.as_deref())?;
        (j != h.name && j != "none").then_some(j)
    };
    for (h, p) in d.hosts.iter().zip(&d.positions.hosts) {
        let Some(j) = jump_of(&h.name) else { continue };
        if let Some(jj) = names.contains(&j).then(|| jump_of(j)).flatten() {
            let pos = p
                .ssh
                .proxy_jump
                .or(d.positions.ssh.proxy_jump)
                .unwrap_or(p.entry);
            cx.sink
                .error(pos, format!("host '{}' jumps through '{j}', which itself jumps through '{jj}': chained jumps are not supported", h.name))
                .help(format!("'{j}' must be reachable without a jump: give it 'ssh: {{ proxyJump: none }}'"));
        }
    }
}

fn addresses_outside_cluster_networks(cx: &mut Cx<'_>, d: &Draft) {
    let Some(c) = &d.cluster else { return };
    for (h, p) in d.hosts.iter().zip(&d.positions.hosts) {
        let Ok(ip) = h.address.parse::<IpAddr>() else {
            continue;
        };
        for (net, key) in [(c.pod_cidr, "podCIDR"), (c.service_cidr, "serviceCIDR")] {
            if net.contains(&ip) {
                cx.sink
                    .error(
                        p.address,
                        format!(
                            "address {ip} of host '{}' is inside the cluster's {key} {net}",
                            h.name
                        ),
                    )
                    .help(format!(
                        "choose a {key} that does not overlap the hosts' network"
                    ));
            }
        }
    }
}

/// Later sections target hosts by name, role or group; a group spelt like a
/// host or a role would make such targets ambiguous.
fn group_names(cx: &mut Cx<'_>, d: &Draft) {
    for (h, p) in d.hosts.iter().zip(&d.positions.hosts) {
        for g in &h.groups {
            let clash = if d.hosts.iter().any(|o| o.name == *g) {
                Some("a host")
            } else if g == "control-plane" || g == "worker" {
                Some("a role")
            } else {
                None
            };
            if let Some(what) = clash {
                cx.sink
                    .warning(
                        p.groups,
                        format!(
                            "group '{g}' of host '{}' has the same name as {what}",
                            h.name
                        ),
                    )
                    .help("targets that name it will be ambiguous; rename the group");
            }
        }
    }
}
