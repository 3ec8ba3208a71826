//! A generic async server for the Dovecot dict protocol, major versions 3
//! (Dovecot 2.3) and 4 (Dovecot 2.4) (see [`crate::proto`] for the wire
//! format and the Dovecot source files it comes from).
//!
//! The server owns everything protocol-shaped (framing, per-connection
//! HELLO state and transactions, replies, bad input); a [`Handler`] owns
//! the policy and only sees complete lookups, iterations and commits.
//!
//! Requests on one connection are answered strictly in order, which is what
//! Dovecot's client expects when replies carry no async id. Replies are
//! buffered and flushed only when the server is about to wait for input,
//! so a pipelined burst is answered with one write.
//!
//! Bounds: the writes held in open transactions are limited per transaction,
//! per connection and for the whole server ([`ServerOptions`]); a write past
//! a limit is answered `F<id>` and the connection is closed, so Dovecot sees a
//! failed transaction. A transaction with a write that could not be parsed
//! is refused as a whole at COMMIT (`F<id>`): Dovecot expects a commit to
//! apply all of its writes or none. A connection with no request for
//! [`ServerOptions::idle_timeout`] is closed. Line framing comes from
//! [`chatmail_net::lines`].
//!
//! This is the top layer of the crate: it builds on [`crate::proto`] and
//! [`crate::types`], neither of which may depend on it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chatmail_net::lines::{self, Framing, Io, Line, LineReader, Next, Overlong};
use chatmail_net::{Listener, Stream};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::watch;

use crate::proto::{
    self, ITERATE_FLAG_NO_VALUE, PROTOCOL_MAJOR, PROTOCOL_MAJOR_24, ParseError, Reply, Request,
};
use crate::types::{CommitResult, LookupResult, Op, Transaction, key_log_prefix};

/// The policy behind a dict socket.
pub trait Handler: Send + Sync + 'static {
    /// Looks up `key` (with its `shared/` or `priv/` prefix); `user` is the
    /// command's user, else the one from HELLO. The default finds nothing,
    /// so write-only handlers need not implement it.
    fn lookup(&self, key: &str, user: Option<&str>) -> impl Future<Output = LookupResult> + Send {
        let _ = (key, user);
        async { LookupResult::NotFound }
    }

    /// Lists `(key, value)` pairs under `path`. The server applies the
    /// client's row limit and the NO_VALUE flag; `flags` is passed for
    /// RECURSE/EXACT_KEY. The default refuses with [`cannot_iterate`], so
    /// handlers without iteration need not implement it.
    fn iterate(
        &self,
        path: &str,
        flags: u32,
        user: Option<&str>,
    ) -> impl Future<Output = Result<Vec<(String, String)>, String>> + Send {
        let _ = (flags, user);
        let refused = Err(cannot_iterate(path));
        async { refused }
    }

    /// Applies a whole transaction. Called once per COMMIT; a transaction
    /// that is rolled back or whose connection closes never gets here.
    fn commit(&self, tx: Transaction) -> impl Future<Output = CommitResult> + Send;
}

/// The error of an iteration under `path` that a handler does not serve
/// (the text of the `F` reply).
pub fn cannot_iterate(path: &str) -> String {
    format!("cannot iterate {path}")
}

/// Limits for [`serve`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once; further ones wait in the listen queue.
    pub max_connections: usize,
    /// Longest accepted request line without its `\n`; a longer one closes
    /// the connection.
    pub max_line: usize,
    /// A connection with no complete request for this long is closed.
    pub idle_timeout: Duration,
    /// Writes (`S`, `U`, `A`) one transaction may hold.
    pub max_transaction_ops: usize,
    /// Bytes of keys and values one transaction may hold.
    pub max_transaction_bytes: usize,
    /// Writes held in all open transactions of one connection.
    pub max_connection_ops: usize,
    /// Bytes held in all open transactions of one connection.
    pub max_connection_bytes: usize,
    /// Bytes held in open transactions of all connections together.
    pub max_total_bytes: usize,
}

