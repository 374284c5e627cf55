//! One authenticated connection to one host, shared by every command of a run.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use russh::client::{self, Handle};
use tokio::io::AsyncRead;
use tokio::sync::{OnceCell, Semaphore};

use crate::config::{self, Target};
use crate::error::{SshError, UnreachableCause};
use crate::exec::{self, Output, Signal, Stdin};
use crate::handler::{ClientHandler, HandlerError};
use crate::known_hosts::KnownHosts;
use crate::spec::{ConnectSpec, Sudo};
use crate::sudo::{self, SudoMode};

/// Concurrent channels per connection. OpenSSH's `MaxSessions` defaults to 10;
/// staying below it means callers can fire many commands at once without the
/// server refusing channels.
const MAX_CHANNELS: usize = 8;

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An open, authenticated SSH connection. Cheap to clone (`Arc` inside); every
/// clone shares the one connection. Commands run on their own channels and may
/// run concurrently.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    target: Target,
    handle: Handle<ClientHandler>,
    sudo: Sudo,
    sudo_mode: OnceCell<SudoMode>,
    channels: Semaphore,
    /// The bastion connection this one tunnels through; kept alive with it.
    _via: Option<Session>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.inner.name)
            .field("target", &self.inner.target.display())
            .field("user", &self.inner.target.user)
            .finish()
    }
}

fn classify_io(e: &std::io::Error) -> UnreachableCause {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => UnreachableCause::Refused,
        HostUnreachable | NetworkUnreachable => UnreachableCause::NoRoute,
        TimedOut => UnreachableCause::Other("TCP connect timed out".into()),
        _ => UnreachableCause::Other(e.to_string()),
    }
}

/// An attempt's failure: either final (host key, auth, config) or worth retrying.
enum AttemptError {
    Final(SshError),
    Transient(UnreachableCause),
}

async fn tcp_connect(host: &str, port: u16) -> Result<tokio::net::TcpStream, AttemptError> {
    let addrs: Vec<_> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| AttemptError::Transient(UnreachableCause::Resolve(e.to_string())))?
        .collect();
    let mut last = UnreachableCause::Resolve("no addresses".into());
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                // Without TCP_NODELAY every exec round trip waits on Nagle + delayed ACK (~40 ms).
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = classify_io(&e),
        }
    }
    Err(AttemptError::Transient(last))
}

fn handshake_error(e: HandlerError) -> AttemptError {
    match e {
        HandlerError::HostKey(e) => AttemptError::Final(*e),
        HandlerError::Russh(russh::Error::IO(io)) => AttemptError::Transient(classify_io(&io)),
        HandlerError::Russh(e) => AttemptError::Transient(UnreachableCause::Other(format!(
            "SSH handshake failed: {e}"
        ))),
    }
}

/// One attempt: TCP (or a tunnel through the bastion), handshake, host key, login.
/// AES-GCM first where the CPU has AES instructions: russh's AES-GCM then
/// runs in hardware, while its ChaCha20-Poly1305 (russh's default first
/// choice) is software, and bulk uploads (binaries to every host) are bound
/// by the cipher. ChaCha20 first elsewhere, as OpenSSH does.
fn cipher_order() -> &'static [russh::cipher::Name] {
    use russh::cipher::{AES_128_CTR, AES_192_CTR, AES_256_CTR, AES_256_GCM, CHACHA20_POLY1305};
    static HW: &[russh::cipher::Name] = &[
        AES_256_GCM,
        CHACHA20_POLY1305,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    static SW: &[russh::cipher::Name] = &[
        CHACHA20_POLY1305,
        AES_256_GCM,
        AES_256_CTR,
        AES_192_CTR,
        AES_128_CTR,
    ];
    #[cfg(target_arch = "x86_64")]
    let hw = std::arch::is_x86_feature_detected!("aes")
        && std::arch::is_x86_feature_detected!("pclmulqdq");
    #[cfg(target_arch = "aarch64")]
    let hw = std::arch::is_aarch64_feature_detected!("aes");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let hw = false;
    if hw { HW } else { SW }
}

