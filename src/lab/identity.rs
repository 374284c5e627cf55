//! Who is who: the lab's login key, each machine's own identity (hostname,
//! machine-id, host key) and the known_hosts file that lets k8sup verify
//! every machine with strict host-key checking.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::exec;
use crate::files::write_atomic;
use crate::layout::Layout;
use crate::state::Machine;

const HOST_KEY: &str = "etc/ssh/ssh_host_ed25519_key";

/// Ensures the lab's ed25519 login key exists (private part 0600) and
/// returns the public key line for authorized_keys.
pub fn ensure_lab_key(layout: &Layout, lab: &str) -> Result<String> {
    let private = layout.identity_file();
    let public = layout.public_key_file();
    if !private.exists() {
        let _ = fs::remove_file(&public);
        let comment = format!("k8sup-lab-{lab}");
        keygen(&private, &comment)?;
    } else if !public.exists() {
        let line = exec::run("ssh-keygen", &["-y", "-f", &private.to_string_lossy()])?;
        write_atomic(&public, line.as_bytes(), 0o644)?;
    }
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("setting mode 0600 on {}", private.display()))?;
    let line =
        fs::read_to_string(&public).with_context(|| format!("reading {}", public.display()))?;
    Ok(line.trim().to_owned())
}

/// Writes what makes `machine` itself into its mounted root `rootfs`:
/// hostname, /etc/hosts and root's authorized_keys on every boot, and, on
/// its first boot only (checked in the overlay's `upper` layer), a unique
/// machine-id and a fresh ed25519 host key.
pub fn write_machine_identity(
    rootfs: &Path,
    upper: &Path,
    machine: &Machine,
    lab_key: &str,
) -> Result<()> {
    let name = &machine.name;
    write_atomic(
        &rootfs.join("etc/hostname"),
        format!("{name}\n").as_bytes(),
        0o644,
    )?;
    let hosts = format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{name}\n",
        machine.address
    );
    write_atomic(&rootfs.join("etc/hosts"), hosts.as_bytes(), 0o644)?;

    let ssh_dir = rootfs.join("root/.ssh");
    fs::create_dir_all(&ssh_dir)?;
    fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700))?;
    write_atomic(
        &ssh_dir.join("authorized_keys"),
        format!("{lab_key}\n").as_bytes(),
        0o600,
    )?;

    if !upper.join("etc/machine-id").exists() {
        let uuid =
            fs::read_to_string("/proc/sys/kernel/random/uuid").context("reading a random UUID")?;
        let id: String = uuid.trim().chars().filter(|c| *c != '-').collect();
        write_atomic(
            &rootfs.join("etc/machine-id"),
            format!("{id}\n").as_bytes(),
            0o444,
        )?;
    }
    if !upper.join(HOST_KEY).exists() {
        let key = rootfs.join(HOST_KEY);
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(key.with_extension("pub"));
        let comment = format!("root@{name}");
        keygen(&key, &comment)?;
    }
    Ok(())
}

/// The machine's public host key (`ssh-ed25519 AAAA...`), read from its
/// overlay's upper layer so that it works whether or not it is mounted.
pub fn host_key(upper: &Path) -> Result<String> {
    let path = upper.join(format!("{HOST_KEY}.pub"));
    let line = fs::read_to_string(&path)
        .with_context(|| format!("reading host key {}", path.display()))?;
    let mut fields = line.split_whitespace();
    match (fields.next(), fields.next()) {
        (Some(kind), Some(key)) => Ok(format!("{kind} {key}")),
        _ => bail!("{} is not an OpenSSH public key", path.display()),
    }
}

/// Writes the lab's known_hosts: one `ADDRESS ssh-ed25519 KEY` line per machine.
pub fn write_known_hosts(layout: &Layout, machines: &[Machine]) -> Result<()> {
    let mut text = String::new();
    for m in machines {
        let key = host_key(&layout.machine(&m.name).upper())?;
        text.push_str(&format!("{} {key}\n", m.address));
    }
    write_atomic(&layout.known_hosts(), text.as_bytes(), 0o644)
}

/// A new ed25519 key pair at `path` (and `path.pub`), without passphrase.
fn keygen(path: &std::path::Path, comment: &str) -> Result<()> {
    exec::run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            &path.to_string_lossy(),
        ],
    )?;
    Ok(())
}
