//! What a cluster needs for one Kubernetes version and one architecture:
//! every file, where upstream publishes it, and how upstream publishes its
//! SHA-256.
//!
//! Every artifact is named by its *path*: the official URL without
//! `https://` (`dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet`,
//! `github.com/containerd/containerd/releases/download/v2.4.2/…`). A mirror
//! serves the same paths under its base URL, a directory holds them under its
//! root, a bundle holds them as tar members, and the workstation cache keys
//! on them: version and architecture are in the path, so nothing else is
//! needed to tell two downloads apart.
//!
//! The versions of containerd, runc, crictl, the CNI plugins, CoreDNS and the
//! pause image are pinned per Kubernetes minor in [`PINNED`], the one table
//! (tests/artifacts/versions.env pins the same for the test mirror; a test
//! holds the two together).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ArtifactError;

/// The components k8sup installs beside Kubernetes, pinned for one
/// Kubernetes minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    /// Kubernetes minor version (`37` for v1.37.x).
    pub minor: u32,
    pub containerd: &'static str,
    pub runc: &'static str,
    pub crictl: &'static str,
    pub cni_plugins: &'static str,
    pub coredns: &'static str,
    /// The pause image's tag, as kubeadm's `PauseVersion` for this minor.
    pub pause: &'static str,
}

/// The one table of pinned component versions, newest minor first. A
/// Kubernetes version whose minor is not here is refused: its components
/// were never tried together.
pub const PINNED: &[Pinned] = &[Pinned {
    minor: 37,
    containerd: "v2.4.2",
    runc: "v1.5.3",
    crictl: "v1.37.0",
    cni_plugins: "v1.10.0",
    coredns: "v1.15.0",
    pause: "3.10.2",
}];

/// The supported Kubernetes versions, as users write them (`v1.37.x`).
pub fn supported_versions() -> Vec<String> {
    PINNED.iter().map(|p| format!("v1.{}.x", p.minor)).collect()
}

/// A Kubernetes release version, `v1.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KubeVersion {
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v1.{}.{}", self.minor, self.patch)
    }
}

impl FromStr for KubeVersion {
    type Err = ArtifactError;

    /// `v1.37.2` or `1.37.2`. Pre-releases (`-rc.0`) are not release
    /// versions and are refused.
    fn from_str(s: &str) -> Result<Self, ArtifactError> {
        let bad = || ArtifactError::BadVersion {
            version: s.to_string(),
            supported: supported_versions(),
        };
        let rest = s.strip_prefix('v').unwrap_or(s);
        let mut parts = rest.split('.');
        let (Some("1"), Some(minor), Some(patch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let num = |p: &str| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u32>().ok())
                .flatten()
        };
        match (num(minor), num(patch)) {
            (Some(minor), Some(patch)) => Ok(KubeVersion { minor, patch }),
            _ => Err(bad()),
        }
    }
}

impl KubeVersion {
    /// The pinned components for this version, or the error that lists the
    /// supported versions.
    pub fn pinned(&self) -> Result<&'static Pinned, ArtifactError> {
        PINNED
            .iter()
            .find(|p| p.minor == self.minor)
            .ok_or_else(|| ArtifactError::UnsupportedVersion {
                version: self.to_string(),
                supported: supported_versions(),
            })
    }
}

/// A host architecture, named as the release files name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = ArtifactError;

    /// Release names (`amd64`, `arm64`) and `uname -m` names (`x86_64`,
    /// `aarch64`), so a host's facts can be passed as they are.
    fn from_str(s: &str) -> Result<Self, ArtifactError> {
        match s {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            _ => Err(ArtifactError::UnsupportedArch {
                arch: s.to_string(),
            }),
        }
    }
}

/// How upstream publishes an artifact's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChecksumFormat {
    /// `FILE.sha256` holding only the hex digest (dl.k8s.io, crictl, the
    /// mirror's image archives).
    Hex,
    /// A file of `HEX  NAME` lines (`sha256sum` output): CNI's and CoreDNS's
    /// `FILE.sha256`, containerd's `FILE.sha256sum`, runc's release-wide
    /// `runc.sha256sum`. The line naming this artifact's file counts.
    Listing,
}

/// What an artifact is, and so what the hosts get from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum Kind {
    /// A binary pushed to hosts as it is.
    Binary,
    /// A gzipped tarball unpacked in the cache; its regular files are pushed.
    /// `required` are the members hosts need (paths inside the tarball,
    /// without `./`): a tarball without one of them is refused.
    Tarball { required: Vec<String> },
    /// An OCI image archive imported into containerd on each node (`ctr
    /// images import`), for clusters that pull no images. Published only by
    /// mirrors, directories and bundles, never upstream.
    Image { image: String },
}

