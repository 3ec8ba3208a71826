//! DKIM verification of mail arriving from other servers, with the chatmail
//! relays' semantics: a valid signature whose `d=` equals the `From:`
//! domain is required (strict alignment). Signatures are checked by
//! `mail-auth` (RFC 6376); around it this module decides which signatures
//! are worth a key lookup at all and which count, as plain functions with
//! case tables in the tests:
//!
//! - [`select`]: only signatures whose `d=` is the From domain, at most
//!   [`MAX_SIGNATURES`] of them (the others cannot make the message pass);
//! - [`signature_rule`] and [`key_rule`]: RFC 8301 (no `rsa-sha1`, no RSA
//!   key under [`MIN_RSA_BITS`]) and RFC 6376 (From signed, `t=y` keys
//!   treated as unsigned, no timestamp from the future); a signature that
//!   breaks one of them counts as absent;
//! - [`classify`]: the reply over what is left.
//!
//! The key lookups of one message run concurrently and the whole
//! verification has a deadline ([`DEADLINE`]). See `docs/dkim.md` and
//! `docs/limits.md`.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use std::time::Duration;

use chatmail_e2ee::Reply;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::common::cache::NoCache;
use mail_auth::common::crypto::Algorithm;
use mail_auth::common::verify::{DomainKey, VerifySignature};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};

use crate::DkimError;

/// No `DKIM-Signature` at all (RFC 7372 5.7.20).
pub const NO_SIGNATURE: Reply = refused("5.7.20", "No DKIM signature found");

/// A signature by the `From:` domain that does not verify: changed after
/// signing, unknown or revoked key, expired (RFC 7372 5.7.20).
pub const BROKEN_SIGNATURE: Reply = refused(
    "5.7.20",
    "DKIM signature of the From domain does not verify",
);

/// Signatures, but none by the `From:` domain (RFC 7372 5.7.22: no valid
/// author-matched signature).
pub const MISALIGNED_SIGNATURE: Reply = refused("5.7.22", "No DKIM signature by the From domain");

/// No single `From:` address to align with.
pub const BAD_FROM: Reply = refused("5.7.22", "DKIM needs exactly one From address");

/// A `From:` whose display name is itself an address
/// (`a@x.example <b@y.example>`): parsers disagree on which one is the
/// author, so neither is aligned with; refused, not guessed.
pub const AMBIGUOUS_FROM: Reply = refused(
    "5.7.22",
    "Ambiguous From: the display name contains an address",
);

/// The verification did not finish within [`DEADLINE`] (key lookups that
/// never answer): the sending server retries later.
pub const VERIFY_TIMEOUT: Reply = Reply {
    code: 451,
    enhanced: "4.7.5",
    text: "DKIM verification took too long, try again later",
};

/// The most signatures of the From domain evaluated for one message: one
/// per key a sender may be rotating, and a few more. Each costs a key
/// lookup; later ones count as present but not verified.
pub const MAX_SIGNATURES: usize = 5;

/// How long the verification of one message may take, key lookups
/// included; past it the answer is [`VERIFY_TIMEOUT`]. Two DNS attempts of
/// [`DNS_TIMEOUT`] fit in it, and it stays far below Postfix's
/// `milter_content_timeout` (300 s) and SMTP clients' 10-minute wait for
/// the answer to the end of data (RFC 5321 4.5.3.2.6).
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The smallest RSA key a signature may be verified with (RFC 8301 3.2).
pub const MIN_RSA_BITS: usize = 1024;

/// How far a signature's `t=` may lie ahead of our clock: the signer's
/// clock may run fast, but not by more than this (RFC 6376 3.5 allows
/// verifiers to ignore signatures from the future).
pub const MAX_CLOCK_SKEW: u64 = 600;

/// mail-auth's bit for `t=y` in a key record (`R_FLAG_TESTING`, private
/// there; a test checks it against a parsed record).
const KEY_FLAG_TESTING: u64 = 0x10;

/// The key could not be looked up now (timeout, SERVFAIL): the sending
/// server retries; nothing is accepted unchecked.
pub const DNS_TEMPFAIL: Reply = Reply {
    code: 451,
    enhanced: "4.7.5",
    text: "DKIM key lookup failed temporarily, try again later",
};

/// A permanent refusal (550) of the message for its signatures.
const fn refused(enhanced: &'static str, text: &'static str) -> Reply {
    Reply {
        code: 550,
        enhanced,
        text,
    }
}

