//! What can go wrong, named after the artifact and the place it came from,
//! with the fix. Every one of these happens on the workstation, before any
//! host is touched: fetching and verifying is a step of its own that either
//! returns verified local files or fails.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(
        "{version:?} is not a Kubernetes release version (write it as v1.MINOR.PATCH); supported: {}",
        supported.join(", ")
    )]
    BadVersion {
        version: String,
        supported: Vec<String>,
    },

    #[error(
        "Kubernetes {version} is not supported: k8sup pins containerd, runc, crictl, CNI and CoreDNS \
         versions per Kubernetes minor, and supports {}",
        supported.join(", ")
    )]
    UnsupportedVersion {
        version: String,
        supported: Vec<String>,
    },

    #[error(
        "architecture {arch:?} is not supported: k8sup installs amd64 (x86_64) and arm64 (aarch64) hosts"
    )]
    UnsupportedArch { arch: String },

    #[error(
        "{0:?} is not an artifact source: write `official`, an http(s):// mirror URL, a directory, or a bundle .tar"
    )]
    BadSource(String),

    #[error(
        "{artifact}: image archives are not published at the official locations; take the images \
         from a registry (images: registry) or use a mirror, a directory or a bundle that holds images/"
    )]
    NoOfficialImages { artifact: String },

    /// Boxed: the details are large, and every `Result` of the crate would
    /// carry their size.
    #[error("{0}")]
    ChecksumMismatch(Box<Mismatch>),

    #[error("{artifact}: the checksum file {location} is unusable: {reason}")]
    BadChecksumFile {
        artifact: String,
        location: String,
        reason: String,
    },

    #[error(
        "{artifact}: {location} was not found; the source does not hold this version: \
         check the mirror or directory, or fill it with tests/artifacts/build.sh or `k8sup artifacts fetch`"
    )]
    NotFound { artifact: String, location: String },

    #[error(
        "{artifact}: fetching {location} failed: {reason}. Nothing was cached; run again to retry"
    )]
    Download {
        artifact: String,
        location: String,
        reason: String,
    },

    #[error("{artifact}: {location} could not be read: {source}")]
    Read {
        artifact: String,
        location: String,
        source: std::io::Error,
    },

    #[error("artifact cache {}: {op}: {source}. Check the directory's permissions and free space, or set another cache directory", path.display())]
    Cache {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },

    #[error("{artifact}: unpacking {}: {reason}", path.display())]
    Extract {
        artifact: String,
        path: PathBuf,
        reason: String,
    },

    #[error("bundle {}: {reason}", path.display())]
    Bundle { path: PathBuf, reason: String },

    #[error("could not set up the HTTP client: {0}")]
    Client(String),

    #[error("{} artifacts failed:\n{}", .0.len(), .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Several(Vec<ArtifactError>),
}

impl ArtifactError {
    /// One error as it is, several as [`ArtifactError::Several`].
    pub(crate) fn from_many(mut errors: Vec<ArtifactError>) -> Option<ArtifactError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(ArtifactError::Several(errors)),
        }
    }

    pub(crate) fn cache(
        path: impl Into<PathBuf>,
        op: &'static str,
        source: std::io::Error,
    ) -> Self {
        ArtifactError::Cache {
            path: path.into(),
            op,
            source,
        }
    }
}

/// A file whose SHA-256 is not the published one.
#[derive(Debug, thiserror::Error)]
#[error(
    "{artifact}: SHA-256 mismatch for {source_location}: {checksum_location} says {expected}, \
     the file has {actual}. The file was refused and nothing was cached under its name. {fix}"
)]
pub struct Mismatch {
    pub artifact: String,
    /// Where the file came from (URL, path, or `BUNDLE:MEMBER`).
    pub source_location: String,
    /// Where the SHA-256 it was held to came from.
    pub checksum_location: String,
    pub expected: String,
    pub actual: String,
    /// What to do, for the kind of source the file came from.
    pub fix: String,
}
