//! A strict reader for OpenPGP ASCII armor of kind `PGP MESSAGE`
//! (RFC 9580 section 6.2, "Forming ASCII Armor").
//!
//! Sequoia's armor reader is deliberately forgiving (it skips junk around the
//! armor, never checks the CRC and tolerates missing blank lines), which is
//! right for a decrypting client but wrong for a gatekeeper: we want to know
//! that the part holds one armored message and nothing else. So this module
//! checks the line structure itself:
//!
//! ```text
//! -----BEGIN PGP MESSAGE-----
//! Key: value            (armor headers: refused when not allowed)
//!                       (blank line; tolerated missing when there are no headers)
//! base64 lines
//! =XXXX                 (optional CRC24)
//! -----END PGP MESSAGE-----
//! ```
//!
//! Lines may end in CRLF or LF; trailing spaces and tabs on a line are
//! ignored (RFC 9580 says so for armor lines); blank lines before and after
//! the armor are ignored, anything else is not.
//!
//! CRC policy: a missing CRC is accepted (RFC 9580 makes it optional and
//! RFC 9580 writers omit it). A CRC line that is malformed or disagrees with
//! the data is refused. RFC 9580 asks decoders not to reject such objects,
//! but we are not decoding for a reader; a wrong checksum means the payload
//! was altered after armoring, and nothing legitimate produces that, so the
//! gate fails closed.

const BEGIN: &str = "-----BEGIN PGP MESSAGE-----";
const END: &str = "-----END PGP MESSAGE-----";

/// Why an armored text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ArmorError {
    /// The first non-blank line is not `-----BEGIN PGP MESSAGE-----`.
    #[error("missing BEGIN PGP MESSAGE line")]
    NoBegin,
    /// There is no `-----END PGP MESSAGE-----` line.
    #[error("missing END PGP MESSAGE line")]
    NoEnd,
    /// Something other than blank lines follows the END line.
    #[error("data after the END line")]
    TrailingData,
    /// Armor header lines where none are allowed.
    #[error("armor header lines are not allowed")]
    HeadersForbidden,
    /// A line in the body that is neither base64 nor the CRC.
    #[error("invalid base64 in the armor body")]
    BadBase64,
    /// A CRC line that is not `=` followed by four base64 characters.
    #[error("malformed CRC line")]
    BadCrcLine,
    /// The CRC does not match the data.
    #[error("CRC mismatch")]
    CrcMismatch,
    /// The body decodes to nothing.
    #[error("empty armor body")]
    Empty,
    /// The text is not ASCII.
    #[error("non-ASCII characters in the armor")]
    NotAscii,
}

/// Decodes an armored `PGP MESSAGE`, refusing header lines unless
/// `allow_headers`.
///
/// # Errors
/// An [`ArmorError`] saying what is wrong with the armor.
pub fn dearmor(text: &[u8], allow_headers: bool) -> Result<Vec<u8>, ArmorError> {
    if !text.is_ascii() {
        return Err(ArmorError::NotAscii);
    }
    let text = std::str::from_utf8(text).map_err(|_| ArmorError::NotAscii)?;
    let mut lines = text
        .split('\n')
        .map(|l| l.trim_end_matches([' ', '\t', '\r']))
        .skip_while(|l| l.is_empty());
    if lines.next() != Some(BEGIN) {
        return Err(ArmorError::NoBegin);
    }
    let mut lines = lines.peekable();

    let mut saw_header = false;
    while lines.next_if(|l| is_header_line(l)).is_some() {
        if !allow_headers {
            return Err(ArmorError::HeadersForbidden);
        }
        saw_header = true;
    }
    // The blank line that ends the (possibly empty) header block. Old
    // filtermail accepted armor without it when there are no headers.
    if lines.next_if(|l| l.is_empty()).is_none() && saw_header {
        return Err(ArmorError::BadBase64);
    }

    let mut b64 = String::new();
    let mut crc = None;
    let mut ended = false;
    // Blank lines may trail the base64 but not split it.
    let mut blank_seen = false;
    for line in lines.by_ref() {
        if line == END {
            ended = true;
            break;
        }
        if crc.is_some() {
            // Only the END line may follow the CRC.
            return Err(ArmorError::BadCrcLine);
        }
        if let Some(c) = line.strip_prefix('=') {
            crc = Some(decode_crc(c)?);
        } else if line.is_empty() {
            blank_seen = true;
        } else if line.bytes().all(is_base64_char) && !blank_seen {
            b64.push_str(line);
        } else {
            return Err(ArmorError::BadBase64);
        }
    }
    if !ended {
        return Err(ArmorError::NoEnd);
    }
    if lines.any(|l| !l.is_empty()) {
        return Err(ArmorError::TrailingData);
    }
    let data = decode_base64(&b64).ok_or(ArmorError::BadBase64)?;
    if data.is_empty() {
        return Err(ArmorError::Empty);
    }
    if let Some(crc) = crc
        && crc != crc24(&data)
    {
        return Err(ArmorError::CrcMismatch);
    }
    Ok(data)
}

