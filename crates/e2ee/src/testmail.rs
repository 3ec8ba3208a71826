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

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sequoia_openpgp as openpgp;

use openpgp::cert::{CertBuilder, CipherSuite};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message, Signer};
use openpgp::types::Features;
use openpgp::{Cert, Profile};

use Expect::{Accept, Reject};

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
    /// How `mail-parser`, the parser the rules act on, reads the top
    /// level; `None` when it finds no header at all.
    pub top_level: Option<TopLevel>,
}

/// The top-level MIME structure as one parser reads it, for comparison
/// with an independent parser.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TopLevel {
    /// The root's lower-cased `type/subtype`.
    pub content_type: String,
    /// The types of the root's direct parts, when it is a multipart.
    pub parts: Option<Vec<String>>,
}

/// How `mail-parser` reads the top level of `raw`.
pub fn top_level(raw: &[u8]) -> Option<TopLevel> {
    use crate::structure::parsed_type;
    let msg = crate::parse(raw)?;
    let root = msg.parts.first()?;
    let parts = match &root.body {
        mail_parser::PartType::Multipart(ids) => Some(
            ids.iter()
                .filter_map(|&id| msg.parts.get(usize::try_from(id).ok()?))
                .map(parsed_type)
                .collect(),
        ),
        _ => None,
    };
    Some(TopLevel {
        content_type: parsed_type(root),
        parts,
    })
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

/// What makes each run of the generator different: ciphertexts and a
/// signature made with freshly generated keys. Everything else is built
/// from these bytes and the envelope, deterministically.
struct Material {
    /// Encrypted to v4 keys advertising SEIPDv1 only.
    v4_seipd1: Vec<u8>,
    /// Encrypted to v4 keys advertising SEIPDv2.
    v4_seipd2: Vec<u8>,
    /// Encrypted to v6 keys.
    v6: Vec<u8>,
    /// Encrypted with a password (SKESK).
    password: Vec<u8>,
    /// Signed, not encrypted.
    signed: Vec<u8>,
    /// The secret of the Autocrypt Setup Message, encrypted with a password.
    setup_secret: Vec<u8>,
}

/// The plaintext of every encrypted case.
const INNER: &[u8] =
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nHello from the test suite.\r\n";

/// The cleartext that hostile cases smuggle.
const SECRET: &str = "Meet me at noon.";

impl Material {
    fn new(from: &str, to: &[String]) -> Result<Material, Error> {
        let rcpt = to.first().map_or("rcpt@example.org", |s| s.as_str());
        let mut keys = Vec::new();
        for kind in [KeyKind::V4Seipd1, KeyKind::V4Seipd2, KeyKind::V6] {
            keys.push((gen_cert(rcpt, kind)?, gen_cert(from, kind)?));
        }
        let [v4_seipd1, v4_seipd2, v6] = [0, 1, 2].map(|i| {
            let (rcpt, me) = &keys[i];
            encrypt(&[rcpt.clone(), me.clone()], INNER)
        });
        Ok(Material {
            v4_seipd1: v4_seipd1?,
            v4_seipd2: v4_seipd2?,
            v6: v6?,
            password: encrypt_with_password(INNER)?,
            signed: sign_only(&keys[0].1, SECRET.as_bytes())?,
            setup_secret: encrypt_with_password(b"secret key")?,
        })
    }
}

/// Generates every case for envelope sender `from` and recipients `to`.
///
/// # Errors
/// [`Error::OpenPgp`] when key generation or encryption fails.
pub fn generate(from: &str, to: &[String]) -> Result<Vec<TestMail>, Error> {
    let mut out = cases(from, to, &Material::new(from, to)?)?;
    stamp_message_ids(&mut out);
    Ok(out)
}

/// Every case, built from `m`: the same material gives the same bytes.
fn cases(from: &str, to: &[String], m: &Material) -> Result<Vec<TestMail>, Error> {
    let mut c = Cases {
        from,
        to,
        out: Vec::new(),
    };
    encrypted_cases(&mut c, m);
    armor_cases(&mut c, m);
    packet_cases(&mut c, m)?;
    mime_cases(&mut c, m);
    securejoin_cases(&mut c);
    for (name, raw, outgoing, incoming) in structure_cases(
        &c.encrypted(&encrypted_body(&m.v6)),
        &c.securejoin("vc-request", "Secure-Join: vc-request"),
    ) {
        c.add(&name, raw, outgoing, incoming);
    }
    from_header_cases(&mut c, m);
    bounce_cases(&mut c);
    autocrypt_setup_cases(&mut c, m);
    Ok(c.out)
}

/// The cases made so far for one envelope.
struct Cases<'a> {
    from: &'a str,
    to: &'a [String],
    out: Vec<TestMail>,
}

