//! The entry point: make every artifact of a request present and verified in
//! the cache, and say where each verified file is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;

use crate::cache::{Cache, Member, Record};
use crate::catalog::{Artifact, Kind, Request, artifacts};
use crate::error::ArtifactError;
use crate::progress::Progress;
use crate::source::Source;
use crate::transport::Transport;
use crate::{bundle, extract, verify};

/// How many files are fetched at once: enough to overlap round trips and
/// hashing, few enough not to starve a small uplink.
const PARALLEL: usize = 4;

/// How an artifact got into the cache in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It was there, verified: nothing was read from the source.
    Cached,
    /// It was downloaded (or copied from a directory) and verified.
    Downloaded,
    /// It was read from a bundle and verified.
    Imported,
}

/// A verified local file, ready to push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalFile {
    /// The name hosts know it by: `kubelet`, `runc`, `containerd`, `ctr`,
    /// `bridge`, … (for an artifact itself, its catalog name).
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// True for programs (install them 0755).
    pub executable: bool,
}

/// One artifact, verified and cached.
#[derive(Debug, Clone, Serialize)]
pub struct Fetched {
    pub artifact: Artifact,
    /// The file as published (binary, tarball or image archive).
    pub file: LocalFile,
    /// A tarball's unpacked members (empty for other kinds).
    pub contents: Vec<LocalFile>,
    pub outcome: Outcome,
}

/// Every artifact of a request, verified and in the cache: what the cluster
/// layer hands to the engine as binary resources.
#[derive(Debug, Clone, Serialize)]
pub struct FetchedSet {
    pub kubernetes: String,
    pub arch: String,
    /// The source, as [`Source`]'s `Display` says it.
    pub source: String,
    pub items: Vec<Fetched>,
}

impl FetchedSet {
    /// An artifact by catalog name (`kubelet`, `containerd`, `image-pause`).
    pub fn get(&self, name: &str) -> Option<&Fetched> {
        self.items.iter().find(|f| f.artifact.name == name)
    }

    /// What hosts get: each binary, each tarball's members (not the
    /// tarball), each image archive.
    pub fn host_files(&self) -> impl Iterator<Item = &LocalFile> {
        self.items.iter().flat_map(|f| match f.artifact.kind {
            Kind::Tarball { .. } => f.contents.iter().collect::<Vec<_>>(),
            _ => vec![&f.file],
        })
    }

    /// A program by the name hosts know it by (`kubelet`, `runc`,
    /// `containerd-shim-runc-v2`, `crictl`, `bridge`, `coredns`).
    pub fn program(&self, name: &str) -> Option<&LocalFile> {
        self.host_files().find(|f| f.executable && f.name == name)
    }

    /// Image archives with their image names, for `ctr images import`.
    pub fn image_archives(&self) -> impl Iterator<Item = (&str, &LocalFile)> {
        self.items.iter().filter_map(|f| match &f.artifact.kind {
            Kind::Image { image } => Some((image.as_str(), &f.file)),
            _ => None,
        })
    }

    /// How many artifacts were read from the source in this run.
    pub fn transferred(&self) -> usize {
        self.items
            .iter()
            .filter(|f| f.outcome != Outcome::Cached)
            .count()
    }
}

/// Makes every artifact of `request` present and verified in `cache`,
/// reading from `source` only what the cache lacks, and returns the verified
/// local files. Nothing here touches a host: a checksum mismatch, a missing
/// file or an interrupted transfer fails the whole call (every failure is
/// reported, see [`ArtifactError::Several`]) and leaves nothing trusted in
/// the cache under the failed artifact's name.
pub async fn fetch(
    request: &Request,
    source: &Source,
    cache: &Cache,
    progress: Arc<dyn Progress>,
) -> Result<FetchedSet, ArtifactError> {
    let wanted = artifacts(request)?;
    if !source.has_images()
        && let Some(image) = wanted.iter().find(|a| a.is_image())
    {
        return Err(ArtifactError::NoOfficialImages {
            artifact: image.name.clone(),
        });
    }
    let items = if let Source::Bundle(path) = source {
        let (path, request, cache, p) = (
            path.clone(),
            request.clone(),
            cache.clone(),
            progress.clone(),
        );
        tokio::task::spawn_blocking(move || bundle::import(&path, &request, &cache, &*p))
            .await
            .expect("the bundle import does not panic")?
    } else {
        let transport = Transport::for_source(source)?;
        let results: Vec<(usize, Result<Fetched, ArtifactError>)> =
            futures::stream::iter(wanted.iter().enumerate())
                .map(|(i, a)| {
                    let (transport, progress) = (&transport, &*progress);
                    async move {
                        let r = fetch_one(transport, cache, a, progress).await;
                        if let Err(e) = &r {
                            progress.failed(a, e);
                        }
                        (i, r)
                    }
                })
                .buffer_unordered(PARALLEL)
                .collect()
                .await;
        let mut results = results;
        results.sort_by_key(|(i, _)| *i);
        let mut items = Vec::new();
        let mut errors = Vec::new();
        for (_, r) in results {
            match r {
                Ok(f) => items.push(f),
                Err(e) => errors.push(e),
            }
        }
        if let Some(e) = ArtifactError::from_many(errors) {
            return Err(e);
        }
        items
    };
    Ok(FetchedSet {
        kubernetes: request.kubernetes.to_string(),
        arch: request.arch.to_string(),
        source: source.to_string(),
        items,
    })
}

