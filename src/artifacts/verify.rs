//! Published checksums: reading upstream's checksum files, and the one
//! comparison every fetched byte goes through.

use sha2::{Digest, Sha256};

use crate::catalog::{Artifact, ChecksumFormat};
use crate::error::{ArtifactError, Mismatch};
use crate::source::Source;

/// The most a checksum file may hold: runc's and etcd's release-wide
/// listings are a few hundred bytes; anything near this is not a checksum
/// file.
pub(crate) const MAX_CHECKSUM_FILE: usize = 64 * 1024;

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The SHA-256 (lower-case hex) that `text`, the artifact's checksum file,
/// publishes for it.
pub fn published_sha256(
    artifact: &Artifact,
    location: &str,
    text: &[u8],
) -> Result<String, ArtifactError> {
    let bad = |reason: String| ArtifactError::BadChecksumFile {
        artifact: artifact.name.clone(),
        location: location.to_string(),
        reason,
    };
    let text = std::str::from_utf8(text).map_err(|_| bad("it is not text".into()))?;
    match artifact.checksum_format {
        ChecksumFormat::Hex => {
            // Some hex files end with a newline, some repeat the name: the
            // first word is the digest.
            let word = text.split_whitespace().next().unwrap_or("");
            if is_sha256_hex(word) {
                Ok(word.to_ascii_lowercase())
            } else {
                Err(bad(format!(
                    "expected a 64-digit hex SHA-256, found {:?}",
                    text.chars().take(80).collect::<String>()
                )))
            }
        }
        ChecksumFormat::Listing => {
            let want = artifact.file_name();
            let mut found = None;
            for line in text.lines() {
                let mut words = line.split_whitespace();
                let (Some(sum), Some(name)) = (words.next(), words.next()) else {
                    continue;
                };
                // `sha256sum -b` marks binary mode with `*`; some listings
                // carry a directory (`./runc.amd64`).
                let name = name.trim_start_matches('*');
                let name = name.rsplit('/').next().unwrap_or(name);
                if name == want && is_sha256_hex(sum) {
                    if found
                        .as_deref()
                        .is_some_and(|f: &str| f != sum.to_ascii_lowercase())
                    {
                        return Err(bad(format!("it lists {want} twice with different digests")));
                    }
                    found = Some(sum.to_ascii_lowercase());
                }
            }
            found.ok_or_else(|| bad(format!("no line names {want}")))
        }
    }
}

/// A running SHA-256 and byte count of what was written so far.
#[derive(Default)]
pub(crate) struct Hasher {
    sha: Sha256,
    pub(crate) len: u64,
}

impl Hasher {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    pub(crate) fn finish(self) -> String {
        hex::encode(self.sha.finalize())
    }
}

/// The mismatch error, or nothing when `actual` is what was published.
pub(crate) fn check(
    source: &Source,
    artifact: &Artifact,
    source_location: &str,
    checksum_location: &str,
    expected: &str,
    actual: &str,
) -> Result<(), ArtifactError> {
    if expected.eq_ignore_ascii_case(actual) {
        Ok(())
    } else {
        Err(ArtifactError::ChecksumMismatch(Box::new(Mismatch {
            artifact: artifact.name.clone(),
            source_location: source_location.to_string(),
            checksum_location: checksum_location.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
            fix: source.mismatch_fix(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Images, Request, artifacts};

    fn art(name: &str) -> Artifact {
        artifacts(&Request::new("v1.37.2", "amd64", Images::Archives).unwrap())
            .unwrap()
            .into_iter()
            .find(|a| a.name == name)
            .unwrap()
    }

    const A: &str = "e9557cb7c444e5c2335c3c42d00936cee3a35921a2233f2b2263c527209b3a12";
    const B: &str = "0773447210e6121cfaf8b2d7e91a4e9aa97329b634c47c1ae1f9c426f68806fb";

    #[test]
    fn reads_each_upstream_format() {
        assert_eq!(
            published_sha256(&art("kubelet"), "x", A.as_bytes()).unwrap(),
            A
        );
        assert_eq!(
            published_sha256(
                &art("kubelet"),
                "x",
                format!("{}\n", A.to_uppercase()).as_bytes()
            )
            .unwrap(),
            A
        );
        let listing = format!("{B}  runc.arm64\n{A} *runc.amd64\n{B}  libseccomp-2.5.5.tar.gz\n");
        assert_eq!(
            published_sha256(&art("runc"), "x", listing.as_bytes()).unwrap(),
            A
        );
        let one = format!("{A}  cni-plugins-linux-amd64-v1.10.0.tgz\n");
        assert_eq!(
            published_sha256(&art("cni-plugins"), "x", one.as_bytes()).unwrap(),
            A
        );
    }

    #[test]
    fn refuses_what_does_not_name_the_file() {
        let e = published_sha256(
            &art("runc"),
            "https://m/runc.sha256sum",
            format!("{A}  runc.arm64\n").as_bytes(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("runc.amd64") && e.contains("https://m/runc.sha256sum"),
            "{e}"
        );
        let e = published_sha256(&art("kubelet"), "x", b"<html>404</html>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("64-digit"), "{e}");
        let twice = format!("{A}  runc.amd64\n{B}  runc.amd64\n");
        assert!(published_sha256(&art("runc"), "x", twice.as_bytes()).is_err());
    }
}
