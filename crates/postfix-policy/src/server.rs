//! A generic async server for the Postfix policy delegation protocol (see
//! [`crate::proto`] for the wire format and `SMTPD_POLICY_README` for the
//! specification).
//!
//! The server owns everything protocol-shaped (framing, limits, keep-alive,
//! idle connections, bad input); a [`Handler`] owns the policy and only sees
//! complete, well-formed requests.
//!
//! Bad input: a request with a malformed line (no `=`, invalid UTF-8, NUL,
//! a duplicate name, too long, too many lines) is read up to its empty line
//! without keeping more than one line in memory, then answered with
//! `action=DEFER_IF_PERMIT malformed policy request: <reason>`, so Postfix
//! defers the mail at once instead of waiting for a timeout, and the
//! connection stays usable. The README asks a server "in case of trouble" to
//! log and disconnect without a reply; that is what happens when the framing
//! itself is lost: the peer closes in the middle of a request (nothing is
//! answered, since the request may be truncated) or sends more than
//! [`ServerOptions::max_request_bytes`] without an empty line.
//!
//! Replies are buffered and flushed whenever the server is about to wait for
//! input, so a pipelined burst is answered with one write.
//! Line framing comes from [`chatmail_net::lines`].
//!
//! This is the top layer of the crate: it builds on [`crate::proto`], which
//! must not depend on it.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use chatmail_net::lines::{Framing, Io, Line, LineReader, Next, Overlong};
use chatmail_net::{Listener, Stream};
use tokio::io::{AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::watch;

use crate::proto::{Action, Limits, Request, RequestParser};

/// The policy behind a policy socket.
pub trait Handler: Send + Sync + 'static {
    /// Decides one request. There is no error path: a handler that cannot
    /// decide answers [`Action::DeferIfPermit`] and logs why.
    fn check(&self, req: &Request) -> impl Future<Output = Action> + Send;
}

/// Limits and timeouts for [`serve`].
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Connections served at once; further ones wait in the listen queue.
    /// Postfix opens one per `smtpd` process and keeps it for up to
    /// `smtpd_policy_service_max_idle`, so this must cover the sum of the
    /// `smtpd` process limits in master.cf (chatmail's ships 5000 each for
    /// submission and smtps, plus the default 100 for port 25). An idle
    /// connection costs a file descriptor and about 3 KiB.
    pub max_connections: usize,
    /// Line and attribute limits for one request.
    pub limits: Limits,
    /// Bytes read for one request (kept or discarded) before the connection
    /// is dropped as not speaking the protocol.
    pub max_request_bytes: usize,
    /// A connection with no input for this long is closed. Postfix closes
    /// idle policy connections itself after `smtpd_policy_service_max_idle`
    /// (300 s), so this only reaps peers that vanished without a FIN.
    pub idle_timeout: Duration,
}

/// Default [`ServerOptions::idle_timeout`]: Postfix's 300 s, plus a margin
/// so that Postfix, not us, normally closes.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(330);

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_connections: 16384,
            limits: Limits::default(),
            max_request_bytes: 1 << 20,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// Serves the policy protocol on `listener` until `shutdown` resolves.
///
/// On shutdown it stops accepting, lets every connection finish the request
/// it is working on (connections waiting for a request are closed; Postfix
/// reconnects), then returns.
///
/// # Errors
///
/// None at present: accept failures (such as running out of file
/// descriptors) are logged and retried after a short pause, because a
/// policy server that exits makes Postfix defer all mail. The `Result`
/// leaves room for fatal setup errors.
pub async fn serve<H: Handler>(
    listener: Listener,
    handler: Arc<H>,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max_connections = options.max_connections;
    let options = Arc::new(options);
    chatmail_net::serve_connections(
        listener,
        "policy server",
        max_connections,
        shutdown,
        |stream, stop| {
            let conn = Connection {
                handler: Arc::clone(&handler),
                options: Arc::clone(&options),
                stop,
                bad_requests: 0,
            };
            conn.run(stream)
        },
    )
    .await;
    Ok(())
}

struct Connection<H> {
    handler: Arc<H>,
    options: Arc<ServerOptions>,
    stop: watch::Receiver<bool>,
    /// Bad requests on this connection; only the first is a warning.
    bad_requests: u64,
}

impl<H: Handler> Connection<H> {
    async fn run(mut self, stream: Stream) {
        // Small buffers: Postfix may hold thousands of idle connections,
        // and a request is well under a kilobyte. BufReader passes writes
        // through to the BufWriter, so one object does both.
        let mut io: Io = BufReader::with_capacity(2048, BufWriter::with_capacity(512, stream));
        if let Err(e) = self.serve_requests(&mut io).await {
            tracing::debug!(error = %e, "policy connection ended with I/O error");
        }
        if self.bad_requests > 1 {
            tracing::warn!(
                count = self.bad_requests,
                "policy connection had malformed requests"
            );
        }
        let _ = io.shutdown().await;
    }

    async fn serve_requests(&mut self, io: &mut Io) -> io::Result<()> {
        let limits = self.options.limits;
        let mut parser = RequestParser::new(limits);
        let mut line = Vec::new();
        let mut reader = LineReader::new(Framing {
            max_line: limits.max_line,
            overlong: Overlong::Skip,
            max_unit_bytes: Some(self.options.max_request_bytes),
        });
        let mut out = Vec::with_capacity(128);
        loop {
            let idle = self.options.idle_timeout;
            let got = match reader.next_line(io, &mut line, idle, &self.stop).await? {
                Next::Line(got) => got,
                Next::Idle => {
                    if reader.unit_bytes() == 0 {
                        tracing::debug!("idle policy connection closed");
                    } else {
                        self.bad_input("peer stalled in the middle of a request; closing");
                    }
                    return io.flush().await;
                }
                // Interrupts only a wait for input, never a handler.
                Next::Stopped => return io.flush().await,
            };
            match got {
                Line::Eof => {
                    if reader.unit_bytes() > 0 {
                        self.bad_input(
                            "connection closed in the middle of a request; not answered",
                        );
                    }
                    return io.flush().await;
                }
                Line::Flood => {
                    self.bad_input("request too large without an empty line; closing");
                    return io.flush().await;
                }
                Line::TooLong => parser.push_overlong_line(),
                Line::Complete if !line.is_empty() => parser.push_line(&line),
                Line::Complete => {
                    reader.end_unit();
                    let action = match parser.finish() {
                        Ok(req) => self.handler.check(&req).await,
                        Err(e) => {
                            let reason = format!("malformed policy request: {e}");
                            self.bad_input(&reason);
                            Action::defer_if_permit(reason)
                        }
                    };
                    out.clear();
                    action.encode(&mut out);
                    io.write_all(&out).await?;
                }
            }
        }
    }

    fn bad_input(&mut self, what: &str) {
        self.bad_requests += 1;
        if self.bad_requests == 1 {
            tracing::warn!("bad policy request: {what}");
        } else {
            tracing::debug!("bad policy request: {what}");
        }
    }
}
