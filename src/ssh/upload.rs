//! Atomic, idempotent file upload.
//!
//! Round trips, not bandwidth, dominate a no-op apply, so an unchanged file costs
//! exactly one exec (`sha256sum` + `stat`). A changed file is streamed over SFTP
//! (about twice as fast as `cat > file` over exec on loopback) into a temp file in
//! the destination's directory, fsynced, checked against the local SHA-256, given
//! its mode and owner, and renamed over the destination. An interrupted upload
//! therefore leaves the old file (plus a temp file named `.NAME.k8sup-tmp.*`,
//! removed by the next upload of that destination), never a partial one.
//!
//! For a non-root login with sudo, the SFTP server itself is started through sudo
//! (`sudo -n /usr/lib/openssh/sftp-server`), so root-owned directories are
//! written directly, with no second copy.

use std::path::Path;

use russh_sftp::client::SftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};

use crate::error::SshError;
use crate::session::Session;
use crate::shell::quote;
use crate::sudo::SudoMode;

/// Where distributions install OpenSSH's SFTP server binary.
const SFTP_SERVER_PATHS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/sftp-server",
];

/// Mode and ownership of an uploaded file.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Permission bits, e.g. `0o644`; `0o600` for secrets.
    pub mode: u32,
    /// Owner name; `None` keeps whoever writes the file (root under sudo).
    pub owner: Option<String>,
    /// Group name; `None` keeps the writer's group.
    pub group: Option<String>,
    /// Create missing parent directories (mode 0755).
    pub create_parent_dirs: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            mode: 0o644,
            owner: None,
            group: None,
            create_parent_dirs: true,
        }
    }
}

/// What [`Session::upload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Same content, mode and owner already on the host: nothing touched.
    Unchanged,
    /// Same content; only mode or owner were corrected.
    AttributesChanged,
    /// New content written (this many bytes).
    Written { bytes: u64 },
}

/// The state of the destination, from one remote command.
#[derive(Debug)]
struct Remote {
    sha256: Option<String>,
    mode: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    sftp_server: Option<String>,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// SHA-256 and size of a local file, read in chunks (never whole in memory).
async fn local_digest(path: &Path) -> std::io::Result<(String, u64)> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(h.finalize()), size))
}

fn split_remote(remote: &str) -> Option<(String, String)> {
    let (dir, base) = remote.rsplit_once('/')?;
    if base.is_empty() || base == "." || base == ".." {
        return None;
    }
    Some((
        if dir.is_empty() {
            "/".to_string()
        } else {
            dir.to_string()
        },
        base.to_string(),
    ))
}

pub(crate) async fn upload(
    session: &Session,
    local: &Path,
    remote: &str,
    opts: &UploadOptions,
) -> Result<UploadOutcome, SshError> {
    let fail = |reason: String| SshError::Upload {
        host: session.name().to_string(),
        local: local.to_path_buf(),
        remote: remote.to_string(),
        reason,
    };
    let Some((dir, base)) = split_remote(remote).filter(|_| remote.starts_with('/')) else {
        return Err(fail("the destination must be an absolute file path".into()));
    };
    for name in [&opts.owner, &opts.group].into_iter().flatten() {
        if !valid_name(name) {
            return Err(fail(format!("invalid owner/group name {name:?}")));
        }
    }
    if opts.mode > 0o7777 {
        return Err(fail(format!("invalid mode {:o}", opts.mode)));
    }
    match tokio::fs::metadata(local).await {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(fail("the local path is not a regular file".into())),
        Err(e) => return Err(fail(format!("reading the local file: {e}"))),
    }
    // Hash locally while the host answers what it has: they overlap.
    let (digest, state) = tokio::join!(
        local_digest(local),
        inspect(session, &dir, remote, opts, &fail)
    );
    let (sha, size) = digest.map_err(|e| fail(format!("reading the local file: {e}")))?;
    let state = state?;
    let mode = format!("{:o}", opts.mode);
    let attrs_ok = state.mode.as_deref() == Some(mode.as_str())
        && opts
            .owner
            .as_ref()
            .is_none_or(|o| state.owner.as_ref() == Some(o))
        && opts
            .group
            .as_ref()
            .is_none_or(|g| state.group.as_ref() == Some(g));
    if state.sha256.as_deref() == Some(sha.as_str()) {
        if attrs_ok {
            return Ok(UploadOutcome::Unchanged);
        }
        session.exec_checked(&attrs_script(opts, remote)).await?;
        return Ok(UploadOutcome::AttributesChanged);
    }

    let tmp = format!("{dir}/.{base}.k8sup-tmp.{:016x}", rand::random::<u64>());
    let mode_now = session.sudo_mode().await?;
    match write_sftp(session, local, &tmp, state.sftp_server.as_deref(), mode_now).await {
        Ok(()) => {}
        Err(SftpError::Unavailable(why)) => {
            tracing::debug!(host = %session.name(), reason = %why, "SFTP unavailable, uploading with cat");
            if let Err(e) = write_cat(session, local, &tmp).await {
                let _ = session.exec(&format!("rm -f -- {}", quote(&tmp))).await;
                return Err(fail(format!("writing {tmp}: {e}")));
            }
        }
        Err(SftpError::Failed(e)) => {
            let _ = session.exec(&format!("rm -f -- {}", quote(&tmp))).await;
            return Err(fail(format!("writing {tmp} over SFTP: {e}")));
        }
    }

    // Verify, set attributes, rename into place, and clear stale temps of earlier
    // interrupted uploads of the same destination.
    let q_tmp = quote(&tmp);
    let script = format!(
        "set -e; t={q_tmp}; \
         if [ \"$(sha256sum < \"$t\" | cut -c1-64)\" != {sha} ]; then rm -f -- \"$t\"; echo 'content on the host does not match the local SHA-256 (file changed while uploading?)' >&2; exit 1; fi; \
         {attrs} mv -f -- \"$t\" {q_dest}; rm -f -- {q_dir}/.{q_base}.k8sup-tmp.*",
        attrs = attrs_script(opts, &tmp),
        q_dest = quote(remote),
        q_dir = quote(&dir),
        q_base = quote(&base),
    );
    let out = session.exec(&script).await?;
    if !out.success() {
        let _ = session.exec(&format!("rm -f -- {q_tmp}")).await;
        return Err(fail(crate::exec::tail_lines(&out.stderr_str(), 5)));
    }
    Ok(UploadOutcome::Written { bytes: size })
}

