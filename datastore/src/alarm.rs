//! Cluster alarms (etcd's `alarm list` / `alarm disarm`), replicated
//! through Raft and kept in the `meta` column family, so every member lists
//! the same alarms and they survive restarts and travel in snapshots.
//!
//! The one alarm we raise is NOSPACE: a member whose database would grow past
//! `--quota-backend-bytes` raises it, and while it is active the cluster
//! refuses writes that add data (Put, Txn with a Put, LeaseGrant) with
//! `etcdserver: mvcc: database space exceeded`, as etcd does. Reads, deletes
//! and compaction still work, so an operator can free space (delete,
//! compact, defragment) and then `etcdctl alarm disarm`.

use prost::Message;

use crate::errors::EtcdError;
use crate::mvcc::{CF_META, Mvcc, WriteTxn};
use crate::proto::alarm_request::AlarmAction;
use crate::proto::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, ResponseHeader, TxnRequest, request_op,
};

const PREFIX: &[u8] = b"alarm/";

fn key(member: u64, alarm: i32) -> Vec<u8> {
    let mut k = PREFIX.to_vec();
    k.extend_from_slice(&member.to_be_bytes());
    k.extend_from_slice(&alarm.to_be_bytes());
    k
}

/// Every active alarm, ordered by member then type.
pub fn list(mvcc: &Mvcc) -> Result<Vec<AlarmMember>, EtcdError> {
    let mut out = Vec::new();
    let mut it = mvcc.db().raw_iterator_cf(mvcc.cf(CF_META));
    it.seek(PREFIX);
    while let Some(k) = it.key() {
        if !k.starts_with(PREFIX) {
            break;
        }
        let rest = &k[PREFIX.len()..];
        let (member, alarm) = rest.split_at(8);
        let member = u64::from_be_bytes(
            member
                .try_into()
                .map_err(|_| EtcdError::internal("corrupt alarm key"))?,
        );
        let alarm = i32::from_be_bytes(
            alarm
                .try_into()
                .map_err(|_| EtcdError::internal("corrupt alarm key"))?,
        );
        out.push(AlarmMember {
            member_id: member,
            alarm,
        });
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// True while any member's NOSPACE alarm is active.
pub fn no_space(mvcc: &Mvcc) -> Result<bool, EtcdError> {
    Ok(list(mvcc)?
        .iter()
        .any(|a| a.alarm == AlarmType::Nospace as i32))
}

/// Applies an ACTIVATE or DEACTIVATE (Raft state machine). As in etcd the
/// response lists the alarm changed, or nothing if there was no change.
pub fn apply(t: &mut WriteTxn<'_>, req: &AlarmRequest) -> Result<AlarmResponse, EtcdError> {
    let cf = t.mvcc().cf(CF_META);
    let k = key(req.member_id, req.alarm);
    let exists = t.mvcc().db().get_cf(cf, &k)?.is_some();
    let changed = AlarmMember {
        member_id: req.member_id,
        alarm: req.alarm,
    };
    let alarms = match AlarmAction::try_from(req.action) {
        Ok(AlarmAction::Activate) if req.alarm != AlarmType::None as i32 => {
            t.batch.put_cf(cf, &k, b"");
            vec![changed]
        }
        Ok(AlarmAction::Deactivate) if exists => {
            t.batch.delete_cf(cf, &k);
            vec![changed]
        }
        _ => Vec::new(),
    };
    Ok(AlarmResponse {
        header: Some(ResponseHeader {
            revision: t.rev(),
            ..Default::default()
        }),
        alarms,
    })
}

/// Does this request add data, so that NOSPACE refuses it? (etcd's
/// `applierV3Capped`: Put, and Txn containing a Put at any depth.)
pub fn txn_writes_data(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(t.failure.iter())
        .any(|op| match &op.request {
            Some(request_op::Request::RequestPut(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => txn_writes_data(t),
            _ => false,
        })
}

/// The size a request adds to the Raft log and store, as etcd's quota counts it.
pub fn cost(msg: &impl Message) -> i64 {
    msg.encoded_len() as i64
}
