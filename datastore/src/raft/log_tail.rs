//! The tail of the Raft log, in memory: the entries appended last.
//!
//! They are what is read back at once, and more than once: the leader's
//! replication builds each follower's AppendEntries from them, and every
//! member's state machine reads them again to apply them once they commit.
//! Each of those reads from RocksDB costs an iterator (creating one is the
//! expensive part), a seek and a decode, on the path of every client write.
//! A profile of single-client puts through a follower showed its apply
//! finishing about 65 us after the commit reached it, most of it outside
//! the apply itself.
//!
//! The tail is always a suffix of the log on disk, without gaps: an append
//! that does not follow it starts it anew, a truncation cuts it, a purge
//! trims its front, and it is bounded in entries and bytes (the oldest go
//! first). A read it cannot serve whole goes to RocksDB.

use std::collections::VecDeque;
use std::ops::{Bound, RangeBounds};
use std::sync::Mutex;

use super::proposer::entry_weight as weight;
use super::types::Entry;

/// Most entries kept (openraft sends at most `max_payload_entries`, 16,
/// per AppendEntries; a follower catching up further reads from disk).
const MAX_ENTRIES: usize = 256;
/// Most bytes of commands kept (entries are group-committed batches of up
/// to 256 KiB).
const MAX_BYTES: usize = 8 << 20;

#[derive(Default)]
pub struct LogTail {
    inner: Mutex<Tail>,
}

#[derive(Default)]
struct Tail {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl Tail {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|e| e.log_id.index)
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= weight(&e);
        }
    }
}

impl LogTail {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Entries just written to the log, in order.
    pub fn push(&self, entries: Vec<Entry>) {
        let mut t = self.lock();
        for e in entries {
            let follows = t
                .entries
                .back()
                .is_none_or(|b| b.log_id.index + 1 == e.log_id.index);
            if !follows {
                t.entries.clear();
                t.bytes = 0;
            }
            t.bytes += weight(&e);
            t.entries.push_back(e);
        }
        while t.entries.len() > MAX_ENTRIES || (t.bytes > MAX_BYTES && t.entries.len() > 1) {
            t.pop_front();
        }
    }

    /// The log now ends at `last` (inclusive; `None`: it is empty).
    pub fn truncate_after(&self, last: Option<u64>) {
        let mut t = self.lock();
        while let Some(b) = t.entries.back() {
            if last.is_some_and(|l| b.log_id.index <= l) {
                break;
            }
            let e = t.entries.pop_back().expect("a last entry");
            t.bytes -= weight(&e);
        }
    }

    /// Entries up to `upto` (inclusive) are gone from the log.
    pub fn purge(&self, upto: u64) {
        let mut t = self.lock();
        while t.first().is_some_and(|f| f <= upto) {
            t.pop_front();
        }
    }

    /// The entries of `range`, if the tail holds all of them; `None` sends
    /// the read to disk. An open end means "to the end of the log", which
    /// is the tail's end.
    pub fn get(&self, range: &impl RangeBounds<u64>) -> Option<Vec<Entry>> {
        let t = self.lock();
        let first = t.first()?;
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => *x + 1,
            Bound::Unbounded => 0,
        };
        if start < first {
            return None;
        }
        let last = first + t.entries.len() as u64 - 1;
        let end = match range.end_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x.checked_sub(1)?,
            Bound::Unbounded => last,
        };
        if end > last {
            return None;
        }
        if start > end {
            return Some(Vec::new());
        }
        let from = (start - first) as usize;
        let to = (end - first) as usize;
        Some(t.entries.range(from..=to).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::{Command, EntryPayload};
    use openraft::impls::leader_id_adv::LeaderId;

    fn entry(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: crate::raft::LogId {
                leader_id: LeaderId {
                    term: 1,
                    node_id: 1,
                },
                index,
            },
            payload: EntryPayload::Normal(Command::Put(vec![0; bytes])),
        }
    }

    fn indexes(v: Option<Vec<Entry>>) -> Option<Vec<u64>> {
        v.map(|v| v.into_iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn serves_only_ranges_it_holds_whole() {
        let t = LogTail::default();
        assert_eq!(indexes(t.get(&(1..2))), None, "empty: everything from disk");
        t.push((5..=9).map(|i| entry(i, 10)).collect());
        assert_eq!(indexes(t.get(&(5..8))), Some(vec![5, 6, 7]));
        assert_eq!(indexes(t.get(&(7..))), Some(vec![7, 8, 9]));
        assert_eq!(indexes(t.get(&(9..=9))), Some(vec![9]));
        assert_eq!(indexes(t.get(&(4..6))), None, "starts before the tail");
        assert_eq!(indexes(t.get(&(8..11))), None, "ends past the log");
        assert_eq!(indexes(t.get(&(0..))), None);
    }

    #[test]
    fn follows_truncation_purge_and_a_gap() {
        let t = LogTail::default();
        t.push((1..=5).map(|i| entry(i, 10)).collect());
        t.truncate_after(Some(3));
        assert_eq!(indexes(t.get(&(1..))), Some(vec![1, 2, 3]));
        t.push(vec![entry(4, 10)]);
        assert_eq!(indexes(t.get(&(3..))), Some(vec![3, 4]));
        t.purge(2);
        assert_eq!(indexes(t.get(&(3..))), Some(vec![3, 4]));
        assert_eq!(indexes(t.get(&(2..))), None);
        // An append that does not follow (after a snapshot install, say)
        // starts the tail anew rather than leave a hole in it.
        t.push(vec![entry(10, 10)]);
        assert_eq!(indexes(t.get(&(10..))), Some(vec![10]));
        assert_eq!(indexes(t.get(&(4..))), None);
        t.truncate_after(None);
        assert_eq!(indexes(t.get(&(10..))), None);
    }

    #[test]
    fn stays_within_its_bounds() {
        let t = LogTail::default();
        t.push(
            (1..=(MAX_ENTRIES as u64 + 10))
                .map(|i| entry(i, 1))
                .collect(),
        );
        assert_eq!(t.lock().entries.len(), MAX_ENTRIES);
        assert_eq!(t.lock().first(), Some(11));
        t.push(vec![entry(MAX_ENTRIES as u64 + 11, MAX_BYTES)]);
        assert_eq!(
            t.lock().entries.len(),
            1,
            "one big entry pushes the rest out"
        );
        t.push(vec![entry(MAX_ENTRIES as u64 + 12, 2 * MAX_BYTES)]);
        assert_eq!(
            t.lock().entries.len(),
            1,
            "a single larger entry still fits"
        );
    }
}
