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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

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

    // Decoded line by line: a copy of the base64 text first would cost
    // as much memory again as the armor itself.
    let mut decoder = Decoder::new(text.len() / 4 * 3);
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
            decoder.push(line).ok_or(ArmorError::BadBase64)?;
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
    let data = decoder.finish().ok_or(ArmorError::BadBase64)?;
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
    // Four characters, three bytes: a CRC line has no padding.
    let mut b = [0; 3];
    match STANDARD.decode_slice(c, &mut b) {
        Ok(3) if c.len() == 4 => Ok(u32::from_be_bytes([0, b[0], b[1], b[2]])),
        _ => Err(ArmorError::BadCrcLine),
    }
}

fn is_base64_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')
}

/// Standard base64 that arrives in lines, decoded as strictly as
/// [`STANDARD`] decodes the lines joined: length a multiple of four, `=`
/// only as the last one or two characters, unused bits zero. The whole
/// quads of a line are decoded in place; only a quad that a line break
/// cuts is copied.
struct Decoder {
    out: Vec<u8>,
    /// The start of a quad that the previous line left open.
    quad: [u8; 4],
    len: usize,
    /// A quad with `=` was decoded: it must have been the last.
    padded: bool,
}

impl Decoder {
    fn new(capacity: usize) -> Decoder {
        Decoder {
            out: Vec::with_capacity(capacity),
            quad: [0; 4],
            len: 0,
            padded: false,
        }
    }

    /// Decodes `line`; `None` when the text is not valid base64, as soon
    /// as a complete quad or a character after the padding shows it.
    fn push(&mut self, line: &str) -> Option<()> {
        let mut rest = line.as_bytes();
        if self.len > 0 {
            let take = rest.len().min(4 - self.len);
            self.quad[self.len..self.len + take].copy_from_slice(&rest[..take]);
            self.len += take;
            rest = &rest[take..];
            if self.len < 4 {
                return Some(());
            }
            self.len = 0;
            let quad = self.quad;
            self.decode(&quad)?;
        }
        let (whole, tail) = rest.split_at(rest.len() / 4 * 4);
        self.decode(whole)?;
        if self.padded && !tail.is_empty() {
            return None;
        }
        self.quad[..tail.len()].copy_from_slice(tail);
        self.len = tail.len();
        Some(())
    }

    /// Decodes whole quads; `None` when they are not valid or follow a
    /// padded quad.
    fn decode(&mut self, quads: &[u8]) -> Option<()> {
        if quads.is_empty() {
            return Some(());
        }
        if self.padded {
            return None;
        }
        STANDARD.decode_vec(quads, &mut self.out).ok()?;
        self.padded = quads.ends_with(b"=");
        Some(())
    }

    /// The decoded bytes; `None` when a quad is incomplete.
    fn finish(self) -> Option<Vec<u8>> {
        (self.len == 0).then_some(self.out)
    }
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

    #[test]
    fn line_decoder_agrees_with_whole_decoding() {
        let cases = [
            "",
            "aGVsbG8=",
            "aGVsbG8h",
            "aGVsbA==",
            "aGVsbG8",
            "aGVs=G8=",
            "aGVsbG==",
            "aGVsbA==aGVs",
            "aGVsbG8=QQ==",
            "a===",
            "aGVsbA=x",
            "aGVsbB==",
            "aGVsbG9=",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ];
        for case in cases {
            let whole = STANDARD.decode(case).ok();
            // Every way of cutting it into two or three lines.
            for a in 0..=case.len() {
                for b in a..=case.len() {
                    let mut d = Decoder::new(0);
                    let pushed = [&case[..a], &case[a..b], &case[b..]]
                        .iter()
                        .try_for_each(|line| d.push(line));
                    let lines = pushed.and_then(|()| d.finish());
                    assert_eq!(lines, whole, "{case:?} cut at {a}, {b}");
                }
            }
        }
    }

    // "hello" = aGVsbG8=, CRC24("hello") computed below.
    fn armor(headers: &str, body: &str, crc: &str) -> String {
        format!("{BEGIN}\r\n{headers}\r\n{body}\r\n{crc}{END}\r\n")
    }

