//! Value syntax of `chatmail.ini`: integers, sizes, booleans, domains.
//!
//! chatmaild converts values with Python's `int()` and `str.lower() == "true"`, and sizes with
//! its `parse_size_mb` (see DESIGN.md, "Compatibility contract"); these functions accept what
//! those accept (plus the `K`/`T` size suffixes Dovecot understands) and give a reason when a
//! value is rejected. Reasons are short phrases meant to follow `key = "value": `.

use std::fmt;
use std::net::Ipv4Addr;

/// A size setting: the byte count and the text as written.
///
/// The text is kept because Dovecot and Postfix config snippets are rendered from it
/// (chatmaild passes `max_mailbox_size` to Dovecot's `quota_rule` unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Size {
    /// The size in bytes (suffixes are 1024-based).
    pub bytes: u64,
    /// The value exactly as written in the file (after trimming).
    pub text: String,
}

/// What a size without a unit suffix counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlainUnit {
    /// `4096` is 4096 bytes.
    Bytes,
    /// `500` is 500 MiB: chatmaild's `parse_size_mb` reads `max_mailbox_size` this way.
    Mebibytes,
}

/// Why a size was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not digits with an optional `K`, `M`, `G`, `T` suffix (optionally followed by `B`).
    #[error("not a size (expected a whole number with an optional K, M, G or T suffix)")]
    Syntax,
    /// Does not fit in 64 bits of bytes.
    #[error("too large")]
    TooLarge,
}

impl Size {
    /// Parses `500M`, `1G`, `100K`, `2T`, `100MB`, `1g`, or a plain number (counted in
    /// `plain` units); suffixes are case-insensitive and 1024-based.
    ///
    /// A lone `B` suffix means bytes (as in Dovecot), so `100B` is 100 bytes.
    ///
    /// # Errors
    ///
    /// [`SizeError::Syntax`] for anything else (fractions, negative numbers, unknown
    /// suffixes), [`SizeError::TooLarge`] when the byte count overflows `u64`.
    pub fn parse(text: &str, plain: PlainUnit) -> Result<Size, SizeError> {
        let trimmed = text.trim();
        let upper = trimmed.to_ascii_uppercase();
        let unit = |c: u8| match c {
            b'K' => Some(1u64 << 10),
            b'M' => Some(1 << 20),
            b'G' => Some(1 << 30),
            b'T' => Some(1 << 40),
            _ => None,
        };
        let bytes = upper.as_bytes();
        let (number, multiplier) = match bytes {
            [.., u, b'B'] if unit(*u).is_some() => (&upper[..upper.len() - 2], unit(*u)),
            [.., b'B'] => (&upper[..upper.len() - 1], Some(1)),
            [.., u] if unit(*u).is_some() => (&upper[..upper.len() - 1], unit(*u)),
            _ => (upper.as_str(), None),
        };
        let multiplier = multiplier.unwrap_or(match plain {
            PlainUnit::Bytes => 1,
            PlainUnit::Mebibytes => 1 << 20,
        });
        // chatmaild's int() tolerates "500 M"; keep accepting it.
        let number = number.trim_end();
        if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SizeError::Syntax);
        }
        let count: u64 = number.parse().map_err(|_| SizeError::TooLarge)?;
        let bytes = count.checked_mul(multiplier).ok_or(SizeError::TooLarge)?;
        Ok(Size {
            bytes,
            text: trimmed.to_owned(),
        })
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why an integer was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntError {
    NotANumber,
    Negative,
    TooLarge,
}

impl fmt::Display for IntError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IntError::NotANumber => "not a number",
            IntError::Negative => "must not be negative",
            IntError::TooLarge => "too large",
        })
    }
}

/// Parses a non-negative integer the way Python's `int()` reads decimal text: an optional
/// sign, and digits with single underscores between them (`1_000`).
pub(crate) fn parse_uint(text: &str) -> Result<u64, IntError> {
    let text = text.trim();
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let well_formed = !digits.is_empty()
        && !digits.starts_with('_')
        && !digits.ends_with('_')
        && !digits.contains("__")
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_');
    if !well_formed {
        return Err(IntError::NotANumber);
    }
    let digits: String = digits.chars().filter(|&c| c != '_').collect();
    if negative {
        return if digits.bytes().all(|b| b == b'0') {
            Ok(0)
        } else {
            Err(IntError::Negative)
        };
    }
    digits.parse().map_err(|_| IntError::TooLarge)
}

/// chatmaild's boolean: exactly `true` in any case is true, everything else is false.
/// The second value says whether the text was a recognisable boolean at all.
pub(crate) fn parse_bool(text: &str) -> (bool, bool) {
    let lower = text.to_lowercase();
    (lower == "true", lower == "true" || lower == "false")
}

/// `Some` when `text` is a dotted-quad IPv4 address, as Python's `ipaddress.IPv4Address`
/// accepts it (no leading zeros, no shorthand forms).
pub(crate) fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    text.parse().ok()
}

