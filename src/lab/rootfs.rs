//! The cached Debian root every lab machine boots from (as the overlay's
//! read-only lower layer).
//!
//! debootstrap takes a minute or two, so the root is built once per recipe
//! and kept under /var/cache/k8sup/lab/. The cache directory is named after a
//! hash of everything that goes into it, so changing the recipe (packages,
//! sshd settings, masked units) builds a new root instead of reusing a stale
//! one. It is built in a temporary directory and renamed into place, so a
//! crash never leaves a half-built root that looks complete, and the build is
//! serialised with a file lock so that two first-time `up`s (for example
//! parallel test processes) do not both run debootstrap.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use crate::layout::CACHE_ROOT;
use crate::lock::FileLock;
use crate::mounts;
use crate::node;
use crate::preflight::{self, DEBOOTSTRAP};

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
/// What a cloud VM image has that k8sup and its peers rely on: systemd,
/// sshd, sudo for non-root users, python3 so that Ansible and pyinfra can be
/// benchmarked against k8sup on the same machines, and what a Kubernetes
/// node expects of its OS: the packet-filter tools kube-proxy and CNI
/// plugins call (iptables, nftables, ipset, conntrack), ethtool, socat,
/// curl (health checks)
/// (port-forward), kmod (kubelet's and kube-proxy's module
/// checks), procps and CA certificates. Nothing of Kubernetes itself
/// (containerd, runc, kubelet): installing those is k8sup's job.
const PACKAGES: &[&str] = &[
    "python3",
    "systemd",
    "systemd-sysv",
    "openssh-server",
    "iproute2",
    "dbus",
    "sudo",
    "ca-certificates",
    "curl",
    "iptables",
    "nftables",
    "ipset",
    "conntrack",
    "ethtool",
    "socat",
    "kmod",
    "procps",
];

/// sshd: root may log in with the lab key only; the one host key is
/// generated per machine (see `identity`), never shared through the cache.
const SSHD_CONFIG: &str = "\
# Written by k8sup lab: key-only root login, one per-machine ed25519 host key.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
";

/// Units that slow boot or make no sense in a container: consoles nobody
/// attaches to, periodic jobs for real disks, apt timers that would try to
/// reach the network.
const MASKED_UNITS: &[&str] = &[
    "console-getty.service",
    "getty@.service",
    "e2scrub_reap.service",
    "systemd-pstore.service",
    // nspawn mounts the root itself; this failed now and then on first boot
    // (about 1 in 20), leaving the machine "degraded".
    "systemd-remount-fs.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
];

/// No nameserver: lab machines only talk to each other and the host. An
/// empty resolv.conf makes lookups fail at once instead of timing out on the
/// host's resolver (which `sudo` would otherwise wait 20 s for).
const RESOLV_CONF: &str = "# k8sup lab: machines have no DNS; names are in /etc/hosts.\n";

/// Bump when `prepare` changes in a way the constants above do not capture.
const RECIPE_REVISION: u32 = 2;

/// Identifies the recipe; names the cache directory.
fn recipe_key() -> String {
    let recipe = format!(
        "{RECIPE_REVISION}|{SUITE}|{MIRROR}|{PACKAGES:?}|{SSHD_CONFIG}|{MASKED_UNITS:?}|{RESOLV_CONF}|{}",
        node::recipe()
    );
    hex::encode(&Sha256::digest(recipe.as_bytes())[..6])
}

/// Path of the cached root for the current recipe (it may not exist yet).
pub fn cached_root() -> PathBuf {
    Path::new(CACHE_ROOT)
        .join(format!("{SUITE}-{}", recipe_key()))
        .join("rootfs")
}

/// Whether the root for the current recipe is already built.
pub fn is_cached() -> bool {
    cached_root().join("etc/os-release").exists()
}

/// Returns the cached root, building it first if needed.
pub fn ensure() -> Result<PathBuf> {
    let root = cached_root();
    if is_cached() {
        return Ok(root);
    }
    let _lock = FileLock::exclusive(&Path::new(CACHE_ROOT).join(".build.lock"))?;
    // Another process may have finished the build while we waited.
    if is_cached() {
        return Ok(root);
    }
    preflight::require_tools(&[DEBOOTSTRAP])?;
    build(&root)?;
    Ok(root)
}