async fn fetch_one(
    transport: &Transport,
    cache: &Cache,
    artifact: &Artifact,
    progress: &dyn Progress,
) -> Result<Fetched, ArtifactError> {
    if let Some(record) = cache.lookup(artifact) {
        progress.cached(artifact);
        return finish(cache, artifact, record, Outcome::Cached).await;
    }
    let source = transport.source();
    let checksum_location = source.location(&artifact.checksum_path);
    let text = transport
        .read_small(artifact, &artifact.checksum_path)
        .await?;
    let expected = verify::published_sha256(artifact, &checksum_location, &text)?;

    let tmp = cache.temp_file()?;
    // Buffered: HTTP chunks are a few KiB, and each write to a tokio file
    // is a hop to a blocking thread.
    let mut out = tokio::io::BufWriter::with_capacity(
        1 << 20,
        tokio::fs::File::from_std(
            tmp.reopen()
                .map_err(|e| ArtifactError::cache(tmp.path(), "open", e))?,
        ),
    );
    let hasher = transport
        .copy(artifact, &artifact.path, &mut out, progress)
        .await?;
    drop(out);
    let size = hasher.len;
    let actual = hasher.finish();
    let location = source.location(&artifact.path);
    // On a mismatch `tmp` is dropped here, which deletes it: nothing of the
    // refused file stays in the cache.
    verify::check(
        source,
        artifact,
        &location,
        &checksum_location,
        &expected,
        &actual,
    )?;

    let (c, a) = (cache.clone(), artifact.clone());
    let record = tokio::task::spawn_blocking(move || {
        c.store(&a, tmp, &actual, size, &location, &checksum_location)
            .map(|(_, r)| r)
    })
    .await
    .expect("storing does not panic")?;
    progress.verified(artifact, &record.sha256);
    finish(cache, artifact, record, Outcome::Downloaded).await
}

/// The [`Fetched`] of a verified cached file, unpacking a tarball if its
/// members are not there yet.
pub(crate) async fn finish(
    cache: &Cache,
    artifact: &Artifact,
    record: Record,
    outcome: Outcome,
) -> Result<Fetched, ArtifactError> {
    let (c, a, sha) = (cache.clone(), artifact.clone(), record.sha256.clone());
    let members =
        tokio::task::spawn_blocking(move || extract::contents(&c, &a, &c.path_of(&a), &sha))
            .await
            .expect("unpacking does not panic")?;
    Ok(fetched(cache, artifact, &record, members, outcome))
}

pub(crate) fn fetched(
    cache: &Cache,
    artifact: &Artifact,
    record: &Record,
    members: Vec<Member>,
    outcome: Outcome,
) -> Fetched {
    let dir = cache.contents_dir(artifact);
    let contents = members
        .into_iter()
        .map(|m| LocalFile {
            name: Path::new(&m.name)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| m.name.clone()),
            path: dir.join(&m.name),
            sha256: m.sha256,
            size: m.size,
            executable: m.mode & 0o111 != 0,
        })
        .collect();
    Fetched {
        file: LocalFile {
            name: artifact.name.clone(),
            path: cache.path_of(artifact),
            sha256: record.sha256.clone(),
            size: record.size,
            executable: artifact.kind == Kind::Binary,
        },
        artifact: artifact.clone(),
        contents,
        outcome,
    }
}
