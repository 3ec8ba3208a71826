//! The dict [`Handler`] behind Dovecot's `mail_attribute_dict`.
//!
//! | request | answer |
//! |---|---|
//! | set `priv/<guid>/devicetoken` = token | register it (see [`crate::tokens`]); `F` for an empty or oversized token |
//! | unset `priv/<guid>/devicetoken` | forget all of the user's tokens |
//! | lookup `priv/<guid>/devicetoken` | the live tokens, space-separated; `N` when none |
//! | set `priv/<guid>/messagenew` | queue one notification per live token; nudge the inbox |
//! | set `priv/<guid>/nudge` | nudge the inbox (see [`crate::nudge`]) |
//! | lookup `shared/<guid>/vendor/vendor.dovecot/pvt/server/vendor/deltachat/<name>` | `irohrelay`, `maxsmtprecipients`, `appversions`, `turn`, `unixtimestamp` |
//! | iterate anything | no rows (nothing is listable) |
//! | set of any other key, atomic increment | `F`: we store nothing we do not understand |
//! | unset of any other key | `O`: nothing was stored, so nothing is left |
//! | lookup of any other key | `N` |
//!
//! Writes need the transaction's user (the login address), validated by the
//! mailbox crate, so a user field like `../x` never reaches the file system.
//! Every write of a transaction is checked before the first is applied, so
//! a transaction with a refused write answers `F` and changes nothing; only
//! an I/O failure midway can leave earlier writes applied.

use std::path::PathBuf;
use std::sync::Arc;

use dovecot_dict::key_log_prefix;
use dovecot_dict::{CommitResult, Handler, LookupResult, Op, Transaction};

use crate::clock::Clock;
use crate::keys::{self, Key};
use crate::notifier::Notifier;
use crate::nudge::Nudger;
use crate::tokens::{TokenError, TokenStore, check_token};
use crate::turn::{self, TurnOptions};

/// Longest `appversions` file served; the value must fit in one dict line.
const MAX_APPVERSIONS: u64 = 32 * 1024;

/// The relay facts served under the deltachat vendor path.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `irohrelay`; `None` = not found.
    pub iroh_relay: Option<String>,
    /// `maxsmtprecipients`.
    pub max_smtp_recipients: u32,
    /// JSON file served (as one line) for `appversions`.
    pub appversions_file: PathBuf,
    /// Sources for `turn`.
    pub turn: TurnOptions,
}

/// IMAP METADATA over `metadata.json` files and the push queue.
pub struct MetadataHandler {
    tokens: Arc<TokenStore>,
    notifier: Notifier,
    nudger: Option<Nudger>,
    info: ServerInfo,
    clock: Arc<dyn Clock>,
}

impl MetadataHandler {
    /// A handler storing tokens in `tokens`, queuing pushes on `notifier`
    /// and nudging inboxes after deliveries with `nudger` (none: never).
    pub fn new(
        tokens: Arc<TokenStore>,
        notifier: Notifier,
        nudger: Option<Nudger>,
        info: ServerInfo,
        clock: Arc<dyn Clock>,
    ) -> MetadataHandler {
        MetadataHandler {
            tokens,
            notifier,
            nudger,
            info,
            clock,
        }
    }

    async fn server_info(&self, name: &str) -> LookupResult {
        match name {
            "irohrelay" => match &self.info.iroh_relay {
                Some(url) => LookupResult::Found(url.clone()),
                None => LookupResult::NotFound,
            },
            "maxsmtprecipients" => LookupResult::Found(self.info.max_smtp_recipients.to_string()),
            "appversions" => self.appversions().await,
            "turn" => match turn::lookup(&self.info.turn, self.clock.now()).await {
                Some(value) => LookupResult::Found(value),
                None => LookupResult::NotFound,
            },
            "unixtimestamp" => LookupResult::Found(self.clock.now().to_string()),
            _ => LookupResult::NotFound,
        }
    }

