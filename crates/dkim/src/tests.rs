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
        classify(Ok("a.example"), &[("a.example".into(), SigResult::Pass)]),
        Outcome::Pass {
            domain: "a.example".into()
        }
    );
}

/// How a test signature is made: what our signer never does.
struct Spec<'a> {
    key: &'a RsaPrivateKey,
    domain: &'a str,
    selector: &'a str,
    sha1: bool,
    headers: &'a [&'a str],
    t: u64,
}

impl<'a> Spec<'a> {
    fn new(key: &'a RsaPrivateKey, domain: &'a str, selector: &'a str) -> Spec<'a> {
        Spec {
            key,
            domain,
            selector,
            sha1: false,
            headers: &["from", "to", "subject", "date", "message-id"],
            t: 1_700_000_000,
        }
    }
}

/// `raw` with a relaxed/relaxed signature made as `spec` says prepended.
/// The body of [`MESSAGE`] has no whitespace to canonicalize, so its hash
/// is that of its bytes.
fn signed_as(raw: &str, spec: &Spec<'_>) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;
    use rsa::Pkcs1v15Sign;
    use sha2::{Digest, Sha256};

    let (fields, body) = crate::sign::split_message(raw.as_bytes());
    let hash = |data: &[u8]| -> Vec<u8> {
        if spec.sha1 {
            use sha1::Digest as _;
            sha1::Sha1::digest(data).to_vec()
        } else {
            Sha256::digest(data).to_vec()
        }
    };
    let a = if spec.sha1 { "rsa-sha1" } else { "rsa-sha256" };
    let value = format!(
        " v=1; a={a}; c=relaxed/relaxed; d={}; s={}; t={}; bh={}; h={}; b=",
        spec.domain,
        spec.selector,
        spec.t,
        B64.encode(hash(body)),
        spec.headers.join(":"),
    );
    let mut data = Vec::new();
    for name in spec.headers {
        if let Some(f) = fields
            .iter()
            .rev()
            .find(|f| f.name.eq_ignore_ascii_case(name.as_bytes()))
        {
            crate::sign::relaxed_header(f.name, f.value, &mut data);
        }
    }
    crate::sign::relaxed_header(b"DKIM-Signature", value.as_bytes(), &mut data);
    data.truncate(data.len() - 2);
    let sig = if spec.sha1 {
        // DigestInfo of SHA-1 (RFC 8017 9.2, note 1): rsa has no SHA-1 OID.
        let mut prefixed = b"\x30\x21\x30\x09\x06\x05\x2b\x0e\x03\x02\x1a\x05\x00\x04\x14".to_vec();
        prefixed.extend(hash(&data));
        spec.key.sign(Pkcs1v15Sign::new_unprefixed(), &prefixed)
    } else {
        spec.key.sign(Pkcs1v15Sign::new::<Sha256>(), &hash(&data))
    };
    format!(
        "DKIM-Signature:{value}{}\r\n{raw}",
        B64.encode(sig.unwrap())
    )
}

fn small_key() -> &'static RsaPrivateKey {
    static KEY: OnceLock<RsaPrivateKey> = OnceLock::new();
    KEY.get_or_init(|| RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 512).unwrap())
}

/// The records of the weak-signature tests: `sel` a good key, `small` a
/// 512-bit one, `testing` the good key with `t=y`.
fn weak_records() -> Vec<(String, String)> {
    let good = txt_record(key());
    vec![
        ("sel._domainkey.a.example.".into(), good.clone()),
        (
            "small._domainkey.a.example.".into(),
            txt_record(small_key()),
        ),
        (
            "testing._domainkey.a.example.".into(),
            good.replace("v=DKIM1;", "v=DKIM1; t=y;"),
        ),
    ]
}

