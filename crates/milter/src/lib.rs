//! `chatmail milter`: a Sendmail milter (protocol v6, spoken through
//! indymilter; see libmilter's documentation and Postfix's MILTER_README)
//! that enforces end-to-end encryption on a chatmail relay, for mail
//! submitted by our users and mail arriving from other servers alike.
//!
//! One instance serves both directions: a connection that carries a SASL
//! login (`{auth_authen}` macro at MAIL FROM) is outgoing, anything else is
//! incoming. The rules live in `chatmail_e2ee`; [`session`] holds the
//! per-connection state, [`callbacks`] the protocol glue and [`budget`] the
//! memory budget that bounds what all messages in progress may hold
//! (docs/milter-memory.md).
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
pub const MESSAGE_TOO_BIG: Reply = Reply {
    code: 552,
    enhanced: "5.3.4",
    text: "Message size exceeds fixed limit",
};

/// Any failure of our own: the client retries later, nothing is accepted
/// unchecked.
pub const TEMPFAIL: Reply = Reply {
    code: 451,
    enhanced: "4.3.0",
    text: "Temporary failure of the encryption check, try again later",
};

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

/// [`run`] with an encryption [`Filter`] and DKIM part made by the caller: a memory budget
/// of its own ([`Filter::with_limits`]) whose gauge it reads, or
/// [`Dkim::disabled`] for tests of the encryption rules alone.
///
/// # Errors
/// As [`run`].
pub async fn serve(
    listener: Listener,
    filter: Arc<Filter>,
    dkim: Arc<Dkim>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = match listener {
        Listener::Unix(l, _) => EitherListener::Unix(Counting(l)),
        Listener::Tcp(l) => EitherListener::Tcp(Counting(l)),
    };
    let milter_config = indymilter::Config {
        max_connections: MAX_CONNECTIONS,
        ..Default::default()
    };
    // Messages waiting for memory would hold up the shutdown for as long
    // as they may wait: closing the budget ends their wait with a
    // temporary failure.
    let budget_filter = Arc::clone(&filter);
    let shutdown = async move {
        shutdown.await;
        budget_filter.budget().close();
    };
    indymilter::run(
        listener,
        callbacks::callbacks(filter, dkim),
        milter_config,
        shutdown,
    )
    .await
}

/// A listener whose connections count in `chatmail_open_connections`
/// (docs/metrics.md) while they are open.
struct Counting<L>(L);

impl<L: indymilter::Listener> indymilter::Listener for Counting<L> {
    type Io = chatmail_net::Counted<L::Io>;

    fn poll_accept(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<Self::Io>> {
        self.0.poll_accept(cx).map_ok(chatmail_net::Counted::new)
    }
}
