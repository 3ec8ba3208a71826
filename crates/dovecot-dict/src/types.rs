//! What a dict request asks for and what a [`crate::Handler`] answers: the
//! results of lookups and commits and the writes of a transaction, free of
//! any wire detail.
//!
//! This is the bottom layer of the crate: [`crate::proto`] encodes these
//! types and [`crate::server`] hands them to the handler; this module must
//! not depend on either.

/// Outcome of a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupResult {
    /// One value (`O`).
    Found(String),
    /// Several values (`M`, understood by 2.3 clients, minor >= 2).
    FoundMany(Vec<String>),
    /// No such key (`N`).
    NotFound,
    /// Temporary failure (`F`); the message goes to Dovecot's log.
    Failed(String),
}

/// Outcome of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResult {
    /// Everything was written.
    Ok,
    /// A key that had to exist (atomic increment) did not.
    NotFound,
    /// Nothing was written.
    Failed(String),
    /// It is unknown whether the write happened.
    WriteUncertain(String),
}

/// A committed transaction: all writes between BEGIN and COMMIT, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// The client's id; only unique within one connection.
    pub id: u32,
    /// BEGIN's user, else HELLO's.
    pub user: Option<String>,
    /// The writes, in the order the client sent them.
    pub ops: Vec<Op>,
}

/// One write within a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `S`: set `key` to `value`.
    Set { key: String, value: String },
    /// `U`: remove `key`.
    Unset { key: String },
    /// `A`: add `diff` to the number at `key`.
    AtomicInc { key: String, diff: i64 },
}

/// The part of a key that is safe to log: `shared/` or `priv/` plus the
/// next path segment and its `/` (e.g. `shared/passdb/`), since what
/// follows may be a password. Keys without either prefix log as `?`.
pub fn key_log_prefix(key: &str) -> &str {
    for prefix in ["shared/", "priv/"] {
        if let Some(rest) = key.strip_prefix(prefix) {
            return match rest.find('/') {
                Some(i) => &key[..prefix.len() + i + 1],
                None => prefix,
            };
        }
    }
    "?"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_prefixes_for_logs() {
        let cases = [
            ("shared/passdb/secret\"a@b", "shared/passdb/"),
            ("priv/guid/devicetoken", "priv/guid/"),
            ("shared/secret", "shared/"),
            ("priv/", "priv/"),
            ("secret", "?"),
            ("", "?"),
        ];
        for (key, want) in cases {
            assert_eq!(key_log_prefix(key), want, "{key}");
        }
    }
}
