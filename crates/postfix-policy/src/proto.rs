//! Wire format of the Postfix SMTP access policy delegation protocol.
//!
//! Source: Postfix 3.7 `SMTPD_POLICY_README`, section "Policy protocol
//! description" (<https://www.postfix.org/SMTPD_POLICY_README.html>), and
//! `access(5)` for the actions.
//!
//! A request is a sequence of `name=value` lines, each ended by `\n`, and the
//! request ends with an empty line. The reply is one `action=<action>` line,
//! also followed by an empty line. Postfix keeps the connection open and
//! sends the next request on it after reading the reply, so requests on one
//! connection are strictly sequential (this crate still answers pipelined
//! requests, in order).
//!
//! Facts from the README that shape the parser:
//!
//! - `request=smtpd_access_policy` is required (the only request type the
//!   SMTP server sends); the order of attributes does not matter and unknown
//!   attributes are ignored.
//! - An attribute name never contains `=`, NUL or newline; a value never
//!   contains NUL or newline. A value may contain `=`, so a line is split at
//!   its first `=`.
//! - An unavailable value is sent as absent, empty, or `0` for numbers; the
//!   typed accessors below treat empty as absent.
//! - "When the same attribute name is sent more than once, the server may
//!   keep the first value or the last": Postfix itself never does that, and
//!   the values decide policy (`sasl_username` keys the rate limit), so a
//!   duplicate is refused here rather than guessed at.
//! - `instance` is the same for every request about one message and is only
//!   meaningful on one connection.
//!
//! Limits: the README sets none. Postfix's SMTP server bounds what a client
//! can put into the attributes by its `line_length_limit` (2048 bytes), and
//! the xtext-encoded `ccert_*` values can be three times longer than the
//! certificate fields they encode; [`MAX_LINE_LENGTH`] (8 KiB) covers both
//! with room to spare. Postfix 3.7 sends about 30 attributes;
//! [`MAX_ATTRIBUTES`] allows four times that.
//!
//! This module only parses and encodes: it must not depend on
//! [`crate::server`] (connections, framing).

use std::fmt;

/// The `request` value of the Postfix SMTP server's queries.
pub const SMTPD_ACCESS_POLICY: &str = "smtpd_access_policy";
/// Longest accepted attribute line, without its `\n`.
pub const MAX_LINE_LENGTH: usize = 8 * 1024;
/// Most attribute lines accepted in one request.
pub const MAX_ATTRIBUTES: usize = 128;

/// Size limits for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest attribute line, without its `\n`.
    pub max_line: usize,
    /// Most attribute lines per request.
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: MAX_LINE_LENGTH,
            max_attributes: MAX_ATTRIBUTES,
        }
    }
}

/// Why a request was refused. Messages name attributes but never quote
/// values, and names are escaped and truncated, so they are safe to log and
/// to send back to Postfix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An attribute line was longer than the limit.
    #[error("attribute line longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// More attribute lines than the limit.
    #[error("more than {max} attributes")]
    TooManyAttributes {
        /// The limit.
        max: usize,
    },
    /// A line without `=`.
    #[error("line {line} is not name=value")]
    MissingEquals {
        /// 1-based line number within the request.
        line: usize,
    },
    /// A line starting with `=`.
    #[error("line {line} has an empty attribute name")]
    EmptyName {
        /// 1-based line number within the request.
        line: usize,
    },
    /// A line that is not UTF-8.
    #[error("line {line} is not valid UTF-8")]
    InvalidUtf8 {
        /// 1-based line number within the request.
        line: usize,
    },
    /// A line containing NUL, which the protocol forbids.
    #[error("line {line} contains a NUL byte")]
    NulByte {
        /// 1-based line number within the request.
        line: usize,
    },
    /// The same attribute twice.
    #[error("attribute {name} appears more than once")]
    DuplicateAttribute {
        /// The attribute name, escaped and truncated.
        name: String,
    },
    /// No `request` attribute.
    #[error("no request attribute")]
    MissingRequest,
    /// A `request` other than `smtpd_access_policy`.
    #[error("unsupported request type {request}")]
    UnsupportedRequest {
        /// The request type, escaped and truncated.
        request: String,
    },
    /// [`parse_request`] only: an empty line before the end of the text.
    #[error("empty line inside the request")]
    UnexpectedEmptyLine,
}