async fn establish(
    spec: &ConnectSpec,
    target: &Target,
    via: Option<&Session>,
) -> Result<Handle<ClientHandler>, AttemptError> {
    let known = KnownHosts::load(&target.known_hosts_files)
        .map_err(|e| AttemptError::Final(SshError::io(&spec.name, "reading known_hosts", e)))?;
    let preferred = russh::Preferred {
        key: Cow::Owned(known.preferred_key_algorithms(&target.host, target.port)),
        host_key_certificates: Cow::Owned(known.certificate_algorithms(&target.host, target.port)),
        cipher: Cow::Borrowed(cipher_order()),
        ..Default::default()
    };
    let config = Arc::new(client::Config {
        nodelay: true,
        preferred,
        // Notice a dead peer during a long run instead of hanging on it.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        ..Default::default()
    });
    let handler = ClientHandler {
        name: spec.name.clone(),
        host: target.host.clone(),
        port: target.port,
        known,
        policy: spec.host_key_policy,
    };
    let mut handle = match via {
        None => {
            let stream = crate::quickack::QuickAck(tcp_connect(&target.host, target.port).await?);
            client::connect_stream(config, stream, handler)
                .await
                .map_err(handshake_error)?
        }
        Some(jump) => {
            let channel = jump
                .inner
                .handle
                .channel_open_direct_tcpip(target.host.clone(), target.port as u32, "127.0.0.1", 0)
                .await
                .map_err(|e| {
                    AttemptError::Transient(UnreachableCause::Other(format!(
                        "jump host {} could not open a connection to it: {e}",
                        jump.inner.target.display()
                    )))
                })?;
            client::connect_stream(config, channel.into_stream(), handler)
                .await
                .map_err(handshake_error)?
        }
    };
    crate::auth::authenticate(&mut handle, &spec.name, target)
        .await
        .map_err(AttemptError::Final)?;
    Ok(handle)
}

impl Session {
    /// Connect, verify the host key, and log in.
    ///
    /// Transport failures are retried `spec.retries` times with exponential backoff,
    /// each attempt bounded by `spec.connect_timeout`. Host-key, authentication and
    /// configuration errors are returned at once.
    pub async fn connect(spec: &ConnectSpec) -> Result<Session, SshError> {
        let target = config::resolve(spec)?;
        let via = match &target.proxy_jump {
            Some(jump) => {
                Some(
                    Box::pin(Session::connect(jump))
                        .await
                        .map_err(|e| SshError::Jump {
                            host: spec.name.clone(),
                            source: Arc::new(e),
                        })?,
                )
            }
            None => None,
        };
        Session::connect_resolved(spec, target, via).await
    }

