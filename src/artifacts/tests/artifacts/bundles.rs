//! Bundles: written from the cache, read back as a source, byte for byte
//! the mirror's files.

use std::sync::Arc;

use k8sup_artifacts::{
    ArtifactError, Cache, Images, NoProgress, Outcome, Request, Source, bundle, fetch,
};

use crate::mirror;
use crate::{Counted, leftovers, request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_holds_the_mirror_s_bytes_and_reads_back_verified() {
    let req = request(Images::Archives);
    // The mirror's directory, read as a directory source.
    let a = tempfile::tempdir().unwrap();
    let from_dir = fetch(
        &req,
        &Source::Directory(mirror::root()),
        &Cache::new(a.path()),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(from_dir.transferred(), 13);

    let out = tempfile::tempdir().unwrap();
    let tar = out.path().join("bundle.tar");
    let written = bundle::write(&from_dir, &tar).unwrap();
    assert_eq!(written.manifest.artifacts.len(), 13);
    assert_eq!(std::fs::metadata(&tar).unwrap().len(), written.size);
    assert_eq!(bundle::read_manifest(&tar).unwrap(), written.manifest);

    // Read back into another cache: the same bytes, each verified.
    let b = tempfile::tempdir().unwrap();
    let progress = Counted::new();
    let from_bundle = fetch(
        &req,
        &Source::Bundle(tar.clone()),
        &Cache::new(b.path()),
        progress.clone(),
    )
    .await
    .unwrap();
    assert_eq!(Counted::get(&progress.verified), 13);
    let indexed = mirror::indexed_files();
    for (x, y) in from_dir.items.iter().zip(&from_bundle.items) {
        assert_eq!(y.outcome, Outcome::Imported);
        assert_eq!(x.artifact, y.artifact);
        assert_eq!(
            mirror::sha256_file(&y.file.path),
            indexed[&y.artifact.path],
            "{}",
            y.artifact.name
        );
        assert_eq!(
            std::fs::read(&x.file.path).unwrap(),
            std::fs::read(&y.file.path).unwrap(),
            "{}",
            y.artifact.name
        );
        assert_eq!(x.contents.len(), y.contents.len());
        for (m, n) in x.contents.iter().zip(&y.contents) {
            assert_eq!(
                (&m.name, &m.sha256, m.executable),
                (&n.name, &n.sha256, n.executable)
            );
        }
    }
    // A second import reads nothing but the manifest.
    let again = fetch(
        &req,
        &Source::Bundle(tar.clone()),
        &Cache::new(b.path()),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    assert_eq!(again.transferred(), 0);

    // Unpacked, a bundle is a directory source too.
    let unpacked = tempfile::tempdir().unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(unpacked.path())
        .status()
        .unwrap();
    assert!(st.success());
    let c = tempfile::tempdir().unwrap();
    let from_unpacked = fetch(
        &req,
        &Source::Directory(unpacked.path().into()),
        &Cache::new(c.path()),
        Arc::new(NoProgress),
    )
    .await
    .unwrap();
    for (x, y) in from_dir.items.iter().zip(&from_unpacked.items) {
        assert_eq!(x.file.sha256, y.file.sha256);
    }
    drop(unpacked);

    // A bundle for another version is refused by what it holds.
    let other = Request::new("v1.37.3", "amd64", Images::Archives).unwrap();
    let err = fetch(
        &other,
        &Source::Bundle(tar.clone()),
        &Cache::new(b.path()),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("v1.37.2") && err.contains("v1.37.3") && err.contains("bundle.tar"),
        "{err}"
    );

    // A truncated bundle is refused as truncated; the cut file is not cached
    // (the bundle is a temp file of this test: changed in place).
    std::fs::OpenOptions::new()
        .write(true)
        .open(&tar)
        .unwrap()
        .set_len(written.size / 2)
        .unwrap();
    let d = tempfile::tempdir().unwrap();
    let err = fetch(
        &req,
        &Source::Bundle(tar.clone()),
        &Cache::new(d.path()),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ArtifactError::Bundle { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
    assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));

    // A bundle whose file was changed after it was written is refused by
    // its manifest.
    let apiserver = &written.manifest.artifacts[0];
    let offset = find(&tar, apiserver.sha256.as_str());
    flip_byte_after(&tar, offset + 4096);
    let e = tempfile::tempdir().unwrap();
    let err = fetch(
        &req,
        &Source::Bundle(tar.clone()),
        &Cache::new(e.path()),
        Arc::new(NoProgress),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    match err {
        ArtifactError::ChecksumMismatch(m) => {
            assert_eq!(m.artifact, "kube-apiserver");
            assert_eq!(m.expected, apiserver.sha256);
        }
        other => panic!("{other}"),
    }
    assert!(msg.contains("k8sup artifacts bundle"), "{msg}");
    let apiserver_art = k8sup_artifacts::catalog::artifacts(&req).unwrap().remove(0);
    assert!(!Cache::new(e.path()).path_of(&apiserver_art).exists());
    assert!(leftovers(e.path()).is_empty(), "{:?}", leftovers(e.path()));
}

/// The offset just after the second occurrence of `needle` in the first MiB
/// of a file (the first is in the manifest, the second is the checksum member).
fn find(path: &std::path::Path, needle: &str) -> u64 {
    let mut head = vec![0u8; 1 << 20];
    let n = std::io::Read::read(&mut std::fs::File::open(path).unwrap(), &mut head).unwrap();
    let head = &head[..n];
    // The apiserver's checksum file member holds its digest; the binary follows it.
    let at = head
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle.as_bytes())
        .map(|(i, _)| i)
        .nth(1)
        .expect("the checksum member after the manifest");
    (at + needle.len()) as u64
}

fn flip_byte_after(path: &std::path::Path, at: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    let mut b = [0u8; 1];
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
}
