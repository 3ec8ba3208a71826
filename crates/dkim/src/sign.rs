//! DKIM signing (RFC 6376): `rsa-sha256`, `relaxed/relaxed`, every header a
//! chat message carries signed and the security-relevant ones oversigned.
//!
//! The header list is built from the message itself, as OpenDKIM's
//! `SignHeaders *` does on the chatmail relays: every field present is
//! signed (all its instances) except those that change in transit
//! ([`UNSIGNED`]). Each name in [`OVERSIGNED`] is listed once more than it
//! occurs, so no further instance can be added, before or after the
//! signature, without breaking it; names that are absent are listed once,
//! so they cannot be added at all. See `docs/dkim.md`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::{Pkcs1v15Sign, RsaPrivateKey};
use sha2::{Digest, Sha256};

use crate::DkimError;

/// Fields never signed: trace fields added on the way and earlier
/// authentication results (RFC 6376 section 5.4 and OpenDKIM's default
/// skip list).
pub const UNSIGNED: &[&str] = &[
    "received",
    "return-path",
    "dkim-signature",
    "authentication-results",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "comments",
    "keywords",
    "x-original-to",
    "delivered-to",
];

/// Fields signed one more time than they occur (oversigned): the chatmail
/// relays' OpenDKIM `OversignHeaders` list plus the fields a chat message's
/// meaning depends on (Message-ID, MIME structure, Chat-Version).
pub const OVERSIGNED: &[&str] = &[
    "from",
    "reply-to",
    "sender",
    "subject",
    "date",
    "to",
    "cc",
    "message-id",
    "in-reply-to",
    "references",
    "autocrypt",
    "autocrypt-gossip",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
    "chat-version",
    "chat-is-post-message",
    "resent-date",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

/// One header field of a message: its name and its raw value (everything
/// after the colon, folding included, without the final CRLF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The name as written.
    pub name: &'a [u8],
    /// The value after the colon.
    pub value: &'a [u8],
}

/// Splits `raw` into its header fields and its body. Lines end in CRLF or
/// LF; a line starting with a space or tab continues the field before it.
/// Lines that are not fields (no colon) are skipped, as a verifier does.
pub fn split_message(raw: &[u8]) -> (Vec<Field<'_>>, &[u8]) {
    let mut fields: Vec<(usize, usize, usize)> = Vec::new(); // start, colon, end
    let mut pos = 0;
    let mut body_start = raw.len();
    while pos < raw.len() {
        let line_end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..line_end];
        let content = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if content.is_empty() {
            body_start = line_end;
            break;
        }
        if matches!(content[0], b' ' | b'\t') {
            if let Some(last) = fields.last_mut() {
                last.2 = pos + content.len();
            }
        } else if let Some(colon) = content.iter().position(|&b| b == b':') {
            fields.push((pos, pos + colon, pos + content.len()));
        }
        pos = line_end;
    }
    let fields = fields
        .into_iter()
        .map(|(start, colon, end)| Field {
            name: trim_end_wsp(&raw[start..colon]),
            value: &raw[colon + 1..end],
        })
        .collect();
    (fields, &raw[body_start.min(raw.len())..])
}

/// The `h=` list for `fields`: see the module documentation.
pub fn header_list(fields: &[Field<'_>]) -> Vec<String> {
    let mut names: Vec<(String, usize)> = Vec::new();
    for f in fields {
        let name = String::from_utf8_lossy(f.name).to_ascii_lowercase();
        if UNSIGNED.contains(&name.as_str()) || name.is_empty() {
            continue;
        }
        match names.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => names.push((name, 1)),
        }
    }
    for o in OVERSIGNED {
        if !names.iter().any(|(n, _)| n == o) {
            names.push(((*o).to_owned(), 0));
        }
    }
    let mut list = Vec::new();
    for (name, count) in names {
        let extra = usize::from(OVERSIGNED.contains(&name.as_str()));
        list.extend(std::iter::repeat_n(name, count + extra));
    }
    list
}