/// One file a cluster needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Short name: `kubelet`, `containerd`, `runc`, `crictl`, `cni-plugins`,
    /// `coredns`, `image-pause`, `image-coredns`.
    pub name: String,
    /// The component's version (`v1.37.2`, `v2.4.2`, `3.10.2`).
    pub version: String,
    /// The file's path: its official URL without `https://`, or
    /// `images/NAME.tar` for image archives (which have no official URL).
    pub path: String,
    /// The path of the file that publishes its SHA-256.
    pub checksum_path: String,
    pub checksum_format: ChecksumFormat,
    pub kind: Kind,
}

impl Artifact {
    /// The file's name (the last path element), as checksum listings name it.
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }

    /// True for image archives, which only mirrors, directories and bundles
    /// hold.
    pub fn is_image(&self) -> bool {
        matches!(self.kind, Kind::Image { .. })
    }
}

/// Where a cluster's pod images (pause, CoreDNS) come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Images {
    /// containerd pulls them from a registry (or the inventory's registry
    /// mirror): no archives are fetched.
    #[default]
    Registry,
    /// Image archives from the mirror, directory or bundle, imported on each
    /// node (the lab's way: its machines reach no registry).
    Archives,
}

/// What to fetch: one Kubernetes version for one architecture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub kubernetes: KubeVersion,
    pub arch: Arch,
    pub images: Images,
}

impl Request {
    /// Parses the version and architecture as users and host facts write
    /// them; an unsupported version is refused here, before anything runs.
    pub fn new(kubernetes: &str, arch: &str, images: Images) -> Result<Self, ArtifactError> {
        let kubernetes: KubeVersion = kubernetes.parse()?;
        kubernetes.pinned()?;
        Ok(Request {
            kubernetes,
            arch: arch.parse()?,
            images,
        })
    }
}

/// The Kubernetes binaries, in dl.k8s.io's names.
pub const KUBERNETES_BINARIES: [&str; 6] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
];

/// The CNI plugins a cluster's pod network uses (the tarball holds more;
/// all of them are unpacked).
pub const CNI_REQUIRED: [&str; 4] = ["bridge", "host-local", "loopback", "portmap"];

/// The image names of the cluster's own pods.
pub fn pause_image(pinned: &Pinned) -> String {
    format!("registry.k8s.io/pause:{}", pinned.pause)
}

/// CoreDNS's image name for a pinned CoreDNS version.
pub fn coredns_image(pinned: &Pinned) -> String {
    format!("registry.k8s.io/coredns/coredns:{}", pinned.coredns)
}

