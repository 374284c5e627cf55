//! What is refused, and what it leaves behind: nothing trusted.

use std::sync::Arc;

use k8sup_artifacts::{
    ArtifactError, Cache, Images, Mismatch, NoProgress, Outcome, Request, Source, fetch,
};

use crate::mirror;
use crate::server::{self, Fault};
use crate::{Counted, leftovers, request};

const CRICTL: &str = "github.com/kubernetes-sigs/cri-tools/releases/download/v1.37.0/crictl-v1.37.0-linux-amd64.tar.gz";
const APISERVER: &str = "dl.k8s.io/release/v1.37.2/bin/linux/amd64/kube-apiserver";

fn the_one(err: ArtifactError) -> ArtifactError {
    match err {
        ArtifactError::Several(mut v) if v.len() == 1 => v.pop().unwrap(),
        e => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_in_the_mirror_is_refused_and_not_cached() {
    let copy = tempfile::tempdir().unwrap();
    mirror::linked_copy(copy.path());
    let tampered = mirror::tamper(copy.path(), CRICTL, 5_000_000);
    let published = mirror::indexed_files()[CRICTL].clone();
    let srv = server::serve(copy.path(), Fault::default()).await;
    let source: Source = srv.base.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let progress = Counted::new();

    let err = fetch(
        &request(Images::Archives),
        &source,
        &cache,
        progress.clone(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    match the_one(err) {
        ArtifactError::ChecksumMismatch(m) => {
            let Mismatch {
                artifact,
                source_location,
                checksum_location,
                expected,
                actual,
                fix,
            } = *m;
            assert!(fix.contains(&srv.base) && fix.contains("re-fetch"), "{fix}");
            assert!(fix.contains(&srv.base) && fix.contains("re-fetch"), "{fix}");
            assert_eq!(artifact, "crictl");
            assert_eq!(source_location, format!("{}{CRICTL}", srv.base));
            assert_eq!(checksum_location, format!("{}{CRICTL}.sha256", srv.base));
            assert_eq!(expected, published);
            assert_eq!(actual, tampered);
        }
        other => panic!("not a checksum mismatch: {other}"),
    }
    for needle in ["crictl", &published, &tampered, CRICTL, "re-fetch"] {
        assert!(msg.contains(needle), "the message lacks {needle}: {msg}");
    }
    assert_eq!(*progress.failed.lock().unwrap(), ["crictl"]);

    // Nothing under its name, nothing half-written; the others are cached.
    let a = k8sup_artifacts::catalog::artifacts(&request(Images::Archives))
        .unwrap()
        .into_iter()
        .find(|a| a.name == "crictl")
        .unwrap();
    assert!(!cache.path_of(&a).exists());
    assert!(cache.lookup(&a).is_none());
    assert!(!cache.contents_dir(&a).exists());
    let in_dir: Vec<_> = std::fs::read_dir(cache.path_of(&a).parent().unwrap())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(in_dir.is_empty(), "{in_dir:?}");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );
    assert_eq!(Counted::get(&progress.verified), 12);

    // Asking again asks again (a refused file is never remembered as good),
    // and is refused again.
    let before = srv.requests().len();
    let err = fetch(
        &request(Images::Archives),
        &source,
        &cache,
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert!(matches!(the_one(err), ArtifactError::ChecksumMismatch(_)));
    let asked = &srv.requests()[before..];
    assert_eq!(asked, [format!("{CRICTL}.sha256"), CRICTL.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_transfer_leaves_nothing_trusted() {
    let root = mirror::root();
    let cut = server::serve(
        &root,
        Fault {
            cut: Some((APISERVER.to_string(), 3_000_000)),
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let req = request(Images::Registry);
    let err = fetch(
        &req,
        &cut.base.parse().unwrap(),
        &cache,
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    match the_one(err) {
        ArtifactError::Download {
            artifact, location, ..
        } => {
            assert_eq!(artifact, "kube-apiserver");
            assert_eq!(location, format!("{}{APISERVER}", cut.base));
        }
        other => panic!("not a download error: {other}"),
    }
    assert!(msg.contains("Nothing was cached"), "{msg}");
    let a = k8sup_artifacts::catalog::artifacts(&req).unwrap().remove(0);
    assert_eq!(a.name, "kube-apiserver");
    assert!(!cache.path_of(&a).exists() && cache.lookup(&a).is_none());
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );

    // Once the mirror is healthy, only what failed is fetched.
    let good = server::serve(&root, Fault::default()).await;
    let set = fetch(
        &req,
        &good.base.parse().unwrap(),
        &cache,
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(
        good.requests(),
        [format!("{APISERVER}.sha256"), APISERVER.to_string()]
    );
    assert_eq!(
        set.get("kube-apiserver").unwrap().outcome,
        Outcome::Downloaded
    );
    assert_eq!(set.transferred(), 1);
    assert_eq!(
        mirror::sha256_file(&cache.path_of(&a)),
        mirror::indexed_files()[APISERVER]
    );
}

#[tokio::test]
async fn unknown_versions_and_missing_sources_are_refused_by_name() {
    let msg = Request::new("v1.36.3", "amd64", Images::Registry)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("v1.36.3") && msg.contains("v1.37.x"), "{msg}");

    // A directory that does not hold the version: every artifact is named,
    // with the path it was looked for at.
    let empty = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = Source::Directory(empty.path().to_path_buf());
    let err = fetch(
        &request(Images::Registry),
        &source,
        &Cache::new(dir.path()),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    let ArtifactError::Several(errors) = &err else {
        panic!("{err}")
    };
    assert_eq!(errors.len(), 11);
    let msg = err.to_string();
    for e in errors {
        assert!(matches!(e, ArtifactError::NotFound { .. }), "{e}");
    }
    assert!(
        msg.contains(&format!(
            "{}/dl.k8s.io/release/v1.37.2/bin/linux/amd64/kubelet.sha256",
            empty.path().display()
        )),
        "{msg}"
    );

    // Image archives are never published upstream: refused before any request.
    let err = fetch(
        &request(Images::Archives),
        &Source::Official,
        &Cache::new(dir.path()),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ArtifactError::NoOfficialImages { .. }),
        "{err}"
    );
}
