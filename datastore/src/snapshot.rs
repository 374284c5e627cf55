//! The portable snapshot format: every column family of the state-machine
//! database, dumped from one RocksDB snapshot. The same bytes serve Raft
//! snapshot installation, `Maintenance/Snapshot` (`etcdctl snapshot save`)
//! and `k8sup-datastore restore`.
//!
//! Layout: `MAGIC`, then records `1u8, cf u8, klen u32, key, vlen u32,
//! value`, then `0u8` and a CRC-32 of everything before it (big endian).
//! This is not etcd's bbolt file: `etcdutl snapshot restore` cannot read it.
//!
//! A snapshot is as large as the database, so it never lives in memory:
//! it is written to a file record by record, checked in a first pass over
//! the file and only then loaded, record by record, in a second. A
//! truncated or corrupt file is refused before the store is touched.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use rocksdb::WriteBatch;
use sha2::Digest;

use crate::durable::AtomicFile;
use crate::errors::EtcdError;
use crate::mvcc::{ALL_CFS, Mvcc, Snapshot};

pub const MAGIC: &[u8; 8] = b"K8SDS001";

/// Pages of etcd's stream format (see [`Wrapped`]).
const PAGE: u64 = 512;
/// Rows written to RocksDB per batch while loading.
const LOAD_BATCH: usize = 50_000;

/// A writer that keeps the CRC-32 of what went through it.
struct Crc<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Crc<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io(what: &str, e: std::io::Error) -> EtcdError {
    EtcdError::Internal(format!("{what}: {e}"))
}

/// Writes the state machine as of `snap` to `w`; returns the bytes written.
pub fn dump_to(mvcc: &Mvcc, snap: &Snapshot<'_>, w: impl Write) -> Result<u64, EtcdError> {
    let mut out = Crc {
        inner: w,
        crc: crc32fast::Hasher::new(),
        len: 0,
    };
    let wr = |e| io("writing the snapshot", e);
    out.write_all(MAGIC).map_err(wr)?;
    for (i, name) in ALL_CFS.iter().enumerate() {
        let mut it = snap.raw_iterator_cf_opt(mvcc.cf(name), Mvcc::whole_cf());
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            out.write_all(&[1, i as u8]).map_err(wr)?;
            out.write_all(&(k.len() as u32).to_be_bytes()).map_err(wr)?;
            out.write_all(k).map_err(wr)?;
            out.write_all(&(v.len() as u32).to_be_bytes()).map_err(wr)?;
            out.write_all(v).map_err(wr)?;
            it.next();
        }
        it.status()?;
    }
    out.write_all(&[0]).map_err(wr)?;
    let crc = out.crc.clone().finalize();
    let len = out.len + 4;
    out.inner.write_all(&crc.to_be_bytes()).map_err(wr)?;
    out.inner.flush().map_err(wr)?;
    Ok(len)
}

/// Dumps the state machine as of `snap` into a new file at `path` (mode
/// 0600, fsynced; a `.part` file renamed into place, so `path` is always
/// whole). Returns its size.
pub fn dump_file(mvcc: &Mvcc, snap: &Snapshot<'_>, path: &Path) -> Result<u64, EtcdError> {
    let f = AtomicFile::create(path).map_err(|e| io(&format!("creating {}", path.display()), e))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let len = dump_to(mvcc, snap, &mut w)?;
    let f = w
        .into_inner()
        .map_err(|e| io("writing the snapshot", e.into_error()))?;
    f.commit()
        .map_err(|e| io(&format!("saving {}", path.display()), e))?;
    Ok(len)
}

/// A dump wrapped for `Maintenance/Snapshot`, read as a stream. etcdctl 3.4
/// insists that a snapshot stream is a whole number of 512-byte pages
/// followed by a SHA-256 of them (bbolt files are page-aligned), so the
/// dump is padded, its length recorded in the last 8 bytes of the last
/// page, and the hash appended.
pub struct Wrapped<R> {
    dump: R,
    dump_len: u64,
    pos: u64,
    total_pages: u64,
    sha: sha2::Sha256,
    tail: Vec<u8>,
}