#[test]
fn weak_signatures_count_as_absent() {
    use crate::offline::OfflineVerifier;
    let now = 1_800_000_000;
    let verifier = OfflineVerifier::new(&weak_records());
    let base = Spec::new(key(), "a.example", "sel");
    let pass = Outcome::Pass {
        domain: "a.example".into(),
    };
    let cases: Vec<(&str, Spec<'_>, Outcome)> = vec![
        ("control: a good signature", Spec { ..base }, pass.clone()),
        (
            "control: t= within the clock skew",
            Spec {
                t: now + crate::verify::MAX_CLOCK_SKEW,
                ..Spec::new(key(), "a.example", "sel")
            },
            pass,
        ),
        (
            "rsa-sha1",
            Spec {
                sha1: true,
                ..Spec::new(key(), "a.example", "sel")
            },
            Outcome::Refuse(NO_SIGNATURE),
        ),
        (
            "512-bit key",
            Spec::new(small_key(), "a.example", "small"),
            Outcome::Refuse(NO_SIGNATURE),
        ),
        (
            "key with t=y",
            Spec::new(key(), "a.example", "testing"),
            Outcome::Refuse(NO_SIGNATURE),
        ),
        (
            "From not in h=",
            Spec {
                headers: &["to", "subject", "date", "message-id"],
                ..Spec::new(key(), "a.example", "sel")
            },
            Outcome::Refuse(NO_SIGNATURE),
        ),
        (
            "t= 10^8 s in the future",
            Spec {
                t: now + 100_000_000,
                ..Spec::new(key(), "a.example", "sel")
            },
            Outcome::Refuse(NO_SIGNATURE),
        ),
    ];
    for (name, spec, want) in cases {
        let raw = signed_as(MESSAGE, &spec);
        let checked = verifier.check_at(raw.as_bytes(), now);
        assert_eq!(checked.outcome, want, "{name}: {}", checked.notes);
    }
    // The weak signatures are valid as such: mail-auth alone accepts the
    // rsa-sha1 and 512-bit ones, so it is our rules that refuse them.
    let auth_alone = |raw: &str| {
        let records = weak_records();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let keys = crate::verify::Keys::new();
            for (name, txt) in &records {
                use mail_auth::ResolverCache;
                use mail_auth::common::parse::TxtRecordParser;
                let k = mail_auth::common::verify::DomainKey::parse(txt.as_bytes()).unwrap();
                keys.insert(
                    name.as_str().into(),
                    mail_auth::Txt::DomainKey(std::sync::Arc::new(k)),
                    std::time::Instant::now(),
                );
            }
            let (c, o) = crate::verify::resolver_config(Some(([127, 0, 0, 1], 9).into())).unwrap();
            let auth = mail_auth::MessageAuthenticator::new(c, o).unwrap();
            let msg = mail_auth::AuthenticatedMessage::parse(raw.as_bytes()).unwrap();
            let out = auth
                .verify_dkim(mail_auth::Parameters::new(&msg).with_txt_cache(&keys))
                .await;
            out.iter()
                .all(|o| *o.result() == mail_auth::DkimResult::Pass)
                && !out.is_empty()
        })
    };
    for spec in [
        Spec {
            sha1: true,
            ..Spec::new(key(), "a.example", "sel")
        },
        Spec::new(small_key(), "a.example", "small"),
        Spec::new(key(), "a.example", "testing"),
        Spec {
            headers: &["to", "subject"],
            ..Spec::new(key(), "a.example", "sel")
        },
    ] {
        assert!(auth_alone(&signed_as(MESSAGE, &spec)), "{}", spec.selector);
    }
}

#[test]
fn a_weak_signature_does_not_hide_a_broken_or_good_one() {
    use crate::offline::OfflineVerifier;
    let now = 1_800_000_000;
    let verifier = OfflineVerifier::new(&weak_records());
    let weak = signed_as(MESSAGE, &Spec::new(small_key(), "a.example", "small"));
    // A good signature above the weak one passes.
    let good_too = signed_as(&weak, &Spec::new(key(), "a.example", "sel"));
    assert!(matches!(
        verifier.check_at(good_too.as_bytes(), now).outcome,
        Outcome::Pass { .. }
    ));
    // A broken one with it is broken, not unsigned.
    let broken =
        signed_as(&weak, &Spec::new(key(), "a.example", "sel")).replace("Version: 1", "Version: 2");
    assert_eq!(
        verifier.check_at(broken.as_bytes(), now).outcome,
        Outcome::Refuse(BROKEN_SIGNATURE)
    );
}

/// Counts and answers key lookups from fixed records, each after `delay`.
struct CountingSource {
    records: Vec<(String, String)>,
    delay: std::time::Duration,
    asked: std::sync::Mutex<Vec<String>>,
}

