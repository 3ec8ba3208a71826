use super::*;

const ME: &str = "alice@chat.example";
const BOB: &str = "bob@other.example";

fn env<'a>(direction: Direction, sender: &'a str, rcpts: &'a [String]) -> Envelope<'a> {
    Envelope {
        direction,
        sender,
        recipients: rcpts,
        auth_login: None,
    }
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn cleartext(from: &str) -> String {
    format!("From: <{from}>\r\nTo: <{BOB}>\r\nSubject: hi\r\n\r\nMeet me at noon.\r\n")
}

fn securejoin(header: &str, body: &str) -> String {
    format!(
        "From: <{ME}>\r\nTo: <{BOB}>\r\nSecure-Join: {header}\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\n{body}\r\n--b--\r\n"
    )
}

#[test]
fn from_header_case_table() {
    let r = rcpts(&[BOB]);
    let body = "Subject: x\r\n\r\nhi\r\n";
    let cases: &[(&str, String, bool)] = &[
        ("same", format!("From: <{ME}>\r\n{body}"), true),
        (
            "display name",
            format!("From: Alice <{ME}>\r\n{body}"),
            true,
        ),
        ("bare", format!("From: {ME}\r\n{body}"), true),
        (
            "other case",
            format!("From: <ALICE@Chat.Example>\r\n{body}"),
            true,
        ),
        (
            "other address",
            format!("From: <eve@chat.example>\r\n{body}"),
            false,
        ),
        ("missing", body.to_owned(), false),
        (
            "two addresses",
            format!("From: <{ME}>, <eve@x.example>\r\n{body}"),
            false,
        ),
        (
            "two fields",
            format!("From: <{ME}>\r\nFrom: <eve@x.example>\r\n{body}"),
            false,
        ),
        ("group", format!("From: friends: <{ME}>;\r\n{body}"), false),
        (
            "another user as an unquoted display name",
            format!("From: eve@chat.example <{ME}>\r\n{body}"),
            false,
        ),
        (
            "an address as a quoted display name",
            format!("From: \"eve@chat.example\" <{ME}>\r\n{body}"),
            true,
        ),
        ("empty message", String::new(), false),
    ];
    for (name, raw, from_ok) in cases {
        let v = check_outgoing(
            &env(Direction::Outgoing, ME, &r),
            raw.as_bytes(),
            &Passthrough::NONE,
        );
        let want = if *from_ok {
            Verdict::Reject(ENCRYPTION_NEEDED)
        } else {
            Verdict::Reject(FROM_MISMATCH)
        };
        assert_eq!(v, want, "{name}");
    }
}

#[test]
fn securejoin_case_table() {
    let mixed_two = format!(
        "From: <{ME}>\r\nSecure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nsecure-join: vc-request\r\n\
         --b\r\nContent-Type: text/plain\r\n\r\nMeet me at noon.\r\n--b--\r\n"
    );
    let not_multipart = format!(
        "From: <{ME}>\r\nSecure-Join: vc-request\r\nContent-Type: text/plain\r\n\r\nsecure-join: vc-request\r\n"
    );
    let html = securejoin("vc-request", "secure-join: vc-request")
        .replace("Content-Type: text/plain", "Content-Type: text/html");
    let no_ct_part = securejoin("vc-request", "secure-join: vc-request")
        .replace("--b\r\nContent-Type: text/plain\r\n", "--b\r\n");
    let cases: &[(&str, String, bool)] = &[
        (
            "vc",
            securejoin("vc-request", "Secure-Join: vc-request"),
            true,
        ),
        (
            "vg",
            securejoin("vg-request", "Secure-Join: vg-request"),
            true,
        ),
        (
            "upper body",
            securejoin("vc-request", "SECURE-JOIN: VC-REQUEST"),
            true,
        ),
        (
            "padded body",
            securejoin("vc-request", "\r\n  secure-join: vc-request \r\n"),
            true,
        ),
        ("part without content-type", no_ct_part, true),
        (
            "body says vg, header vc",
            securejoin("vc-request", "secure-join: vg-request"),
            true,
        ),
        (
            "fake body",
            securejoin("vc-request", "Meet me at noon."),
            false,
        ),
        (
            "body with extra",
            securejoin("vc-request", "secure-join: vc-request\r\nhi"),
            false,
        ),
        (
            "with-auth",
            securejoin("vc-request-with-auth", "secure-join: vc-request-with-auth"),
            false,
        ),
        (
            "header case",
            securejoin("VC-REQUEST", "secure-join: vc-request"),
            false,
        ),
        ("no header", cleartext(ME), false),
        ("two parts", mixed_two, false),
        ("not multipart", not_multipart, false),
        ("html part", html, false),
    ];
    for (name, raw, want) in cases {
        let msg = parse(raw.as_bytes()).unwrap();
        assert_eq!(is_securejoin(&msg), *want, "{name}");
    }
}

#[cfg(feature = "testmail")]
/// An Autocrypt Setup Message shaped as Delta Chat sends it, with a
/// stand-in SKESK + SEIPD payload (the rules check framing, not crypto).
fn setup_message(text: &str) -> String {
    use crate::testmail::{Crc, armor, packet};
    let payload = [packet(3, &[4, 9, 3, 0]), packet(18, &[1, 0xaa, 0xbb])].concat();
    let armored = armor(
        &payload,
        &[("Passphrase-Format", "numeric9x4")],
        Crc::Correct,
    );
    format!(
        "From: <{ME}>\r\nSubject: Autocrypt Setup Message\r\n\
         Autocrypt-Setup-Message: v1\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n\
         --b\r\nContent-Type: application/autocrypt-setup; name=\"autocrypt-setup-message.html\"\r\n\
         Content-Disposition: attachment; filename=\"autocrypt-setup-message.html\"\r\n\r\n\
         <!DOCTYPE html>\r\n<html><body><pre>\r\n{armored}</pre></body></html>\r\n--b--\r\n"
    )
}

#[cfg(feature = "testmail")]
#[test]
fn autocrypt_setup_and_passthrough() {
    let asm = setup_message("This is the Autocrypt Setup Message.");
    let asm_alt = asm.replace("multipart/mixed", "multipart/alternative");
    let asm_subject = asm.replace("Autocrypt Setup Message", "Autocrypt Setup Message!");
    let me = rcpts(&[ME]);
    let me_upper = rcpts(&["Alice@chat.example"]);
    let bob = rcpts(&[BOB]);
    let me_and_bob = rcpts(&[ME, BOB]);
    let senders = rcpts(&["news@chat.example"]);
    let pt_rcpts = rcpts(&["bob@other.example", "@lists.example"]);
    let pt = Passthrough {
        senders: &senders,
        recipients: &pt_rcpts,
    };
    let news = cleartext("news@chat.example");
    let mine = cleartext(ME);
    let a = Verdict::Accept;
    let r = Verdict::Reject(ENCRYPTION_NEEDED);
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a [String],
        &'a Passthrough<'a>,
        Verdict,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "asm self",
            ME,
            &asm,
            &me,
            &Passthrough::NONE,
            a(AcceptReason::AutocryptSetup),
        ),
        (
            "asm self, other case",
            ME,
            &asm,
            &me_upper,
            &Passthrough::NONE,
            a(AcceptReason::AutocryptSetup),
        ),
        ("asm to bob", ME, &asm, &bob, &Passthrough::NONE, r),
        (
            "asm to self and bob",
            ME,
            &asm,
            &me_and_bob,
            &Passthrough::NONE,
            r,
        ),
        ("asm alternative", ME, &asm_alt, &me, &Passthrough::NONE, r),
        ("asm subject", ME, &asm_subject, &me, &Passthrough::NONE, r),
        (
            "passthrough sender",
            "news@chat.example",
            &news,
            &bob,
            &pt,
            a(AcceptReason::PassthroughSender),
        ),
        (
            "passthrough rcpt",
            ME,
            &mine,
            &bob,
            &pt,
            a(AcceptReason::PassthroughRecipients),
        ),
    ];
    for (name, sender, raw, rc, pt, want) in cases {
        let v = check_outgoing(&env(Direction::Outgoing, sender, rc), raw.as_bytes(), pt);
        assert_eq!(v, want, "{name}");
    }
    let mixed = rcpts(&[BOB, "carol@x.example"]);
    let v = check_outgoing(
        &env(Direction::Outgoing, ME, &mixed),
        cleartext(ME).as_bytes(),
        &pt,
    );
    assert_eq!(v, r, "one non-passthrough recipient");
    let v = check_outgoing(
        &env(Direction::Outgoing, ME, &[]),
        cleartext(ME).as_bytes(),
        &pt,
    );
    assert_eq!(v, r, "no recipients at all");
}

