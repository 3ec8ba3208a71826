//! Value syntax of `chatmail.ini`: integers, sizes, booleans, domains.
//!
//! chatmaild converts values with Python's `int()` and `str.lower() == "true"`, and sizes with
//! its `parse_size_mb` (see docs/design.md, "Compatibility contract"); these functions accept what
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
    /// `4096` is 4096 bytes, and a lone `B` suffix means bytes (`100B`).
    Bytes,
    /// `500` is 500 MiB, as chatmaild's `parse_size_mb` reads
    /// `max_mailbox_size`, `min_available_memory` and `min_free_disk_space`;
    /// it drops one trailing `B` first, so `100B` is 100 MiB too.
    Mebibytes,
}

/// Why a size was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// Not digits with an optional `K`, `M`, `G`, `T` suffix (optionally followed by `B`).
    #[error("not a size (expected a whole number with an optional M or G suffix)")]
    Syntax,
    /// A negative number (chatmaild would take it and never refuse anything).
    #[error("must not be negative")]
    Negative,
    /// Does not fit in 64 bits of bytes.
    #[error("too large")]
    TooLarge,
}

/// Why a size that parsed may not mean what the operator thinks; the
/// caller reports it as a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeNote {
    /// No unit: megabytes (MiB), as in chatmaild.
    PlainMegabytes,
    /// A lone `B`: chatmaild drops it and counts megabytes.
    TrailingB,
    /// `K` or `T`: understood here (and by Dovecot), but chatmaild's parser
    /// knows only `M` and `G` and would refuse the file.
    NotAChatmaildUnit,
}

impl fmt::Display for SizeNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SizeNote::PlainMegabytes => {
                "a number without a unit counts megabytes (MiB), as in chatmaild; \
                 write the M or G suffix to make that plain"
            }
            SizeNote::TrailingB => {
                "a lone B suffix counts megabytes (chatmaild drops the B), not bytes; \
                 write the M or G suffix"
            }
            SizeNote::NotAChatmaildUnit => {
                "chatmaild only understands the M and G suffixes and would refuse this \
                 value; write it in M or G"
            }
        })
    }
}

impl Size {
    /// Parses a size the way chatmaild's `parse_size_mb` does for
    /// `PlainUnit::Mebibytes`: `500M`, `2G`, `100MB`, `1g`, `500 M`,
    /// `1_000` (Python's `int()` reads the number), a plain number counted
    /// in `plain` units; suffixes are case-insensitive and 1024-based.
    /// `K` and `T` are accepted too (Dovecot understands them).
    ///
    /// # Errors
    ///
    /// [`SizeError::Syntax`] for anything else (fractions, unknown
    /// suffixes), [`SizeError::Negative`], and [`SizeError::TooLarge`] when
    /// the byte count overflows `u64`.
    pub fn parse(text: &str, plain: PlainUnit) -> Result<Size, SizeError> {
        Size::parse_noted(text, plain).map(|(size, _)| size)
    }

    /// [`Size::parse`], plus a note when the value parsed but is ambiguous.
    ///
    /// # Errors
    ///
    /// As [`Size::parse`].
    pub fn parse_noted(
        text: &str,
        plain: PlainUnit,
    ) -> Result<(Size, Option<SizeNote>), SizeError> {
        let trimmed = text.trim();
        let upper = trimmed.to_ascii_uppercase();
        let (rest, had_b) = match upper.strip_suffix('B') {
            Some(rest) => (rest, true),
            None => (upper.as_str(), false),
        };
        let unit = |c: char| match c {
            'K' => Some(1u64 << 10),
            'M' => Some(1 << 20),
            'G' => Some(1 << 30),
            'T' => Some(1 << 40),
            _ => None,
        };
        let last = rest.chars().next_back();
        let (number, multiplier, note) = match last.and_then(unit) {
            Some(m) => {
                let note = matches!(last, Some('K' | 'T')).then_some(SizeNote::NotAChatmaildUnit);
                (&rest[..rest.len() - 1], m, note)
            }
            None => match (plain, had_b) {
                (PlainUnit::Bytes, _) => (rest, 1, None),
                (PlainUnit::Mebibytes, true) => (rest, 1 << 20, Some(SizeNote::TrailingB)),
                (PlainUnit::Mebibytes, false) => (rest, 1 << 20, Some(SizeNote::PlainMegabytes)),
            },
        };
        let count = parse_uint(number).map_err(|e| match e {
            IntError::NotANumber => SizeError::Syntax,
            IntError::Negative => SizeError::Negative,
            IntError::TooLarge => SizeError::TooLarge,
        })?;
        let bytes = count.checked_mul(multiplier).ok_or(SizeError::TooLarge)?;
        Ok((
            Size {
                bytes,
                text: trimmed.to_owned(),
            },
            note,
        ))
    }