impl<R: Read> Wrapped<R> {
    pub fn new(dump: R, dump_len: u64) -> Self {
        let total_pages = (dump_len + 8).div_ceil(PAGE) * PAGE;
        Wrapped {
            dump,
            dump_len,
            pos: 0,
            total_pages,
            sha: sha2::Sha256::new(),
            tail: Vec::new(),
        }
    }

    /// Bytes the stream yields in all: pages and hash.
    pub fn len(&self) -> u64 {
        self.total_pages + 32
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

impl<R: Read> Read for Wrapped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = if self.pos < self.dump_len {
            let want = buf.len().min((self.dump_len - self.pos) as usize);
            let n = self.dump.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "snapshot dump shorter than announced",
                ));
            }
            n
        } else if self.pos < self.total_pages - 8 {
            let n = buf.len().min((self.total_pages - 8 - self.pos) as usize);
            buf[..n].fill(0);
            n
        } else if self.pos < self.total_pages {
            let len = self.dump_len.to_be_bytes();
            let from = (self.pos - (self.total_pages - 8)) as usize;
            let n = buf.len().min(8 - from);
            buf[..n].copy_from_slice(&len[from..from + n]);
            n
        } else {
            if self.tail.is_empty() && self.pos == self.total_pages {
                self.tail = self.sha.clone().finalize().to_vec();
            }
            let from = (self.pos - self.total_pages) as usize;
            if from >= self.tail.len() {
                return Ok(0);
            }
            let n = buf.len().min(self.tail.len() - from);
            buf[..n].copy_from_slice(&self.tail[from..from + n]);
            self.pos += n as u64;
            return Ok(n);
        };
        self.sha.update(&buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// Opens a snapshot file, bare or stream-wrapped (what `etcdctl snapshot
/// save` writes), and checks it whole: the SHA-256 of a wrapped one, the
/// magic and the CRC-32 of the dump. Returns the file, positioned at the
/// dump's start, and the dump's length.
pub fn open_verified(path: &Path) -> Result<(File, u64), EtcdError> {
    let what = |e| io(&format!("reading {}", path.display()), e);
    let mut f = File::open(path).map_err(what)?;
    let size = f.metadata().map_err(what)?.len();
    let mut head = [0u8; 8];
    if size < 13 || f.read_exact(&mut head).is_err() || &head != MAGIC {
        return Err(EtcdError::Internal(
            "not a k8sup-datastore snapshot (bad magic)".into(),
        ));
    }
    // Stream-wrapped: the recorded length sits in the last 8 bytes of the
    // pages. One pass checks the hash of the pages and the dump's CRC; a
    // bare dump that merely looks wrapped fails it and is checked as bare.
    let looks_wrapped = size % PAGE == 32 && size >= PAGE + 32;
    if looks_wrapped {
        let len = u64::from_be_bytes(read_at::<8>(&mut f, size - 40).map_err(what)?);
        if (13..=size - 40).contains(&len) {
            let (sha, crc) = checksums(&mut f, size - 32, len - 4, true).map_err(what)?;
            let hash = read_at::<32>(&mut f, size - 32).map_err(what)?;
            let stored = read_at::<4>(&mut f, len - 4).map_err(what)?;
            if sha.as_ref() == Some(&hash) && crc == u32::from_be_bytes(stored) {
                f.seek(SeekFrom::Start(0)).map_err(what)?;
                return Ok((f, len));
            }
        }
    }
    let (_, crc) = checksums(&mut f, size - 4, size - 4, false).map_err(what)?;
    if crc != u32::from_be_bytes(read_at::<4>(&mut f, size - 4).map_err(what)?) {
        return Err(EtcdError::internal(if looks_wrapped {
            "snapshot SHA-256 mismatch: the file is truncated or corrupt"
        } else {
            "snapshot checksum mismatch: the file is truncated or corrupt"
        }));
    }
    f.seek(SeekFrom::Start(0)).map_err(what)?;
    Ok((f, size))
}

/// `N` bytes of `f` at `offset`.
fn read_at<const N: usize>(f: &mut File, offset: u64) -> std::io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut buf)?;
    Ok(buf)
}

