//! SHA-256 as lowercase hex: how the cluster layer names a content it
//! compares on a host (the credentials a component reads, an add-on
//! manifest last applied, the cluster's record in the datastore), so that
//! a guard or a notification compares with what this run wants rather than
//! with a file the same step may rewrite.

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
