//! A strict reader of the top-level MIME structure of a message: the
//! header block (RFC 5322 section 2.2), `Content-Type` (RFC 2045 section 5.1)
//! and the parts of a multipart body (RFC 2046 section 5.1.1).
//!
//! `mail-parser` is forgiving, as a mail client must be: it takes the last
//! of repeated header fields, skips malformed lines and finds boundaries
//! loosely. Other parsers resolve the same input differently (Python's
//! `email` and many clients take the first `Content-Type`, end the header
//! block at the first line that is not a field, split lines at a bare CR),
//! so a message can be encrypted to us and cleartext to the reader. A
//! gatekeeper must only accept what every parser reads the same way, so
//! before a message passes as encrypted (or as one of the cleartext
//! exceptions) this module re-reads it and refuses anything ambiguous:
//!
//! - a header line that is neither a field (`name:` with a printable
//!   ASCII name and no space before the colon) nor a folded continuation,
//!   a whitespace-only line inside the header block, a bare CR;
//! - `Content-Type`, `Content-Transfer-Encoding` or `MIME-Version` more
//!   than once in the message header or in a part header;
//! - a `Content-Type` that does not parse strictly: comments, repeated or
//!   RFC 2231 parameters, a missing or invalid boundary on a multipart;
//! - a multipart with a `Content-Transfer-Encoding` other than `7bit`,
//!   `8bit` or `binary` (RFC 2045 section 6.4);
//! - a line that starts like a delimiter (`--boundary`) but is not one, no
//!   close delimiter, no part at all.
//!
//! Only the root and its direct children are read: every shape the rules
//! accept has leaf parts only, so a deeper level is refused by the shape
//! check itself. [`agrees`] then compares this reading with `mail-parser`'s.

use mail_parser::{Message, PartType};

/// Fields that must occur at most once in any header block.
const UNIQUE_FIELDS: [&str; 3] = ["content-type", "content-transfer-encoding", "mime-version"];

/// Why a message's structure is ambiguous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguity {
    /// A header line that is neither a field nor a continuation.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A whitespace-only line inside a header block.
    #[error("whitespace-only line in a header block")]
    BlankContinuation,
    /// A carriage return not followed by a line feed.
    #[error("bare CR")]
    BareCr,
    /// A MIME field that occurs more than once in one header block.
    #[error("repeated {0} field")]
    Repeated(&'static str),
    /// A `Content-Type` that does not parse strictly.
    #[error("malformed Content-Type")]
    BadContentType,
    /// A multipart without a valid boundary parameter.
    #[error("missing or invalid boundary")]
    BadBoundary,
    /// A multipart with a content transfer encoding other than the identities.
    #[error("multipart with an encoding other than 7bit, 8bit or binary")]
    MultipartEncoding,
    /// A line starting with the delimiter that is not a delimiter.
    #[error("line resembling a boundary delimiter")]
    NearDelimiter,
    /// A multipart without a close delimiter.
    #[error("no close delimiter")]
    NoCloseDelimiter,
    /// A multipart without any part.
    #[error("multipart without parts")]
    NoParts,
    /// `mail-parser` reads a different structure.
    #[error("parsers disagree on the structure")]
    Disagreement,
}

/// A parsed `Content-Type` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    /// Lower-cased `type/subtype`.
    pub mime_type: String,
    /// Parameters, names lower-cased, values unquoted, in order.
    pub params: Vec<(String, String)>,
}

impl ContentType {
    /// The value of parameter `name` (lower-case).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn is_multipart(&self) -> bool {
        self.mime_type.starts_with("multipart/")
    }
}

/// One header field: name as written, value unfolded (line breaks removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    /// The field name.
    pub name: &'a str,
    /// The unfolded value, without the leading colon.
    pub value: Vec<u8>,
}

/// A header block and the body after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity<'a> {
    /// The header fields, in order.
    pub fields: Vec<Field<'a>>,
    /// The content type (RFC 2045 default `text/plain` when absent).
    pub content_type: ContentType,
    /// The lower-cased, trimmed `Content-Transfer-Encoding`, if any.
    pub encoding: Option<String>,
    /// Offset of the body in the input.
    pub body_offset: usize,
    /// The body.
    pub body: &'a [u8],
}