/// One read of the first `upto` bytes of `f`: their SHA-256 (if `sha`)
/// and the CRC-32 of the first `crc_len` of them.
fn checksums(
    f: &mut File,
    upto: u64,
    crc_len: u64,
    sha: bool,
) -> std::io::Result<(Option<[u8; 32]>, u32)> {
    f.seek(SeekFrom::Start(0))?;
    let mut hasher = sha.then(sha2::Sha256::new);
    let mut crc = crc32fast::Hasher::new();
    let mut pos = 0u64;
    let mut r = BufReader::with_capacity(1 << 20, (&mut *f).take(upto));
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            break;
        }
        let in_crc = (crc_len.saturating_sub(pos) as usize).min(buf.len());
        crc.update(&buf[..in_crc]);
        if let Some(h) = hasher.as_mut() {
            h.update(buf);
        }
        let n = buf.len();
        pos += n as u64;
        r.consume(n);
    }
    Ok((hasher.map(|h| h.finalize().into()), crc.finalize()))
}

/// Replaces the whole state machine with the dump read from `r` (`len`
/// bytes, already checked by [`open_verified`]).
pub fn load_from(mvcc: &Mvcc, r: impl Read, len: u64) -> Result<(), EtcdError> {
    let db = mvcc.db();
    let truncated = || EtcdError::internal("truncated snapshot");
    let mut r = BufReader::with_capacity(1 << 20, r.take(len));
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| truncated())?;
    if &magic != MAGIC {
        return Err(EtcdError::Internal(
            "not a k8sup-datastore snapshot (bad magic)".into(),
        ));
    }
    // Clear everything first.
    for name in ALL_CFS {
        let cf = mvcc.cf(name);
        let mut batch = WriteBatch::default();
        let mut it = db.raw_iterator_cf_opt(cf, Mvcc::whole_cf());
        it.seek_to_first();
        while let Some(k) = it.key() {
            batch.delete_cf(cf, k);
            if batch.len() >= LOAD_BATCH {
                db.write(std::mem::take(&mut batch))?;
            }
            it.next();
        }
        it.status()?;
        db.write(batch)?;
    }
    let mut batch = WriteBatch::default();
    let mut buf = Vec::new();
    loop {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag).map_err(|_| truncated())?;
        if tag[0] == 0 {
            break;
        }
        let mut hdr = [0u8; 5];
        r.read_exact(&mut hdr).map_err(|_| truncated())?;
        let cf = *ALL_CFS
            .get(hdr[0] as usize)
            .ok_or_else(|| EtcdError::internal("snapshot names an unknown column family"))?;
        let klen = u32::from_be_bytes(hdr[1..5].try_into().expect("4")) as usize;
        buf.resize(klen + 4, 0);
        r.read_exact(&mut buf).map_err(|_| truncated())?;
        let vlen = u32::from_be_bytes(buf[klen..].try_into().expect("4")) as usize;
        buf.resize(klen + vlen, 0);
        r.read_exact(&mut buf[klen..]).map_err(|_| truncated())?;
        batch.put_cf(mvcc.cf(cf), &buf[..klen], &buf[klen..]);
        if batch.len() >= LOAD_BATCH {
            db.write(std::mem::take(&mut batch))?;
        }
    }
    db.write(batch)?;
    db.flush_wal(true)?;
    mvcc.reload_counters()
}