/// `chmod`/`chown` commands (each ending in `;`) for `path`.
fn attrs_script(opts: &UploadOptions, path: &str) -> String {
    // chown before chmod: chown clears set-id bits.
    let q = quote(path);
    let chown = match (&opts.owner, &opts.group) {
        (Some(o), Some(g)) => format!("chown {o}:{g} -- {q}; "),
        (Some(o), None) => format!("chown {o} -- {q}; "),
        (None, Some(g)) => format!("chgrp {g} -- {q}; "),
        (None, None) => String::new(),
    };
    format!("{chown}chmod {:o} -- {q};", opts.mode)
}

/// One exec: make the directory if asked, report hash and attributes of the
/// destination, and find the SFTP server binary.
async fn inspect(
    session: &Session,
    dir: &str,
    remote: &str,
    opts: &UploadOptions,
    fail: &(dyn Fn(String) -> SshError + Sync),
) -> Result<Remote, SshError> {
    let mkdir = if opts.create_parent_dirs {
        format!("[ -d {d} ] || mkdir -p -m 0755 -- {d};", d = quote(dir))
    } else {
        String::new()
    };
    let script = format!(
        "{mkdir} f={f}; if [ -d \"$f\" ]; then echo \"$f is a directory\" >&2; exit 1; fi; \
         if [ -f \"$f\" ]; then sha256sum < \"$f\" | cut -c1-64; stat -c '%a %U %G' -- \"$f\"; \
         else echo absent; echo; fi; for p in {paths}; do if [ -x \"$p\" ]; then echo \"$p\"; break; fi; done",
        f = quote(remote),
        paths = SFTP_SERVER_PATHS.join(" "),
    );
    let out = session.exec(&script).await?;
    if !out.success() {
        return Err(fail(format!(
            "inspecting the destination: {}",
            crate::exec::tail_lines(&out.stderr_str(), 5)
        )));
    }
    let text = out.stdout_str();
    let mut lines = text.lines();
    let sha256 = lines
        .next()
        .map(str::trim)
        .filter(|l| l.len() == 64)
        .map(str::to_string);
    let mut attrs = lines
        .next()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_string);
    let sftp_server = lines
        .next()
        .map(str::trim)
        .filter(|l| l.starts_with('/'))
        .map(str::to_string);
    Ok(Remote {
        sha256,
        mode: attrs.next(),
        owner: attrs.next(),
        group: attrs.next(),
        sftp_server,
    })
}

/// Why SFTP did not do the job.
enum SftpError {
    /// No SFTP on this host (subsystem disabled, no server binary): use `cat`.
    Unavailable(String),
    /// SFTP started but the transfer failed.
    Failed(String),
}

