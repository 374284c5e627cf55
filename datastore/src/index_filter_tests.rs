//! The key index's prefix Bloom filters (see `Mvcc::open`) must never
//! change an answer: single-key lookups still find versions kept in older
//! files, and scans across keys still see keys whose files a filter would
//! have skipped. Data is spread over several flushed files on purpose; in a
//! memtable alone the filters would not be exercised.

use crate::compaction_tests::commit;
use crate::mvcc::{CF_INDEX, Mvcc, RangeEnd};

fn flush(m: &Mvcc) {
    m.db().flush_cf(m.cf(CF_INDEX)).unwrap();
}

#[test]
fn lookups_and_scans_see_keys_in_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mvcc::open(dir.path()).unwrap();
    // Ten files, each with its own keys, and one key rewritten in each.
    for f in 0..10u8 {
        commit(&m, |t| {
            for k in 0..20u8 {
                t.put(
                    format!("registry/pods/ns/{f:02}/{k:02}").as_bytes(),
                    vec![f, k],
                    0,
                )
                .unwrap();
            }
            t.put(b"shared", vec![f], 0).unwrap();
        });
        flush(&m);
    }
    commit(&m, |t| {
        t.put(b"registry/pods/ns/05/07", b"newest".to_vec(), 0)
            .unwrap();
    });
    let snap = m.snapshot();
    let rev = m.current_rev();
    // Every key of every file, in order, from one scan.
    // (The start is long enough to look like an index key to the filter.)
    let all = m
        .range(
            &snap,
            b"registry/pods/",
            &RangeEnd::Until(b"registry/pods0".to_vec()),
            rev,
            0,
            false,
            false,
        )
        .unwrap();
    assert_eq!(all.count, 200);
    let keys: Vec<String> = all
        .kvs
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    // A key from the first file, the newest version from the memtable, a
    // key rewritten in every file (newest and an older revision), a
    // missing key.
    let get = |key: &[u8], rev: i64| m.get_meta(&snap, key, rev).unwrap();
    assert_eq!(
        get(b"registry/pods/ns/00/00", rev).unwrap().entry.version,
        1
    );
    let newest = get(b"registry/pods/ns/05/07", rev).unwrap();
    assert_eq!((newest.main, newest.entry.version), (rev, 2));
    assert_eq!(
        m.materialize(&snap, vec![newest], false).unwrap()[0].value,
        b"newest"
    );
    assert_eq!(get(b"shared", rev).unwrap().entry.version, 10);
    let first = get(b"shared", 2).unwrap();
    assert_eq!((first.main, first.entry.version), (2, 1));
    assert!(get(b"registry/pods/ns/00/99", rev).is_none());
    assert!(get(b"shared", 1).is_none());
    // A key that is a prefix of others is looked up alone.
    commit(&m, |t| {
        t.put(b"registry/pods/", b"p".to_vec(), 0).unwrap();
    });
    let snap = m.snapshot();
    assert_eq!(
        m.get_meta(&snap, b"registry/pods/", m.current_rev())
            .unwrap()
            .unwrap()
            .key,
        b"registry/pods/"
    );
    assert!(
        m.get_meta(&snap, b"registry/pods", m.current_rev())
            .unwrap()
            .is_none()
    );
}
