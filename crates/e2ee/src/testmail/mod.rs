//! A generator of test messages for the encryption rules (feature
//! `testmail`; used by the unit tests, the milter tests, the benchmarks and,
//! through the `make-test-mail` example, the integration tests against real
//! Postfix).
//!
//! The encrypted cases are real OpenPGP/MIME messages (RFC 3156) encrypted
//! with sequoia to freshly generated v4 and v6 keys (RFC 9580); the hostile
//! cases alter them at the MIME, armor or packet level. Each case carries
//! the expected verdict for both directions; incoming expectations assume
//! every recipient enforces encryption.
//!
//! This file holds the case type, the envelope-wide helpers and the list of
//! families; each family of cases is in a module of its own:
//! `encrypted` (real encrypted mail and its hostile variants at the
//! armor, packet and MIME level), `ambiguous` (MIME structure parsers
//! disagree on, cleartext around the parts), `cleartext` (what may pass
//! unencrypted: Secure-Join requests, bounces, Autocrypt Setup Messages),
//! built from the keys and ciphertexts of `material` and the armor and
//! packet writers of `wire`. [`grow`] makes an encrypted case as large
//! as a test needs.

mod ambiguous;
mod cleartext;
mod encrypted;
mod grow;
mod material;
mod wire;

use std::path::Path;

use sequoia_openpgp as openpgp;

pub use grow::grow;
pub use wire::{Crc, armor, legacy_esk_headers, literal_packet, packet};

use material::Material;

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
    /// The message given to [`grow`] holds no armored encrypted payload.
    #[error("cannot grow the message: {0}")]
    Template(String),
}

fn pgp<T>(r: openpgp::Result<T>) -> Result<T, Error> {
    r.map_err(|e| Error::OpenPgp(format!("{e:#}")))
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

fn multipart_mixed_text(text: &str) -> String {
    format!(
        "Content-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\r\n\r\n\
         --{BOUNDARY}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --{BOUNDARY}--\r\n"
    )
}

/// The cleartext that hostile cases smuggle.
const SECRET: &str = "Meet me at noon.";

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
    encrypted::encrypted_cases(&mut c, m);
    encrypted::armor_cases(&mut c, m);
    encrypted::packet_cases(&mut c, m)?;
    encrypted::mime_cases(&mut c, m);
    cleartext::securejoin_cases(&mut c);
    for (name, raw, outgoing, incoming) in ambiguous::structure_cases(
        &c.encrypted(&encrypted::encrypted_body(&m.v6)),
        &c.securejoin("vc-request", "Secure-Join: vc-request"),
    ) {
        c.add(&name, raw, outgoing, incoming);
    }
    encrypted::from_header_cases(&mut c, m);
    cleartext::bounce_cases(&mut c);
    cleartext::autocrypt_setup_cases(&mut c, m);
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
