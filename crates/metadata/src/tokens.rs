//! The users' push notification tokens in their `metadata.json`.
//!
//! Rules (chatmaild's `Metadata` class, plus limits it lacks): a token is
//! live while registered less than 90 days ago and not more than a minute in
//! the future; a set re-registers it (refreshes its time); a user keeps at
//! most [`TokenLimits::max_tokens`] tokens, the least recently registered go
//! first; a token is at most [`TokenLimits::max_len`] bytes and holds no
//! whitespace or control character (lookups answer the tokens separated by
//! spaces, so such a token would be ambiguous; Delta Chat's tokens are
//! `openpgp:` plus standard base64, or, from older versions, bare APNs/FCM
//! tokens, none of which contain either). Every write also drops dead tokens.
//!
//! Read-modify-write cycles of one user are serialized by a striped async
//! lock (one of [`LOCK_STRIPES`] mutexes chosen by the address), so two
//! devices registering at once cannot lose each other's token; the file
//! itself is replaced atomically by the mailbox crate. File I/O runs on the
//! blocking pool.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, RandomState};
use std::io;

use chatmail_mailbox::{AddressError, Mailbox, Metadata, Store};
use tokio::sync::Mutex;

/// Seconds a registration stays live (chatmaild: 90 days).
pub const TOKEN_LIFETIME: i64 = 90 * 86_400;
/// Registrations this far in the future still count (clock skew between
/// processes); chatmaild allows 60 s.
pub const FUTURE_SLACK: i64 = 60;
/// Number of per-user lock stripes.
pub const LOCK_STRIPES: usize = 64;

/// Bounds on what one user may store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLimits {
    /// Tokens kept per user.
    pub max_tokens: usize,
    /// Longest token in bytes.
    pub max_len: usize,
}

impl Default for TokenLimits {
    fn default() -> Self {
        TokenLimits {
            max_tokens: 16,
            max_len: 4096,
        }
    }
}

/// Why a token operation failed. Messages never contain tokens.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The user field does not name a mailbox of this relay.
    #[error("invalid user: {0}")]
    Address(#[from] AddressError),
    /// The token is empty.
    #[error("empty token")]
    Empty,
    /// The token is longer than allowed.
    #[error("token of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The token holds whitespace or a control character.
    #[error("token contains whitespace or a control character")]
    BadChar,
    /// Reading or writing `metadata.json` failed.
    #[error("metadata.json: {0}")]
    Io(#[from] io::Error),
}

/// Checks a token for registration: not empty, at most `max_len` bytes, no
/// whitespace or control character.
///
/// # Errors
/// The first rule the token breaks.
pub fn check_token(token: &str, max_len: usize) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.len() > max_len {
        return Err(TokenError::TooLong {
            len: token.len(),
            max: max_len,
        });
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(TokenError::BadChar);
    }
    Ok(())
}

/// Whether a registration at `ts` is live at `now`.
pub fn is_live(ts: i64, now: i64) -> bool {
    ts > now - TOKEN_LIFETIME && ts < now + FUTURE_SLACK
}

/// Drops dead tokens; returns whether any went.
pub fn prune(tokens: &mut BTreeMap<String, i64>, now: i64) -> bool {
    let before = tokens.len();
    tokens.retain(|_, ts| is_live(*ts, now));
    chatmail_metrics::metadata().tokens_expired(before - tokens.len());
    tokens.len() != before
}

/// Registers `token` at `now` and evicts the least recently registered
/// tokens beyond `max_tokens`.
pub fn register(tokens: &mut BTreeMap<String, i64>, token: &str, now: i64, max_tokens: usize) {
    prune(tokens, now);
    tokens.insert(token.to_owned(), now);
    while tokens.len() > max_tokens.max(1) {
        // The new token has the newest time, so it is never the one evicted.
        let oldest = tokens
            .iter()
            .filter(|(t, _)| t.as_str() != token)
            .min_by_key(|(t, ts)| (**ts, (*t).clone()))
            .map(|(t, _)| t.clone());
        match oldest {
            Some(t) => tokens.remove(&t),
            None => break,
        };
    }
}

/// Access to the tokens of all users.
pub struct TokenStore {
    store: Store,
    limits: TokenLimits,
    locks: Box<[Mutex<()>]>,
    hasher: RandomState,
}