/// Escapes and truncates peer-supplied text for error messages and logs.
fn show(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if s.chars().nth(MAX).is_some() {
        out.push_str("...");
    }
    format!("\"{out}\"")
}

/// The SMTP command Postfix was handling when it asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolState {
    /// `CONNECT` (smtpd_client_restrictions without delay_reject).
    Connect,
    /// `EHLO`.
    Ehlo,
    /// `HELO`.
    Helo,
    /// `MAIL`.
    Mail,
    /// `RCPT`: one request per recipient.
    Rcpt,
    /// `DATA` (also for BDAT): one request per message.
    Data,
    /// `END-OF-MESSAGE`: one request per message, after the content.
    EndOfMessage,
    /// `VRFY`.
    Vrfy,
    /// `ETRN`.
    Etrn,
    /// Anything else (a future Postfix).
    Other,
}

impl ProtocolState {
    /// Maps the attribute value; Postfix sends these in upper case.
    pub fn from_value(v: &str) -> ProtocolState {
        match v {
            "CONNECT" => ProtocolState::Connect,
            "EHLO" => ProtocolState::Ehlo,
            "HELO" => ProtocolState::Helo,
            "MAIL" => ProtocolState::Mail,
            "RCPT" => ProtocolState::Rcpt,
            "DATA" => ProtocolState::Data,
            "END-OF-MESSAGE" => ProtocolState::EndOfMessage,
            "VRFY" => ProtocolState::Vrfy,
            "ETRN" => ProtocolState::Etrn,
            _ => ProtocolState::Other,
        }
    }
}

/// One complete, well-formed policy request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// In the order received; few enough that a linear search beats hashing.
    attrs: Vec<(String, String)>,
}

impl Request {
    /// Builds a request from `(name, value)` pairs, with the same checks as
    /// the wire parser (for handler tests and tools).
    ///
    /// # Errors
    ///
    /// [`ParseError`] as for the wire: an empty name, `=` or NUL in a name,
    /// NUL or newline in a value, a duplicate name, a missing or unsupported
    /// `request`, or more than [`MAX_ATTRIBUTES`] pairs.
    pub fn from_attrs<'a>(
        attrs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Request, ParseError> {
        let mut p = RequestParser::new(Limits::default());
        for (name, value) in attrs {
            if name.contains(['=', '\n']) || value.contains('\n') {
                return Err(ParseError::MissingEquals { line: p.lines + 1 });
            }
            p.push_line(format!("{name}={value}").as_bytes());
        }
        p.finish()
    }

    /// The value of attribute `name` as sent (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All attributes in the order received.
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    fn non_empty(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn number(&self, name: &str) -> Option<u64> {
        self.get(name).and_then(|v| v.parse().ok())
    }

    /// `request`: always [`SMTPD_ACCESS_POLICY`] once parsed.
    pub fn request(&self) -> &str {
        self.get("request").unwrap_or_default()
    }

    /// `protocol_state`; `None` when absent or empty.
    pub fn protocol_state(&self) -> Option<ProtocolState> {
        self.non_empty("protocol_state")
            .map(ProtocolState::from_value)
    }

    /// `protocol_name`: `SMTP` or `ESMTP`.
    pub fn protocol_name(&self) -> Option<&str> {
        self.non_empty("protocol_name")
    }

    /// `sender`, the envelope sender as Postfix has it (without `<>`).
    /// `Some("")` is the null sender of bounces; `None` means not sent.
    pub fn sender(&self) -> Option<&str> {
        self.get("sender")
    }

    /// `recipient`, as the client gave it in RCPT TO (case preserved);
    /// present at RCPT, and at DATA/END-OF-MESSAGE only for single-recipient
    /// mail.
    pub fn recipient(&self) -> Option<&str> {
        self.non_empty("recipient")
    }

    /// `sasl_username`; `None` for unauthenticated sessions.
    pub fn sasl_username(&self) -> Option<&str> {
        self.non_empty("sasl_username")
    }

    /// `instance`: identifies the mail transaction on this connection.
    pub fn instance(&self) -> Option<&str> {
        self.non_empty("instance")
    }

    /// `client_address`.
    pub fn client_address(&self) -> Option<&str> {
        self.non_empty("client_address")
    }

    /// `queue_id`; empty before Postfix has opened a queue file.
    pub fn queue_id(&self) -> Option<&str> {
        self.non_empty("queue_id")
    }

    /// `size`: the MAIL FROM SIZE= value, or the real size at
    /// END-OF-MESSAGE; `None` when absent or not a number.
    pub fn size(&self) -> Option<u64> {
        self.number("size")
    }

    /// `recipient_count`: non-zero only at DATA and END-OF-MESSAGE.
    pub fn recipient_count(&self) -> Option<u64> {
        self.number("recipient_count")
    }
}

/// Builds a [`Request`] line by line, as the lines arrive, with bounded
/// memory. After the first error it only counts lines, so that the rest of
/// a bad request can be skipped up to its empty line.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    attrs: Vec<(String, String)>,
    error: Option<ParseError>,
    lines: usize,
}

