//! Encrypted mail: real OpenPGP/MIME messages as clients write them, and
//! their hostile variants at the armor, packet and MIME level (a wrong CRC,
//! a literal packet instead of the encrypted one, a third part, a From
//! that is not the sender).

use super::Expect::{Accept, Reject};
use super::material::Material;
use super::wire::{Crc, armor, legacy_esk_headers, literal_packet, packet};
use super::{BOUNDARY, Cases, Error, SECRET, headers};
use crate::packets::{self, TAG_SEIPD};

/// The two parts of RFC 3156, with optional tweaks.
struct PgpMime<'a> {
    version_part_type: &'a str,
    version_body: &'a str,
    payload: String,
    extra_part: Option<&'a str>,
    nest_payload: bool,
}

impl<'a> PgpMime<'a> {
    fn new(payload: String) -> PgpMime<'a> {
        PgpMime {
            version_part_type: "application/pgp-encrypted",
            version_body: "Version: 1",
            payload,
            extra_part: None,
            nest_payload: false,
        }
    }

    fn body(&self) -> String {
        let b = BOUNDARY;
        let mut s = format!(
            "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n \
             boundary=\"{b}\"\r\n\r\n\
             This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n\
             --{b}\r\nContent-Type: {}\r\nContent-Description: PGP/MIME version identification\r\n\r\n\
             {}\r\n\r\n--{b}\r\n",
            self.version_part_type, self.version_body
        );
        let payload_part = format!(
            "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\
             Content-Description: OpenPGP encrypted message\r\n\
             Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n{}",
            self.payload
        );
        if self.nest_payload {
            let inner = "innerboundary42";
            s.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=\"{inner}\"\r\n\r\n\
                 --{inner}\r\n{payload_part}\r\n--{inner}--\r\n"
            ));
        } else {
            s.push_str(&payload_part);
        }
        if let Some(extra) = self.extra_part {
            s.push_str(&format!(
                "\r\n--{b}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{extra}\r\n"
            ));
        }
        s.push_str(&format!("\r\n--{b}--\r\n"));
        s
    }
}

/// The OpenPGP/MIME body around `data`, armored with its CRC.
pub(super) fn encrypted_body(data: &[u8]) -> String {
    PgpMime::new(armor(data, &[], Crc::Correct)).body()
}

/// Real encrypted mail, as clients write it.
pub(super) fn encrypted_cases(c: &mut Cases<'_>, m: &Material) {
    let legacy = legacy_esk_headers(&m.v4_seipd1);
    let real: [(&str, &[u8]); 5] = [
        ("encrypted-v4-seipdv1", &m.v4_seipd1),
        ("encrypted-v4-seipdv2", &m.v4_seipd2),
        ("encrypted-v6-seipdv2", &m.v6),
        ("encrypted-legacy-pkesk-headers", &legacy),
        ("encrypted-password-skesk", &m.password),
    ];
    for (name, data) in real {
        c.add(name, c.encrypted(&encrypted_body(data)), Accept, Accept);
    }
    let lf = c.encrypted(&encrypted_body(&m.v6)).replace("\r\n", "\n");
    c.add("encrypted-lf-line-endings", lf, Accept, Accept);
}

/// Variants of the ASCII armor.
pub(super) fn armor_cases(c: &mut Cases<'_>, m: &Material) {
    let armored = |c: &Cases<'_>, data: &[u8], headers: &[(&str, &str)], crc| {
        c.encrypted(&PgpMime::new(armor(data, headers, crc)).body())
    };
    for (name, crc, expect) in [
        ("crc-correct", Crc::Correct, Accept),
        ("crc-missing", Crc::Missing, Accept),
        ("crc-wrong", Crc::Wrong, Reject),
        ("crc-malformed", Crc::Malformed, Reject),
    ] {
        let raw = armored(c, &m.v6, &[], crc);
        c.add(name, raw, expect, expect);
    }
    let raw = armored(c, &m.v6, &[("Version", "GnuPG v2")], Crc::Correct);
    c.add("armor-version-header", raw, Reject, Accept);

    let full = armor(&m.v4_seipd1, &[], Crc::Correct);
    let mut bad = full.clone();
    // Replace a base64 character in the middle of the first body line.
    let pos = full.find("\r\n\r\n").unwrap_or(0) + 10;
    bad.replace_range(pos..pos + 1, "*");
    for (name, payload) in [
        (
            "armor-truncated",
            full[..full.len() / 2].to_owned() + "\r\n",
        ),
        ("armor-bad-base64", bad),
        ("armor-cleartext-after-end", format!("{full}{SECRET}\r\n")),
    ] {
        let raw = c.encrypted(&PgpMime::new(payload).body());
        c.add(name, raw, Reject, Reject);
    }
}

