//! The portable snapshot format: every column family of the state-machine
//! database, dumped from one RocksDB snapshot. The same bytes serve Raft
//! snapshot installation, `Maintenance/Snapshot` (`etcdctl snapshot save`)
//! and `k8sup-datastore restore`.
//!
//! Layout: `MAGIC`, then records `1u8, cf u8, klen u32, key, vlen u32,
//! value`, then `0u8` and a CRC-32 of everything before it (big endian).
//! This is not etcd's bbolt file: `etcdutl snapshot restore` cannot read it.

use std::io::{Read, Write};

use rocksdb::WriteBatch;

use crate::errors::EtcdError;
use crate::mvcc::{ALL_CFS, Mvcc, Snapshot};

pub const MAGIC: &[u8; 8] = b"K8SDS001";

/// Dumps the state machine as of `snap`.
pub fn dump(mvcc: &Mvcc, snap: &Snapshot<'_>) -> Result<Vec<u8>, EtcdError> {
    let mut out = Vec::with_capacity(1 << 20);
    out.extend_from_slice(MAGIC);
    for (i, name) in ALL_CFS.iter().enumerate() {
        let mut it = snap.raw_iterator_cf_opt(mvcc.cf(name), Mvcc::whole_cf());
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            out.push(1);
            out.push(i as u8);
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
            out.extend_from_slice(&(v.len() as u32).to_be_bytes());
            out.extend_from_slice(v);
            it.next();
        }
        it.status()?;
    }
    out.push(0);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Wraps a dump for `Maintenance/Snapshot`. etcdctl 3.4 insists that a
/// snapshot stream is a whole number of 512-byte pages followed by a
/// SHA-256 of them (bbolt files are page-aligned), so we pad, record the
/// dump length in the last 8 bytes of the last page, and append the hash.
pub fn wrap_for_stream(mut dump: Vec<u8>) -> Vec<u8> {
    use sha2::Digest;
    let len = dump.len() as u64;
    let padded = (dump.len() + 8).div_ceil(512) * 512;
    dump.resize(padded - 8, 0);
    dump.extend_from_slice(&len.to_be_bytes());
    let hash = sha2::Sha256::digest(&dump);
    dump.extend_from_slice(&hash);
    dump
}

/// Accepts either a bare dump or a stream-wrapped one (what `etcdctl
/// snapshot save` writes); returns the bare dump.
pub fn unwrap_stream(data: &[u8]) -> Result<&[u8], EtcdError> {
    use sha2::Digest;
    if data.starts_with(MAGIC) && data.len() % 512 == 32 && data.len() >= 544 {
        let (body, hash) = data.split_at(data.len() - 32);
        if sha2::Sha256::digest(body).as_slice() != hash {
            return Err(EtcdError::internal("snapshot SHA-256 mismatch: the file is truncated or corrupt"));
        }
        let len = u64::from_be_bytes(body[body.len() - 8..].try_into().expect("8 bytes")) as usize;
        if len <= body.len() - 8 && verify(&body[..len]).is_ok() {
            return Ok(&body[..len]);
        }
    }
    verify(data)?;
    Ok(data)
}

/// Checks magic and checksum; returns the record section.
pub fn verify(data: &[u8]) -> Result<&[u8], EtcdError> {
    if data.len() < MAGIC.len() + 5 || &data[..8] != MAGIC {
        return Err(EtcdError::Internal("not a k8sup-datastore snapshot (bad magic)".into()));
    }
    let (body, crc) = data.split_at(data.len() - 4);
    let want = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    if crc32fast::hash(body) != want {
        return Err(EtcdError::Internal("snapshot checksum mismatch: the file is truncated or corrupt".into()));
    }
    Ok(&body[8..])
}

/// Replaces the whole state machine with the snapshot's content.
pub fn load(mvcc: &Mvcc, data: &[u8]) -> Result<(), EtcdError> {
    let body = verify(unwrap_stream(data)?)?;
    let db = mvcc.db();
    // Clear everything first.
    for name in ALL_CFS {
        let cf = mvcc.cf(name);
        let mut batch = WriteBatch::default();
        let mut it = db.raw_iterator_cf_opt(cf, Mvcc::whole_cf());
        it.seek_to_first();
        while let Some(k) = it.key() {
            batch.delete_cf(cf, k);
            if batch.len() >= 50_000 {
                db.write(std::mem::take(&mut batch))?;
            }
            it.next();
        }
        it.status()?;
        db.write(batch)?;
    }
    let mut r = body;
    let mut batch = WriteBatch::default();
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).map_err(|_| EtcdError::internal("truncated snapshot"))?;
        if tag[0] == 0 {
            break;
        }
        let mut hdr = [0u8; 5];
        r.read_exact(&mut hdr).map_err(|_| EtcdError::internal("truncated snapshot"))?;
        let cf = *ALL_CFS.get(hdr[0] as usize).ok_or_else(|| EtcdError::internal("snapshot names an unknown column family"))?;
        let klen = u32::from_be_bytes(hdr[1..5].try_into().expect("4")) as usize;
        if r.len() < klen + 4 {
            return Err(EtcdError::internal("truncated snapshot"));
        }
        let (k, rest) = r.split_at(klen);
        let vlen = u32::from_be_bytes(rest[..4].try_into().expect("4")) as usize;
        let rest = &rest[4..];
        if rest.len() < vlen {
            return Err(EtcdError::internal("truncated snapshot"));
        }
        let (v, rest) = rest.split_at(vlen);
        batch.put_cf(mvcc.cf(cf), k, v);
        if batch.len() >= 50_000 {
            db.write(std::mem::take(&mut batch))?;
        }
        r = rest;
    }
    db.write(batch)?;
    db.flush_wal(true)?;
    mvcc.reload_counters()
}

/// Writes `data` to `path` durably (temp file, fsync, rename), mode 0600.
pub fn write_file(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("part");
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
