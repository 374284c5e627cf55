//! A file that appears whole or not at all.
//!
//! Snapshots, their metadata and the member identity are written as
//! `NAME.part` (mode 0600: a snapshot holds every secret in the store),
//! fsynced, and only then renamed to `NAME`. A crash or a failed check
//! leaves at most a `.part` file, never a short `NAME`; readers never look at
//! `.part` files, and the next write of the same name replaces it.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `NAME.part` being written; [`AtomicFile::commit`] makes it `NAME`.
pub struct AtomicFile {
    file: File,
    part: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    /// Starts writing `path` (as `path` with the extension `part`, created
    /// or truncated, mode 0600).
    pub fn create(path: &Path) -> std::io::Result<AtomicFile> {
        use std::os::unix::fs::OpenOptionsExt;
        let part = path.with_extension("part");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&part)?;
        Ok(AtomicFile {
            file,
            part,
            path: path.to_path_buf(),
        })
    }

    /// Where the bytes go until the commit.
    pub fn part_path(&self) -> &Path {
        &self.part
    }

    /// Flushes the bytes to disk, runs `check` on the finished `.part` file,
    /// and renames it into place. If `check` refuses, the `.part` file is
    /// removed and `path` is left as it was.
    pub fn commit_checked<E: From<std::io::Error>>(
        self,
        check: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<(), E> {
        self.file.sync_all()?;
        drop(self.file);
        if let Err(e) = check(&self.part) {
            let _ = std::fs::remove_file(&self.part);
            return Err(e);
        }
        std::fs::rename(&self.part, &self.path)?;
        Ok(())
    }

    /// [`AtomicFile::commit_checked`] without a check.
    pub fn commit(self) -> std::io::Result<()> {
        self.commit_checked(|_| Ok::<(), std::io::Error>(()))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Writes `data` to `path` durably (see the module doc).
pub fn write_file(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(data)?;
    f.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_or_unfinished_write_leaves_the_old_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("current.meta");
        write_file(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // Refused by the check: the old content stays, no .part is left.
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"two, but bad").unwrap();
        let refused: Result<(), std::io::Error> =
            f.commit_checked(|p| Err(std::io::Error::other(format!("{} is bad", p.display()))));
        assert!(refused.is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        assert!(!dir.path().join("current.part").exists());

        // Never committed (a crash): only the .part holds the new bytes.
        let mut f = AtomicFile::create(&path).unwrap();
        f.write_all(b"three").unwrap();
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");

        // The next write replaces the leftover and lands whole.
        write_file(&path, b"four").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"four");
        assert!(!dir.path().join("current.part").exists());
    }
}
