//! `chatmail auth`: Dovecot's passdb and userdb, answered over the Dovecot
//! dict protocol (see the `dovecot-dict` crate) from the mailbox store.
//!
//! A passdb lookup of an unknown address of our domain creates the account
//! when the rules of DESIGN.md allow it ("Account creation"): the password
//! file is written once, race-free, and Dovecot then verifies the login
//! against the stored `{SHA512-CRYPT}` hash itself, exactly as for an old
//! account. Keys are described in [`keys`], rules in [`rules`].

#![forbid(unsafe_code)]

pub mod credentials;
pub mod keys;
pub mod probe;
pub mod rules;

use std::future::Future;
use std::io;
use std::sync::Arc;

use chatmail_config::Config;
use chatmail_mailbox::{Created, Mailbox, Store};
use chatmail_net::Listener;
use dovecot_dict::{CommitResult, Handler, LookupResult, ServerOptions, Transaction};

pub use crate::credentials::{fresh_credentials, hash_password};
use crate::keys::{AuthKey, USERDB_PREFIX};
use crate::probe::{ResourceProbe, SystemProbe};

/// The Unix user and group that own every mailbox (Dovecot's `mail_uid`).
pub const VMAIL: &str = "vmail";

/// Serves Dovecot's passdb/userdb lookups on `listener` until `shutdown`.
///
/// # Errors
/// Only when accepting connections fails for good; a failing request is
/// answered with a dict failure and logged.
pub async fn run(
    listener: Listener,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run_with_probe(listener, config, Arc::new(SystemProbe::default()), shutdown).await
}

/// [`run`] with a chosen resource probe, so tests can simulate a loaded machine.
///
/// # Errors
/// As [`run`].
pub async fn run_with_probe(
    listener: Listener,
    config: Arc<Config>,
    probe: Arc<dyn ResourceProbe>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let handler = Arc::new(AuthHandler::new(config, probe));
    dovecot_dict::serve(listener, handler, ServerOptions::default(), shutdown).await
}

/// Answers the dict requests of Dovecot's auth process.
pub struct AuthHandler {
    config: Arc<Config>,
    store: Store,
    probe: Arc<dyn ResourceProbe>,
}

impl AuthHandler {
    /// A handler over the mailbox store that `config` describes.
    pub fn new(config: Arc<Config>, probe: Arc<dyn ResourceProbe>) -> AuthHandler {
        let store = Store::new(config.mailboxes_dir.clone(), config.address_domain());
        AuthHandler {
            config,
            store,
            probe,
        }
    }

    async fn passdb(&self, user: &str, password: &str) -> LookupResult {
        let mailbox = match self.store.mailbox(user) {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(addr = user, "login refused: {e}");
                return LookupResult::NotFound;
            }
        };
        match mailbox.password_hash() {
            Ok(Some(hash)) => return found(&mailbox, Some(&hash)),
            Ok(None) => {}
            Err(e) => return failed(&mailbox, "reading the password file", &e),
        }
        let nocreate = self.config.nocreate_file.exists();
        let localpart = user.rsplit_once('@').map_or(user, |(l, _)| l);
        let admissible = rules::check_request(&self.config, nocreate, localpart, password)
            .and_then(|()| match self.probe.probe(&self.config.mailboxes_dir) {
                Ok(res) => rules::check_resources(&self.config, &res),
                Err(e) => {
                    tracing::error!("cannot measure the machine: {e}");
                    Err(rules::Refusal::Unmeasured)
                }
            });
        if let Err(refusal) = admissible {
            tracing::info!(addr = user, "account not created: {refusal}");
            return LookupResult::NotFound;
        }
        let password = password.to_owned();
        let mb = mailbox.clone();
        // Hashing takes milliseconds: keep it off the reactor threads.
        let created = tokio::task::spawn_blocking(move || {
            let hash = hash_password(&password)?;
            mb.create(&hash).map(|c| (c, hash))
        })
        .await
        .unwrap_or_else(|e| Err(io::Error::other(e)));
        match created {
            Ok((Created::New, hash)) => {
                tracing::info!(addr = user, "account created");
                found(&mailbox, Some(&hash))
            }
            Ok((Created::Existing(hash), _)) => {
                // A concurrent first login won; Dovecot checks our password
                // against the winner's hash.
                tracing::info!(addr = user, "account created by a concurrent login");
                found(&mailbox, Some(&hash))
            }
            Err(e) => failed(&mailbox, "creating the account", &e),
        }
    }

    fn userdb(&self, user: &str) -> LookupResult {
        let Ok(mailbox) = self.store.mailbox(user) else {
            return LookupResult::NotFound;
        };
        match mailbox.password_hash() {
            Ok(Some(_)) => found(&mailbox, None),
            Ok(None) => LookupResult::NotFound,
            Err(e) => failed(&mailbox, "reading the password file", &e),
        }
    }
}

impl Handler for AuthHandler {
    async fn lookup(&self, key: &str, _user: Option<&str>) -> LookupResult {
        match keys::parse(key) {
            Some(AuthKey::Passdb { password, user }) => self.passdb(&user, &password).await,
            Some(AuthKey::Userdb { user }) => self.userdb(&user),
            None => {
                tracing::warn!("lookup of a key outside passdb/ and userdb/ refused");
                LookupResult::NotFound
            }
        }
    }

    async fn iterate(
        &self,
        path: &str,
        _flags: u32,
        _user: Option<&str>,
    ) -> Result<Vec<(String, String)>, String> {
        if path != USERDB_PREFIX {
            return Err(format!("cannot iterate {path}"));
        }
        let addrs = self.store.addresses().map_err(|e| {
            tracing::error!("listing mailboxes: {e}");
            "cannot list mailboxes".to_owned()
        })?;
        Ok(addrs
            .into_iter()
            .map(|a| (format!("{USERDB_PREFIX}{a}"), String::new()))
            .collect())
    }

    async fn commit(&self, tx: Transaction) -> CommitResult {
        tracing::warn!(id = tx.id, "write to the auth dict refused");
        CommitResult::Failed("the auth dict is read-only".into())
    }
}

fn found(mailbox: &Mailbox, hash: Option<&str>) -> LookupResult {
    let mut reply = serde_json::json!({
        "addr": mailbox.addr(),
        "home": mailbox.dir(),
        "uid": VMAIL,
        "gid": VMAIL,
    });
    if let Some(hash) = hash {
        reply["password"] = hash.into();
    }
    LookupResult::Found(reply.to_string())
}

fn failed(mailbox: &Mailbox, doing: &str, e: &io::Error) -> LookupResult {
    tracing::error!(addr = mailbox.addr(), "{doing}: {e}");
    LookupResult::Failed("internal error".into())
}