impl TokenStore {
    /// A token store over `store`.
    pub fn new(store: Store, limits: TokenLimits) -> TokenStore {
        TokenStore {
            store,
            limits,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> TokenLimits {
        self.limits
    }

    /// The mailbox of `addr`.
    ///
    /// # Errors
    ///
    /// [`TokenError::Address`] when `addr` is not a safe address of this relay.
    pub fn mailbox(&self, addr: &str) -> Result<Mailbox, TokenError> {
        Ok(self.store.mailbox(addr)?)
    }

    fn lock_for(&self, addr: &str) -> &Mutex<()> {
        let i = usize::try_from(self.hasher.hash_one(addr) % LOCK_STRIPES as u64).unwrap_or(0);
        &self.locks[i]
    }

    /// The live tokens of `addr`, sorted. A missing or unreadable file
    /// counts as no tokens (a broken file is logged); nothing is written.
    /// A stored token that could not be registered today (one with a space,
    /// written by an older version) is left out.
    ///
    /// # Errors
    ///
    /// [`TokenError::Address`] for an invalid address.
    pub async fn live(&self, addr: &str, now: i64) -> Result<Vec<String>, TokenError> {
        let mailbox = self.mailbox(addr)?;
        let metadata = blocking(move || read_lenient(&mailbox)).await?;
        Ok(metadata
            .devicetoken
            .into_iter()
            .filter(|(t, ts)| is_live(*ts, now) && check_token(t, usize::MAX).is_ok())
            .map(|(t, _)| t)
            .collect())
    }

    /// Registers `token` for `addr` at `now`.
    ///
    /// # Errors
    ///
    /// [`TokenError::Empty`]/[`TokenError::TooLong`]/[`TokenError::BadChar`] for a bad token, an
    /// invalid address, or I/O errors (`NotFound` when the mailbox directory
    /// does not exist: it is not created here).
    pub async fn add(&self, addr: &str, token: &str, now: i64) -> Result<(), TokenError> {
        check_token(token, self.limits.max_len)?;
        let token = token.to_owned();
        let max = self.limits.max_tokens;
        self.modify(addr, move |tokens| {
            register(tokens, &token, now, max);
            true
        })
        .await
        .map(|_| ())
    }

    /// Removes `token` of `addr`; returns whether it was there.
    ///
    /// # Errors
    ///
    /// An invalid address or I/O errors.
    pub async fn remove(&self, addr: &str, token: &str, now: i64) -> Result<bool, TokenError> {
        let token = token.to_owned();
        self.modify(addr, move |tokens| {
            prune(tokens, now) | tokens.remove(&token).is_some()
        })
        .await
    }

    /// Removes every token of `addr`; returns whether there were any.
    ///
    /// # Errors
    ///
    /// An invalid address or I/O errors.
    pub async fn clear(&self, addr: &str) -> Result<bool, TokenError> {
        self.modify(addr, |tokens| {
            let had = !tokens.is_empty();
            tokens.clear();
            had
        })
        .await
    }

    /// Applies `f` to the user's tokens under the user's lock and writes the
    /// file when `f` (or pruning) changed something.
    async fn modify<F>(&self, addr: &str, f: F) -> Result<bool, TokenError>
    where
        F: FnOnce(&mut BTreeMap<String, i64>) -> bool + Send + 'static,
    {
        let mailbox = self.mailbox(addr)?;
        let _guard = self.lock_for(addr).lock().await;
        blocking(move || {
            let mut metadata = read_lenient(&mailbox)?;
            let changed = f(&mut metadata.devicetoken);
            if changed {
                mailbox.write_metadata(&metadata)?;
            }
            Ok(changed)
        })
        .await
    }
}

/// Reads `metadata.json`, treating a malformed file (bad JSON, a symlink, not a regular
/// file, too large) as empty, as chatmaild's `FileDict` does; otherwise one broken file
/// would block the user's push registration forever. The next write replaces it.
///
/// # Errors
///
/// Other I/O errors (out of file descriptors, I/O errors): whether the user has tokens is
/// unknown then, and a write based on "none" would drop them.
fn read_lenient(mailbox: &Mailbox) -> Result<Metadata, TokenError> {
    match mailbox.read_metadata() {
        Ok(m) => Ok(m),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            tracing::warn!(
                addr = mailbox.addr(),
                "ignoring unreadable metadata.json: {e}"
            );
            Ok(Metadata::default())
        }
        Err(e) => Err(TokenError::Io(e)),
    }
}

async fn blocking<T, F>(f: F) -> Result<T, TokenError>
where
    F: FnOnce() -> Result<T, TokenError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TokenError::Io(io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn token_rules() {
        let cases: &[(&str, Option<&str>)] = &[
            ("openpgp:wcBMA0Fq+/8xZ2K3AQ/9Hb==", None),
            ("0f3a9c", None),
            ("fcm:APA91bH-x_y", None),
            ("", Some("empty token")),
            ("a b", Some("whitespace")),
            ("a\tb", Some("whitespace")),
            ("a\nb", Some("whitespace")),
            ("a\rb", Some("whitespace")),
            ("a\u{0}b", Some("whitespace")),
            ("a\u{1}b", Some("whitespace")),
            ("a\u{7f}b", Some("whitespace")),
            ("a\u{85}b", Some("whitespace")),
            ("a\u{a0}b", Some("whitespace")),
            ("a\u{2028}b", Some("whitespace")),
            ("a\u{3000}b", Some("whitespace")),
            ("trailing ", Some("whitespace")),
            ("openpgp:wcBMA0Fq+/8xZ2K3AQ/9Hb==xxxxxxxxx", Some("exceeds")),
        ];
        for (token, want) in cases {
            match (check_token(token, 40), want) {
                (Ok(()), None) => {}
                (Err(e), Some(w)) => assert!(e.to_string().contains(w), "{token:?}: {e}"),
                (got, want) => panic!("{token:?}: {got:?}, want {want:?}"),
            }
        }
    }

    #[tokio::test]
    async fn only_a_malformed_file_counts_as_no_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = TokenStore::new(
            Store::new(dir.path(), "example.org"),
            TokenLimits::default(),
        );
        let addr = "abcdefghi@example.org";
        std::fs::create_dir(dir.path().join(addr)).unwrap();
        let path = dir.path().join(addr).join("metadata.json");
        std::fs::write(&path, b"{not json").unwrap();
        assert!(store.live(addr, NOW).await.unwrap().is_empty());
        store.add(addr, "tok", NOW).await.unwrap();
        assert_eq!(store.live(addr, NOW).await.unwrap(), ["tok"]);
        // Cannot be read for another reason (here: the mailbox is a file, ENOTDIR):
        // unknown, so an error rather than "no tokens", and nothing is written.
        let other = "bcdefghij@example.org";
        std::fs::write(dir.path().join(other), b"").unwrap();
        assert!(matches!(
            store.live(other, NOW).await,
            Err(TokenError::Io(_))
        ));
        assert!(matches!(
            store.add(other, "tok", NOW).await,
            Err(TokenError::Io(_))
        ));
    }

