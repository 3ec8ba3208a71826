//! Which configuration language the installed Dovecot speaks.
//!
//! Debian 12 ships Dovecot 2.3, Debian 13 Dovecot 2.4, whose configuration
//! language differs (docs/dovecot-2.4.md): the shipped snippets exist in both
//! dialects ([`crate::files`]) and [`Dialect`] picks one from
//! `dovecot --version`.

/// The configuration language of the installed Dovecot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Dovecot 2.3 (Debian 12): `dovecot/chatmail.conf`.
    V23,
    /// Dovecot 2.4 (Debian 13): `dovecot/2.4/chatmail.conf`.
    V24,
}

impl Dialect {
    /// The dialect of a `dovecot --version` output such as
    /// `2.3.19.1 (9b53102964)` or `2.4.1-4 (7d8c0e5759)`; `None` for
    /// anything else (a Dovecot older than 2.3 is not supported either).
    pub fn from_version(output: &str) -> Option<Dialect> {
        let version = output.split_whitespace().next()?;
        let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().ok());
        match (parts.next()??, parts.next()??) {
            (2, 3) => Some(Dialect::V23),
            (2, minor) if minor >= 4 => Some(Dialect::V24),
            (major, _) if major > 2 => Some(Dialect::V24),
            _ => None,
        }
    }

    /// The version setting 2.4 requires first in `dovecot.conf`: the
    /// configuration language the shipped 2.4 snippet is written in.
    pub const CONFIG_VERSION: &'static str = "2.4.1";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_from_version() {
        for (out, want) in [
            ("2.3.19.1 (9b53102964)\n", Some(Dialect::V23)),
            ("2.4.1-4 (7d8c0e5759)\n", Some(Dialect::V24)),
            ("2.4.3 (abc)", Some(Dialect::V24)),
            ("3.0.0", Some(Dialect::V24)),
            ("2.2.36", None),
            ("", None),
            ("dovecot", None),
        ] {
            assert_eq!(Dialect::from_version(out), want, "{out:?}");
        }
    }
}
