//! The MIME shapes the rules recognise, on messages parsed by `mail-parser`
//! (RFC 5322 messages, RFC 2045/2046 MIME).
//!
//! - OpenPGP/MIME encrypted mail: RFC 3156 section 4, narrowed as in
//!   docs/design.md "Outgoing mail";
//! - Secure-Join requests: the Delta Chat Secure-Join protocol
//!   (<https://securejoin.readthedocs.io>), steps `vc-request`/`vg-request`,
//!   the only handshake messages sent before keys are known;
//! - Autocrypt Setup Message: Autocrypt Level 1 section 4.4;
//! - delivery status notifications: RFC 3464 (`multipart/report`).
//!
//! Every predicate answers "no" when in doubt. The three that let a
//! message through as encrypted or as a cleartext exception also require
//! the structure to be unambiguous ([`structure::unambiguous`]) and allow
//! no cleartext outside the parts: the preamble and the epilogue hold at
//! most what real writers put there, and are bounded.
//!
//! What real writers put around `multipart/encrypted`: Delta Chat (its
//! `mimefactory` builds the message with the `mail-builder` crate, which
//! writes a blank line before the first delimiter and nothing after the
//! close delimiter), Mutt (`sendlib`, the same), Thunderbird (a one-line
//! preamble, "This is an OpenPGP/MIME encrypted message (RFC 4880 and
//! 3156)", inherited from Enigmail, whose older releases and other
//! GnuPG front ends wrote "RFC 2440 and 3156"). Delta Chat's Secure-Join
//! request and Autocrypt Setup Message are `multipart/mixed` from the same
//! builder: nothing in preamble or epilogue.

use mail_parser::{Address, Message, MessagePart, PartType};

use crate::structure::{self, Structure, parsed_type as mime_type};
use crate::{armor, packets};

/// The only non-blank preamble lines accepted in `multipart/encrypted`.
pub const KNOWN_ENCRYPTED_PREAMBLES: [&str; 2] = [
    "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)",
    "This is an OpenPGP/MIME encrypted message (RFC 2440 and 3156)",
];

/// Upper bound on the preamble, in bytes (the known line is 61).
pub const MAX_PREAMBLE: usize = 512;

/// Upper bound on the epilogue, which must be blank, in bytes.
pub const MAX_EPILOGUE: usize = 512;

/// Upper bound on a whole Secure-Join request. Delta Chat's are a few KiB,
/// most of it the Autocrypt header with the sender's key.
pub const MAX_SECUREJOIN_MESSAGE: usize = 64 * 1024;

/// Upper bound on the raw body of the Secure-Join text part
/// (`Secure-Join: vc-request` is 23 bytes).
pub const MAX_SECUREJOIN_TEXT: usize = 256;

/// Upper bound on a whole Autocrypt Setup Message (an encrypted secret key
/// of a few KiB, base64-encoded, in a small HTML page).
pub const MAX_SETUP_MESSAGE: usize = 256 * 1024;

/// Upper bound on the Autocrypt Setup Message's text part and on the text
/// around the armor in its attachment, in bytes.
pub const MAX_SETUP_TEXT: usize = 8 * 1024;

/// Whether `preamble` is blank but for at most one line from `known`, and
/// at most [`MAX_PREAMBLE`] bytes.
fn preamble_ok(preamble: &[u8], known: &[&str]) -> bool {
    if preamble.len() > MAX_PREAMBLE {
        return false;
    }
    let mut text = preamble
        .split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty());
    match (text.next(), text.next()) {
        (None, _) => true,
        (Some(line), None) => known.iter().any(|k| k.as_bytes() == line),
        _ => false,
    }
}

/// Whether the structure has no cleartext around its parts: preamble as
/// [`preamble_ok`], blank epilogue of at most [`MAX_EPILOGUE`] bytes.
fn nothing_around(s: &Structure<'_>, known_preambles: &[&str]) -> bool {
    preamble_ok(s.preamble, known_preambles)
        && s.epilogue.len() <= MAX_EPILOGUE
        && s.epilogue.iter().all(u8::is_ascii_whitespace)
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
/// docs/design.md: an unambiguous structure with nothing around the parts
/// but a known preamble line, top-level `multipart/encrypted` with exactly
/// two leaf parts,
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
    match structure::unambiguous(msg) {
        Ok(s) if nothing_around(&s, &KNOWN_ENCRYPTED_PREAMBLES) => {}
        _ => return false,
    }
    match armor::dearmor(payload.contents(), allow_armor_headers) {
        Ok(data) => packets::is_encrypted_message(&data),
        Err(_) => false,
    }
}

