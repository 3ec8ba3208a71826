//! OpenPGP packet framing (RFC 9580 section 4.2, "Packet Headers"), read
//! only as far as needed to tell an encrypted message from anything else.
//!
//! We never decrypt and never parse packet bodies beyond the SEIPD version
//! octet: a header-only walk accepts every present and future public-key
//! algorithm, so a client upgrading its crypto cannot be locked out by the
//! relay, while a cleartext payload (literal, compressed, signed data) can
//! never be framed as "session keys followed by one SEIPD".

use std::ops::Range;

/// Public-Key Encrypted Session Key packet.
pub const TAG_PKESK: u8 = 1;
/// Symmetric-Key Encrypted Session Key packet.
pub const TAG_SKESK: u8 = 3;
/// Symmetrically Encrypted and Integrity Protected Data packet.
pub const TAG_SEIPD: u8 = 18;

/// How a packet's header was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The OpenPGP (new) format: CTB `0b11tttttt`.
    OpenPgp,
    /// The legacy (old) format: CTB `0b10ttttll`, tags 0 to 15 only.
    /// GnuPG still writes it for PKESK and SKESK packets.
    Legacy,
}

/// One packet as found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The packet type id.
    pub tag: u8,
    /// The header format.
    pub format: Format,
    /// Whether the body used partial body lengths (only legal for data packets).
    pub partial: bool,
    /// Where the whole packet (header and body) lies in the input.
    pub range: Range<usize>,
    /// The first body octet (the version of most packet types), if the body is not empty.
    pub first_body_octet: Option<u8>,
}

/// Why a byte string is not a sequence of well-framed packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    /// A CTB without its top bit set.
    #[error("invalid packet tag octet at offset {0}")]
    BadCtb(usize),
    /// A header or body runs past the end of the data.
    #[error("packet at offset {0} is truncated")]
    Truncated(usize),
    /// The legacy "indeterminate length" is not accepted: it makes the end
    /// of the packet depend on the end of the armor, which is exactly what a
    /// smuggler would want to blur.
    #[error("packet at offset {0} has an indeterminate length")]
    Indeterminate(usize),
}

/// Splits `data` into packets without looking into their bodies.
///
/// # Errors
/// A [`FramingError`] when any packet is malformed or truncated.
pub fn split(data: &[u8]) -> Result<Vec<Packet>, FramingError> {
    let mut packets = Vec::new();
    let mut i = 0;
    while i < data.len() {
        let packet = next_packet(data, i)?;
        i = packet.range.end;
        packets.push(packet);
    }
    Ok(packets)
}

/// The packet starting at `i`, which is within `data`.
fn next_packet(data: &[u8], mut i: usize) -> Result<Packet, FramingError> {
    let start = i;
    let ctb = data[i];
    i += 1;
    if ctb & 0x80 == 0 {
        return Err(FramingError::BadCtb(start));
    }
    let truncated = FramingError::Truncated(start);
    let byte = |at: usize| data.get(at).copied().ok_or(truncated);
    let mut partial = false;
    let mut body_start = None;
    let (tag, format) = if ctb & 0x40 != 0 {
        // New format: a chain of partial lengths ends with a definite one.
        let tag = ctb & 0x3f;
        loop {
            let first = byte(i)?;
            let len = match first {
                0..=191 => {
                    i += 1;
                    usize::from(first)
                }
                192..=223 => {
                    let second = byte(i + 1)?;
                    i += 2;
                    ((usize::from(first) - 192) << 8) + usize::from(second) + 192
                }
                224..=254 => {
                    i += 1;
                    partial = true;
                    body_start.get_or_insert(i);
                    let chunk = 1usize << (first & 0x1f);
                    i = i
                        .checked_add(chunk)
                        .filter(|&e| e <= data.len())
                        .ok_or(truncated)?;
                    continue;
                }
                255 => {
                    let b = [byte(i + 1)?, byte(i + 2)?, byte(i + 3)?, byte(i + 4)?];
                    i += 5;
                    usize::try_from(u32::from_be_bytes(b)).map_err(|_| truncated)?
                }
            };
            body_start.get_or_insert(i);
            i = i
                .checked_add(len)
                .filter(|&e| e <= data.len())
                .ok_or(truncated)?;
            break;
        }
        (tag, Format::OpenPgp)
    } else {
        let tag = (ctb >> 2) & 0x0f;
        let len = match ctb & 0x03 {
            0 => {
                let l = usize::from(byte(i)?);
                i += 1;
                l
            }
            1 => {
                let l = usize::from(u16::from_be_bytes([byte(i)?, byte(i + 1)?]));
                i += 2;
                l
            }
            2 => {
                let b = [byte(i)?, byte(i + 1)?, byte(i + 2)?, byte(i + 3)?];
                i += 4;
                usize::try_from(u32::from_be_bytes(b)).map_err(|_| truncated)?
            }
            _ => return Err(FramingError::Indeterminate(start)),
        };
        body_start = Some(i);
        i = i
            .checked_add(len)
            .filter(|&e| e <= data.len())
            .ok_or(truncated)?;
        (tag, Format::Legacy)
    };
    let first_body_octet = body_start.filter(|&b| b < i).map(|b| data[b]);
    Ok(Packet {
        tag,
        format,
        partial,
        range: start..i,
        first_body_octet,
    })
}

