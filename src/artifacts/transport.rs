//! Reading bytes from a mirror-shaped source: over HTTP(S) (official
//! locations, mirrors) or from a directory. Bundles are read in one pass by
//! [`crate::bundle`] instead.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::catalog::Artifact;
use crate::error::ArtifactError;
use crate::progress::Progress;
use crate::source::Source;
use crate::verify::{Hasher, MAX_CHECKSUM_FILE};

/// One place to read paths from.
pub(crate) enum Transport {
    Http(reqwest::Client, Source),
    Directory(Source),
}

/// The client for every HTTP source: TLS verified against the platform's
/// roots (rustls), no downgrade from https to http on redirects, and
/// timeouts that notice a stalled transfer without limiting a slow one.
pub(crate) fn client() -> Result<reqwest::Client, ArtifactError> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() != "https"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            let to = attempt.url().to_string();
            attempt.error(format!("refused a redirect from https to plain {to}"))
        } else if attempt.previous().len() >= 10 {
            attempt.error("more than 10 redirects")
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .user_agent(concat!("k8sup/", env!("CARGO_PKG_VERSION")))
        .redirect(policy)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| ArtifactError::Client(error_chain(&e)))
}

/// reqwest's top-level message ("error sending request") hides the cause
/// (connection refused, certificate unknown): keep the whole chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let m = inner.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = inner.source();
    }
    s
}

impl Transport {
    pub(crate) fn for_source(source: &Source) -> Result<Self, ArtifactError> {
        match source {
            Source::Official | Source::Mirror(_) => Ok(Transport::Http(client()?, source.clone())),
            Source::Directory(_) => Ok(Transport::Directory(source.clone())),
            Source::Bundle(_) => unreachable!("bundles are read by bundle::import"),
        }
    }

    pub(crate) fn source(&self) -> &Source {
        match self {
            Transport::Http(_, s) | Transport::Directory(s) => s,
        }
    }

    fn url(&self, path: &str) -> Url {
        self.source().url(path).expect("an HTTP source has URLs")
    }

    fn file(&self, path: &str) -> PathBuf {
        self.source()
            .file(path)
            .expect("a directory source has files")
    }

    async fn open_http(
        client: &reqwest::Client,
        artifact: &Artifact,
        url: Url,
    ) -> Result<reqwest::Response, ArtifactError> {
        let location = url.to_string();
        let resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| ArtifactError::Download {
                artifact: artifact.name.clone(),
                location: location.clone(),
                reason: error_chain(&e),
            })?;
        match resp.status() {
            s if s.is_success() => Ok(resp),
            reqwest::StatusCode::NOT_FOUND => Err(ArtifactError::NotFound {
                artifact: artifact.name.clone(),
                location,
            }),
            s => Err(ArtifactError::Download {
                artifact: artifact.name.clone(),
                location,
                reason: format!("the server answered {s}"),
            }),
        }
    }

    /// A small file (a checksum file), read whole.
    pub(crate) async fn read_small(
        &self,
        artifact: &Artifact,
        path: &str,
    ) -> Result<Vec<u8>, ArtifactError> {
        let location = self.source().location(path);
        let too_big = || ArtifactError::BadChecksumFile {
            artifact: artifact.name.clone(),
            location: location.clone(),
            reason: format!("it is larger than {MAX_CHECKSUM_FILE} bytes"),
        };
        match self {
            Transport::Http(client, _) => {
                let mut resp = Self::open_http(client, artifact, self.url(path)).await?;
                let mut out = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| ArtifactError::Download {
                    artifact: artifact.name.clone(),
                    location: location.clone(),
                    reason: error_chain(&e),
                })? {
                    out.extend_from_slice(&chunk);
                    if out.len() > MAX_CHECKSUM_FILE {
                        return Err(too_big());
                    }
                }
                Ok(out)
            }
            Transport::Directory(_) => {
                let file = self.file(path);
                let f = tokio::fs::File::open(&file).await.map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        ArtifactError::NotFound {
                            artifact: artifact.name.clone(),
                            location: location.clone(),
                        }
                    } else {
                        ArtifactError::Read {
                            artifact: artifact.name.clone(),
                            location: location.clone(),
                            source: e,
                        }
                    }
                })?;
                let mut out = Vec::new();
                f.take(MAX_CHECKSUM_FILE as u64 + 1)
                    .read_to_end(&mut out)
                    .await
                    .map_err(|e| ArtifactError::Read {
                        artifact: artifact.name.clone(),
                        location: location.clone(),
                        source: e,
                    })?;
                if out.len() > MAX_CHECKSUM_FILE {
                    return Err(too_big());
                }
                Ok(out)
            }
        }
    }

    /// Copies `path` into `out`, hashing as it goes; returns the hasher.
    /// A transfer that ends early (a closed connection, a short body) is an
    /// error, never a shorter file.
    pub(crate) async fn copy(
        &self,
        artifact: &Artifact,
        path: &str,
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
        progress: &dyn Progress,
    ) -> Result<Hasher, ArtifactError> {
        let location = self.source().location(path);
        let write_err =
            |e: std::io::Error| ArtifactError::cache("(download in progress)", "write", e);
        let mut hasher = Hasher::default();
        match self {
            Transport::Http(client, _) => {
                let mut resp = Self::open_http(client, artifact, self.url(path)).await?;
                let total = resp.content_length();
                progress.started(artifact, total);
                while let Some(chunk) = resp.chunk().await.map_err(|e| ArtifactError::Download {
                    artifact: artifact.name.clone(),
                    location: location.clone(),
                    reason: error_chain(&e),
                })? {
                    hasher.update(&chunk);
                    out.write_all(&chunk).await.map_err(write_err)?;
                    progress.advanced(artifact, chunk.len() as u64);
                }
                if let Some(total) = total.filter(|t| *t != hasher.len) {
                    return Err(ArtifactError::Download {
                        artifact: artifact.name.clone(),
                        location,
                        reason: format!("the transfer ended after {} of {total} bytes", hasher.len),
                    });
                }
            }
            Transport::Directory(_) => {
                let read_err = |e| ArtifactError::Read {
                    artifact: artifact.name.clone(),
                    location: location.clone(),
                    source: e,
                };
                let mut f = tokio::fs::File::open(self.file(path)).await.map_err(|e| {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        ArtifactError::NotFound {
                            artifact: artifact.name.clone(),
                            location: location.clone(),
                        }
                    } else {
                        read_err(e)
                    }
                })?;
                let total = f.metadata().await.ok().map(|m| m.len());
                progress.started(artifact, total);
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let n = f.read(&mut buf).await.map_err(read_err)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                    out.write_all(&buf[..n]).await.map_err(write_err)?;
                    progress.advanced(artifact, n as u64);
                }
            }
        }
        out.flush().await.map_err(write_err)?;
        Ok(hasher)
    }
}
