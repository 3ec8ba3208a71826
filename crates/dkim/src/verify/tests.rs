//! The verification rules' case tables and the bounds on work per message.
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
        // An unquoted display name that is itself an address.
        (&[b" alice@a.example <mallory@evil.example>"], None),
        (&[b" alice@a.example\r\n <mallory@evil.example>"], None),
        (&[b" Alice alice@a.example <mallory@evil.example>"], None),
        (&[b" Bob <b@b.example>, a@a.example <c@evil.example>"], None),
    ];
    for (values, want) in cases {
        assert_eq!(from_domain(values).as_deref(), *want, "{values:?}");
    }
    type ReplyCase<'a> = (&'a [&'a [u8]], Result<&'a str, Reply>);
    let replies: &[ReplyCase] = &[
        (&[b" <alice@a.example>"], Ok("a.example")),
        (&[b" alice@a.example <m@evil.example>"], Err(AMBIGUOUS_FROM)),
        (
            &[b" \"alice@a.example\" <m@evil.example>"],
            Ok("evil.example"),
        ),
        (
            &[b" (alice@a.example) <m@evil.example>"],
            Ok("evil.example"),
        ),
        (&[b" a@a.example, b@b.example"], Err(BAD_FROM)),
        (&[], Err(BAD_FROM)),
    ];
    for (values, want) in replies {
        assert_eq!(
            author_domain(values).as_deref().map_err(|r| *r),
            *want,
            "{values:?}"
        );
    }
}

#[test]
fn signature_rules() {
    use Algorithm::{Ed25519Sha256, RsaSha1, RsaSha256};
    let now = 1_800_000_000;
    let h = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
    type Case = (&'static str, Algorithm, Vec<String>, u64, Option<Weak>);
    let cases: Vec<Case> = vec![
        (
            "rsa-sha256, From signed",
            RsaSha256,
            h(&["from", "to"]),
            now,
            None,
        ),
        ("ed25519", Ed25519Sha256, h(&["From"]), now, None),
        ("no timestamp", RsaSha256, h(&["from"]), 0, None),
        ("From in any case", RsaSha256, h(&["to", "FROM"]), now, None),
        ("rsa-sha1", RsaSha1, h(&["from"]), now, Some(Weak::Sha1)),
        (
            "From not signed",
            RsaSha256,
            h(&["to", "subject"]),
            now,
            Some(Weak::FromNotSigned),
        ),
        (
            "nothing signed",
            RsaSha256,
            h(&[]),
            now,
            Some(Weak::FromNotSigned),
        ),
        (
            "From-ish name",
            RsaSha256,
            h(&["from2"]),
            now,
            Some(Weak::FromNotSigned),
        ),
        (
            "clock skew allowed",
            RsaSha256,
            h(&["from"]),
            now + MAX_CLOCK_SKEW,
            None,
        ),
        (
            "just past the skew",
            RsaSha256,
            h(&["from"]),
            now + MAX_CLOCK_SKEW + 1,
            Some(Weak::FromTheFuture),
        ),
        (
            "10^8 s ahead",
            RsaSha256,
            h(&["from"]),
            now + 100_000_000,
            Some(Weak::FromTheFuture),
        ),
        ("the past is fine", RsaSha256, h(&["from"]), 1, None),
        (
            "sha1 checked first",
            RsaSha1,
            h(&[]),
            u64::MAX,
            Some(Weak::Sha1),
        ),
    ];
    for (name, a, h, t, want) in cases {
        assert_eq!(signature_rule(a, &h, t, now), want, "{name}");
    }
}

#[test]
fn key_rules() {
    let testing = KEY_FLAG_TESTING;
    let cases = [
        ("2048-bit RSA", true, 2048, 0, None),
        ("1024-bit RSA", true, 1024, 0, None),
        ("1023-bit RSA", true, 1023, 0, Some(Weak::ShortKey(1023))),
        ("512-bit RSA", true, 512, 0, Some(Weak::ShortKey(512))),
        ("Ed25519 has no size rule", false, usize::MAX, 0, None),
        ("t=y", true, 2048, testing, Some(Weak::TestingKey)),
        (
            "t=y on Ed25519",
            false,
            usize::MAX,
            testing,
            Some(Weak::TestingKey),
        ),
        ("t=s is fine", true, 2048, 0x20, None),
    ];
    for (name, rsa, bits, flags, want) in cases {
        assert_eq!(key_rule(rsa, bits, flags), want, "{name}");
    }
}

#[test]
fn selection() {
    let many: Vec<&str> = std::iter::repeat_n("a.example", 8).collect();
    type Case = (
        &'static str,
        Option<&'static str>,
        Vec<&'static str>,
        Vec<usize>,
    );
    let cases: Vec<Case> = vec![
        ("aligned", Some("a.example"), vec!["a.example"], vec![0]),
        (
            "case-insensitive",
            Some("a.example"),
            vec!["A.Example"],
            vec![0],
        ),
        (
            "misaligned are never looked up",
            Some("a.example"),
            vec!["b.example", "sub.a.example", "example", "a.example."],
            vec![],
        ),
        (
            "aligned among others",
            Some("a.example"),
            vec!["b.example", "a.example", "c.example", "a.example"],
            vec![1, 3],
        ),
        ("at most five", Some("a.example"), many, vec![0, 1, 2, 3, 4]),
        ("no From domain", None, vec!["a.example"], vec![]),
    ];
    for (name, from, domains, want) in cases {
        assert_eq!(select(from, &domains), want, "{name}");
    }
    assert_eq!(MAX_SIGNATURES, 5);
}

#[tokio::test]
async fn lookups_run_concurrently() {
    // Three futures that each wait 200 ms finish together.
    let started = std::time::Instant::now();
    let waits = (0..3u32)
        .map(|i| async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            i
        })
        .collect();
    assert_eq!(join_all(waits).await, vec![0, 1, 2]);
    assert!(started.elapsed() < Duration::from_millis(500));
}

