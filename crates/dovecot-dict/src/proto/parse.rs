//! Request lines: what the client sends, read into [`Request`]s, and what a
//! server must know of a line even when it does not parse (whether it
//! expects an answer, whether it is a write, its transaction id).

use super::escape::tab_unescape;

/// One request line from the client, unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `H`: handshake.
    Hello {
        major: u32,
        minor: u32,
        value_type: u32,
        user: Option<String>,
        dict_name: String,
    },
    /// `L`: look up one key.
    Lookup { key: String, user: Option<String> },
    /// `I`: iterate keys under a path.
    Iterate {
        flags: u32,
        max_rows: u64,
        path: String,
        user: Option<String>,
    },
    /// `B`: open a transaction.
    Begin { id: u32, user: Option<String> },
    /// `S`: set a key in a transaction.
    Set { id: u32, key: String, value: String },
    /// `U`: unset a key in a transaction.
    Unset { id: u32, key: String },
    /// `A`: add `diff` to a numeric key in a transaction.
    AtomicInc { id: u32, key: String, diff: i64 },
    /// `T`: timestamp for the transaction's writes.
    Timestamp { id: u32, secs: i64, nsecs: u32 },
    /// `V`: whether values may be logged (newer clients only).
    HideLogValues { id: u32, hide: bool },
    /// `C`: commit, answered with `O<id>` etc.
    Commit { id: u32 },
    /// `D`: commit, answered with `AO<id>` etc.
    CommitAsync { id: u32 },
    /// `R`: drop the transaction, no answer.
    Rollback { id: u32 },
}

/// Whether a request starting with command byte `cmd` expects an answer,
/// so that even an unparsable one must get a failure line to keep the
/// client's reply queue in step.
pub fn command_expects_reply(cmd: u8) -> bool {
    matches!(cmd, b'L' | b'I' | b'C' | b'D')
}

/// Whether command byte `cmd` is a write within a transaction (no answer;
/// its loss must fail the transaction's COMMIT). `T` and `V` only change
/// how writes are stamped and logged.
pub fn command_is_write(cmd: u8) -> bool {
    matches!(cmd, b'S' | b'U' | b'A')
}

/// The transaction id of a transaction command line, read from the raw
/// bytes up to the first tab, so that it is known even when the rest of the
/// line does not parse.
pub fn transaction_id_prefix(line: &[u8]) -> Option<u32> {
    let rest = line.get(1..)?;
    let field = rest.split(|&b| b == b'\t').next()?;
    parse_unsigned(std::str::from_utf8(field).ok()?)
}

fn show_cmd(cmd: u8) -> String {
    if cmd.is_ascii_graphic() {
        format!("'{}'", cmd as char)
    } else {
        format!("0x{cmd:02x}")
    }
}

/// Why a request line could not be parsed. Messages never contain field
/// values: they may be passwords.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line was empty.
    #[error("empty request line")]
    Empty,
    /// The line is not UTF-8.
    #[error("request with command {} is not valid UTF-8", show_cmd(*.cmd))]
    InvalidUtf8 { cmd: u8 },
    /// The first byte is no known command.
    #[error("unknown command {}", show_cmd(*.cmd))]
    UnknownCommand { cmd: u8 },
    /// Too few or too many tab-separated fields.
    #[error("{name}: expected {expected} fields, got {got}")]
    FieldCount {
        cmd: u8,
        name: &'static str,
        expected: &'static str,
        got: usize,
    },
    /// A numeric or boolean field does not parse.
    #[error("{name}: field <{field}> is not a valid {kind}")]
    BadField {
        cmd: u8,
        name: &'static str,
        field: &'static str,
        kind: &'static str,
    },
}

impl ParseError {
    /// The command byte of the offending line, if there was one.
    pub fn command(&self) -> Option<u8> {
        match self {
            ParseError::Empty => None,
            ParseError::InvalidUtf8 { cmd }
            | ParseError::UnknownCommand { cmd }
            | ParseError::FieldCount { cmd, .. }
            | ParseError::BadField { cmd, .. } => Some(*cmd),
        }
    }
}