impl Cases<'_> {
    /// Adds a case sent from `from` to `to`.
    fn add(&mut self, name: &str, raw: String, outgoing: Expect, incoming: Expect) {
        let (from, to) = (self.from.to_owned(), self.to.to_vec());
        self.add_sent(name, from, to, raw, outgoing, incoming);
    }

    /// Adds a case with an envelope of its own.
    fn add_sent(
        &mut self,
        name: &str,
        mail_from: String,
        rcpt_to: Vec<String>,
        raw: String,
        outgoing: Expect,
        incoming: Expect,
    ) {
        self.out.push(TestMail {
            name: name.to_owned(),
            mail_from,
            rcpt_to,
            raw: raw.into_bytes(),
            outgoing,
            incoming,
        });
    }

    /// A whole message with `body` (its MIME header and body) under the
    /// shared headers and subject `...`.
    fn encrypted(&self, body: &str) -> String {
        headers(self.from, self.to, "...", &[]) + body
    }

    /// A cleartext Secure-Join message with header field `Secure-Join:
    /// header` and text `text`.
    fn securejoin(&self, header: &str, text: &str) -> String {
        headers(
            self.from,
            self.to,
            "Message from Delta Chat",
            &[("Secure-Join", header)],
        ) + &multipart_mixed_text(text)
    }
}

/// The OpenPGP/MIME body around `data`, armored with its CRC.
fn encrypted_body(data: &[u8]) -> String {
    PgpMime::new(armor(data, &[], Crc::Correct)).body()
}