impl RequestParser {
    /// An empty parser.
    pub fn new(limits: Limits) -> RequestParser {
        RequestParser {
            limits,
            attrs: Vec::new(),
            error: None,
            lines: 0,
        }
    }

    /// Whether no line has been pushed since the last [`finish`](Self::finish).
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// Adds one attribute line, without its `\n`. The empty line that ends
    /// a request is not pushed; call [`finish`](Self::finish) instead.
    pub fn push_line(&mut self, line: &[u8]) {
        self.lines += 1;
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.parse_line(line) {
            self.fail(e);
        }
    }

    /// Records a line that was longer than the limit (and was discarded).
    pub fn push_overlong_line(&mut self) {
        self.lines += 1;
        self.fail(ParseError::LineTooLong {
            max: self.limits.max_line,
        });
    }

    fn fail(&mut self, e: ParseError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        // Nothing kept from a bad request is ever used.
        self.attrs = Vec::new();
    }

    fn parse_line(&mut self, line: &[u8]) -> Result<(), ParseError> {
        let n = self.lines;
        if line.len() > self.limits.max_line {
            return Err(ParseError::LineTooLong {
                max: self.limits.max_line,
            });
        }
        if self.attrs.len() >= self.limits.max_attributes {
            return Err(ParseError::TooManyAttributes {
                max: self.limits.max_attributes,
            });
        }
        if line.contains(&0) {
            return Err(ParseError::NulByte { line: n });
        }
        let line = std::str::from_utf8(line).map_err(|_| ParseError::InvalidUtf8 { line: n })?;
        let (name, value) = line
            .split_once('=')
            .ok_or(ParseError::MissingEquals { line: n })?;
        if name.is_empty() {
            return Err(ParseError::EmptyName { line: n });
        }
        if self.attrs.iter().any(|(have, _)| have == name) {
            return Err(ParseError::DuplicateAttribute { name: show(name) });
        }
        self.attrs.push((name.to_owned(), value.to_owned()));
        Ok(())
    }

    /// Ends the request (its empty line arrived) and resets the parser.
    ///
    /// # Errors
    ///
    /// The first [`ParseError`] of any line, else [`ParseError::MissingRequest`]
    /// or [`ParseError::UnsupportedRequest`].
    pub fn finish(&mut self) -> Result<Request, ParseError> {
        let attrs = std::mem::take(&mut self.attrs);
        self.lines = 0;
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let req = Request { attrs };
        match req.get("request") {
            None => Err(ParseError::MissingRequest),
            Some(SMTPD_ACCESS_POLICY) => Ok(req),
            Some(other) => Err(ParseError::UnsupportedRequest {
                request: show(other),
            }),
        }
    }
}

/// Parses one request given as its attribute lines (`name=value\n` each; the
/// last `\n` may be missing), without the empty line that ends it.
///
/// # Errors
///
/// Any [`ParseError`]; [`ParseError::UnexpectedEmptyLine`] for an empty line
/// before the end.
pub fn parse_request(text: &[u8], limits: Limits) -> Result<Request, ParseError> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut p = RequestParser::new(limits);
    if text.is_empty() {
        return p.finish();
    }
    for line in text.split(|&b| b == b'\n') {
        if line.is_empty() {
            return Err(ParseError::UnexpectedEmptyLine);
        }
        p.push_line(line);
    }
    p.finish()
}

/// An SMTP reply code with its enhanced status code (RFC 3463), such as
/// `450 4.7.1`. Only 4xx and 5xx codes whose enhanced class matches exist,
/// because only those make sense as a policy verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyCode {
    code: u16,
    subject: u16,
    detail: u16,
}