/// Default connection cap of a dict server; the systemd units allow this
/// plus [`chatmail_net::FD_RESERVE`] file descriptors.
pub const MAX_CONNECTIONS: usize = 1024;

/// Default [`ServerOptions::idle_timeout`]. Dovecot 2.3's dict client
/// (`src/lib-dict/dict-client.c`) closes an idle connection as soon as it is
/// back in its ioloop (`DICT_CLIENT_DEFAULT_TIMEOUT_MSECS` is 0, and our
/// `proxy:` URIs set no `idle_msecs`), and gives up on a request after 30 s
/// (`DICT_CLIENT_REQUEST_TIMEOUT_MSECS`). Twice that is far beyond any wait
/// of a working client.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for ServerOptions {
    fn default() -> Self {
        // Real transactions are one or a few writes of at most a few KiB
        // (a login time, a push token of at most 4 KiB); the limits are
        // far above that and keep a hostile client's cost small.
        ServerOptions {
            max_connections: MAX_CONNECTIONS,
            max_line: proto::MAX_LINE_LENGTH,
            idle_timeout: IDLE_TIMEOUT,
            max_transaction_ops: 1000,
            max_transaction_bytes: 1 << 20,
            max_connection_ops: 4000,
            max_connection_bytes: 4 << 20,
            max_total_bytes: 64 << 20,
        }
    }
}

/// Per-op bookkeeping cost added to the key and value lengths, so that a
/// flood of empty writes is bounded by bytes too.
const OP_OVERHEAD: usize = 64;

/// The bytes held in open transactions by all connections of one server.
#[derive(Debug)]
struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    fn try_take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::AcqRel);
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
    let max_connections = options.max_connections;
    let budget = Arc::new(Budget {
        used: AtomicUsize::new(0),
        limit: options.max_total_bytes,
    });
    let options = Arc::new(options);
    chatmail_net::serve_connections(
        listener,
        "dict server",
        max_connections,
        shutdown,
        |stream, stop| {
            Connection::new(
                Arc::clone(&handler),
                Arc::clone(&options),
                Arc::clone(&budget),
                stop,
            )
            .run(stream)
        },
    )
    .await;
    Ok(())
}

/// An open transaction and what it holds.
struct OpenTx {
    tx: Transaction,
    bytes: usize,
    /// Why the transaction will be refused at COMMIT; its writes are
    /// dropped as soon as this is set.
    refused: Option<&'static str>,
}

/// Why a write closes the connection.
#[derive(Debug, Clone, Copy)]
enum Overflow {
    TransactionOps,
    TransactionBytes,
    ConnectionOps,
    ConnectionBytes,
    Server,
}

impl Overflow {
    fn reason(self) -> &'static str {
        match self {
            Overflow::TransactionOps => "too many writes in one transaction",
            Overflow::TransactionBytes => "transaction too large",
            Overflow::ConnectionOps => "too many writes in open transactions",
            Overflow::ConnectionBytes => "open transactions too large",
            Overflow::Server => "server out of transaction memory",
        }
    }
}

/// Per-connection protocol state.
struct Connection<H> {
    handler: Arc<H>,
    options: Arc<ServerOptions>,
    budget: Arc<Budget>,
    stop: watch::Receiver<bool>,
    hello_seen: bool,
    /// HELLO's user, used when a command leaves its user field empty.
    default_user: Option<String>,
    transactions: HashMap<u32, OpenTx>,
    /// Writes and bytes held in `transactions` (bytes also in `budget`).
    held_ops: usize,
    held_bytes: usize,
    /// Set by a write past a limit: answer it and close.
    overflow: Option<(u32, Overflow)>,
    /// Bad lines on this connection; only the first is logged as a warning.
    bad_lines: u64,
    out: Vec<u8>,
}

