//! Air-gap bundles: one tar holding every artifact of a request, for a
//! workstation (or CI runner) that cannot reach the official locations or a
//! mirror.
//!
//! A bundle is a mirror in a tar: its first member is `k8sup-bundle.json`
//! (the manifest: Kubernetes version, architecture, and each artifact's path,
//! size and SHA-256), then for each artifact its checksum file in upstream's
//! format and the file itself, at their mirror paths. So `tar -xf
//! bundle.tar -C DIR` gives a directory (or, served over HTTP, a mirror) that
//! k8sup also reads as a source.
//!
//! Reading a bundle back ([`import`]) checks the manifest against the catalog
//! (same version, architecture, artifacts and paths), refuses any member the
//! manifest does not list, and checks every file against the manifest and
//! against its checksum file in the bundle, as it streams into the cache.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::catalog::{Artifact, ChecksumFormat, Images, Request, artifacts};
use crate::error::{ArtifactError, Mismatch};
use crate::extract;
use crate::fetch::{Fetched, FetchedSet, Outcome, fetched};
use crate::progress::Progress;
use crate::source::Source;
use crate::verify::{self, Hasher, MAX_CHECKSUM_FILE};

/// The manifest's member name; always the bundle's first member.
pub const MANIFEST: &str = "k8sup-bundle.json";
const FORMAT: u32 = 1;
const MAX_MANIFEST: u64 = 1 << 20;

/// The bundle's table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub kubernetes: String,
    pub arch: String,
    pub artifacts: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    pub path: String,
    pub checksum_path: String,
    pub size: u64,
    pub sha256: String,
}

/// What [`write`] wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    pub manifest: Manifest,
    /// The bundle's size in bytes.
    pub size: u64,
}

/// A checksum file in the artifact's upstream format, holding its line only
/// (a release-wide listing such as runc's names other files too; those are
/// not in the bundle).
fn checksum_file(artifact: &Artifact, sha256: &str) -> Vec<u8> {
    match artifact.checksum_format {
        ChecksumFormat::Hex => sha256.as_bytes().to_vec(),
        ChecksumFormat::Listing => format!("{sha256}  {}\n", artifact.file_name()).into_bytes(),
    }
}

fn tar_header(size: u64, mode: u32) -> tar::Header {
    // Fixed owner and time, like a release tarball: the same artifacts make
    // the same bundle.
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

/// Writes the air-gap bundle of `set` (a [`fetch`](crate::fetch)'s result:
/// every file verified in the cache) to `out`, atomically: a bundle is
/// complete under its name or absent.
pub fn write(set: &FetchedSet, out: &Path) -> Result<Written, ArtifactError> {
    let bundle_err = |reason: String| ArtifactError::Bundle {
        path: out.to_path_buf(),
        reason,
    };
    let manifest = Manifest {
        format: FORMAT,
        kubernetes: set.kubernetes.clone(),
        arch: set.arch.clone(),
        artifacts: set
            .items
            .iter()
            .map(|f| ManifestEntry {
                name: f.artifact.name.clone(),
                path: f.artifact.path.clone(),
                checksum_path: f.artifact.checksum_path.clone(),
                size: f.file.size,
                sha256: f.file.sha256.clone(),
            })
            .collect(),
    };
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| bundle_err(format!("create a file in {}: {e}", dir.display())))?;
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(1 << 20, tmp));
    let io_err = |e: io::Error| bundle_err(format!("write: {e}"));

    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serializes");
    tar.append_data(
        &mut tar_header(json.len() as u64, 0o644),
        MANIFEST,
        json.as_slice(),
    )
    .map_err(io_err)?;
    for f in &set.items {
        let sums = checksum_file(&f.artifact, &f.file.sha256);
        tar.append_data(
            &mut tar_header(sums.len() as u64, 0o644),
            &f.artifact.checksum_path,
            sums.as_slice(),
        )
        .map_err(io_err)?;
        // Re-hash what goes in: the bundle must hold the verified bytes,
        // even if the cached file was changed since it was verified.
        let file = fs::File::open(&f.file.path)
            .map_err(|e| ArtifactError::cache(&f.file.path, "open", e))?;
        let mode = if f.file.executable { 0o755 } else { 0o644 };
        let mut reader = HashingReader {
            inner: file,
            hasher: Hasher::default(),
        };
        tar.append_data(
            &mut tar_header(f.file.size, mode),
            &f.artifact.path,
            &mut reader,
        )
        .map_err(io_err)?;
        let got = std::mem::take(&mut reader.hasher).finish();
        if got != f.file.sha256 {
            return Err(ArtifactError::ChecksumMismatch(Box::new(Mismatch {
                artifact: f.artifact.name.clone(),
                source_location: f.file.path.display().to_string(),
                checksum_location: "the artifact cache's record".into(),
                expected: f.file.sha256.clone(),
                actual: got,
                fix: "The cached file changed after it was verified: run `k8sup artifacts fetch` \
                      again, which replaces it"
                    .into(),
            })));
        }
    }
    let buf = tar.into_inner().map_err(io_err)?;
    let tmp = buf.into_inner().map_err(|e| io_err(e.into_error()))?;
    tmp.as_file().sync_all().map_err(io_err)?;
    let size = tmp.as_file().metadata().map_err(io_err)?.len();
    tmp.persist(out).map_err(|e| io_err(e.error))?;
    Ok(Written { manifest, size })
}

struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Reads a bundle's manifest (its first member) without reading the rest.
pub fn read_manifest(bundle: &Path) -> Result<Manifest, ArtifactError> {
    let file = fs::File::open(bundle).map_err(|e| ArtifactError::Bundle {
        path: bundle.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut archive = tar::Archive::new(file);
    let mut entries = archive
        .entries_with_seek()
        .map_err(|e| ArtifactError::Bundle {
            path: bundle.to_path_buf(),
            reason: e.to_string(),
        })?;
    manifest_from(bundle, entries.next())
}

fn manifest_from<R: Read>(
    bundle: &Path,
    first: Option<io::Result<tar::Entry<'_, R>>>,
) -> Result<Manifest, ArtifactError> {
    let err = |reason: String| ArtifactError::Bundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let not_bundle = || {
        err(format!(
            "it does not start with {MANIFEST}: not a k8sup bundle"
        ))
    };
    let mut entry = first
        .ok_or_else(not_bundle)?
        .map_err(|e| err(e.to_string()))?;
    if entry.path().map_err(|e| err(e.to_string()))?.as_ref() != Path::new(MANIFEST) {
        return Err(not_bundle());
    }
    let mut text = Vec::new();
    (&mut entry)
        .take(MAX_MANIFEST)
        .read_to_end(&mut text)
        .map_err(|e| err(e.to_string()))?;
    let m: Manifest = serde_json::from_slice(&text).map_err(|e| err(format!("{MANIFEST}: {e}")))?;
    if m.format != FORMAT {
        return Err(err(format!(
            "{MANIFEST} has format {}, this k8sup reads format {FORMAT}",
            m.format
        )));
    }
    Ok(m)
}

/// Reads the artifacts of `request` from `bundle` into `cache`, verifying
/// every file; artifacts already cached with the manifest's SHA-256 are not
/// read again. Blocking: [`fetch`](crate::fetch) runs it on a blocking thread.
pub(crate) fn import(
    bundle: &Path,
    request: &Request,
    cache: &Cache,
    progress: &dyn Progress,
) -> Result<Vec<Fetched>, ArtifactError> {
    let err = |reason: String| ArtifactError::Bundle {
        path: bundle.to_path_buf(),
        reason,
    };
    let file = fs::File::open(bundle).map_err(|e| err(e.to_string()))?;
    let mut archive = tar::Archive::new(file);
    let mut entries = archive
        .entries_with_seek()
        .map_err(|e| err(e.to_string()))?;
    let manifest = manifest_from(bundle, entries.next())?;

    // The catalog's view: the bundle must be one k8sup would have written
    // for this version and architecture (with or without image archives).
    if manifest.kubernetes != request.kubernetes.to_string()
        || manifest.arch != request.arch.as_str()
    {
        return Err(err(format!(
            "it holds Kubernetes {} for {}, and {} for {} is asked for",
            manifest.kubernetes, manifest.arch, request.kubernetes, request.arch
        )));
    }
    let full = artifacts(&Request {
        images: Images::Archives,
        ..request.clone()
    })?;
    let by_name: HashMap<&str, &ManifestEntry> = manifest
        .artifacts
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    for e in &manifest.artifacts {
        let Some(a) = full.iter().find(|a| a.name == e.name) else {
            return Err(err(format!(
                "its manifest lists {}, which k8sup does not know",
                e.name
            )));
        };
        if a.path != e.path || a.checksum_path != e.checksum_path {
            return Err(err(format!(
                "its manifest puts {} at {}, and k8sup expects {} (a bundle of other component versions?)",
                e.name, e.path, a.path
            )));
        }
    }
    let wanted = artifacts(request)?;
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|a| !by_name.contains_key(a.name.as_str()))
        .map(|a| a.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(err(format!(
            "it does not hold {} (write the bundle with image archives, or take images from a registry)",
            missing.join(", ")
        )));
    }

    // What is left to read: wanted artifacts the cache lacks (with the
    // manifest's SHA-256), keyed by member path.
    let mut done: BTreeMap<usize, Fetched> = BTreeMap::new();
    let mut todo: HashMap<String, (usize, &Artifact, &ManifestEntry)> = HashMap::new();
    let mut sums_needed: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, a) in wanted.iter().enumerate() {
        let entry = by_name[a.name.as_str()];
        match cache.lookup(a).filter(|r| r.sha256 == entry.sha256) {
            Some(record) => {
                progress.cached(a);
                let members = extract::contents(cache, a, &cache.path_of(a), &record.sha256)?;
                done.insert(i, fetched(cache, a, &record, members, Outcome::Cached));
            }
            None => {
                todo.insert(a.path.clone(), (i, a, entry));
                sums_needed
                    .entry(a.checksum_path.clone())
                    .or_default()
                    .push(i);
            }
        }
    }
    let listed: HashSet<&str> = manifest
        .artifacts
        .iter()
        .flat_map(|e| [e.path.as_str(), e.checksum_path.as_str()])
        .collect();
    let mut sums_seen: HashSet<usize> = HashSet::new();

    for entry in entries {
        if todo.is_empty() {
            break;
        }
        let mut entry = entry.map_err(|e| err(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| err(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if !listed.contains(name.as_str()) {
            return Err(err(format!("member {name} is not in its manifest")));
        }
        if !entry.header().entry_type().is_file() {
            return Err(err(format!("member {name} is not a regular file")));
        }
        if let Some(indices) = sums_needed.get(&name) {
            let mut text = Vec::new();
            (&mut entry)
                .take(MAX_CHECKSUM_FILE as u64 + 1)
                .read_to_end(&mut text)
                .map_err(|e| err(e.to_string()))?;
            let location = format!("{}:{name}", bundle.display());
            for &i in indices {
                let a = &wanted[i];
                let published = verify::published_sha256(a, &location, &text)?;
                let listed = &by_name[a.name.as_str()].sha256;
                if &published != listed {
                    return Err(ArtifactError::BadChecksumFile {
                        artifact: a.name.clone(),
                        location: location.clone(),
                        reason: format!("it says {published}, the bundle's manifest says {listed}"),
                    });
                }
                sums_seen.insert(i);
            }
            continue;
        }
        let Some((i, a, listed)) = todo.remove(&name) else {
            continue;
        };
        let location = format!("{}:{name}", bundle.display());
        if !sums_seen.contains(&i) {
            return Err(err(format!(
                "member {name} comes before its checksum file {}: not written by k8sup",
                a.checksum_path
            )));
        }
        let mut tmp = cache.temp_file()?;
        progress.started(a, Some(listed.size));
        let mut hasher = Hasher::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| err(format!("member {name}: {e}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            tmp.write_all(&buf[..n])
                .map_err(|e| ArtifactError::cache(tmp.path(), "write", e))?;
            progress.advanced(a, n as u64);
        }
        let size = hasher.len;
        if size != listed.size {
            let e = err(format!(
                "member {name} ends after {size} of its {} bytes: the bundle is truncated; copy it again",
                listed.size
            ));
            progress.failed(a, &e);
            return Err(e);
        }
        let actual = hasher.finish();
        let manifest_location = format!("{}:{MANIFEST}", bundle.display());
        let checked = verify::check(
            &Source::Bundle(bundle.to_path_buf()),
            a,
            &location,
            &manifest_location,
            &listed.sha256,
            &actual,
        )
        .and_then(|()| {
            let (_, record) = cache.store(a, tmp, &actual, size, &location, &manifest_location)?;
            progress.verified(a, &record.sha256);
            let members = extract::contents(cache, a, &cache.path_of(a), &record.sha256)?;
            Ok(fetched(cache, a, &record, members, Outcome::Imported))
        });
        match checked {
            Ok(f) => {
                done.insert(i, f);
            }
            Err(e) => {
                progress.failed(a, &e);
                return Err(e);
            }
        }
    }
    if !todo.is_empty() {
        let mut names: Vec<&str> = todo.values().map(|(_, a, _)| a.name.as_str()).collect();
        names.sort();
        return Err(err(format!(
            "its manifest lists {} but the tar does not hold them (a truncated bundle?)",
            names.join(", ")
        )));
    }
    Ok(done.into_values().collect())
}
