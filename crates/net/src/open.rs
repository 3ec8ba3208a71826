//! How many accepted connections this process holds open right now: the
//! `chatmail_open_connections` gauge of every daemon reads it (see
//! `docs/metrics.md`). One counter per process, because each daemon is its
//! own process.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Connections accepted and not yet closed.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// Counts one open connection for as long as it lives.
#[derive(Debug)]
pub struct OpenConnection(());

impl OpenConnection {
    /// Counts a connection that has just been accepted.
    #[allow(clippy::new_without_default)]
    pub fn new() -> OpenConnection {
        OPEN.fetch_add(1, Ordering::Relaxed);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream counted as open until it is dropped, for servers that accept
/// connections themselves (the milter library).
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    _open: OpenConnection,
}

impl<S> Counted<S> {
    /// Counts `inner` as open.
    pub fn new(inner: S) -> Counted<S> {
        Counted {
            inner,
            _open: OpenConnection::new(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_while_alive() {
        let before = open_connections();
        let a = OpenConnection::new();
        let b = Counted::new(tokio::io::empty());
        assert_eq!(open_connections(), before + 2);
        drop(a);
        drop(b);
        assert_eq!(open_connections(), before);
    }
}