    /// The size in whole MiB, rounded down (chatmaild's `*_mb` values).
    pub fn mebibytes(&self) -> u64 {
        self.bytes >> 20
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

    /// Megabytes as chatmaild's `parse_size_mb` returns them for each text
    /// (`None`: it raises `ValueError`), next to what we read and the note
    /// we give. Taken from running its parser on each text.
    #[test]
    fn sizes_like_chatmaild_parse_size_mb() {
        use SizeNote::*;
        type Case = (
            &'static str,
            Option<i64>,
            Result<u64, SizeError>,
            Option<SizeNote>,
        );
        let cases: &[Case] = &[
            ("200", Some(200), Ok(200 * MI), Some(PlainMegabytes)),
            ("200M", Some(200), Ok(200 * MI), None),
            ("200m", Some(200), Ok(200 * MI), None),
            ("1G", Some(1024), Ok(GI), None),
            ("1g", Some(1024), Ok(GI), None),
            ("2GB", Some(2048), Ok(2 * GI), None),
            ("100MB", Some(100), Ok(100 * MI), None),
            ("100mb", Some(100), Ok(100 * MI), None),
            ("100B", Some(100), Ok(100 * MI), Some(TrailingB)),
            ("100b", Some(100), Ok(100 * MI), Some(TrailingB)),
            (" 500 M ", Some(500), Ok(500 * MI), None),
            ("500\tM", Some(500), Ok(500 * MI), None),
            ("1G ", Some(1024), Ok(GI), None),
            ("1_000", Some(1000), Ok(1000 * MI), Some(PlainMegabytes)),
            ("+5", Some(5), Ok(5 * MI), Some(PlainMegabytes)),
            ("007", Some(7), Ok(7 * MI), Some(PlainMegabytes)),
            ("0", Some(0), Ok(0), Some(PlainMegabytes)),
            // chatmaild takes a negative limit, which then never refuses.
            ("-5", Some(-5), Err(SizeError::Negative), None),
            // Not chatmaild units but Dovecot's: kept, with a note.
            ("100K", None, Ok(100 * KI), Some(NotAChatmaildUnit)),
            ("4KB", None, Ok(4 * KI), Some(NotAChatmaildUnit)),
            ("2T", None, Ok(2 * KI * GI), Some(NotAChatmaildUnit)),
            ("1.5G", None, Err(SizeError::Syntax), None),
            ("", None, Err(SizeError::Syntax), None),
            ("M", None, Err(SizeError::Syntax), None),
            ("B", None, Err(SizeError::Syntax), None),
            ("BB", None, Err(SizeError::Syntax), None),
            ("100BB", None, Err(SizeError::Syntax), None),
            ("1 0M", None, Err(SizeError::Syntax), None),
            ("abc", None, Err(SizeError::Syntax), None),
            ("100MiB", None, Err(SizeError::Syntax), None),
            ("0x10", None, Err(SizeError::Syntax), None),
            // Python's int() also reads other scripts' digits; we do not.
            ("\u{ff11}\u{ff12}", Some(12), Err(SizeError::Syntax), None),
            ("99999999999999999999", None, Err(SizeError::TooLarge), None),
            (
                "17179869184G",
                Some(17_592_186_044_416),
                Err(SizeError::TooLarge),
                None,
            ),
        ];
        for (text, chatmaild_mb, expected, note) in cases {
            let got = Size::parse_noted(text, PlainUnit::Mebibytes);
            assert_eq!(
                got.map(|(s, n)| (s.bytes, n)),
                expected.map(|b| (b, *note)),
                "{text:?}"
            );
            if let (Some(mb), Ok(bytes)) = (chatmaild_mb, expected)
                && *note != Some(NotAChatmaildUnit)
            {
                assert_eq!(*bytes, u64::try_from(*mb).unwrap() * MI, "{text:?}");
            }
        }
        assert_eq!(
            Size::parse(" 1g ", PlainUnit::Mebibytes).unwrap().text,
            "1g"
        );
        assert_eq!(
            Size::parse("1025M", PlainUnit::Mebibytes)
                .unwrap()
                .mebibytes(),
            1025
        );
    }

    #[test]
    fn sizes_in_bytes() {
        let cases: &[(&str, Option<u64>)] = &[
            ("4096", Some(4096)),
            ("100B", Some(100)),
            ("100K", Some(100 * KI)),
            ("4KB", Some(4 * KI)),
            ("500M", Some(500 * MI)),
            ("abc", None),
        ];
        for (text, expected) in cases {
            let got = Size::parse(text, PlainUnit::Bytes).ok().map(|s| s.bytes);
            assert_eq!(got, *expected, "{text:?}");
        }
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
