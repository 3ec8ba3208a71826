//! `chatmail policy` through the real server on a temp socket, with exact
//! protocol bytes as Postfix 3.7 sends them, and a fake clock for the rate
//! limit (no test depends on real time).

mod common;

use std::time::Duration;

use common::{Policy, data, rcpt, roundtrip};

const DUNNO: &[u8] = b"action=DUNNO\n\n";
const RATE_LIMITED: &[u8] =
    b"action=450 4.7.1 Rate limit exceeded: at most 60 messages per minute\n\n";
const NO_SUCH_USER: &[u8] = b"action=550 5.1.1 no such user\n\n";

#[tokio::test]
async fn burst_of_ten_then_450_then_recovers() {
    let p = Policy::start().await;
    let mut c = p.connect().await;
    for i in 0..10 {
        let inst = format!("inst.{i}");
        roundtrip(&mut c, &data("alice@example.org", 1, &inst), DUNNO).await;
    }
    roundtrip(
        &mut c,
        &data("alice@example.org", 1, "inst.10"),
        RATE_LIMITED,
    )
    .await;
    // A case variant of the login shares the budget.
    roundtrip(
        &mut c,
        &data("Alice@Example.org", 1, "inst.11"),
        RATE_LIMITED,
    )
    .await;
    // Other users, and a second connection, are not affected.
    let mut d = p.connect().await;
    roundtrip(&mut d, &data("bob@example.org", 1, "inst.b"), DUNNO).await;
    // Unauthenticated mail (port 25) is never limited here.
    for i in 0..20 {
        roundtrip(&mut d, &data("", 1, &format!("in.{i}")), DUNNO).await;
    }

    // GCRA at 60/min: one more message per second.
    p.clock.advance(Duration::from_secs(1));
    roundtrip(&mut c, &data("alice@example.org", 1, "inst.12"), DUNNO).await;
    roundtrip(
        &mut c,
        &data("alice@example.org", 1, "inst.13"),
        RATE_LIMITED,
    )
    .await;
    // After a quiet minute the whole burst is back.
    p.clock.advance(Duration::from_secs(60));
    for i in 0..10 {
        let inst = format!("later.{i}");
        roundtrip(&mut c, &data("alice@example.org", 1, &inst), DUNNO).await;
    }
    roundtrip(
        &mut c,
        &data("alice@example.org", 1, "later.10"),
        RATE_LIMITED,
    )
    .await;
    p.shutdown().await;
}

#[tokio::test]
async fn a_message_counts_once_however_many_recipients() {
    let p = Policy::start().await;
    p.create("bob@example.org");
    let mut c = p.connect().await;
    // Ten messages with five recipients each, as Postfix asks: one RCPT
    // request per recipient, then one DATA request, all with one instance.
    for msg in 0..10 {
        let inst = format!("7A3B.{msg}");
        for r in 0..4 {
            let to = format!("friend{r}@elsewhere.example");
            roundtrip(&mut c, &rcpt("alice@example.org", &to, &inst), DUNNO).await;
        }
        roundtrip(
            &mut c,
            &rcpt("alice@example.org", "bob@example.org", &inst),
            DUNNO,
        )
        .await;
        roundtrip(&mut c, &data("alice@example.org", 5, &inst), DUNNO).await;
    }
    // The eleventh: recipients still pass, the message is refused at DATA.
    let inst = "7A3B.10";
    roundtrip(
        &mut c,
        &rcpt("alice@example.org", "x@elsewhere.example", inst),
        DUNNO,
    )
    .await;
    roundtrip(&mut c, &data("alice@example.org", 1, inst), RATE_LIMITED).await;
}

#[tokio::test]
async fn local_recipients_must_exist() {
    let p = Policy::start().await;
    p.create("bob@example.org");
    let mut c = p.connect().await;
    let cases: &[(&str, &str, &[u8])] = &[
        // Authenticated submission.
        ("alice@example.org", "nobody@example.org", NO_SUCH_USER),
        ("alice@example.org", "bob@example.org", DUNNO),
        ("alice@example.org", "someone@elsewhere.example", DUNNO),
        // Incoming from another server.
        ("", "nobody@example.org", NO_SUCH_USER),
        ("", "bob@example.org", DUNNO),
        // Delivered to bob by Dovecot, so accepted.
        ("", "Bob@EXAMPLE.ORG", DUNNO),
        ("", "bob+news@example.org", DUNNO),
        // Names no account can have.
        ("", ".hidden@example.org", NO_SUCH_USER),
        ("", "a/b@example.org", NO_SUCH_USER),
        ("", "+x@example.org", NO_SUCH_USER),
        // Subdomains are foreign.
        ("", "nobody@mx.example.org", DUNNO),
    ];
    for (i, (sasl, to, want)) in cases.iter().enumerate() {
        roundtrip(&mut c, &rcpt(sasl, to, &format!("i.{i}")), want).await;
    }
}

#[tokio::test]
async fn unreadable_account_is_deferred_not_accepted() {
    let p = Policy::start().await;
    let mb = p.store.mailbox("broken@example.org").unwrap();
    std::fs::create_dir_all(mb.password_path()).unwrap();
    let mut c = p.connect().await;
    roundtrip(
        &mut c,
        &rcpt("", "broken@example.org", "i.1"),
        b"action=DEFER_IF_PERMIT internal error in the chatmail policy service\n\n",
    )
    .await;
}

#[tokio::test]
async fn other_states_are_dunno() {
    let p = Policy::start().await;
    let mut c = p.connect().await;
    for state in [
        "CONNECT",
        "EHLO",
        "MAIL",
        "END-OF-MESSAGE",
        "VRFY",
        "ETRN",
        "NEW",
    ] {
        let req = format!(
            "request=smtpd_access_policy\nprotocol_state={state}\n\
             sasl_username=alice@example.org\nrecipient=nobody@example.org\n\n"
        );
        roundtrip(&mut c, req.as_bytes(), DUNNO).await;
    }
    // None of these counted against the rate limit.
    for i in 0..10 {
        roundtrip(
            &mut c,
            &data("alice@example.org", 1, &format!("m.{i}")),
            DUNNO,
        )
        .await;
    }
}

#[tokio::test]
async fn malformed_request_is_deferred_and_connection_still_usable() {
    let p = Policy::start().await;
    let mut c = p.connect().await;
    roundtrip(
        &mut c,
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient nobody@example.org\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: line 3 is not name=value\n\n",
    )
    .await;
    roundtrip(
        &mut c,
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nrecipient=\xff@example.org\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: line 3 is not valid UTF-8\n\n",
    )
    .await;
    roundtrip(&mut c, &rcpt("", "nobody@example.org", "i.1"), NO_SUCH_USER).await;
}
