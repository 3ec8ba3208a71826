//! The byte-level writers of the generator: ASCII armor with any CRC line,
//! OpenPGP packets, and the legacy packet headers GnuPG writes. Public, so
//! that tests elsewhere build stand-in payloads the same way.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::armor::crc24;
use crate::packets::{self, Format, TAG_PKESK, TAG_SKESK};

/// How to write the CRC24 line of an armor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crc {
    /// The right checksum.
    Correct,
    /// No CRC line (RFC 9580 style).
    Missing,
    /// A well-formed line with the wrong checksum.
    Wrong,
    /// `=` followed by six characters.
    Malformed,
}

/// ASCII-armors `data` as a `PGP MESSAGE` with CRLF lines of 64 characters.
pub fn armor(data: &[u8], headers: &[(&str, &str)], crc: Crc) -> String {
    let mut s = String::from("-----BEGIN PGP MESSAGE-----\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    let b64 = STANDARD.encode(data);
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push_str("\r\n");
    }
    let c = crc24(data);
    match crc {
        Crc::Correct => s.push_str(&format!("={}\r\n", &STANDARD.encode(&c.to_be_bytes()[1..]))),
        Crc::Missing => {}
        Crc::Wrong => s.push_str(&format!(
            "={}\r\n",
            &STANDARD.encode(&(c ^ 1).to_be_bytes()[1..])
        )),
        Crc::Malformed => s.push_str("=4cf0a3\r\n"),
    }
    s.push_str("-----END PGP MESSAGE-----\r\n");
    s
}

/// A new-format packet with a definite length.
pub fn packet(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xc0 | tag];
    match body.len() {
        n @ 0..=191 => v.push(n as u8),
        n @ 192..=8383 => {
            let n = n - 192;
            v.push(((n >> 8) + 192) as u8);
            v.push((n & 0xff) as u8);
        }
        n => {
            v.push(255);
            v.extend_from_slice(&(n as u32).to_be_bytes());
        }
    }
    v.extend_from_slice(body);
    v
}

/// A literal data packet (tag 11) holding `text`.
pub fn literal_packet(text: &[u8]) -> Vec<u8> {
    let mut body = vec![b'b', 0, 0, 0, 0, 0];
    body.extend_from_slice(text);
    packet(11, &body)
}

/// Rewrites every PKESK/SKESK header in the legacy format, as GnuPG does.
pub fn legacy_esk_headers(data: &[u8]) -> Vec<u8> {
    let Ok(found) = packets::split(data) else {
        return data.to_vec();
    };
    let mut out = Vec::with_capacity(data.len());
    for p in found {
        let whole = &data[p.range.clone()];
        if !matches!(p.tag, TAG_PKESK | TAG_SKESK) || p.format == Format::Legacy || p.partial {
            out.extend_from_slice(whole);
            continue;
        }
        // Re-derive the body: it follows the new-format length octets.
        let hdr_len = match whole[1] {
            0..=191 => 2,
            192..=223 => 3,
            _ => 6,
        };
        let body = &whole[hdr_len..];
        let ctb = 0x80 | (p.tag << 2);
        if let Ok(n) = u8::try_from(body.len()) {
            out.extend_from_slice(&[ctb, n]);
        } else if let Ok(n) = u16::try_from(body.len()) {
            out.push(ctb | 1);
            out.extend_from_slice(&n.to_be_bytes());
        } else {
            out.push(ctb | 2);
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        }
        out.extend_from_slice(body);
    }
    out
}
