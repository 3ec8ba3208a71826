//! `chatmail lastlogin`: the dict server behind Dovecot's `last_login`
//! plugin (Dovecot dict protocol, see the `dovecot-dict` crate).
//!
//! The plugin sets `shared/last-login/<addr>` to the login's unix time in a
//! transaction. We keep only the day, as the mtime of the user's password
//! file (docs/design.md, "On disk"), and touch the file only when the day
//! changes, so a busy user costs one `stat` per login.
//!
//! A transaction is checked whole before anything is written: a key outside
//! `last-login/`, a foreign address or a time that cannot be a login (before
//! 2000, or later than now plus [`MAX_CLOCK_SKEW`]) refuses the commit with
//! `F` and records nothing.
//!
//! Builds on `dovecot-dict`, `mailbox`, `config`, `net`, `metrics`; must not
//! depend on another daemon crate (docs/design.md, "Crates").

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use chatmail_config::Config;
use chatmail_mailbox::{Mailbox, Store};
use chatmail_net::Listener;
use dovecot_dict::{CommitResult, Handler, Op, ServerOptions, Transaction};

/// The key prefix the shipped `last_login_key = last-login/%u` produces.
pub const KEY_PREFIX: &str = "shared/last-login/";

/// 2000-01-01T00:00:00Z: no login recorded by this software is older.
pub const EARLIEST_LOGIN: u64 = 946_684_800;

/// How far a login time may lie in the future: Dovecot's IMAP process and
/// this daemon read the same clock, so only the moments between its reading
/// and ours, plus a margin for a clock being stepped.
pub const MAX_CLOCK_SKEW: u64 = 600;

/// Why a `last-login` value is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadTime {
    /// Not a decimal number of seconds (or beyond `u64`).
    NotANumber,
    /// Before [`EARLIEST_LOGIN`].
    TooOld,
    /// After now plus [`MAX_CLOCK_SKEW`].
    InTheFuture,
}

impl std::fmt::Display for BadTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BadTime::NotANumber => "value is not a unix time",
            BadTime::TooOld => "login time before the year 2000",
            BadTime::InTheFuture => "login time in the future",
        })
    }
}

/// The login time a `last-login` value names, if it can be one at `now`.
///
/// # Errors
/// [`BadTime`] for anything that is not a plausible login time.
pub fn check_login_time(value: &str, now: u64) -> Result<u64, BadTime> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadTime::NotANumber);
    }
    let ts: u64 = value.parse().map_err(|_| BadTime::NotANumber)?;
    if ts < EARLIEST_LOGIN {
        return Err(BadTime::TooOld);
    }
    if ts > now.saturating_add(MAX_CLOCK_SKEW) {
        return Err(BadTime::InTheFuture);
    }
    Ok(ts)
}

/// Serves the `last_login` plugin on `listener` until `shutdown`.
///
/// # Errors
/// None at present: accept failures are logged and retried (see
/// [`chatmail_net::serve_connections`]).
pub async fn run(
    listener: Listener,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let handler = Arc::new(LastLoginHandler::new(&config));
    dovecot_dict::serve(listener, handler, ServerOptions::default(), shutdown).await
}

/// Turns committed `last-login` sets into password-file mtimes.
pub struct LastLoginHandler {
    store: Store,
}

impl LastLoginHandler {
    /// A handler over the mailbox store that `config` describes.
    pub fn new(config: &Config) -> LastLoginHandler {
        LastLoginHandler {
            store: Store::new(config.mailboxes_dir.clone(), config.address_domain()),
        }
    }

    /// Checks one set without touching the disk: the mailbox and time to record.
    fn check(&self, key: &str, value: &str, now: u64) -> Result<(Mailbox, u64), String> {
        let Some(addr) = key.strip_prefix(KEY_PREFIX) else {
            tracing::warn!("set of a key outside {KEY_PREFIX} refused");
            return Err("unknown key".into());
        };
        let mailbox = self.store.mailbox(addr).map_err(|e| {
            tracing::warn!(addr, "last login not recorded: {e}");
            e.to_string()
        })?;
        let ts = check_login_time(value, now).map_err(|e| {
            tracing::warn!(addr, "last login not recorded: {e}");
            e.to_string()
        })?;
        Ok((mailbox, ts))
    }

    fn record(mailbox: &Mailbox, ts: u64) -> Result<(), String> {
        let addr = mailbox.addr();
        match mailbox.set_last_login(ts) {
            Ok(true) => {
                tracing::info!(addr, "last-login day updated");
                chatmail_metrics::lastlogin().updated();
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => {
                tracing::error!(addr, "recording last login: {e}");
                Err("internal error".into())
            }
        }
    }
}

// Lookups find nothing and iterations are refused (the trait's defaults):
// last_login only writes.
impl Handler for LastLoginHandler {
    async fn commit(&self, tx: Transaction) -> CommitResult {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // All or nothing: every write is checked before the first is done.
        let mut checked = Vec::with_capacity(tx.ops.len());
        for op in &tx.ops {
            let outcome = match op {
                Op::Set { key, value } => self.check(key, value, now),
                // Nothing else is ever sent by last_login; refuse rather than
                // pretend it was stored.
                _ => {
                    tracing::warn!("write other than SET refused");
                    Err("only SET is supported".into())
                }
            };
            match outcome {
                Ok(c) => checked.push(c),
                Err(e) => return CommitResult::Failed(e),
            }
        }
        let mut result = CommitResult::Ok;
        for (mailbox, ts) in &checked {
            if let Err(e) = Self::record(mailbox, *ts) {
                result = CommitResult::Failed(e);
            }
        }
        chatmail_metrics::lastlogin().committed(matches!(result, CommitResult::Ok));
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_times() {
        let now = 1_800_000_000;
        let cases: &[(&str, Result<u64, BadTime>)] = &[
            ("1800000000", Ok(now)),
            (" 1800000000\n", Ok(now)),
            ("946684800", Ok(EARLIEST_LOGIN)),
            ("1800000600", Ok(now + MAX_CLOCK_SKEW)),
            ("1800000601", Err(BadTime::InTheFuture)),
            ("946684799", Err(BadTime::TooOld)),
            ("0", Err(BadTime::TooOld)),
            // the year 2446
            ("15120000000", Err(BadTime::InTheFuture)),
            ("18446744073709551615", Err(BadTime::InTheFuture)),
            ("18446744073709551616", Err(BadTime::NotANumber)),
            ("-1", Err(BadTime::NotANumber)),
            ("+1800000000", Err(BadTime::NotANumber)),
            ("1.8e9", Err(BadTime::NotANumber)),
            ("", Err(BadTime::NotANumber)),
            ("yesterday", Err(BadTime::NotANumber)),
        ];
        for (value, want) in cases {
            assert_eq!(&check_login_time(value, now), want, "{value:?}");
        }
        assert_eq!(
            check_login_time("18446744073709551615", u64::MAX),
            Ok(u64::MAX)
        );
    }
}