    /// Connect to an already resolved target, through `via` if given (the fleet
    /// shares one bastion connection between all hosts behind it).
    pub(crate) async fn connect_resolved(
        spec: &ConnectSpec,
        target: Target,
        via: Option<Session>,
    ) -> Result<Session, SshError> {
        let attempts = spec.retries.saturating_add(1);
        let mut delay = FIRST_BACKOFF;
        let mut cause = UnreachableCause::Other("not attempted".into());
        for attempt in 1..=attempts {
            let started = std::time::Instant::now();
            match tokio::time::timeout(spec.connect_timeout, establish(spec, &target, via.as_ref()))
                .await
            {
                Ok(Ok(handle)) => {
                    tracing::debug!(host = %spec.name, target = %target.display(), user = %target.user,
                        ms = started.elapsed().as_millis() as u64, "connected");
                    return Ok(Session {
                        inner: Arc::new(Inner {
                            name: spec.name.clone(),
                            target,
                            handle,
                            sudo: spec.sudo.clone(),
                            sudo_mode: OnceCell::new(),
                            channels: Semaphore::new(MAX_CHANNELS),
                            _via: via,
                        }),
                    });
                }
                Ok(Err(AttemptError::Final(e))) => return Err(e),
                Ok(Err(AttemptError::Transient(c))) => cause = c,
                Err(_) => cause = UnreachableCause::Timeout(spec.connect_timeout),
            }
            if attempt < attempts {
                tracing::debug!(host = %spec.name, attempt, cause = %cause, "connection attempt failed, retrying");
                let jitter = Duration::from_millis(rand::random::<u64>() % 100);
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
        Err(SshError::Unreachable {
            host: spec.name.clone(),
            target: target.display(),
            attempts,
            cause,
        })
    }

    /// The inventory name this session was opened for.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A `direct-tcpip` channel to `host:port` as the remote host reaches it
    /// (see `forward.rs`).
    pub(crate) async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u16,
        from_ip: &str,
        from_port: u16,
    ) -> Result<russh::Channel<client::Msg>, SshError> {
        self.inner
            .handle
            .channel_open_direct_tcpip(
                host.to_string(),
                port as u32,
                from_ip.to_string(),
                from_port as u32,
            )
            .await
            .map_err(|e| {
                self.io_error(
                    &format!("forwarding to {host}:{port}"),
                    std::io::Error::other(e.to_string()),
                )
            })
    }

    pub(crate) fn io_error(&self, context: &str, source: std::io::Error) -> SshError {
        SshError::Io {
            host: self.inner.name.clone(),
            context: context.to_string(),
            source,
        }
    }

    /// The login user.
    pub fn user(&self) -> &str {
        &self.inner.target.user
    }

    /// Whether the connection is gone (host rebooted, network cut, keepalives
    /// unanswered for 45 s). A closed session fails every call; connect again.
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Run `cmd` (a `sh` command line) as the login user, without sudo.
    pub async fn exec_as_login(&self, cmd: &str) -> Result<Output, SshError> {
        self.run(cmd, Stdin::<tokio::io::Empty>::Empty).await
    }

    /// Run `cmd` as root: directly when logged in as root, else through sudo (see
    /// [`Sudo`]). A non-zero exit is returned in the [`Output`], not as an error.
    pub async fn exec(&self, cmd: &str) -> Result<Output, SshError> {
        let (wrapped, password) = self.as_root(cmd).await?;
        self.run(
            &wrapped,
            Stdin::<tokio::io::Empty>::Bytes(password.as_bytes()),
        )
        .await
    }

    /// `cmd` wrapped to run as root on this connection, and what its stdin
    /// must start with: the sudo password line when sudo wants one (empty
    /// otherwise). The password never reaches a command line.
    async fn as_root(&self, cmd: &str) -> Result<(String, zeroize::Zeroizing<String>), SshError> {
        let mode = self.sudo_mode().await?;
        let password = match (mode, &self.inner.sudo) {
            (SudoMode::Password, Sudo::Password(pw)) => pw.stdin_line(),
            _ => zeroize::Zeroizing::new(String::new()),
        };
        Ok((sudo::wrap(mode, cmd), password))
    }

    /// [`Session::exec`], with a non-zero exit turned into [`SshError::CommandFailed`]
    /// (host, shortened command, last 20 lines of stderr).
    pub async fn exec_checked(&self, cmd: &str) -> Result<Output, SshError> {
        self.exec(cmd).await?.check(&self.inner.name, cmd)
    }

    /// Run `cmd` as root with `stdin` streamed to it (never held whole in memory).
    pub async fn exec_with_stdin<R: AsyncRead + Unpin + Send>(
        &self,
        cmd: &str,
        stdin: R,
    ) -> Result<Output, SshError> {
        self.exec_with_stdin_signalling(cmd, stdin, None).await
    }

    /// [`Session::exec_with_stdin`], also sending `signal.seen` as soon as the
    /// command prints `signal.line` (e.g. "locked, now streaming").
    pub async fn exec_with_stdin_signalling<R: AsyncRead + Unpin + Send>(
        &self,
        cmd: &str,
        stdin: R,
        signal: Option<Signal<'_>>,
    ) -> Result<Output, SshError> {
        let (wrapped, password) = self.as_root(cmd).await?;
        self.run_signalling(&wrapped, Stdin::Stream(password.as_bytes(), stdin), signal)
            .await
    }

    /// [`Session::exec_with_stdin_signalling`] with stdin given as chunks of
    /// bytes that go to the channel without being copied: for content already
    /// in memory (one large file sent to many hosts), where reading it through
    /// an [`AsyncRead`] would copy every byte twice more per host.
    pub async fn exec_with_chunks_signalling(
        &self,
        cmd: &str,
        stdin: crate::exec::Chunks<'_>,
        signal: Option<Signal<'_>>,
    ) -> Result<Output, SshError> {
        let (wrapped, password) = self.as_root(cmd).await?;
        self.run_signalling(
            &wrapped,
            Stdin::<tokio::io::Empty>::Chunks(password.as_bytes(), stdin),
            signal,
        )
        .await
    }

    /// Close the connection (and its bastion's, if this was the last user of it).
    /// Other clones of this session fail from then on.
    pub async fn close(self) {
        let _ = self
            .inner
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "en")
            .await;
    }

