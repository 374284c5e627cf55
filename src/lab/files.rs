//! Small file helpers: atomic writes with an explicit mode, so that readers
//! (k8sup, tests) never see a half-written inventory or known_hosts and
//! secrets are never world-readable, even briefly.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `contents` to `path` via a temporary file in the same directory,
/// created with `mode`, then renamed over `path`.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().context("path has no parent directory")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path
        .file_name()
        .context("path has no file name")?
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// When run through sudo, gives the files a user needs to reach the lab
/// (key, known_hosts, inventory) to the user who ran sudo, so that
/// `INV=$(sudo k8sup lab up)` can be followed by `k8sup ... -i "$INV"`
/// without root. The key stays 0600, now readable by that user only.
pub fn hand_to_sudo_user(paths: &[&Path]) -> Result<()> {
    use nix::unistd::{Gid, Uid, chown};
    let id = |var: &str| std::env::var(var).ok().and_then(|v| v.parse::<u32>().ok());
    let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID")) else {
        return Ok(());
    };
    if uid == 0 || !nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    for path in paths {
        chown(*path, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
            .with_context(|| format!("giving {} to the sudo user (uid {uid})", path.display()))?;
    }
    Ok(())
}