/// Relaxed header canonicalization of one field (RFC 6376 section 3.4.2),
/// with its CRLF.
pub fn relaxed_header(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.extend(trim_end_wsp(name).iter().map(u8::to_ascii_lowercase));
    out.push(b':');
    let start = out.len();
    let mut pending_space = false;
    for &b in value {
        match b {
            b'\r' | b'\n' => {}
            b' ' | b'\t' => pending_space = true,
            _ => {
                if pending_space && out.len() > start {
                    out.push(b' ');
                }
                pending_space = false;
                out.push(b);
            }
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Relaxed body canonicalization (RFC 6376 section 3.4.4), fed to `hash`:
/// whitespace runs become one space, trailing whitespace and trailing
/// empty lines go, every line ends in CRLF; an empty body stays empty.
pub fn relaxed_body(body: &[u8], hash: &mut impl Digest) {
    let mut empty_lines = 0usize;
    let mut line = Vec::with_capacity(1024);
    let mut rest = body;
    while !rest.is_empty() {
        let (raw_line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let raw_line = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
        line.clear();
        let mut pending_space = false;
        for &b in raw_line {
            if b == b' ' || b == b'\t' {
                pending_space = true;
            } else {
                if pending_space {
                    line.push(b' ');
                }
                pending_space = false;
                line.push(b);
            }
        }
        if line.is_empty() {
            empty_lines += 1;
            continue;
        }
        for _ in 0..empty_lines {
            hash.update(b"\r\n");
        }
        empty_lines = 0;
        hash.update(&line);
        hash.update(b"\r\n");
    }
}

/// A signing key with the domain and selector it signs for.
#[derive(Debug, Clone)]
pub struct Signer {
    key: RsaPrivateKey,
    domain: String,
    selector: String,
}

impl Signer {
    /// A signer for `domain` with `key`, published under `selector`.
    pub fn new(key: RsaPrivateKey, domain: &str, selector: &str) -> Signer {
        Signer {
            key,
            domain: domain.to_ascii_lowercase(),
            selector: selector.to_owned(),
        }
    }

    /// The signing domain (`d=`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Signs `raw` (header fields, blank line, body) at time `now` (Unix
    /// seconds) and returns the value of the `DKIM-Signature` field to
    /// prepend, folded with LF + tab as a milter hands header values to
    /// the MTA (which writes CRLF).
    ///
    /// # Errors
    /// When the RSA operation fails (a key too small for SHA-256).
    pub fn sign(&self, raw: &[u8], now: u64) -> Result<String, DkimError> {
        let (fields, body) = split_message(raw);
        let mut body_hash = Sha256::new();
        relaxed_body(body, &mut body_hash);
        let bh = BASE64.encode(body_hash.finalize());
        let h = header_list(&fields);

        // Tags up to an empty b=; folded between tags and inside h=.
        let mut value = format!(
            " v=1; a=rsa-sha256; c=relaxed/relaxed; d={}; s={};\n\tt={now}; bh={bh};\n\th=",
            self.domain, self.selector
        );
        let mut line_len = 3;
        for (i, name) in h.iter().enumerate() {
            if i > 0 {
                value.push(':');
                line_len += 1;
            }
            if line_len + name.len() > 70 {
                value.push_str("\n\t ");
                line_len = 2;
            }
            value.push_str(name);
            line_len += name.len();
        }
        value.push_str(";\n\tb=");

        let mut data = Vec::with_capacity(4096);
        let mut used = vec![false; fields.len()];
        for name in &h {
            // The next unused instance from the bottom (RFC 6376 5.4.2);
            // none left: the name is oversigned and contributes nothing.
            let found = (0..fields.len())
                .rev()
                .find(|&i| !used[i] && fields[i].name.eq_ignore_ascii_case(name.as_bytes()));
            if let Some(i) = found {
                used[i] = true;
                relaxed_header(fields[i].name, fields[i].value, &mut data);
            }
        }
        relaxed_header(b"DKIM-Signature", value.as_bytes(), &mut data);
        data.truncate(data.len() - 2);
        let digest = Sha256::digest(&data);
        let sig = self
            .key
            .sign(Pkcs1v15Sign::new::<Sha256>(), &digest)
            .map_err(|e| DkimError::Sign(e.to_string()))?;
        let b = BASE64.encode(sig);
        // Fold b= so no line exceeds 78 characters.
        for (i, chunk) in b.as_bytes().chunks(72).enumerate() {
            if i > 0 {
                value.push_str("\n\t ");
            }
            value.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        }
        Ok(value)
    }
}

fn trim_end_wsp(s: &[u8]) -> &[u8] {
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |i| i + 1);
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxed_header_cases() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            (b"Subject", b" Hi  there ", b"subject:Hi there\r\n"),
            (b"SubJect ", b"\tA\r\n\tB", b"subject:A B\r\n"),
            (b"X", b"", b"x:\r\n"),
            (b"To", b" a@b,\n c@d", b"to:a@b, c@d\r\n"),
        ];
        for (name, value, want) in cases {
            let mut out = Vec::new();
            relaxed_header(name, value, &mut out);
            assert_eq!(out, *want, "{:?}", String::from_utf8_lossy(name));
        }
    }

    #[test]
    fn relaxed_body_cases() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"\r\n\r\n", b""),
            (b"a  b \r\n\r\n\r\n", b"a b\r\n"),
            (b"a\r\n\r\nb", b"a\r\n\r\nb\r\n"),
            (b" x\t\r\n", b" x\r\n"),
        ];
        for (body, want) in cases {
            let mut h = Sha256::new();
            relaxed_body(body, &mut h);
            assert_eq!(
                h.finalize(),
                Sha256::digest(want),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn split_and_header_list() {
        let raw =
            b"Received: x\r\nFrom: a@b\r\nTo: c@d,\r\n e@f\r\nX-A: 1\r\nX-A: 2\r\n\r\nbody\r\n";
        let (fields, body) = split_message(raw);
        assert_eq!(body, b"body\r\n");
        assert_eq!(fields.len(), 5);
        assert_eq!(fields[2].value, b" c@d,\r\n e@f");
        let h = header_list(&fields);
        assert_eq!(&h[..5], ["from", "from", "to", "to", "x-a"]);
        assert_eq!(h[5], "x-a");
        assert!(!h.contains(&"received".to_owned()));
        for o in OVERSIGNED {
            let n = h.iter().filter(|x| x == o).count();
            assert!(n >= 1, "{o} not signed");
        }
    }
}