/// Packet sequences that are not one encrypted message, armored correctly.
pub(super) fn packet_cases(c: &mut Cases<'_>, m: &Material) -> Result<(), Error> {
    let v4s1 = &m.v4_seipd1;
    let split = packets::split(v4s1).map_err(|e| Error::OpenPgp(e.to_string()))?;
    let packets_where = |keep: fn(u8) -> bool| -> Vec<u8> {
        split
            .iter()
            .filter(|p| keep(p.tag))
            .flat_map(|p| v4s1[p.range.clone()].to_vec())
            .collect()
    };
    let esks = packets_where(|tag| tag != TAG_SEIPD);
    let seipd = packets_where(|tag| tag == TAG_SEIPD);
    let literal = literal_packet(SECRET.as_bytes());
    let compressed = packet(8, &[&[0u8][..], &literal].concat());
    for (name, data) in [
        ("literal-instead-of-seipd", literal.clone()),
        ("pkesk-then-literal", [&esks[..], &literal].concat()),
        (
            "trailing-literal-after-seipd",
            [&v4s1[..], &literal].concat(),
        ),
        (
            "trailing-junk-after-seipd",
            [&v4s1[..], SECRET.as_bytes()].concat(),
        ),
        ("two-seipd", [&v4s1[..], &seipd].concat()),
        ("compressed-packet", [&esks[..], &compressed].concat()),
        (
            "sed-without-integrity",
            [esks.clone(), packet(9, &[0x42; 64])].concat(),
        ),
        ("signed-only", m.signed.clone()),
    ] {
        c.add(name, c.encrypted(&encrypted_body(&data)), Reject, Reject);
    }
    Ok(())
}

/// Cleartext, and `multipart/encrypted` of the wrong shape.
pub(super) fn mime_cases(c: &mut Cases<'_>, m: &Material) {
    let cleartext = headers(c.from, c.to, "hello", &[])
        + &format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{SECRET}\r\n");
    c.add("cleartext", cleartext, Reject, Reject);
    let fake = c.encrypted(&PgpMime::new(format!("{SECRET}\r\n")).body());
    c.add("fake-encrypted-cleartext-body", fake, Reject, Reject);
    type Tweak = fn(&mut PgpMime<'_>);
    let tweaks: [(&str, Tweak); 4] = [
        ("three-parts", |p| p.extra_part = Some(SECRET)),
        ("nested-multipart", |p| p.nest_payload = true),
        ("wrong-first-part", |p| p.version_part_type = "text/plain"),
        ("wrong-version-body", |p| p.version_body = "Version: 2"),
    ];
    for (name, tweak) in tweaks {
        let mut mime = PgpMime::new(armor(&m.v6, &[], Crc::Correct));
        tweak(&mut mime);
        c.add(name, c.encrypted(&mime.body()), Reject, Reject);
    }
}

/// Encrypted mail whose From header is not the envelope sender.
pub(super) fn from_header_cases(c: &mut Cases<'_>, m: &Material) {
    let domain = c.from.rsplit_once('@').map_or("x", |d| d.1);
    let other = format!("someone-else@{domain}");
    let raw = headers(&other, c.to, "...", &[]) + &encrypted_body(&m.v6);
    c.add("from-header-mismatch", raw, Reject, Accept);
}

#[cfg(test)]
mod tests {
    /// The generated encrypted mail really has the packet shapes it claims.
    #[test]
    fn generated_packet_shapes() {
        use crate::packets::{Format, TAG_PKESK, TAG_SEIPD, split};
        use crate::testmail::generate;
        use crate::{armor, parse};
        let to = [String::from("bob@other.example")];
        let mails = generate("alice@chat.example", &to).unwrap();
        let payload = |name: &str| {
            let m = mails.iter().find(|m| m.name == name).unwrap();
            let msg = parse(&m.raw).unwrap();
            let part = &msg.parts[2];
            let data = armor::dearmor(part.contents(), true).unwrap();
            split(&data).unwrap()
        };
        let v1 = payload("encrypted-v4-seipdv1");
        assert_eq!(v1.iter().filter(|p| p.tag == TAG_PKESK).count(), 2);
        assert_eq!(v1.last().unwrap().first_body_octet, Some(1));
        assert!(v1.iter().all(|p| p.format == Format::OpenPgp));
        let v2 = payload("encrypted-v4-seipdv2");
        assert_eq!(v2.last().unwrap().first_body_octet, Some(2));
        let v6 = payload("encrypted-v6-seipdv2");
        assert_eq!(v6.last().unwrap().tag, TAG_SEIPD);
        assert_eq!(v6.last().unwrap().first_body_octet, Some(2));
        // PKESK v6 for the v6 keys.
        assert!(
            v6.iter()
                .filter(|p| p.tag == TAG_PKESK)
                .all(|p| p.first_body_octet == Some(6))
        );
        let legacy = payload("encrypted-legacy-pkesk-headers");
        let esks: Vec<_> = legacy.iter().filter(|p| p.tag == TAG_PKESK).collect();
        assert_eq!(esks.len(), 2);
        assert!(esks.iter().all(|p| p.format == Format::Legacy));
    }
}
