//! The seam between the engine and a host: run a shell command as root,
//! optionally with stdin, and get its exit status, stdout and stderr.
//!
//! Why a trait: everything the engine does to a host is a generated `sh`
//! script, so what it needs of a connection is small (this trait), and a
//! second implementation, [`crate::LocalHost`], runs the same scripts under a
//! local `sh`. That makes observe → plan → apply testable in seconds without
//! root or lab machines; what only a real host shows (systemd, sudo, SSH,
//! uploads over a real link) stays in the lab tests.
//!
//! [`k8sup_ssh::Session`] is the production implementation: each call is one
//! exec on the host's single connection.

use std::future::Future;

use k8sup_ssh::{Chunks, Output, Session, Signal};
use tokio::io::AsyncRead;

use crate::error::EngineError;

/// What the engine uses of a connection to one host. Cloning must be cheap
/// and give a handle to the same host (the apply keeps one in a background
/// task that refreshes the run lock).
pub trait Transport: Clone + Send + Sync + 'static {
    /// The host's name (as in the desired states), used in errors.
    fn name(&self) -> &str;

    /// Run `cmd` (a `sh` command line) as root, stdin empty. A non-zero exit
    /// is returned in the [`Output`], not as an error.
    fn exec(&self, cmd: &str) -> impl Future<Output = Result<Output, EngineError>> + Send;

    /// [`Transport::exec`] with `stdin` streamed to the command; `signal`
    /// fires as soon as the command prints `signal.line` on stdout.
    fn exec_with_stdin<R: AsyncRead + Unpin + Send>(
        &self,
        cmd: &str,
        stdin: R,
        signal: Option<Signal<'_>>,
    ) -> impl Future<Output = Result<Output, EngineError>> + Send;

    /// [`Transport::exec_with_stdin`] with stdin given as chunks of bytes
    /// already in memory (a large file sent to many hosts).
    fn exec_with_chunks(
        &self,
        cmd: &str,
        stdin: Chunks<'_>,
        signal: Option<Signal<'_>>,
    ) -> impl Future<Output = Result<Output, EngineError>> + Send;
}

impl Transport for Session {
    fn name(&self) -> &str {
        Session::name(self)
    }

    async fn exec(&self, cmd: &str) -> Result<Output, EngineError> {
        Ok(Session::exec(self, cmd).await?)
    }

    async fn exec_with_stdin<R: AsyncRead + Unpin + Send>(
        &self,
        cmd: &str,
        stdin: R,
        signal: Option<Signal<'_>>,
    ) -> Result<Output, EngineError> {
        Ok(self.exec_with_stdin_signalling(cmd, stdin, signal).await?)
    }

    async fn exec_with_chunks(
        &self,
        cmd: &str,
        stdin: Chunks<'_>,
        signal: Option<Signal<'_>>,
    ) -> Result<Output, EngineError> {
        Ok(self.exec_with_chunks_signalling(cmd, stdin, signal).await?)
    }
}