/// What one signature's check came to, as far as the decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigResult {
    /// Verified.
    Pass,
    /// Malformed, body or header changed, key missing or revoked, expired.
    Fail,
    /// The key lookup failed for now.
    TempError,
    /// Present but not evaluated: its `d=` cannot align, or the message
    /// has more than [`MAX_SIGNATURES`] of the From domain. Never a pass.
    NotChecked,
}

/// Why a signature counts as absent (RFC 8301, RFC 6376).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weak {
    /// `a=rsa-sha1` (RFC 8301 3.1).
    Sha1,
    /// `h=` does not list From (RFC 6376 5.4).
    FromNotSigned,
    /// `t=` more than [`MAX_CLOCK_SKEW`] ahead of our clock.
    FromTheFuture,
    /// An RSA key of fewer than [`MIN_RSA_BITS`] bits (RFC 8301 3.2).
    ShortKey(usize),
    /// The key record says `t=y`: the signer is testing, and its mail is
    /// treated as unsigned (RFC 6376 3.6.1).
    TestingKey,
}

impl fmt::Display for Weak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Weak::Sha1 => f.write_str("rsa-sha1 is not accepted (RFC 8301)"),
            Weak::FromNotSigned => f.write_str("From is not signed (RFC 6376 5.4)"),
            Weak::FromTheFuture => f.write_str("timestamp in the future"),
            Weak::ShortKey(bits) => write!(f, "{bits}-bit RSA key (RFC 8301: at least 1024)"),
            Weak::TestingKey => f.write_str("key in testing mode, t=y (RFC 6376 3.6.1)"),
        }
    }
}

/// The rules on a signature itself, before its key is looked up:
/// algorithm `a`, signed header names `h`, timestamp `t` (0: none), at
/// time `now` (Unix seconds).
pub fn signature_rule(a: Algorithm, h: &[String], t: u64, now: u64) -> Option<Weak> {
    if a == Algorithm::RsaSha1 {
        return Some(Weak::Sha1);
    }
    if !h
        .iter()
        .any(|name| name.trim().eq_ignore_ascii_case("from"))
    {
        return Some(Weak::FromNotSigned);
    }
    if t > now.saturating_add(MAX_CLOCK_SKEW) {
        return Some(Weak::FromTheFuture);
    }
    None
}

/// The rules on the key a signature is verified with: `bits` its size
/// (mail-auth reports `usize::MAX` for keys that have no such limit, such
/// as Ed25519), `rsa` whether it is an RSA key, `flags` mail-auth's flag
/// bits of the record.
pub fn key_rule(rsa: bool, bits: usize, flags: u64) -> Option<Weak> {
    if flags & KEY_FLAG_TESTING != 0 {
        return Some(Weak::TestingKey);
    }
    if rsa && bits < MIN_RSA_BITS {
        return Some(Weak::ShortKey(bits));
    }
    None
}

/// Which of a message's signatures (their `d=`, in header order) are
/// evaluated for the From domain `from`: the indexes of the first
/// [`MAX_SIGNATURES`] whose `d=` is `from` (ASCII case-insensitive, no
/// trailing dot). Every other signature is [`SigResult::NotChecked`].
pub fn select(from: Option<&str>, domains: &[&str]) -> Vec<usize> {
    let Some(from) = from else {
        return Vec::new();
    };
    domains
        .iter()
        .enumerate()
        .filter(|(_, d)| d.eq_ignore_ascii_case(from))
        .map(|(i, _)| i)
        .take(MAX_SIGNATURES)
        .collect()
}

/// The decision over a message's signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A valid signature by the `From:` domain.
    Pass {
        /// The aligned signing domain.
        domain: String,
    },
    /// The sender is a domain literal (`user@[192.0.2.1]`): relays without
    /// DNS cannot sign, and the chatmail relays accept their mail unsigned
    /// (encryption is still required).
    DomainLiteral,
    /// Refused, with the reply to give.
    Refuse(Reply),
}

/// The domain of the single address in the `From:` header values
/// `from_values` (raw, possibly folded), lowercased; `None` when there is
/// not exactly one `From:` field with exactly one address, or when it is
/// ambiguous (see [`author_domain`]).
pub fn from_domain(from_values: &[&[u8]]) -> Option<String> {
    author_domain(from_values).ok()
}

