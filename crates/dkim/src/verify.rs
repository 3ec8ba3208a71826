//! DKIM verification of mail arriving from other servers, with the chatmail
//! relays' semantics: a valid signature whose `d=` equals the `From:`
//! domain is required (strict alignment). Signatures are checked by
//! `mail-auth` (RFC 6376); the decision over its results is the plain
//! function [`classify`], a case table in the tests. See `docs/dkim.md`.

use std::net::SocketAddr;
use std::time::Duration;

use chatmail_e2ee::Reply;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

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
/// not exactly one `From:` field with exactly one address.
pub fn from_domain(from_values: &[&[u8]]) -> Option<String> {
    let [value] = from_values else {
        return None;
    };
    let value = String::from_utf8_lossy(value);
    let addrs = extract_addresses(&value);
    let [addr] = &addrs[..] else {
        return None;
    };
    let (local, domain) = addr.rsplit_once('@')?;
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some(domain.to_ascii_lowercase())
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
/// (`None`: no usable From) and whose signatures came to `sigs`
/// (`d=` lowercased, result).
pub fn classify(from_domain: Option<&str>, sigs: &[(String, SigResult)]) -> Outcome {
    let Some(from) = from_domain else {
        return Outcome::Refuse(BAD_FROM);
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
    if aligned(SigResult::Fail) {
        return Outcome::Refuse(BROKEN_SIGNATURE);
    }
    Outcome::Refuse(MISALIGNED_SIGNATURE)
}

/// Verifies signatures through a DNS resolver (the system's, or the one
/// configured). The resolver caches answers within their TTL.
#[derive(Clone)]
pub struct Verifier {
    auth: MessageAuthenticator,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier")
    }
}

/// How long one DNS query may take, and how often it is tried: a dead
/// resolver costs the SMTP client about ten seconds, then a 4xx.
const DNS_TIMEOUT: Duration = Duration::from_secs(5);
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
        Ok(Verifier { auth })
    }

    /// The decision for the raw message `raw`.
    pub async fn check(&self, raw: &[u8]) -> Outcome {
        let from = message_from_domain(raw);
        // Mail from a domain literal carries no signature to check.
        if let Some(d) = &from
            && d.starts_with('[')
        {
            return classify(Some(d), &[]);
        }
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return classify(from.as_deref(), &[]);
        };
        let outputs = self.auth.verify_dkim(&message).await;
        let sigs = results(&outputs);
        classify(from.as_deref(), &sigs)
    }
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
    let (fields, _) = crate::sign::split_message(raw);
    let from_values: Vec<&[u8]> = fields
        .iter()
        .filter(|f| f.name.eq_ignore_ascii_case(b"from"))
        .map(|f| f.value)
        .collect();
    from_domain(&from_values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_domains() {
        let cases: &[(&[&[u8]], Option<&str>)] = &[
            (&[b" alice@A.example"], Some("a.example")),
            (&[b" Alice <alice@a.example>"], Some("a.example")),
            (
                &[b" \"x@evil.example\" <alice@a.example>"],
                Some("a.example"),
            ),
            (&[b" (x@evil.example) alice@a.example"], Some("a.example")),
            (&[b" user@[192.0.2.1]"], Some("[192.0.2.1]")),
            (&[b" a@a.example, b@b.example"], None),
            (&[b" a@a.example", b" b@b.example"], None),
            (&[], None),
            (&[b" nobody"], None),
            (&[b" <@a.example>"], None),
            (&[b" Alice\r\n <alice@a.example>"], Some("a.example")),
        ];
        for (values, want) in cases {
            assert_eq!(from_domain(values).as_deref(), *want, "{values:?}");
        }
    }

    #[test]
    fn alignment_and_failure_classes() {
        use SigResult::{Fail, Pass, TempError};
        let a = "a.example";
        let s = |d: &str, r| (d.to_owned(), r);
        let pass = Outcome::Pass { domain: a.into() };
        let refuse = Outcome::Refuse;
        type Case<'a> = (&'a str, Option<&'a str>, Vec<(String, SigResult)>, Outcome);
        let cases: Vec<Case> = vec![
            ("aligned pass", Some(a), vec![s(a, Pass)], pass.clone()),
            (
                "aligned pass next to a broken one",
                Some(a),
                vec![s(a, Fail), s(a, Pass)],
                pass.clone(),
            ),
            (
                "aligned pass next to a foreign one",
                Some(a),
                vec![s("b.example", Pass), s(a, Pass)],
                pass,
            ),
            ("unsigned", Some(a), vec![], refuse(NO_SIGNATURE)),
            (
                "broken",
                Some(a),
                vec![s(a, Fail)],
                refuse(BROKEN_SIGNATURE),
            ),
            (
                "signed by another domain",
                Some(a),
                vec![s("b.example", Pass)],
                refuse(MISALIGNED_SIGNATURE),
            ),
            (
                "signed by the parent domain",
                Some("sub.a.example"),
                vec![s(a, Pass)],
                refuse(MISALIGNED_SIGNATURE),
            ),
            (
                "signed by a subdomain",
                Some(a),
                vec![s("sub.a.example", Pass)],
                refuse(MISALIGNED_SIGNATURE),
            ),
            (
                "signed by a sibling",
                Some("x.example"),
                vec![s("y.example", Pass)],
                refuse(MISALIGNED_SIGNATURE),
            ),
            (
                "key lookup failed for now",
                Some(a),
                vec![s(a, TempError)],
                refuse(DNS_TEMPFAIL),
            ),
            (
                "foreign lookup failure does not defer",
                Some(a),
                vec![s("b.example", TempError)],
                refuse(MISALIGNED_SIGNATURE),
            ),
            (
                "temporary beats broken: a retry may pass",
                Some(a),
                vec![s(a, Fail), s(a, TempError)],
                refuse(DNS_TEMPFAIL),
            ),
            ("no From", None, vec![s(a, Pass)], refuse(BAD_FROM)),
            (
                "domain literal",
                Some("[192.0.2.1]"),
                vec![],
                Outcome::DomainLiteral,
            ),
        ];
        for (name, from, sigs, want) in cases {
            assert_eq!(classify(from, &sigs), want, "{name}");
        }
        for r in [
            NO_SIGNATURE,
            BROKEN_SIGNATURE,
            MISALIGNED_SIGNATURE,
            BAD_FROM,
        ] {
            assert!(r.code == 550 && r.enhanced.starts_with("5.7."), "{r}");
        }
        assert!(DNS_TEMPFAIL.is_transient() && DNS_TEMPFAIL.enhanced.starts_with("4.7."));
    }
}
