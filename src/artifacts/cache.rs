//! The workstation cache: every artifact downloaded once per version and
//! architecture, kept verified, pushed to hosts from here.
//!
//! Layout (paths are the artifacts' paths, so version and architecture are
//! in them):
//!
//! ```text
//! ROOT/dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet             the verified file
//! ROOT/dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet.k8sup.json  its record
//! ROOT/github.com/…/containerd-2.4.2-linux-amd64.tar.gz.contents/    the tarball, unpacked
//!     bin/containerd  bin/ctr  …  .k8sup-contents.json               (members and their record)
//! ROOT/.tmp/                                                          downloads in progress
//! ```
//!
//! A file reaches its name only verified: it is downloaded into `.tmp`,
//! hashed as it arrives, compared with the published SHA-256, fsynced and
//! renamed; then its record (SHA-256, size, mtime, where it came from) is
//! written the same way. A cached file is trusted when its record exists and
//! its size and mtime are the record's: cheap (no re-hash), and a partial,
//! truncated or edited file never passes. Unpacked tarballs appear by one
//! directory rename, whole or not at all.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use crate::catalog::Artifact;
use crate::error::ArtifactError;

const RECORD_SUFFIX: &str = ".k8sup.json";
const CONTENTS_SUFFIX: &str = ".contents";
pub(crate) const CONTENTS_RECORD: &str = ".k8sup-contents.json";
const TMP: &str = ".tmp";
/// Leftovers of a crashed run older than this are removed when a cache opens.
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

/// A verified file's record, written beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub sha256: String,
    pub size: u64,
    /// The file's mtime when it was stored, in nanoseconds: any later write
    /// changes it, and the file is then no longer trusted.
    pub mtime_ns: i128,
    /// Where the bytes came from (URL, path, or `bundle:member`).
    pub source: String,
    /// Where the SHA-256 they were checked against came from.
    pub checksum: String,
}

/// One member of an unpacked tarball.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's path in the tarball, without `./` (`bin/containerd`).
    pub name: String,
    pub sha256: String,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i128,
}

#[derive(Debug, Serialize, Deserialize)]
struct ContentsRecord {
    /// The tarball's SHA-256 these members came from.
    tarball_sha256: String,
    members: Vec<Member>,
}

/// The workstation's artifact cache.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

fn mtime_ns(meta: &fs::Metadata) -> i128 {
    meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128
}