/// The root of a message and, when it is a multipart, its direct parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Structure<'a> {
    /// The message header and body.
    pub root: Entity<'a>,
    /// The parts of a multipart root (empty otherwise), offsets relative to
    /// the whole message.
    pub parts: Vec<Entity<'a>>,
    /// Text before the first delimiter.
    pub preamble: &'a [u8],
    /// Text after the close delimiter.
    pub epilogue: &'a [u8],
}

/// Lines of `data` as `(start, end_without_eol, next_start)`.
fn lines(data: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= data.len() {
            return None;
        }
        let start = pos;
        let (end, next) = match data[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let lf = pos + i;
                let end = if lf > start && data[lf - 1] == b'\r' {
                    lf - 1
                } else {
                    lf
                };
                (end, lf + 1)
            }
            None => (data.len(), data.len()),
        };
        pos = next;
        Some((start, end, next))
    })
}

fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Reads one header block and its body from `data[offset..]`.
fn read_entity(data: &[u8], offset: usize) -> Result<Entity<'_>, Ambiguity> {
    let input = &data[offset..];
    let mut fields: Vec<Field<'_>> = Vec::new();
    let mut body_start = input.len();
    for (start, end, next) in lines(input) {
        let line = &input[start..end];
        if line.contains(&b'\r') {
            return Err(Ambiguity::BareCr);
        }
        if line.is_empty() {
            body_start = next;
            break;
        }
        if is_wsp(line[0]) {
            if line.iter().all(|&b| is_wsp(b)) {
                return Err(Ambiguity::BlankContinuation);
            }
            let last = fields.last_mut().ok_or(Ambiguity::BadHeaderLine)?;
            last.value.extend_from_slice(line);
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(Ambiguity::BadHeaderLine)?;
        let name = &line[..colon];
        if name.is_empty() || !name.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
            return Err(Ambiguity::BadHeaderLine);
        }
        let name = std::str::from_utf8(name).map_err(|_| Ambiguity::BadHeaderLine)?;
        fields.push(Field {
            name,
            value: line[colon + 1..].to_vec(),
        });
    }
    for unique in UNIQUE_FIELDS {
        if fields
            .iter()
            .filter(|f| f.name.eq_ignore_ascii_case(unique))
            .count()
            > 1
        {
            return Err(Ambiguity::Repeated(unique));
        }
    }
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
            .map(|f| f.value.as_slice())
    };
    let content_type = match field("content-type") {
        Some(v) => parse_content_type(v)?,
        None => ContentType {
            mime_type: "text/plain".to_owned(),
            params: Vec::new(),
        },
    };
    let encoding = field("content-transfer-encoding")
        .map(|v| String::from_utf8_lossy(v.trim_ascii()).to_ascii_lowercase());
    Ok(Entity {
        fields,
        content_type,
        encoding,
        body_offset: offset + body_start,
        body: &input[body_start..],
    })
}

/// RFC 2045 `tspecials`.
fn is_tspecial(b: u8) -> bool {
    b"()<>@,;:\\\"/[]?=".contains(&b)
}

fn is_token_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && !is_tspecial(b)
}

/// Parses a `Content-Type` value strictly: `type/subtype` then
/// `; name=value` parameters (token or quoted string), no comments, no
/// repeated or RFC 2231 parameters.
pub fn parse_content_type(value: &[u8]) -> Result<ContentType, Ambiguity> {
    let bad = Ambiguity::BadContentType;
    let v = value;
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < v.len() && is_wsp(v[*i]) {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < v.len() && is_token_char(v[*i]) {
            *i += 1;
        }
        (*i > start).then(|| String::from_utf8_lossy(&v[start..*i]).into_owned())
    };
    skip_ws(&mut i);
    let main = token(&mut i).ok_or(bad)?.to_ascii_lowercase();
    if v.get(i) != Some(&b'/') {
        return Err(bad);
    }
    i += 1;
    let sub = token(&mut i).ok_or(bad)?.to_ascii_lowercase();
    let mut params: Vec<(String, String)> = Vec::new();
    loop {
        skip_ws(&mut i);
        if i == v.len() {
            break;
        }
        if v[i] != b';' {
            return Err(bad);
        }
        i += 1;
        skip_ws(&mut i);
        if i == v.len() {
            break; // a trailing semicolon
        }
        let name = token(&mut i).ok_or(bad)?.to_ascii_lowercase();
        if name.contains('*') || params.iter().any(|(n, _)| *n == name) {
            return Err(bad);
        }
        skip_ws(&mut i);
        if v.get(i) != Some(&b'=') {
            return Err(bad);
        }
        i += 1;
        skip_ws(&mut i);
        let value = if v.get(i) == Some(&b'"') {
            i += 1;
            let mut out = Vec::new();
            loop {
                match v.get(i) {
                    None => return Err(bad),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        out.push(*v.get(i + 1).ok_or(bad)?);
                        i += 2;
                    }
                    Some(&c) => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(out).map_err(|_| bad)?
        } else {
            token(&mut i).ok_or(bad)?
        };
        params.push((name, value));
    }
    Ok(ContentType {
        mime_type: format!("{main}/{sub}"),
        params,
    })
}

/// RFC 2046 section 5.1.1: 1 to 70 `bchars`, not ending in a space.
fn valid_boundary(b: &str) -> bool {
    (1..=70).contains(&b.len())
        && !b.ends_with(' ')
        && b.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&c))
}

