//! A data directory written by openraft 0.9 (sessions up to 8) must open
//! unchanged: every record openraft's types make up (log entries, the vote,
//! the committed and purged log ids, the state machine's applied log id and
//! membership, `current.meta` of snapshots) is encoded here by 0.9's types
//! and by ours, and must be the same bytes, and decode to the same value.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use openraft::impls::leader_id_adv::LeaderId;

use super::state_machine::Meta;
use super::types::{
    Command, CommandResult, Entry, EntryPayload, LogId, Member, StoredMembership, Vote, decode,
    encode,
};

openraft09::declare_raft_types!(
    pub Tc09:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = Member,
        Entry = openraft09::Entry<Tc09>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft09::TokioRuntime,
);

fn member(name: &str) -> Member {
    Member {
        name: name.into(),
        peer_urls: vec![format!("https://{name}:2380")],
        client_urls: vec![format!("https://{name}:2379")],
    }
}

fn log_id09(term: u64, node: u64, index: u64) -> openraft09::LogId<u64> {
    openraft09::LogId::new(openraft09::CommittedLeaderId::new(term, node), index)
}

fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogId {
        leader_id: LeaderId { term, node_id },
        index,
    }
}

/// A joint configuration with a learner: every part of a membership.
fn nodes() -> (Vec<BTreeSet<u64>>, BTreeMap<u64, Member>) {
    let configs = vec![BTreeSet::from([1, 2, 3]), BTreeSet::from([1, 2, 4])];
    let nodes = (1..=5).map(|i| (i, member(&format!("m{i}")))).collect();
    (configs, nodes)
}

fn membership09() -> openraft09::Membership<u64, Member> {
    let (c, n) = nodes();
    openraft09::Membership::new(c, n)
}

fn membership() -> openraft::Membership<u64, Member> {
    let (c, n) = nodes();
    openraft::Membership::new(c, n).expect("valid membership")
}

/// Same bytes from both versions, and ours reads 0.9's back as `ours`.
fn same<A: serde::Serialize, B>(old: &A, ours: &B)
where
    B: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let raw = encode(old);
    assert_eq!(
        raw,
        encode(ours),
        "0.9 and 0.10 encode {ours:?} differently"
    );
    let back: B = decode(&raw).expect("0.9's record decodes");
    assert_eq!(encode(&back), raw);
}

#[test]
fn log_entries_written_by_openraft_09_read_unchanged() {
    let put = || Command::Put(b"\x0a\x03key\x12\x05value".to_vec());
    let old: Vec<openraft09::Entry<Tc09>> = vec![
        openraft09::Entry {
            log_id: log_id09(3, 2, 7),
            payload: openraft09::EntryPayload::Blank,
        },
        openraft09::Entry {
            log_id: log_id09(3, 2, 8),
            payload: openraft09::EntryPayload::Normal(Command::Batch(vec![put(), put()])),
        },
        openraft09::Entry {
            log_id: log_id09(4, 1, 9),
            payload: openraft09::EntryPayload::Membership(membership09()),
        },
    ];
    let ours: Vec<Entry> = vec![
        Entry {
            log_id: log_id(3, 2, 7),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(3, 2, 8),
            payload: EntryPayload::Normal(Command::Batch(vec![put(), put()])),
        },
        Entry {
            log_id: log_id(4, 1, 9),
            payload: EntryPayload::Membership(membership()),
        },
    ];
    for (o, n) in old.iter().zip(&ours) {
        same(o, n);
        let back: Entry = decode(&encode(o)).unwrap();
        assert_eq!(back.log_id, n.log_id);
    }
}

#[test]
fn vote_and_log_ids_written_by_openraft_09_read_unchanged() {
    same(
        &openraft09::Vote::<u64>::new(5, 3),
        &Vote {
            leader_id: LeaderId {
                term: 5,
                node_id: 3,
            },
            committed: false,
        },
    );
    same(
        &openraft09::Vote::<u64>::new_committed(6, 1),
        &Vote {
            leader_id: LeaderId {
                term: 6,
                node_id: 1,
            },
            committed: true,
        },
    );
    // `committed`, `last_purged` and the state machine's `applied`.
    same(&Some(log_id09(6, 1, 12345)), &Some(log_id(6, 1, 12345)));
    same(&None::<openraft09::LogId<u64>>, &None::<LogId>);
    // The state machine's partial-apply marker of a batch entry.
    same(&(log_id09(2, 3, 40), 7u32), &(log_id(2, 3, 40), 7u32));
}

#[test]
fn snapshot_and_membership_records_written_by_openraft_09_read_unchanged() {
    let stored09 = openraft09::StoredMembership::new(Some(log_id09(4, 1, 9)), membership09());
    let stored = StoredMembership::new(Some(log_id(4, 1, 9)), membership());
    same(&stored09, &stored);
    let meta09 = openraft09::SnapshotMeta {
        last_log_id: Some(log_id09(4, 1, 900)),
        last_membership: stored09,
        snapshot_id: "4-900-12345".into(),
    };
    let meta = Meta {
        last_log_id: Some(log_id(4, 1, 900)),
        last_membership: stored,
        snapshot_id: "4-900-12345".into(),
    };
    same(&meta09, &meta);
    let back: Meta = decode(&encode(&meta09)).unwrap();
    assert_eq!(back.snapshot_id, "4-900-12345", "the dump's name survives");
}
