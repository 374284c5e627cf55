//! Where a file's content comes from, and the content once resolved.
//!
//! Configuration files are small: they are resolved (read or rendered) into
//! memory once per run, hashed, sent inside the apply script and diffed.
//! Binaries are large: only their SHA-256 is computed up front; their bytes
//! are streamed from disk when (and only when) the host needs them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::error::EngineError;
use crate::template::{self, TemplateContext};

/// The content of a [`crate::Spec::File`] or [`crate::Spec::Unit`].
#[derive(Debug, Clone)]
pub enum Content {
    /// These exact bytes.
    Inline(Vec<u8>),
    /// The bytes of a local file, read at planning time.
    LocalFile(PathBuf),
    /// A minijinja template rendered with the host's [`TemplateContext`].
    /// `name` (a file name under `templates/`, or `inventory:files[2]`) is used in errors.
    Template { name: String, source: String },
}

impl Content {
    pub fn text(s: impl Into<String>) -> Self {
        Content::Inline(s.into().into_bytes())
    }

    pub fn local(path: impl Into<PathBuf>) -> Self {
        Content::LocalFile(path.into())
    }

    pub fn template(name: impl Into<String>, source: impl Into<String>) -> Self {
        Content::Template {
            name: name.into(),
            source: source.into(),
        }
    }

    /// A template read from a file (its path is its name in errors).
    pub fn template_file(path: &Path) -> Result<Self, EngineError> {
        let source = std::fs::read_to_string(path).map_err(|e| EngineError::Local {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Content::Template {
            name: path.display().to_string(),
            source,
        })
    }

    /// Read or render the bytes.
    pub(crate) fn resolve(
        &self,
        host: &str,
        ctx: Option<&TemplateContext>,
    ) -> Result<Vec<u8>, EngineError> {
        match self {
            Content::Inline(b) => Ok(b.clone()),
            Content::LocalFile(p) => std::fs::read(p).map_err(|e| EngineError::Local {
                path: p.clone(),
                reason: e.to_string(),
            }),
            Content::Template { name, source } => {
                template::render(host, name, source, ctx).map(String::into_bytes)
            }
        }
    }
}

/// Desired bytes of a path resource, resolved.
#[derive(Debug, Clone)]
pub enum Body {
    /// Small content, in memory.
    Bytes(Arc<Vec<u8>>),
    /// A large local file, streamed when needed.
    Local {
        path: PathBuf,
        size: u64,
        stamp: FileStamp,
    },
}

/// What identifies one version of a local file without reading it: if it is
/// the same after an upload as when the file was hashed, the bytes sent are
/// the bytes hashed (a write changes mtime and ctime; a replacement the inode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) len: u64,
    pub(crate) mtime_ns: i128,
    pub(crate) ctime_ns: i128,
}

impl FileStamp {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ctime_ns: meta.ctime() as i128 * 1_000_000_000 + meta.ctime_nsec() as i128,
        }
    }
}

/// SHA-256, size and stamp of a local file.
pub(crate) type LocalDigest = (String, u64, FileStamp);

/// A resolved body and its SHA-256 (lowercase hex).
#[derive(Debug, Clone)]
pub struct Resolved {
    pub body: Body,
    pub sha256: String,
}

impl Resolved {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let sha256 = sha256_hex(&bytes);
        Resolved {
            body: Body::Bytes(Arc::new(bytes)),
            sha256,
        }
    }

    pub fn size(&self) -> u64 {
        match &self.body {
            Body::Bytes(b) => b.len() as u64,
            Body::Local { size, .. } => *size,
        }
    }

    /// The content when it is in memory and valid UTF-8 (diffable).
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            Body::Bytes(b) => std::str::from_utf8(b).ok(),
            Body::Local { .. } => None,
        }
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SHA-256 (hex) of a local file, as the engine itself will hash it
/// for a binary resource: through the workstation's digest cache, so a
/// caller that needs the hash first (a digest of a service's programs)
/// costs no second read of the file in the run, nor in the next run.
pub async fn local_sha256(path: &Path) -> Result<String, EngineError> {
    digest_file(path).await.map(|(sha, _, _)| sha)
}

/// SHA-256, size and stamp of a local file, read in chunks.
pub(crate) async fn digest_file(path: &Path) -> Result<LocalDigest, EngineError> {
    let err = |e: std::io::Error| EngineError::Local {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut f = tokio::fs::File::open(path).await.map_err(err)?;
    let meta = f.metadata().await.map_err(err)?;
    if !meta.is_file() {
        return Err(EngineError::Local {
            path: path.to_path_buf(),
            reason: "not a regular file".into(),
        });
    }
    let stamp = FileStamp::of(&meta);
    if let Some(sha) = crate::digest_cache::lookup(path, &stamp) {
        return Ok((sha, meta.len(), stamp));
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf).await.map_err(err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    let after = f.metadata().await.map_err(err)?;
    if FileStamp::of(&meta) != FileStamp::of(&after) {
        return Err(EngineError::Local {
            path: path.to_path_buf(),
            reason: "the file changed while it was being hashed".into(),
        });
    }
    let sha = hex::encode(h.finalize());
    if let Ok(modified) = after.modified() {
        crate::digest_cache::store(path, &FileStamp::of(&after), modified, &sha);
    }
    Ok((sha, size, FileStamp::of(&after)))
}