/// Reads `raw` strictly; see the module documentation for what is refused.
///
/// # Errors
/// The first [`Ambiguity`] found.
pub fn read(raw: &[u8]) -> Result<Structure<'_>, Ambiguity> {
    let root = read_entity(raw, 0)?;
    if !root.content_type.is_multipart() {
        return Ok(Structure {
            root,
            parts: Vec::new(),
            preamble: &[],
            epilogue: &[],
        });
    }
    if !matches!(
        root.encoding.as_deref(),
        None | Some("7bit" | "8bit" | "binary")
    ) {
        return Err(Ambiguity::MultipartEncoding);
    }
    let boundary = root
        .content_type
        .param("boundary")
        .filter(|b| valid_boundary(b))
        .ok_or(Ambiguity::BadBoundary)?;
    let body = root.body;
    if body
        .iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && body.get(i + 1) != Some(&b'\n'))
    {
        return Err(Ambiguity::BareCr);
    }
    let dash = format!("--{boundary}");
    // Byte ranges of the delimiter lines: (line start, next line start, close).
    let mut delimiters = Vec::new();
    for (start, end, next) in lines(body) {
        let line = &body[start..end];
        let Some(rest) = line.strip_prefix(dash.as_bytes()) else {
            continue;
        };
        if rest.iter().all(|&b| is_wsp(b)) {
            delimiters.push((start, next, false));
        } else if let Some(pad) = rest.strip_prefix(b"--")
            && pad.iter().all(|&b| is_wsp(b))
        {
            delimiters.push((start, next, true));
            break;
        } else {
            return Err(Ambiguity::NearDelimiter);
        }
    }
    match delimiters.last() {
        Some((_, _, true)) => {}
        _ => return Err(Ambiguity::NoCloseDelimiter),
    }
    if delimiters.len() < 2 {
        return Err(Ambiguity::NoParts);
    }
    // The line break before a delimiter belongs to the delimiter.
    let before = |pos: usize| {
        let mut end = pos;
        if end > 0 && body[end - 1] == b'\n' {
            end -= 1;
            if end > 0 && body[end - 1] == b'\r' {
                end -= 1;
            }
        }
        end
    };
    let first = delimiters[0].0;
    let preamble = &body[..before(first)];
    let (_, after_close, _) = delimiters[delimiters.len() - 1];
    let epilogue = &body[after_close..];
    let mut parts = Vec::with_capacity(delimiters.len() - 1);
    for pair in delimiters.windows(2) {
        let (_, start, _) = pair[0];
        let (next_delim, _, _) = pair[1];
        let end = before(next_delim).max(start);
        let part_raw = &raw[..root.body_offset + end];
        let mut part = read_entity(part_raw, root.body_offset + start)?;
        if part.content_type.is_multipart()
            && !matches!(
                part.encoding.as_deref(),
                None | Some("7bit" | "8bit" | "binary")
            )
        {
            return Err(Ambiguity::MultipartEncoding);
        }
        part.body = &raw[part.body_offset..root.body_offset + end];
        parts.push(part);
    }
    Ok(Structure {
        root,
        parts,
        preamble,
        epilogue,
    })
}