fn build(root: &Path) -> Result<()> {
    let version_dir = root.parent().context("cache path has no parent")?;
    let staging = Path::new(CACHE_ROOT).join(format!(".building-{}", recipe_key()));
    // Holding the build lock, any staging directory is a crashed build's:
    // detach what debootstrap had mounted in it, then start over.
    if staging.exists() {
        mounts::unmount_all_under(&staging)?;
        fs::remove_dir_all(&staging)
            .with_context(|| format!("removing stale build {}", staging.display()))?;
    }
    let staged_root = staging.join("rootfs");
    fs::create_dir_all(&staged_root)
        .with_context(|| format!("creating {}", staged_root.display()))?;

    let log_path = Path::new(CACHE_ROOT).join(format!("debootstrap-{}.log", recipe_key()));
    tracing::info!(root = %root.display(), log = %log_path.display(), "building the lab's Debian root with debootstrap");
    let started = Instant::now();
    let log =
        fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let include = format!("--include={}", PACKAGES.join(","));
    let debootstrap = preflight::which(DEBOOTSTRAP.name).unwrap_or_else(|| DEBOOTSTRAP.name.into());
    let status = Command::new(debootstrap)
        .args(["--variant=minbase", &include, SUITE])
        .arg(&staged_root)
        .arg(MIRROR)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running debootstrap")?;
    // debootstrap unmounts its /proc and /sys itself, except when it fails.
    mounts::unmount_all_under(&staging)?;
    if !status.success() {
        bail!(
            "debootstrap {SUITE} from {MIRROR} failed ({status}); its log is {}:\n{}",
            log_path.display(),
            tail(&log_path, 15)
        );
    }
    prepare(&staged_root).with_context(|| format!("preparing {}", staged_root.display()))?;

    fs::create_dir_all(Path::new(CACHE_ROOT))?;
    if version_dir.exists() {
        // A leftover without os-release (not a complete root): replace it.
        fs::remove_dir_all(version_dir)
            .with_context(|| format!("removing incomplete {}", version_dir.display()))?;
    }
    fs::rename(&staging, version_dir)
        .with_context(|| format!("moving {} to {}", staging.display(), version_dir.display()))?;
    tracing::info!(elapsed = ?started.elapsed(), "lab root built");
    Ok(())
}

/// One-time changes to the fresh root shared by every machine.
fn prepare(root: &Path) -> Result<()> {
    // Host keys are per machine; none may come from the cache.
    for entry in fs::read_dir(root.join("etc/ssh"))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with("ssh_host_") {
            fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    write(
        root,
        "etc/ssh/sshd_config.d/k8sup-lab.conf",
        SSHD_CONFIG,
        0o644,
    )?;
    // An empty machine-id in the shared root; each machine writes its own.
    write(root, "etc/machine-id", "", 0o444)?;
    let dbus_id = root.join("var/lib/dbus/machine-id");
    if dbus_id.is_file() && !dbus_id.is_symlink() {
        fs::remove_file(&dbus_id)?;
    }
    for unit in MASKED_UNITS {
        let link = root.join("etc/systemd/system").join(unit);
        if link.exists() || link.is_symlink() {
            fs::remove_file(&link)?;
        }
        fs::create_dir_all(link.parent().unwrap_or(root))?;
        symlink("/dev/null", &link).with_context(|| format!("masking {unit}"))?;
    }
    let resolv = root.join("etc/resolv.conf");
    if resolv.is_symlink() {
        fs::remove_file(&resolv)?;
    }
    write(root, "etc/resolv.conf", RESOLV_CONF, 0o644)?;
    // pam_env complains on every login when this file is missing.
    if !root.join("etc/default/locale").exists() {
        write(root, "etc/default/locale", "", 0o644)?;
    }
    node::install_in_root(root)?;
    let ssh_dir = root.join("root/.ssh");
    fs::create_dir_all(&ssh_dir)?;
    fs::set_permissions(&ssh_dir, fs::Permissions::from_mode(0o700))?;
    // The downloaded packages are not needed once installed.
    let archives = root.join("var/cache/apt/archives");
    if let Ok(entries) = fs::read_dir(&archives) {
        for entry in entries.flatten() {
            if entry.path().extension().is_some_and(|e| e == "deb") {
                fs::remove_file(entry.path())?;
            }
        }
    }
    write(
        root,
        "etc/k8sup-lab-root",
        &format!("{SUITE}-{}\n", recipe_key()),
        0o644,
    )?;
    Ok(())
}

fn write(root: &Path, rel: &str, contents: &str, mode: u32) -> Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut file =
        fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The last `lines` lines of a log file, for error messages.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
