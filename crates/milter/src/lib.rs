//! `chatmail milter`: a Sendmail milter (protocol v6, spoken through
//! indymilter; see libmilter's documentation and Postfix's MILTER_README)
//! that enforces end-to-end encryption on a chatmail relay, for mail
//! submitted by our users and mail arriving from other servers alike.
//!
//! One instance serves both directions: a connection that carries a SASL
//! login (`{auth_authen}` macro at MAIL FROM) is outgoing, anything else is
//! incoming. The rules live in `chatmail_e2ee`; [`session`] holds the
//! per-connection state and [`callbacks`] the protocol glue.
//!
//! Postfix settings this daemon expects (DESIGN.md, "Failure behaviour"):
//!
//! ```text
//! smtpd_milters = unix:chatmail/milter.socket   # queue-dir relative (chroot-safe); every smtpd
//! milter_protocol = 6
//! milter_default_action = tempfail
//! milter_mail_macros = i {auth_type} {auth_authen} ...     # Postfix default; we also request it
//! milter_end_of_data_macros = i                            # Postfix default
//! ```

#![forbid(unsafe_code)]

pub mod callbacks;
pub mod session;

use std::future::Future;
use std::io;
use std::sync::Arc;

use chatmail_config::Config;
use chatmail_e2ee::Reply;
use chatmail_net::Listener;
use indymilter::EitherListener;

pub use crate::session::Policy;

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
    let policy = Arc::new(Policy::new(config));
    let listener = match listener {
        Listener::Unix(l, _) => EitherListener::Unix(l),
        Listener::Tcp(l) => EitherListener::Tcp(l),
    };
    let milter_config = indymilter::Config {
        max_connections: MAX_CONNECTIONS,
        ..Default::default()
    };
    indymilter::run(
        listener,
        callbacks::callbacks(policy),
        milter_config,
        shutdown,
    )
    .await
}
