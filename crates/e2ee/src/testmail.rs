//! A generator of test messages for the encryption rules (feature
//! `testmail`; used by the unit tests, the milter tests and, through the
//! `make-test-mail` example, the integration tests against real Postfix).
//!
//! The encrypted cases are real OpenPGP/MIME messages (RFC 3156) encrypted
//! with sequoia to freshly generated v4 and v6 keys (RFC 9580); the hostile
//! cases alter them at the MIME, armor or packet level. Each case carries
//! the expected verdict for both directions; incoming expectations assume
//! every recipient enforces encryption.

use std::io::Write;
use std::path::Path;

use sequoia_openpgp as openpgp;

use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Signer};
use openpgp::types::Features;
use openpgp::{Cert, Profile};

use crate::armor::crc24;
use crate::packets::{self, Format, TAG_PKESK, TAG_SEIPD, TAG_SKESK};

/// The expected answer for one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// The milter accepts the message.
    Accept,
    /// The milter rejects it with a 5xx reply.
    Reject,
}

/// One generated message with its envelope and expectations.
#[derive(Debug, Clone)]
pub struct TestMail {
    /// Case name, also the file stem.
    pub name: String,
    /// Envelope sender (`""` = null sender).
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpt_to: Vec<String>,
    /// The message, CRLF line endings.
    pub raw: Vec<u8>,
    /// Expected verdict on authenticated submission.
    pub outgoing: Expect,
    /// Expected verdict on port 25, recipients enforcing encryption.
    pub incoming: Expect,
}

