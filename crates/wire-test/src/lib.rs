//! Byte-exact assertions on Unix stream sockets, shared by the socket tests
//! of the line protocols (Dovecot dict, Postfix policy) and their daemons.
//!
//! Every read has a deadline: a reply that never comes fails the test
//! instead of hanging it. Bytes are compared in their escaped form so a
//! failure shows tabs and newlines.

#![forbid(unsafe_code)]

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Longest wait for bytes a test expects.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Reads exactly `want.len()` bytes ([`PATIENCE`] at most) and compares them.
///
/// # Panics
/// When the bytes differ, the read fails or times out.
pub async fn expect(c: &mut UnixStream, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(PATIENCE, c.read_exact(&mut got))
        .await
        .unwrap_or_else(|_| panic!("timeout waiting for {:?}", want.escape_ascii().to_string()))
        .unwrap();
    assert_eq!(
        got.escape_ascii().to_string(),
        want.escape_ascii().to_string()
    );
}

/// Sends `req` and expects exactly `want` back.
///
/// # Panics
/// As [`expect`], or when the write fails.
pub async fn roundtrip(c: &mut UnixStream, req: &[u8], want: &[u8]) {
    c.write_all(req).await.unwrap();
    expect(c, want).await;
}

/// Asserts nothing arrives within `ms` milliseconds.
///
/// # Panics
/// When anything (bytes, end of stream, an error) arrives in time.
pub async fn expect_silence(c: &mut UnixStream, ms: u64) {
    let mut b = [0u8; 1];
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(ms), c.read(&mut b)).await {
        panic!(
            "expected silence, got {r:?} {:?}",
            b.escape_ascii().to_string()
        );
    }
}

/// Asserts the server closes the connection ([`PATIENCE`] at most), sending
/// nothing more.
///
/// # Panics
/// When bytes arrive first, or the connection stays open.
pub async fn expect_eof(c: &mut UnixStream) {
    let mut rest = Vec::new();
    let r = tokio::time::timeout(PATIENCE, c.read_to_end(&mut rest))
        .await
        .expect("connection not closed");
    // A reset also means closed: the kernel sends one when the server
    // closes with input it did not read.
    if let Err(e) = r {
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    }
    assert_eq!(rest.escape_ascii().to_string(), "");
}
