//! Line framing for the line-based socket protocols our daemons speak (the
//! Dovecot dict protocol and the Postfix policy protocol): reading one
//! `\n`-terminated line into a bounded buffer, the idle timeout, the stop
//! signal of a shutting-down server, lines over the limit, and closing a
//! connection whose peer is still sending.
//!
//! It knows no protocol: what a line means, and what to answer when a line
//! is too long or the peer goes quiet, is the protocol server's business.
//! This module must not depend on any protocol crate.
//!
//! Replies are buffered in the [`Io`] writer and flushed whenever the
//! reader is about to wait for the peer (the peer may be waiting for them),
//! so a pipelined burst of requests is answered with one write.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::watch;

use crate::Stream;

/// A connection with buffered reads and buffered writes in one object: a
/// `BufReader` passes writes through to the `BufWriter` inside it.
pub type Io = BufReader<BufWriter<Stream>>;

/// What happens to a line longer than [`Framing::max_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlong {
    /// Stop at once: the line buffer keeps the first `max_line` bytes (for
    /// the log and the answer) and the rest stays unread; the caller is
    /// expected to close the connection.
    Stop,
    /// Read the line to its end without keeping it; the connection stays
    /// usable.
    Skip,
}

/// Limits of one connection's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// Longest line kept, without its `\n`.
    pub max_line: usize,
    /// What to do with a longer line.
    pub overlong: Overlong,
    /// Bytes (kept or skipped) one unit of several lines may take before
    /// [`Line::Flood`]; a unit ends with [`LineReader::end_unit`]. `None`
    /// for protocols whose requests are single lines.
    pub max_unit_bytes: Option<usize>,
}

/// What reading the next line produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// A whole line is in the buffer (without `\n`).
    Complete,
    /// The line was over [`Framing::max_line`]; see [`Overlong`] for what
    /// the buffer holds.
    TooLong,
    /// The peer closed; the buffer holds any partial line.
    Eof,
    /// The current unit exceeded [`Framing::max_unit_bytes`].
    Flood,
}

/// What waiting for the next line produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A line, or why there is none.
    Line(Line),
    /// No complete line arrived within the idle timeout; the buffer holds
    /// any partial line.
    Idle,
    /// The server is shutting down (checked before reading and while
    /// waiting for input, never in the middle of a handler).
    Stopped,
}

/// Reads lines from one connection within a [`Framing`].
#[derive(Debug)]
pub struct LineReader {
    framing: Framing,
    unit_bytes: usize,
}

impl LineReader {
    /// A reader for a new connection.
    pub fn new(framing: Framing) -> Self {
        LineReader {
            framing,
            unit_bytes: 0,
        }
    }

    /// Bytes read since the current unit began (only counted with
    /// [`Framing::max_unit_bytes`]).
    pub fn unit_bytes(&self) -> usize {
        self.unit_bytes
    }

    /// Starts a new unit, e.g. after the empty line that ends a request.
    pub fn end_unit(&mut self) {
        self.unit_bytes = 0;
    }

    /// Waits for the next line into `line` (cleared first), at most `idle`
    /// long, and gives up when `stop` turns true.
    ///
    /// # Errors
    ///
    /// I/O errors from reading or from flushing pending replies.
    pub async fn next_line(
        &mut self,
        io: &mut Io,
        line: &mut Vec<u8>,
        idle: Duration,
        stop: &watch::Receiver<bool>,
    ) -> io::Result<Next> {
        if *stop.borrow() {
            return Ok(Next::Stopped);
        }
        line.clear();
        let mut stop = stop.clone();
        tokio::select! {
            r = tokio::time::timeout(idle, self.read_line(io, line)) => match r {
                Ok(r) => r.map(Next::Line),
                Err(_) => Ok(Next::Idle),
            },
            _ = stop.changed() => Ok(Next::Stopped),
        }
    }

    /// Reads up to the next `\n` into `line` (without it), never holding
    /// more than [`Framing::max_line`] bytes of one line. Flushes pending
    /// replies before it would wait for the peer.
    ///
    /// # Errors
    ///
    /// I/O errors from reading or flushing.
    pub async fn read_line(&mut self, io: &mut Io, line: &mut Vec<u8>) -> io::Result<Line> {
        let max = self.framing.max_line;
        let mut skipping = false;
        loop {
            if io.buffer().is_empty() {
                io.flush().await?;
            }
            let buf = io.fill_buf().await?;
            if buf.is_empty() {
                return Ok(Line::Eof);
            }
            let (chunk, used, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], i + 1, true),
                None => (buf, buf.len(), false),
            };
            if let Some(limit) = self.framing.max_unit_bytes {
                self.unit_bytes = self.unit_bytes.saturating_add(used);
                if self.unit_bytes > limit {
                    return Ok(Line::Flood);
                }
            }
            if !skipping && line.len() + chunk.len() > max {
                match self.framing.overlong {
                    Overlong::Stop => {
                        let room = max.saturating_sub(line.len()).min(chunk.len());
                        line.extend_from_slice(&chunk[..room]);
                        return Ok(Line::TooLong);
                    }
                    Overlong::Skip => {
                        skipping = true;
                        line.clear();
                        line.shrink_to(max);
                    }
                }
            }
            if !skipping {
                line.extend_from_slice(chunk);
            }
            io.consume(used);
            if done {
                return Ok(if skipping {
                    Line::TooLong
                } else {
                    Line::Complete
                });
            }
        }
    }
}