/// [`from_domain`], with the reply when there is none: [`BAD_FROM`], or
/// [`AMBIGUOUS_FROM`] when an unquoted display name holds an address
/// (`a@x.example <b@y.example>`: mail-parser reads the second, Python's
/// `email` the first, so whichever we aligned with, a reader may show the
/// other; the rule is [`chatmail_e2ee::display_name_holds_address`], which
/// submission applies too). A quoted display name or a comment is
/// unambiguous.
///
/// # Errors
/// The refusal when no single author domain can be named.
pub fn author_domain(from_values: &[&[u8]]) -> Result<String, Reply> {
    let [value] = from_values else {
        return Err(BAD_FROM);
    };
    if chatmail_e2ee::display_name_holds_address(value) {
        return Err(AMBIGUOUS_FROM);
    }
    let value = String::from_utf8_lossy(value);
    let addrs = extract_addresses(&value);
    let [addr] = &addrs[..] else {
        return Err(BAD_FROM);
    };
    match addr.rsplit_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
            Ok(domain.to_ascii_lowercase())
        }
        _ => Err(BAD_FROM),
    }
}

/// The addr-specs of an address-list: `<...>` when present, else the bare
/// words that contain `@`; quoted strings and comments are skipped.
fn extract_addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut angle: Option<String> = None;
    let mut in_quote = false;
    let mut comment = 0usize;
    let mut escaped = false;
    let flush = |current: &mut String, angle: &mut Option<String>, out: &mut Vec<String>| {
        if let Some(a) = angle.take() {
            out.push(a.trim().to_owned());
        } else {
            let bare = current.trim();
            if bare.contains('@') {
                out.push(bare.to_owned());
            }
        }
        current.clear();
    };
    for c in value.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote || comment > 0 => escaped = true,
            '"' if comment == 0 => in_quote = !in_quote,
            _ if in_quote => {}
            '(' => comment += 1,
            ')' if comment > 0 => comment -= 1,
            _ if comment > 0 => {}
            '<' => angle = Some(String::new()),
            '>' => {}
            ',' | ';'
                if angle
                    .as_ref()
                    .is_none_or(|a| a.contains('@') || a.is_empty()) =>
            {
                flush(&mut current, &mut angle, &mut out)
            }
            ':' => current.clear(), // group name
            c if c.is_whitespace() => {
                if angle.is_none() && !current.is_empty() && current.contains('@') {
                    current.push(' ');
                }
            }
            c => match &mut angle {
                Some(a) => a.push(c),
                None => current.push(c),
            },
        }
    }
    flush(&mut current, &mut angle, &mut out);
    out.retain(|a| !a.is_empty() && !a.contains(' '));
    out
}

/// The decision for a message whose single `From:` domain is `from_domain`
/// (`Err`: no usable From, and the reply for it) and whose signatures came
/// to `sigs` (`d=` lowercased, result). Signatures that count as absent
/// ([`Weak`]) are not in `sigs`.
pub fn classify(from_domain: Result<&str, Reply>, sigs: &[(String, SigResult)]) -> Outcome {
    let from = match from_domain {
        Ok(from) => from,
        Err(reply) => return Outcome::Refuse(reply),
    };
    if from.starts_with('[') && from.ends_with(']') {
        return Outcome::DomainLiteral;
    }
    let aligned = |r: SigResult| sigs.iter().any(|(d, s)| d == from && *s == r);
    if aligned(SigResult::Pass) {
        return Outcome::Pass {
            domain: from.to_owned(),
        };
    }
    if aligned(SigResult::TempError) {
        return Outcome::Refuse(DNS_TEMPFAIL);
    }
    if sigs.is_empty() {
        return Outcome::Refuse(NO_SIGNATURE);
    }
    if aligned(SigResult::Fail) || aligned(SigResult::NotChecked) {
        return Outcome::Refuse(BROKEN_SIGNATURE);
    }
    Outcome::Refuse(MISALIGNED_SIGNATURE)
}

/// Verifies signatures through a DNS resolver (the system's, or the one
/// configured). The resolver caches answers within their TTL.
#[derive(Clone)]
pub struct Verifier {
    auth: MessageAuthenticator,
    deadline: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

/// How long one DNS query may take, and how often it is tried: a dead
/// resolver costs the SMTP client about ten seconds, then a 4xx.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);
const DNS_ATTEMPTS: usize = 2;

/// A resolver configuration for `resolver` (`None`: /etc/resolv.conf).
///
/// # Errors
/// When the system configuration cannot be read.
pub fn resolver_config(
    resolver: Option<SocketAddr>,
) -> Result<(ResolverConfig, ResolverOpts), DkimError> {
    let (config, mut opts) = match resolver {
        Some(addr) => {
            let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
            for c in &mut ns.connections {
                c.port = addr.port();
            }
            (
                ResolverConfig::from_parts(None, vec![], vec![ns]),
                ResolverOpts::default(),
            )
        }
        None => hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DkimError::Resolver(e.to_string()))?,
    };
    opts.timeout = DNS_TIMEOUT;
    opts.attempts = DNS_ATTEMPTS;
    // Names are absolute; never try search domains.
    opts.ndots = 0;
    Ok((config, opts))
}