/// Real encrypted mail, as clients write it.
fn encrypted_cases(c: &mut Cases<'_>, m: &Material) {
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
fn armor_cases(c: &mut Cases<'_>, m: &Material) {
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
fn packet_cases(c: &mut Cases<'_>, m: &Material) -> Result<(), Error> {
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
fn mime_cases(c: &mut Cases<'_>, m: &Material) {
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

/// Secure-Join requests, real and fake.
fn securejoin_cases(c: &mut Cases<'_>) {
    for (name, header, text, expect) in [
        (
            "securejoin-vc-request",
            "vc-request",
            "Secure-Join: vc-request",
            Accept,
        ),
        (
            "securejoin-vg-request",
            "vg-request",
            "Secure-Join: vg-request",
            Accept,
        ),
        ("securejoin-fake-body", "vc-request", SECRET, Reject),
        (
            "securejoin-vc-request-with-auth-cleartext",
            "vc-request-with-auth",
            "Secure-Join: vc-request-with-auth",
            Reject,
        ),
    ] {
        c.add(name, c.securejoin(header, text), expect, expect);
    }
}

/// Encrypted mail whose From header is not the envelope sender.
fn from_header_cases(c: &mut Cases<'_>, m: &Material) {
    let domain = c.from.rsplit_once('@').map_or("x", |d| d.1);
    let other = format!("someone-else@{domain}");
    let raw = headers(&other, c.to, "...", &[]) + &encrypted_body(&m.v6);
    c.add("from-header-mismatch", raw, Reject, Accept);
}

/// Delivery status notifications, with and without the null sender.
fn bounce_cases(c: &mut Cases<'_>) {
    let domain = c.from.rsplit_once('@').map_or("example.org", |d| d.1);
    let daemon = format!("MAILER-DAEMON@{domain}");
    let report = format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n \
         boundary=\"{BOUNDARY}\"\r\n\r\n--{BOUNDARY}\r\n\
         Content-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n\
         --{BOUNDARY}\r\nContent-Type: message/delivery-status\r\n\r\n\
         Reporting-MTA: dns; {domain}\r\n\r\nFinal-Recipient: rfc822; {}\r\n\
         Action: failed\r\nStatus: 5.1.1\r\n\r\n--{BOUNDARY}--\r\n",
        c.to.first().map_or("x@example.org", |s| s.as_str())
    );
    let bounce = headers(
        &daemon,
        c.to,
        "Undelivered Mail Returned to Sender",
        &[("Auto-Submitted", "auto-replied")],
    ) + &report;
    c.add("bounce-with-sender", bounce.clone(), Reject, Reject);
    // A bounce whose report another parser reads as plain text.
    let ambiguous_bounce = edit(
        &bounce,
        "Content-Type: multipart/report;",
        "Content-Type: text/plain\r\nContent-Type: multipart/report;",
    );
    for (name, raw, incoming) in [
        ("bounce-null-sender", bounce, Accept),
        ("bounce-dup-content-type", ambiguous_bounce, Reject),
    ] {
        let to = c.to.to_vec();
        c.add_sent(name, String::new(), to, raw, Reject, incoming);
    }
}

/// Autocrypt Setup Messages, sent to oneself or not, and hostile variants.
fn autocrypt_setup_cases(c: &mut Cases<'_>, m: &Material) {
    let body = format!(
        "Autocrypt-Setup-Message: v1\r\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n\
         --{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nThis is the Autocrypt Setup Message.\r\n\
         --{BOUNDARY}\r\nContent-Type: application/autocrypt-setup\r\n\
         Content-Disposition: attachment; filename=\"autocrypt-setup-message.html\"\r\n\r\n\
         <html><body><pre>\r\n{}</pre></body></html>\r\n--{BOUNDARY}--\r\n",
        armor(
            &m.setup_secret,
            &[("Passphrase-Format", "numeric9x4")],
            Crc::Correct
        )
    );
    let subject = "Autocrypt Setup Message";
    let me = vec![c.from.to_owned()];
    let to_self = headers(c.from, &me, subject, &[]) + &body;
    let to_other = headers(c.from, c.to, subject, &[]) + &body;
    let add_self = |c: &mut Cases<'_>, name: &str, raw: String, outgoing| {
        let from = c.from.to_owned();
        c.add_sent(name, from, me.clone(), raw, outgoing, Reject);
    };
    add_self(c, "autocrypt-setup-self", to_self.clone(), Accept);
    c.add("autocrypt-setup-to-other", to_other, Reject, Reject);
    for (name, raw, outgoing) in asm_cases(&to_self) {
        add_self(c, &name, raw, outgoing);
    }
}

/// Gives every case a distinct Message-ID, so nothing downstream mistakes
/// a case for a duplicate.
fn stamp_message_ids(out: &mut [TestMail]) {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for m in out {
        let raw = String::from_utf8_lossy(&m.raw).into_owned();
        if let Some(start) = raw.find("Message-ID: <")
            && let Some(len) = raw[start..].find('>')
        {
            let id = format!("Message-ID: <{}.{stamp}@chatmail.test", m.name);
            m.raw = format!("{}{id}{}", &raw[..start], &raw[start + len..]).into_bytes();
        }
    }
}

/// Replaces the first `from` in `s` by `to`; panics when absent, so a
/// changed template cannot silently turn a hostile case into a benign one.
fn edit(s: &str, from: &str, to: &str) -> String {
    assert!(s.contains(from), "template lacks {from:?}");
    s.replacen(from, to, 1)
}

/// `s` with `text` inserted before the first `anchor` (see [`edit`]).
fn insert_before(s: &str, anchor: &str, text: &str) -> String {
    edit(s, anchor, &format!("{text}{anchor}"))
}

/// `s` with `text` inserted after the first `anchor` (see [`edit`]).
fn insert_after(s: &str, anchor: &str, text: &str) -> String {
    edit(s, anchor, &format!("{anchor}{text}"))
}

/// Variants of the real encrypted message `good` and the Secure-Join
/// request `sj` whose MIME structure is ambiguous (parsers disagree on it)
/// or that carry cleartext outside the parts. `(name, raw, outgoing,
/// incoming)`.
fn structure_cases(good: &str, sj: &str) -> Vec<(String, String, Expect, Expect)> {
    let b = BOUNDARY;
    let top_ct = "Content-Type: multipart/encrypted;";
    let control_ct = "Content-Type: application/pgp-encrypted\r\n";
    let payload_ct = "Content-Type: application/octet-stream;";
    let preamble = "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n";
    let close = format!("\r\n--{b}--\r\n");
    let mut v: Vec<(&str, String, Expect)> = vec![
        // Accepted shapes real writers produce.
        ("structure-preamble-empty", edit(good, preamble, ""), Accept),
        (
            "structure-preamble-rfc2440",
            edit(good, "RFC 4880 and 3156", "RFC 2440 and 3156"),
            Accept,
        ),
        (
            "structure-epilogue-blank-lines",
            insert_after(good, &close, "\r\n\r\n"),
            Accept,
        ),
        (
            "structure-cte-7bit-on-multipart",
            insert_before(good, top_ct, "Content-Transfer-Encoding: 7bit\r\n"),
            Accept,
        ),
        // Repeated MIME header fields, at the top and in each part.
        (
            "dup-content-type-plain-first",
            insert_before(good, top_ct, "Content-Type: text/plain\r\n"),
            Reject,
        ),
        (
            "dup-content-type-plain-last",
            edit(
                good,
                &format!("boundary=\"{b}\"\r\n"),
                &format!("boundary=\"{b}\"\r\nContent-Type: text/plain\r\n"),
            ),
            Reject,
        ),
        (
            "dup-content-type-same-twice",
            insert_before(
                good,
                top_ct,
                &format!(
                    "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"{b}\"\r\n"
                ),
            ),
            Reject,
        ),
        (
            "dup-content-transfer-encoding-top",
            insert_before(
                good,
                top_ct,
                "Content-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n",
            ),
            Reject,
        ),
        (
            "dup-mime-version-top",
            edit(
                good,
                "MIME-Version: 1.0\r\n",
                "MIME-Version: 1.0\r\nMIME-Version: 1.0\r\n",
            ),
            Reject,
        ),
        (
            "dup-content-type-control-part",
            insert_before(good, control_ct, "Content-Type: text/plain\r\n"),
            Reject,
        ),
        (
            "dup-content-type-payload-part",
            insert_before(good, payload_ct, "Content-Type: text/plain\r\n"),
            Reject,
        ),
        (
            "dup-content-transfer-encoding-payload-part",
            insert_before(
                good,
                payload_ct,
                "Content-Transfer-Encoding: base64\r\nContent-Transfer-Encoding: 7bit\r\n",
            ),
            Reject,
        ),
        (
            "dup-mime-version-payload-part",
            insert_before(
                good,
                payload_ct,
                "MIME-Version: 1.0\r\nMIME-Version: 1.0\r\n",
            ),
            Reject,
        ),
        (
            "cte-base64-on-multipart",
            insert_before(good, top_ct, "Content-Transfer-Encoding: base64\r\n"),
            Reject,
        ),
        (
            "cte-quoted-printable-on-multipart",
            insert_before(
                good,
                top_ct,
                "Content-Transfer-Encoding: quoted-printable\r\n",
            ),
            Reject,
        ),
        // Header syntax that parsers read differently.
        (
            "header-space-before-colon",
            insert_before(good, top_ct, "Content-Type : text/plain\r\n"),
            Reject,
        ),
        // Postfix turns a bare CR in a header into a space, but passes it
        // on in the body, where Python's parser ends a line at it: here it
        // sees a cleartext part before the two encrypted ones.
        (
            "bare-cr-before-delimiter",
            edit(
                good,
                preamble,
                &format!("x\r--{b}\r\nContent-Type: text/plain\r\n\r\n{SECRET}\r\n"),
            ),
            Reject,
        ),
        (
            "header-whitespace-line",
            insert_before(good, top_ct, "X-Note: a\r\n \r\n"),
            Reject,
        ),
        (
            "content-type-duplicate-boundary",
            edit(
                good,
                &format!("boundary=\"{b}\""),
                &format!("boundary=\"{b}\"; boundary=\"other\""),
            ),
            Reject,
        ),
        (
            "content-type-rfc2231-boundary",
            edit(
                good,
                &format!("boundary=\"{b}\""),
                &format!("boundary*0=\"{b}\""),
            ),
            Reject,
        ),
        (
            "content-type-comment",
            edit(
                good,
                "multipart/encrypted;",
                "multipart/encrypted (text/plain);",
            ),
            Reject,
        ),
        // Delimiter lines.
        (
            "boundary-with-trailing-text",
            edit(
                good,
                &format!("--{b}\r\nContent-Type: application/pgp-encrypted"),
                &format!("--{b}x\r\nContent-Type: application/pgp-encrypted"),
            ),
            Reject,
        ),
        ("no-close-delimiter", edit(good, &close, "\r\n"), Reject),
        (
            "text-after-close-delimiter",
            edit(good, &close, &format!("\r\n--{b}-- {SECRET}\r\n")),
            Reject,
        ),
        // Cleartext around the parts.
        (
            "preamble-cleartext",
            edit(good, preamble, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "preamble-known-line-then-cleartext",
            insert_after(good, preamble, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "preamble-known-line-twice",
            edit(good, preamble, &format!("{preamble}{preamble}")),
            Reject,
        ),
        (
            "preamble-oversized-whitespace",
            edit(good, preamble, &" \r\n".repeat(1000)),
            Reject,
        ),
        (
            "epilogue-cleartext",
            insert_after(good, &close, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "epilogue-one-megabyte",
            edit(
                good,
                &close,
                &format!("{close}{}", format!("{SECRET}\r\n").repeat(60_000)),
            ),
            Reject,
        ),
        (
            "epilogue-oversized-whitespace",
            edit(good, &close, &format!("{close}{}", "\r\n".repeat(1000))),
            Reject,
        ),
    ];
    let sj_close = format!("--{b}--\r\n");
    let sj_open = format!("\r\n\r\n--{b}\r\n");
    v.extend([
        (
            "securejoin-preamble-cleartext",
            edit(sj, &sj_open, &format!("\r\n\r\n{SECRET}\r\n--{b}\r\n")),
            Reject,
        ),
        (
            "securejoin-epilogue-cleartext",
            insert_after(sj, &sj_close, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "securejoin-epilogue-40k",
            edit(
                sj,
                &sj_close,
                &format!("{sj_close}{}", format!("{SECRET}\r\n").repeat(2500)),
            ),
            Reject,
        ),
        (
            "securejoin-dup-content-type",
            edit(
                sj,
                "Content-Type: multipart/mixed",
                "Content-Type: text/plain\r\nContent-Type: multipart/mixed",
            ),
            Reject,
        ),
        (
            "securejoin-dup-secure-join-header",
            edit(
                sj,
                "Secure-Join: vc-request\r\n",
                "Secure-Join: vc-request\r\nSecure-Join: vc-request-with-auth\r\n",
            ),
            Reject,
        ),
        (
            "securejoin-oversized-header",
            // Many short fields: Postfix truncates a single long one.
            edit(
                sj,
                "Secure-Join: vc-request\r\n",
                &format!(
                    "Secure-Join: vc-request\r\n{}",
                    format!("X-Note: {}\r\n", "a".repeat(990)).repeat(70)
                ),
            ),
            Reject,
        ),
        (
            "securejoin-padded-body",
            edit(
                sj,
                "\r\n\r\nSecure-Join: vc-request\r\n",
                &format!("\r\n\r\nSecure-Join: vc-request{}\r\n", " ".repeat(4000)),
            ),
            Reject,
        ),
    ]);
    v.into_iter()
        .map(|(n, raw, e)| (n.to_owned(), raw, e, e))
        .collect()
}

/// Variants of the self-sent Autocrypt Setup Message `asm`: `(name, raw,
/// outgoing)`; none is accepted incoming.
fn asm_cases(asm: &str) -> Vec<(String, String, Expect)> {
    let b = BOUNDARY;
    let close = format!("--{b}--\r\n");
    let extra = format!("--{b}\r\nContent-Type: text/plain\r\n\r\n{SECRET}\r\n{close}");
    vec![
        (
            "autocrypt-setup-epilogue-cleartext",
            insert_after(asm, &close, &format!("{SECRET}\r\n")),
            Reject,
        ),
        (
            "autocrypt-setup-preamble-cleartext",
            edit(
                asm,
                &format!("\r\n\r\n--{b}\r\n"),
                &format!("\r\n\r\n{SECRET}\r\n--{b}\r\n"),
            ),
            Reject,
        ),
        (
            "autocrypt-setup-third-part",
            edit(asm, &close, &extra),
            Reject,
        ),
        (
            "autocrypt-setup-no-armor",
            edit(
                asm,
                "-----BEGIN PGP MESSAGE-----",
                "-----BEGIN PGP NOTHING-----",
            ),
            Reject,
        ),
        (
            "autocrypt-setup-cleartext-in-attachment",
            edit(asm, "</pre>", &format!("</pre>{}", SECRET.repeat(1000))),
            Reject,
        ),
        (
            "autocrypt-setup-long-text-part",
            edit(
                asm,
                "This is the Autocrypt Setup Message.",
                &SECRET.repeat(1000),
            ),
            Reject,
        ),
    ]
    .into_iter()
    .map(|(n, raw, e)| (n.to_owned(), raw, e))
    .collect()
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
            top_level: top_level(&m.raw),
        });
    }
    let mut json = serde_json::to_vec_pretty(&manifest)?;
    json.push(b'\n');
    std::fs::write(dir.join("manifest.json"), json)?;
    Ok(())
}
