//! The bytes of large local files, read once per apply and shared by every
//! host's upload.
//!
//! Why: streaming a 50 MB binary to ten hosts from disk reads the file ten
//! times and copies every byte four times on the way to the cipher (kernel to
//! tokio's blocking buffer, to the `BufReader`, to the feed buffer, into a
//! fresh `Bytes`). On a workstation whose two cores also encrypt for every
//! host, that copying was a quarter of k8sup's CPU during a first apply. Held
//! in memory once, the file goes to each channel as slices of one buffer,
//! with no copy before the cipher's own.
//!
//! Only files that fit in the budget ([`MEMORY_BUDGET`] by default, all of
//! them together, in plan order) are held; the others are streamed from disk per host as before.
//! A held file is read only if its stamp is still the one it was hashed with,
//! before and after the read, so the bytes sent are the bytes hashed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::content::FileStamp;
use crate::error::EngineError;

/// How many bytes of local files one apply holds in memory at most, unless
/// [`crate::ApplyOptions::hold_in_memory`] says otherwise: a few Kubernetes
/// binaries, not an air-gap image archive.
pub(crate) const MEMORY_BUDGET: u64 = 512 << 20;

/// What each chunk handed to the channel holds: large enough that a 50 MB
/// file is 50 hand-overs per host, small enough for progress and Ctrl-C.
pub(crate) const CHUNK: usize = 1 << 20;

/// The local files of one apply that are held in memory, each read on first use.
#[derive(Default)]
pub(crate) struct Payloads {
    held: HashMap<PathBuf, OnceCell<Result<Bytes, ReadError>>>,
}

impl Payloads {
    /// Choose which of `files` (path and size, in the order they are needed)
    /// are held: each distinct path while the total stays within `budget`.
    pub(crate) fn choose<'a>(
        files: impl IntoIterator<Item = (&'a Path, u64)>,
        budget: u64,
    ) -> Self {
        let mut held = HashMap::new();
        let mut total = 0u64;
        for (path, size) in files {
            if held.contains_key(path) || total + size > budget {
                continue;
            }
            total += size;
            held.insert(path.to_path_buf(), OnceCell::new());
        }
        Payloads { held }
    }

    /// The bytes of `path` when it is held (read now if no host needed it
    /// before), `None` when it is to be streamed from disk. Fails when the file
    /// is no longer the version that was hashed (`stamp`).
    pub(crate) async fn get(
        &self,
        host: &str,
        path: &Path,
        stamp: FileStamp,
    ) -> Option<Result<Bytes, EngineError>> {
        let cell = self.held.get(path)?;
        let read = cell
            .get_or_init(|| {
                let path = path.to_path_buf();
                async move {
                    tokio::task::spawn_blocking(move || read_if_unchanged(&path, stamp))
                        .await
                        .unwrap_or_else(|e| Err(ReadError::Io(format!("reading it failed: {e}"))))
                }
            })
            .await;
        Some(match read {
            Ok(b) => Ok(b.clone()),
            Err(ReadError::Changed) => Err(EngineError::PlanMismatch {
                host: host.to_string(),
                reason: format!("{}: {CHANGED}", path.display()),
            }),
            Err(ReadError::Io(reason)) => Err(EngineError::Local {
                path: path.to_path_buf(),
                reason: reason.clone(),
            }),
        })
    }
}

const CHANGED: &str = "changed since the plan was made (its size, times or inode differ)";

/// Why a held file could not be read (kept, like the bytes, for every host).
#[derive(Debug)]
enum ReadError {
    /// Not the version that was hashed: the plan no longer describes it.
    Changed,
    Io(String),
}

/// The whole file, provided it has `stamp` before and after the read.
fn read_if_unchanged(path: &Path, stamp: FileStamp) -> Result<Bytes, ReadError> {
    use std::io::Read;
    let io = |e: std::io::Error| ReadError::Io(e.to_string());
    let mut f = std::fs::File::open(path).map_err(io)?;
    let before = f.metadata().map_err(io)?;
    if FileStamp::of(&before) != stamp {
        return Err(ReadError::Changed);
    }
    let mut buf = Vec::with_capacity(before.len() as usize);
    f.read_to_end(&mut buf).map_err(io)?;
    let after = f.metadata().map_err(io)?;
    if FileStamp::of(&after) != stamp || buf.len() as u64 != stamp.len {
        return Err(ReadError::Changed);
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp_of(p: &Path) -> FileStamp {
        FileStamp::of(&std::fs::metadata(p).unwrap())
    }

    #[test]
    fn holds_files_in_order_within_the_budget() {
        let p = Payloads::choose(
            [
                (Path::new("/a"), 60),
                (Path::new("/b"), 50),
                (Path::new("/a"), 60),
                (Path::new("/c"), 40),
            ],
            100,
        );
        assert!(p.held.contains_key(Path::new("/a")));
        assert!(
            !p.held.contains_key(Path::new("/b")),
            "over the budget: streamed from disk"
        );
        assert!(p.held.contains_key(Path::new("/c")));
    }

    #[tokio::test]
    async fn reads_once_and_refuses_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"version 1").unwrap();
        let stamp = stamp_of(&path);
        let p = Payloads::choose([(path.as_path(), 9)], MEMORY_BUDGET);
        assert_eq!(
            &p.get("h", &path, stamp).await.unwrap().unwrap()[..],
            b"version 1"
        );

        // Rewritten after it was hashed: a fresh apply's read refuses it.
        std::fs::write(&path, b"version 2!").unwrap();
        let p = Payloads::choose([(path.as_path(), 9)], MEMORY_BUDGET);
        match p.get("h", &path, stamp).await.unwrap() {
            Err(EngineError::PlanMismatch { host, reason }) => {
                assert_eq!(host, "h");
                assert!(reason.contains("changed since the plan"), "{reason}");
            }
            other => panic!("expected a plan mismatch, got {other:?}"),
        }
        // A file that is not held is left to the disk stream.
        assert!(p.get("h", Path::new("/elsewhere"), stamp).await.is_none());
    }
}
