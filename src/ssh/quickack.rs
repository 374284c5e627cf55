//! The TCP stream to an SSH server, acknowledging what it reads at once.
//!
//! Why: sshd leaves Nagle's algorithm on for sessions without a terminal,
//! so it holds a small packet back until its previous one is acknowledged,
//! and Linux delays an acknowledgement up to 40 ms when it has nothing to
//! send back. Logging in and opening the first channel, sshd sends small
//! packets in a row; each such pair stalled for 40 ms (seen with tcpdump on
//! the lab: 46 ms of a 75 ms first command). Quick-ack mode is not sticky
//! (the kernel leaves it as traffic goes on), so it is asked for again
//! after every read that returned data: one `setsockopt`, next to the
//! `read` it follows.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

pub(crate) struct QuickAck(pub(crate) TcpStream);

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Best effort: without it we are only slower.
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
        res
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Request-and-answer traffic (an SSH login) puts Linux in "ping-pong"
    /// mode, where it delays acknowledgements; a read through `QuickAck`
    /// switches quick acks back on.
    #[tokio::test]
    async fn a_read_turns_quick_acks_back_on() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            go_rx.await.unwrap();
            s.write_all(b"SSH-2.0-test\r\n").await.unwrap();
            let mut b = [0u8; 1];
            let _ = s.read(&mut b).await;
        });
        let plain = TcpStream::connect(addr).await.unwrap();
        // What the kernel does on its own after a few exchanges, done at
        // once (`TCP_QUICKACK` 0 enters ping-pong mode).
        socket2::SockRef::from(&plain)
            .set_tcp_quickack(false)
            .unwrap();
        assert!(!socket2::SockRef::from(&plain).tcp_quickack().unwrap());
        let mut wrapped = QuickAck(plain);
        go_tx.send(()).unwrap();
        let mut b = [0u8; 14];
        wrapped.read_exact(&mut b).await.unwrap();
        assert!(socket2::SockRef::from(&wrapped.0).tcp_quickack().unwrap());
        drop(wrapped);
        server.await.unwrap();
    }
}