/// Every artifact of a request, in a stable order (Kubernetes binaries,
/// then components, then image archives when asked for).
pub fn artifacts(req: &Request) -> Result<Vec<Artifact>, ArtifactError> {
    let p = req.kubernetes.pinned()?;
    let arch = req.arch.as_str();
    let k8s = req.kubernetes.to_string();
    let mut out = Vec::new();

    for name in KUBERNETES_BINARIES {
        let path = format!("dl.k8s.io/release/{k8s}/bin/linux/{arch}/{name}");
        out.push(Artifact {
            name: name.to_string(),
            version: k8s.clone(),
            checksum_path: format!("{path}.sha256"),
            path,
            checksum_format: ChecksumFormat::Hex,
            kind: Kind::Binary,
        });
    }

    let gh = |repo: &str, version: &str, file: &str| {
        format!("github.com/{repo}/releases/download/{version}/{file}")
    };
    let bare = |v: &'static str| v.strip_prefix('v').unwrap_or(v);

    let file = format!("containerd-{}-linux-{arch}.tar.gz", bare(p.containerd));
    let path = gh("containerd/containerd", p.containerd, &file);
    out.push(Artifact {
        name: "containerd".into(),
        version: p.containerd.into(),
        checksum_path: format!("{path}.sha256sum"),
        path,
        checksum_format: ChecksumFormat::Listing,
        kind: Kind::Tarball {
            required: ["bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"]
                .map(String::from)
                .to_vec(),
        },
    });

    out.push(Artifact {
        name: "runc".into(),
        version: p.runc.into(),
        path: gh("opencontainers/runc", p.runc, &format!("runc.{arch}")),
        checksum_path: gh("opencontainers/runc", p.runc, "runc.sha256sum"),
        checksum_format: ChecksumFormat::Listing,
        kind: Kind::Binary,
    });

    let path = gh(
        "kubernetes-sigs/cri-tools",
        p.crictl,
        &format!("crictl-{}-linux-{arch}.tar.gz", p.crictl),
    );
    out.push(Artifact {
        name: "crictl".into(),
        version: p.crictl.into(),
        checksum_path: format!("{path}.sha256"),
        path,
        checksum_format: ChecksumFormat::Hex,
        kind: Kind::Tarball {
            required: vec!["crictl".into()],
        },
    });

    let path = gh(
        "containernetworking/plugins",
        p.cni_plugins,
        &format!("cni-plugins-linux-{arch}-{}.tgz", p.cni_plugins),
    );
    out.push(Artifact {
        name: "cni-plugins".into(),
        version: p.cni_plugins.into(),
        checksum_path: format!("{path}.sha256"),
        path,
        checksum_format: ChecksumFormat::Listing,
        kind: Kind::Tarball {
            required: CNI_REQUIRED.map(String::from).to_vec(),
        },
    });

    let path = gh(
        "coredns/coredns",
        p.coredns,
        &format!("coredns_{}_linux_{arch}.tgz", bare(p.coredns)),
    );
    out.push(Artifact {
        name: "coredns".into(),
        version: p.coredns.into(),
        checksum_path: format!("{path}.sha256"),
        path,
        checksum_format: ChecksumFormat::Listing,
        kind: Kind::Tarball {
            required: vec!["coredns".into()],
        },
    });

    if req.images == Images::Archives {
        // The mirror's layout (tests/artifacts/build.sh): one archive per
        // image, for the build machine's architecture. Archives of another
        // architecture would need their own names; the lab is amd64 only.
        for (name, version, image, file) in [
            (
                "image-pause",
                p.pause,
                pause_image(p),
                format!("pause-{}.tar", p.pause),
            ),
            (
                "image-coredns",
                p.coredns,
                coredns_image(p),
                format!("coredns-{}.tar", p.coredns),
            ),
        ] {
            let path = format!("images/{file}");
            out.push(Artifact {
                name: name.into(),
                version: version.into(),
                checksum_path: format!("{path}.sha256"),
                path,
                checksum_format: ChecksumFormat::Hex,
                kind: Kind::Image { image },
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: &str) -> Request {
        Request::new(v, "amd64", Images::Archives).unwrap()
    }

    #[test]
    fn paths_are_the_official_release_paths() {
        let all = artifacts(&req("v1.37.2")).unwrap();
        let path = |n: &str| {
            all.iter()
                .find(|a| a.name == n)
                .map(|a| (a.path.as_str(), a.checksum_path.as_str()))
                .unwrap()
        };
        assert_eq!(
            path("kubelet"),
            (
                "dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet",
                "dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet.sha256"
            )
        );
        assert_eq!(
            path("runc"),
            (
                "github.com/opencontainers/runc/releases/download/v1.5.3/runc.amd64",
                "github.com/opencontainers/runc/releases/download/v1.5.3/runc.sha256sum"
            )
        );
        assert_eq!(
            path("containerd").0,
            "github.com/containerd/containerd/releases/download/v2.4.2/containerd-2.4.2-linux-amd64.tar.gz"
        );
        assert_eq!(
            path("coredns").0,
            "github.com/coredns/coredns/releases/download/v1.15.0/coredns_1.15.0_linux_amd64.tgz"
        );
        assert_eq!(all.len(), 13);
        let arm = artifacts(&Request::new("1.37.0", "aarch64", Images::Registry).unwrap()).unwrap();
        assert_eq!(
            arm.len(),
            11,
            "no image archives when images come from a registry"
        );
        assert!(arm.iter().all(|a| a.path.contains("arm64")), "{arm:?}");
    }

    #[test]
    fn unknown_versions_are_refused_listing_the_supported_ones() {
        let err = Request::new("v1.36.4", "amd64", Images::Registry).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("v1.36.4") && msg.contains("v1.37.x"), "{msg}");
        for bad in ["v1.37", "v2.0.0", "v1.37.2-rc.0", "latest", ""] {
            let msg = Request::new(bad, "amd64", Images::Registry)
                .unwrap_err()
                .to_string();
            assert!(msg.contains("v1.37.x"), "{bad}: {msg}");
        }
        let msg = Request::new("v1.37.2", "s390x", Images::Registry)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("s390x") && msg.contains("amd64"), "{msg}");
    }
}
