//! etcd's request semantics on top of [`crate::mvcc`]: request validation
//! (etcd `v3rpc/key.go`), Range options, Put/DeleteRange with their flags,
//! and Txn with compares, nested transactions and response headers exactly
//! as etcd's applier builds them (`etcdserver/apply.go`).

use std::cmp::Ordering;

use crate::errors::EtcdError;
use crate::mvcc::{Mvcc, RangeEnd, WriteTxn};
use crate::proto::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, KeyValue, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
    compare, range_request, request_op, response_op,
};

/// etcd's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;

fn header(rev: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision: rev,
        ..Default::default()
    })
}

// ---------------------------------------------------------------- validation

pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => check_range(r),
        Some(request_op::Request::RequestPut(r)) => check_put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => check_delete(r),
        Some(request_op::Request::RequestTxn(t)) => check_txn_ops(t, max_ops),
        None => Err(EtcdError::KeyNotFound),
    }
}

fn check_txn_ops(r: &TxnRequest, max_ops: usize) -> Result<(), EtcdError> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(r.failure.iter()) {
        check_op(op, max_ops - opc)?;
    }
    Ok(())
}

/// A delete interval as etcd's `checkIntervals` sees it: literal byte
/// strings, a point when `range_end` is empty.
#[derive(Clone)]
struct Interval(Vec<u8>, Option<Vec<u8>>);

impl Interval {
    fn contains(&self, k: &[u8]) -> bool {
        match &self.1 {
            None => self.0 == k,
            Some(end) => self.0.as_slice() <= k && k < end.as_slice(),
        }
    }
}

fn check_intervals(reqs: &[RequestOp]) -> Result<(Vec<Vec<u8>>, Vec<Interval>), EtcdError> {
    let mut dels: Vec<Interval> = reqs
        .iter()
        .filter_map(|r| match &r.request {
            Some(request_op::Request::RequestDeleteRange(d)) => Some(Interval(
                d.key.clone(),
                if d.range_end.is_empty() {
                    None
                } else {
                    Some(d.range_end.clone())
                },
            )),
            _ => None,
        })
        .collect();
    let mut puts: Vec<Vec<u8>> = Vec::new();
    for r in reqs {
        let Some(request_op::Request::RequestTxn(t)) = &r.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || dels.iter().any(|d| d.contains(k)) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.push(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(EtcdError::DuplicateKey);
            }
            if dels.iter().any(|d| d.contains(k)) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.push(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for r in reqs {
        let Some(request_op::Request::RequestPut(p)) = &r.request else {
            continue;
        };
        if puts.contains(&p.key) || dels.iter().any(|d| d.contains(&p.key)) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.push(p.key.clone());
    }
    Ok((puts, dels))
}

/// Everything etcd checks before a Txn enters Raft.
pub fn check_txn(r: &TxnRequest) -> Result<(), EtcdError> {
    check_txn_ops(r, MAX_TXN_OPS)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

// ---------------------------------------------------------------- range

fn needs_full_fetch(r: &RangeRequest) -> bool {
    r.sort_order != range_request::SortOrder::None as i32
        || r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
}

/// The mvcc-level limit for a request: everything when filtering or
/// sorting, else one more than asked so `more` can be told.
fn fetch_limit(r: &RangeRequest) -> usize {
    if needs_full_fetch(r) || r.limit <= 0 {
        0
    } else {
        r.limit as usize + 1
    }
}

/// Filters, sorts and truncates a fetched range into etcd's response.
fn finish_range(r: &RangeRequest, mut kvs: Vec<KeyValue>, count: i64, rev: i64) -> RangeResponse {
    if r.max_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision <= r.max_mod_revision);
    }
    if r.min_mod_revision != 0 {
        kvs.retain(|kv| kv.mod_revision >= r.min_mod_revision);
    }
    if r.max_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision <= r.max_create_revision);
    }
    if r.min_create_revision != 0 {
        kvs.retain(|kv| kv.create_revision >= r.min_create_revision);
    }
    let target = range_request::SortTarget::try_from(r.sort_target)
        .unwrap_or(range_request::SortTarget::Key);
    let mut order =
        range_request::SortOrder::try_from(r.sort_order).unwrap_or(range_request::SortOrder::None);
    if target != range_request::SortTarget::Key && order == range_request::SortOrder::None {
        // etcd: results are key-ordered already; other targets default to ascending.
        order = range_request::SortOrder::Ascend;
    }
    if order != range_request::SortOrder::None {
        let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
            use range_request::SortTarget::*;
            match target {
                Key => a.key.cmp(&b.key),
                Version => a.version.cmp(&b.version),
                Create => a.create_revision.cmp(&b.create_revision),
                Mod => a.mod_revision.cmp(&b.mod_revision),
                Value => a.value.cmp(&b.value),
            }
        };
        // Stable, like Go's insertion sort on the small results etcd tests use.
        if order == range_request::SortOrder::Descend {
            kvs.sort_by(|a, b| cmp(b, a));
        } else {
            kvs.sort_by(cmp);
        }
    }
    let mut more = false;
    if r.limit > 0 && kvs.len() > r.limit as usize {
        kvs.truncate(r.limit as usize);
        more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    RangeResponse {
        header: header(rev),
        kvs,
        more,
        count,
    }
}

