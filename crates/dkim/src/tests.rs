//! Our signer checked by a second implementation (mail-auth's verifier,
//! given the key record without DNS), and the verdicts it leads to.

use std::sync::OnceLock;

use rsa::RsaPrivateKey;

use crate::offline::verify_with_keys;
use crate::verify::{
    BROKEN_SIGNATURE, MISALIGNED_SIGNATURE, NO_SIGNATURE, Outcome, SigResult, classify,
};
use crate::{Signer, txt_record};

fn key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap())
}

const MESSAGE: &str = "From: <alice@a.example>\r\n\
To: <bob@b.example>\r\n\
Subject: [...]\r\n\
Date: Mon, 30 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <m1@a.example>\r\n\
Chat-Version: 1.0\r\n\
Autocrypt: addr=alice@a.example; keydata=AAAA\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n\
\x20boundary=\"xyz\"\r\n\
\r\n\
--xyz\r\n\
Content-Type: application/pgp-encrypted\r\n\
\r\n\
Version: 1\r\n\
\r\n\
--xyz--\r\n";

/// `raw` with a signature by `domain` (selector `sel`) prepended.
fn signed(raw: &str, domain: &str) -> String {
    let value = Signer::new(key().clone(), domain, "sel")
        .sign(raw.as_bytes(), 1_700_000_000)
        .unwrap();
    // As the MTA writes a milter's header: LF folding becomes CRLF.
    format!("DKIM-Signature:{}\r\n{raw}", value.replace('\n', "\r\n"))
}

/// Verifies with mail-auth, the keys of `domains` published.
fn check(raw: &str, domains: &[&str]) -> Outcome {
    let txt = txt_record(key());
    let records: Vec<(String, String)> = domains
        .iter()
        .map(|d| (format!("sel._domainkey.{d}."), txt.clone()))
        .collect();
    verify_with_keys(raw.as_bytes(), &records)
}

#[test]
fn signed_message_verifies_elsewhere() {
    let raw = signed(MESSAGE, "a.example");
    assert_eq!(
        check(&raw, &["a.example"]),
        Outcome::Pass {
            domain: "a.example".into()
        },
        "{raw}"
    );
    // Every line of the signature stays short.
    assert!(raw.lines().all(|l| l.len() <= 78), "{raw}");
}

#[test]
fn refusal_cases() {
    let refuse = Outcome::Refuse;
    let signed_a = signed(MESSAGE, "a.example");
    let cases: Vec<(&str, String, Outcome)> = vec![
        ("unsigned", MESSAGE.to_owned(), refuse(NO_SIGNATURE)),
        (
            "body changed after signing",
            signed_a.replace("Version: 1", "Version: 2"),
            refuse(BROKEN_SIGNATURE),
        ),
        (
            "signed header changed",
            signed_a.replace("<bob@b.example>", "<eve@b.example>"),
            refuse(BROKEN_SIGNATURE),
        ),
        (
            "From added above the signed one (oversigned)",
            signed_a.replacen("From:", "From: <mallory@a.example>\r\nFrom:", 1),
            Outcome::Refuse(crate::verify::BAD_FROM),
        ),
        (
            "Autocrypt added (oversigned)",
            signed_a.replacen("To:", "Autocrypt: addr=x@a.example; keydata=B\r\nTo:", 1),
            refuse(BROKEN_SIGNATURE),
        ),
        (
            "Reply-To added (absent, still signed)",
            format!("Reply-To: <x@evil.example>\r\n{signed_a}"),
            refuse(BROKEN_SIGNATURE),
        ),
        (
            "From of another domain",
            signed(
                &MESSAGE.replace("alice@a.example>", "alice@c.example>"),
                "a.example",
            ),
            refuse(MISALIGNED_SIGNATURE),
        ),
        (
            "signed by the parent domain",
            signed(
                &MESSAGE.replace("alice@a.example>", "alice@sub.a.example>"),
                "a.example",
            ),
            refuse(MISALIGNED_SIGNATURE),
        ),
        (
            "key not found: the lookup is tried again later",
            signed(MESSAGE, "unpublished.example")
                .replace("alice@a.example>", "alice@unpublished.example>"),
            Outcome::Refuse(crate::verify::DNS_TEMPFAIL),
        ),
    ];
    for (name, raw, want) in cases {
        assert_eq!(check(&raw, &["a.example"]), want, "{name}");
    }
    // Received lines added on the way are not signed.
    let relayed = format!("Received: from x by y\r\n{signed_a}");
    assert!(matches!(
        check(&relayed, &["a.example"]),
        Outcome::Pass { .. }
    ));
    assert_eq!(
        classify(Some("a.example"), &[("a.example".into(), SigResult::Pass)]),
        Outcome::Pass {
            domain: "a.example".into()
        }
    );
}
