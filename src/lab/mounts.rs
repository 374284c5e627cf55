//! The overlay mounts that give each machine its own disk over the shared
//! cached root, and the mount-table queries that let cleanup find leftovers.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// Mounts an overlay of `lower` (read-only, shared) and `upper` (this
/// machine's changes) at `target`.
pub fn mount_overlay(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<()> {
    for dir in [upper, work, target] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .with_context(|| format!("mounting overlay at {} ({options})", target.display()))
}

/// Mount points at or below `path`, deepest first (the order to unmount).
pub fn mounts_under(path: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(path))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    Ok(found)
}

/// Unmounts everything at or below `path`. A busy mount is detached lazily
/// (MNT_DETACH) rather than left behind: by the time we unmount, the
/// machine's processes are already gone.
pub fn unmount_all_under(path: &Path) -> Result<()> {
    for point in mounts_under(path)? {
        if umount2(&point, MntFlags::empty()).is_err() {
            umount2(&point, MntFlags::MNT_DETACH)
                .with_context(|| format!("unmounting {}", point.display()))?;
        }
    }
    Ok(())
}

/// Mount points of the host's mount namespace, from /proc/self/mounts.
fn mount_points() -> Result<Vec<PathBuf>> {
    let table = fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    Ok(table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .map(|field| PathBuf::from(unescape_mount_path(field)))
        .collect())
}

/// /proc/mounts escapes space, tab, newline and backslash as octal (`\040`).
pub(crate) fn unescape_mount_path(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("0");
            out.push(u8::from_str_radix(octal, 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::unescape_mount_path;

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}
