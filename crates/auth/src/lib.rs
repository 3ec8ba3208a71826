//! `chatmail auth`: Dovecot's passdb and userdb, answered over the Dovecot
//! dict protocol (see the `dovecot-dict` crate) from the mailbox store.
//!
//! A passdb lookup of an unknown address of our domain creates the account
//! when the rules of docs/design.md allow it ("Account creation"): the password
//! file is written once, race-free, and Dovecot then verifies the login
//! against the stored `{SHA512-CRYPT}` hash itself, exactly as for an old
//! account. Keys are described in [`keys`], the rules in
//! [`chatmail_accounts::rules`].
//!
//! Every lookup reflects the `password` file on disk as it is at that moment; it is read
//! through a [`PasswordCache`], so a lookup of a known account costs one `stat` rather than
//! an open, read and close.
//!
//! Owns the passdb/userdb answers; the account rules are `chatmail-accounts`'.
//! Builds on `dovecot-dict`, `accounts`, `mailbox`, `config`, `net`, `metrics`;
//! must not depend on another daemon crate, `setup` or `sandbox`
//! (docs/design.md, "Crates").

pub mod keys;

use std::future::Future;
use std::io;
use std::sync::Arc;

use chatmail_config::Config;
use chatmail_mailbox::{Created, Mailbox, PasswordCache, Store};
use chatmail_net::Listener;
use dovecot_dict::{CommitResult, Handler, LookupResult, ServerOptions, Transaction};

use chatmail_accounts::meter::{ResourceMeter, SystemMeter};
use chatmail_accounts::{VMAIL, hash_password, rules};

use crate::keys::{AuthKey, USERDB_PREFIX};

/// Serves Dovecot's passdb/userdb lookups on `listener` until `shutdown`.
///
/// # Errors
/// None at present: accept failures are logged and retried (see
/// [`chatmail_net::serve_connections`]); a failing request is answered
/// with a dict failure and logged.
pub async fn run(
    listener: Listener,
    config: Arc<Config>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    run_with_meter(listener, config, Arc::new(SystemMeter::default()), shutdown).await
}

/// [`run`] with a chosen resource meter, so tests can simulate a loaded machine.
///
/// # Errors
/// As [`run`].
pub async fn run_with_meter(
    listener: Listener,
    config: Arc<Config>,
    meter: Arc<dyn ResourceMeter>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let handler = Arc::new(AuthHandler::new(config, meter));
    dovecot_dict::serve(listener, handler, ServerOptions::default(), shutdown).await
}

/// Answers the dict requests of Dovecot's auth process.
pub struct AuthHandler {
    config: Arc<Config>,
    store: Store,
    /// Every lookup reads a `password` file; the cache turns that into one `stat`.
    passwords: PasswordCache,
    meter: Arc<dyn ResourceMeter>,
}

impl AuthHandler {
    /// A handler over the mailbox store that `config` describes.
    pub fn new(config: Arc<Config>, meter: Arc<dyn ResourceMeter>) -> AuthHandler {
        let store = Store::new(config.mailboxes_dir.clone(), config.address_domain());
        AuthHandler {
            config,
            store,
            passwords: PasswordCache::default(),
            meter,
        }
    }

