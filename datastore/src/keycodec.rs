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
    for &b in key {
        if b == 0 {
            out.extend_from_slice(&[0, 0xFF]);
        } else {
            out.push(b);
        }
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
    let mut key = Vec::with_capacity(esc.len());
    let mut i = 0;
    while i < esc.len() {
        if esc[i] == 0 {
            match esc.get(i + 1) {
                Some(0xFF) => key.push(0),
                Some(1) if i + 2 == esc.len() => return Some((key, main, sub)),
                _ => return None,
            }
            i += 2;
        } else {
            key.push(esc[i]);
            i += 1;
        }
    }
    None
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
        let mut keys = [index_key(b"a", 5, 0),
            index_key(b"a\0", 1, 0),
            index_key(b"a", 7, 0),
            index_key(b"", 3, 0),
            index_key(b"b", 2, 0),
            index_key(b"a\x01", 2, 0)];
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
}