/// Whether `data` is an encrypted OpenPGP message in the narrow sense we
/// accept: zero or more PKESK/SKESK packets, then exactly one SEIPD packet
/// of version 1 or 2, and nothing after it.
///
/// Partial body lengths are only accepted on the SEIPD, as RFC 9580 allows
/// them only for data packets.
pub fn is_encrypted_message(data: &[u8]) -> bool {
    // One packet at a time rather than `split`: data of many tiny packets
    // would cost a `Packet` per two bytes.
    let mut i = 0;
    let mut seipd = None;
    while i < data.len() {
        let Ok(p) = next_packet(data, i) else {
            return false;
        };
        i = p.range.end;
        if seipd.is_some() {
            // Something after the SEIPD.
            return false;
        }
        if p.tag == TAG_SEIPD {
            seipd = Some(p);
        } else if !matches!(p.tag, TAG_PKESK | TAG_SKESK) || p.partial {
            return false;
        }
    }
    seipd.is_some_and(|last| matches!(last.first_body_octet, Some(1 | 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_hdr(tag: u8, body: &[u8]) -> Vec<u8> {
        assert!(body.len() < 192);
        let mut v = vec![0xc0 | tag, u8::try_from(body.len()).unwrap()];
        v.extend_from_slice(body);
        v
    }

    fn old_hdr(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80 | (tag << 2), u8::try_from(body.len()).unwrap()];
        v.extend_from_slice(body);
        v
    }

    fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
        parts.concat()
    }

    #[test]
    fn case_table() {
        let pkesk = new_hdr(TAG_PKESK, &[3, 1, 2, 3]);
        let pkesk_old = old_hdr(TAG_PKESK, &[3, 1, 2, 3]);
        let skesk = new_hdr(TAG_SKESK, &[4, 9]);
        let skesk_old = old_hdr(TAG_SKESK, &[4, 9]);
        let seipd1 = new_hdr(TAG_SEIPD, &[1, 0xaa, 0xbb]);
        let seipd2 = new_hdr(TAG_SEIPD, &[2, 0xaa, 0xbb]);
        let seipd3 = new_hdr(TAG_SEIPD, &[3, 0xaa]);
        let literal = new_hdr(11, b"b\0\0\0\0\0hi");
        let compressed = new_hdr(8, &[0, 1, 2]);
        let sed = new_hdr(9, &[1, 2, 3]);
        let marker = new_hdr(10, b"PGP");
        let padding = new_hdr(21, &[0, 0]);
        let cases: &[(&str, Vec<u8>, bool)] = &[
            ("pkesk+seipd1", cat(&[pkesk.clone(), seipd1.clone()]), true),
            ("pkesk+seipd2", cat(&[pkesk.clone(), seipd2.clone()]), true),
            ("bare seipd", seipd1.clone(), true),
            (
                "legacy pkesk+skesk",
                cat(&[pkesk_old.clone(), skesk_old, seipd2.clone()]),
                true,
            ),
            (
                "two pkesk+skesk",
                cat(&[pkesk.clone(), pkesk.clone(), skesk, seipd1.clone()]),
                true,
            ),
            ("empty", vec![], false),
            ("only pkesk", pkesk.clone(), false),
            ("seipd v3", cat(&[pkesk.clone(), seipd3]), false),
            ("literal", literal.clone(), false),
            (
                "pkesk+literal",
                cat(&[pkesk.clone(), literal.clone()]),
                false,
            ),
            ("compressed", cat(&[pkesk.clone(), compressed]), false),
            ("sed", cat(&[pkesk.clone(), sed]), false),
            ("marker first", cat(&[marker, seipd1.clone()]), false),
            ("two seipd", cat(&[seipd1.clone(), seipd1.clone()]), false),
            ("trailing literal", cat(&[seipd1.clone(), literal]), false),
            ("trailing padding", cat(&[seipd1.clone(), padding]), false),
            ("trailing junk", cat(&[seipd1.clone(), vec![0x00]]), false),
            (
                "seipd then pkesk",
                cat(&[seipd1.clone(), pkesk.clone()]),
                false,
            ),
            ("truncated body", seipd1[..seipd1.len() - 1].to_vec(), false),
            ("truncated header", vec![0xc0 | TAG_SEIPD], false),
            ("bad ctb", vec![0x3f, 0x00], false),
            ("empty seipd", vec![0xc0 | TAG_SEIPD, 0], false),
            (
                "indeterminate legacy",
                vec![0x80 | (TAG_PKESK << 2) | 3, 3],
                false,
            ),
        ];
        for (name, data, want) in cases {
            assert_eq!(is_encrypted_message(data), *want, "{name}");
        }
    }

    #[test]
    fn length_encodings() {
        // Two-octet length: 192..8383.
        let mut body = vec![1u8];
        body.resize(300, 7);
        let l = body.len() - 192;
        let mut two = vec![0xc0 | TAG_SEIPD, u8::try_from((l >> 8) + 192).unwrap()];
        two.push(u8::try_from(l & 0xff).unwrap());
        two.extend_from_slice(&body);
        assert!(is_encrypted_message(&two));

        // Five-octet length.
        let mut five = vec![0xc0 | TAG_SEIPD, 255];
        five.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes());
        five.extend_from_slice(&body);
        assert!(is_encrypted_message(&five));
        // ... claiming more than there is.
        let mut lying = five.clone();
        lying[5] = 0xff;
        assert!(!is_encrypted_message(&lying));

        // Legacy two- and four-octet lengths on a PKESK.
        let mut old2 = vec![0x80 | (TAG_PKESK << 2) | 1, 0, 2, 3, 0];
        old2.extend_from_slice(&[0xc0 | TAG_SEIPD, 1, 1]);
        assert!(is_encrypted_message(&old2));
        let mut old4 = vec![0x80 | (TAG_PKESK << 2) | 2, 0, 0, 0, 1, 3];
        old4.extend_from_slice(&[0xc0 | TAG_SEIPD, 1, 2]);
        assert!(is_encrypted_message(&old4));
    }

    #[test]
    fn partial_lengths() {
        // 512-octet partial chunk (0xe9 = 224 + 9), then a final 3-octet part.
        let mut seipd = vec![0xc0 | TAG_SEIPD, 0xe9, 2];
        seipd.resize(2 + 512, 0x55);
        seipd.extend_from_slice(&[3, 1, 2, 3]);
        assert!(is_encrypted_message(&seipd));
        let p = split(&seipd).unwrap();
        assert!(p[0].partial);
        assert_eq!(p[0].first_body_octet, Some(2));

        // Partial lengths on a PKESK are illegal.
        let mut pkesk = vec![0xc0 | TAG_PKESK, 0xe9, 3];
        pkesk.resize(2 + 512, 0);
        pkesk.push(0);
        let mut msg = pkesk;
        msg.extend_from_slice(&[0xc0 | TAG_SEIPD, 1, 1]);
        assert!(!is_encrypted_message(&msg));

        // A partial chunk running past the end.
        assert!(!is_encrypted_message(&[0xc0 | TAG_SEIPD, 0xe9, 1, 2]));
        // A chain of partial chunks that never ends.
        let mut endless = vec![0xc0 | TAG_SEIPD, 0xe0, 1];
        endless.extend_from_slice(&[0xe0, 1]);
        assert!(!is_encrypted_message(&endless));
    }
}