/// An armor header line: `Key: value` (RFC 9580 section 6.2.2). Base64
/// never contains `:`, so the two cannot be confused.
fn is_header_line(line: &str) -> bool {
    match line.split_once(": ") {
        Some((key, _)) => {
            !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }
        None => false,
    }
}

fn decode_crc(c: &str) -> Result<u32, ArmorError> {
    if c.len() != 4 || !c.bytes().all(|b| b != b'=' && is_base64_char(b)) {
        return Err(ArmorError::BadCrcLine);
    }
    let b = decode_base64(c).ok_or(ArmorError::BadCrcLine)?;
    Ok(u32::from_be_bytes([0, b[0], b[1], b[2]]))
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

fn sextet(b: u8) -> Option<u32> {
    let v = match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

/// Strict standard base64: length a multiple of four, `=` only as the last
/// one or two characters, unused bits zero.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.chunks_exact(4);
    let n = quads.len();
    for (i, q) in quads.enumerate() {
        let pad = q.iter().rev().take_while(|&&b| b == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != n) {
            return None;
        }
        let mut acc = 0u32;
        for &b in &q[..4 - pad] {
            acc = (acc << 6) | sextet(b)?;
        }
        acc <<= 6 * pad;
        let [_, a, b, c] = acc.to_be_bytes();
        match pad {
            0 => out.extend_from_slice(&[a, b, c]),
            1 if c == 0 => out.extend_from_slice(&[a, b]),
            2 if b == 0 && c == 0 => out.push(a),
            _ => return None,
        }
    }
    Some(out)
}

/// The CRC24 of RFC 9580 section 6.1.1.
pub fn crc24(data: &[u8]) -> u32 {
    const INIT: u32 = 0x00B7_04CE;
    // A byte at a time: the armor of a large message is mostly CRC work
    // when computed bit by bit.
    let mut crc = INIT;
    for &b in data {
        let index = ((crc >> 16) as u8 ^ b) as usize;
        crc = (crc << 8) ^ CRC24_TABLE[index];
    }
    crc & 0x00FF_FFFF
}

/// `CRC24_TABLE[i]` is the CRC24 remainder of the byte `i` in the top
/// position, computed at compile time from the polynomial.
const CRC24_TABLE: [u32; 256] = {
    const POLY: u32 = 0x0186_4CFB;
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 16;
        let mut bit = 0;
        while bit < 8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= POLY;
            }
            bit += 1;
        }
        table[i] = crc & 0x00FF_FFFF;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    // "hello" = aGVsbG8=, CRC24("hello") computed below.
    fn armor(headers: &str, body: &str, crc: &str) -> String {
        format!("{BEGIN}\r\n{headers}\r\n{body}\r\n{crc}{END}\r\n")
    }

    fn crc_line(data: &[u8]) -> String {
        let c = crc24(data).to_be_bytes();
        let s: String = [c[1], c[2], c[3]]
            .iter()
            .map(|b| format!("{b:08b}"))
            .collect::<String>()
            .as_bytes()
            .chunks(6)
            .map(|six| {
                let v = u8::from_str_radix(std::str::from_utf8(six).unwrap(), 2).unwrap();
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[usize::from(v)]
                    as char
            })
            .collect();
        format!("={s}\r\n")
    }

    #[test]
    fn crc24_table_matches_the_bitwise_definition() {
        fn bitwise(data: &[u8]) -> u32 {
            let mut crc = 0x00B7_04CEu32;
            for &b in data {
                crc ^= u32::from(b) << 16;
                for _ in 0..8 {
                    crc <<= 1;
                    if crc & 0x0100_0000 != 0 {
                        crc ^= 0x0186_4CFB;
                    }
                }
            }
            crc & 0x00FF_FFFF
        }
        let data: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
        for len in [0, 1, 2, 3, 57, 1000, 4096] {
            assert_eq!(crc24(&data[..len]), bitwise(&data[..len]), "{len}");
        }
    }

    #[test]
    fn crc24_known_value() {
        // RFC 4880 CRC24 of the empty string is the init value.
        assert_eq!(crc24(b""), 0x00B7_04CE);
        // Cross-checked with GnuPG's armor of "123456789".
        assert_eq!(crc24(b"123456789"), 0x0021_CF02);
    }

    #[test]
    fn case_table() {
        let good_crc = crc_line(b"hello");
        let cases: &[(&str, String, bool, Result<(), ArmorError>)] = &[
            ("plain", armor("", "aGVsbG8=", ""), false, Ok(())),
            ("with crc", armor("", "aGVsbG8=", &good_crc), false, Ok(())),
            (
                "lf only",
                armor("", "aGVsbG8=", "").replace("\r\n", "\n"),
                false,
                Ok(()),
            ),
            (
                "no blank line, no headers",
                format!("{BEGIN}\r\naGVsbG8=\r\n{END}\r\n"),
                false,
                Ok(()),
            ),
            (
                "leading and trailing blank lines",
                format!("\r\n{}\r\n\r\n", armor("", "aGVsbG8=", "")),
                false,
                Ok(()),
            ),
            ("split lines", armor("", "aGVs\r\nbG8=", ""), false, Ok(())),
            (
                "version header outgoing",
                armor("Version: 1\r\n", "aGVsbG8=", ""),
                false,
                Err(ArmorError::HeadersForbidden),
            ),
            (
                "version header incoming",
                armor("Version: 1\r\n", "aGVsbG8=", ""),
                true,
                Ok(()),
            ),
            (
                "comment header incoming",
                armor("Comment: x y z\r\nVersion: 1\r\n", "aGVsbG8=", ""),
                true,
                Ok(()),
            ),
            (
                "header without blank line",
                format!("{BEGIN}\r\nVersion: 1\r\naGVsbG8=\r\n{END}\r\n"),
                true,
                Err(ArmorError::BadBase64),
            ),
            (
                "wrong crc",
                armor("", "aGVsbG8=", "=AAAA\r\n"),
                false,
                Err(ArmorError::CrcMismatch),
            ),
            (
                "long crc",
                armor("", "aGVsbG8=", "=4cf0a3\r\n"),
                false,
                Err(ArmorError::BadCrcLine),
            ),
            (
                "base64 after crc",
                armor("", "aGVsbG8=", &format!("{good_crc}aGVsbG8=\r\n")),
                false,
                Err(ArmorError::BadCrcLine),
            ),
            (
                "bad char",
                armor("", "aGVs!bG8=", ""),
                false,
                Err(ArmorError::BadBase64),
            ),
            (
                "bad length",
                armor("", "aGVsbG8", ""),
                false,
                Err(ArmorError::BadBase64),
            ),
            (
                "inner padding",
                armor("", "aGU=aGVs", ""),
                false,
                Err(ArmorError::BadBase64),
            ),
            (
                "dirty bits",
                armor("", "aGVsbG9=", ""),
                false,
                Err(ArmorError::BadBase64),
            ),
            (
                "blank line inside",
                armor("", "aGVs\r\n\r\nbG8=", ""),
                false,
                Err(ArmorError::BadBase64),
            ),
            (
                "empty body",
                armor("", "", ""),
                false,
                Err(ArmorError::Empty),
            ),
            (
                "truncated",
                format!("{BEGIN}\r\n\r\naGVsbG8=\r\n"),
                false,
                Err(ArmorError::NoEnd),
            ),
            (
                "text before",
                format!("hi\r\n{}", armor("", "aGVsbG8=", "")),
                false,
                Err(ArmorError::NoBegin),
            ),
            (
                "text after",
                format!("{}cleartext\r\n", armor("", "aGVsbG8=", "")),
                false,
                Err(ArmorError::TrailingData),
            ),
            (
                "second armor after",
                format!("{0}{0}", armor("", "aGVsbG8=", "")),
                false,
                Err(ArmorError::TrailingData),
            ),
            (
                "signature kind",
                armor("", "aGVsbG8=", "").replace("MESSAGE", "SIGNATURE"),
                false,
                Err(ArmorError::NoBegin),
            ),
            (
                "non-ascii",
                armor("", "aGVsbG8=\u{e9}", ""),
                false,
                Err(ArmorError::NotAscii),
            ),
        ];
        for (name, text, allow, want) in cases {
            let got = dearmor(text.as_bytes(), *allow);
            match want {
                Ok(()) => assert_eq!(got.as_deref(), Ok(&b"hello"[..]), "{name}"),
                Err(e) => assert_eq!(got, Err(*e), "{name}"),
            }
        }
    }
}