/// A Range outside any transaction, at the store's current revision.
pub fn range(mvcc: &Mvcc, r: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    let current = mvcc.current_rev();
    let snap = mvcc.snapshot();
    let rev = mvcc.resolve_read_rev(r.revision, current)?;
    let end = RangeEnd::from_wire(&r.range_end);
    let res = mvcc.range(
        &snap,
        &r.key,
        &end,
        rev,
        fetch_limit(r),
        r.count_only,
        r.keys_only && !needs_value_for_sort(r),
    )?;
    Ok(finish_range(r, res.kvs, res.count, current))
}

fn needs_value_for_sort(r: &RangeRequest) -> bool {
    r.sort_target == range_request::SortTarget::Value as i32
}

fn txn_range(txn: &WriteTxn<'_>, r: &RangeRequest) -> Result<RangeResponse, EtcdError> {
    let end = RangeEnd::from_wire(&r.range_end);
    let res = txn.range(
        &r.key,
        &end,
        r.revision,
        fetch_limit(r),
        r.count_only,
        r.keys_only && !needs_value_for_sort(r),
    )?;
    Ok(finish_range(r, res.kvs, res.count, txn.rev()))
}

// ---------------------------------------------------------------- writes

/// Lookup used to refuse puts that name a lease that does not exist.
pub trait LeaseLookup {
    fn lease_exists(&self, id: i64) -> Result<bool, EtcdError>;
}

/// The Put RPC (outside a transaction).
pub fn put(
    txn: &mut WriteTxn<'_>,
    leases: &dyn LeaseLookup,
    p: &PutRequest,
) -> Result<PutResponse, EtcdError> {
    if p.lease != 0 && !leases.lease_exists(p.lease)? {
        return Err(EtcdError::LeaseNotFound);
    }
    apply_put(txn, p)
}

fn apply_put(txn: &mut WriteTxn<'_>, p: &PutRequest) -> Result<PutResponse, EtcdError> {
    let prev = if p.ignore_value || p.ignore_lease || p.prev_kv {
        txn.get(&p.key)?
    } else {
        None
    };
    if (p.ignore_value || p.ignore_lease) && prev.is_none() {
        return Err(EtcdError::KeyNotFound);
    }
    let value = if p.ignore_value {
        prev.as_ref().map(|kv| kv.value.clone()).unwrap_or_default()
    } else {
        p.value.clone()
    };
    let lease = if p.ignore_lease {
        prev.as_ref().map(|kv| kv.lease).unwrap_or(0)
    } else {
        p.lease
    };
    let rev = txn.put(&p.key, value, lease)?;
    Ok(PutResponse {
        header: header(rev),
        prev_kv: if p.prev_kv { prev } else { None },
    })
}

/// The DeleteRange RPC (also used inside transactions).
pub fn delete_range(
    txn: &mut WriteTxn<'_>,
    d: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, EtcdError> {
    let end = RangeEnd::from_wire(&d.range_end);
    let deleted = txn.delete_range(&d.key, &end, d.prev_kv)?;
    Ok(DeleteRangeResponse {
        header: header(txn.rev()),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv { deleted } else { Vec::new() },
    })
}

// ---------------------------------------------------------------- txn

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    use compare::{CompareResult, CompareTarget, TargetUnion};
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let ord = match target {
        CompareTarget::Value => {
            let v: &[u8] = match &c.target_union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(v)
        }
        CompareTarget::Create => {
            let r = match c.target_union {
                Some(TargetUnion::CreateRevision(r)) => r,
                _ => 0,
            };
            kv.create_revision.cmp(&r)
        }
        CompareTarget::Mod => {
            let r = match c.target_union {
                Some(TargetUnion::ModRevision(r)) => r,
                _ => 0,
            };
            kv.mod_revision.cmp(&r)
        }
        CompareTarget::Version => {
            let r = match c.target_union {
                Some(TargetUnion::Version(r)) => r,
                _ => 0,
            };
            kv.version.cmp(&r)
        }
        CompareTarget::Lease => {
            let r = match c.target_union {
                Some(TargetUnion::Lease(r)) => r,
                _ => 0,
            };
            kv.lease.cmp(&r)
        }
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

fn apply_compare(txn: &WriteTxn<'_>, c: &Compare) -> bool {
    // etcd's mkGteRange: "\0" means every key >= key.
    let end = RangeEnd::from_wire(&c.range_end);
    let Ok(res) = txn.range(&c.key, &end, 0, 0, false, false) else {
        return false;
    };
    if res.kvs.is_empty() {
        if c.target == compare::CompareTarget::Value as i32 {
            // etcd: a value compare on a missing key always fails.
            return false;
        }
        return compare_kv(c, &KeyValue::default());
    }
    res.kvs.iter().all(|kv| compare_kv(c, kv))
}

/// etcd's `compareToPath`: every compare, nested ones included, is
/// evaluated against the state before the transaction writes anything.
fn compare_to_path(txn: &WriteTxn<'_>, rt: &TxnRequest, path: &mut Vec<bool>) {
    let ok = rt.compare.iter().all(|c| apply_compare(txn, c));
    path.push(ok);
    let ops = if ok { &rt.success } else { &rt.failure };
    for op in ops {
        if let Some(request_op::Request::RequestTxn(t)) = &op.request {
            compare_to_path(txn, t, path);
        }
    }
}

fn is_read_only(rt: &TxnRequest) -> bool {
    rt.success
        .iter()
        .chain(rt.failure.iter())
        .all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => is_read_only(t),
            _ => false,
        })
}

