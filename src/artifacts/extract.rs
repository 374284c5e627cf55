//! Unpacking a verified tarball in the cache, so hosts get plain files
//! (containerd's `bin/*`, `crictl`, the CNI plugins, `coredns`) and need
//! neither `tar` nor the tarball.
//!
//! Only regular files and directories are taken, at relative paths that stay
//! inside the tarball: a release tarball has nothing else, and anything else
//! (a link, a device, `../x`) is refused rather than trusted.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;

use crate::cache::{CONTENTS_RECORD, Cache, Member};
use crate::catalog::{Artifact, Kind};
use crate::error::ArtifactError;
use crate::verify::Hasher;

/// The members of `artifact`'s verified tarball (SHA-256 `sha256`) at
/// `tarball`, unpacked into the cache unless they already are.
pub(crate) fn contents(
    cache: &Cache,
    artifact: &Artifact,
    tarball: &Path,
    sha256: &str,
) -> Result<Vec<Member>, ArtifactError> {
    let Kind::Tarball { required } = &artifact.kind else {
        return Ok(Vec::new());
    };
    if let Some(members) = cache.lookup_contents(artifact, sha256) {
        return Ok(members);
    }
    let err = |reason: String| ArtifactError::Extract {
        artifact: artifact.name.clone(),
        path: tarball.to_path_buf(),
        reason,
    };
    let dir = cache.temp_dir()?;
    let file = fs::File::open(tarball).map_err(|e| err(e.to_string()))?;
    let mut archive = tar::Archive::new(GzDecoder::new(io::BufReader::new(file)));
    let mut members = Vec::new();
    for entry in archive.entries().map_err(|e| err(e.to_string()))? {
        let mut entry = entry.map_err(|e| err(e.to_string()))?;
        let raw = entry.path().map_err(|e| err(e.to_string()))?.into_owned();
        let Some(name) = clean(&raw) else {
            return Err(err(format!("member {} leaves the tarball", raw.display())));
        };
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() || name.as_os_str().is_empty() || name == Path::new(CONTENTS_RECORD) {
            return Err(err(format!(
                "member {} is not a regular file ({kind:?}); a release tarball holds only files",
                raw.display()
            )));
        }
        if members.iter().any(|m: &Member| Path::new(&m.name) == name) {
            return Err(err(format!("member {} appears twice", name.display())));
        }
        let mode = entry.header().mode().map_err(|e| err(e.to_string()))? & 0o755;
        let dest = dir.path().join(&name);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| ArtifactError::cache(parent, "create directory", e))?;
        }
        let mut out =
            fs::File::create(&dest).map_err(|e| ArtifactError::cache(&dest, "create", e))?;
        let mut hasher = Hasher::default();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(|e| err(e.to_string()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| ArtifactError::cache(&dest, "write", e))?;
        }
        out.set_permissions(fs::Permissions::from_mode(mode))
            .and_then(|_| out.sync_all())
            .map_err(|e| ArtifactError::cache(&dest, "sync", e))?;
        let size = hasher.len;
        members.push(Member {
            name: name.to_string_lossy().into_owned(),
            sha256: hasher.finish(),
            size,
            mode,
            mtime_ns: 0,
        });
    }
    for want in required {
        if !members.iter().any(|m| &m.name == want) {
            return Err(err(format!(
                "it has no {want}, which hosts need (members: {})",
                members
                    .iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    cache.store_contents(artifact, dir, sha256, members)
}

/// The member's path without `./`, or `None` when it is absolute or climbs.
fn clean(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Images, Request, artifacts};
    use flate2::{Compression, write::GzEncoder};

    fn crictl() -> Artifact {
        artifacts(&Request::new("v1.37.2", "amd64", Images::Registry).unwrap())
            .unwrap()
            .into_iter()
            .find(|a| a.name == "crictl")
            .unwrap()
    }

    /// A gzipped tar whose members are written as raw headers, so names
    /// tar::Builder would refuse (`../x`) can be made.
    fn tarball(dir: &Path, members: &[(&str, tar::EntryType, &[u8])]) -> PathBuf {
        let path = dir.join("t.tar.gz");
        let mut b = tar::Builder::new(GzEncoder::new(
            fs::File::create(&path).unwrap(),
            Compression::fast(),
        ));
        for (name, kind, data) in members {
            let mut h = tar::Header::new_gnu();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            if kind.is_symlink() {
                h.set_link_name("/etc/passwd").unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn unpacks_plain_files_and_refuses_anything_else() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        let a = crictl();

        let ok = tarball(
            dir.path(),
            &[("./crictl", tar::EntryType::Regular, b"#!/bin/sh\n")],
        );
        let members = contents(&cache, &a, &ok, "aa").unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(
            (members[0].name.as_str(), members[0].mode),
            ("crictl", 0o755)
        );
        assert_eq!(
            fs::read(cache.contents_dir(&a).join("crictl")).unwrap(),
            b"#!/bin/sh\n"
        );
        // Unpacked once: the same tarball is not unpacked again.
        fs::remove_file(&ok).unwrap();
        assert_eq!(contents(&cache, &a, &ok, "aa").unwrap(), members);

        for (what, members) in [
            (
                "leaves",
                vec![("../crictl", tar::EntryType::Regular, &b"x"[..])],
            ),
            (
                "leaves",
                vec![("/crictl", tar::EntryType::Regular, &b"x"[..])],
            ),
            (
                "not a regular file",
                vec![("crictl", tar::EntryType::Symlink, &b""[..])],
            ),
            (
                "has no crictl",
                vec![("other", tar::EntryType::Regular, &b"x"[..])],
            ),
            (
                "twice",
                vec![
                    ("crictl", tar::EntryType::Regular, &b"x"[..]),
                    ("./crictl", tar::EntryType::Regular, &b"y"[..]),
                ],
            ),
        ] {
            let bad = tarball(dir.path(), &members);
            let err = contents(&cache, &a, &bad, "bb").unwrap_err().to_string();
            assert!(err.contains(what) && err.contains("crictl"), "{err}");
            assert!(!dir.path().join("crictl").exists());
        }
        // The refused tarballs left the good unpacking alone and no scraps.
        assert!(lookup_ok(&cache, &a, "aa"));
        assert_eq!(fs::read_dir(cache.root().join(".tmp")).unwrap().count(), 0);
    }

    fn lookup_ok(cache: &Cache, a: &Artifact, sha: &str) -> bool {
        cache.lookup_contents(a, sha).is_some()
    }
}
