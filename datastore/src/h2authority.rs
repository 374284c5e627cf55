//! Repairs the HTTP/2 `:authority` of incoming requests before hyper sees it.
//!
//! etcdctl 3.4 dials per-endpoint connections (`endpoint status`, `endpoint
//! hashkv`, `defrag`, `snapshot save`) with the full URL as gRPC target, so
//! it sends `:authority: https://127.0.0.1:2379`. Go's gRPC server accepts
//! that; the `h2` crate rejects it as malformed and resets the stream. This
//! stream wrapper rewrites the client-to-server byte stream: it walks the
//! HPACK block of every HEADERS (+CONTINUATION) frame and replaces a
//! `:authority` value that is not a plain `host[:port]` with `a`. Nothing in
//! the server uses the authority.
//!
//! HPACK state stays consistent without decoding Huffman strings: a
//! replaced value is never longer than the original, so the server's
//! dynamic table never evicts an entry the client still references; all
//! other bytes are forwarded untouched.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADERS: u8 = 0x1;
const FRAME_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// The server's default SETTINGS_MAX_FRAME_SIZE (h2 does not raise it).
const MAX_FRAME: usize = 16_384;

enum Phase {
    Preface,
    Frames,
    /// Not HTTP/2 as expected: forward bytes untouched.
    Passthrough,
}

struct Pending {
    stream: u32,
    flags: u8,
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

pub struct AuthorityFix<S> {
    inner: S,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    out_pos: usize,
    pending: Option<Pending>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            phase: Phase::Preface,
            input: Vec::new(),
            output: Vec::new(),
            out_pos: 0,
            pending: None,
            eof: false,
        }
    }

    fn process(&mut self) {
        loop {
            match self.phase {
                Phase::Passthrough => {
                    self.output.append(&mut self.input);
                    return;
                }
                Phase::Preface => {
                    let n = self.input.len().min(PREFACE.len());
                    if self.input[..n] != PREFACE[..n] {
                        self.phase = Phase::Passthrough;
                        continue;
                    }
                    if n < PREFACE.len() {
                        return;
                    }
                    self.output.extend(self.input.drain(..PREFACE.len()));
                    self.phase = Phase::Frames;
                }
                Phase::Frames => {
                    if self.input.len() < 9 {
                        return;
                    }
                    let len = (self.input[0] as usize) << 16
                        | (self.input[1] as usize) << 8
                        | self.input[2] as usize;
                    if self.input.len() < 9 + len {
                        return;
                    }
                    let frame: Vec<u8> = self.input.drain(..9 + len).collect();
                    self.frame(frame);
                }
            }
        }
    }

    fn frame(&mut self, frame: Vec<u8>) {
        let (ty, flags) = (frame[3], frame[4]);
        let stream = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[9..];
        match ty {
            FRAME_HEADERS if self.pending.is_none() => {
                let mut p = payload;
                let mut pad = 0usize;
                if flags & FLAG_PADDED != 0 {
                    let Some((&n, rest)) = p.split_first() else {
                        return self.output.extend(frame);
                    };
                    pad = n as usize;
                    p = rest;
                }
                let mut priority = None;
                if flags & FLAG_PRIORITY != 0 {
                    if p.len() < 5 {
                        return self.output.extend(frame);
                    }
                    priority = Some(p[..5].try_into().expect("5 bytes"));
                    p = &p[5..];
                }
                if pad > p.len() {
                    return self.output.extend(frame);
                }
                let block = p[..p.len() - pad].to_vec();
                self.pending = Some(Pending {
                    stream,
                    flags,
                    priority,
                    block,
                });
                if flags & FLAG_END_HEADERS != 0 {
                    self.flush_headers();
                }
            }
            FRAME_CONTINUATION if self.pending.as_ref().map(|p| p.stream) == Some(stream) => {
                if let Some(p) = self.pending.as_mut() {
                    p.block.extend_from_slice(payload);
                }
                if flags & FLAG_END_HEADERS != 0 {
                    self.flush_headers();
                }
            }
            _ => self.output.extend(frame),
        }
    }

    fn flush_headers(&mut self) {
        let Some(p) = self.pending.take() else { return };
        let block = rewrite_block(&p.block).unwrap_or(p.block);
        let mut first = Vec::new();
        if let Some(pr) = p.priority {
            first.extend_from_slice(&pr);
        }
        let room = MAX_FRAME - first.len();
        let split = block.len().min(room);
        first.extend_from_slice(&block[..split]);
        let mut rest = &block[split..];
        let base = p.flags & (FLAG_END_STREAM | FLAG_PRIORITY);
        let end = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        self.emit(FRAME_HEADERS, base | end, p.stream, &first);
        while !rest.is_empty() {
            let n = rest.len().min(MAX_FRAME);
            let end = if n == rest.len() { FLAG_END_HEADERS } else { 0 };
            self.emit(FRAME_CONTINUATION, end, p.stream, &rest[..n]);
            rest = &rest[n..];
        }
    }

    fn emit(&mut self, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = payload.len();
        self.output
            .extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags]);
        self.output.extend_from_slice(&stream.to_be_bytes());
        self.output.extend_from_slice(payload);
    }
}

