//! Streaming a large file from the workstation to a temp file on the host.
//!
//! Why not `Session::upload`: it re-inspects the destination (one more round
//! trip and a remote SHA-256 of the old file) and re-hashes the new one on the
//! host; the engine has already observed the remote hash and hashed the local
//! file once for all hosts. Here one exec streams the bytes (`cat` into a 0600
//! temp file in the destination's directory); installing it (size check,
//! fsync, attributes, rename) is a fragment of a later apply script. The bytes
//! sent are the bytes hashed if the local file's stamp (inode, size, mtime,
//! ctime) is unchanged after the stream, which costs a stat instead of hashing
//! the file again per host; a file the apply holds in memory (see
//! [`crate::payload`]) is checked the same way once, around its one read.
//! SSH's MAC guards the transfer itself. Nothing ever renames a temp file
//! whose stream did not complete, so an interrupted run leaves the old file.

use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use k8sup_ssh::quote;
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::content::FileStamp;
use crate::error::EngineError;
use crate::ops::split;
use crate::payload::Held;
use crate::transport::Transport;

/// Bytes between two progress reports of one upload.
pub(crate) const PROGRESS_EVERY: u64 = 4 << 20;

/// Counts what passes through, and reports progress.
struct Tee<'a, R> {
    inner: R,
    sent: u64,
    reported: u64,
    on_progress: &'a (dyn Fn(u64) + Send + Sync),
}

impl<R: AsyncRead + Unpin> AsyncRead for Tee<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &res {
            self.sent += (buf.filled().len() - before) as u64;
            if self.sent - self.reported >= PROGRESS_EVERY {
                self.reported = self.sent;
                (self.on_progress)(self.sent);
            }
        }
        res
    }
}

/// Seconds between the flushes of a temp file while it is being written.
const FLUSH_EVERY: &str = "0.5";

/// The line a stream's command prints once its [`Lead`] passed.
pub(crate) const GO: &str = "K8SUP-GO";

/// The lock-and-drift check a host's first stream runs before its bytes, so
/// that the stream needs no round trip of its own to wait for: the bytes queue
/// in the channel meanwhile. `go` fires when it passed.
pub(crate) struct Lead<'a> {
    pub script: &'a str,
    pub go: tokio::sync::oneshot::Sender<()>,
}

/// Stream `local` into `tmp` on the host; fail unless exactly `size` bytes
/// were sent and the file still has the stamp it had when it was hashed.
/// `held` is the file's content when the apply holds it in memory (see
/// [`crate::payload`], whose verdict on the stamp is awaited before this
/// returns); otherwise the file is read from disk. With a `lead`, its script
/// runs first (stdin closed to it); a refusal is [`EngineError::Refused`],
/// with `refusal` reading the command's stdout.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream<T: Transport>(
    session: &T,
    local: &Path,
    stamp: FileStamp,
    held: Option<Arc<Held>>,
    dest: &str,
    tmp: &str,
    size: u64,
    lead: Option<Lead<'_>>,
    refusal: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), EngineError> {
    let host = session.name().to_string();
    let (dir, _) = split(dest);
    // While `cat` writes, a background loop flushes what has arrived every
    // half second, so that the install's `sync` finds little left to write:
    // ten hosts finishing their streams together would otherwise all flush
    // their whole file at once, and on a shared disk the last one waits for
    // all of them. The loop ends with the stream, when its shell is gone, or
    // when the temp file is (renamed or removed); its errors do not matter,
    // the install's own `sync` is the one that is checked.
    let mut cmd = format!(
        "umask 077; [ -d {d} ] || mkdir -p -m 755 -- {d}; if [ -e {t} ] || [ -L {t} ]; then rm -f -- {t}; fi; \
         ( while sleep {FLUSH_EVERY} && kill -0 $$ && sync -- {t}; do :; done ) </dev/null >/dev/null 2>&1 & k8sup_w=$!; \
         cat > {t}; k8sup_rc=$?; kill $k8sup_w 2>/dev/null; exit $k8sup_rc",
        d = quote(&dir),
        t = quote(tmp)
    );
    let mut signal = None;
    let led = lead.is_some();
    if let Some(lead) = lead {
        cmd = format!(
            "sh -c {}",
            quote(&format!(
                "{{\n{}\n}} </dev/null\necho {GO}\n{cmd}",
                lead.script
            ))
        );
        signal = Some(k8sup_ssh::Signal {
            line: GO,
            seen: lead.go,
        });
    }
    let interrupted = || EngineError::Cancelled {
        host: host.clone(),
        reason: format!("interrupted while uploading {dest}; the old file is still in place"),
    };
    let (out, sent, intact) = if let Some(held) = held {
        let counted = AtomicU64::new(0);
        let out = tokio::select! {
            out = session.exec_with_chunks(&cmd, held.chunks(&counted, on_progress), signal) => out,
            _ = cancel.cancelled() => return Err(interrupted()),
        };
        // The read's verdict first: a file that changed is the reason the
        // stream failed (it ends the input with an error), and a complete
        // stream of it must not be installed either.
        held.verdict(&host, local).await?;
        let sent = counted.load(Ordering::Relaxed);
        (out?, sent, sent == size)
    } else {
        let file = tokio::fs::File::open(local)
            .await
            .map_err(|e| EngineError::Local {
                path: local.to_path_buf(),
                reason: e.to_string(),
            })?;
        let reader = tokio::io::BufReader::with_capacity(256 * 1024, file);
        let mut tee = Tee {
            inner: reader,
            sent: 0,
            reported: 0,
            on_progress,
        };
        let out = tokio::select! {
            out = session.exec_with_stdin(&cmd, &mut tee, signal) => out?,
            _ = cancel.cancelled() => return Err(interrupted()),
        };
        let now = tokio::fs::metadata(local)
            .await
            .map(|m| FileStamp::of(&m))
            .ok();
        (out, tee.sent, tee.sent == size && now == Some(stamp))
    };
    finish(
        session,
        &out,
        led,
        refusal,
        local,
        dest,
        tmp,
        intact,
        on_progress,
        sent,
    )
    .await
}

/// What a finished stream means: refused by its lead, failed on the host,
/// or complete only if `intact` (every byte sent, and they were the bytes hashed).
#[allow(clippy::too_many_arguments)]
async fn finish<T: Transport>(
    session: &T,
    out: &k8sup_ssh::Output,
    led: bool,
    refusal: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    local: &Path,
    dest: &str,
    tmp: &str,
    intact: bool,
    on_progress: &(dyn Fn(u64) + Send + Sync),
    sent: u64,
) -> Result<(), EngineError> {
    let host = session.name().to_string();
    if led && let Some(reason) = refusal(&out.stdout_str()) {
        return Err(EngineError::Refused { host, reason });
    }
    if !out.success() {
        return Err(EngineError::remote(
            &host,
            format!("uploading {} to {dest}", local.display()),
            &out.stderr_str(),
        ));
    }
    if !intact {
        let _ = session.exec(&format!("rm -f -- {}", quote(tmp))).await;
        return Err(EngineError::PlanMismatch {
            host,
            reason: format!(
                "{} changed while it was being uploaded (or since the plan was made)",
                local.display()
            ),
        });
    }
    on_progress(sent);
    Ok(())
}