#[test]
fn passthrough_recipient_matching() {
    let entries = rcpts(&["pass@example.org", "@example.com"]);
    let pt = Passthrough {
        senders: &[],
        recipients: &entries,
    };
    let cases = [
        ("pass@example.org", true),
        ("PASS@Example.org", true),
        ("other@example.org", false),
        ("anything@example.com", true),
        ("anything@EXAMPLE.COM", true),
        ("anything@sub.example.com", false),
        ("anything@notexample.com", false),
        ("", false),
    ];
    for (rcpt, want) in cases {
        assert_eq!(pt.recipient_allowed(rcpt), want, "{rcpt}");
    }
}

#[test]
fn bounce_case_table() {
    let bounce = |from: &str, auto: Option<&str>, ctype: &str| {
        format!(
            "From: {from}\r\n{}Content-Type: {ctype}; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nundeliverable\r\n--b--\r\n",
            auto.map(|a| format!("Auto-Submitted: {a}\r\n"))
                .unwrap_or_default()
        )
    };
    let daemon = "MAILER-DAEMON@other.example (Mail Delivery System)";
    let r = rcpts(&[ME]);
    let cases: &[(&str, &str, String, Verdict)] = &[
        (
            "real",
            "",
            bounce(daemon, Some("auto-replied"), "multipart/report"),
            Verdict::Accept(AcceptReason::Bounce),
        ),
        (
            "lower-case daemon",
            "",
            bounce(
                "<mailer-daemon@x.example>",
                Some("auto-generated"),
                "multipart/report",
            ),
            Verdict::Accept(AcceptReason::Bounce),
        ),
        (
            "with envelope sender",
            BOB,
            bounce(daemon, Some("auto-replied"), "multipart/report"),
            Verdict::Reject(ENCRYPTION_NEEDED),
        ),
        (
            "no auto-submitted",
            "",
            bounce(daemon, None, "multipart/report"),
            Verdict::Reject(ENCRYPTION_NEEDED),
        ),
        (
            "empty auto-submitted",
            "",
            bounce(daemon, Some(""), "multipart/report"),
            Verdict::Reject(ENCRYPTION_NEEDED),
        ),
        (
            "not from daemon",
            "",
            bounce(
                "<postmaster@x.example>",
                Some("auto-replied"),
                "multipart/report",
            ),
            Verdict::Reject(ENCRYPTION_NEEDED),
        ),
        (
            "daemon in display name only",
            "",
            bounce(
                "mailer-daemon@x.example <eve@x.example>",
                Some("auto-replied"),
                "multipart/report",
            ),
            Verdict::Reject(ENCRYPTION_NEEDED),
        ),
        (
            "mixed",
            "",
            bounce(daemon, Some("auto-replied"), "multipart/mixed"),
            Verdict::Reject(ENCRYPTION_NEEDED),
        ),
    ];
    for (name, sender, raw, want) in cases {
        let v = check_incoming(&env(Direction::Incoming, sender, &r), raw.as_bytes(), true);
        assert_eq!(v, *want, "{name}");
    }
}