/// One line of `manifest.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManifestEntry<'a> {
    /// Case name.
    pub name: &'a str,
    /// File name inside the output directory.
    pub file: String,
    /// Expected verdict on submission.
    pub outgoing: Expect,
    /// Expected verdict on port 25.
    pub incoming: Expect,
    /// Envelope sender (`""` = `<>`).
    pub mail_from: &'a str,
    /// Envelope recipients.
    pub rcpt_to: &'a [String],
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Key generation or encryption failed.
    #[error("OpenPGP: {0}")]
    OpenPgp(String),
    /// Writing the output failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Writing the manifest failed.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn pgp<T>(r: openpgp::Result<T>) -> Result<T, Error> {
    r.map_err(|e| Error::OpenPgp(format!("{e:#}")))
}

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

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// ASCII-armors `data` as a `PGP MESSAGE` with CRLF lines of 64 characters.
pub fn armor(data: &[u8], headers: &[(&str, &str)], crc: Crc) -> String {
    let mut s = String::from("-----BEGIN PGP MESSAGE-----\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    let b64 = base64(data);
    for line in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(line).unwrap_or_default());
        s.push_str("\r\n");
    }
    let c = crc24(data);
    match crc {
        Crc::Correct => s.push_str(&format!("={}\r\n", &base64(&c.to_be_bytes()[1..]))),
        Crc::Missing => {}
        Crc::Wrong => s.push_str(&format!("={}\r\n", &base64(&(c ^ 1).to_be_bytes()[1..]))),
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

/// Key flavours for the encrypted cases.
#[derive(Debug, Clone, Copy)]
enum KeyKind {
    /// v4 key advertising SEIPDv1 only: sequoia writes PKESKv3 + SEIPDv1.
    V4Seipd1,
    /// v4 key advertising SEIPDv2: PKESKv6 + SEIPDv2.
    V4Seipd2,
    /// v6 key (RFC 9580 profile): PKESKv6 + SEIPDv2.
    V6,
}

fn gen_cert(addr: &str, kind: KeyKind) -> Result<Cert, Error> {
    let b =
        CertBuilder::general_purpose([format!("<{addr}>")]).set_cipher_suite(CipherSuite::Cv25519);
    let b = match kind {
        KeyKind::V4Seipd1 => pgp(b.set_features(Features::empty().set_seipdv1()))?,
        KeyKind::V4Seipd2 => pgp(b.set_features(Features::empty().set_seipdv1().set_seipdv2()))?,
        KeyKind::V6 => pgp(b.set_profile(Profile::RFC9580))?,
    };
    Ok(pgp(b.generate())?.0)
}

fn encrypt(certs: &[Cert], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let policy = StandardPolicy::new();
    let mut recipients = Vec::new();
    for cert in certs {
        let vc = pgp(cert.with_policy(&policy, None))?;
        recipients.extend(
            vc.keys()
                .supported()
                .alive()
                .revoked(false)
                .for_transport_encryption(),
        );
    }
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = pgp(Encryptor::for_recipients(message, recipients).build())?;
    let mut w = pgp(LiteralWriter::new(message).build())?;
    w.write_all(plaintext)?;
    pgp(w.finalize())?;
    Ok(sink)
}

fn encrypt_with_password(plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = pgp(Encryptor::with_passwords(message, Some("test-password")).build())?;
    let mut w = pgp(LiteralWriter::new(message).build())?;
    w.write_all(plaintext)?;
    pgp(w.finalize())?;
    Ok(sink)
}

fn sign_only(cert: &Cert, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
    let policy = StandardPolicy::new();
    let key = pgp(cert.with_policy(&policy, None))?
        .keys()
        .unencrypted_secret()
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .next()
        .ok_or_else(|| Error::OpenPgp("no signing key".into()))?
        .key()
        .clone();
    let keypair = pgp(key.into_keypair())?;
    let mut sink = Vec::new();
    let message = Message::new(&mut sink);
    let message = pgp(pgp(Signer::new(message, keypair))?.build())?;
    let mut w = pgp(LiteralWriter::new(message).build())?;
    w.write_all(plaintext)?;
    pgp(w.finalize())?;
    Ok(sink)
}

/// The top-level headers every case shares.
fn headers(from_header: &str, to: &[String], subject: &str, extra: &[(&str, &str)]) -> String {
    let mut s = format!(
        "From: <{from_header}>\r\nTo: {}\r\nSubject: {subject}\r\n\
         Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n\
         Message-ID: <{}@chatmail.test>\r\nMIME-Version: 1.0\r\n",
        to.iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", "),
        subject.replace(' ', "-").to_lowercase(),
    );
    for (k, v) in extra {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s
}

const BOUNDARY: &str = "xHxtestboundary0123456789";

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

fn multipart_mixed_text(text: &str) -> String {
    format!(
        "Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n\
         --{BOUNDARY}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --{BOUNDARY}--\r\n"
    )
}

/// Generates every case for envelope sender `from` and recipients `to`.
///
/// # Errors
/// [`Error::OpenPgp`] when key generation or encryption fails.
pub fn generate(from: &str, to: &[String]) -> Result<Vec<TestMail>, Error> {
    use Expect::{Accept, Reject};

    let inner = b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello from the test suite.\r\n";
    let mut keys = Vec::new();
    for kind in [KeyKind::V4Seipd1, KeyKind::V4Seipd2, KeyKind::V6] {
        let rcpt = gen_cert(to.first().map_or("rcpt@example.org", |s| s.as_str()), kind)?;
        let me = gen_cert(from, kind)?;
        keys.push((rcpt, me));
    }
    let encrypted: Vec<Vec<u8>> = keys
        .iter()
        .map(|(rcpt, me)| encrypt(&[rcpt.clone(), me.clone()], inner))
        .collect::<Result<_, _>>()?;
    let v4s1 = &encrypted[0];
    let v4s2 = &encrypted[1];
    let v6 = &encrypted[2];

    let hdr = |subject: &str| headers(from, to, subject, &[]);
    let mut out = Vec::new();
    let mut add = |name: &str, raw: String, outgoing: Expect, incoming: Expect| {
        out.push(TestMail {
            name: name.to_owned(),
            mail_from: from.to_owned(),
            rcpt_to: to.to_vec(),
            raw: raw.into_bytes(),
            outgoing,
            incoming,
        });
    };
    let enc = |data: &[u8]| PgpMime::new(armor(data, &[], Crc::Correct)).body();

    // Real encrypted mail.
    add(
        "encrypted-v4-seipdv1",
        hdr("...") + &enc(v4s1),
        Accept,
        Accept,
    );
    add(
        "encrypted-v4-seipdv2",
        hdr("...") + &enc(v4s2),
        Accept,
        Accept,
    );
    add(
        "encrypted-v6-seipdv2",
        hdr("...") + &enc(v6),
        Accept,
        Accept,
    );
    add(
        "encrypted-legacy-pkesk-headers",
        hdr("...") + &enc(&legacy_esk_headers(v4s1)),
        Accept,
        Accept,
    );
    add(
        "encrypted-password-skesk",
        hdr("...") + &enc(&encrypt_with_password(inner)?),
        Accept,
        Accept,
    );
    add(
        "encrypted-lf-line-endings",
        (hdr("...") + &enc(v6)).replace("\r\n", "\n"),
        Accept,
        Accept,
    );

    // Armor variants.
    let armored = |crc| PgpMime::new(armor(v6, &[], crc)).body();
    add(
        "crc-correct",
        hdr("...") + &armored(Crc::Correct),
        Accept,
        Accept,
    );
    add(
        "crc-missing",
        hdr("...") + &armored(Crc::Missing),
        Accept,
        Accept,
    );
    add(
        "crc-wrong",
        hdr("...") + &armored(Crc::Wrong),
        Reject,
        Reject,
    );
    add(
        "crc-malformed",
        hdr("...") + &armored(Crc::Malformed),
        Reject,
        Reject,
    );
    add(
        "armor-version-header",
        hdr("...") + &PgpMime::new(armor(v6, &[("Version", "GnuPG v2")], Crc::Correct)).body(),
        Reject,
        Accept,
    );
    let full = armor(v4s1, &[], Crc::Correct);
    add(
        "armor-truncated",
        hdr("...") + &PgpMime::new(full[..full.len() / 2].to_owned() + "\r\n").body(),
        Reject,
        Reject,
    );
    let mut bad = full.clone();
    // Replace a base64 character in the middle of the first body line.
    let pos = full.find("\r\n\r\n").unwrap_or(0) + 10;
    bad.replace_range(pos..pos + 1, "*");
    add(
        "armor-bad-base64",
        hdr("...") + &PgpMime::new(bad).body(),
        Reject,
        Reject,
    );
    add(
        "armor-cleartext-after-end",
        hdr("...") + &PgpMime::new(full.clone() + "Meet me at noon.\r\n").body(),
        Reject,
        Reject,
    );

    // Packet-level forgeries.
    let split = packets::split(v4s1).map_err(|e| Error::OpenPgp(e.to_string()))?;
    let esks: Vec<u8> = split
        .iter()
        .filter(|p| p.tag != TAG_SEIPD)
        .flat_map(|p| v4s1[p.range.clone()].to_vec())
        .collect();
    let seipd: Vec<u8> = split
        .iter()
        .filter(|p| p.tag == TAG_SEIPD)
        .flat_map(|p| v4s1[p.range.clone()].to_vec())
        .collect();
    let secret = b"Meet me at noon.";
    add(
        "literal-instead-of-seipd",
        hdr("...") + &enc(&literal_packet(secret)),
        Reject,
        Reject,
    );
    add(
        "pkesk-then-literal",
        hdr("...") + &enc(&[esks.clone(), literal_packet(secret)].concat()),
        Reject,
        Reject,
    );
    add(
        "trailing-literal-after-seipd",
        hdr("...") + &enc(&[v4s1.clone(), literal_packet(secret)].concat()),
        Reject,
        Reject,
    );
    add(
        "trailing-junk-after-seipd",
        hdr("...") + &enc(&[v4s1.as_slice(), b"Meet me at noon."].concat()),
        Reject,
        Reject,
    );
    add(
        "two-seipd",
        hdr("...") + &enc(&[v4s1.clone(), seipd.clone()].concat()),
        Reject,
        Reject,
    );
    let compressed = packet(8, &[&[0u8][..], &literal_packet(secret)].concat());
    add(
        "compressed-packet",
        hdr("...") + &enc(&[esks.clone(), compressed].concat()),
        Reject,
        Reject,
    );
    add(
        "sed-without-integrity",
        hdr("...") + &enc(&[esks, packet(9, &[0x42; 64])].concat()),
        Reject,
        Reject,
    );
    add(
        "signed-only",
        hdr("...") + &enc(&sign_only(&keys[0].1, secret)?),
        Reject,
        Reject,
    );

    // MIME-level forgeries.
    add(
        "cleartext",
        hdr("hello") + "Content-Type: text/plain; charset=utf-8\r\n\r\nMeet me at noon.\r\n",
        Reject,
        Reject,
    );
    add(
        "fake-encrypted-cleartext-body",
        hdr("...") + &PgpMime::new("Meet me at noon.\r\n".to_owned()).body(),
        Reject,
        Reject,
    );
    let mut three = PgpMime::new(armor(v6, &[], Crc::Correct));
    three.extra_part = Some("Meet me at noon.");
    add("three-parts", hdr("...") + &three.body(), Reject, Reject);
    let mut nested = PgpMime::new(armor(v6, &[], Crc::Correct));
    nested.nest_payload = true;
    add(
        "nested-multipart",
        hdr("...") + &nested.body(),
        Reject,
        Reject,
    );
    let mut wrong_first = PgpMime::new(armor(v6, &[], Crc::Correct));
    wrong_first.version_part_type = "text/plain";
    add(
        "wrong-first-part",
        hdr("...") + &wrong_first.body(),
        Reject,
        Reject,
    );
    let mut wrong_version = PgpMime::new(armor(v6, &[], Crc::Correct));
    wrong_version.version_body = "Version: 2";
    add(
        "wrong-version-body",
        hdr("...") + &wrong_version.body(),
        Reject,
        Reject,
    );

    // Secure-Join.
    let sj = |header: &str, body: &str| {
        headers(
            from,
            to,
            "Message from Delta Chat",
            &[("Secure-Join", header)],
        ) + &multipart_mixed_text(body)
    };
    add(
        "securejoin-vc-request",
        sj("vc-request", "Secure-Join: vc-request"),
        Accept,
        Accept,
    );
    add(
        "securejoin-vg-request",
        sj("vg-request", "Secure-Join: vg-request"),
        Accept,
        Accept,
    );
    add(
        "securejoin-fake-body",
        sj("vc-request", "Meet me at noon."),
        Reject,
        Reject,
    );
    add(
        "securejoin-vc-request-with-auth-cleartext",
        sj("vc-request-with-auth", "Secure-Join: vc-request-with-auth"),
        Reject,
        Reject,
    );

    // From header.
    let other = format!(
        "someone-else@{}",
        from.rsplit_once('@').map_or("x", |d| d.1)
    );
    add(
        "from-header-mismatch",
        headers(&other, to, "...", &[]) + &enc(v6),
        Reject,
        Accept,
    );

    // Bounces.
    let domain = from.rsplit_once('@').map_or("example.org", |d| d.1);
    let daemon = format!("MAILER-DAEMON@{domain}");
    let report = format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n \
         boundary=\"{BOUNDARY}\"\r\n\r\n--{BOUNDARY}\r\n\
         Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
         --{BOUNDARY}\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; {domain}\r\n\r\nFinal-Recipient: rfc822; {}\r\n\
         Action: failed\r\nStatus: 5.1.1\r\n\r\n--{BOUNDARY}--\r\n",
        to.first().map_or("x@example.org", |s| s.as_str())
    );
    let bounce = headers(
        &daemon,
        to,
        "Undelivered Mail Returned to Sender",
        &[("Auto-Submitted", "auto-replied")],
    ) + &report;
    add("bounce-with-sender", bounce.clone(), Reject, Reject);
    out.push(TestMail {
        name: "bounce-null-sender".into(),
        mail_from: String::new(),
        rcpt_to: to.to_vec(),
        raw: bounce.into_bytes(),
        outgoing: Reject,
        incoming: Accept,
    });

    // Autocrypt Setup Message.
    let asm_body = format!(
        "Autocrypt-Setup-Message: v1\r\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n\
         --{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nThis is the Autocrypt Setup Message.\r\n\
         --{BOUNDARY}\r\nContent-Type: application/autocrypt-setup\r\n\
         Content-Disposition: attachment; filename=\"autocrypt-setup-message.html\"\r\n\r\n\
         <html><body><pre>\r\n{}</pre></body></html>\r\n--{BOUNDARY}--\r\n",
        armor(
            &encrypt_with_password(b"secret key")?,
            &[("Passphrase-Format", "numeric9x4")],
            Crc::Correct
        )
    );
    let me = vec![from.to_owned()];
    out.push(TestMail {
        name: "autocrypt-setup-self".into(),
        mail_from: from.to_owned(),
        rcpt_to: me.clone(),
        raw: (headers(from, &me, "Autocrypt Setup Message", &[]) + &asm_body).into_bytes(),
        outgoing: Accept,
        incoming: Reject,
    });
    out.push(TestMail {
        name: "autocrypt-setup-to-other".into(),
        mail_from: from.to_owned(),
        rcpt_to: to.to_vec(),
        raw: (headers(from, to, "Autocrypt Setup Message", &[]) + &asm_body).into_bytes(),
        outgoing: Reject,
        incoming: Reject,
    });
    // Distinct Message-IDs, so nothing downstream mistakes a case for a duplicate.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for m in &mut out {
        let raw = String::from_utf8_lossy(&m.raw).into_owned();
        if let Some(start) = raw.find("Message-ID: <")
            && let Some(len) = raw[start..].find('>')
        {
            let id = format!("Message-ID: <{}.{stamp}@chatmail.test", m.name);
            m.raw = format!("{}{id}{}", &raw[..start], &raw[start + len..]).into_bytes();
        }
    }
    Ok(out)
}

/// Writes each case to `dir/<name>.eml` and the list to `dir/manifest.json`.
///
/// # Errors
/// I/O errors creating the directory or writing the files.
pub fn write_dir(mails: &[TestMail], dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let mut manifest = Vec::new();
    for m in mails {
        let file = format!("{}.eml", m.name);
        std::fs::write(dir.join(&file), &m.raw)?;
        manifest.push(ManifestEntry {
            name: &m.name,
            file,
            outgoing: m.outgoing,
            incoming: m.incoming,
            mail_from: &m.mail_from,
            rcpt_to: &m.rcpt_to,
        });
    }
    let mut json = serde_json::to_vec_pretty(&manifest)?;
    json.push(b'\n');
    std::fs::write(dir.join("manifest.json"), json)?;
    Ok(())
}
