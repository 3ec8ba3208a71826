//! The end-to-end encryption rules of a chatmail relay (docs/design.md,
//! "Outgoing mail" and "Incoming mail"): given an SMTP envelope and the raw
//! RFC 5322 message, decide whether the relay accepts it or answers with
//! which SMTP reply. Pure functions, no I/O; the milter crate feeds them.
//!
//! The rules mirror chatmail's `filtermail` (Python in chatmail/relay, Rust
//! in chatmail/filtermail) where docs/design.md is silent; the differences are
//! listed on [`check_outgoing`] and [`check_incoming`].
//!
//! Module map: [`armor`] (ASCII armor, RFC 9580 section 6), [`packets`]
//! (OpenPGP packet framing, RFC 9580 section 4), [`mime`] (the MIME shapes),
//! [`structure`] (a strict second reading of the MIME structure), and
//! with the `testmail` feature, `testmail` (a generator of real
//! encrypted and hostile test messages, and of encrypted messages of any
//! size).
//!
//! Depends on nothing of ours: the milter, the DKIM crate and the metrics
//! build on its verdicts. `sequoia-openpgp` is an optional dependency, only
//! for the `testmail` generator; the shipped binary never enables it
//! (docs/design.md, "Crates").

pub mod armor;
pub mod mime;
pub mod packets;
pub mod structure;
#[cfg(feature = "testmail")]
pub mod testmail;

use std::fmt;

pub use mail_parser;
pub use mime::{
    display_name_holds_address, from_address, is_autocrypt_setup, is_bounce, is_securejoin,
    is_valid_encrypted,
};

/// Which way the mail goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Authenticated submission by one of our users.
    Outgoing,
    /// Mail from other servers (port 25).
    Incoming,
}

/// The SMTP envelope of one message.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Which way the mail goes.
    pub direction: Direction,
    /// The MAIL FROM address without angle brackets; `""` for the null sender `<>`.
    pub sender: &'a str,
    /// The RCPT TO addresses without angle brackets.
    pub recipients: &'a [String],
    /// The SASL login name, for outgoing mail. Postfix already enforces
    /// sender = login (`reject_sender_login_mismatch`); kept for logging.
    pub auth_login: Option<&'a str>,
}

/// Why a message was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptReason {
    /// Valid OpenPGP/MIME encrypted mail.
    Encrypted,
    /// A cleartext Secure-Join request (`vc-request`/`vg-request`).
    SecureJoin,
    /// A self-sent Autocrypt Setup Message.
    AutocryptSetup,
    /// A bounce (delivery status notification) from a MAILER-DAEMON.
    Bounce,
    /// Cleartext from a sender listed in `passthrough_senders`.
    PassthroughSender,
    /// Cleartext whose every recipient matches `passthrough_recipients`.
    PassthroughRecipients,
    /// Incoming cleartext none of whose recipients enforces encryption.
    CleartextAllowed,
}

impl AcceptReason {
    /// A short name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AcceptReason::Encrypted => "encrypted",
            AcceptReason::SecureJoin => "securejoin",
            AcceptReason::AutocryptSetup => "autocrypt-setup",
            AcceptReason::Bounce => "bounce",
            AcceptReason::PassthroughSender => "passthrough-sender",
            AcceptReason::PassthroughRecipients => "passthrough-recipients",
            AcceptReason::CleartextAllowed => "cleartext-allowed",
        }
    }
}

impl fmt::Display for AcceptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SMTP reply (RFC 5321 section 4.2) with its enhanced status code (RFC 3463).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reply {
    /// The three-digit reply code.
    pub code: u16,
    /// The enhanced status code, e.g. `5.7.1`.
    pub enhanced: &'static str,
    /// The human-readable text (one line).
    pub text: &'static str,
}

impl Reply {
    /// The reply `code enhanced text`.
    pub const fn new(code: u16, enhanced: &'static str, text: &'static str) -> Self {
        Self {
            code,
            enhanced,
            text,
        }
    }

    /// Whether the reply is a temporary failure (4xx).
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.code, self.enhanced, self.text)
    }
}

/// Cleartext where encryption is required. Same code and text as
/// filtermail (Delta Chat shows it to the user), plus the enhanced code.
pub const ENCRYPTION_NEEDED: Reply =
    Reply::new(523, "5.7.1", "Encryption Needed: Invalid Unencrypted Mail");

/// Outgoing mail whose From header is not exactly one address equal to the
/// envelope sender. filtermail answers `500 Invalid FROM <from> for
/// <sender>`; 500 means "syntax error" and the addresses are the client's
/// own, so we answer with the policy code 554 5.7.1 and keep the
/// `Invalid FROM` wording.
pub const FROM_MISMATCH: Reply = Reply::new(
    554,
    "5.7.1",
    "Invalid FROM: the From header must be the envelope sender",
);

/// The decision on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Accept(AcceptReason),
    /// Refuse it with this reply.
    Reject(Reply),
}

/// The operator's cleartext exceptions (`passthrough_senders`,
/// `passthrough_recipients` in chatmail.ini).
#[derive(Debug, Clone, Copy, Default)]
pub struct Passthrough<'a> {
    /// Senders that may send cleartext to anyone.
    pub senders: &'a [String],
    /// Recipients (`addr@domain`, or `@domain` for a whole domain) that may
    /// receive cleartext.
    pub recipients: &'a [String],
}

