//! The files a cluster's hosts get, made ready on the workstation before
//! any host is touched: the upstream artifacts (fetched once per version
//! and architecture into the cache, each checked against its published
//! SHA-256: a mismatch stops the run here) and k8sup's own node daemons.
//!
//! Where k8sup's node daemons come from: `k8sup-datastore` and
//! `k8sup-apiserver-proxy` are built and shipped with `k8sup`, so they are
//! looked for beside the running executable; `K8SUP_NODE_BIN_DIR` names
//! another directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use k8sup_artifacts::{Cache, FetchedSet, Images, NoProgress, Request, Source, fetch};
use k8sup_cluster::NodeFiles;
use k8sup_inventory::{ImageSource, Inventory};

/// k8sup's own programs that run on hosts.
pub const NODE_DAEMONS: [&str; 2] = ["k8sup-datastore", "k8sup-apiserver-proxy"];

/// Where the artifacts come from for this run: `--artifacts` if given, else
/// the inventory's `cluster.artifacts.source` (a relative directory is the
/// inventory's), else the official locations.
pub fn source(inventory: &Inventory, flag: Option<&str>) -> Result<Source> {
    let (text, base) = match (flag, &inventory.cluster.artifacts.source) {
        (Some(f), _) => (f.to_string(), std::env::current_dir()?),
        (None, Some(s)) => (
            s.clone(),
            inventory
                .path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        ),
        (None, None) => return Ok(Source::Official),
    };
    let text = if !text.contains("://") && text != "official" && Path::new(&text).is_relative() {
        base.join(&text).display().to_string()
    } else {
        text
    };
    text.parse()
        .with_context(|| format!("artifacts source {text:?}"))
}

/// What an inventory's cluster needs fetched: its version, for the
/// workstation's architecture (hosts are assumed to share it), with image
/// archives when the inventory asks for them.
pub fn request(inventory: &Inventory) -> Result<Request> {
    let version = format!("v{}", inventory.cluster.kubernetes_version);
    let images = match inventory.cluster.artifacts.images {
        ImageSource::Archives => Images::Archives,
        ImageSource::Registry => Images::Registry,
    };
    Ok(Request::new(&version, std::env::consts::ARCH, images)?)
}

/// Every artifact of `request` from `source`, verified, in the workstation cache.
pub async fn fetch_set(request: &Request, source: &Source) -> Result<FetchedSet> {
    let Some(root) = Cache::default_root() else {
        bail!("no cache directory for artifacts: set HOME or XDG_CACHE_HOME");
    };
    Ok(fetch(request, source, &Cache::new(root), Arc::new(NoProgress)).await?)
}

/// Fetches (or finds cached) every artifact of the inventory's Kubernetes
/// version, and finds k8sup's node daemons.
pub async fn prepare(inventory: &Inventory, flag: Option<&str>) -> Result<NodeFiles> {
    let request = request(inventory)?;
    let set = fetch_set(&request, &source(inventory, flag)?).await?;
    let pinned = request.kubernetes.pinned()?;
    let mut files = NodeFiles {
        pause_image: k8sup_artifacts::catalog::pause_image(pinned),
        coredns_image: k8sup_artifacts::catalog::coredns_image(pinned),
        coredns_version: pinned.coredns.to_string(),
        ..NodeFiles::default()
    };
    for f in set.host_files().filter(|f| f.executable) {
        files.programs.insert(f.name.clone(), f.path.clone());
        files
            .program_sha256
            .insert(f.name.clone(), f.sha256.clone());
    }
    for (image, f) in set.image_archives() {
        files.images.push((image.to_string(), f.path.clone()));
    }
    let dir = node_bin_dir()?;
    for d in NODE_DAEMONS {
        let p = dir.join(d);
        if !p.is_file() {
            bail!(
                "{} is missing: k8sup's node daemons are looked for beside the k8sup executable \
                 (build them with `cargo build --workspace`), or in K8SUP_NODE_BIN_DIR",
                p.display()
            );
        }
        let sha = k8sup_engine::local_sha256(&p).await?;
        files.programs.insert(d.to_string(), p);
        files.program_sha256.insert(d.to_string(), sha);
    }
    Ok(files)
}

fn node_bin_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("K8SUP_NODE_BIN_DIR") {
        return Ok(PathBuf::from(d));
    }
    let exe = std::env::current_exe().context("finding the k8sup executable")?;
    Ok(exe
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".")))
}