    async fn appversions(&self) -> LookupResult {
        let path = &self.info.appversions_file;
        let bytes = match tokio::fs::metadata(path).await {
            Ok(meta) if meta.len() > MAX_APPVERSIONS => {
                tracing::error!(file = %path.display(), "appversions file is too large");
                return LookupResult::NotFound;
            }
            Ok(_) => match tokio::fs::read(path).await {
                Ok(bytes) => bytes,
                Err(e) => return missing_appversions(path, &e),
            },
            Err(e) => return missing_appversions(path, &e),
        };
        // Re-encoding makes any valid file one line and refuses broken ones,
        // which clients would otherwise choke on.
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(value) => LookupResult::Found(value.to_string()),
            Err(e) => {
                tracing::error!(file = %path.display(), "appversions file is not JSON: {e}");
                LookupResult::NotFound
            }
        }
    }

    fn nudge(&self, user: &str) -> Result<(), String> {
        let Some(nudger) = &self.nudger else {
            return Ok(());
        };
        nudger.schedule(user).map_err(|e| {
            tracing::warn!(addr = user, "not nudging an invalid user: {e}");
            e.to_string()
        })
    }

    /// Refuses what can be refused without touching the disk.
    fn precheck(&self, user: Option<&str>, op: &Op) -> Result<(), String> {
        let need_user = || user.ok_or_else(|| "transaction without a user".to_owned());
        match op {
            Op::Set { key, value } => match keys::classify(key) {
                Key::DeviceToken => {
                    let user = need_user()?;
                    let checked = self
                        .tokens
                        .mailbox(user)
                        .and_then(|_| check_token(value, self.tokens.limits().max_len));
                    checked.map_err(|e| {
                        log_token_error(user, "registering a push token", &e);
                        e.to_string()
                    })
                }
                Key::ServerInfo(_) | Key::Other => {
                    tracing::info!(key = key_log_prefix(key), "set of an unknown key refused");
                    Err("unknown key".into())
                }
                _ => need_user().map(drop),
            },
            Op::Unset { key } => match keys::classify(key) {
                Key::DeviceToken => need_user().map(drop),
                _ => Ok(()),
            },
            Op::AtomicInc { key, .. } => {
                tracing::info!(key = key_log_prefix(key), "atomic increment refused");
                Err("atomic increment not supported".into())
            }
        }
    }

    async fn apply(&self, user: Option<&str>, op: &Op) -> Result<(), String> {
        let need_user = || user.ok_or_else(|| "transaction without a user".to_owned());
        let now = self.clock.now();
        match op {
            Op::Set { key, value } => match keys::classify(key) {
                Key::DeviceToken => {
                    let user = need_user()?;
                    self.tokens.add(user, value, now).await.map_err(|e| {
                        log_token_error(user, "registering a push token", &e);
                        e.to_string()
                    })?;
                    tracing::info!(addr = user, "push token registered");
                    chatmail_metrics::metadata().token_registered();
                    Ok(())
                }
                Key::MessageNew => {
                    let user = need_user()?;
                    self.nudge(user)?;
                    let live = self.tokens.live(user, now).await.map_err(|e| {
                        log_token_error(user, "reading push tokens", &e);
                        e.to_string()
                    })?;
                    if live.is_empty() {
                        return Ok(());
                    }
                    let added = self.notifier.enqueue(user, live, now).await.map_err(|e| {
                        tracing::error!(addr = user, "queuing push notifications: {e}");
                        e.to_string()
                    })?;
                    tracing::debug!(addr = user, added, "push notifications queued");
                    chatmail_metrics::metadata().queued(added);
                    Ok(())
                }
                Key::Nudge => self.nudge(need_user()?),
                Key::ServerInfo(_) | Key::Other => {
                    tracing::info!(key = key_log_prefix(key), "set of an unknown key refused");
                    Err("unknown key".into())
                }
            },
            Op::Unset { key } => match keys::classify(key) {
                Key::DeviceToken => {
                    let user = need_user()?;
                    self.tokens.clear(user).await.map_err(|e| {
                        log_token_error(user, "removing push tokens", &e);
                        e.to_string()
                    })?;
                    tracing::info!(addr = user, "push tokens removed");
                    chatmail_metrics::metadata().tokens_removed();
                    Ok(())
                }
                _ => Ok(()),
            },
            Op::AtomicInc { key, .. } => {
                tracing::info!(key = key_log_prefix(key), "atomic increment refused");
                Err("atomic increment not supported".into())
            }
        }
    }
}

fn missing_appversions(path: &std::path::Path, e: &std::io::Error) -> LookupResult {
    if e.kind() != std::io::ErrorKind::NotFound {
        tracing::error!(file = %path.display(), "cannot read appversions file: {e}");
    }
    LookupResult::NotFound
}

fn log_token_error(user: &str, what: &str, e: &TokenError) {
    match e {
        TokenError::Io(_) => tracing::error!(addr = user, "{what}: {e}"),
        _ => tracing::warn!(addr = user, "{what}: {e}"),
    }
}

impl Handler for MetadataHandler {
    async fn lookup(&self, key: &str, user: Option<&str>) -> LookupResult {
        match keys::classify(key) {
            Key::DeviceToken => {
                let Some(user) = user else {
                    return LookupResult::Failed("lookup without a user".into());
                };
                match self.tokens.live(user, self.clock.now()).await {
                    Ok(tokens) if tokens.is_empty() => LookupResult::NotFound,
                    Ok(tokens) => LookupResult::Found(tokens.join(" ")),
                    Err(e) => {
                        log_token_error(user, "looking up push tokens", &e);
                        LookupResult::Failed(e.to_string())
                    }
                }
            }
            Key::ServerInfo(name) => self.server_info(name).await,
            Key::MessageNew | Key::Nudge | Key::Other => LookupResult::NotFound,
        }
    }

    async fn iterate(
        &self,
        _path: &str,
        _flags: u32,
        _user: Option<&str>,
    ) -> Result<Vec<(String, String)>, String> {
        // Dovecot iterates attributes when it lists, copies or deletes a
        // mailbox; an error there would fail the whole operation.
        Ok(Vec::new())
    }

    async fn commit(&self, tx: Transaction) -> CommitResult {
        let user = tx.user.as_deref();
        if let Some(e) = tx.ops.iter().find_map(|op| self.precheck(user, op).err()) {
            return CommitResult::Failed(e);
        }
        let mut result = CommitResult::Ok;
        for op in &tx.ops {
            if let Err(e) = self.apply(tx.user.as_deref(), op).await {
                result = CommitResult::Failed(e);
            }
        }
        result
    }
}