impl Passthrough<'_> {
    /// No exceptions.
    pub const NONE: Passthrough<'static> = Passthrough {
        senders: &[],
        recipients: &[],
    };

    /// Whether `sender` is a passthrough sender (exact address, any case).
    pub fn sender_allowed(&self, sender: &str) -> bool {
        self.senders.iter().any(|s| s.eq_ignore_ascii_case(sender))
    }

    /// Whether `recipient` matches a passthrough entry: the same address, or
    /// an `@domain` entry that the address ends with (so `@example.org`
    /// does not cover `sub.example.org`), ASCII case-insensitive.
    pub fn recipient_allowed(&self, recipient: &str) -> bool {
        let rcpt = recipient.to_ascii_lowercase();
        self.recipients.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            rcpt == entry || (entry.starts_with('@') && rcpt.ends_with(&entry))
        })
    }
}

/// Parses a raw message; `None` when it has no header at all.
pub fn parse(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    mail_parser::MessageParser::default().parse(raw)
}

/// The rules for authenticated submission, in filtermail's order:
///
/// 1. the From header must hold exactly one address, equal (ASCII
///    case-insensitive) to the envelope sender, else [`FROM_MISMATCH`];
/// 2. OpenPGP/MIME encrypted mail without armor headers, or a Secure-Join
///    request, passes;
/// 3. cleartext from a passthrough sender passes;
/// 4. an Autocrypt Setup Message to exactly one recipient, the sender, passes;
/// 5. cleartext whose recipients all match `passthrough_recipients` passes;
/// 6. anything else gets [`ENCRYPTION_NEEDED`].
///
/// Differences from filtermail: several From addresses or From fields are a
/// mismatch (filtermail took the first), the reply is 554 not 500, and
/// passthrough matching ignores ASCII case.
pub fn check_outgoing(env: &Envelope<'_>, raw: &[u8], passthrough: &Passthrough<'_>) -> Verdict {
    let Some(msg) = parse(raw) else {
        return Verdict::Reject(FROM_MISMATCH);
    };
    match from_address(&msg) {
        Some(from) if from.eq_ignore_ascii_case(env.sender) => {}
        _ => return Verdict::Reject(FROM_MISMATCH),
    }
    if is_valid_encrypted(&msg, false) {
        return Verdict::Accept(AcceptReason::Encrypted);
    }
    if is_securejoin(&msg) {
        return Verdict::Accept(AcceptReason::SecureJoin);
    }
    if passthrough.sender_allowed(env.sender) {
        return Verdict::Accept(AcceptReason::PassthroughSender);
    }
    if let [only] = env.recipients
        && only.eq_ignore_ascii_case(env.sender)
        && is_autocrypt_setup(&msg)
    {
        return Verdict::Accept(AcceptReason::AutocryptSetup);
    }
    if !env.recipients.is_empty()
        && env
            .recipients
            .iter()
            .all(|r| passthrough.recipient_allowed(r))
    {
        return Verdict::Accept(AcceptReason::PassthroughRecipients);
    }
    Verdict::Reject(ENCRYPTION_NEEDED)
}

/// The rules for mail from other servers:
///
/// 1. OpenPGP/MIME encrypted mail (armor headers allowed) or a Secure-Join
///    request passes;
/// 2. a bounce passes: null envelope sender, and see [`is_bounce`];
/// 3. other cleartext gets [`ENCRYPTION_NEEDED`] when
///    `enforce_for_any_recipient` (some local recipient has
///    `enforceE2EEincoming`), else passes.
///
/// Differences from filtermail: a bounce must have the null envelope
/// sender, as RFC 5321 section 4.5.5 requires of every delivery status
/// notification (filtermail only looked at the headers, so anyone could
/// dress cleartext up as a bounce); the From header is not checked here
/// (filtermail rewrites mismatching senders to `<>` before reinjecting and
/// checks DKIM, which on this relay is the DKIM milter's job).
pub fn check_incoming(env: &Envelope<'_>, raw: &[u8], enforce_for_any_recipient: bool) -> Verdict {
    if let Some(msg) = parse(raw) {
        if is_valid_encrypted(&msg, true) {
            return Verdict::Accept(AcceptReason::Encrypted);
        }
        if is_securejoin(&msg) {
            return Verdict::Accept(AcceptReason::SecureJoin);
        }
        if env.sender.is_empty() && is_bounce(&msg) {
            return Verdict::Accept(AcceptReason::Bounce);
        }
    }
    if enforce_for_any_recipient {
        Verdict::Reject(ENCRYPTION_NEEDED)
    } else {
        Verdict::Accept(AcceptReason::CleartextAllowed)
    }
}

/// [`check_outgoing`] or [`check_incoming`], by `env.direction`.
pub fn check(
    env: &Envelope<'_>,
    raw: &[u8],
    passthrough: &Passthrough<'_>,
    enforce_for_any_recipient: bool,
) -> Verdict {
    match env.direction {
        Direction::Outgoing => check_outgoing(env, raw, passthrough),
        Direction::Incoming => check_incoming(env, raw, enforce_for_any_recipient),
    }
}

#[cfg(test)]
mod tests;
