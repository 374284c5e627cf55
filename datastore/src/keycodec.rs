//! Order-preserving encodings of RocksDB keys.
//!
//! The key index stores every version of a user key under
//! `escape(key) ++ !main_rev ++ !sub_rev`, so that one forward scan visits
//! user keys in etcd's byte order and, within a key, versions newest first.
//! Escaping (`0x00` → `0x00 0xFF`, terminated by `0x00 0x01`) keeps a key
//! that is a prefix of another sorting first, whatever bytes follow.

/// Appends the escaped form of `key` (with terminator) to `out`.
pub fn escape_into(key: &[u8], out: &mut Vec<u8>) {
    out.reserve(key.len() + 2);
    let mut parts = key.split(|&b| b == 0);
    if let Some(first) = parts.next() {
        out.extend_from_slice(first);
    }
    for part in parts {
        out.extend_from_slice(&[0, 0xFF]);
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&[0, 1]);
}

/// The escaped form of `key`: every index entry of `key` starts with it.
pub fn escape(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 14);
    escape_into(key, &mut out);
    out
}

/// Index key for version (`main`, `sub`) of `key`.
pub fn index_key(key: &[u8], main: i64, sub: u32) -> Vec<u8> {
    let mut out = escape(key);
    out.extend_from_slice(&(!(main as u64)).to_be_bytes());
    out.extend_from_slice(&(!sub).to_be_bytes());
    out
}

/// RocksDB prefix extractor of the key index: an index key without its
/// revisions, i.e. `escape(key)`. Every version of one user key shares it,
/// so a per-file prefix Bloom filter lets the lookup of a key's newest
/// version skip every file (and memtable) that never held that key.
pub fn index_prefix(raw: &[u8]) -> &[u8] {
    &raw[..raw.len().saturating_sub(12)]
}

/// Which keys [`index_prefix`] applies to: whole index keys (an escaped
/// key is at least its 2-byte terminator).
pub fn index_prefix_in_domain(raw: &[u8]) -> bool {
    raw.len() >= 14
}

/// Splits an index key into (user key, main revision, sub revision).
pub fn decode_index_key(raw: &[u8]) -> Option<(Vec<u8>, i64, u32)> {
    if raw.len() < 14 {
        return None;
    }
    let (esc, revs) = raw.split_at(raw.len() - 12);
    let main = !u64::from_be_bytes(revs[..8].try_into().ok()?) as i64;
    let sub = !u32::from_be_bytes(revs[8..].try_into().ok()?);
    // Copy the runs between zero bytes whole: keys rarely hold a zero, and
    // a scan decodes every index key it passes.
    let mut key = Vec::with_capacity(esc.len());
    let mut rest = esc;
    loop {
        let z = rest.iter().position(|&b| b == 0)?;
        key.extend_from_slice(&rest[..z]);
        match rest.get(z + 1) {
            Some(0xFF) => {
                key.push(0);
                rest = &rest[z + 2..];
            }
            Some(1) if z + 2 == rest.len() => return Some((key, main, sub)),
            _ => return None,
        }
    }
}

/// Revision-log key: `main ++ sub`, big endian, so history is in order.
pub fn rev_key(main: i64, sub: u32) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[..8].copy_from_slice(&(main as u64).to_be_bytes());
    out[8..].copy_from_slice(&sub.to_be_bytes());
    out
}

pub fn decode_rev_key(raw: &[u8]) -> Option<(i64, u32)> {
    if raw.len() != 12 {
        return None;
    }
    Some((
        u64::from_be_bytes(raw[..8].try_into().ok()?) as i64,
        u32::from_be_bytes(raw[8..].try_into().ok()?),
    ))
}

/// Key of the (lease, user key) attachment record.
pub fn lease_key_key(lease: i64, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&(lease as u64).to_be_bytes());
    out.extend_from_slice(key);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_sort_by_user_key_then_newest_first() {
        let mut keys = [
            index_key(b"a", 5, 0),
            index_key(b"a\0", 1, 0),
            index_key(b"a", 7, 0),
            index_key(b"", 3, 0),
            index_key(b"b", 2, 0),
            index_key(b"a\x01", 2, 0),
        ];
        keys.sort();
        let decoded: Vec<_> = keys.iter().map(|k| decode_index_key(k).unwrap()).collect();
        assert_eq!(
            decoded,
            vec![
                (b"".to_vec(), 3, 0),
                (b"a".to_vec(), 7, 0),
                (b"a".to_vec(), 5, 0),
                (b"a\0".to_vec(), 1, 0),
                (b"a\x01".to_vec(), 2, 0),
                (b"b".to_vec(), 2, 0),
            ]
        );
    }

    #[test]
    fn keys_with_zero_bytes_anywhere_round_trip_and_malformed_ones_are_refused() {
        let mut padded = b"/etcdctl-check-perf/\x05".to_vec();
        padded.resize(276, 0);
        for key in [
            &b""[..],
            b"\0",
            b"\0\0\0",
            b"\0a",
            b"a\0",
            b"a\0\0b\0",
            &padded,
        ] {
            let raw = index_key(key, 42, 7);
            assert_eq!(
                decode_index_key(&raw),
                Some((key.to_vec(), 42, 7)),
                "{key:?}"
            );
            assert_eq!(index_prefix(&raw), escape(key).as_slice());
        }
        let revs = [0u8; 12];
        for esc in [&b"ab"[..], b"a\0", b"a\0\x02", b"a\0\x01b", b"\0\x01\0\x01"] {
            let raw = [esc, &revs].concat();
            assert_eq!(decode_index_key(&raw), None, "{esc:?}");
        }
    }
}