/// Checks the snapshot file at `path` whole, then loads it.
/// Dumps the state machine as of `snap` into a scratch file in `dir`, for a
/// reader that streams it away (`Maintenance/Snapshot`): unlinked as soon as
/// it is created, so nothing is left behind even after a crash, and not
/// fsynced, since nothing keeps it. Returns the file, rewound, and its size.
pub fn dump_scratch(
    mvcc: &Mvcc,
    snap: &Snapshot<'_>,
    dir: &Path,
) -> Result<(File, u64), EtcdError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(format!("maintenance-{}.snap", rand::random::<u32>()));
    let f = std::fs::OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| io(&format!("creating {}", path.display()), e))?;
    let _ = std::fs::remove_file(&path);
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let len = dump_to(mvcc, snap, &mut w)?;
    let mut f = w
        .into_inner()
        .map_err(|e| io("writing the snapshot", e.into_error()))?;
    f.seek(SeekFrom::Start(0))
        .map_err(|e| io("rewinding the snapshot", e))?;
    Ok((f, len))
}

pub fn load_file(mvcc: &Mvcc, path: &Path) -> Result<(), EtcdError> {
    let (f, len) = open_verified(path)?;
    load_from(mvcc, f, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compaction_tests::commit;

    fn store_with(dir: &Path, n: usize) -> std::sync::Arc<Mvcc> {
        let m = Mvcc::open(dir).unwrap();
        for i in 0..n {
            commit(&m, |t| {
                t.put(format!("key/{i:04}").as_bytes(), vec![b'v'; 300 + i % 7], 0)
                    .unwrap();
            });
        }
        m
    }

    fn all(m: &Mvcc) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
        let snap = m.snapshot();
        let r = m
            .range(
                &snap,
                &[0],
                &crate::mvcc::RangeEnd::Unbounded,
                m.current_rev(),
                0,
                false,
                false,
            )
            .unwrap();
        r.kvs
            .into_iter()
            .map(|kv| (kv.key, kv.value, kv.mod_revision))
            .collect()
    }

    #[test]
    fn a_dump_file_and_its_stream_wrapped_form_load_into_an_equal_store() {
        let dir = tempfile::tempdir().unwrap();
        let src = store_with(&dir.path().join("src"), 500);
        let bare = dir.path().join("bare.snap");
        let len = dump_file(&src, &src.snapshot(), &bare).unwrap();
        assert_eq!(std::fs::metadata(&bare).unwrap().len(), len);
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&bare).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // What `etcdctl snapshot save` receives and writes.
        let mut wrapped = Vec::new();
        let w = Wrapped::new(File::open(&bare).unwrap(), len);
        let announced = w.len();
        // Odd read sizes cross every boundary (dump, padding, length, hash).
        let mut w = w;
        let mut buf = [0u8; 333];
        loop {
            let n = w.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            wrapped.extend_from_slice(&buf[..n]);
        }
        assert_eq!(wrapped.len() as u64, announced);
        assert_eq!(wrapped.len() % 512, 32);
        let wrapped_path = dir.path().join("wrapped.snap");
        std::fs::write(&wrapped_path, &wrapped).unwrap();
        for (i, path) in [&bare, &wrapped_path].into_iter().enumerate() {
            let dst = Mvcc::open(&dir.path().join(format!("dst{i}"))).unwrap();
            load_file(&dst, path).unwrap();
            assert_eq!(dst.current_rev(), src.current_rev());
            assert_eq!(all(&dst), all(&src));
        }
    }

    #[test]
    fn a_corrupt_or_truncated_snapshot_is_refused_before_the_store_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let src = store_with(&dir.path().join("src"), 200);
        let good = dir.path().join("good.snap");
        dump_file(&src, &src.snapshot(), &good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let dst = store_with(&dir.path().join("dst"), 3);
        let before = all(&dst);
        let mut flipped = bytes.clone();
        flipped[bytes.len() / 2] ^= 0x40;
        for (name, data) in [
            ("flipped", flipped),
            ("truncated", bytes[..bytes.len() - 100].to_vec()),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, data).unwrap();
            let err = load_file(&dst, &p).unwrap_err().to_string();
            assert!(err.contains("truncated or corrupt"), "{name}: {err}");
            assert_eq!(all(&dst), before, "{name}: the store changed");
        }
    }
}
