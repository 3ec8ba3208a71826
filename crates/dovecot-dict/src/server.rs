//! A generic async server for the Dovecot 2.3 dict protocol (see [`crate::proto`]
//! for the wire format and the Dovecot source files it comes from).
//!
//! The server owns everything protocol-shaped (framing, per-connection
//! HELLO state and transactions, replies, bad input); a [`Handler`] owns
//! the policy and only sees complete lookups, iterations and commits.
//!
//! Requests on one connection are answered strictly in order, which is what
//! Dovecot's client expects when replies carry no async id. Replies are
//! buffered and flushed only once no further request is already buffered,
//! so a pipelined burst is answered with one write.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use chatmail_net::{Listener, Stream};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::watch;

use crate::proto::{
    self, ITERATE_FLAG_NO_VALUE, PROTOCOL_MAJOR, ParseError, Reply, Request, key_log_prefix,
};

/// The policy behind a dict socket.
pub trait Handler: Send + Sync + 'static {
    /// Looks up `key` (with its `shared/` or `priv/` prefix); `user` is the
    /// command's user, else the one from HELLO.
    fn lookup(&self, key: &str, user: Option<&str>) -> impl Future<Output = LookupResult> + Send;

    /// Lists `(key, value)` pairs under `path`. The server applies the
    /// client's row limit and the NO_VALUE flag; `flags` is passed for
    /// RECURSE/EXACT_KEY. The default refuses, so handlers without
    /// iteration need not implement it.
    fn iterate(
        &self,
        path: &str,
        flags: u32,
        user: Option<&str>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, String>> + Send {
        let _ = (path, flags, user);
        async { Err("iterate not supported".to_owned()) }
    }

    /// Applies a whole transaction. Called once per COMMIT; a transaction
    /// that is rolled back or whose connection closes never gets here.
    fn commit(&self, tx: Transaction) -> impl Future<Output = CommitResult> + Send;
}

/// Outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupResult {
    /// One value (`O`).
    Found(String),
    /// Several values (`M`, understood by 2.3 clients, minor >= 2).
    FoundMany(Vec<String>),
    /// No such key (`N`).
    NotFound,
    /// Temporary failure (`F`); the message goes to Dovecot's log.
    Failed(String),
}

/// Outcome of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResult {
    /// Everything was written.
    Ok,
    /// A key that had to exist (atomic increment) did not.
    NotFound,
    /// Nothing was written.
    Failed(String),
    /// It is unknown whether the write happened.
    WriteUncertain(String),
}

/// A committed transaction: all writes between BEGIN and COMMIT, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The client's id; only unique within one connection.
    pub id: u32,
    /// BEGIN's user, else HELLO's.
    pub user: Option<String>,
    /// The writes, in the order the client sent them.
    pub ops: Vec<Op>,
}

/// One write within a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `S`: set `key` to `value`.
    Set { key: String, value: String },
    /// `U`: remove `key`.
    Unset { key: String },
    /// `A`: add `diff` to the number at `key`.
    AtomicInc { key: String, diff: i64 },
}

/// Limits for [`serve`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once; further ones wait in the listen queue.
    pub max_connections: usize,
    /// Longest accepted request line without its `\n`; a longer one closes
    /// the connection.
    pub max_line: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 1024,
            max_line: proto::MAX_LINE_LENGTH,
        }
    }
}

/// Dovecot's dict server keeps up to 1000 commands per connection; a real
/// client has a handful of transactions open, so this only stops a broken
/// one from growing memory without bound.
const MAX_OPEN_TRANSACTIONS: usize = 1000;

/// Serves the dict protocol on `listener` until `shutdown` resolves.
///
/// On shutdown it stops accepting, lets every connection finish the request
/// it is working on (idle connections are closed), then returns.
///
/// # Errors
///
/// None at present: accept failures (such as running out of file
/// descriptors) are logged and retried after a short pause, since a dict
/// server that exits takes all of Dovecot's logins with it. The `Result`
/// leaves room for fatal setup errors.
pub async fn serve<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max_line = options.max_line;
    chatmail_net::serve_connections(
        listener,
        "dict server",
        options.max_connections,
        shutdown,
        |stream, stop| Connection::new(Arc::clone(&handler), max_line, stop).run(stream),
    )
    .await;
    Ok(())
}

/// What the next buffered line turned out to be.
enum Line {
    Complete,
    TooLong,
    Eof,
}

/// Per-connection protocol state.
struct Connection<H> {
    handler: Arc<H>,
    max_line: usize,
    stop: watch::Receiver<bool>,
    hello_seen: bool,
    /// HELLO's user, used when a command leaves its user field empty.
    default_user: Option<String>,
    transactions: HashMap<u32, Transaction>,
    /// Bad lines on this connection; only the first is logged as a warning.
    bad_lines: u64,
    out: Vec<u8>,
}

