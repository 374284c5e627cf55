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
//! A held file is read in chunks that go out to every host as soon as they
//! are in memory (no upload waits for the whole file to be read first). Its
//! stamp is checked before and after the read, and no host installs the file
//! unless both matched, so the bytes installed are the bytes hashed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::watch;

use crate::content::FileStamp;
use crate::error::EngineError;

/// How many bytes of local files one apply holds in memory at most, unless
/// [`crate::ApplyOptions::hold_in_memory`] says otherwise: a few large
/// binaries, not an air-gap image archive.
pub(crate) const MEMORY_BUDGET: u64 = 512 << 20;

/// What each chunk handed to the channel holds: large enough that a 50 MB
/// file is 50 hand-overs per host, small enough for progress and Ctrl-C.
pub(crate) const CHUNK: usize = 1 << 20;

/// The local files of one apply that are held in memory, each read on first use.
#[derive(Default)]
pub(crate) struct Payloads {
    held: HashMap<PathBuf, OnceLock<Arc<Held>>>,
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
            held.insert(path.to_path_buf(), OnceLock::new());
        }
        Payloads { held }
    }

    /// The held file `path` (its read starts now if no host needed it
    /// before), `None` when it is to be streamed from disk. The read goes on
    /// in the background: hosts send each chunk as soon as it is in memory,
    /// so no upload waits for the whole file; whether the bytes are the
    /// version that was hashed (`stamp`) is known when the read ends
    /// ([`Held::verdict`]).
    pub(crate) fn get(&self, path: &Path, stamp: FileStamp) -> Option<Arc<Held>> {
        let cell = self.held.get(path)?;
        Some(
            cell.get_or_init(|| {
                let held = Arc::new(Held {
                    fill: watch::channel(Fill::default()).0,
                });
                let (h, path) = (held.clone(), path.to_path_buf());
                tokio::task::spawn_blocking(move || {
                    let verdict = read_if_unchanged(&path, stamp, &h);
                    h.fill.send_modify(|f| f.done = Some(verdict));
                });
                held
            })
            .clone(),
        )
    }
}

/// A held file: the chunks read so far, and the read's verdict once it ended.
pub(crate) struct Held {
    fill: watch::Sender<Fill>,
}

#[derive(Default)]
struct Fill {
    chunks: Vec<Bytes>,
    done: Option<Result<(), ReadError>>,
}