/// Parses one request line (without its trailing `\n`).
///
/// # Errors
///
/// [`ParseError`] for an empty line, invalid UTF-8, an unknown command
/// character, a wrong number of fields, or a malformed number.
pub fn parse_request(line: &[u8]) -> Result<Request, ParseError> {
    let Some(&cmd) = line.first() else {
        return Err(ParseError::Empty);
    };
    let line = std::str::from_utf8(line).map_err(|_| ParseError::InvalidUtf8 { cmd })?;
    let name = match cmd {
        b'H' => "HELLO",
        b'L' => "LOOKUP",
        b'I' => "ITERATE",
        b'B' => "BEGIN",
        b'S' => "SET",
        b'U' => "UNSET",
        b'A' => "ATOMIC_INC",
        b'T' => "TIMESTAMP",
        b'V' => "HIDE_LOG_VALUES",
        b'C' => "COMMIT",
        b'D' => "COMMIT_ASYNC",
        b'R' => "ROLLBACK",
        _ => return Err(ParseError::UnknownCommand { cmd }),
    };
    // Split before unescaping: escaped tabs are `\001t`, so a raw tab is
    // always a separator.
    let f: Vec<String> = line[1..].split('\t').map(tab_unescape).collect();
    let count = |min: usize, max: usize, expected: &'static str| {
        if f.len() < min || f.len() > max {
            Err(ParseError::FieldCount {
                cmd,
                name,
                expected,
                got: f.len(),
            })
        } else {
            Ok(())
        }
    };
    let bad = |field: &'static str, kind: &'static str| ParseError::BadField {
        cmd,
        name,
        field,
        kind,
    };
    let id = |s: &str| parse_unsigned::<u32>(s).ok_or_else(|| bad("id", "transaction id"));
    let user = |i: usize| f.get(i).filter(|u| !u.is_empty()).cloned();

    let req = match cmd {
        b'H' => {
            // Later minor versions may append fields; the stock server also
            // only requires at least five.
            count(5, usize::MAX, "at least 5")?;
            Request::Hello {
                major: parse_unsigned(&f[0]).ok_or_else(|| bad("major", "number"))?,
                minor: parse_unsigned(&f[1]).ok_or_else(|| bad("minor", "number"))?,
                value_type: parse_unsigned(&f[2]).ok_or_else(|| bad("value_type", "number"))?,
                user: user(3),
                dict_name: f[4].clone(),
            }
        }
        b'L' => {
            count(1, 2, "1 or 2")?;
            Request::Lookup {
                key: f[0].clone(),
                user: user(1),
            }
        }
        b'I' => {
            count(3, 4, "3 or 4")?;
            Request::Iterate {
                flags: parse_unsigned(&f[0]).ok_or_else(|| bad("flags", "number"))?,
                max_rows: parse_unsigned(&f[1]).ok_or_else(|| bad("max_rows", "number"))?,
                path: f[2].clone(),
                user: user(3),
            }
        }
        b'B' => {
            count(1, 3, "1 to 3")?;
            if f.len() == 3 {
                parse_unsigned::<u32>(&f[2]).ok_or_else(|| bad("expire_secs", "number"))?;
            }
            Request::Begin {
                id: id(&f[0])?,
                user: user(1),
            }
        }
        b'S' => {
            count(3, 3, "3")?;
            Request::Set {
                id: id(&f[0])?,
                key: f[1].clone(),
                value: f[2].clone(),
            }
        }
        b'U' => {
            count(2, 2, "2")?;
            Request::Unset {
                id: id(&f[0])?,
                key: f[1].clone(),
            }
        }
        b'A' => {
            count(3, 3, "3")?;
            Request::AtomicInc {
                id: id(&f[0])?,
                key: f[1].clone(),
                diff: parse_signed(&f[2]).ok_or_else(|| bad("diff", "signed number"))?,
            }
        }
        b'T' => {
            count(3, 3, "3")?;
            Request::Timestamp {
                id: id(&f[0])?,
                secs: parse_signed(&f[1]).ok_or_else(|| bad("secs", "signed number"))?,
                nsecs: parse_unsigned(&f[2]).ok_or_else(|| bad("nsecs", "number"))?,
            }
        }
        b'V' => {
            count(2, 2, "2")?;
            let hide = match f[1].as_str() {
                "yes" | "1" => true,
                "no" | "0" => false,
                _ => return Err(bad("hide", "yes/no")),
            };
            Request::HideLogValues {
                id: id(&f[0])?,
                hide,
            }
        }
        _ => {
            count(1, 1, "1")?;
            let id = id(&f[0])?;
            match cmd {
                b'C' => Request::Commit { id },
                b'D' => Request::CommitAsync { id },
                _ => Request::Rollback { id },
            }
        }
    };
    Ok(req)
}