    fn crc_line(data: &[u8]) -> String {
        format!("={}\r\n", STANDARD.encode(&crc24(data).to_be_bytes()[1..]))
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
        use ArmorError::{
            BadBase64, BadCrcLine, CrcMismatch, Empty, HeadersForbidden, NoBegin, NoEnd, NotAscii,
            TrailingData,
        };
        // The base64 lines of an armor without headers or CRC.
        let bodies: &[(&str, &str, Result<(), ArmorError>)] = &[
            ("plain", "aGVsbG8=", Ok(())),
            ("split lines", "aGVs\r\nbG8=", Ok(())),
            ("quad cut by a line break", "aGVsb\r\nG8=", Ok(())),
            // A line starting with `=` is the CRC line.
            ("padding alone on a line", "aGVsbG8\r\n=", Err(BadCrcLine)),
            ("bad char", "aGVs!bG8=", Err(BadBase64)),
            ("bad length", "aGVsbG8", Err(BadBase64)),
            ("inner padding", "aGU=aGVs", Err(BadBase64)),
            ("dirty bits", "aGVsbG9=", Err(BadBase64)),
            ("blank line inside", "aGVs\r\n\r\nbG8=", Err(BadBase64)),
            ("empty body", "", Err(Empty)),
            ("non-ascii", "aGVsbG8=\u{e9}", Err(NotAscii)),
        ];
        // The CRC lines after `aGVsbG8=`.
        let good_crc = crc_line(b"hello");
        let base64_after_crc = format!("{good_crc}aGVsbG8=\r\n");
        let crcs: &[(&str, &str, Result<(), ArmorError>)] = &[
            ("with crc", &good_crc, Ok(())),
            ("wrong crc", "=AAAA\r\n", Err(CrcMismatch)),
            ("long crc", "=4cf0a3\r\n", Err(BadCrcLine)),
            // The engine alone would decode it (to one byte).
            ("padded crc", "=aA==\r\n", Err(BadCrcLine)),
            ("base64 after crc", &base64_after_crc, Err(BadCrcLine)),
        ];
        let hello = armor("", "aGVsbG8=", "");
        let version = armor("Version: 1\r\n", "aGVsbG8=", "");
        let texts: &[(&str, String, bool, Result<(), ArmorError>)] = &[
            ("lf only", hello.replace("\r\n", "\n"), false, Ok(())),
            (
                "no blank line, no headers",
                format!("{BEGIN}\r\naGVsbG8=\r\n{END}\r\n"),
                false,
                Ok(()),
            ),
            (
                "leading and trailing blank lines",
                format!("\r\n{hello}\r\n\r\n"),
                false,
                Ok(()),
            ),
            (
                "version header outgoing",
                version.clone(),
                false,
                Err(HeadersForbidden),
            ),
            ("version header incoming", version, true, Ok(())),
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
                Err(BadBase64),
            ),
            (
                // Refused at the line after the padding, before the
                // missing END line is noticed.
                "data after padding, truncated",
                format!("{BEGIN}\r\n\r\naGU=\r\na\r\n"),
                false,
                Err(BadBase64),
            ),
            (
                "truncated",
                format!("{BEGIN}\r\n\r\naGVsbG8=\r\n"),
                false,
                Err(NoEnd),
            ),
            ("text before", format!("hi\r\n{hello}"), false, Err(NoBegin)),
            (
                "text after",
                format!("{hello}cleartext\r\n"),
                false,
                Err(TrailingData),
            ),
            (
                "second armor after",
                format!("{hello}{hello}"),
                false,
                Err(TrailingData),
            ),
            (
                "signature kind",
                hello.replace("MESSAGE", "SIGNATURE"),
                false,
                Err(NoBegin),
            ),
        ];
        let bodies = bodies
            .iter()
            .map(|&(name, body, want)| (name, armor("", body, ""), false, want));
        let crcs = crcs
            .iter()
            .map(|&(name, crc, want)| (name, armor("", "aGVsbG8=", crc), false, want));
        for (name, text, allow, want) in bodies.chain(crcs).chain(texts.iter().cloned()) {
            let got = dearmor(text.as_bytes(), allow);
            match want {
                Ok(()) => assert_eq!(got.as_deref(), Ok(&b"hello"[..]), "{name}"),
                Err(e) => assert_eq!(got, Err(e), "{name}"),
            }
        }
    }
}