/// etcd's `checkRequests`: lease existence and ignore_* preconditions for
/// puts, and revision bounds for ranges, along the chosen path.
fn check_requests(
    txn: &WriteTxn<'_>,
    leases: &dyn LeaseLookup,
    rt: &TxnRequest,
    path: &[bool],
    check_puts: bool,
) -> Result<usize, EtcdError> {
    let ops = if path[0] { &rt.success } else { &rt.failure };
    let mut consumed = 1;
    for op in ops {
        match &op.request {
            Some(request_op::Request::RequestPut(p)) if check_puts => {
                // etcd checks the key before the lease here (but the other
                // way round for a plain Put).
                if (p.ignore_value || p.ignore_lease) && txn.get(&p.key)?.is_none() {
                    return Err(EtcdError::KeyNotFound);
                }
                if p.lease != 0 && !leases.lease_exists(p.lease)? {
                    return Err(EtcdError::LeaseNotFound);
                }
            }
            Some(request_op::Request::RequestRange(r)) if !check_puts && r.revision != 0 => {
                if r.revision > txn.base_rev() {
                    return Err(EtcdError::FutureRev);
                }
                if r.revision < txn.compact_rev() {
                    return Err(EtcdError::Compacted);
                }
            }
            Some(request_op::Request::RequestTxn(t)) => {
                consumed += check_requests(txn, leases, t, &path[consumed..], check_puts)?;
            }
            _ => {}
        }
    }
    Ok(consumed)
}

fn run_txn(
    txn: &mut WriteTxn<'_>,
    rt: &TxnRequest,
    path: &[bool],
) -> Result<(TxnResponse, usize), EtcdError> {
    let succeeded = path[0];
    let ops = if succeeded { &rt.success } else { &rt.failure };
    let mut consumed = 1;
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let resp = match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                response_op::Response::ResponseRange(txn_range(txn, r)?)
            }
            Some(request_op::Request::RequestPut(p)) => {
                response_op::Response::ResponsePut(apply_put(txn, p)?)
            }
            Some(request_op::Request::RequestDeleteRange(d)) => {
                response_op::Response::ResponseDeleteRange(delete_range(txn, d)?)
            }
            Some(request_op::Request::RequestTxn(t)) => {
                let (resp, used) = run_txn(txn, t, &path[consumed..])?;
                consumed += used;
                response_op::Response::ResponseTxn(resp)
            }
            None => return Err(EtcdError::KeyNotFound),
        };
        responses.push(ResponseOp {
            response: Some(resp),
        });
    }
    // Nested transactions carry an empty header, as in etcd.
    Ok((
        TxnResponse {
            header: Some(ResponseHeader::default()),
            succeeded,
            responses,
        },
        consumed,
    ))
}

/// The Txn RPC.
pub fn txn(
    txn: &mut WriteTxn<'_>,
    leases: &dyn LeaseLookup,
    rt: &TxnRequest,
) -> Result<TxnResponse, EtcdError> {
    let mut path = Vec::new();
    compare_to_path(txn, rt, &mut path);
    if !is_read_only(rt) {
        check_requests(txn, leases, rt, &path, true)?;
    }
    check_requests(txn, leases, rt, &path, false)?;
    let (mut resp, _) = run_txn(txn, rt, &path)?;
    resp.header = header(txn.rev());
    Ok(resp)
}

/// True when a Txn only reads, so it can be served without Raft.
pub fn txn_is_read_only(rt: &TxnRequest) -> bool {
    is_read_only(rt)
}