/// Digits only, like Dovecot's `str_to_uint`: no sign, no spaces.
fn parse_unsigned<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An optional `-` then digits, like Dovecot's `str_to_llong`.
fn parse_signed(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    parse_unsigned::<u64>(digits)?;
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn parse_good() {
        let cases: Vec<(&[u8], Request)> = vec![
            (
                b"H3\t2\t0\t\tpassdb",
                Request::Hello {
                    major: 3,
                    minor: 2,
                    value_type: 0,
                    user: None,
                    dict_name: s("passdb"),
                },
            ),
            (
                b"H3\t2\t1\tbob\tx\textra",
                Request::Hello {
                    major: 3,
                    minor: 2,
                    value_type: 1,
                    user: Some(s("bob")),
                    dict_name: s("x"),
                },
            ),
            (
                b"Lshared/passdb/pw\x01t\"a@b\t",
                Request::Lookup {
                    key: s("shared/passdb/pw\t\"a@b"),
                    user: None,
                },
            ),
            (
                b"Lpriv/k\ta@b",
                Request::Lookup {
                    key: s("priv/k"),
                    user: Some(s("a@b")),
                },
            ),
            (
                b"Lshared/k",
                Request::Lookup {
                    key: s("shared/k"),
                    user: None,
                },
            ),
            (
                b"I1\t0\tshared/userdb/\t",
                Request::Iterate {
                    flags: 1,
                    max_rows: 0,
                    path: s("shared/userdb/"),
                    user: None,
                },
            ),
            (
                b"I9\t18446744073709551615\tshared/x",
                Request::Iterate {
                    flags: 9,
                    max_rows: u64::MAX,
                    path: s("shared/x"),
                    user: None,
                },
            ),
            (
                b"B1\tu@x",
                Request::Begin {
                    id: 1,
                    user: Some(s("u@x")),
                },
            ),
            (
                // Dovecot 2.4: user and expiry in seconds.
                b"B2\tu@x\t0",
                Request::Begin {
                    id: 2,
                    user: Some(s("u@x")),
                },
            ),
            (
                b"H4\t0\t0\t\tmetadata",
                Request::Hello {
                    major: 4,
                    minor: 0,
                    value_type: 0,
                    user: None,
                    dict_name: s("metadata"),
                },
            ),
            (
                b"B4294967295",
                Request::Begin {
                    id: u32::MAX,
                    user: None,
                },
            ),
            (
                b"S1\tpriv/g/devicetoken\ttok\x01nen",
                Request::Set {
                    id: 1,
                    key: s("priv/g/devicetoken"),
                    value: s("tok\nen"),
                },
            ),
            (
                b"S1\tshared/k\t",
                Request::Set {
                    id: 1,
                    key: s("shared/k"),
                    value: s(""),
                },
            ),
            (
                b"U2\tshared/k",
                Request::Unset {
                    id: 2,
                    key: s("shared/k"),
                },
            ),
            (
                b"A3\tshared/n\t-5",
                Request::AtomicInc {
                    id: 3,
                    key: s("shared/n"),
                    diff: -5,
                },
            ),
            (
                b"T3\t1700000000\t999999999",
                Request::Timestamp {
                    id: 3,
                    secs: 1_700_000_000,
                    nsecs: 999_999_999,
                },
            ),
            (b"V3\tyes", Request::HideLogValues { id: 3, hide: true }),
            (b"V3\tno", Request::HideLogValues { id: 3, hide: false }),
            (b"C7", Request::Commit { id: 7 }),
            (b"D7", Request::CommitAsync { id: 7 }),
            (b"R7", Request::Rollback { id: 7 }),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_request(line),
                Ok(want),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn parse_bad() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty request line"),
            (b"L\xff\xfe", "request with command 'L' is not valid UTF-8"),
            (b"Xfoo", "unknown command 'X'"),
            (b"\x01", "unknown command 0x01"),
            (b"H3\t2\t0\t", "HELLO: expected at least 5 fields, got 4"),
            (
                b"Hx\t2\t0\t\td",
                "HELLO: field <major> is not a valid number",
            ),
            (
                b"H3\t-2\t0\t\td",
                "HELLO: field <minor> is not a valid number",
            ),
            (b"Lk\tu\tx", "LOOKUP: expected 1 or 2 fields, got 3"),
            (b"I1\t0", "ITERATE: expected 3 or 4 fields, got 2"),
            (b"Ix\t0\tp", "ITERATE: field <flags> is not a valid number"),
            (
                b"I1\t-1\tp",
                "ITERATE: field <max_rows> is not a valid number",
            ),
            (b"B", "BEGIN: field <id> is not a valid transaction id"),
            (
                b"B4294967296",
                "BEGIN: field <id> is not a valid transaction id",
            ),
            (b"B 1", "BEGIN: field <id> is not a valid transaction id"),
            (
                b"B1\tu\t-1",
                "BEGIN: field <expire_secs> is not a valid number",
            ),
            (b"B1\tu\t0\tx", "BEGIN: expected 1 to 3 fields, got 4"),
            (b"S1\tk", "SET: expected 3 fields, got 2"),
            (b"S1\tk\tv\tw", "SET: expected 3 fields, got 4"),
            (b"Sx\tk\tv", "SET: field <id> is not a valid transaction id"),
            (b"U1", "UNSET: expected 2 fields, got 1"),
            (
                b"A1\tk\t+1",
                "ATOMIC_INC: field <diff> is not a valid signed number",
            ),
            (
                b"A1\tk\t-",
                "ATOMIC_INC: field <diff> is not a valid signed number",
            ),
            (
                b"A1\tk\t99999999999999999999",
                "ATOMIC_INC: field <diff> is not a valid signed number",
            ),
            (b"T1\t1", "TIMESTAMP: expected 3 fields, got 2"),
            (
                b"T1\t1\t-1",
                "TIMESTAMP: field <nsecs> is not a valid number",
            ),
            (
                b"V1\tmaybe",
                "HIDE_LOG_VALUES: field <hide> is not a valid yes/no",
            ),
            (b"C", "COMMIT: field <id> is not a valid transaction id"),
            (b"C1\t2", "COMMIT: expected 1 fields, got 2"),
            (
                b"D-1",
                "COMMIT_ASYNC: field <id> is not a valid transaction id",
            ),
            (b"R1\tx", "ROLLBACK: expected 1 fields, got 2"),
        ];
        for (line, msg) in cases {
            let err = parse_request(line).expect_err(&String::from_utf8_lossy(line));
            assert_eq!(err.to_string(), *msg, "{}", String::from_utf8_lossy(line));
            assert_eq!(err.command(), line.first().copied());
        }
    }

    #[test]
    fn parse_never_panics_on_odd_bytes() {
        for a in 0u8..=255 {
            for tail in [&b""[..], b"\t", b"\t\t\t\t\t", b"\x01", b"1\t\xc3"] {
                let mut line = vec![a];
                line.extend_from_slice(tail);
                let _ = parse_request(&line);
            }
        }
    }

    /// Asserts that `pred` holds for every command byte of `yes` and for
    /// none of `no`.
    fn holds_for_exactly(pred: fn(u8) -> bool, yes: &[u8], no: &[u8]) {
        for &c in yes {
            assert!(pred(c), "{}", c as char);
        }
        for &c in no {
            assert!(!pred(c), "{}", c as char);
        }
    }

    #[test]
    fn writes_and_their_transaction_ids() {
        holds_for_exactly(command_is_write, b"SUA", b"HLIBTVCDRX");
        let cases: &[(&[u8], Option<u32>)] = &[
            (b"S12\tk\tv", Some(12)),
            (b"S12\t\xff", Some(12)),
            (b"U7", Some(7)),
            (b"A4294967295\tk\t1", Some(u32::MAX)),
            (b"A4294967296\tk\t1", None),
            (b"S\xff\tk\tv", None),
            (b"S-1\tk\tv", None),
            (b"S\tk\tv", None),
            (b"S", None),
            (b"", None),
        ];
        for (line, want) in cases {
            assert_eq!(
                transaction_id_prefix(line),
                *want,
                "{:?}",
                line.escape_ascii().to_string()
            );
        }
    }

    #[test]
    fn reply_expectations() {
        holds_for_exactly(command_expects_reply, b"LICD", b"HBSUATVRX");
    }
}