#[test]
fn alignment_and_failure_classes() {
    use SigResult::{Fail, NotChecked, Pass, TempError};
    let a = "a.example";
    let s = |d: &str, r| (d.to_owned(), r);
    let pass = Outcome::Pass { domain: a.into() };
    let refuse = Outcome::Refuse;
    type Case<'a> = (
        &'a str,
        Result<&'a str, Reply>,
        Vec<(String, SigResult)>,
        Outcome,
    );
    let cases: Vec<Case> = vec![
        ("aligned pass", Ok(a), vec![s(a, Pass)], pass.clone()),
        (
            "aligned pass next to a broken one",
            Ok(a),
            vec![s(a, Fail), s(a, Pass)],
            pass.clone(),
        ),
        (
            "aligned pass next to a foreign one",
            Ok(a),
            vec![s("b.example", Pass), s(a, Pass)],
            pass,
        ),
        ("unsigned", Ok(a), vec![], refuse(NO_SIGNATURE)),
        ("broken", Ok(a), vec![s(a, Fail)], refuse(BROKEN_SIGNATURE)),
        (
            "signed by another domain",
            Ok(a),
            vec![s("b.example", Pass)],
            refuse(MISALIGNED_SIGNATURE),
        ),
        (
            "signed by the parent domain",
            Ok("sub.a.example"),
            vec![s(a, Pass)],
            refuse(MISALIGNED_SIGNATURE),
        ),
        (
            "signed by a subdomain",
            Ok(a),
            vec![s("sub.a.example", Pass)],
            refuse(MISALIGNED_SIGNATURE),
        ),
        (
            "signed by a sibling",
            Ok("x.example"),
            vec![s("y.example", Pass)],
            refuse(MISALIGNED_SIGNATURE),
        ),
        (
            "key lookup failed for now",
            Ok(a),
            vec![s(a, TempError)],
            refuse(DNS_TEMPFAIL),
        ),
        (
            "foreign lookup failure does not defer",
            Ok(a),
            vec![s("b.example", TempError)],
            refuse(MISALIGNED_SIGNATURE),
        ),
        (
            "temporary beats broken: a retry may pass",
            Ok(a),
            vec![s(a, Fail), s(a, TempError)],
            refuse(DNS_TEMPFAIL),
        ),
        ("no From", Err(BAD_FROM), vec![s(a, Pass)], refuse(BAD_FROM)),
        (
            "ambiguous From",
            Err(AMBIGUOUS_FROM),
            vec![s(a, Pass)],
            refuse(AMBIGUOUS_FROM),
        ),
        (
            "aligned, not checked (over the limit)",
            Ok(a),
            vec![s(a, Fail), s(a, NotChecked)],
            refuse(BROKEN_SIGNATURE),
        ),
        (
            "only misaligned, not checked",
            Ok(a),
            vec![s("b.example", NotChecked)],
            refuse(MISALIGNED_SIGNATURE),
        ),
        (
            "malformed signature, not checked",
            Ok(a),
            vec![s("", NotChecked)],
            refuse(MISALIGNED_SIGNATURE),
        ),
        (
            "domain literal",
            Ok("[192.0.2.1]"),
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
        AMBIGUOUS_FROM,
    ] {
        assert!(r.code == 550 && r.enhanced.starts_with("5.7."), "{r}");
    }
    for r in [DNS_TEMPFAIL, VERIFY_TIMEOUT] {
        assert!(r.code == 451 && r.enhanced == "4.7.5", "{r}");
    }
}
