//! From an inventory host to an SSH connection.
//!
//! This is the one place that knows both the inventory and the transport:
//! `k8sup-inventory` decides what the user asked for (defaults, per-host
//! overrides, jump hosts), `k8sup-ssh` knows how to connect. Only values the
//! inventory sets explicitly are passed on as such, so that `~/.ssh/config`
//! can still fill the rest, as OpenSSH does with `-o` options.

use anyhow::{Context, Result};
use k8sup_inventory::{EffectiveSsh, Host, Inventory, JumpHost, SudoMode};
use k8sup_ssh::{ConnectSpec, HostKeyPolicy, Secret, Session, SshError, Sudo};

/// The connection settings for `host`, or an error naming what is missing
/// (an unset sudo password variable).
pub fn spec_for(inventory: &Inventory, host: &Host) -> Result<ConnectSpec> {
    let e = inventory.effective_ssh(host);
    let mut spec = base_spec(&e, &host.name, &host.address);
    spec.sudo = sudo_for(&e).with_context(|| format!("host {}", host.name))?;
    spec.proxy_jump = e.proxy_jump.as_ref().map(|j| Box::new(jump_spec(&e, j)));
    Ok(spec)
}

fn base_spec(e: &EffectiveSsh, name: &str, address: &str) -> ConnectSpec {
    let mut spec = ConnectSpec::new(name, address);
    if e.use_ssh_config {
        spec.port = e.explicit.port;
        spec.user = e.explicit.user.clone();
        spec.default_user = Some(e.user.clone());
    } else {
        spec.port = Some(e.port);
        spec.user = Some(e.user.clone());
    }
    spec.identity_files = e.identity_file.iter().cloned().collect();
    spec.use_agent = e.agent;
    spec.use_ssh_config = e.use_ssh_config;
    spec.host_key_policy = match e.host_key_policy {
        k8sup_inventory::HostKeyPolicy::Strict => HostKeyPolicy::Strict,
        k8sup_inventory::HostKeyPolicy::AcceptNew => HostKeyPolicy::AcceptNew,
    };
    spec.known_hosts_files = e.known_hosts_file.iter().cloned().collect();
    spec.connect_timeout = e.connect_timeout;
    spec.retries = e.retries;
    spec
}

/// The bastion: its own user, port and key, the target's host-key settings
/// (one known_hosts vouches for the whole path).
fn jump_spec(target: &EffectiveSsh, j: &JumpHost) -> ConnectSpec {
    let name = j.host.clone().unwrap_or_else(|| j.address.clone());
    let mut spec = base_spec(target, &name, &j.address);
    spec.port = Some(j.port);
    spec.user = Some(j.user.clone());
    spec.identity_files = j.identity_file.iter().cloned().collect();
    spec.sudo = Sudo::Never;
    spec
}

/// `sudo: never` runs as the login user; otherwise the transport finds out
/// whether the login user is root and uses sudo only when it is not.
fn sudo_for(e: &EffectiveSsh) -> Result<Sudo> {
    if e.explicit.sudo == Some(SudoMode::Never) {
        return Ok(Sudo::Never);
    }
    match &e.sudo_password_env {
        None => Ok(Sudo::Passwordless),
        Some(var) => {
            let value = std::env::var(var).with_context(|| {
                format!("ssh.sudoPasswordEnv names {var}, which is not set: export {var}=... before running k8sup")
            })?;
            Ok(Sudo::Password(Secret::new(value)))
        }
    }
}

/// Connect to every host of `hosts` in parallel under the inventory's
/// concurrency limit. Each host gets its own result, in order.
pub async fn connect_hosts<'a>(
    inventory: &Inventory,
    hosts: &[&'a Host],
) -> Vec<(&'a Host, Result<Session, ConnectError>)> {
    let mut specs = Vec::new();
    let mut results: Vec<Option<Result<Session, ConnectError>>> = Vec::new();
    for host in hosts {
        match spec_for(inventory, host) {
            Ok(spec) => {
                specs.push(spec);
                results.push(None);
            }
            Err(e) => results.push(Some(Err(ConnectError::Config(format!("{e:#}"))))),
        }
    }
    let concurrency = inventory.options.concurrency as usize;
    let mut connected = k8sup_ssh::connect_all(specs, concurrency).await.into_iter();
    hosts
        .iter()
        .zip(results)
        .map(|(h, r)| {
            let r = r.unwrap_or_else(|| {
                connected
                    .next()
                    .expect("one result per spec")
                    .1
                    .map_err(|e| ConnectError::Ssh(Box::new(e)))
            });
            (*h, r)
        })
        .collect()
}

/// Why a host could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Ssh(Box<SshError>),
    #[error("{0}")]
    Config(String),
}
