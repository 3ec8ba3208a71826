//! Noticing that Postfix has gone away while a callback is still working.
//!
//! indymilter reads the next packet only when a callback has returned, so
//! while the end-of-message callback waits for DNS nobody reads the socket:
//! when Postfix gives up on us (its `milter_content_timeout`, a stopped
//! smtpd) the close would go unnoticed until the work is done, and the
//! connection slot stay taken. Each accepted stream is therefore wrapped in
//! a [`Watched`] stream whose [`Peer`] handle a callback can wait on:
//! [`Peer::gone`] reads the socket itself while the callback runs, and
//! completes at end of file or an error. Bytes it reads on the way (Postfix
//! sends nothing while it waits for an answer, but nothing is lost if it
//! does) are kept, up to [`MAX_STASH`], and handed to indymilter first.
//!
//! The stream and the handle share it through an `Arc`; the handle's
//! reference is weak, so the socket closes, and its open-connections count
//! goes, as soon as indymilter drops the stream.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// The most bytes [`Peer::gone`] reads ahead for indymilter; past it, it
/// stops reading (and watching) rather than buffer more.
pub const MAX_STASH: usize = 64 * 1024;

/// The stream and what was read ahead of indymilter.
#[derive(Debug)]
struct Shared<S> {
    io: S,
    stash: Vec<u8>,
    /// End of file or a read error seen by the watcher.
    ended: Option<io::ErrorKind>,
}

fn lock<S>(m: &Mutex<Shared<S>>) -> MutexGuard<'_, Shared<S>> {
    // Every critical section is one poll of the stream: a panic in one
    // leaves the state as whole as any I/O error would.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The accepted stream as indymilter uses it.
#[derive(Debug)]
pub struct Watched<S> {
    shared: Arc<Mutex<Shared<S>>>,
    dropped: Arc<Notify>,
}

/// A callback's view of its connection.
#[derive(Debug)]
pub struct Peer<S> {
    shared: Weak<Mutex<Shared<S>>>,
    dropped: Arc<Notify>,
}

impl<S> Clone for Peer<S> {
    fn clone(&self) -> Self {
        Peer {
            shared: Weak::clone(&self.shared),
            dropped: Arc::clone(&self.dropped),
        }
    }
}

/// Wraps `io`; the [`Peer`] handle watches it.
pub fn watch<S>(io: S) -> (Watched<S>, Peer<S>) {
    let shared = Arc::new(Mutex::new(Shared {
        io,
        stash: Vec::new(),
        ended: None,
    }));
    let dropped = Arc::new(Notify::new());
    let peer = Peer {
        shared: Arc::downgrade(&shared),
        dropped: Arc::clone(&dropped),
    };
    (Watched { shared, dropped }, peer)
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        // A stored permit: the waiter may start waiting later.
        self.dropped.notify_one();
    }
}

impl<S: AsyncRead + Unpin> Peer<S> {
    /// Completes when Postfix closed the connection (or it failed), and
    /// never while it is open and quiet. Drop it to stop watching.
    pub async fn gone(&self) {
        std::future::poll_fn(|cx| {
            let Some(shared) = self.shared.upgrade() else {
                return Poll::Ready(());
            };
            let mut s = lock(&shared);
            loop {
                if s.ended.is_some() {
                    return Poll::Ready(());
                }
                if s.stash.len() >= MAX_STASH {
                    // Not a Postfix waiting for an answer: stop reading.
                    return Poll::Pending;
                }
                let mut chunk = [0u8; 4096];
                let mut buf = ReadBuf::new(&mut chunk);
                match Pin::new(&mut s.io).poll_read(cx, &mut buf) {
                    Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                        s.ended = Some(io::ErrorKind::UnexpectedEof);
                    }
                    Poll::Ready(Ok(())) => {
                        let n = buf.filled().len();
                        s.stash.extend_from_slice(&chunk[..n]);
                    }
                    Poll::Ready(Err(e)) => s.ended = Some(e.kind()),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
    }
}

impl<S> Peer<S> {
    /// Completes when indymilter has dropped the stream (the session is
    /// over).
    pub async fn finished(&self) {
        if self.shared.strong_count() == 0 {
            return;
        }
        self.dropped.notified().await;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = lock(&self.shared);
        if !s.stash.is_empty() {
            let n = s.stash.len().min(buf.remaining());
            buf.put_slice(&s.stash[..n]);
            s.stash.drain(..n);
            return Poll::Ready(Ok(()));
        }
        match s.ended {
            Some(io::ErrorKind::UnexpectedEof) => Poll::Ready(Ok(())),
            Some(kind) => Poll::Ready(Err(kind.into())),
            None => Pin::new(&mut s.io).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(&self.shared).io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.shared).io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.shared).io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut lock(&self.shared).io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        lock(&self.shared).io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn gone_at_end_of_file_and_nothing_lost() {
        let (mut postfix, ours) = tokio::io::duplex(1024);
        let (mut stream, peer) = watch(ours);
        // Quiet: not gone.
        let quiet = tokio::time::timeout(std::time::Duration::from_millis(50), peer.gone()).await;
        assert!(quiet.is_err());
        // Bytes sent while watching reach the reader afterwards.
        postfix.write_all(b"abc").await.unwrap();
        let still = tokio::time::timeout(std::time::Duration::from_millis(50), peer.gone()).await;
        assert!(still.is_err());
        let mut buf = [0u8; 3];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"abc");
        // Closed: gone, and the reader sees the end too.
        drop(postfix);
        peer.gone().await;
        assert_eq!(stream.read(&mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn the_handle_does_not_keep_the_stream() {
        let (mut postfix, ours) = tokio::io::duplex(1024);
        let (stream, peer) = watch(ours);
        drop(stream);
        peer.finished().await;
        peer.gone().await;
        // Our side is closed: the other end reads the end of file.
        let mut buf = [0u8; 1];
        assert_eq!(postfix.read(&mut buf).await.unwrap(), 0);
    }
}
