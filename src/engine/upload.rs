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
//! the file again per host. SSH's MAC guards the transfer itself. Nothing ever
//! renames a temp file whose stream did not complete, so an interrupted run
//! leaves the old file.

use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use k8sup_ssh::{Session, quote};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::sync::CancellationToken;

use crate::content::FileStamp;
use crate::error::EngineError;
use crate::ops::split;

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
            if self.sent - self.reported >= 4 << 20 {
                self.reported = self.sent;
                (self.on_progress)(self.sent);
            }
        }
        res
    }
}

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
/// With a `lead`, its script runs first (stdin closed to it); a refusal is
/// [`EngineError::Refused`], with `refusal` reading the command's stdout.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stream(
    session: &Session,
    local: &Path,
    stamp: FileStamp,
    dest: &str,
    tmp: &str,
    size: u64,
    lead: Option<Lead<'_>>,
    refusal: &(dyn Fn(&str) -> Option<String> + Send + Sync),
    cancel: &CancellationToken,
    on_progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<(), EngineError> {
    let host = session.name().to_string();
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
    let (dir, _) = split(dest);
    let mut cmd = format!(
        "umask 077; [ -d {d} ] || mkdir -p -m 755 -- {d}; rm -f -- {t}; cat > {t}",
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
    let out = tokio::select! {
        out = session.exec_with_stdin_signalling(&cmd, &mut tee, signal) => out?,
        _ = cancel.cancelled() => {
            return Err(EngineError::Cancelled { host, reason: format!("interrupted while uploading {dest}; the old file is still in place") });
        }
    };
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
    let now = tokio::fs::metadata(local)
        .await
        .map(|m| FileStamp::of(&m))
        .ok();
    if tee.sent != size || now != Some(stamp) {
        let _ = session.exec(&format!("rm -f -- {}", quote(tmp))).await;
        return Err(EngineError::PlanMismatch {
            host,
            reason: format!(
                "{} changed while it was being uploaded (or since the plan was made)",
                local.display()
            ),
        });
    }
    on_progress(tee.sent);
    Ok(())
}