impl ReplyCode {
    /// `code` with enhanced status `<code/100>.<subject>.<detail>`; `None`
    /// unless `code` is 400-599 and subject and detail are 0-999.
    pub const fn new(code: u16, subject: u16, detail: u16) -> Option<ReplyCode> {
        if code >= 400 && code <= 599 && subject <= 999 && detail <= 999 {
            Some(ReplyCode {
                code,
                subject,
                detail,
            })
        } else {
            None
        }
    }

    /// As [`ReplyCode::new`], for constants: an invalid code fails the build.
    ///
    /// # Panics
    ///
    /// When the code is invalid; use it in `const` items only, where that
    /// panic is a compile error.
    pub const fn constant(code: u16, subject: u16, detail: u16) -> ReplyCode {
        match ReplyCode::new(code, subject, detail) {
            Some(c) => c,
            None => panic!("invalid SMTP reply code"),
        }
    }

    /// The three-digit code.
    pub const fn code(self) -> u16 {
        self.code
    }

    /// Whether the code is temporary (4xx).
    pub const fn is_temporary(self) -> bool {
        self.code < 500
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.code / 100;
        write!(f, "{} {class}.{}.{}", self.code, self.subject, self.detail)
    }
}

/// A reply: one action of `access(5)`. Postfix prefixes a rejection's text
/// with `<address>: Recipient address rejected: ` (or the like) itself, so
/// the text is just the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `DUNNO`: no opinion; Postfix goes on with the next restriction.
    Dunno,
    /// `OK`: accept, skipping the rest of this restriction list.
    Ok,
    /// `REJECT text`: permanent, with Postfix's `access_map_reject_code`.
    Reject(String),
    /// `DEFER text`: temporary, with `access_map_defer_code`.
    Defer(String),
    /// `DEFER_IF_PERMIT text`: temporary, unless a later restriction
    /// rejects for good. The answer for "could not decide".
    DeferIfPermit(String),
    /// `DEFER_IF_REJECT text`: temporary if a later restriction rejects.
    DeferIfReject(String),
    /// `<code> <x.y.z> text`: this exact reply.
    Reply {
        /// Code and enhanced status.
        code: ReplyCode,
        /// The reason.
        text: String,
    },
}

impl Action {
    /// `<code> text`.
    pub fn reply(code: ReplyCode, text: impl Into<String>) -> Action {
        Action::Reply {
            code,
            text: text.into(),
        }
    }

    /// `DEFER_IF_PERMIT text`.
    pub fn defer_if_permit(text: impl Into<String>) -> Action {
        Action::DeferIfPermit(text.into())
    }

    /// The value of the `action` attribute, e.g. `450 4.7.1 Slow down`.
    /// Line breaks and other control characters in the text become spaces,
    /// so a reply can never break the framing.
    pub fn value(&self) -> String {
        let (head, text): (std::borrow::Cow<'_, str>, &str) = match self {
            Action::Dunno => ("DUNNO".into(), ""),
            Action::Ok => ("OK".into(), ""),
            Action::Reject(t) => ("REJECT".into(), t),
            Action::Defer(t) => ("DEFER".into(), t),
            Action::DeferIfPermit(t) => ("DEFER_IF_PERMIT".into(), t),
            Action::DeferIfReject(t) => ("DEFER_IF_REJECT".into(), t),
            Action::Reply { code, text } => (code.to_string().into(), text),
        };
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let text = text.trim();
        if text.is_empty() {
            head.into_owned()
        } else {
            format!("{head} {text}")
        }
    }