impl Held {
    /// The file as the channel's chunks, each as soon as it is read (no copy:
    /// every host gets slices of the same buffers). `sent` counts the bytes
    /// handed over; progress is reported as they are. A failed read ends the
    /// stream with an error, so the command on the host never sees an end of
    /// input that would look complete.
    pub(crate) fn chunks<'a>(
        self: &Arc<Self>,
        sent: &'a AtomicU64,
        on_progress: &'a (dyn Fn(u64) + Send + Sync),
    ) -> k8sup_ssh::Chunks<'a> {
        let rx = self.fill.subscribe();
        Box::pin(futures::stream::unfold(
            (self.clone(), rx, 0usize, 0u64),
            move |(held, mut rx, i, mut reported)| async move {
                loop {
                    let (next, failed, finished) = {
                        let f = rx.borrow_and_update();
                        let failed = matches!(f.done, Some(Err(_)));
                        (f.chunks.get(i).cloned(), failed, f.done.is_some())
                    };
                    if failed {
                        // One error ends the stream (`i` marks it given).
                        if i == usize::MAX {
                            return None;
                        }
                        let e =
                            std::io::Error::other("the local file could not be read as planned");
                        return Some((Err(e), (held, rx, usize::MAX, reported)));
                    }
                    if let Some(chunk) = next {
                        let total = sent.fetch_add(chunk.len() as u64, Ordering::Relaxed)
                            + chunk.len() as u64;
                        if total - reported >= crate::upload::PROGRESS_EVERY {
                            reported = total;
                            on_progress(total);
                        }
                        return Some((Ok(chunk), (held, rx, i + 1, reported)));
                    }
                    if finished || rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        ))
    }

    /// Waits for the read to end: `Ok` when every byte was read and the file
    /// kept the stamp it was hashed with, before and after.
    pub(crate) async fn verdict(&self, host: &str, path: &Path) -> Result<(), EngineError> {
        let mut rx = self.fill.subscribe();
        let f = rx
            .wait_for(|f| f.done.is_some())
            .await
            .map_err(|_| EngineError::Local {
                path: path.to_path_buf(),
                reason: "reading it stopped".into(),
            })?;
        match f.done.as_ref().expect("waited for the verdict") {
            Ok(()) => Ok(()),
            Err(ReadError::Changed) => Err(EngineError::PlanMismatch {
                host: host.to_string(),
                reason: format!("{}: {CHANGED}", path.display()),
            }),
            Err(ReadError::Io(reason)) => Err(EngineError::Local {
                path: path.to_path_buf(),
                reason: reason.clone(),
            }),
        }
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

/// Reads the whole file into `held`, chunk by chunk; `Ok` provided it has
/// `stamp` before and after the read.
fn read_if_unchanged(path: &Path, stamp: FileStamp, held: &Held) -> Result<(), ReadError> {
    use std::io::Read;
    let io = |e: std::io::Error| ReadError::Io(e.to_string());
    let mut f = std::fs::File::open(path).map_err(io)?;
    let before = f.metadata().map_err(io)?;
    if FileStamp::of(&before) != stamp {
        return Err(ReadError::Changed);
    }
    let mut total = 0u64;
    loop {
        let mut buf = Vec::with_capacity(CHUNK);
        let n = (&mut f)
            .take(CHUNK as u64)
            .read_to_end(&mut buf)
            .map_err(io)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > stamp.len {
            return Err(ReadError::Changed);
        }
        held.fill.send_modify(|f| f.chunks.push(Bytes::from(buf)));
    }
    let after = f.metadata().map_err(io)?;
    if FileStamp::of(&after) != stamp || total != stamp.len {
        return Err(ReadError::Changed);
    }
    Ok(())
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

    /// Everything `held` streams, and the read's verdict.
    async fn drain(held: &Arc<Held>) -> (Vec<u8>, bool, u64) {
        use futures::StreamExt;
        let sent = AtomicU64::new(0);
        let mut out = Vec::new();
        let mut failed = false;
        let mut chunks = held.chunks(&sent, &|_| {});
        while let Some(c) = chunks.next().await {
            match c {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => failed = true,
            }
        }
        (out, failed, sent.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn every_host_gets_the_whole_file_in_chunks_from_one_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        let data: Vec<u8> = (0..(CHUNK * 5 / 2)).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let stamp = stamp_of(&path);
        let p = Payloads::choose([(path.as_path(), data.len() as u64)], MEMORY_BUDGET);
        let a = p.get(&path, stamp).unwrap();
        let b = p.get(&path, stamp).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one read for every host");
        let ((got_a, failed_a, sent_a), (got_b, failed_b, _)) = tokio::join!(drain(&a), drain(&b));
        assert!(!failed_a && !failed_b);
        assert!(
            got_a == data && got_b == data,
            "both hosts get every byte, in order"
        );
        assert_eq!(sent_a, data.len() as u64);
        assert_eq!(a.fill.borrow().chunks.len(), 3, "1 MiB chunks");
        a.verdict("h", &path).await.unwrap();
        // A file that is not held is left to the disk stream.
        assert!(p.get(Path::new("/elsewhere"), stamp).is_none());
    }

    #[tokio::test]
    async fn a_file_changed_since_it_was_hashed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bin");
        std::fs::write(&path, b"version 1").unwrap();
        let stamp = stamp_of(&path);

        // Rewritten after it was hashed: the stream ends with an error (the
        // host never sees a clean end of input) and the verdict says why.
        std::fs::write(&path, b"version 2!").unwrap();
        let p = Payloads::choose([(path.as_path(), 9)], MEMORY_BUDGET);
        let held = p.get(&path, stamp).unwrap();
        let (_, failed, _) = drain(&held).await;
        assert!(failed, "the stream must fail, not end");
        match held.verdict("h", &path).await {
            Err(EngineError::PlanMismatch { host, reason }) => {
                assert_eq!(host, "h");
                assert!(reason.contains("changed since the plan"), "{reason}");
            }
            other => panic!("expected a plan mismatch, got {other:?}"),
        }
        // Gone: a local error naming the file.
        std::fs::remove_file(&path).unwrap();
        let p = Payloads::choose([(path.as_path(), 9)], MEMORY_BUDGET);
        let held = p.get(&path, stamp).unwrap();
        assert!(drain(&held).await.1);
        assert!(matches!(
            held.verdict("h", &path).await,
            Err(EngineError::Local { .. })
        ));
    }
}
