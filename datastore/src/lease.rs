//! Leases: the replicated part (which leases exist, their granted TTL, the
//! keys attached) lives in the state machine; the expiry clock lives only on
//! the leader, as in etcd. When the leader sees a lease run out it proposes
//! a revoke through Raft, so every member deletes the same keys at the same
//! revision. A new leader restarts every lease's countdown at its full TTL
//! (etcd's "promote"), so leadership changes never expire a lease early.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::errors::EtcdError;
use crate::mvcc::{CF_LEASE, CF_LEASE_KEYS, Mvcc, RangeEnd, WriteTxn, dec};
use crate::txn::LeaseLookup;

/// etcd's minimum TTL with default timing (1.5 × election timeout, rounded up).
pub const MIN_TTL: i64 = 2;
/// etcd's `MaxLeaseTTL`.
pub const MAX_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// TTL granted (after raising to the minimum).
    pub ttl: i64,
}

fn lease_key(id: i64) -> [u8; 8] {
    (id as u64).to_be_bytes()
}

/// Reads of the persisted lease table.
pub struct LeaseTable<'a>(pub &'a Mvcc);

impl LeaseTable<'_> {
    pub fn get(&self, id: i64) -> Result<Option<LeaseRecord>, EtcdError> {
        match self.0.db().get_cf(self.0.cf(CF_LEASE), lease_key(id))? {
            Some(raw) => Ok(Some(dec(&raw, "lease")?)),
            None => Ok(None),
        }
    }

    pub fn all(&self) -> Result<Vec<(i64, LeaseRecord)>, EtcdError> {
        let mut out = Vec::new();
        let mut it = self.0.db().raw_iterator_cf(self.0.cf(CF_LEASE));
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let id = u64::from_be_bytes(
                k.try_into()
                    .map_err(|_| EtcdError::internal("corrupt lease key"))?,
            ) as i64;
            out.push((id, dec(v, "lease")?));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Keys attached to lease `id`, in key order.
    pub fn keys(&self, id: i64) -> Result<Vec<Vec<u8>>, EtcdError> {
        let prefix = lease_key(id);
        let mut out = Vec::new();
        let mut it = self.0.db().raw_iterator_cf(self.0.cf(CF_LEASE_KEYS));
        it.seek(prefix);
        while let Some(k) = it.key() {
            if !k.starts_with(&prefix) {
                break;
            }
            out.push(k[8..].to_vec());
            it.next();
        }
        it.status()?;
        Ok(out)
    }
}

impl LeaseLookup for LeaseTable<'_> {
    fn lease_exists(&self, id: i64) -> Result<bool, EtcdError> {
        Ok(self.get(id)?.is_some())
    }
}

/// Applies a grant inside the state machine. Returns the granted TTL.
pub fn apply_grant(txn: &mut WriteTxn<'_>, id: i64, ttl: i64) -> Result<i64, EtcdError> {
    let table = LeaseTable(txn.mvcc());
    if table.get(id)?.is_some() {
        return Err(EtcdError::LeaseExists);
    }
    let ttl = ttl.max(MIN_TTL);
    let rec = LeaseRecord { ttl };
    let cf = txn.mvcc().cf(CF_LEASE);
    txn.batch.put_cf(
        cf,
        lease_key(id),
        postcard::to_allocvec(&rec).expect("plain struct"),
    );
    Ok(ttl)
}

/// Applies a revoke: deletes every attached key in one revision (as etcd).
pub fn apply_revoke(txn: &mut WriteTxn<'_>, id: i64) -> Result<(), EtcdError> {
    let table = LeaseTable(txn.mvcc());
    if table.get(id)?.is_none() {
        return Err(EtcdError::LeaseNotFound);
    }
    for key in table.keys(id)? {
        txn.delete_range(&key, &RangeEnd::Single, false)?;
    }
    let mvcc = txn.mvcc();
    txn.batch.delete_cf(mvcc.cf(CF_LEASE), lease_key(id));
    // Attachment records of keys that were re-attached elsewhere are
    // already gone; drop whatever is left under this lease.
    for key in LeaseTable(mvcc).keys(id)? {
        txn.batch.delete_cf(
            mvcc.cf(CF_LEASE_KEYS),
            crate::keycodec::lease_key_key(id, &key),
        );
    }
    Ok(())
}

/// The leader's countdowns. Followers keep one too (filled on apply) so a
/// newly elected leader has every lease, but only the leader acts on it.
#[derive(Default)]
pub struct LeaseClock {
    deadlines: Mutex<HashMap<i64, (Instant, i64)>>,
}

impl LeaseClock {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Instant, i64)>> {
        self.deadlines.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn granted(&self, id: i64, ttl: i64) {
        self.map()
            .insert(id, (Instant::now() + Duration::from_secs(ttl as u64), ttl));
    }

    pub fn revoked(&self, id: i64) {
        self.map().remove(&id);
    }

    /// Keep-alive: restarts the countdown; returns the TTL, or None if unknown.
    pub fn refresh(&self, id: i64) -> Option<i64> {
        let mut m = self.map();
        let e = m.get_mut(&id)?;
        e.0 = Instant::now() + Duration::from_secs(e.1 as u64);
        Some(e.1)
    }

    /// Pushes a deadline out while its revoke is in flight.
    pub fn postpone(&self, id: i64, by: Duration) {
        if let Some(e) = self.map().get_mut(&id) {
            e.0 = Instant::now() + by;
        }
    }

    /// Whole seconds left, truncated as etcd does (`int64(Remaining().Seconds())`:
    /// `remaining(1s)` right after a grant of 2 s), never below 0; None if unknown.
    pub fn remaining(&self, id: i64) -> Option<(i64, i64)> {
        let m = self.map();
        let (deadline, ttl) = m.get(&id)?;
        let left = deadline.saturating_duration_since(Instant::now());
        Some((left.as_secs() as i64, *ttl))
    }

    pub fn ids(&self) -> Vec<i64> {
        self.map().keys().copied().collect()
    }

    /// Leases whose countdown has run out.
    pub fn expired(&self) -> Vec<i64> {
        let now = Instant::now();
        self.map()
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// On becoming leader (or after a snapshot install): restart every
    /// countdown from the persisted table.
    pub fn reset_from(&self, leases: &[(i64, LeaseRecord)]) {
        let now = Instant::now();
        let mut m = self.map();
        m.clear();
        for (id, rec) in leases {
            m.insert(*id, (now + Duration::from_secs(rec.ttl as u64), rec.ttl));
        }
    }
}