impl Cache {
    /// A cache at `root` (created when first written).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let cache = Cache { root: root.into() };
        cache.remove_stale_tmp();
        cache
    }

    /// The default root: `$K8SUP_CACHE_DIR/artifacts`, else
    /// `$XDG_CACHE_HOME/k8sup/artifacts`, else `~/.cache/k8sup/artifacts`
    /// (`K8SUP_CACHE_DIR` is the engine's digest cache's setting too).
    pub fn default_root() -> Option<PathBuf> {
        std::env::var_os("K8SUP_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("k8sup")))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("k8sup"))
            })
            .map(|d| d.join("artifacts"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where an artifact's verified file is (or will be).
    pub fn path_of(&self, artifact: &Artifact) -> PathBuf {
        self.root.join(&artifact.path)
    }

    fn record_path(&self, artifact: &Artifact) -> PathBuf {
        self.root.join(format!("{}{RECORD_SUFFIX}", artifact.path))
    }

    /// Where a tarball's members are unpacked.
    pub fn contents_dir(&self, artifact: &Artifact) -> PathBuf {
        self.root
            .join(format!("{}{CONTENTS_SUFFIX}", artifact.path))
    }

    /// The record of a cached file that can be trusted as it is: present,
    /// with its record's size and mtime. Reads metadata only.
    pub fn lookup(&self, artifact: &Artifact) -> Option<Record> {
        let text = fs::read(self.record_path(artifact)).ok()?;
        let record: Record = serde_json::from_slice(&text).ok()?;
        let meta = fs::metadata(self.path_of(artifact)).ok()?;
        (meta.is_file() && meta.len() == record.size && mtime_ns(&meta) == record.mtime_ns)
            .then_some(record)
    }

    /// The members of an unpacked tarball, when they are all there
    /// unchanged and came from the tarball with SHA-256 `tarball_sha256`.
    pub fn lookup_contents(
        &self,
        artifact: &Artifact,
        tarball_sha256: &str,
    ) -> Option<Vec<Member>> {
        let dir = self.contents_dir(artifact);
        let text = fs::read(dir.join(CONTENTS_RECORD)).ok()?;
        let rec: ContentsRecord = serde_json::from_slice(&text).ok()?;
        if rec.tarball_sha256 != tarball_sha256 {
            return None;
        }
        rec.members
            .iter()
            .all(|m| {
                fs::metadata(dir.join(&m.name))
                    .is_ok_and(|meta| meta.len() == m.size && mtime_ns(&meta) == m.mtime_ns)
            })
            .then_some(rec.members)
    }

    fn tmp_dir(&self) -> Result<PathBuf, ArtifactError> {
        let tmp = self.root.join(TMP);
        fs::create_dir_all(&tmp).map_err(|e| ArtifactError::cache(&tmp, "create directory", e))?;
        Ok(tmp)
    }

    /// A new file for a download in progress; it is deleted when dropped
    /// unless [`Cache::store`] takes it.
    pub(crate) fn temp_file(&self) -> Result<NamedTempFile, ArtifactError> {
        let tmp = self.tmp_dir()?;
        NamedTempFile::new_in(&tmp).map_err(|e| ArtifactError::cache(&tmp, "create file", e))
    }

    /// A new directory to unpack into; deleted when dropped unless renamed.
    pub(crate) fn temp_dir(&self) -> Result<tempfile::TempDir, ArtifactError> {
        let tmp = self.tmp_dir()?;
        tempfile::TempDir::new_in(&tmp)
            .map_err(|e| ArtifactError::cache(&tmp, "create directory", e))
    }

    /// Moves a verified download to its name and writes its record. The
    /// caller has compared its SHA-256 with the published one.
    pub(crate) fn store(
        &self,
        artifact: &Artifact,
        file: NamedTempFile,
        sha256: &str,
        size: u64,
        source: &str,
        checksum: &str,
    ) -> Result<(PathBuf, Record), ArtifactError> {
        let dest = self.path_of(artifact);
        let parent = dest.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&parent)
            .map_err(|e| ArtifactError::cache(&parent, "create directory", e))?;
        let mode = if artifact.kind == crate::Kind::Binary {
            0o755
        } else {
            0o644
        };
        let f = file.as_file();
        f.set_permissions(fs::Permissions::from_mode(mode))
            .and_then(|_| f.sync_all())
            .map_err(|e| ArtifactError::cache(file.path(), "sync", e))?;
        // A stale record must never describe the new file, even for a moment.
        remove_if_present(&self.record_path(artifact))?;
        file.persist(&dest)
            .map_err(|e| ArtifactError::cache(&dest, "rename into place", e.error))?;
        let meta = fs::metadata(&dest).map_err(|e| ArtifactError::cache(&dest, "stat", e))?;
        let record = Record {
            sha256: sha256.to_string(),
            size,
            mtime_ns: mtime_ns(&meta),
            source: source.to_string(),
            checksum: checksum.to_string(),
        };
        let json = serde_json::to_vec_pretty(&record).expect("a record serializes");
        self.write_atomic(&self.record_path(artifact), &json)?;
        sync_dir(&parent);
        Ok((dest, record))
    }

    fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
        let mut tmp = self.temp_file()?;
        tmp.write_all(bytes)
            .and_then(|_| tmp.as_file().sync_all())
            .map_err(|e| ArtifactError::cache(tmp.path(), "write", e))?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|e| ArtifactError::cache(tmp.path(), "chmod", e))?;
        tmp.persist(dest)
            .map_err(|e| ArtifactError::cache(dest, "rename into place", e.error))?;
        Ok(())
    }

    /// Puts an unpacked tarball (a temp directory holding the members) in
    /// place by one rename, with its record inside.
    pub(crate) fn store_contents(
        &self,
        artifact: &Artifact,
        dir: tempfile::TempDir,
        tarball_sha256: &str,
        mut members: Vec<Member>,
    ) -> Result<Vec<Member>, ArtifactError> {
        for m in &mut members {
            let p = dir.path().join(&m.name);
            let meta = fs::metadata(&p).map_err(|e| ArtifactError::cache(&p, "stat", e))?;
            m.mtime_ns = mtime_ns(&meta);
        }
        let rec = ContentsRecord {
            tarball_sha256: tarball_sha256.to_string(),
            members,
        };
        let json = serde_json::to_vec_pretty(&rec).expect("a record serializes");
        let rec_path = dir.path().join(CONTENTS_RECORD);
        fs::write(&rec_path, json).map_err(|e| ArtifactError::cache(&rec_path, "write", e))?;
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
            .map_err(|e| ArtifactError::cache(dir.path(), "chmod", e))?;
        let dest = self.contents_dir(artifact);
        // An older unpacking (of a replaced tarball) goes first; rename(2)
        // will not replace a non-empty directory.
        if dest.exists() {
            // Another run may have unpacked the same tarball meanwhile.
            if let Some(members) = self.lookup_contents(artifact, tarball_sha256) {
                return Ok(members);
            }
            fs::remove_dir_all(&dest)
                .map_err(|e| ArtifactError::cache(&dest, "remove old contents", e))?;
        }
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| ArtifactError::cache(parent, "create directory", e))?;
        }
        let tmp = dir.keep();
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            // Another run unpacked the same tarball at the same moment.
            if let Some(members) = self.lookup_contents(artifact, tarball_sha256) {
                return Ok(members);
            }
            return Err(ArtifactError::cache(&dest, "rename into place", e));
        }
        if let Some(parent) = dest.parent() {
            sync_dir(parent);
        }
        Ok(rec.members)
    }

    /// Forgets a cached artifact (file, record, contents), e.g. before a
    /// forced re-fetch.
    pub fn remove(&self, artifact: &Artifact) -> Result<(), ArtifactError> {
        remove_if_present(&self.record_path(artifact))?;
        remove_if_present(&self.path_of(artifact))?;
        let dir = self.contents_dir(artifact);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ArtifactError::cache(&dir, "remove", e))
            }
            _ => Ok(()),
        }
    }

    fn remove_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.root.join(TMP)) else {
            return;
        };
        let now = SystemTime::now();
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| now.duration_since(t).unwrap_or_default() > STALE_TMP);
            if old {
                let p = e.path();
                let _ = fs::remove_dir_all(&p).or_else(|_| fs::remove_file(&p));
            }
        }
    }
}

fn remove_if_present(p: &Path) -> Result<(), ArtifactError> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(ArtifactError::cache(p, "remove", e))
        }
        _ => Ok(()),
    }
}

/// Makes a rename durable. Best effort: some filesystems refuse to fsync a
/// directory, and the file itself is already synced.
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