impl crate::verify::KeySource for CountingSource {
    async fn key(
        &self,
        name: &str,
    ) -> mail_auth::Result<std::sync::Arc<mail_auth::common::verify::DomainKey>> {
        use mail_auth::common::parse::TxtRecordParser;
        self.asked.lock().unwrap().push(name.to_owned());
        tokio::time::sleep(self.delay).await;
        match self.records.iter().find(|(n, _)| n == name) {
            Some((_, txt)) => Ok(std::sync::Arc::new(
                mail_auth::common::verify::DomainKey::parse(txt.as_bytes()).unwrap(),
            )),
            None => Err(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
                "silent".into(),
            ))),
        }
    }
}

#[tokio::test]
async fn work_per_message_is_bounded() {
    let source = CountingSource {
        records: weak_records(),
        delay: std::time::Duration::from_millis(300),
        asked: Default::default(),
    };
    let (c, o) = crate::verify::resolver_config(Some(([127, 0, 0, 1], 9).into())).unwrap();
    let auth = mail_auth::MessageAuthenticator::new(c, o).unwrap();
    // 20 signatures of other domains, then 8 of the From domain by keys
    // nobody publishes, then a good one.
    let mut raw = MESSAGE.to_owned();
    raw = signed_as(&raw, &Spec::new(key(), "a.example", "sel"));
    for i in 0..8 {
        let selector = format!("silent{i}");
        raw = signed_as(&raw, &Spec::new(key(), "a.example", &selector));
    }
    for i in 0..20 {
        let domain = format!("d{i}.example");
        raw = signed_as(&raw, &Spec::new(key(), &domain, "sel"));
    }
    let started = std::time::Instant::now();
    let checked = crate::verify::evaluate(&auth, &source, raw.as_bytes(), 1_800_000_000).await;
    let took = started.elapsed();
    let asked = source.asked.lock().unwrap().clone();
    // Only the first five of the From domain were looked up, together.
    assert_eq!(asked.len(), 5, "{asked:?}");
    assert!(
        asked.iter().all(|n| n.ends_with("._domainkey.a.example.")),
        "{asked:?}"
    );
    assert!(took < std::time::Duration::from_millis(1200), "{took:?}");
    // The good signature is the ninth of its domain: not checked. The
    // five checked could not be looked up: a retry may pass.
    assert_eq!(
        checked.outcome,
        Outcome::Refuse(crate::verify::DNS_TEMPFAIL),
        "{}",
        checked.notes
    );
    assert!(
        checked.notes.contains("24 not checked"),
        "{}",
        checked.notes
    );
}

#[tokio::test]
async fn the_deadline_answers_for_lookups_that_never_end() {
    // A name server that receives and never answers.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let _tcp = std::net::TcpListener::bind(silent.local_addr().unwrap()).unwrap();
    let verifier = crate::Verifier::new(Some(silent.local_addr().unwrap()))
        .unwrap()
        .with_deadline(std::time::Duration::from_millis(500));
    let raw = signed(MESSAGE, "a.example");
    let started = std::time::Instant::now();
    let outcome = verifier.check(raw.as_bytes()).await;
    assert_eq!(outcome, Outcome::Refuse(crate::verify::VERIFY_TIMEOUT));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn mail_auth_reads_the_flags_and_sizes_we_check() {
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey;
    let parse = |txt: &str| DomainKey::parse(txt.as_bytes()).unwrap();
    let good = txt_record(key());
    let testing = parse(&good.replace("v=DKIM1;", "v=DKIM1; t=y;"));
    assert_eq!(
        crate::verify::key_rule(true, testing.p.public_key_bits(), testing.f),
        Some(crate::verify::Weak::TestingKey)
    );
    let both = parse(&good.replace("v=DKIM1;", "v=DKIM1; t=y:s;"));
    assert!(crate::verify::key_rule(true, 2048, both.f).is_some());
    assert_eq!(parse(&good).p.public_key_bits(), 2048);
    assert_eq!(crate::verify::key_rule(true, 2048, parse(&good).f), None);
    assert_eq!(parse(&txt_record(small_key())).p.public_key_bits(), 512);
}
