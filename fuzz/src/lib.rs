//! The fuzz targets: one function per parser that reads bytes from the
//! network or from disk. Each must never panic, whatever the input, and
//! checks invariants that would reveal a wrong answer:
//!
//! - [`mime`] runs the encryption rules on a raw message (milter, from
//!   SMTP); a message accepted on its structure must read unambiguously;
//! - [`armor`] and [`packets`] run the ASCII armor and OpenPGP packet readers;
//! - [`dict`] reads Dovecot dict protocol request lines (dict sockets);
//! - [`policy`] reads Postfix policy delegation requests (policy socket);
//! - [`config`] reads `chatmail.ini`;
//! - [`metadata`] reads a mailbox's `metadata.json`.
//!
//! `src/bin/*` wraps each in AFL++'s loop (feature `afl`); the test in
//! `tests/replay.rs` runs the committed corpora through the same functions.

#![forbid(unsafe_code)]

use chatmail_e2ee::{
    AcceptReason, Direction, Envelope, Passthrough, Verdict, armor as e2ee_armor, check,
    packets as e2ee_packets, structure,
};

/// The encryption rules, both directions, on `data` as a raw message.
pub fn mime(data: &[u8]) {
    let rcpts = ["bob@example.org".to_owned()];
    let selfsent = ["alice@example.org".to_owned()];
    for (direction, sender) in [
        (Direction::Outgoing, "alice@example.org"),
        (Direction::Incoming, "alice@example.org"),
        (Direction::Incoming, ""),
    ] {
        for recipients in [&rcpts[..], &selfsent[..]] {
            let env = Envelope {
                direction,
                sender,
                recipients,
                auth_login: None,
            };
            let verdict = check(&env, data, &Passthrough::NONE, true);
            if let Verdict::Accept(
                reason @ (AcceptReason::Encrypted
                | AcceptReason::SecureJoin
                | AcceptReason::AutocryptSetup
                | AcceptReason::Bounce),
            ) = verdict
            {
                let msg = chatmail_e2ee::parse(data).expect("accepted without a header");
                if let Err(e) = structure::unambiguous(&msg) {
                    panic!("accepted as {reason} with an ambiguous structure: {e}");
                }
            }
        }
    }
    let _ = structure::read(data);
}

/// The armor reader; what decodes without armor headers decodes the same
/// with them allowed.
pub fn armor(data: &[u8]) {
    let strict = e2ee_armor::dearmor(data, false);
    let lax = e2ee_armor::dearmor(data, true);
    if let Ok(bytes) = &strict {
        assert_eq!(
            lax.as_ref().ok(),
            Some(bytes),
            "strict armor accepted, lax refused"
        );
        let _ = e2ee_packets::is_encrypted_message(bytes);
    }
}

/// The packet framing reader: packets tile the input exactly.
pub fn packets(data: &[u8]) {
    if let Ok(found) = e2ee_packets::split(data) {
        let mut pos = 0;
        for p in &found {
            assert_eq!(p.range.start, pos, "packets do not tile the input");
            assert!(p.range.end > p.range.start && p.range.end <= data.len());
            pos = p.range.end;
        }
        assert_eq!(pos, data.len(), "packets do not cover the input");
    }
    let _ = e2ee_packets::is_encrypted_message(data);
}

/// Dovecot dict request lines, one per `\n`-terminated line; a refused
/// line's error names the line's first byte.
pub fn dict(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        if let Err(e) = dovecot_dict::parse_request(line) {
            assert_eq!(e.command().as_ref(), line.first());
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        assert_eq!(
            dovecot_dict::tab_unescape(&dovecot_dict::tab_escape(text)),
            text
        );
    }
}

/// Postfix policy requests, whole and line by line.
pub fn policy(data: &[u8]) {
    use postfix_policy::proto::{Limits, RequestParser, parse_request};
    let limits = Limits::default();
    let whole = parse_request(data, limits);
    let mut parser = RequestParser::new(limits);
    for line in data.split(|&b| b == b'\n') {
        if line.is_empty() {
            let _ = parser.finish();
        } else if line.len() > limits.max_line {
            parser.push_overlong_line();
        } else {
            parser.push_line(line);
        }
    }
    let _ = parser.finish();
    drop(whole);
}

/// `chatmail.ini`.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = chatmail_config::Config::parse(text);
    }
}

/// `metadata.json`: what parses, written back, parses to the same value.
pub fn metadata(data: &[u8]) {
    if let Ok(m) = serde_json::from_slice::<chatmail_mailbox::Metadata>(data) {
        let written = serde_json::to_vec(&m).expect("serialize");
        let again: chatmail_mailbox::Metadata =
            serde_json::from_slice(&written).expect("reparse what we wrote");
        assert_eq!(again, m, "metadata changes when written back");
    }
}

/// A fuzz target: any input, never a panic.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay test.
pub const TARGETS: [(&str, Target); 7] = [
    ("mime", mime),
    ("armor", armor),
    ("packets", packets),
    ("dict", dict),
    ("policy", policy),
    ("config", config),
    ("metadata", metadata),
];
