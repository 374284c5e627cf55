//! Running one command on one channel: status, stdout, stderr, optional stdin.
//!
//! Each command gets its own channel on the host's single connection, so many
//! commands can run at once without new TCP/SSH handshakes.

use std::borrow::Cow;
use std::fmt;

use futures::future::{Either, select};
use russh::ChannelMsg;
use russh::client::Handle;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::SshError;
use crate::handler::ClientHandler;

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(u32),
    /// It was killed by a signal (OpenSSH then sends no exit code at all).
    Signal { signal: String, core_dumped: bool },
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The exit code, if the command exited normally.
    pub fn code(&self) -> Option<u32> {
        match self {
            ExitStatus::Code(c) => Some(*c),
            ExitStatus::Signal { .. } => None,
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal {
                signal,
                core_dumped,
            } => {
                write!(
                    f,
                    "killed by signal {signal}{}",
                    if *core_dumped { " (core dumped)" } else { "" }
                )
            }
        }
    }
}

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout as text (lossy: remote tools do not promise UTF-8).
    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stdout)
    }

    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.stderr)
    }

    /// Turn a non-zero exit into [`SshError::CommandFailed`] naming host and command.
    pub fn check(self, host: &str, command: &str) -> Result<Output, SshError> {
        if self.success() {
            return Ok(self);
        }
        Err(SshError::CommandFailed {
            host: host.to_string(),
            command: shorten(command),
            status: self.status.clone(),
            stderr_tail: tail_lines(&self.stderr_str(), 20),
        })
    }
}