impl<H> Drop for Connection<H> {
    fn drop(&mut self) {
        self.budget.give_back(self.held_bytes);
    }
}

/// Buffers larger than this are shrunk once the request that grew them is
/// done, so an idle connection holds little memory.
const KEEP_BUFFER: usize = 4096;

impl<H: Handler> Connection<H> {
    fn new(
        handler: Arc<H>,
        options: Arc<ServerOptions>,
        budget: Arc<Budget>,
        stop: watch::Receiver<bool>,
    ) -> Self {
        Connection {
            handler,
            options,
            budget,
            stop,
            hello_seen: false,
            default_user: None,
            transactions: HashMap::new(),
            held_ops: 0,
            held_bytes: 0,
            overflow: None,
            bad_lines: 0,
            out: Vec::with_capacity(256),
        }
    }

    /// Forgets a transaction, returning what it held.
    fn take_tx(&mut self, id: u32) -> Option<OpenTx> {
        let open = self.transactions.remove(&id)?;
        self.release(open.tx.ops.len(), open.bytes);
        Some(open)
    }

    fn release(&mut self, ops: usize, bytes: usize) {
        self.held_ops -= ops;
        self.held_bytes -= bytes;
        self.budget.give_back(bytes);
    }

    /// Forgets every open transaction and what it held.
    fn drop_transactions(&mut self) {
        let ids: Vec<u32> = self.transactions.keys().copied().collect();
        for id in ids {
            self.take_tx(id);
        }
        self.transactions = HashMap::new();
    }

    /// Marks transaction `id` refused and drops its writes.
    fn refuse_tx(&mut self, id: u32, why: &'static str) {
        let Some(open) = self.transactions.get_mut(&id) else {
            return;
        };
        let (ops, bytes) = (open.tx.ops.len(), open.bytes);
        open.refused.get_or_insert(why);
        open.tx.ops = Vec::new();
        open.bytes = 0;
        self.release(ops, bytes);
    }