    #[test]
    fn liveness_window() {
        assert!(is_live(NOW, NOW));
        assert!(is_live(NOW - TOKEN_LIFETIME + 1, NOW));
        assert!(!is_live(NOW - TOKEN_LIFETIME, NOW));
        assert!(is_live(NOW + FUTURE_SLACK - 1, NOW));
        assert!(!is_live(NOW + FUTURE_SLACK, NOW));
    }

    #[test]
    fn register_evicts_the_oldest_beyond_the_limit() {
        let mut tokens = BTreeMap::new();
        for i in 0..4 {
            register(&mut tokens, &format!("t{i}"), NOW + i, 3);
        }
        assert_eq!(tokens.keys().collect::<Vec<_>>(), ["t1", "t2", "t3"]);
        // Re-registering refreshes: t1 is now the newest, t2 goes next.
        register(&mut tokens, "t1", NOW + 10, 3);
        register(&mut tokens, "t9", NOW + 11, 3);
        assert_eq!(tokens.keys().collect::<Vec<_>>(), ["t1", "t3", "t9"]);
    }

    #[test]
    fn register_drops_dead_tokens() {
        let mut tokens = BTreeMap::from([
            ("old".to_owned(), NOW - TOKEN_LIFETIME),
            ("future".to_owned(), NOW + 3600),
            ("ok".to_owned(), NOW - 5),
        ]);
        register(&mut tokens, "new", NOW, 16);
        assert_eq!(tokens.keys().collect::<Vec<_>>(), ["new", "ok"]);
    }
}
