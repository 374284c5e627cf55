//! Fetch one version's artifacts by hand, until the CLI has
//! `k8sup artifacts fetch` (and to measure it):
//!
//!     cargo run -p k8sup-artifacts --example fetch -- SOURCE CACHE_DIR [v1.37.2] [BUNDLE_OUT]
//!
//! SOURCE is `official`, a mirror URL, a directory or a bundle .tar. Prints
//! one line per artifact and the time taken; with BUNDLE_OUT, also writes a
//! bundle there.

use std::sync::Arc;
use std::time::Instant;

use k8sup_artifacts::{Cache, Images, NoProgress, Request, Source, bundle, fetch};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [source, cache, rest @ ..] = args.as_slice() else {
        eprintln!("usage: fetch SOURCE CACHE_DIR [VERSION] [BUNDLE_OUT]");
        std::process::exit(2);
    };
    let version = rest.first().map(String::as_str).unwrap_or("v1.37.2");
    let source: Source = source.parse()?;
    let images = if source.has_images() {
        Images::Archives
    } else {
        Images::Registry
    };
    let request = Request::new(version, std::env::consts::ARCH, images)?;
    let t = Instant::now();
    let set = fetch(&request, &source, &Cache::new(cache), Arc::new(NoProgress)).await?;
    let secs = t.elapsed().as_secs_f64();
    let bytes: u64 = set.items.iter().map(|f| f.file.size).sum();
    for f in &set.items {
        println!(
            "{:<24} {:<8} {:<10?} {}",
            f.artifact.name,
            f.artifact.version,
            f.outcome,
            f.file.path.display()
        );
    }
    println!(
        "{} artifacts, {} read from {}, {:.1} MB in {secs:.2} s",
        set.items.len(),
        set.transferred(),
        set.source,
        bytes as f64 / 1e6
    );
    if let Some(out) = rest.get(1) {
        let t = Instant::now();
        let w = bundle::write(&set, out.as_ref())?;
        println!(
            "bundle {out}: {:.1} MB in {:.2} s",
            w.size as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