/// A command cut to one line of at most 120 characters, for error messages.
pub(crate) fn shorten(command: &str) -> String {
    let one_line: String = command.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= 120 {
        one_line
    } else {
        let cut: String = one_line.chars().take(117).collect();
        format!("{cut}...")
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Where a command's stdin comes from.
pub(crate) enum Stdin<'a, R> {
    /// Nothing: EOF at once (like `ssh -n`), so a command that reads stdin cannot hang.
    Empty,
    /// These bytes (a sudo password line), then EOF.
    Bytes(&'a [u8]),
    /// These bytes (possibly none), then the reader's content, then EOF.
    Stream(&'a [u8], R),
    /// These bytes (possibly none), then each chunk as it comes, then EOF.
    /// The chunks go to the channel as they are, without a copy: what a large
    /// upload held in memory once for many hosts wants.
    Chunks(&'a [u8], Chunks<'a>),
}

/// Stdin as a stream of byte chunks (see [`crate::Session::exec_with_chunks_signalling`]).
/// An `Err` item stops the command, like a failing reader.
pub type Chunks<'a> = futures::stream::BoxStream<'a, std::io::Result<bytes::Bytes>>;

/// Tells a caller, while the command still runs, that it printed `line` (a
/// whole line of stdout): a step inside a long command is done.
pub struct Signal<'a> {
    pub line: &'a str,
    pub seen: tokio::sync::oneshot::Sender<()>,
}

fn has_line(out: &[u8], line: &str) -> bool {
    out.split(|b| *b == b'\n')
        .rev()
        .skip(1) // the part after the last newline is not a whole line yet
        .any(|l| l == line.as_bytes())
}

/// Why feeding stdin stopped.
enum FeedError {
    /// Reading the local source failed: the command must not see a truncated input.
    Local(std::io::Error),
    /// The channel went away (the command exited early); its output decides.
    Channel,
}

const CHUNK: usize = 64 * 1024;

/// Open a session channel, retrying briefly when the server refuses it.
///
/// sshd frees a session slot only once it has reaped the command's process, a
/// moment after the channel closed; a burst of commands can therefore meet
/// "no more sessions" (`MaxSessions`) although fewer than the limit are running.
/// Nothing has run yet when an open fails, so retrying is safe.
pub(crate) async fn open_channel(
    handle: &Handle<ClientHandler>,
    host: &str,
) -> Result<russh::Channel<russh::client::Msg>, SshError> {
    let mut delay = std::time::Duration::from_millis(10);
    let mut attempt = 1;
    loop {
        match handle.channel_open_session().await {
            Ok(channel) => return Ok(channel),
            Err(russh::Error::ChannelOpenFailure(why)) if attempt < 8 => {
                tracing::debug!(host, ?why, attempt, "channel refused, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(std::time::Duration::from_millis(500));
                attempt += 1;
            }
            Err(e) => return Err(SshError::ssh(host, "opening a channel", e)),
        }
    }
}

/// Run `command` on a new channel of `handle` and collect everything it returns.
pub(crate) async fn run<R: AsyncRead + Unpin + Send>(
    handle: &Handle<ClientHandler>,
    host: &str,
    command: &str,
    stdin: Stdin<'_, R>,
    mut signal: Option<Signal<'_>>,
) -> Result<Output, SshError> {
    let channel = open_channel(handle, host).await?;
    channel
        .exec(true, command)
        .await
        .map_err(|e| SshError::ssh(host, "starting a command", e))?;
    let (mut read, write) = channel.split();
    let mut guard = AbortOnDrop(Some(write));
    let write = guard.0.as_ref().expect("set just above");

    let feed = async {
        let (prefix, reader, chunks) = match stdin {
            Stdin::Empty => (&[][..], None, None),
            Stdin::Bytes(b) => (b, None, None),
            Stdin::Stream(b, r) => (b, Some(r), None),
            Stdin::Chunks(b, c) => (b, None, Some(c)),
        };
        if !prefix.is_empty() {
            write
                .data_bytes(bytes::Bytes::copy_from_slice(prefix))
                .await
                .map_err(|_| FeedError::Channel)?;
        }
        if let Some(mut r) = reader {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let n = r.read(&mut buf).await.map_err(FeedError::Local)?;
                if n == 0 {
                    break;
                }
                write
                    .data_bytes(bytes::Bytes::copy_from_slice(&buf[..n]))
                    .await
                    .map_err(|_| FeedError::Channel)?;
            }
        }
        if let Some(mut chunks) = chunks {
            use futures::StreamExt;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(FeedError::Local)?;
                if chunk.is_empty() {
                    continue;
                }
                write
                    .data_bytes(chunk)
                    .await
                    .map_err(|_| FeedError::Channel)?;
            }
        }
        write.eof().await.map_err(|_| FeedError::Channel)
    };

    let collect = async {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut status = None;
        while let Some(msg) = read.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    stdout.extend_from_slice(&data);
                    if let Some(sig) = &signal
                        && has_line(&stdout, sig.line)
                        && let Some(sig) = signal.take()
                    {
                        let _ = sig.seen.send(());
                    }
                }
                ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => {
                    status = Some(ExitStatus::Code(exit_status))
                }
                ChannelMsg::ExitSignal {
                    signal_name,
                    core_dumped,
                    ..
                } => {
                    status = Some(ExitStatus::Signal {
                        signal: signal_name_str(&signal_name),
                        core_dumped,
                    })
                }
                ChannelMsg::Failure => {
                    return Err(SshError::io(
                        host,
                        format!("running `{}`", shorten(command)),
                        std::io::Error::other("the server refused to start the command"),
                    ));
                }
                _ => {}
            }
        }
        match status {
            Some(status) => Ok(Output {
                status,
                stdout,
                stderr,
            }),
            None => Err(SshError::io(
                host,
                format!("running `{}`", shorten(command)),
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the connection closed before the command reported how it ended",
                ),
            )),
        }
    };

    let result = {
        let feed = std::pin::pin!(feed);
        let collect = std::pin::pin!(collect);
        match select(collect, feed).await {
            // The command finished; an unfinished stdin feed is simply dropped.
            Either::Left((out, _)) => out,
            Either::Right((fed, collect)) => match fed {
                Ok(()) | Err(FeedError::Channel) => collect.await,
                // The guard stops the command: it must not act on a truncated input.
                Err(FeedError::Local(e)) => {
                    return Err(SshError::io(
                        host,
                        format!("reading stdin for `{}`", shorten(command)),
                        e,
                    ));
                }
            },
        }
    };
    if result.is_ok() {
        // Finished normally: the server has closed the channel already.
        guard.0 = None;
    }
    result
}

/// Stops the remote command when [`run`] does not finish: its future dropped by
/// a caller's timeout, or stdin failing. Without it the command would go on
/// running, holding one of the server's `MaxSessions` slots.
///
/// It sends SIGTERM, then closes the channel. OpenSSH honours signal requests
/// only on privilege-separated sessions, i.e. not when logged in as root; there
/// the close still frees the slot, but a command that neither reads stdin nor
/// writes output runs to its end.
struct AbortOnDrop(Option<russh::ChannelWriteHalf<russh::client::Msg>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        let Some(write) = self.0.take() else { return };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = write.signal(russh::Sig::TERM).await;
                let _ = write.close().await;
            });
        }
    }
}

fn signal_name_str(sig: &russh::Sig) -> String {
    match sig {
        russh::Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_only() {
        assert!(has_line(b"a\nGO\nb", "GO"));
        assert!(!has_line(b"a\nGO", "GO"), "not yet a whole line");
        assert!(!has_line(b"GONE\n", "GO"));
    }

    #[test]
    fn shorten_and_tail() {
        assert_eq!(shorten("echo   a\n  b"), "echo a b");
        assert_eq!(shorten(&"x".repeat(300)).chars().count(), 120);
        assert_eq!(tail_lines("1\n2\n3\n", 2), "2\n3");
    }
}