impl Verifier {
    /// A verifier asking `resolver` (`None`: the system's resolver).
    ///
    /// # Errors
    /// When the resolver cannot be set up.
    pub fn new(resolver: Option<SocketAddr>) -> Result<Verifier, DkimError> {
        let (config, opts) = resolver_config(resolver)?;
        let auth = MessageAuthenticator::new(config, opts)
            .map_err(|e| DkimError::Resolver(e.to_string()))?;
        Ok(Verifier {
            auth,
            deadline: DEADLINE,
        })
    }

    /// The same verifier with another deadline than [`DEADLINE`] (tests).
    pub fn with_deadline(mut self, deadline: Duration) -> Verifier {
        self.deadline = deadline;
        self
    }

    /// The decision for the raw message `raw`.
    pub async fn check(&self, raw: &[u8]) -> Outcome {
        self.check_explained(raw).await.outcome
    }

    /// The decision for `raw` with what each signature came to, for the
    /// log line. Dropping the future stops the lookups.
    pub async fn check_explained(&self, raw: &[u8]) -> Checked {
        let source = Resolver(&self.auth);
        let work = evaluate(&self.auth, &source, raw, unix_now());
        match tokio::time::timeout(self.deadline, work).await {
            Ok(checked) => checked,
            Err(_) => Checked {
                outcome: Outcome::Refuse(VERIFY_TIMEOUT),
                notes: format!("not finished within {} s", self.deadline.as_secs_f32()),
            },
        }
    }
}

/// A decision and, for the log, what each signature came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The decision.
    pub outcome: Outcome,
    /// One entry per signature (`d=`/`s=`: result), `;`-separated, and how
    /// many were not checked.
    pub notes: String,
}

/// The current time in Unix seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Where the keys of one message come from.
pub(crate) trait KeySource {
    /// The key record published under `name` (`<s>._domainkey.<d>.`).
    fn key(&self, name: &str) -> impl Future<Output = mail_auth::Result<Arc<DomainKey>>>;
}

/// Keys from DNS, through mail-auth's lookup and parser.
struct Resolver<'a>(&'a MessageAuthenticator);

impl KeySource for Resolver<'_> {
    async fn key(&self, name: &str) -> mail_auth::Result<Arc<DomainKey>> {
        // No cache of mail-auth's: hickory caches within the TTL, and the
        // per-message cache below holds failures too.
        self.0
            .txt_lookup::<DomainKey>(name, None::<&NoCache<Box<str>, Txt>>)
            .await
    }
}

/// The keys of one message, looked up before mail-auth verifies: its
/// verification then finds every key here and asks no resolver, failures
/// included (stored as [`Txt::Error`]).
pub(crate) struct Keys(Mutex<HashMap<Box<str>, Txt>>);

impl Keys {
    pub(crate) fn new() -> Keys {
        Keys(Mutex::new(HashMap::new()))
    }

    /// The records; a panic while another thread held them left the map
    /// itself whole (each use is one map call).
    fn records(&self) -> MutexGuard<'_, HashMap<Box<str>, Txt>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn domain_key(&self, name: &str) -> Option<Arc<DomainKey>> {
        match self.records().get(name) {
            Some(Txt::DomainKey(k)) => Some(Arc::clone(k)),
            _ => None,
        }
    }
}

impl ResolverCache<Box<str>, Txt> for Keys {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.records().get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.records().remove(name)
    }
    fn insert(&self, key: Box<str>, value: Txt, _: std::time::Instant) {
        self.records().insert(key, value);
    }
}

