//! Where a lab keeps its files. Everything a lab owns on disk lives in its
//! state directory so that `down` can remove it with one `remove_dir_all`;
//! the debootstrap root is shared by all labs and lives in the cache.

use std::path::{Path, PathBuf};

/// Parent of every lab's state directory.
pub const STATE_ROOT: &str = "/var/lib/k8sup/lab";
/// Cached debootstrap roots, one directory per recipe version.
pub const CACHE_ROOT: &str = "/var/cache/k8sup/lab";

/// Paths of one lab.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    pub fn new(lab: &str) -> Self {
        Self {
            dir: Path::new(STATE_ROOT).join(lab),
        }
    }

    /// The lab's state directory, e.g. /var/lib/k8sup/lab/NAME.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lab's description (subnet, machines, cached root): written before
    /// anything is created, so that `down` can find leftovers of a crash.
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("lab.json")
    }

    /// The private key k8sup logs in with (ed25519, 0600).
    pub fn identity_file(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    pub fn public_key_file(&self) -> PathBuf {
        self.dir.join("id_ed25519.pub")
    }

    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.yaml")
    }

    pub fn machine(&self, machine: &str) -> MachineLayout {
        MachineLayout {
            dir: self.dir.join("machines").join(machine),
        }
    }

    /// Lock serialising changes to one lab. It lives outside the state
    /// directory so that `down` can delete that directory while holding it.
    pub fn lock_file(lab: &str) -> PathBuf {
        Path::new(STATE_ROOT)
            .join(".locks")
            .join(format!("{lab}.lock"))
    }

    /// Lock held while a new lab picks its subnet and claims it, so that two
    /// labs created at once never pick the same /24.
    pub fn subnet_lock_file() -> PathBuf {
        Path::new(STATE_ROOT).join(".locks").join("subnets.lock")
    }
}

/// Paths of one machine inside its lab's state directory.
#[derive(Debug, Clone)]
pub struct MachineLayout {
    dir: PathBuf,
}

impl MachineLayout {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Overlay upper directory: the machine's disk (changes over the cached root).
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// Overlay work directory (same filesystem as `upper`, required by overlayfs).
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// Mount point of the merged root that systemd-nspawn boots.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// systemd-nspawn's output: the boot log (console) of the last boot.
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// The machine's directories that must not be on overlayfs
    /// (containerd's and the kubelet's state), bound into it; see `node`.
    pub fn storage(&self) -> PathBuf {
        self.dir.join("storage")
    }

    /// The host cgroups the machine was last booted in, one per line: the
    /// memory hierarchy's depend on the cgroup of the process that booted it,
    /// so a later `stop` or `down` from another process reads them here.
    pub fn cgroups_record(&self) -> PathBuf {
        self.dir.join("cgroups")
    }
}