/// Decodes an HPACK integer with an `n`-bit prefix; returns (value, bytes used).
fn int(b: &[u8], n: u8) -> Option<(usize, usize)> {
    let mask = (1u16 << n) as usize - 1;
    let mut v = (*b.first()? as usize) & mask;
    if v < mask {
        return Some((v, 1));
    }
    let mut m = 0;
    for (i, &byte) in b[1..].iter().enumerate() {
        v = v.checked_add(((byte & 0x7f) as usize).checked_shl(m)?)?;
        m += 7;
        if byte & 0x80 == 0 {
            return Some((v, i + 2));
        }
        if m > 28 {
            return None;
        }
    }
    None
}

/// A string literal: (huffman, bytes, total length of the representation).
fn string(b: &[u8]) -> Option<(bool, &[u8], usize)> {
    let huff = b.first()? & 0x80 != 0;
    let (len, used) = int(b, 7)?;
    let bytes = b.get(used..used + len)?;
    Some((huff, bytes, used + len))
}

fn valid_authority(v: &[u8]) -> bool {
    !v.is_empty()
        && v.iter()
            .all(|c| c.is_ascii_alphanumeric() || b".-_:[]%".contains(c))
}

/// Rewrites bad `:authority` values in a header block; None if the block
/// does not parse (it is then forwarded as is, for h2 to judge).
fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut i = 0;
    while i < block.len() {
        let b = block[i];
        if b & 0x80 != 0 {
            let (_, n) = int(&block[i..], 7)?;
            out.extend_from_slice(&block[i..i + n]);
            i += n;
            continue;
        }
        if b & 0xE0 == 0x20 {
            let (_, n) = int(&block[i..], 5)?;
            out.extend_from_slice(&block[i..i + n]);
            i += n;
            continue;
        }
        // Literal: with incremental indexing (6-bit index) or without /
        // never indexed (4-bit index).
        let prefix = if b & 0xC0 == 0x40 { 6 } else { 4 };
        let start = i;
        let (idx, n) = int(&block[i..], prefix)?;
        i += n;
        let mut is_authority = idx == 1;
        if idx == 0 {
            let (huff, name, used) = string(&block[i..])?;
            is_authority = !huff && name == b":authority";
            i += used;
        }
        let (huff, value, used) = string(&block[i..])?;
        i += used;
        let bad = huff || !valid_authority(value);
        if is_authority && bad && !value.is_empty() {
            // Same representation kind, indexed name `:authority`, value "a".
            let kind = block[start] & if prefix == 6 { 0xC0 } else { 0xF0 };
            out.push(kind | 1);
            out.extend_from_slice(&[1, b'a']);
        } else {
            out.extend_from_slice(&block[start..i]);
        }
    }
    Some(out)
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.out_pos < this.output.len() {
                let n = buf.remaining().min(this.output.len() - this.out_pos);
                buf.put_slice(&this.output[this.out_pos..this.out_pos + n]);
                this.out_pos += n;
                if this.out_pos == this.output.len() {
                    this.output.clear();
                    this.out_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut tmp = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        this.eof = true;
                        // Forward whatever is left unparsed.
                        let rest = std::mem::take(&mut this.input);
                        this.output.extend(rest);
                        continue;
                    }
                    this.input.extend_from_slice(got);
                    this.process();
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S> tonic::transport::server::Connected for AuthorityFix<S> {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_url_authority_and_keeps_other_fields() {
        // :method POST (indexed 3), literal-incremental :authority "http://x:1", path literal.
        let mut block = vec![0x83, 0x41, 10];
        block.extend_from_slice(b"http://x:1");
        block.extend_from_slice(&[0x04, 3]);
        block.extend_from_slice(b"/ab");
        let out = rewrite_block(&block).unwrap();
        let mut want = vec![0x83, 0x41, 1, b'a', 0x04, 3];
        want.extend_from_slice(b"/ab");
        assert_eq!(out, want);
        // A plain host:port authority is left alone.
        let mut ok = vec![0x41, 9];
        ok.extend_from_slice(b"host:2379");
        assert_eq!(rewrite_block(&ok).unwrap(), ok);
    }
}
