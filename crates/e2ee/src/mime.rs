//! The MIME shapes the rules recognise, on messages parsed by `mail-parser`
//! (RFC 5322 messages, RFC 2045/2046 MIME).
//!
//! - OpenPGP/MIME encrypted mail: RFC 3156 section 4, narrowed as in
//!   DESIGN.md "Outgoing mail";
//! - Secure-Join requests: the Delta Chat Secure-Join protocol
//!   (<https://securejoin.readthedocs.io>), steps `vc-request`/`vg-request`,
//!   the only handshake messages sent before keys are known;
//! - Autocrypt Setup Message: Autocrypt Level 1 section 4.4;
//! - delivery status notifications: RFC 3464 (`multipart/report`).
//!
//! Every predicate answers "no" when in doubt.

use mail_parser::{Address, Message, MessagePart, MimeHeaders, PartType};

use crate::{armor, packets};

/// The lower-cased `type/subtype` of a part; RFC 2045 section 5.2 default
/// `text/plain` when there is no usable Content-Type.
fn mime_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match &ct.c_subtype {
            Some(sub) => format!("{}/{}", ct.c_type, sub).to_ascii_lowercase(),
            None => ct.c_type.to_ascii_lowercase(),
        },
        None => "text/plain".to_owned(),
    }
}

/// The parts directly inside the root part, when the root is a multipart.
fn root_children<'m, 'x>(msg: &'m Message<'x>) -> Option<Vec<&'m MessagePart<'x>>> {
    match &msg.parts.first()?.body {
        PartType::Multipart(ids) => ids
            .iter()
            .map(|&id| msg.parts.get(usize::try_from(id).ok()?))
            .collect(),
        _ => None,
    }
}

/// A part with a body of its own: neither a multipart nor an embedded message.
fn is_leaf(part: &MessagePart<'_>) -> bool {
    !matches!(part.body, PartType::Multipart(_) | PartType::Message(_)) && !part.is_encoding_problem
}

/// The top-level header fields called `name` (case-insensitive), in order.
fn header_fields<'m>(msg: &'m Message<'_>, name: &str) -> Vec<&'m mail_parser::Header<'m>> {
    msg.parts
        .first()
        .map(|root| {
            root.headers
                .iter()
                .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
                .collect()
        })
        .unwrap_or_default()
}

/// The first top-level header field called `name`, as trimmed text.
fn first_text_header<'m>(msg: &'m Message<'_>, name: &str) -> Option<&'m str> {
    header_fields(msg, name)
        .first()
        .and_then(|h| h.value.as_text())
        .map(str::trim)
}

/// Whether `msg` is OpenPGP/MIME encrypted in the narrow sense of
/// DESIGN.md: top-level `multipart/encrypted` with exactly two leaf parts,
/// `application/pgp-encrypted` with body `Version: 1` (trimmed), then
/// `application/octet-stream` holding one ASCII-armored message whose
/// packets are PKESK/SKESK* SEIPD (see [`packets::is_encrypted_message`]).
///
/// `allow_armor_headers` permits armor header lines (`Version: ...`), which
/// foreign senders write; our own clients never do, so outgoing mail is
/// held to the stricter form.
pub fn is_valid_encrypted(msg: &Message<'_>, allow_armor_headers: bool) -> bool {
    let Some(root) = msg.parts.first() else {
        return false;
    };
    if mime_type(root) != "multipart/encrypted" {
        return false;
    }
    let Some(children) = root_children(msg) else {
        return false;
    };
    let [control, payload] = children.as_slice() else {
        return false;
    };
    if !is_leaf(control) || !is_leaf(payload) {
        return false;
    }
    if mime_type(control) != "application/pgp-encrypted"
        || mime_type(payload) != "application/octet-stream"
    {
        return false;
    }
    if control.contents().trim_ascii() != b"Version: 1" {
        return false;
    }
    match armor::dearmor(payload.contents(), allow_armor_headers) {
        Ok(data) => packets::is_encrypted_message(&data),
        Err(_) => false,
    }
}

/// Whether `msg` is a cleartext Secure-Join request: header `Secure-Join:
/// vc-request` or `vg-request`, a multipart root with exactly one
/// `text/plain` leaf whose trimmed, lower-cased text is
/// `secure-join: vc-request` or `secure-join: vg-request`.
///
/// Later Secure-Join steps (`vc-request-with-auth`, ...) are encrypted and
/// must not pass here.
pub fn is_securejoin(msg: &Message<'_>) -> bool {
    if !matches!(
        first_text_header(msg, "Secure-Join"),
        Some("vc-request" | "vg-request")
    ) {
        return false;
    }
    let Some(children) = root_children(msg) else {
        return false;
    };
    let [part] = children.as_slice() else {
        return false;
    };
    if !is_leaf(part) || mime_type(part) != "text/plain" {
        return false;
    }
    let Some(text) = part.text_contents() else {
        return false;
    };
    matches!(
        text.trim().to_lowercase().as_str(),
        "secure-join: vc-request" | "secure-join: vg-request"
    )
}

/// Whether `msg` looks like an Autocrypt Setup Message: Subject exactly
/// `Autocrypt Setup Message` and a `multipart/mixed` root. (Its payload is
/// encrypted with a setup code, not to a key, so it cannot pass as
/// OpenPGP/MIME; the caller also requires it to be sent to oneself.)
pub fn is_autocrypt_setup(msg: &Message<'_>) -> bool {
    let Some(root) = msg.parts.first() else {
        return false;
    };
    msg.subject().map(str::trim) == Some("Autocrypt Setup Message")
        && mime_type(root) == "multipart/mixed"
}

/// Whether `msg` looks like a bounce: a non-empty `Auto-Submitted` header,
/// a From address starting with `mailer-daemon@` (any case) and a
/// `multipart/report` root. The envelope condition (null sender) is the
/// caller's.
pub fn is_bounce(msg: &Message<'_>) -> bool {
    let Some(root) = msg.parts.first() else {
        return false;
    };
    let auto_submitted = first_text_header(msg, "Auto-Submitted").is_some_and(|v| !v.is_empty());
    let from_daemon =
        from_address(msg).is_some_and(|a| a.to_ascii_lowercase().starts_with("mailer-daemon@"));
    auto_submitted && from_daemon && mime_type(root) == "multipart/report"
}

/// The single address in the single From header field, or `None` when
/// there is no From, more than one From field, a group, or more than one
/// address: with several authors a client could show any of them, so none
/// can be checked against the sender.
pub fn from_address(msg: &Message<'_>) -> Option<String> {
    let fields = header_fields(msg, "From");
    let [field] = fields.as_slice() else {
        return None;
    };
    match field.value.as_address()? {
        Address::List(list) => match list.as_slice() {
            [one] => one.address.as_deref().map(str::to_owned),
            _ => None,
        },
        Address::Group(_) => None,
    }
}