/// Wait for the server's answer to a subsystem/exec request.
async fn accepted(channel: &mut russh::Channel<russh::client::Msg>) -> bool {
    while let Some(msg) = channel.wait().await {
        match msg {
            russh::ChannelMsg::Success => return true,
            russh::ChannelMsg::Failure | russh::ChannelMsg::Close | russh::ChannelMsg::Eof => {
                return false;
            }
            _ => {}
        }
    }
    false
}

/// Stream the file over SFTP into `tmp`: the `sftp` subsystem when we are
/// already root (or not using sudo), else the SFTP server binary run by sudo.
async fn write_sftp(
    session: &Session,
    local: &Path,
    tmp: &str,
    sftp_server: Option<&str>,
    mode: SudoMode,
) -> Result<(), SftpError> {
    use SftpError::{Failed, Unavailable};
    let _permit = session.channel_permit().await;
    let mut channel = crate::exec::open_channel(session.handle(), session.name())
        .await
        .map_err(|e| Failed(e.to_string()))?;
    match (mode, sftp_server) {
        (SudoMode::Direct, _) => channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| Failed(e.to_string()))?,
        (SudoMode::Passwordless, Some(server)) => channel
            .exec(true, format!("sudo -n -- {}", quote(server)))
            .await
            .map_err(|e| Failed(e.to_string()))?,
        (SudoMode::Password, Some(server)) => {
            channel
                .exec(true, format!("sudo -k -S -p '' -- {}", quote(server)))
                .await
                .map_err(|e| Failed(e.to_string()))?;
            let pw = session
                .sudo_password()
                .ok_or_else(|| Failed("no sudo password".into()))?;
            let line = pw.stdin_line();
            channel
                .data_bytes(bytes::Bytes::copy_from_slice(line.as_bytes()))
                .await
                .map_err(|e| Failed(e.to_string()))?;
        }
        (_, None) => {
            return Err(Unavailable(
                "no SFTP server binary found on the host".into(),
            ));
        }
    }
    if !accepted(&mut channel).await {
        return Err(Unavailable("the server refused the SFTP subsystem".into()));
    }
    let config = russh_sftp::client::Config {
        // 64 x 32 KiB in flight keeps a high-latency (bastion, WAN) link busy; the
        // default 16 caps throughput at 512 KiB per round trip.
        max_concurrent_writes: 64,
        // fsync of a large file on a busy disk can take longer than the 10 s default.
        request_timeout_secs: 120,
        ..Default::default()
    };
    let sftp = SftpSession::new_with_config(channel.into_stream(), config)
        .await
        .map_err(|e| Unavailable(format!("starting SFTP: {e}")))?;
    // Created 0600 so a secret is never readable, even for a moment, before chmod.
    let attrs = FileAttributes {
        permissions: Some(0o600),
        ..FileAttributes::empty()
    };
    let mut file = sftp
        .open_with_flags_and_attributes(
            tmp,
            OpenFlags::CREATE | OpenFlags::EXCLUDE | OpenFlags::WRITE,
            attrs,
        )
        .await
        .map_err(|e| Failed(format!("creating the temp file: {e}")))?;
    let src = tokio::fs::File::open(local)
        .await
        .map_err(|e| Failed(e.to_string()))?;
    let mut src = BufReader::with_capacity(256 * 1024, src);
    tokio::io::copy_buf(&mut src, &mut file)
        .await
        .map_err(|e| Failed(e.to_string()))?;
    file.flush().await.map_err(|e| Failed(e.to_string()))?;
    file.sync_all()
        .await
        .map_err(|e| Failed(format!("fsync: {e}")))?;
    file.shutdown().await.map_err(|e| Failed(e.to_string()))?;
    let _ = sftp.close().await;
    Ok(())
}

/// Fallback without an SFTP server: `cat > tmp` over exec, then fsync.
async fn write_cat(session: &Session, local: &Path, tmp: &str) -> Result<(), String> {
    let src = BufReader::with_capacity(
        256 * 1024,
        tokio::fs::File::open(local)
            .await
            .map_err(|e| e.to_string())?,
    );
    let t = quote(tmp);
    let out = session
        .exec_with_stdin(
            &format!("umask 077; cat > {t} && {{ sync -- {t} 2>/dev/null || sync; }}"),
            src,
        )
        .await
        .map_err(|e| e.to_string())?;
    if out.success() {
        Ok(())
    } else {
        Err(crate::exec::tail_lines(&out.stderr_str(), 5))
    }
}

/// The shell glob matching leftover temp files of interrupted uploads to `remote`.
pub fn stale_temp_glob(remote: &str) -> Option<String> {
    let (dir, base) = split_remote(remote)?;
    Some(format!("{}/.{base}.k8sup-tmp.*", dir.trim_end_matches('/')))
}