/// The lower-cased `type/subtype` `mail-parser` gives a part; RFC 2045
/// default `text/plain`.
pub(crate) fn parsed_type(part: &mail_parser::MessagePart<'_>) -> String {
    use mail_parser::MimeHeaders;
    match part.content_type() {
        Some(ct) => match &ct.c_subtype {
            Some(sub) => format!("{}/{}", ct.c_type, sub).to_ascii_lowercase(),
            None => ct.c_type.to_ascii_lowercase(),
        },
        None => "text/plain".to_owned(),
    }
}

/// Whether `mail-parser` read `msg` as `s` does: the same root type, the
/// same number of direct parts with the same types, and each leaf part's
/// body at the same bytes.
pub fn agrees(msg: &Message<'_>, s: &Structure<'_>) -> Result<(), Ambiguity> {
    let disagree = Ambiguity::Disagreement;
    let root = msg.parts.first().ok_or(disagree)?;
    if parsed_type(root) != s.root.content_type.mime_type {
        return Err(disagree);
    }
    let children: &[u32] = match &root.body {
        PartType::Multipart(ids) => ids,
        _ if s.parts.is_empty() => return Ok(()),
        _ => return Err(disagree),
    };
    if children.len() != s.parts.len() {
        return Err(disagree);
    }
    for (&id, ours) in children.iter().zip(&s.parts) {
        let theirs = usize::try_from(id)
            .ok()
            .and_then(|i| msg.parts.get(i))
            .ok_or(disagree)?;
        if parsed_type(theirs) != ours.content_type.mime_type {
            return Err(disagree);
        }
        if matches!(theirs.body, PartType::Multipart(_) | PartType::Message(_)) {
            continue;
        }
        let start = usize::try_from(theirs.offset_body).map_err(|_| disagree)?;
        let end = usize::try_from(theirs.offset_end).map_err(|_| disagree)?;
        let body = msg.raw_message().get(start..end).ok_or(disagree)?;
        if body.trim_ascii_end() != ours.body.trim_ascii_end() {
            return Err(disagree);
        }
    }
    Ok(())
}