type Io = BufReader<BufWriter<Stream>>;

impl<H: Handler> Connection<H> {
    fn new(handler: Arc<H>, max_line: usize, stop: watch::Receiver<bool>) -> Self {
        Connection {
            handler,
            max_line,
            stop,
            hello_seen: false,
            default_user: None,
            transactions: HashMap::new(),
            bad_lines: 0,
            out: Vec::with_capacity(256),
        }
    }

    async fn run(mut self, stream: Stream) {
        // BufReader passes writes through to the BufWriter, so one object
        // gives buffered reads and buffered writes without splitting.
        let mut io: Io = BufReader::new(BufWriter::new(stream));
        let mut line = Vec::new();
        if let Err(e) = self.serve_lines(&mut io, &mut line).await {
            tracing::debug!(error = %e, "dict connection ended with I/O error");
        }
        if !self.transactions.is_empty() {
            tracing::debug!(
                open = self.transactions.len(),
                "dict connection closed with open transactions; dropped uncommitted"
            );
        }
        if self.bad_lines > 1 {
            tracing::warn!(
                count = self.bad_lines,
                "dict connection had bad request lines"
            );
        }
        let _ = io.shutdown().await;
    }

    async fn serve_lines(&mut self, io: &mut Io, line: &mut Vec<u8>) -> io::Result<()> {
        loop {
            // Flush only when the next request is not already here, so a
            // pipelined burst gets one write; a partial next line counts as
            // not here, as its sender may be waiting for our answers.
            if !io.buffer().contains(&b'\n') {
                io.flush().await?;
            }
            if *self.stop.borrow() {
                return io.flush().await;
            }
            line.clear();
            let mut stop = self.stop.clone();
            let got = tokio::select! {
                r = read_line(io, line, self.max_line) => r?,
                // Only interrupts a connection waiting for its next request.
                _ = stop.changed() => return io.flush().await,
            };
            match got {
                Line::Eof => {
                    if !line.is_empty() {
                        self.bad_input(line.first().copied(), "connection closed mid-line");
                    }
                    return io.flush().await;
                }
                Line::TooLong => {
                    let cmd = line.first().copied();
                    self.bad_input(cmd, "request line too long; closing connection");
                    if cmd.is_some_and(proto::command_expects_reply) {
                        self.reply(Reply::Failed("request line too long".to_owned()));
                        io.write_all(&self.out).await?;
                    }
                    io.shutdown().await?;
                    // Closing a socket with unread input makes the kernel
                    // reset it, which can destroy the reply just sent; so
                    // discard what the client still sends, within bounds.
                    let _ = tokio::time::timeout(DRAIN_TIME, drain(io, DRAIN_BYTES)).await;
                    return Ok(());
                }
                Line::Complete => {
                    let keep = self.handle_line(line).await;
                    if !self.out.is_empty() {
                        io.write_all(&self.out).await?;
                        self.out.clear();
                    }
                    if !keep {
                        return io.flush().await;
                    }
                }
            }
        }
    }

    fn reply(&mut self, r: Reply) {
        r.encode(&mut self.out);
    }

    fn bad_input(&mut self, cmd: Option<u8>, what: &str) {
        self.bad_lines += 1;
        let cmd = cmd
            .map(|c| c.escape_ascii().to_string())
            .unwrap_or_default();
        if self.bad_lines == 1 {
            tracing::warn!(%cmd, "bad dict request: {what}");
        } else {
            tracing::debug!(%cmd, "bad dict request: {what}");
        }
    }