/// A conservative host name check standing in for chatmaild's `DomainValidator`: dot-separated
/// labels of letters, digits, `-` and `_` (`_` because a leading underscore selects
/// self-signed TLS), each 1 to 63 characters, not starting or ending with `-`.
pub(crate) fn is_valid_domain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// True when the value looks like it carries an inline comment, which this INI dialect
/// does not strip.
pub(crate) fn has_inline_comment(text: &str) -> bool {
    let mut previous_blank = false;
    for c in text.chars() {
        if previous_blank && (c == '#' || c == ';') {
            return true;
        }
        previous_blank = c.is_whitespace();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: u64 = 1024;
    const MI: u64 = 1024 * 1024;
    const GI: u64 = 1024 * 1024 * 1024;

    #[test]
    fn sizes() {
        let cases: &[(&str, PlainUnit, Option<u64>)] = &[
            ("500M", PlainUnit::Bytes, Some(500 * MI)),
            ("1G", PlainUnit::Bytes, Some(GI)),
            ("200M", PlainUnit::Bytes, Some(200 * MI)),
            ("100K", PlainUnit::Bytes, Some(100 * KI)),
            ("100k", PlainUnit::Bytes, Some(100 * KI)),
            ("2T", PlainUnit::Bytes, Some(2 * KI * GI)),
            ("  1g  ", PlainUnit::Bytes, Some(GI)),
            ("100MB", PlainUnit::Bytes, Some(100 * MI)),
            ("100mb", PlainUnit::Bytes, Some(100 * MI)),
            ("4KB", PlainUnit::Bytes, Some(4 * KI)),
            ("100B", PlainUnit::Bytes, Some(100)),
            ("500 M", PlainUnit::Bytes, Some(500 * MI)),
            ("0", PlainUnit::Bytes, Some(0)),
            ("4096", PlainUnit::Bytes, Some(4096)),
            ("256", PlainUnit::Mebibytes, Some(256 * MI)),
            ("256M", PlainUnit::Mebibytes, Some(256 * MI)),
            ("", PlainUnit::Bytes, None),
            ("M", PlainUnit::Bytes, None),
            ("1.5G", PlainUnit::Bytes, None),
            ("-1M", PlainUnit::Bytes, None),
            ("+1M", PlainUnit::Bytes, None),
            ("10X", PlainUnit::Bytes, None),
            ("1 0M", PlainUnit::Bytes, None),
            ("abc", PlainUnit::Bytes, None),
            ("100MiB", PlainUnit::Bytes, None),
        ];
        for (text, plain, expected) in cases {
            let got = Size::parse(text, *plain).ok().map(|s| s.bytes);
            assert_eq!(got, *expected, "{text:?}");
        }
        assert_eq!(Size::parse(" 1g ", PlainUnit::Bytes).unwrap().text, "1g");
        assert_eq!(
            Size::parse("99999999999999999999", PlainUnit::Bytes),
            Err(SizeError::TooLarge)
        );
        assert_eq!(
            Size::parse("17179869184G", PlainUnit::Bytes),
            Err(SizeError::TooLarge)
        );
    }

    #[test]
    fn integers_like_python_int() {
        let cases: &[(&str, Result<u64, IntError>)] = &[
            ("60", Ok(60)),
            ("+60", Ok(60)),
            ("1_000", Ok(1000)),
            ("007", Ok(7)),
            ("-0", Ok(0)),
            ("-5", Err(IntError::Negative)),
            ("", Err(IntError::NotANumber)),
            ("abc", Err(IntError::NotANumber)),
            ("5.0", Err(IntError::NotANumber)),
            ("1__0", Err(IntError::NotANumber)),
            ("_1", Err(IntError::NotANumber)),
            ("1_", Err(IntError::NotANumber)),
            ("6 0", Err(IntError::NotANumber)),
            ("60 # comment", Err(IntError::NotANumber)),
            ("99999999999999999999", Err(IntError::TooLarge)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_uint(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn booleans_like_chatmaild() {
        assert_eq!(parse_bool("true"), (true, true));
        assert_eq!(parse_bool("True"), (true, true));
        assert_eq!(parse_bool("TRUE"), (true, true));
        assert_eq!(parse_bool("False"), (false, true));
        assert_eq!(parse_bool("yes"), (false, false));
        assert_eq!(parse_bool("1"), (false, false));
        assert_eq!(parse_bool(""), (false, false));
    }

    #[test]
    fn domains_and_addresses() {
        for good in [
            "example.org",
            "chat.example.org",
            "_test.example.org",
            "localhost",
        ] {
            assert!(is_valid_domain(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "example.org.",
            "-a.org",
            "a-.org",
            "a b.org",
            "a/b",
            "ä.org",
        ] {
            assert!(!is_valid_domain(bad), "{bad}");
        }
        assert_eq!(parse_ipv4("1.3.3.7"), Some(Ipv4Addr::new(1, 3, 3, 7)));
        for bad in [
            "example.org",
            "fe::1",
            "ad.1e.dag.adf",
            "12394142",
            "1.2.3",
            "01.2.3.4",
        ] {
            assert_eq!(parse_ipv4(bad), None, "{bad}");
        }
    }

    #[test]
    fn inline_comment_detection() {
        assert!(has_inline_comment("a@b.org # the boss"));
        assert!(has_inline_comment("5\t; five"));
        assert!(!has_inline_comment("https://x.org/#frag"));
        assert!(!has_inline_comment("#x"));
    }
}
