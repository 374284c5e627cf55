//! A [`Transport`] that runs the engine's scripts under a local `sh`: a
//! "host" whose files live in a temp directory. For tests: observe → plan →
//! apply of directories, files, binaries, symlinks, guarded commands and
//! probes, drift refusal, the run lock, idempotence and phases, in seconds and
//! without root.
//!
//! How it is rooted, and its limits (the simplest honest design):
//! - The engine's own state (the run lock, the stat cache) lives under
//!   `ROOT/var/lib/k8sup`: every engine script names that directory as
//!   `${K8SUP_STATE_DIR:-/var/lib/k8sup}`, and this transport sets
//!   `K8SUP_STATE_DIR` (nothing sets it on a real host, where sudo resets
//!   the environment anyway).
//! - Resource paths are NOT rewritten: a test declares its resources under
//!   [`LocalHost::path`] (`ROOT/etc/demo`). Rewriting paths inside generated
//!   shell would test a different script than the one hosts run.
//! - systemd is not there: `systemctl` is shadowed by a stub that fails
//!   saying so, so a unit or service resource fails its observation instead
//!   of touching the machine's own systemd. Units and services stay
//!   lab-tested, as do sudo, SSH and owners other than the current user.
//! - Scripts run as the current user, in `ROOT`, with the machine's tools
//!   (`stat`, `sha256sum`, `base64`, `curl`) and its `/tmp`.
//!
//! Every call counts as one exec ([`LocalHost::execs`]), so tests can assert
//! "a no-op costs one exec per host".

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use k8sup_ssh::{Chunks, ExitStatus, Output, Signal};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::EngineError;
use crate::transport::Transport;

/// A host rooted in a local directory (see the module docs).
#[derive(Clone)]
pub struct LocalHost {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    root: PathBuf,
    path_env: String,
    execs: AtomicUsize,
    log: std::sync::Mutex<Vec<String>>,
}

const SYSTEMCTL_STUB: &str = "#!/bin/sh\necho 'systemctl: not available on a k8sup LocalHost (units and services are lab-tested)' >&2\nexit 1\n";

impl LocalHost {
    /// A host called `name` whose files live under `root` (created if missing).
    pub fn new(name: impl Into<String>, root: impl Into<PathBuf>) -> std::io::Result<LocalHost> {
        use std::os::unix::fs::PermissionsExt;
        let root = root.into();
        let bin = root.join(".k8sup-local/bin");
        std::fs::create_dir_all(&bin)?;
        let stub = bin.join("systemctl");
        std::fs::write(&stub, SYSTEMCTL_STUB)?;
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755))?;
        let path_env = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        Ok(LocalHost {
            inner: Arc::new(Inner {
                name: name.into(),
                root,
                path_env,
                execs: AtomicUsize::new(0),
                log: std::sync::Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// `path` (absolute, as on a host) inside this host's root.
    pub fn path(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.inner.root.display(),
            path.trim_start_matches('/')
        )
    }

    /// Where the engine keeps its state on this host (the run lock is `run.lock` in it).
    pub fn state_dir(&self) -> PathBuf {
        self.inner.root.join("var/lib/k8sup")
    }

    /// How many commands were run on this host so far.
    pub fn execs(&self) -> usize {
        self.inner.execs.load(Ordering::SeqCst)
    }

    /// The commands run so far, in order (for tests that check what went to the host).
    pub fn commands(&self) -> Vec<String> {
        self.inner.log.lock().expect("log lock").clone()
    }

    fn command(&self, cmd: &str) -> tokio::process::Command {
        self.inner.execs.fetch_add(1, Ordering::SeqCst);
        self.inner
            .log
            .lock()
            .expect("log lock")
            .push(cmd.to_string());
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c")
            .arg(cmd)
            .current_dir(&self.inner.root)
            .env("K8SUP_STATE_DIR", self.state_dir())
            .env("PATH", &self.inner.path_env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    fn io(&self, context: &str, e: std::io::Error) -> EngineError {
        EngineError::Remote {
            host: self.inner.name.clone(),
            context: context.to_string(),
            stderr_tail: e.to_string(),
        }
    }

    async fn run(
        &self,
        cmd: &str,
        stdin: Input<'_, impl AsyncRead + Unpin + Send>,
        signal: Option<Signal<'_>>,
    ) -> Result<Output, EngineError> {
        let mut c = self.command(cmd);
        c.stdin(match stdin {
            Input::Empty => Stdio::null(),
            _ => Stdio::piped(),
        });
        let mut child = c.spawn().map_err(|e| self.io("starting sh", e))?;
        let mut out = child.stdout.take().expect("piped");
        let mut err = child.stderr.take().expect("piped");
        let feed = async {
            let Some(mut w) = child.stdin.take() else {
                return;
            };
            // A command that stops reading early closes the pipe: not an error here,
            // its exit status says what happened.
            match stdin {
                Input::Empty => {}
                Input::Reader(mut r) => {
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
                Input::Chunks(mut s) => {
                    while let Some(chunk) = s.next().await {
                        match chunk {
                            Ok(b) => {
                                if w.write_all(&b).await.is_err() {
                                    break;
                                }
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
            let _ = w.shutdown().await;
        };
        let read_out = async {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let mut signal = signal;
            loop {
                let n = out.read(&mut chunk).await?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if signal.as_ref().is_some_and(|s| has_line(&buf, s.line))
                    && let Some(s) = signal.take()
                {
                    let _ = s.seen.send(());
                }
            }
            Ok::<_, std::io::Error>(buf)
        };
        let read_err = async {
            let mut buf = Vec::new();
            err.read_to_end(&mut buf).await.map(|_| buf)
        };
        let ((), stdout, stderr) = tokio::join!(feed, read_out, read_err);
        let status = child
            .wait()
            .await
            .map_err(|e| self.io("waiting for sh", e))?;
        use std::os::unix::process::ExitStatusExt;
        let status = match (status.code(), status.signal()) {
            (Some(c), _) => ExitStatus::Code(c as u32),
            (None, Some(s)) => ExitStatus::Signal {
                signal: s.to_string(),
                core_dumped: status.core_dumped(),
            },
            (None, None) => ExitStatus::Code(255),
        };
        Ok(Output {
            status,
            stdout: stdout.map_err(|e| self.io("reading stdout", e))?,
            stderr: stderr.map_err(|e| self.io("reading stderr", e))?,
        })
    }
}

enum Input<'a, R> {
    Empty,
    Reader(R),
    Chunks(Chunks<'a>),
}

fn has_line(out: &[u8], line: &str) -> bool {
    out.split(|b| *b == b'\n')
        .rev()
        .skip(1)
        .any(|l| l == line.as_bytes())
}

impl Transport for LocalHost {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn exec(&self, cmd: &str) -> Result<Output, EngineError> {
        self.run(cmd, Input::<tokio::io::Empty>::Empty, None).await
    }

    async fn exec_with_stdin<R: AsyncRead + Unpin + Send>(
        &self,
        cmd: &str,
        stdin: R,
        signal: Option<Signal<'_>>,
    ) -> Result<Output, EngineError> {
        self.run(cmd, Input::Reader(stdin), signal).await
    }

    async fn exec_with_chunks(
        &self,
        cmd: &str,
        stdin: Chunks<'_>,
        signal: Option<Signal<'_>>,
    ) -> Result<Output, EngineError> {
        self.run(cmd, Input::<tokio::io::Empty>::Chunks(stdin), signal)
            .await
    }
}
