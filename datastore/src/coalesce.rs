//! Gathers the HTTP/2 frames written to one client connection into one
//! write, as grpc-go's transport does.
//!
//! Why: hyper runs each HTTP/2 stream's response in a task of its own. A
//! watch event leaves its watcher's stream task as one DATA frame, which
//! wakes the connection's task, and tokio runs a task woken that way next on
//! the same worker (its LIFO slot). So the connection task used to write
//! each watcher's frame in its own `writev`, before the other watchers of
//! that connection had even run: 1.3 write syscalls per delivered event
//! against etcd's 0.39, and `writev` with what it drives (loopback TCP,
//! waking the reader) was a fifth of our CPU under fan-out.
//!
//! grpc-go's `loopyWriter` flushes its buffer once nothing is left to
//! frame, but when that buffer holds less than `minBatchSize` (1,000 bytes)
//! it first calls `runtime.Gosched()` once, so that the goroutines about to
//! hand it frames can. This is the same: `poll_flush` with less than
//! [`MIN_BATCH`] buffered wakes its own task and returns `Pending` once,
//! which puts the connection task behind the tasks already runnable (a task
//! that wakes itself is scheduled as a yield, at the back of the queue);
//! the frames they add go out in the same write. It is not a timer: nothing
//! waits when nothing else is runnable.
//!
//! A yield that gathers nothing still cost the response one trip through
//! the run queue, behind whatever else the member had to do: under
//! kube-apiserver, whose watch and unary answers mostly leave one at a time,
//! yielding on every flush made the write-to-watch delay's p99 1.5x longer
//! at load 4.5. So after a yield that gathered nothing the connection
//! writes its next small flushes at once, twice as many after each such
//! yield (up to [`MAX_SKIP`]), and a yield that gathers starts it over: a
//! fan-out keeps gathering, a lone stream soon yields on under one flush in
//! a thousand.
//!
//! Writes are only buffered: every byte handed to [`Coalesce`] goes out at
//! the next flush (h2 flushes whenever it has nothing more to frame), and a
//! buffer of [`MAX_BUFFER`] is written through before more is taken, so
//! memory stays bounded and flow control keeps working.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Below this many buffered bytes a flush first yields once (grpc-go's
/// `minBatchSize`).
pub const MIN_BATCH: usize = 1_000;
/// Buffered bytes at which a write first drains the buffer.
pub const MAX_BUFFER: usize = 64 * 1024;
/// Most small flushes written at once between two yields.
pub const MAX_SKIP: u16 = 1024;

pub struct Coalesce<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    written: usize,
    /// This flush yielded once, with this many bytes pending.
    yielded: Option<usize>,
    /// Small flushes still to write without yielding.
    skip: u16,
    /// What `skip` is set to after the next yield that gathers nothing.
    backoff: u16,
}

impl<S> Coalesce<S> {
    pub fn new(inner: S) -> Self {
        Coalesce {
            inner,
            buf: Vec::new(),
            written: 0,
            yielded: None,
            skip: 0,
            backoff: 1,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes out what is buffered; `Pending` while the socket is full.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = std::task::ready!(
                Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..])
            )?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Room for more: drains a full buffer first.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.len() >= MAX_BUFFER {
            std::task::ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_room(cx))?;
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_room(cx))?;
        let mut n = 0;
        for b in bufs {
            self.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let pending = self.buf.len() - self.written;
        match self.yielded {
            None if self.written == 0 && pending > 0 && pending < MIN_BATCH => {
                if self.skip == 0 {
                    self.yielded = Some(pending);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                self.skip -= 1;
            }
            Some(before) if pending <= before => {
                self.skip = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_SKIP);
            }
            Some(_) => self.backoff = 1,
            _ => {}
        }
        self.yielded = None;
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    /// A socket that records each write it is given.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write(c: &mut Coalesce<Recorder>, data: &[u8]) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(matches!(
            Pin::new(c).poll_write(&mut cx, data),
            Poll::Ready(Ok(n)) if n == data.len()
        ));
    }

    /// Writes `data` and flushes it; `during`, if any, is what another
    /// stream hands over while the flush waits (on the second poll). Says
    /// how many polls the flush took: 2 when it yielded.
    async fn flush(c: &mut Coalesce<Recorder>, data: &[u8], during: Option<&[u8]>) -> usize {
        write(c, data);
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            if let (2, Some(more)) = (polls, during) {
                write(&mut *c, more);
            }
            Pin::new(&mut *c).poll_flush(cx)
        })
        .await
        .unwrap();
        polls
    }

    async fn flush_alone(c: &mut Coalesce<Recorder>, data: &[u8]) -> usize {
        flush(c, data, None).await
    }

    #[tokio::test]
    async fn small_frames_flushed_apart_leave_in_one_write() {
        let mut c = Coalesce::new(Recorder::default());
        // The first flush yields (and wakes its task, so it is polled again).
        let polls = flush(&mut c, b"frame-1", Some(b"frame-2")).await;
        assert_eq!(polls, 2, "one yield, then one write of both");
        assert_eq!(c.get_ref().writes, vec![b"frame-1frame-2".to_vec()]);
        // A later flush with nothing new writes nothing.
        poll_fn(|cx| Pin::new(&mut c).poll_flush(cx)).await.unwrap();
        assert_eq!(c.get_ref().writes.len(), 1);
    }

    #[tokio::test]
    async fn a_lone_stream_yields_ever_more_rarely() {
        let mut c = Coalesce::new(Recorder::default());
        let mut yields = Vec::new();
        for i in 0..2100 {
            if flush_alone(&mut c, b"a").await == 2 {
                yields.push(i);
            }
        }
        // Each yield gathered nothing: the gaps double, up to MAX_SKIP.
        assert_eq!(yields, [0, 2, 5, 10, 19, 36, 69, 134, 263, 520, 1033, 2058]);
        assert_eq!(
            c.get_ref().writes.len(),
            2100,
            "every flush wrote its frame"
        );
    }

    #[tokio::test]
    async fn a_yield_that_gathers_keeps_the_connection_yielding() {
        let mut c = Coalesce::new(Recorder::default());
        for _ in 0..3 {
            flush_alone(&mut c, b"lone").await;
        }
        // Now a fan-out: every yield gathers another stream's frame.
        for round in 0..20 {
            let polls = flush(&mut c, b"frame-1", Some(b"frame-2")).await;
            if round >= 2 {
                assert_eq!(polls, 2, "round {round}: yields again");
            }
        }
        assert!(c.get_ref().writes.ends_with(&[b"frame-1frame-2".to_vec()]));
    }

    #[tokio::test]
    async fn a_large_batch_is_written_without_waiting() {
        let mut c = Coalesce::new(Recorder::default());
        write(&mut c, &[7; MIN_BATCH]);
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            Pin::new(&mut c).poll_flush(cx)
        })
        .await
        .unwrap();
        assert_eq!(polls, 1);
        assert_eq!(c.get_ref().writes, vec![vec![7; MIN_BATCH]]);
    }

    #[tokio::test]
    async fn a_full_buffer_is_written_through_before_more_is_taken() {
        let mut c = Coalesce::new(Recorder::default());
        write(&mut c, &[1; MAX_BUFFER]);
        assert!(c.get_ref().writes.is_empty());
        write(&mut c, b"next");
        assert_eq!(c.get_ref().writes, vec![vec![1; MAX_BUFFER]]);
        poll_fn(|cx| Pin::new(&mut c).poll_flush(cx)).await.unwrap();
        assert_eq!(c.get_ref().writes[1], b"next");
    }
}
