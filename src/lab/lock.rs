//! Advisory file locks (flock): released by the kernel when the holder exits,
//! so a crashed `up` never leaves a lab or the cache locked.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// An exclusive lock held until dropped.
#[derive(Debug)]
pub struct FileLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl FileLock {
    /// Blocks until the exclusive lock on `path` is ours (creating the file).
    ///
    /// The holder may delete the lock file ([`FileLock::remove`], as `down`
    /// does so that a removed lab leaves no file behind). A waiter that then
    /// gets the lock on the deleted file notices that the path no longer
    /// names the file it locked, and starts over on the new one.
    pub fn exclusive(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        loop {
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .with_context(|| format!("opening lock file {}", path.display()))?;
            let lock = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, errno)| errno)
                .with_context(|| format!("locking {}", path.display()))?;
            let held = lock.metadata()?;
            let current = fs::metadata(path).ok();
            if current.is_some_and(|c| c.dev() == held.dev() && c.ino() == held.ino()) {
                return Ok(Self {
                    path: path.to_owned(),
                    _lock: lock,
                });
            }
        }
    }

    /// Deletes the lock file while still holding the lock.
    pub fn remove(&self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}