/// Longest wait for a peer's remaining input in [`close_with_unread_input`].
const DRAIN_TIME: Duration = Duration::from_millis(500);
/// Most input discarded by [`close_with_unread_input`].
const DRAIN_BYTES: usize = 1 << 20;

/// Sends what is buffered and closes. Closing a socket with unread input
/// makes the kernel reset it, which can destroy the reply just sent; so
/// what the peer still sends is discarded first, within bounds.
///
/// # Errors
///
/// I/O errors from sending the buffered bytes.
pub async fn close_with_unread_input(io: &mut Io) -> io::Result<()> {
    io.shutdown().await?;
    let _ = tokio::time::timeout(DRAIN_TIME, drain(io, DRAIN_BYTES)).await;
    Ok(())
}

async fn drain(io: &mut Io, mut limit: usize) -> io::Result<()> {
    while limit > 0 {
        let n = io.fill_buf().await?.len().min(limit);
        if n == 0 {
            break;
        }
        io.consume(n);
        limit -= n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixStream;

    /// Feeds `input` (then EOF) to a reader and returns every line read.
    async fn read_all(framing: Framing, input: &[u8]) -> Vec<(Line, String)> {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        theirs.write_all(input).await.unwrap();
        theirs.shutdown().await.unwrap();
        let mut io: Io = BufReader::with_capacity(4, BufWriter::new(Stream::Unix(ours)));
        let mut reader = LineReader::new(framing);
        let mut line = Vec::new();
        let mut got = Vec::new();
        loop {
            line.clear();
            let l = reader.read_line(&mut io, &mut line).await.unwrap();
            got.push((l, line.escape_ascii().to_string()));
            if matches!(l, Line::Eof | Line::Flood)
                || (l == Line::TooLong && framing.overlong == Overlong::Stop)
            {
                return got;
            }
            if l == Line::Complete && line.is_empty() {
                reader.end_unit();
            }
        }
    }

    #[tokio::test]
    async fn framing_table() {
        let stop = Framing {
            max_line: 5,
            overlong: Overlong::Stop,
            max_unit_bytes: None,
        };
        let skip = Framing {
            max_line: 5,
            overlong: Overlong::Skip,
            max_unit_bytes: Some(14),
        };
        use Line::{Complete, Eof, Flood, TooLong};
        type Case<'a> = (Framing, &'a [u8], &'a [(Line, &'a str)]);
        let cases: &[Case] = &[
            (
                stop,
                b"ab\n12345\ncd",
                &[(Complete, "ab"), (Complete, "12345"), (Eof, "cd")],
            ),
            (
                stop,
                b"ab\n123456\nx\n",
                &[(Complete, "ab"), (TooLong, "12345")],
            ),
            (
                skip,
                b"ab\n1234567890\nc\n\n",
                &[(Complete, "ab"), (TooLong, ""), (Flood, "")],
            ),
            (
                skip,
                b"123456\nc\n\nab\n\n",
                &[
                    (TooLong, ""),
                    (Complete, "c"),
                    (Complete, ""),
                    (Complete, "ab"),
                    (Complete, ""),
                    (Eof, ""),
                ],
            ),
        ];
        for &(framing, input, want) in cases {
            let got = read_all(framing, input).await;
            let want: Vec<(Line, String)> = want.iter().map(|&(l, s)| (l, s.to_owned())).collect();
            assert_eq!(got, want, "{:?}", input.escape_ascii().to_string());
        }
    }

    #[tokio::test]
    async fn idle_and_stop() {
        let framing = Framing {
            max_line: 100,
            overlong: Overlong::Stop,
            max_unit_bytes: None,
        };
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let mut io: Io = BufReader::new(BufWriter::new(Stream::Unix(ours)));
        let mut reader = LineReader::new(framing);
        let mut line = Vec::new();
        let (tx, rx) = watch::channel(false);
        theirs.write_all(b"par").await.unwrap();
        let idle = Duration::from_millis(50);
        let got = reader.next_line(&mut io, &mut line, idle, &rx).await;
        assert_eq!(got.unwrap(), Next::Idle);
        assert_eq!(line, b"par");
        tx.send(true).unwrap();
        let got = reader.next_line(&mut io, &mut line, idle, &rx).await;
        assert_eq!(got.unwrap(), Next::Stopped);
    }
}
