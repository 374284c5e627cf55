//! Where artifacts come from. Every source serves the same paths
//! ([`Artifact::path`](crate::Artifact)), so a mirror is just a copy of the
//! official locations under another base, a directory is that copy on disk,
//! and a bundle is that copy in one tar (plus a manifest).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use url::Url;

use crate::error::ArtifactError;

/// An artifact source, as the inventory's `cluster.artifacts.source` or
/// `--artifacts` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `https://dl.k8s.io/…` and `https://github.com/…/releases/download/…`.
    Official,
    /// The same paths under a base URL: `BASE/dl.k8s.io/release/…`. Plain
    /// `http://` is used only because the user wrote it; an `https://`
    /// mirror never follows a redirect to `http://`.
    Mirror(Url),
    /// The same layout on disk (an unpacked bundle, or a mirror's root).
    Directory(PathBuf),
    /// An air-gap bundle written by [`bundle::write`](crate::bundle::write).
    Bundle(PathBuf),
}

impl Source {
    /// Where `path` is in this source, for messages (and for the HTTP
    /// sources, the URL fetched). `None` for a bundle, whose members are read
    /// in one pass.
    pub fn location(&self, path: &str) -> String {
        match self {
            Source::Official => format!("https://{path}"),
            Source::Mirror(base) => mirror_url(base, path).to_string(),
            Source::Directory(dir) => dir.join(path).display().to_string(),
            Source::Bundle(tar) => format!("{}:{path}", tar.display()),
        }
    }

    /// The URL of `path`, for the HTTP sources.
    pub(crate) fn url(&self, path: &str) -> Option<Url> {
        match self {
            Source::Official => Url::parse(&format!("https://{path}")).ok(),
            Source::Mirror(base) => Some(mirror_url(base, path)),
            Source::Directory(_) | Source::Bundle(_) => None,
        }
    }

    /// A path in a directory source.
    pub(crate) fn file(&self, path: &str) -> Option<PathBuf> {
        match self {
            Source::Directory(dir) => Some(dir.join(path)),
            _ => None,
        }
    }

    /// What to do about a file from this source that does not match its
    /// published SHA-256.
    pub(crate) fn mismatch_fix(&self) -> String {
        match self {
            Source::Official => {
                "The download was corrupted or altered in transit: run again; if it \
                persists, do not use this network path (a proxy may be rewriting downloads)"
                    .into()
            }
            Source::Mirror(base) => format!(
                "The mirror's file was changed or corrupted (or its checksum file is stale): re-fetch \
                 it into the mirror {base} from the official location, or fetch from the official \
                 locations instead"
            ),
            Source::Directory(dir) => format!(
                "The file in {} was changed or corrupted: copy it there again from the official \
                 location or a bundle",
                dir.display()
            ),
            Source::Bundle(tar) => format!(
                "The bundle {} was changed or corrupted after it was written: write it again with \
                 `k8sup artifacts bundle`",
                tar.display()
            ),
        }
    }

    /// True for sources that can hold image archives.
    pub fn has_images(&self) -> bool {
        !matches!(self, Source::Official)
    }
}

fn mirror_url(base: &Url, path: &str) -> Url {
    // `join` would drop the base's last segment without a trailing slash.
    let mut base = base.clone();
    if !base.path().ends_with('/') {
        let p = format!("{}/", base.path());
        base.set_path(&p);
    }
    base.join(path).unwrap_or(base)
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Official => f.write_str("official release locations"),
            Source::Mirror(u) => write!(f, "mirror {u}"),
            Source::Directory(d) => write!(f, "directory {}", d.display()),
            Source::Bundle(b) => write!(f, "bundle {}", b.display()),
        }
    }
}

impl FromStr for Source {
    type Err = ArtifactError;

    /// `official`; `http://…` or `https://…` (a mirror); a path ending in
    /// `.tar` (a bundle); any other path (a directory). Paths need not exist
    /// yet: fetching reports a missing one with its name.
    fn from_str(s: &str) -> Result<Self, ArtifactError> {
        if s == "official" {
            return Ok(Source::Official);
        }
        if s.is_empty() {
            return Err(ArtifactError::BadSource(s.into()));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return match scheme {
                "http" | "https" => {
                    let url = Url::parse(s).map_err(|_| ArtifactError::BadSource(s.into()))?;
                    if url.host_str().is_none() || url.query().is_some() {
                        return Err(ArtifactError::BadSource(s.into()));
                    }
                    Ok(Source::Mirror(url))
                }
                _ => Err(ArtifactError::BadSource(s.into())),
            };
        }
        let path = Path::new(s).to_path_buf();
        if s.ends_with(".tar") {
            Ok(Source::Bundle(path))
        } else {
            Ok(Source::Directory(path))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_places_paths() {
        let p = "dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet";
        assert_eq!(
            "official".parse::<Source>().unwrap().location(p),
            format!("https://{p}")
        );
        for base in ["http://10.0.0.1:8080/m", "http://10.0.0.1:8080/m/"] {
            assert_eq!(
                base.parse::<Source>().unwrap().location(p),
                format!("http://10.0.0.1:8080/m/{p}")
            );
        }
        assert_eq!(
            "/srv/mirror".parse::<Source>().unwrap(),
            Source::Directory("/srv/mirror".into())
        );
        assert_eq!(
            "air.tar".parse::<Source>().unwrap(),
            Source::Bundle("air.tar".into())
        );
        for bad in ["ftp://x/", "", "https://"] {
            assert!(bad.parse::<Source>().is_err(), "{bad}");
        }
    }
}
