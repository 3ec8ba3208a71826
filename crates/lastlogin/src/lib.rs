//! `chatmail lastlogin`: the dict server behind Dovecot's `last_login`
//! plugin (Dovecot dict protocol, see the `dovecot-dict` crate).
//!
//! The plugin sets `shared/last-login/<addr>` to the login's unix time in a
//! transaction. We keep only the day, as the mtime of the user's password
//! file (DESIGN.md, "On disk"), and touch the file only when the day
//! changes, so a busy user costs one `stat` per login.

#![forbid(unsafe_code)]

use std::future::Future;
use std::io;
use std::sync::Arc;

use chatmail_config::Config;
use chatmail_mailbox::Store;
use chatmail_net::Listener;
use dovecot_dict::{CommitResult, Handler, LookupResult, Op, ServerOptions, Transaction};

/// The key prefix the shipped `last_login_key = last-login/%u` produces.
pub const KEY_PREFIX: &str = "shared/last-login/";

/// Serves the `last_login` plugin on `listener` until `shutdown`.
///
/// # Errors
/// Only when accepting connections fails for good.
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

    fn record(&self, key: &str, value: &str) -> Result<(), String> {
        let Some(addr) = key.strip_prefix(KEY_PREFIX) else {
            tracing::warn!("set of a key outside {KEY_PREFIX} ignored");
            return Err("unknown key".into());
        };
        let Ok(ts) = value.trim().parse::<u64>() else {
            tracing::warn!(addr, "last-login value is not a unix time");
            return Err("value is not a unix time".into());
        };
        let mailbox = self.store.mailbox(addr).map_err(|e| {
            tracing::warn!(addr, "last login not recorded: {e}");
            e.to_string()
        })?;
        match mailbox.set_last_login(ts) {
            Ok(true) => {
                tracing::info!(addr, "last-login day updated");
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

impl Handler for LastLoginHandler {
    async fn lookup(&self, _key: &str, _user: Option<&str>) -> LookupResult {
        LookupResult::NotFound
    }

    async fn iterate(
        &self,
        path: &str,
        _flags: u32,
        _user: Option<&str>,
    ) -> Result<Vec<(String, String)>, String> {
        Err(format!("cannot iterate {path}"))
    }

    async fn commit(&self, tx: Transaction) -> CommitResult {
        let mut result = CommitResult::Ok;
        for op in &tx.ops {
            let outcome = match op {
                Op::Set { key, value } => self.record(key, value),
                // Nothing else is ever sent by last_login; refuse rather than
                // pretend it was stored.
                _ => Err("only SET is supported".into()),
            };
            if let Err(e) = outcome {
                result = CommitResult::Failed(e);
            }
        }
        result
    }
}