    /// Appends the complete reply, `action=<value>\n\n`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"action=");
        out.extend_from_slice(self.value().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    /// Whether this is [`Action::Dunno`].
    pub fn is_dunno(&self) -> bool {
        matches!(self, Action::Dunno)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "request=smtpd_access_policy\nprotocol_state=RCPT\n";

    fn parse(text: &str) -> Result<Request, ParseError> {
        parse_request(text.as_bytes(), Limits::default())
    }

    #[test]
    fn full_postfix_request() {
        let text = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
                    helo_name=h.example\nqueue_id=8045F2AB23\nsender=foo@bar.tld\n\
                    recipient=Bar@Foo.tld\nrecipient_count=0\nclient_address=1.2.3.4\n\
                    client_name=another.domain.tld\ninstance=123.456.7\nsasl_method=plain\n\
                    sasl_username=you@x\nsasl_sender=\nsize=12345\nccert_subject=\n\
                    encryption_protocol=TLSv1.3\nstress=\nclient_port=1234\n\
                    policy_context=\nserver_address=10.3.2.1\nserver_port=54321\n\
                    compatibility_level=3.6\nmail_version=3.7.11\n";
        let r = parse(text).unwrap();
        assert_eq!(r.request(), SMTPD_ACCESS_POLICY);
        assert_eq!(r.protocol_state(), Some(ProtocolState::Rcpt));
        assert_eq!(r.protocol_name(), Some("ESMTP"));
        assert_eq!(r.sender(), Some("foo@bar.tld"));
        assert_eq!(r.recipient(), Some("Bar@Foo.tld"));
        assert_eq!(r.sasl_username(), Some("you@x"));
        assert_eq!(r.instance(), Some("123.456.7"));
        assert_eq!(r.client_address(), Some("1.2.3.4"));
        assert_eq!(r.queue_id(), Some("8045F2AB23"));
        assert_eq!(r.size(), Some(12345));
        assert_eq!(r.recipient_count(), Some(0));
        assert_eq!(r.get("sasl_sender"), Some(""));
        assert_eq!(r.get("mail_version"), Some("3.7.11"));
        assert_eq!(r.attrs().count(), 24);
    }

    #[test]
    fn accessor_edge_cases() {
        let r = parse(&format!(
            "{BASE}sender=\nsasl_username=\nsize=abc\nrecipient=\nx=a=b=c\n"
        ))
        .unwrap();
        assert_eq!(r.sender(), Some(""), "null sender is kept");
        assert_eq!(r.sasl_username(), None);
        assert_eq!(r.recipient(), None);
        assert_eq!(r.size(), None);
        assert_eq!(r.get("x"), Some("a=b=c"), "split at the first '='");
        assert_eq!(r.instance(), None);
        let r = parse("request=smtpd_access_policy\nprotocol_state=FOO\n").unwrap();
        assert_eq!(r.protocol_state(), Some(ProtocolState::Other));
        let r = parse("request=smtpd_access_policy\n").unwrap();
        assert_eq!(r.protocol_state(), None);
        for (v, s) in [
            ("DATA", ProtocolState::Data),
            ("END-OF-MESSAGE", ProtocolState::EndOfMessage),
            ("CONNECT", ProtocolState::Connect),
        ] {
            assert_eq!(ProtocolState::from_value(v), s);
        }
    }

    #[test]
    fn errors_table() {
        let long = format!("{BASE}x={}\n", "a".repeat(MAX_LINE_LENGTH));
        let many: String = (0..MAX_ATTRIBUTES).map(|i| format!("a{i}=1\n")).collect();
        let many = format!("{BASE}{many}");
        let cases: Vec<(Vec<u8>, ParseError)> = vec![
            (b"".to_vec(), ParseError::MissingRequest),
            (
                b"protocol_state=RCPT\n".to_vec(),
                ParseError::MissingRequest,
            ),
            (
                b"request=junk_policy\n".to_vec(),
                ParseError::UnsupportedRequest {
                    request: "\"junk_policy\"".into(),
                },
            ),
            (
                format!("{BASE}garbage\n").into_bytes(),
                ParseError::MissingEquals { line: 3 },
            ),
            (
                format!("{BASE}=value\n").into_bytes(),
                ParseError::EmptyName { line: 3 },
            ),
            (
                b"request=smtpd_access_policy\nx=\xc3\n".to_vec(),
                ParseError::InvalidUtf8 { line: 2 },
            ),
            (
                b"request=smtpd_access_policy\nx=a\0b\n".to_vec(),
                ParseError::NulByte { line: 2 },
            ),
            (
                format!("{BASE}sasl_username=a\nsasl_username=b\n").into_bytes(),
                ParseError::DuplicateAttribute {
                    name: "\"sasl_username\"".into(),
                },
            ),
            (
                long.into_bytes(),
                ParseError::LineTooLong {
                    max: MAX_LINE_LENGTH,
                },
            ),
            (
                many.into_bytes(),
                ParseError::TooManyAttributes {
                    max: MAX_ATTRIBUTES,
                },
            ),
            (
                format!("{BASE}\nx=y\n").into_bytes(),
                ParseError::UnexpectedEmptyLine,
            ),
        ];
        for (text, want) in cases {
            let got = parse_request(&text, Limits::default());
            assert_eq!(got, Err(want), "{:?}", text.escape_ascii().to_string());
        }
    }

    #[test]
    fn invalid_utf8_literal_bytes() {
        // Built from bytes: a str literal cannot hold a lone 0xff.
        let mut text = BASE.as_bytes().to_vec();
        text.extend_from_slice(b"recipient=a\xffb\n");
        assert_eq!(
            parse_request(&text, Limits::default()),
            Err(ParseError::InvalidUtf8 { line: 3 })
        );
    }

    #[test]
    fn first_error_wins_and_parser_resets() {
        let mut p = RequestParser::new(Limits::default());
        assert!(p.is_empty());
        p.push_line(b"junk");
        p.push_overlong_line();
        p.push_line(b"request=smtpd_access_policy");
        assert!(!p.is_empty());
        assert_eq!(p.finish(), Err(ParseError::MissingEquals { line: 1 }));
        assert!(p.is_empty());
        p.push_line(b"request=smtpd_access_policy");
        assert!(p.finish().is_ok());
    }

    #[test]
    fn error_text_escapes_and_truncates_names() {
        let name = format!("a\u{1b}b{}", "x".repeat(100));
        let e = Request::from_attrs([
            ("request", SMTPD_ACCESS_POLICY),
            (name.as_str(), "1"),
            (name.as_str(), "2"),
        ])
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("a\\u{1b}b"), "{msg}");
        assert!(msg.contains("...\""), "{msg}");
        assert!(msg.len() < 120, "{msg}");
    }

    #[test]
    fn from_attrs_checks_like_the_wire() {
        let ok = Request::from_attrs([("request", SMTPD_ACCESS_POLICY), ("recipient", "a@b")]);
        assert_eq!(ok.unwrap().recipient(), Some("a@b"));
        assert!(Request::from_attrs([("request", SMTPD_ACCESS_POLICY), ("a=b", "1")]).is_err());
        assert!(Request::from_attrs([("request", SMTPD_ACCESS_POLICY), ("a", "1\n")]).is_err());
        assert!(Request::from_attrs([("recipient", "a@b")]).is_err());
    }

    #[test]
    fn actions_encode_exactly() {
        const TEMP: ReplyCode = ReplyCode::constant(450, 7, 1);
        const PERM: ReplyCode = ReplyCode::constant(550, 1, 1);
        let cases = [
            (Action::Dunno, "action=DUNNO\n\n"),
            (Action::Ok, "action=OK\n\n"),
            (
                Action::Reject("go away".into()),
                "action=REJECT go away\n\n",
            ),
            (Action::Reject(String::new()), "action=REJECT\n\n"),
            (Action::Defer("later".into()), "action=DEFER later\n\n"),
            (
                Action::defer_if_permit("Service temporarily unavailable"),
                "action=DEFER_IF_PERMIT Service temporarily unavailable\n\n",
            ),
            (
                Action::DeferIfReject("x".into()),
                "action=DEFER_IF_REJECT x\n\n",
            ),
            (
                Action::reply(TEMP, "Rate limit exceeded"),
                "action=450 4.7.1 Rate limit exceeded\n\n",
            ),
            (
                Action::reply(PERM, "no such user"),
                "action=550 5.1.1 no such user\n\n",
            ),
            (Action::reply(PERM, ""), "action=550 5.1.1\n\n"),
            // Control characters can never split the reply.
            (
                Action::defer_if_permit("a\nb\r\n\0c "),
                "action=DEFER_IF_PERMIT a b   c\n\n",
            ),
            (
                Action::defer_if_permit("\n\n"),
                "action=DEFER_IF_PERMIT\n\n",
            ),
        ];
        for (action, want) in cases {
            let mut out = Vec::new();
            action.encode(&mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want);
            assert_eq!(format!("action={action}\n\n"), want);
        }
    }

    #[test]
    fn reply_codes() {
        assert_eq!(ReplyCode::new(450, 7, 1).unwrap().to_string(), "450 4.7.1");
        assert_eq!(ReplyCode::new(554, 7, 1).unwrap().to_string(), "554 5.7.1");
        assert!(ReplyCode::new(450, 7, 1).unwrap().is_temporary());
        assert!(!ReplyCode::new(550, 1, 1).unwrap().is_temporary());
        assert_eq!(ReplyCode::new(550, 1, 1).unwrap().code(), 550);
        for (c, s, d) in [
            (250, 0, 0),
            (399, 1, 1),
            (600, 1, 1),
            (450, 1000, 1),
            (450, 1, 1000),
        ] {
            assert_eq!(ReplyCode::new(c, s, d), None, "{c} {s} {d}");
        }
    }
}