    /// One command on its own channel, bounded by [`MAX_CHANNELS`].
    async fn run<R: AsyncRead + Unpin + Send>(
        &self,
        cmd: &str,
        stdin: Stdin<'_, R>,
    ) -> Result<Output, SshError> {
        self.run_signalling(cmd, stdin, None).await
    }

    async fn run_signalling<R: AsyncRead + Unpin + Send>(
        &self,
        cmd: &str,
        stdin: Stdin<'_, R>,
        signal: Option<Signal<'_>>,
    ) -> Result<Output, SshError> {
        let _permit = self
            .inner
            .channels
            .acquire()
            .await
            .expect("the channel semaphore is never closed");
        let started = std::time::Instant::now();
        let out = exec::run(&self.inner.handle, &self.inner.name, cmd, stdin, signal).await;
        if let Ok(o) = &out {
            tracing::trace!(host = %self.inner.name, command = %exec::shorten(cmd), status = %o.status,
                ms = started.elapsed().as_millis() as u64, "exec");
        }
        out
    }

    /// How to become root on this connection, probed once (see [`crate::sudo`]).
    pub(crate) async fn sudo_mode(&self) -> Result<SudoMode, SshError> {
        self.inner
            .sudo_mode
            .get_or_try_init(|| self.probe_sudo())
            .await
            .copied()
    }

    async fn probe_sudo(&self) -> Result<SudoMode, SshError> {
        if self.inner.target.user == "root" || matches!(self.inner.sudo, Sudo::Never) {
            return Ok(SudoMode::Direct);
        }
        let fail = |reason: String| SshError::Sudo {
            host: self.inner.name.clone(),
            user: self.inner.target.user.clone(),
            reason,
        };
        let probe = self.exec_as_login(sudo::PROBE_PASSWORDLESS).await?;
        if probe.success() {
            return Ok(SudoMode::Passwordless);
        }
        let stderr = probe.stderr_str();
        if probe.status.code() == Some(127) {
            return Err(fail(
                "sudo is not installed on the host: install it, or log in as root".into(),
            ));
        }
        if !sudo::wants_password(&stderr) {
            return Err(fail(sudo::reason(&stderr)));
        }
        let Sudo::Password(pw) = &self.inner.sudo else {
            return Err(fail(format!(
                "sudo wants a password for {}: give a sudo password in the inventory, or allow NOPASSWD for this user",
                self.inner.target.user
            )));
        };
        let line = pw.stdin_line();
        let check = self
            .run(
                sudo::PROBE_PASSWORD,
                Stdin::<tokio::io::Empty>::Bytes(line.as_bytes()),
            )
            .await?;
        if check.success() {
            Ok(SudoMode::Password)
        } else {
            Err(fail(format!(
                "sudo rejected the configured password ({})",
                sudo::reason(&check.stderr_str())
            )))
        }
    }
}