#[test]
fn incoming_enforcement() {
    let r = rcpts(&[ME]);
    let e = env(Direction::Incoming, BOB, &r);
    let raw = cleartext(BOB);
    assert_eq!(
        check_incoming(&e, raw.as_bytes(), true),
        Verdict::Reject(ENCRYPTION_NEEDED)
    );
    assert_eq!(
        check_incoming(&e, raw.as_bytes(), false),
        Verdict::Accept(AcceptReason::CleartextAllowed)
    );
    // Garbage without any header is cleartext too.
    assert_eq!(
        check_incoming(&e, b"", true),
        Verdict::Reject(ENCRYPTION_NEEDED)
    );
    // Secure-Join passes even with a foreign From.
    let sj = securejoin("vc-request", "secure-join: vc-request");
    assert_eq!(
        check_incoming(&e, sj.as_bytes(), true),
        Verdict::Accept(AcceptReason::SecureJoin)
    );
    // check() dispatches by direction.
    let out = env(Direction::Outgoing, ME, &r);
    assert_eq!(
        check(&out, sj.as_bytes(), &Passthrough::NONE, true),
        Verdict::Accept(AcceptReason::SecureJoin)
    );
    assert_eq!(
        check(&e, raw.as_bytes(), &Passthrough::NONE, false),
        Verdict::Accept(AcceptReason::CleartextAllowed)
    );
}

#[test]
fn reply_texts() {
    assert_eq!(
        ENCRYPTION_NEEDED.to_string(),
        "523 5.7.1 Encryption Needed: Invalid Unencrypted Mail"
    );
    assert!(
        FROM_MISMATCH
            .to_string()
            .starts_with("554 5.7.1 Invalid FROM")
    );
    assert!(!ENCRYPTION_NEEDED.is_transient());
}

/// Every generated case, through both directions, as the manifest says.
#[cfg(feature = "testmail")]
#[test]
fn generated_cases() {
    use crate::testmail::{Expect, generate};
    let to = rcpts(&[BOB, "carol@other.example"]);
    let mails = generate(ME, &to).unwrap();
    assert!(mails.len() >= 35, "{} cases", mails.len());
    let mut names: Vec<_> = mails.iter().map(|m| m.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), mails.len(), "case names are unique");
    let mut wrong = Vec::new();
    for m in &mails {
        let e_out = env(Direction::Outgoing, &m.mail_from, &m.rcpt_to);
        let e_in = env(Direction::Incoming, &m.mail_from, &m.rcpt_to);
        let out = check_outgoing(&e_out, &m.raw, &Passthrough::NONE);
        let inc = check_incoming(&e_in, &m.raw, true);
        let got = |v: Verdict| match v {
            Verdict::Accept(_) => Expect::Accept,
            Verdict::Reject(_) => Expect::Reject,
        };
        if got(out) != m.outgoing {
            wrong.push(format!("{} outgoing: {out:?}", m.name));
        }
        if got(inc) != m.incoming {
            wrong.push(format!("{} incoming: {inc:?}", m.name));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
