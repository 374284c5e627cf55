//! Physical compaction against the watch replay that must survive it, on a
//! real RocksDB store (no Raft): what a compaction at revision R may remove,
//! and what it must keep for a watch that starts at R.

use crate::mvcc::{Mvcc, RangeEnd};
use crate::proto::EventType;

/// Commits one write transaction the way the Raft state machine does.
pub(crate) fn commit(m: &Mvcc, f: impl FnOnce(&mut crate::mvcc::WriteTxn<'_>)) -> i64 {
    let mut t = m.begin_write();
    f(&mut t);
    let (batch, rev, compacted, _) = t.finish();
    m.write(batch).unwrap();
    m.publish_revs(rev, compacted);
    rev
}

fn compact(m: &Mvcc, rev: i64) {
    commit(m, |t| t.set_compact_rev(rev));
    m.physical_compact(rev).unwrap();
}

/// (revision, type, key) of every change `[from, current]` still in the revision log.
fn history(m: &Mvcc, from: i64) -> Vec<(i64, EventType, String)> {
    let snap = m.snapshot();
    let mut out = Vec::new();
    m.history(&snap, from, m.current_rev(), |main, _, ev| {
        let kv = ev.kv.unwrap();
        out.push((
            main,
            EventType::try_from(ev.r#type).unwrap(),
            String::from_utf8(kv.key).unwrap(),
        ));
        Ok(true)
    })
    .unwrap();
    out
}

fn index_entries(m: &Mvcc) -> usize {
    let snap = m.snapshot();
    let mut it = m.index_iter(&snap, crate::mvcc::IndexSeek::ManyKeys);
    it.seek_to_first();
    let mut n = 0;
    while it.valid() {
        n += 1;
        it.next();
    }
    n
}

/// Differential seed 2, step 677: a range delete at R, `Compact(R)`, then a
/// watch from R. etcd (3.4.33+, 3.5.15+) replays the delete; we used to
/// remove the tombstone at R physically and replay nothing.
#[test]
fn a_tombstone_at_the_compaction_revision_is_kept_for_watches_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mvcc::open(dir.path()).unwrap();
    commit(&m, |t| {
        t.put(b"p/3", b"a".to_vec(), 0).unwrap();
    });
    commit(&m, |t| {
        t.put(b"p/4", b"b".to_vec(), 0).unwrap();
    });
    let del = commit(&m, |t| {
        assert_eq!(
            t.delete_range(b"k6", &RangeEnd::Unbounded, false)
                .unwrap()
                .len(),
            2
        );
    });
    commit(&m, |t| {
        t.put(b"other", b"x".to_vec(), 0).unwrap();
    });
    compact(&m, del);
    assert_eq!(
        history(&m, del),
        vec![
            (del, EventType::Delete, "p/3".into()),
            (del, EventType::Delete, "p/4".into()),
            (del + 1, EventType::Put, "other".into()),
        ],
        "a watch from the compacted revision must see the deletes made at it"
    );
}

/// The kept tombstones must not leak: the next compaction removes them,
/// even when their keys never change again.
#[test]
fn tombstones_kept_at_one_compaction_go_at_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mvcc::open(dir.path()).unwrap();
    commit(&m, |t| {
        t.put(b"a", b"1".to_vec(), 0).unwrap();
    });
    let del = commit(&m, |t| {
        t.delete_range(b"a", &RangeEnd::Single, false).unwrap();
    });
    compact(&m, del);
    assert_eq!(
        index_entries(&m),
        1,
        "only the tombstone at the compaction revision stays"
    );
    let later = commit(&m, |t| {
        t.put(b"b", b"1".to_vec(), 0).unwrap();
    });
    compact(&m, later);
    assert_eq!(history(&m, 1), vec![(later, EventType::Put, "b".into())]);
    assert_eq!(
        index_entries(&m),
        1,
        "the old tombstone is gone, only b's version remains"
    );
}

/// Puts at R and older tombstones behave as before: the newest version at or
/// below R stays, everything older goes, tombstones below R go.
#[test]
fn compaction_keeps_the_newest_live_version_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mvcc::open(dir.path()).unwrap();
    for v in ["1", "2", "3"] {
        commit(&m, |t| {
            t.put(b"k", v.as_bytes().to_vec(), 0).unwrap();
        });
    }
    commit(&m, |t| {
        t.put(b"gone", b"x".to_vec(), 0).unwrap();
    });
    let del = commit(&m, |t| {
        t.delete_range(b"gone", &RangeEnd::Single, false).unwrap();
    });
    let top = commit(&m, |t| {
        t.put(b"k", b"4".to_vec(), 0).unwrap();
    });
    compact(&m, top);
    assert!(del < top);
    assert_eq!(history(&m, 1), vec![(top, EventType::Put, "k".into())]);
    assert_eq!(index_entries(&m), 1);
}

/// HashKV must not depend on how far the background physical compaction
/// has got, or members would report a false corruption between them.
#[test]
fn hash_kv_is_the_same_before_and_after_physical_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mvcc::open(dir.path()).unwrap();
    for v in ["1", "2", "3"] {
        commit(&m, |t| {
            t.put(b"k", v.as_bytes().to_vec(), 0).unwrap();
            t.put(b"gone", v.as_bytes().to_vec(), 0).unwrap();
        });
    }
    commit(&m, |t| {
        t.delete_range(b"gone", &RangeEnd::Single, false).unwrap();
    });
    let at = commit(&m, |t| {
        t.put(b"k", b"4".to_vec(), 0).unwrap();
    });
    commit(&m, |t| {
        t.put(b"k", b"5".to_vec(), 0).unwrap();
    });
    commit(&m, |t| t.set_compact_rev(at));
    let rev = m.current_rev();
    let logical_only = crate::grpc::maintenance::hash_kv(&m, rev).unwrap();
    m.physical_compact(at).unwrap();
    assert_eq!(
        crate::grpc::maintenance::hash_kv(&m, rev).unwrap(),
        logical_only
    );
}
