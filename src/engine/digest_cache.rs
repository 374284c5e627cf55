//! A workstation-side cache of local files' SHA-256, so that a no-op apply
//! does not re-read every binary it pushes (50 MB take ~0.1 s to hash here,
//! a third of the no-op budget).
//!
//! Entries are keyed by path and the file's stamp (device, inode, size,
//! mtime and ctime in nanoseconds): any write to the file changes the stamp
//! and misses the cache. As Git does for its index, a file modified in the
//! last two seconds is not cached, so a write that lands within the same
//! timestamp tick as the hash cannot be mistaken for the hashed content.
//!
//! The cache is a plain text file, rewritten atomically; concurrent runs may
//! lose each other's additions, which only costs a re-hash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::content::FileStamp;

const FILE: &str = "digests";
const MAX_ENTRIES: usize = 4096;

fn cache_file() -> Option<PathBuf> {
    let dir = std::env::var_os("K8SUP_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("k8sup")))
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("k8sup"))
        })?;
    Some(dir.join(FILE))
}

fn key(path: &Path, stamp: &FileStamp) -> String {
    format!(
        "{} {} {} {} {} {}",
        stamp.dev,
        stamp.ino,
        stamp.len,
        stamp.mtime_ns,
        stamp.ctime_ns,
        path.display()
    )
}

fn read_all(file: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(file) else {
        return HashMap::new();
    };
    text.lines()
        .filter_map(|l| {
            let (sha, rest) = l.split_once(' ')?;
            (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| (rest.to_string(), sha.to_string()))
        })
        .collect()
}

/// The cached SHA-256 of `path` if its stamp is unchanged.
pub(crate) fn lookup(path: &Path, stamp: &FileStamp) -> Option<String> {
    read_all(&cache_file()?).remove(&key(path, stamp))
}

/// Remember `sha256` for `path` at `stamp` (best effort: errors are ignored,
/// a missing entry only costs a re-hash next time).
pub(crate) fn store(path: &Path, stamp: &FileStamp, modified: SystemTime, sha256: &str) {
    if SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default()
        < Duration::from_secs(2)
    {
        return;
    }
    let Some(file) = cache_file() else { return };
    let mut all = read_all(&file);
    // Drop older entries of the same path before adding the new one.
    let suffix = format!(" {}", path.display());
    all.retain(|k, _| !k.ends_with(&suffix));
    if all.len() >= MAX_ENTRIES {
        all.clear();
    }
    all.insert(key(path, stamp), sha256.to_string());
    let text: String = all.iter().map(|(k, v)| format!("{v} {k}\n")).collect();
    let Some(dir) = file.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(".{FILE}.{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &file).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_misses_the_cache_and_a_fresh_one_is_not_cached() {
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: this test alone sets the variable, before reading it.
        unsafe { std::env::set_var("K8SUP_CACHE_DIR", dir.path().join("cache")) };
        let f = dir.path().join("blob");
        std::fs::write(&f, b"one").unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let stamp = FileStamp::of(&meta);
        store(&f, &stamp, meta.modified().unwrap(), &"a".repeat(64));
        assert_eq!(lookup(&f, &stamp), None, "modified just now: not cached");
        store(&f, &stamp, SystemTime::UNIX_EPOCH, &"a".repeat(64));
        assert_eq!(lookup(&f, &stamp), Some("a".repeat(64)));
        std::fs::write(&f, b"two").unwrap();
        let changed = FileStamp::of(&std::fs::metadata(&f).unwrap());
        assert_eq!(lookup(&f, &changed), None);
    }
}
