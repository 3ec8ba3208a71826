//! The DISABLED marker through the real policy server, exact bytes.

mod common;

use common::{Policy, rcpt, roundtrip};

const DUNNO: &[u8] = b"action=DUNNO\n\n";
const MAILBOX_DISABLED: &[u8] = b"action=550 5.2.1 mailbox disabled\n\n";
const SENDER_DISABLED: &[u8] = b"action=550 5.7.1 sending from this address is disabled\n\n";

#[tokio::test]
async fn mail_to_and_from_a_disabled_address_is_refused() {
    let p = Policy::start().await;
    p.create("alice@example.org");
    p.create("bob@example.org");
    let bob = p.store.mailbox("bob@example.org").unwrap();
    assert!(bob.set_disabled(true).unwrap());
    let mut c = p.connect().await;
    let cases: &[(&str, &str, &[u8])] = &[
        // To bob: refused from this relay and from others.
        ("alice@example.org", "bob@example.org", MAILBOX_DISABLED),
        ("", "bob@example.org", MAILBOX_DISABLED),
        ("", "Bob+x@example.org", MAILBOX_DISABLED),
        // From bob (a session that logged in before): refused to anyone.
        ("bob@example.org", "alice@example.org", SENDER_DISABLED),
        (
            "bob@example.org",
            "someone@elsewhere.example",
            SENDER_DISABLED,
        ),
        // Others are not affected.
        ("alice@example.org", "alice@example.org", DUNNO),
        ("", "alice@example.org", DUNNO),
    ];
    for (i, (sasl, to, want)) in cases.iter().enumerate() {
        roundtrip(&mut c, &rcpt(sasl, to, &format!("i.{i}")), want).await;
    }
    assert!(bob.set_disabled(false).unwrap());
    roundtrip(&mut c, &rcpt("", "bob@example.org", "i.9"), DUNNO).await;
    roundtrip(
        &mut c,
        &rcpt("bob@example.org", "alice@example.org", "i.10"),
        DUNNO,
    )
    .await;
}
