//! The dict keys the shipped Lua passdb/userdb (`dovecot/chatmail-auth.lua`,
//! Dovecot 2.3 and 2.4) sends, the ones Dovecot 2.3's `passdb dict` /
//! `userdb dict` drivers sent: `shared/passdb/<%E password>"<%E user>` and
//! `shared/userdb/<%E user>`.
//!
//! Dovecot's `%E` modifier escapes `"`, `'` and `\` with a backslash
//! (doc.dovecot.org, "Config variables", modifiers), so the first unescaped
//! `"` separates password and user whatever the client typed.

/// A key this daemon answers.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthKey {
    /// A login: look up (or create) the account and return its hash.
    Passdb { password: String, user: String },
    /// A user lookup (LMTP delivery, IMAP after login, doveadm).
    Userdb { user: String },
}

/// The prefix of userdb keys, also the path Dovecot iterates for `doveadm user -A`.
pub const USERDB_PREFIX: &str = "shared/userdb/";
const PASSDB_PREFIX: &str = "shared/passdb/";

/// Parses a lookup key; `None` for keys outside our two namespaces or with a
/// dangling escape.
pub fn parse(key: &str) -> Option<AuthKey> {
    if let Some(rest) = key.strip_prefix(PASSDB_PREFIX) {
        let (password, rest) = unescape_until_quote(rest)?;
        let (user, rest) = unescape_until_quote(rest.strip_prefix('"')?)?;
        if !rest.is_empty() {
            return None;
        }
        return Some(AuthKey::Passdb { password, user });
    }
    if let Some(rest) = key.strip_prefix(USERDB_PREFIX) {
        let (user, rest) = unescape_until_quote(rest)?;
        if !rest.is_empty() {
            return None;
        }
        return Some(AuthKey::Userdb { user });
    }
    None
}

/// Undoes `%E` up to the first unescaped `"`; returns the text and the rest
/// (starting at that quote, or empty).
fn unescape_until_quote(s: &str) -> Option<(String, &str)> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i..])),
            c => out.push(c),
        }
    }
    Some((out, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passdb(password: &str, user: &str) -> Option<AuthKey> {
        Some(AuthKey::Passdb {
            password: password.into(),
            user: user.into(),
        })
    }

    #[test]
    fn parse_table() {
        let cases: &[(&str, Option<AuthKey>)] = &[
            ("shared/passdb/secret\"a@x.org", passdb("secret", "a@x.org")),
            ("shared/passdb/\"a@x.org", passdb("", "a@x.org")),
            (
                "shared/passdb/pa\\\"ss\"a@x.org",
                passdb("pa\"ss", "a@x.org"),
            ),
            (
                "shared/passdb/back\\\\slash\\'q\"a@x.org",
                passdb("back\\slash'q", "a@x.org"),
            ),
            ("shared/passdb/tab\there\"u", passdb("tab\there", "u")),
            (
                "shared/userdb/a@x.org",
                Some(AuthKey::Userdb {
                    user: "a@x.org".into(),
                }),
            ),
            (
                "shared/userdb/we\\\"ird",
                Some(AuthKey::Userdb {
                    user: "we\"ird".into(),
                }),
            ),
            // no separator
            ("shared/passdb/secret", None),
            // a second unescaped quote: not what %E produces
            ("shared/passdb/a\"b\"c", None),
            ("shared/userdb/a\"b", None),
            // dangling escape
            ("shared/passdb/abc\\", None),
            ("shared/userdb/abc\\", None),
            ("priv/passdb/x\"y", None),
            ("shared/other/x", None),
            ("", None),
        ];
        for (key, want) in cases {
            assert_eq!(&parse(key), want, "{key:?}");
        }
    }
}
