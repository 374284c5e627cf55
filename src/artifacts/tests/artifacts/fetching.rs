//! Fetching the whole set for v1.37.2 from the mirror over HTTP.

use k8sup_artifacts::catalog::{PINNED, artifacts};
use k8sup_artifacts::{Cache, Images, Kind, Outcome, Source, fetch};
use std::process::Command;

use crate::mirror::{self, VERSION};
use crate::server::{self, Fault};
use crate::{Counted, leftovers, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_artifact_arrives_verified_once_and_runs() {
    let root = mirror::root();
    let srv = server::serve(&root, Fault::default()).await;
    let source: Source = srv.base.parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let req = request(Images::Archives);

    let progress = Counted::new();
    let set = fetch(&req, &source, &cache, progress.clone())
        .await
        .unwrap();

    // Every file is the mirror's, by the index build.sh wrote when it built them.
    let indexed = mirror::indexed_files();
    assert_eq!(set.items.len(), 13);
    for f in &set.items {
        assert_eq!(f.outcome, Outcome::Downloaded, "{}", f.artifact.name);
        let want = indexed.get(&f.artifact.path).unwrap_or_else(|| {
            panic!(
                "{} is not at a path the mirror's index lists",
                f.artifact.path
            )
        });
        assert_eq!(&f.file.sha256, want, "{}", f.artifact.name);
        assert_eq!(
            &mirror::sha256_file(&f.file.path),
            want,
            "{} on disk",
            f.artifact.name
        );
        assert!(f.file.path.starts_with(dir.path()));
    }
    // One request for each file and one for its checksum file, no more.
    assert_eq!(srv.requests().len(), 26, "{:?}", srv.requests());
    assert_eq!(Counted::get(&progress.started), 13);
    assert_eq!(Counted::get(&progress.verified), 13);
    let total: u64 = set.items.iter().map(|f| f.file.size).sum();
    assert_eq!(
        progress.bytes.load(std::sync::atomic::Ordering::SeqCst),
        total
    );
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );

    // What hosts get are programs that run and say their versions.
    let p = &PINNED[0];
    let says = |name: &str, args: &[&str], want: &str| {
        let file = set
            .program(name)
            .unwrap_or_else(|| panic!("no program {name}"));
        let out = Command::new(&file.path).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains(want),
            "{name} {args:?} says {text:?}, not {want}"
        );
        assert_eq!(mirror::sha256_file(&file.path), file.sha256, "{name}");
    };
    says("kubelet", &["--version"], &format!("Kubernetes {VERSION}"));
    says("containerd", &["--version"], p.containerd);
    says("ctr", &["--version"], p.containerd);
    says("runc", &["--version"], p.runc.trim_start_matches('v'));
    says("crictl", &["--version"], p.crictl);
    says("coredns", &["-version"], p.coredns.trim_start_matches('v'));
    let cni = set.get("cni-plugins").unwrap();
    for want in ["bridge", "host-local", "loopback", "portmap"] {
        assert!(
            cni.contents.iter().any(|m| m.name == want && m.executable),
            "{want}"
        );
    }
    assert!(set.program("containerd-shim-runc-v2").is_some());
    // The tarballs themselves are not pushed, their members are.
    assert!(set.host_files().all(|f| !f.name.ends_with("gz")));
    let images: Vec<&str> = set.image_archives().map(|(i, _)| i).collect();
    assert_eq!(
        images,
        [
            "registry.k8s.io/pause:3.10.2",
            "registry.k8s.io/coredns/coredns:v1.15.0"
        ]
    );

    // A second fetch reads nothing: no request reaches the server.
    let again = Counted::new();
    let set2 = fetch(&req, &source, &cache, again.clone()).await.unwrap();
    assert_eq!(
        srv.requests().len(),
        26,
        "the second fetch asked {:?}",
        &srv.requests()[26..]
    );
    assert_eq!(set2.transferred(), 0);
    assert_eq!(Counted::get(&again.cached), 13);
    for (a, b) in set.items.iter().zip(&set2.items) {
        assert_eq!((&a.file, &a.contents), (&b.file, &b.contents));
    }

    // A damaged cached file (cut short, same record) is not trusted: it,
    // and only it, is fetched again.
    let kubectl = set.program("kubectl").unwrap().path.clone();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&kubectl)
        .unwrap();
    f.set_len(1000).unwrap();
    drop(f);
    let set3 = fetch(&req, &source, &cache, Counted::new()).await.unwrap();
    let new: Vec<String> = srv.requests()[26..].to_vec();
    let kubectl_path = set3.get("kubectl").unwrap().artifact.path.clone();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(new.contains(&kubectl_path) && new.contains(&format!("{kubectl_path}.sha256")));
    assert_eq!(set3.get("kubectl").unwrap().outcome, Outcome::Downloaded);
    assert_eq!(set3.transferred(), 1);
    assert_eq!(
        mirror::sha256_file(&kubectl),
        set.get("kubectl").unwrap().file.sha256
    );
    // An edited unpacked member is unpacked again from the verified tarball
    // without any request.
    let ctr = set.program("ctr").unwrap().path.clone();
    std::fs::write(&ctr, b"#!/bin/sh\necho not ctr\n").unwrap();
    let set4 = fetch(&req, &source, &cache, Counted::new()).await.unwrap();
    assert_eq!(srv.requests().len(), 28);
    assert_eq!(
        mirror::sha256_file(&set4.program("ctr").unwrap().path),
        set.program("ctr").unwrap().sha256
    );
}