/// Reads `msg` strictly and checks that `mail-parser` agrees.
///
/// # Errors
/// The [`Ambiguity`] found.
pub fn unambiguous<'m>(msg: &'m Message<'_>) -> Result<Structure<'m>, Ambiguity> {
    let s = read(msg.raw_message())?;
    agrees(msg, &s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_case_table() {
        let ok = |v: &str| parse_content_type(v.as_bytes()).ok();
        type Want<'a> = Option<(&'a str, &'a [(&'a str, &'a str)])>;
        let cases: &[(&str, Want<'_>)] = &[
            ("text/plain", Some(("text/plain", &[]))),
            (
                " Text/Plain ; charset=utf-8",
                Some(("text/plain", &[("charset", "utf-8")])),
            ),
            (
                "multipart/encrypted; protocol=\"application/pgp-encrypted\";\t boundary=\"a b\"",
                Some((
                    "multipart/encrypted",
                    &[
                        ("protocol", "application/pgp-encrypted"),
                        ("boundary", "a b"),
                    ],
                )),
            ),
            ("text/plain;", Some(("text/plain", &[]))),
            ("a/b; x=\"q\\\"q\"", Some(("a/b", &[("x", "q\"q")]))),
            ("A/B; X=Token", Some(("a/b", &[("x", "Token")]))),
            ("text", None),
            ("text/", None),
            ("text /plain", None),
            ("text/plain (comment)", None),
            ("text/plain; a=1; A=2", None),
            ("text/plain; a*=utf-8''x", None),
            ("text/plain; a*0=x", None),
            ("text/plain; a=\"open", None),
            ("text/plain; a=", None),
            ("text/plain a=b", None),
            ("", None),
        ];
        for (value, want) in cases {
            let got = ok(value);
            let want = want.map(|(t, p)| ContentType {
                mime_type: (*t).to_owned(),
                params: p
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
            });
            assert_eq!(got, want, "{value:?}");
        }
    }

    const GOOD: &str = "From: a@x\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed;\r\n boundary=\"B\"\r\n\r\n\
        pre\r\n--B\r\nContent-Type: text/plain\r\n\r\none\r\n\
        --B \r\n\r\ntwo\r\n\r\n--B--\r\nepi\r\n";

    #[test]
    fn reads_parts_preamble_epilogue() {
        let s = read(GOOD.as_bytes()).unwrap();
        assert_eq!(s.root.content_type.mime_type, "multipart/mixed");
        assert_eq!(s.preamble, b"pre");
        assert_eq!(s.epilogue, b"epi\r\n");
        assert_eq!(s.parts.len(), 2);
        assert_eq!(s.parts[0].body, b"one");
        assert_eq!(s.parts[1].content_type.mime_type, "text/plain");
        assert_eq!(s.parts[1].body, b"two\r\n");
        let msg = crate::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(agrees(&msg, &s), Ok(()));
        // Not multipart: no parts.
        let plain = read(b"Subject: x\n\nhello\n").unwrap();
        assert!(plain.parts.is_empty());
        assert_eq!(plain.root.body, b"hello\n");
    }

    #[test]
    fn ambiguity_case_table() {
        let cases: &[(&str, &str, &str, Ambiguity)] = &[
            (
                "repeated content-type",
                "MIME-Version: 1.0\r\n",
                "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n",
                Ambiguity::Repeated("content-type"),
            ),
            (
                "repeated mime-version",
                "MIME-Version: 1.0\r\n",
                "MIME-Version: 1.0\r\nmime-version: 1.0\r\n",
                Ambiguity::Repeated("mime-version"),
            ),
            (
                "repeated cte in a part",
                "--B\r\nContent-Type: text/plain\r\n",
                "--B\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: 7bit\r\n\
                 CONTENT-TRANSFER-ENCODING: base64\r\n",
                Ambiguity::Repeated("content-transfer-encoding"),
            ),
            (
                "repeated content-type in a part",
                "--B\r\nContent-Type: text/plain\r\n",
                "--B\r\nContent-Type: text/plain\r\nContent-Type: text/html\r\n",
                Ambiguity::Repeated("content-type"),
            ),
            (
                "base64 multipart",
                "MIME-Version: 1.0\r\n",
                "MIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n",
                Ambiguity::MultipartEncoding,
            ),
            (
                "space before colon",
                "MIME-Version: 1.0\r\n",
                "MIME-Version : 1.0\r\n",
                Ambiguity::BadHeaderLine,
            ),
            (
                "line without colon",
                "MIME-Version: 1.0\r\n",
                "MIME-Version 1.0\r\n",
                Ambiguity::BadHeaderLine,
            ),
            (
                "whitespace line",
                "MIME-Version: 1.0\r\n",
                "MIME-Version: 1.0\r\n \t\r\n",
                Ambiguity::BlankContinuation,
            ),
            (
                "bare cr in header",
                "MIME-Version: 1.0\r\n",
                "MIME-Version: 1.0\rX: y\r\n",
                Ambiguity::BareCr,
            ),
            (
                "bare cr in body",
                "\r\none\r\n",
                "\r\none\r--B\r\n",
                Ambiguity::BareCr,
            ),
            (
                "delimiter with text",
                "--B \r\n",
                "--Bx\r\n",
                Ambiguity::NearDelimiter,
            ),
            (
                "close delimiter with text",
                "--B--\r\n",
                "--B-- x\r\n",
                Ambiguity::NearDelimiter,
            ),
            (
                "no close delimiter",
                "--B--\r\n",
                "\r\n",
                Ambiguity::NoCloseDelimiter,
            ),
            (
                "no boundary",
                "boundary=\"B\"",
                "charset=utf-8",
                Ambiguity::BadBoundary,
            ),
            (
                "boundary too long",
                "boundary=\"B\"",
                &format!("boundary=\"{}\"", "b".repeat(71)),
                Ambiguity::BadBoundary,
            ),
            (
                "content-type comment",
                "multipart/mixed;",
                "multipart/mixed (x);",
                Ambiguity::BadContentType,
            ),
        ];
        for (name, from, to, want) in cases {
            assert!(GOOD.contains(from), "{name}");
            let raw = GOOD.replacen(from, to, 1);
            assert_eq!(read(raw.as_bytes()).err(), Some(*want), "{name}");
        }
        let no_parts = "Content-Type: multipart/mixed; boundary=B\r\n\r\n--B--\r\n";
        assert_eq!(read(no_parts.as_bytes()).err(), Some(Ambiguity::NoParts));
        let continuation_first = " folded: x\r\n\r\nbody";
        assert_eq!(
            read(continuation_first.as_bytes()).err(),
            Some(Ambiguity::BadHeaderLine)
        );
    }
}