    /// Handles one complete line; returns false to close the connection.
    async fn handle_line(&mut self, line: &[u8]) -> bool {
        let req = match proto::parse_request(line) {
            Ok(r) => r,
            Err(e) => {
                self.parse_failed(&e);
                return true;
            }
        };
        match req {
            Request::Hello {
                major,
                minor,
                value_type,
                user,
                dict_name,
            } => {
                if major != PROTOCOL_MAJOR {
                    // Like Dovecot's server: another major version means we
                    // would misread everything that follows.
                    tracing::warn!(
                        major,
                        minor,
                        "dict client speaks protocol major {major}, need {PROTOCOL_MAJOR}; closing"
                    );
                    return false;
                }
                if self.hello_seen {
                    self.bad_input(Some(b'H'), "repeated HELLO ignored");
                    return true;
                }
                tracing::debug!(minor, value_type, dict = %dict_name, "dict client hello");
                self.hello_seen = true;
                self.default_user = user;
            }
            Request::Lookup { key, user } => {
                let user = user.or_else(|| self.default_user.clone());
                let r = self.handler.lookup(&key, user.as_deref()).await;
                self.reply(match r {
                    LookupResult::Found(v) => Reply::Found(v),
                    LookupResult::FoundMany(v) => Reply::FoundMany(v),
                    LookupResult::NotFound => Reply::NotFound,
                    LookupResult::Failed(e) => Reply::Failed(e),
                });
            }
            Request::Iterate {
                flags,
                max_rows,
                path,
                user,
            } => {
                let user = user.or_else(|| self.default_user.clone());
                match self.handler.iterate(&path, flags, user.as_deref()).await {
                    Ok(rows) => {
                        let limit = usize::try_from(max_rows).unwrap_or(usize::MAX);
                        let limit = if max_rows == 0 { usize::MAX } else { limit };
                        for (key, value) in rows.into_iter().take(limit) {
                            let value = if flags & ITERATE_FLAG_NO_VALUE != 0 {
                                String::new()
                            } else {
                                value
                            };
                            self.reply(Reply::IterateRow { key, value });
                        }
                        self.reply(Reply::IterateEnd);
                    }
                    Err(e) => self.reply(Reply::Failed(e)),
                }
            }
            Request::Begin { id, user } => {
                if self.transactions.contains_key(&id) {
                    self.bad_input(Some(b'B'), "BEGIN of a transaction id that is already open");
                } else if self.transactions.len() >= MAX_OPEN_TRANSACTIONS {
                    self.bad_input(Some(b'B'), "too many open transactions");
                } else {
                    let user = user.or_else(|| self.default_user.clone());
                    self.transactions.insert(
                        id,
                        Transaction {
                            id,
                            user,
                            ops: Vec::new(),
                        },
                    );
                }
            }
            Request::Set { id, key, value } => self.add_op(b'S', id, Op::Set { key, value }),
            Request::Unset { id, key } => self.add_op(b'U', id, Op::Unset { key }),
            Request::AtomicInc { id, key, diff } => {
                self.add_op(b'A', id, Op::AtomicInc { key, diff });
            }
            Request::Timestamp { id, .. } | Request::HideLogValues { id, .. } => {
                // Neither changes what gets written; only the id is checked.
                if !self.transactions.contains_key(&id) {
                    self.bad_input(line.first().copied(), "unknown transaction id");
                }
            }
            Request::Commit { id } => self.commit(id, false).await,
            Request::CommitAsync { id } => self.commit(id, true).await,
            Request::Rollback { id } => {
                if self.transactions.remove(&id).is_none() {
                    self.bad_input(Some(b'R'), "ROLLBACK of unknown transaction id");
                }
            }
        }
        true
    }

    fn parse_failed(&mut self, e: &ParseError) {
        let cmd = e.command();
        self.bad_input(cmd, &e.to_string());
        if cmd.is_some_and(proto::command_expects_reply) {
            self.reply(Reply::Failed(String::new()));
        }
    }

    fn add_op(&mut self, cmd: u8, id: u32, op: Op) {
        // Dovecot's client sends writes without waiting for an answer, so
        // a write to an unknown id has nobody to tell; COMMIT will fail.
        match self.transactions.get_mut(&id) {
            Some(tx) => tx.ops.push(op),
            None => {
                let key = match &op {
                    Op::Set { key, .. } | Op::Unset { key } | Op::AtomicInc { key, .. } => key,
                };
                let what = format!(
                    "write to unknown transaction id (key {})",
                    key_log_prefix(key)
                );
                self.bad_input(Some(cmd), &what);
            }
        }
    }

    async fn commit(&mut self, id: u32, async_commit: bool) {
        let result = match self.transactions.remove(&id) {
            Some(tx) => self.handler.commit(tx).await,
            None => {
                self.bad_input(
                    Some(if async_commit { b'D' } else { b'C' }),
                    "COMMIT of unknown transaction id",
                );
                CommitResult::Failed(format!("transaction {id} does not exist"))
            }
        };
        self.reply(Reply::Commit {
            id,
            result,
            async_commit,
        });
    }
}

const DRAIN_TIME: Duration = Duration::from_millis(500);
const DRAIN_BYTES: usize = 1 << 20;

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

/// Reads up to the next `\n` into `line` (without it), never holding more
/// than `max` bytes of one line.
async fn read_line(io: &mut Io, line: &mut Vec<u8>, max: usize) -> io::Result<Line> {
    loop {
        let buf = io.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        let (chunk, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if line.len() + chunk.len() > max {
            let room = max.saturating_sub(line.len()).min(chunk.len());
            line.extend_from_slice(&chunk[..room]);
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(chunk);
        io.consume(used);
        if done {
            return Ok(Line::Complete);
        }
    }
}