/// Whether `msg` is a cleartext Secure-Join request as Delta Chat sends it:
/// one header field `Secure-Join: vc-request` or `vg-request`, a multipart
/// root with exactly one `text/plain` leaf whose trimmed, lower-cased text
/// is `secure-join: vc-request` or `secure-join: vg-request`; an
/// unambiguous structure, blank preamble and epilogue, the part at most
/// [`MAX_SECUREJOIN_TEXT`] and the message at most
/// [`MAX_SECUREJOIN_MESSAGE`] bytes, so no cleartext rides along.
///
/// Later Secure-Join steps (`vc-request-with-auth`, ...) are encrypted and
/// must not pass here.
pub fn is_securejoin(msg: &Message<'_>) -> bool {
    if header_fields(msg, "Secure-Join").len() != 1
        || !matches!(
            first_text_header(msg, "Secure-Join"),
            Some("vc-request" | "vg-request")
        )
        || msg.raw_message().len() > MAX_SECUREJOIN_MESSAGE
    {
        return false;
    }
    match structure::unambiguous(msg) {
        Ok(s)
            if nothing_around(&s, &[])
                && s.parts.iter().all(|p| p.body.len() <= MAX_SECUREJOIN_TEXT) => {}
        _ => return false,
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

/// Whether `msg` is an Autocrypt Setup Message as Delta Chat writes it:
/// Subject exactly `Autocrypt Setup Message`, an unambiguous
/// `multipart/mixed` root with blank preamble and epilogue and exactly two
/// leaf parts, a `text/plain` description of at most [`MAX_SETUP_TEXT`]
/// bytes and an `application/autocrypt-setup` attachment holding one armored
/// OpenPGP message (armor headers allowed: `Passphrase-Format`, ...) that
/// is encrypted ([`packets::is_encrypted_message`]) with at most
/// [`MAX_SETUP_TEXT`] bytes around it; the whole at most
/// [`MAX_SETUP_MESSAGE`] bytes. (Its payload is encrypted with a setup
/// code, not to a key, so it cannot pass as OpenPGP/MIME; the caller also
/// requires it to be sent to oneself.)
pub fn is_autocrypt_setup(msg: &Message<'_>) -> bool {
    let Some(root) = msg.parts.first() else {
        return false;
    };
    if msg.subject().map(str::trim) != Some("Autocrypt Setup Message")
        || mime_type(root) != "multipart/mixed"
        || msg.raw_message().len() > MAX_SETUP_MESSAGE
    {
        return false;
    }
    let Ok(s) = structure::unambiguous(msg) else {
        return false;
    };
    if !nothing_around(&s, &[]) {
        return false;
    }
    let Some(children) = root_children(msg) else {
        return false;
    };
    let [text, setup] = children.as_slice() else {
        return false;
    };
    if !is_leaf(text)
        || !is_leaf(setup)
        || mime_type(text) != "text/plain"
        || s.parts[0].body.len() > MAX_SETUP_TEXT
        || mime_type(setup) != "application/autocrypt-setup"
    {
        return false;
    }
    armored_with_little_around(setup.contents())
}

/// Whether `data` holds exactly one armored `PGP MESSAGE` that is
/// encrypted, with at most [`MAX_SETUP_TEXT`] bytes around it.
fn armored_with_little_around(data: &[u8]) -> bool {
    const BEGIN: &[u8] = b"-----BEGIN PGP MESSAGE-----";
    const END: &[u8] = b"-----END PGP MESSAGE-----";
    let find = |needle: &[u8]| {
        let mut hits = data
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle)
            .map(|(i, _)| i);
        match (hits.next(), hits.next()) {
            (Some(i), None) => Some(i),
            _ => None,
        }
    };
    let (Some(begin), Some(end)) = (find(BEGIN), find(END)) else {
        return false;
    };
    let end = end + END.len();
    if end <= begin || data.len() - (end - begin) > MAX_SETUP_TEXT {
        return false;
    }
    match armor::dearmor(&data[begin..end], true) {
        Ok(packets) => packets::is_encrypted_message(&packets),
        Err(_) => false,
    }
}

/// Whether `msg` looks like a bounce: a non-empty `Auto-Submitted` header,
/// a From address starting with `mailer-daemon@` (any case) and a
/// `multipart/report` root with an unambiguous structure (a bounce is
/// cleartext anyway, but what passes as one must read as one everywhere).
/// The envelope condition (null sender) is the caller's.
pub fn is_bounce(msg: &Message<'_>) -> bool {
    let Some(root) = msg.parts.first() else {
        return false;
    };
    let auto_submitted = first_text_header(msg, "Auto-Submitted").is_some_and(|v| !v.is_empty());
    let from_daemon =
        from_address(msg).is_some_and(|a| a.to_ascii_lowercase().starts_with("mailer-daemon@"));
    auto_submitted
        && from_daemon
        && mime_type(root) == "multipart/report"
        && structure::unambiguous(msg).is_ok()
}

/// The single address in the single From header field, or `None` when
/// there is no From, more than one From field, a group, or more than one
/// address: with several authors a client could show any of them, so none
/// can be checked against the sender. Also `None` when the display name
/// holds an address ([`display_name_holds_address`]).
pub fn from_address(msg: &Message<'_>) -> Option<String> {
    let fields = header_fields(msg, "From");
    let [field] = fields.as_slice() else {
        return None;
    };
    let raw = msg
        .raw_message()
        .get(field.offset_start as usize..field.offset_end as usize)?;
    if display_name_holds_address(raw) {
        return None;
    }
    match field.value.as_address()? {
        Address::List(list) => match list.as_slice() {
            [one] => one.address.as_deref().map(str::to_owned),
            _ => None,
        },
        Address::Group(_) => None,
    }
}

/// Whether the address-list `value` (a header field's raw value) has an
/// `@` in the unquoted text before an `<`, as in
/// `alice@chat.example <mallory@evil.example>`: mail-parser takes the
/// address in angle brackets, Python's `email` the first one, and a reader
/// may show either. Quoted strings and comments are unambiguous and do not
/// count. Such a From is refused rather than guessed.
pub fn display_name_holds_address(value: &[u8]) -> bool {
    let mut in_quote = false;
    let mut comment = 0usize;
    let mut escaped = false;
    let mut in_angle = false;
    let mut at_in_phrase = false;
    for &b in value {
        if escaped {
            escaped = false;
            continue;
        }
        match b {
            b'\\' if in_quote || comment > 0 => escaped = true,
            b'"' if comment == 0 => in_quote = !in_quote,
            _ if in_quote => {}
            b'(' => comment += 1,
            b')' if comment > 0 => comment -= 1,
            _ if comment > 0 => {}
            b'<' if at_in_phrase => return true,
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            _ if in_angle => {}
            // A new mailbox (or a group's list) starts.
            b',' | b':' | b';' => at_in_phrase = false,
            b'@' => at_in_phrase = true,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod display_name_tests {
    use super::display_name_holds_address;

    #[test]
    fn ambiguous_display_names() {
        let cases: &[(&str, bool)] = &[
            ("alice@chat.example <mallory@evil.example>", true),
            (" alice@chat.example\r\n <mallory@evil.example>", true),
            ("Alice alice@chat.example <m@evil.example>", true),
            ("Bob <b@b.example>, a@a.example <c@evil.example>", true),
            ("<mallory@evil.example>", false),
            ("mallory@evil.example", false),
            ("Alice <alice@chat.example>", false),
            ("\"alice@chat.example\" <m@evil.example>", false),
            ("\"a\\\"@b\" <m@evil.example>", false),
            ("(alice@chat.example) <m@evil.example>", false),
            ("a@a.example, Bob <b@b.example>", false),
            ("friends: a@a.example, Bob <b@b.example>;", false),
            ("", false),
        ];
        for (value, want) in cases {
            assert_eq!(
                display_name_holds_address(value.as_bytes()),
                *want,
                "{value}"
            );
        }
    }
}