    async fn passdb(&self, user: &str, password: &str) -> LookupResult {
        // Before anything else: with the hash in the reply Dovecot would
        // hash this password itself.
        if let Err(refusal) = rules::check_password_length(password) {
            tracing::info!(addr = user, "login refused: {refusal}");
            return LookupResult::NotFound;
        }
        let mailbox = match self.store.mailbox(user) {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(addr = user, "login refused: {e}");
                chatmail_metrics::auth().invalid();
                return LookupResult::NotFound;
            }
        };
        // A DISABLED marker refuses the login, and keeps an account from
        // being created under the address.
        match mailbox.is_disabled() {
            Ok(false) => {}
            Ok(true) => {
                tracing::info!(addr = user, "login refused: the address is disabled");
                return LookupResult::NotFound;
            }
            Err(e) => return failed(&mailbox, "checking the DISABLED marker", &e),
        }
        match self.passwords.password_hash(&mailbox) {
            Ok(Some(hash)) => {
                chatmail_metrics::auth().found();
                return found(&mailbox, Some(&hash));
            }
            Ok(None) => {}
            Err(e) => return failed(&mailbox, "reading the password file", &e),
        }
        let localpart = user.rsplit_once('@').map_or(user, |(l, _)| l);
        let admissible = match self.config.nocreate_file.try_exists() {
            Ok(nocreate) => Ok(nocreate),
            Err(e) => {
                tracing::error!("cannot check the nocreate file: {e}");
                Err(rules::Refusal::Undecided)
            }
        };
        let admissible = admissible
            .and_then(|nocreate| rules::check_request(&self.config, nocreate, localpart, password))
            .and_then(|()| match self.meter.measure(&self.config.mailboxes_dir) {
                Ok(res) => rules::check_resources(&self.config, &res),
                Err(e) => {
                    tracing::error!("cannot measure the machine: {e}");
                    Err(rules::Refusal::Unmeasured)
                }
            });
        if let Err(refusal) = admissible {
            if refusal.is_temporary() {
                // Unknown whether the account may be created: Dovecot must
                // fail the login temporarily, not report a wrong password.
                tracing::warn!(addr = user, "account creation undecided: {refusal}");
                return LookupResult::Failed("temporary failure".into());
            }
            tracing::info!(addr = user, "account not created: {refusal}");
            chatmail_metrics::auth().refused(refusal.kind());
            return LookupResult::NotFound;
        }
        let started = std::time::Instant::now();
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
                chatmail_metrics::auth().created(started);
                found(&mailbox, Some(&hash))
            }
            Ok((Created::Existing(hash), _)) => {
                // A concurrent first login won; Dovecot checks our password
                // against the winner's hash.
                tracing::info!(addr = user, "account created by a concurrent login");
                chatmail_metrics::auth().found();
                found(&mailbox, Some(&hash))
            }
            Err(e) => failed(&mailbox, "creating the account", &e),
        }
    }

    fn userdb(&self, user: &str) -> LookupResult {
        let Ok(mailbox) = self.store.mailbox(user) else {
            return LookupResult::NotFound;
        };
        match self.passwords.password_hash(&mailbox) {
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
            return Err(dovecot_dict::cannot_iterate(path));
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

/// The reply for an existing account.
fn found(mailbox: &Mailbox, hash: Option<&str>) -> LookupResult {
    match account_json(mailbox, hash) {
        Ok(json) => LookupResult::Found(json),
        Err(e) => failed(mailbox, "answering the lookup", &e),
    }
}

/// A JSON object with its keys in sorted order, as a `serde_json::Map` writes them (the
/// replies Dovecot has always had), written directly rather than through a map built per
/// lookup; the strings are escaped by serde_json itself.
fn account_json(mailbox: &Mailbox, hash: Option<&str>) -> io::Result<String> {
    let home = mailbox
        .dir()
        .to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "home directory is not UTF-8"))?;
    let mut out = Vec::with_capacity(64 + 2 * home.len() + hash.map_or(0, str::len));
    out.extend_from_slice(b"{\"addr\":");
    serde_json::to_writer(&mut out, mailbox.addr())?;
    out.extend_from_slice(b",\"gid\":");
    serde_json::to_writer(&mut out, VMAIL)?;
    out.extend_from_slice(b",\"home\":");
    serde_json::to_writer(&mut out, home)?;
    if let Some(hash) = hash {
        out.extend_from_slice(b",\"password\":");
        serde_json::to_writer(&mut out, hash)?;
    }
    out.extend_from_slice(b",\"uid\":");
    serde_json::to_writer(&mut out, VMAIL)?;
    out.push(b'}');
    String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn failed(mailbox: &Mailbox, doing: &str, e: &io::Error) -> LookupResult {
    tracing::error!(addr = mailbox.addr(), "{doing}: {e}");
    chatmail_metrics::auth().failed();
    LookupResult::Failed("internal error".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_json_is_what_a_json_map_writes() {
        let store = Store::new("/home/vmail/mail/ex\"ample", "ex\"ample");
        for addr in ["abcdefghi@ex\"ample", "a\\b\"c'd\u{e9}\u{2028}@ex\"ample"] {
            let mailbox = store.mailbox(addr).unwrap();
            for hash in [None, Some("{SHA512-CRYPT}$6$salt$h\"\\/ash")] {
                let mut map = serde_json::json!({
                    "addr": mailbox.addr(),
                    "home": mailbox.dir(),
                    "uid": VMAIL,
                    "gid": VMAIL,
                });
                if let Some(hash) = hash {
                    map["password"] = hash.into();
                }
                assert_eq!(account_json(&mailbox, hash).unwrap(), map.to_string());
            }
        }
    }
}
