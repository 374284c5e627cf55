//! The last configuration the proxy accepted, kept on disk.
//!
//! A running proxy refuses a broken file and keeps its config in memory;
//! but if it then restarts (a crash, a reboot, `systemctl restart`), the
//! memory is gone and a broken file would leave the node's kubelet with no
//! path to any API server. So every accepted file is copied to the state
//! directory (systemd's `StateDirectory=`), and a start whose file is
//! refused falls back to that copy, with the refusal logged and shown in
//! the status, rather than not starting at all.

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

/// The copy's name in the state directory.
const NAME: &str = "last-good.json";

#[derive(Debug, Clone)]
pub struct LastGood {
    path: PathBuf,
}

impl LastGood {
    pub fn in_dir(dir: &Path) -> LastGood {
        LastGood {
            path: dir.join(NAME),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keep `bytes` (a file just accepted). Written beside and renamed, so
    /// a crash mid-write leaves the previous copy whole. A failure is only
    /// logged: the proxy works without the copy.
    pub fn save(&self, bytes: &[u8]) {
        if std::fs::read(&self.path).is_ok_and(|old| old == bytes) {
            return;
        }
        let tmp = self.path.with_extension("json.tmp");
        let res = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = res {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot keep a copy of the accepted configuration; a restart with a broken file would have nothing to fall back to");
        }
    }

    /// The kept copy, checked as the real file is.
    pub fn load(&self) -> Result<(Config, Vec<u8>), ConfigError> {
        let bytes = std::fs::read(&self.path).map_err(|source| ConfigError::Read {
            path: self.path.clone(),
            source,
        })?;
        Ok((Config::parse(&self.path, &bytes)?, bytes))
    }
}