/// The catalog and the test mirror agree: same component versions as
/// versions.env, same paths as index.json, same image names.
#[test]
fn catalog_matches_versions_env_and_the_mirror_index() {
    let env = mirror::versions_env();
    let p = PINNED
        .iter()
        .find(|p| p.minor == 37)
        .expect("v1.37 is pinned");
    for (key, pinned) in [
        ("CONTAINERD_VERSION", p.containerd),
        ("RUNC_VERSION", p.runc),
        ("CRICTL_VERSION", p.crictl),
        ("CNI_PLUGINS_VERSION", p.cni_plugins),
        ("COREDNS_VERSION", p.coredns),
    ] {
        assert_eq!(
            env.get(key).map(String::as_str),
            Some(pinned),
            "tests/artifacts/versions.env's {key} and catalog::PINNED disagree: change both together"
        );
    }

    let index = mirror::index();
    let indexed = mirror::indexed_files();
    for a in artifacts(&request(Images::Archives)).unwrap() {
        assert!(
            indexed.contains_key(&a.path),
            "{} is not in the mirror's index",
            a.path
        );
        assert!(
            mirror::root().join(&a.checksum_path).is_file(),
            "the mirror has no {}",
            a.checksum_path
        );
        if let Kind::Image { image } = &a.kind {
            assert_eq!(index["images"][image]["path"], a.path.as_str(), "{image}");
        }
    }
    assert_eq!(
        index["kubernetes"][VERSION]["pause_image"],
        format!("registry.k8s.io/pause:{}", p.pause).as_str(),
        "kubeadm's PauseVersion for {VERSION} and catalog::PINNED's pause disagree"
    );
    for (name, kind) in [
        ("containerd", "containerd"),
        ("crictl", "crictl"),
        ("coredns", "coredns"),
    ] {
        let contents = &index["components"][kind]["contents"];
        let a = artifacts(&request(Images::Registry))
            .unwrap()
            .into_iter()
            .find(|a| a.name == name)
            .unwrap();
        let Kind::Tarball { required } = a.kind else {
            panic!()
        };
        for r in required {
            assert!(
                contents.as_array().unwrap().iter().any(|c| c == r.as_str()),
                "{name}: {r}"
            );
        }
    }
}