    async fn run(mut self, stream: Stream) {
        // BufReader passes writes through to the BufWriter, so one object
        // gives buffered reads and buffered writes without splitting.
        let mut io: Io = BufReader::new(BufWriter::new(stream));
        let mut line = Vec::new();
        if let Err(e) = self.serve_lines(&mut io, &mut line).await {
            tracing::debug!(error = %e, "dict connection ended with I/O error");
        }
        drop(line);
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
        let mut reader = LineReader::new(Framing {
            max_line: self.options.max_line,
            overlong: Overlong::Stop,
            max_unit_bytes: None,
        });
        loop {
            line.clear();
            if line.capacity() > KEEP_BUFFER {
                line.shrink_to(KEEP_BUFFER);
            }
            if self.out.capacity() > KEEP_BUFFER {
                self.out.shrink_to(KEEP_BUFFER);
            }
            let idle = self.options.idle_timeout;
            let got = match reader.next_line(io, line, idle, &self.stop).await? {
                Next::Line(got) => got,
                Next::Idle => {
                    if line.is_empty() {
                        tracing::debug!("idle dict connection closed");
                    } else {
                        self.bad_input(
                            line.first().copied(),
                            "request line not finished in time; closing",
                        );
                    }
                    return io.flush().await;
                }
                // Only interrupts a connection waiting for its next request.
                Next::Stopped => return io.flush().await,
            };
            match got {
                Line::Eof => {
                    if !line.is_empty() {
                        self.bad_input(line.first().copied(), "connection closed mid-line");
                    }
                    return io.flush().await;
                }
                // No unit limit is set, so no flood; were there one, the
                // connection would be as lost as with an overlong line.
                Line::TooLong | Line::Flood => {
                    let cmd = line.first().copied();
                    self.bad_input(cmd, "request line too long; closing connection");
                    if cmd.is_some_and(proto::command_expects_reply) {
                        self.reply(Reply::Failed("request line too long".to_owned()));
                        io.write_all(&self.out).await?;
                    }
                    return lines::close_with_unread_input(io).await;
                }
                Line::Complete => {
                    let keep = self.handle_line(line).await;
                    if let Some((id, overflow)) = self.overflow {
                        // The client sends writes without waiting, so the
                        // failure answers whatever it waits for next; then
                        // the close fails the rest of its transaction.
                        self.bad_input(
                            line.first().copied(),
                            &format!("{}; closing connection", overflow.reason()),
                        );
                        self.drop_transactions();
                        self.out.clear();
                        self.reply(Reply::Commit {
                            id,
                            result: CommitResult::Failed(overflow.reason().to_owned()),
                            async_commit: false,
                        });
                        io.write_all(&self.out).await?;
                        return lines::close_with_unread_input(io).await;
                    }
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
                if e.command().is_some_and(proto::command_is_write) {
                    // The write is lost, so its transaction must not commit.
                    match proto::transaction_id_prefix(line) {
                        Some(id) => self.refuse_tx(id, "a write was refused"),
                        None => {
                            let ids: Vec<u32> = self.transactions.keys().copied().collect();
                            for id in ids {
                                self.refuse_tx(id, "a write was refused");
                            }
                        }
                    }
                }
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
                if major != PROTOCOL_MAJOR && major != PROTOCOL_MAJOR_24 {
                    // Like Dovecot's server: another major version means we
                    // would misread everything that follows.
                    tracing::warn!(
                        major,
                        minor,
                        "dict client speaks protocol major {major}, need {PROTOCOL_MAJOR} or {PROTOCOL_MAJOR_24}; closing"
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
                self.reply(Reply::Lookup(r));
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
                        OpenTx {
                            tx: Transaction {
                                id,
                                user,
                                ops: Vec::new(),
                            },
                            bytes: 0,
                            refused: None,
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
                if self.take_tx(id).is_none() {
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
        let (key, value_len) = match &op {
            Op::Set { key, value } => (key, value.len()),
            Op::Unset { key } | Op::AtomicInc { key, .. } => (key, 0),
        };
        let bytes = key.len() + value_len + OP_OVERHEAD;
        let opts = Arc::clone(&self.options);
        // Dovecot's client sends writes without waiting for an answer, so
        // a write to an unknown id has nobody to tell; COMMIT will fail.
        let Some(open) = self.transactions.get_mut(&id) else {
            let what = format!(
                "write to unknown transaction id (key {})",
                key_log_prefix(key)
            );
            self.bad_input(Some(cmd), &what);
            return;
        };
        if open.refused.is_some() {
            return;
        }
        let overflow = if open.tx.ops.len() >= opts.max_transaction_ops {
            Some(Overflow::TransactionOps)
        } else if open.bytes + bytes > opts.max_transaction_bytes {
            Some(Overflow::TransactionBytes)
        } else if self.held_ops >= opts.max_connection_ops {
            Some(Overflow::ConnectionOps)
        } else if self.held_bytes + bytes > opts.max_connection_bytes {
            Some(Overflow::ConnectionBytes)
        } else if !self.budget.try_take(bytes) {
            Some(Overflow::Server)
        } else {
            None
        };
        if let Some(o) = overflow {
            self.refuse_tx(id, o.reason());
            self.overflow = Some((id, o));
            return;
        }
        open.tx.ops.push(op);
        open.bytes += bytes;
        self.held_ops += 1;
        self.held_bytes += bytes;
    }

    async fn commit(&mut self, id: u32, async_commit: bool) {
        let result = match self.take_tx(id) {
            Some(OpenTx {
                refused: Some(why), ..
            }) => {
                tracing::warn!(id, "transaction refused at commit: {why}");
                CommitResult::Failed(why.to_owned())
            }
            Some(open) => self.handler.commit(open.tx).await,
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
