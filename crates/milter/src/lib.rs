//! `chatmail milter`: a Sendmail milter (protocol v6, spoken through
//! indymilter; see libmilter's documentation and Postfix's MILTER_README)
//! that enforces end-to-end encryption on a chatmail relay, for mail
//! submitted by our users and mail arriving from other servers alike.
//!
//! One instance serves both directions: a connection that carries a SASL
//! login (`{auth_authen}` macro at MAIL FROM) is outgoing, anything else is
//! incoming. The rules live in `chatmail_e2ee`; [`session`] holds the
//! per-connection state, [`callbacks`] the protocol glue, [`budget`] the
//! memory budget that bounds what all messages in progress may hold
//! (docs/milter-memory.md) and [`peer`] the watch on each connection that
//! stops a check when Postfix has gone away.
//!
//! Postfix settings this daemon expects (docs/design.md, "Failure behaviour"):
//!
//! ```text
//! smtpd_milters = unix:chatmail/milter.socket   # queue-dir relative (chroot-safe); every smtpd
//! milter_protocol = 6
//! milter_default_action = tempfail
//! milter_mail_macros = i {auth_type} {auth_authen} ...     # Postfix default; we also request it
//! milter_end_of_data_macros = i                            # Postfix default
//! ```
//!
//! Builds on `e2ee` (the rules), `dkim`, `mailbox`, `config`, `net`, `metrics`;
//! must not depend on another daemon crate, `setup` or `sandbox`
//! (docs/design.md, "Crates").

pub mod budget;
pub mod callbacks;
pub mod dkim;
pub mod peer;
pub mod session;

use std::future::Future;
use std::io;
use std::sync::Arc;

use chatmail_config::Config;
use chatmail_e2ee::Reply;
use chatmail_net::Listener;
use indymilter::EitherListener;

pub use crate::dkim::Dkim;
pub use crate::session::Filter;

/// A message larger than `max_message_size`: the answer Postfix itself
/// gives above `message_size_limit`, permanent because resending cannot
/// make the message smaller.
pub const MESSAGE_TOO_BIG: Reply = Reply::new(552, "5.3.4", "Message size exceeds fixed limit");

/// Any failure of our own: the client retries later, nothing is accepted
/// unchecked.
pub const TEMPFAIL: Reply = Reply::new(
    451,
    "4.3.0",
    "Temporary failure of the encryption check, try again later",
);

/// How many Postfix connections we serve at once. Each smtpd process holds
/// one; above this, connections wait and Postfix's milter timeouts turn
/// the wait into a temporary failure.
const MAX_CONNECTIONS: usize = 1024;

/// Serves the milter protocol on `listener` until `shutdown` completes.
///
/// # Errors
/// Only when accepting connections fails for good; a failing connection
/// is logged and closed.
pub async fn run(
    listener: Listener,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let dkim = Arc::new(Dkim::from_config(&config));
    serve(listener, Arc::new(Filter::new(config)), dkim, shutdown).await
}

/// The stream of one accepted Postfix connection: counted in
/// `chatmail_open_connections` (docs/metrics.md) while it is open, and
/// watched ([`peer`]).
pub type Stream = peer::Watched<
    chatmail_net::Counted<indymilter::EitherStream<tokio::net::TcpStream, tokio::net::UnixStream>>,
>;

/// A callback's handle on its connection (see [`peer`]).
pub type Peer = peer::Peer<
    chatmail_net::Counted<indymilter::EitherStream<tokio::net::TcpStream, tokio::net::UnixStream>>,
>;

/// [`run`] with an encryption [`Filter`] and DKIM part made by the caller: a memory budget
/// of its own ([`Filter::with_limits`]) whose gauge it reads, or
/// [`Dkim::disabled`] for tests of the encryption rules alone.
///
/// Each connection is served by an indymilter instance of its own, with
/// callbacks that hold that connection's [`Peer`] handle: indymilter gives
/// a callback no way to tell which connection it serves.
///
/// # Errors
/// As [`run`].
pub async fn serve(
    listener: Listener,
    filter: Arc<Filter>,
    dkim: Arc<Dkim>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let mut listener = match listener {
        Listener::Unix(l, _) => EitherListener::Unix(l),
        Listener::Tcp(l) => EitherListener::Tcp(l),
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut sessions = tokio::task::JoinSet::new();
    let accepting = async {
        loop {
            // Never closed: acquiring fails only if it were.
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .map_err(io::Error::other)?;
            let io = indymilter::Listener::accept(&mut listener).await?;
            while sessions.try_join_next().is_some() {}
            let (stream, peer) = peer::watch(chatmail_net::Counted::new(io));
            let callbacks =
                callbacks::callbacks(Arc::clone(&filter), Arc::clone(&dkim), peer.clone());
            let mut stopping = stopping.clone();
            sessions.spawn(async move {
                // The instance ends with its one session, or at shutdown:
                // then the session ends at its next read, so a message
                // being decided gets its answer first.
                let end = async move {
                    tokio::select! {
                        () = peer.finished() => {}
                        _ = stopping.wait_for(|s| *s) => {}
                    }
                };
                let config = indymilter::Config {
                    max_connections: 1,
                    ..Default::default()
                };
                if let Err(e) = indymilter::run(One(Some(stream)), callbacks, config, end).await {
                    tracing::warn!("milter connection: {e}");
                }
                drop(permit);
            });
        }
    };
    let result = tokio::select! {
        r = accepting => r,
        () = shutdown => Ok(()),
    };
    // Messages waiting for memory would hold up the shutdown for as long
    // as they may wait: closing the budget ends their wait with a
    // temporary failure.
    filter.budget().close();
    drop(listener);
    let _ = stop.send(true);
    while sessions.join_next().await.is_some() {}
    result
}

/// A listener that yields one stream, already accepted.
struct One(Option<Stream>);

impl indymilter::Listener for One {
    type Io = Stream;

    fn poll_accept(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<Stream>> {
        match self.0.take() {
            Some(s) => std::task::Poll::Ready(Ok(s)),
            // Its instance ends with the session; nothing more comes.
            None => std::task::Poll::Pending,
        }
    }
}
