//! `chatmail policy`: a Postfix policy service (`check_policy_service`,
//! protocol in the `postfix-policy` crate, spec in Postfix's
//! `SMTPD_POLICY_README`) enforcing two rules of docs/design.md:
//!
//! - **Per-user send rate limit** ("Outgoing mail"): GCRA with
//!   `max_user_send_per_minute` and burst `max_user_send_burst_size`, keyed
//!   by the SASL login, over the limit `450 4.7.1`. It is counted on the
//!   `protocol_state=DATA` request, which Postfix sends exactly once per
//!   message (for BDAT too), so the shipped Postfix config calls this
//!   service from `smtpd_data_restrictions`. Counting RCPT requests by their
//!   `instance` would also work, but needs per-connection memory of recent
//!   instances that can overflow or be evicted (then a message counts
//!   twice), and it counts messages whose recipients were all refused; at
//!   DATA neither can happen. Unauthenticated (port 25) sessions have no
//!   SASL login and are not limited here.
//! - **Unknown local recipients** ("Failure behaviour": no bounce is ever
//!   generated for them): at `protocol_state=RCPT`, an address in our domain
//!   without an account gets `550 5.1.1`, so the sending server, not us,
//!   reports the failure. See [`rules::classify_recipient`] for how
//!   `Recipient+ext@Domain` is mapped to a mailbox.
//!
//! Everything else is `DUNNO`. A check that fails on our side is answered
//! `DEFER_IF_PERMIT` (logged), never `DUNNO`, so mail is deferred rather than
//! accepted unchecked. Each decision other than `DUNNO` is logged once at
//! info level (or error, for internal errors); `DUNNO` only at debug.
//!
//! Builds on `postfix-policy`, `mailbox`, `config`, `net`, `metrics`; must not
//! depend on another daemon crate (docs/design.md, "Crates").

pub mod rules;

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use chatmail_config::Config;
use chatmail_mailbox::Store;
use chatmail_net::Listener;
pub use governor::clock::{Clock, DefaultClock, FakeRelativeClock};
use postfix_policy::{Action, Handler, ProtocolState, Request, ServerOptions};

use crate::rules::{SendLimiter, Verdict};

/// How often users with a full budget are forgotten. With the defaults a
/// budget refills in 10 s, so memory follows the senders of the last ~70 s.
pub const PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Serves Postfix's policy requests on `listener` until `shutdown`.
///
/// # Errors
///
/// None at present: accept failures are logged and retried (see
/// [`postfix_policy::serve`]); a failing check is answered
/// `DEFER_IF_PERMIT` and logged.
pub async fn run(
    listener: Listener,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run_with_clock(listener, config, DefaultClock::default(), shutdown).await
}

/// [`run`] with the rate limiter on `clock`, so tests can move time
/// (`FakeRelativeClock`).
///
/// # Errors
///
/// As [`run`].
pub async fn run_with_clock<C>(
    listener: Listener,
    config: Arc<Config>,
    clock: C,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()>
where
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    let handler = Arc::new(PolicyHandler::new(&config, clock));
    let purger = Arc::clone(&handler);
    let purge = async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        loop {
            tick.tick().await;
            purger.limiter.purge();
        }
    };
    tokio::select! {
        r = postfix_policy::serve(listener, handler, ServerOptions::default(), shutdown) => r,
        () = purge => Ok(()),
    }
}

/// Answers Postfix's policy requests.
pub struct PolicyHandler<C: Clock> {
    store: Store,
    limiter: SendLimiter<C>,
}

impl<C: Clock> PolicyHandler<C> {
    /// A handler over the mailbox store and limits of `config`.
    pub fn new(config: &Config, clock: C) -> PolicyHandler<C> {
        if config.max_user_send_per_minute == 0 {
            tracing::warn!("max_user_send_per_minute = 0: send rate limit disabled");
        }
        PolicyHandler {
            store: Store::from_config(config),
            limiter: SendLimiter::new(
                config.max_user_send_per_minute,
                config.max_user_send_burst_size,
                clock,
            ),
        }
    }

    /// The rate limiter (for purging and inspection).
    pub fn limiter(&self) -> &SendLimiter<C> {
        &self.limiter
    }

    async fn check_rcpt(&self, req: &Request) -> Action {
        let Some(recipient) = req.recipient() else {
            return Action::Dunno;
        };
        let store = self.store.clone();
        let rcpt = recipient.to_owned();
        let login = req.sasl_username().map(str::to_owned);
        // A stat and a tiny read, but on a disk that may stall: keep it off
        // the reactor threads.
        let verdict = tokio::task::spawn_blocking(move || {
            if let Some(login) = login
                && rules::sender_is_disabled(&store, &login)?
            {
                return Ok(None);
            }
            rules::check_recipient(&store, &rcpt).map(Some)
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        let verdict = match verdict {
            Ok(None) => return rules::sender_disabled(),
            Ok(Some(v)) => Ok(v),
            Err(e) => Err(e),
        };
        match verdict {
            Ok(Verdict::Foreign | Verdict::Exists) => Action::Dunno,
            Ok(Verdict::Disabled) => rules::mailbox_disabled(),
            Ok(Verdict::NoSuchUser) => rules::no_such_user(),
            Ok(Verdict::Invalid(e)) => {
                tracing::debug!(recipient, "not a possible account: {e}");
                rules::no_such_user()
            }
            Err(e) => {
                tracing::error!(recipient, "checking the recipient's account: {e}");
                rules::internal_error()
            }
        }
    }

    fn check_data(&self, req: &Request) -> Action {
        match req.sasl_username() {
            Some(user) if !self.limiter.allow(user) => {
                chatmail_metrics::policy().rate_limited();
                rules::rate_limited(self.limiter.per_minute())
            }
            _ => Action::Dunno,
        }
    }
}

impl<C> Handler for PolicyHandler<C>
where
    C: Clock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    async fn check(&self, req: &Request) -> Action {
        let state = req.protocol_state();
        let action = match state {
            Some(ProtocolState::Rcpt) => self.check_rcpt(req).await,
            Some(ProtocolState::Data) => self.check_data(req),
            _ => Action::Dunno,
        };
        chatmail_metrics::policy().answered(state, &action);
        let field = |v: Option<&str>| v.unwrap_or("").to_owned();
        // As Postfix wrote it (`RCPT`), not as the enum's debug form.
        let state_name = field(req.get("protocol_state"));
        if action.is_dunno() {
            tracing::debug!(
                state = state_name,
                sender = field(req.sender()),
                recipient = field(req.recipient()),
                "DUNNO"
            );
        } else {
            tracing::info!(
                state = state_name,
                sasl_username = field(req.sasl_username()),
                sender = field(req.sender()),
                recipient = field(req.recipient()),
                instance = field(req.instance()),
                queue_id = field(req.queue_id()),
                client = field(req.client_address()),
                "{action}"
            );
        }
        action
    }
}
