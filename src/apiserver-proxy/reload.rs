//! Re-reading the configuration when k8sup changes it.
//!
//! Polling, once a second, rather than inotify (`notify`): k8sup replaces
//! files by rename, so an inotify watch on the file would follow the old
//! inode and miss the change (a directory watch needs care for the rename
//! and for a directory that does not exist yet); a `stat` a second costs
//! nothing, sees renames (the inode changes), in-place writes (mtime, size)
//! and the CA file's changes alike, and needs no extra crate. A second is
//! well within the time a control-plane change takes anyway; SIGHUP (or
//! `systemctl reload`) re-reads at once.
//!
//! A file that fails to parse or check is refused whole: the running
//! configuration stays, and the error (naming the file and the problem) is
//! logged once per version of the file, not once a second.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::Shared;
use crate::config::Config;

/// What identifies a version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Option<(u64, u64, i64, i64, u64)>);

impl Stamp {
    fn of(path: &Path) -> Stamp {
        Stamp(
            std::fs::metadata(path)
                .ok()
                .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.len())),
        )
    }
}

/// The config file's and its CA file's stamps.
fn stamps(path: &Path, cfg: &Config) -> (Stamp, Stamp) {
    let ca = cfg.health.tls.as_ref().map(|t| t.ca_file.as_path());
    (Stamp::of(path), ca.map_or(Stamp(None), Stamp::of))
}

/// Poll every `period`; re-read at once when `shared.reload_now` fires.
pub async fn run(shared: Arc<Shared>, period: Duration) {
    let path = shared.path.clone();
    let mut seen = stamps(&path, &shared.pool.config());
    loop {
        let forced = tokio::select! {
            _ = tokio::time::sleep(period) => false,
            _ = shared.reload_now.notified() => true,
        };
        let now = stamps(&path, &shared.pool.config());
        if now == seen && !forced {
            continue;
        }
        seen = now;
        match Config::read(&path) {
            Ok((cfg, bytes)) => {
                if let Err(e) = apply(&shared, cfg).await {
                    refuse(&shared, e);
                    continue;
                }
                if let Some(lg) = &shared.last_good {
                    lg.save(&bytes);
                }
                // The CA file named by the new config is the one to watch.
                seen = stamps(&path, &shared.pool.config());
                *shared.config_error.lock().expect("error lock") = None;
            }
            Err(e) => refuse(&shared, e.to_string()),
        }
    }
}

fn refuse(shared: &Shared, error: String) {
    tracing::error!(error = %error, "configuration refused; the running one stays");
    *shared.config_error.lock().expect("error lock") = Some(error);
}

/// Switch to `cfg`: a new listener first (so a port in use refuses the
/// whole file), then the upstreams.
async fn apply(shared: &Shared, cfg: Config) -> Result<(), String> {
    let old = shared.pool.config();
    if cfg.listen != old.listen {
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| format!("{}: listen {}: {e}", shared.path.display(), cfg.listen))?;
        let addr = listener.local_addr().unwrap_or(cfg.listen);
        if shared.rebind.send(listener).await.is_err() {
            return Err("the listener has stopped".into());
        }
        *shared.local_addr.lock().expect("addr lock") = addr;
        tracing::info!(listen = %addr, "listening on the new address");
    }
    let upstreams = cfg.upstreams.join(",");
    let (added, removed) = shared.pool.replace(cfg);
    tracing::info!(
        file = %shared.path.display(),
        %upstreams,
        added = %added.join(","),
        removed = %removed.join(","),
        "configuration reloaded"
    );
    shared.probe_now.notify_one();
    Ok(())
}
