//! How a fetch reports what it does. The library never prints: the CLI
//! implements [`Progress`] (with indicatif bars) and tests count events.

use crate::catalog::Artifact;

/// Events of one fetch, called from the fetching task (several artifacts
/// are in flight at once, so events of different artifacts interleave).
/// Every method has an empty default.
pub trait Progress: Send + Sync {
    /// The artifact is in the cache, verified: nothing is fetched.
    fn cached(&self, _artifact: &Artifact) {}
    /// Its bytes start to arrive; `total` when the source says the size.
    fn started(&self, _artifact: &Artifact, _total: Option<u64>) {}
    /// `bytes` more arrived.
    fn advanced(&self, _artifact: &Artifact, _bytes: u64) {}
    /// It matched its published SHA-256 and is in the cache.
    fn verified(&self, _artifact: &Artifact, _sha256: &str) {}
    /// It failed (the error is also returned, with the others).
    fn failed(&self, _artifact: &Artifact, _error: &crate::ArtifactError) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