/// Runs `futures` concurrently; their outputs in the same order.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// The whole verification of `raw` at time `now`: the From domain, the
/// signatures worth checking ([`select`]), the rules on each
/// ([`signature_rule`], [`key_rule`]), their keys looked up concurrently,
/// mail-auth's verification of what is left, and [`classify`].
pub(crate) async fn evaluate(
    auth: &MessageAuthenticator,
    source: &impl KeySource,
    raw: &[u8],
    now: u64,
) -> Checked {
    let from = message_author_domain(raw);
    let from_ref = from.as_deref().map_err(|r| *r);
    let mut notes: Vec<String> = Vec::new();
    let done = |outcome: Outcome, notes: Vec<String>| Checked {
        outcome,
        notes: notes.join("; "),
    };
    // Mail from a domain literal carries no signature to check.
    if let Ok(d) = from_ref
        && d.starts_with('[')
    {
        return done(classify(from_ref, &[]), notes);
    }
    let Some(mut message) = AuthenticatedMessage::parse(raw) else {
        return done(classify(from_ref, &[]), notes);
    };
    let mut sigs: Vec<(String, SigResult)> = Vec::new();
    // Malformed DKIM-Signature fields: present, never a pass.
    for _ in message
        .errors
        .iter()
        .filter(|e| matches!(e.header, mail_auth::Error::Dkim(_)))
    {
        sigs.push((String::new(), SigResult::NotChecked));
    }
    message.errors.clear();
    let all = std::mem::take(&mut message.dkim_headers);
    let domains: Vec<&str> = all.iter().map(|h| h.header.d.as_str()).collect();
    let chosen = select(from_ref.ok(), &domains);
    let skipped = all.len() - chosen.len();
    if skipped > 0 {
        notes.push(format!(
            "{skipped} not checked (other d= or over {MAX_SIGNATURES})"
        ));
    }
    for (i, h) in all.iter().enumerate() {
        if !chosen.contains(&i) {
            sigs.push((h.header.d.to_ascii_lowercase(), SigResult::NotChecked));
        }
    }
    let mut to_verify = Vec::new();
    for i in chosen {
        let mut header = all[i].clone();
        let sig = &mut header.header;
        if let Some(weak) = signature_rule(sig.a, &sig.h, sig.t, now) {
            notes.push(format!("d={} s={}: {weak}", sig.d, sig.s));
            continue;
        }
        // No further lookups than the key: no failure reports (r=y,
        // RFC 6651) and no third-party authorization (atps=, RFC 6541),
        // which means nothing under strict alignment.
        sig.r = false;
        sig.atps = None;
        to_verify.push(header);
    }
    // The keys, concurrently; each name once.
    let mut names: Vec<String> = to_verify.iter().map(|h| h.header.domain_key()).collect();
    names.sort();
    names.dedup();
    let keys = Keys::new();
    let found = join_all(names.iter().map(|n| source.key(n)).collect()).await;
    for (name, result) in names.iter().zip(found) {
        let txt = match result {
            Ok(key) => Txt::DomainKey(key),
            Err(e) => Txt::Error(e),
        };
        keys.insert(name.as_str().into(), txt, std::time::Instant::now());
    }
    to_verify.retain(|h| {
        let sig = &h.header;
        let Some(key) = keys.domain_key(&sig.domain_key()) else {
            return true; // the lookup failed: mail-auth reports how
        };
        let rsa = matches!(sig.a, Algorithm::RsaSha256 | Algorithm::RsaSha1);
        match key_rule(rsa, key.p.public_key_bits(), key.f) {
            Some(weak) => {
                notes.push(format!("d={} s={}: {weak}", sig.d, sig.s));
                false
            }
            None => true,
        }
    });
    message.dkim_headers = to_verify;
    let outputs = auth
        .verify_dkim(Parameters::new(&message).with_txt_cache(&keys))
        .await;
    for o in &outputs {
        if let Some(s) = o.signature() {
            notes.push(format!("d={} s={}: {}", s.d, s.s, o.result()));
        }
    }
    sigs.extend(results(&outputs));
    done(classify(from_ref, &sigs), notes)
}

/// The signing domain and class of each of mail-auth's results.
pub(crate) fn results(outputs: &[mail_auth::DkimOutput<'_>]) -> Vec<(String, SigResult)> {
    outputs
        .iter()
        .map(|o| {
            let d = o
                .signature()
                .map(|s| s.d.to_ascii_lowercase())
                .unwrap_or_default();
            let r = match o.result() {
                DkimResult::Pass => SigResult::Pass,
                DkimResult::TempError(_) => SigResult::TempError,
                _ => SigResult::Fail,
            };
            (d, r)
        })
        .collect()
}

/// The single `From:` domain of `raw`, if any (see [`from_domain`]).
pub fn message_from_domain(raw: &[u8]) -> Option<String> {
    message_author_domain(raw).ok()
}

/// The single `From:` domain of `raw`, or the refusal (see
/// [`author_domain`]).
///
/// # Errors
/// When no single author domain can be named.
pub fn message_author_domain(raw: &[u8]) -> Result<String, Reply> {
    let (fields, _) = crate::sign::split_message(raw);
    let from_values: Vec<&[u8]> = fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(b"from"))
        .map(|f| f.value)
        .collect();
    author_domain(&from_values)
}

#[cfg(test)]
mod tests;
