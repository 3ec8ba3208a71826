//! The milter on a real socket, driven with the milter protocol as Postfix
//! speaks it; exact SMTP replies asserted.

mod common;

use common::*;
use indymilter_test::{MacroStage, Status};

const E2EE: &str = "523 5.7.1 Encryption Needed: Invalid Unencrypted Mail";
const FROM: &str = "554 5.7.1 Invalid FROM: the From header must be the envelope sender";
const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed limit";

#[tokio::test]
async fn negotiation_requests_our_macros() {
    let m = Milter::start().await;
    let conn = m.connect().await;
    let mail = conn.requested_macros().get(&MacroStage::Mail).unwrap();
    assert!(
        mail.to_str()
            .unwrap()
            .split(' ')
            .any(|x| x == "{auth_authen}")
    );
    let eom = conn.requested_macros().get(&MacroStage::Eom).unwrap();
    assert_eq!(eom.to_str().unwrap(), "i");
    m.stop_after(conn).await;
}

#[tokio::test]
async fn outgoing_encrypted_is_accepted() {
    let m = Milter::start().await;
    let mut conn = m.connect().await;
    for name in [
        "encrypted-v4-seipdv1",
        "encrypted-v6-seipdv2",
        "encrypted-legacy-pkesk-headers",
        "securejoin-vc-request",
    ] {
        let s = mail(&mut conn, outgoing(&[REMOTE]), name).await;
        assert_eq!(s, Status::Accept, "{name}");
    }
    m.stop_after(conn).await;
}

#[tokio::test]
async fn outgoing_cleartext_gets_523() {
    let m = Milter::start().await;
    let mut conn = m.connect().await;
    for name in [
        "cleartext",
        "armor-version-header",
        "crc-wrong",
        "two-seipd",
    ] {
        let s = mail(&mut conn, outgoing(&[REMOTE]), name).await;
        assert_eq!(s, rejected(E2EE), "{name}");
    }
    // Even to a local recipient that accepts cleartext: outgoing rules apply.
    let s = mail(&mut conn, outgoing(&[OPEN]), "cleartext").await;
    assert_eq!(s, rejected(E2EE));
    m.stop_after(conn).await;
}

#[tokio::test]
async fn outgoing_from_mismatch() {
    let m = Milter::start().await;
    let mut conn = m.connect().await;
    let s = mail(&mut conn, outgoing(&[REMOTE]), "from-header-mismatch").await;
    assert_eq!(s, rejected(FROM));
    m.stop_after(conn).await;
}

#[tokio::test]
async fn outgoing_passthrough_recipient() {
    let m = Milter::start_with(|c| c.passthrough_recipients = vec!["@other.example".into()]).await;
    let mut conn = m.connect().await;
    let s = mail(&mut conn, outgoing(&[REMOTE]), "cleartext").await;
    assert_eq!(s, Status::Accept);
    m.stop_after(conn).await;
}

#[tokio::test]
async fn incoming_cleartext_depends_on_local_recipients() {
    let m = Milter::start().await;
    let mut conn = m.connect().await;
    let clear = testmail("cleartext");
    let s = message(&mut conn, &incoming(REMOTE, &[STRICT]), &clear).await;
    assert_eq!(s, rejected(E2EE), "enforcing recipient");
    let s = message(&mut conn, &incoming(REMOTE, &[OPEN]), &clear).await;
    assert_eq!(s, Status::Accept, "non-enforcing recipient");
    let s = message(&mut conn, &incoming(REMOTE, &[OPEN, STRICT]), &clear).await;
    assert_eq!(s, rejected(E2EE), "one enforcing recipient is enough");
    let s = message(
        &mut conn,
        &incoming(REMOTE, &["nobody@chat.example"]),
        &clear,
    )
    .await;
    assert_eq!(s, Status::Accept, "no such mailbox, no marker");
    // Armor headers are fine from other servers.
    let s = mail(
        &mut conn,
        incoming(REMOTE, &[STRICT]),
        "armor-version-header",
    )
    .await;
    assert_eq!(s, Status::Accept);
    m.stop_after(conn).await;
}

#[tokio::test]
async fn incoming_bounce_is_accepted() {
    let m = Milter::start().await;
    let mut conn = m.connect().await;
    let bounce = testmail("bounce-null-sender");
    let s = message(&mut conn, &incoming("", &[STRICT]), &bounce).await;
    assert_eq!(s, Status::Accept);
    // The same bounce with a real envelope sender is just cleartext.
    let s = message(&mut conn, &incoming(REMOTE, &[STRICT]), &bounce).await;
    assert_eq!(s, rejected(E2EE));
    m.stop_after(conn).await;
}

#[tokio::test]
async fn oversize_message_is_refused_early() {
    let m = Milter::start_with(|c| c.max_message_size = 2000).await;
    let mut conn = m.connect().await;
    let from = ("From", "<alice@chat.example>");
    through_header(&mut conn, &outgoing(&[REMOTE]), None, from).await;
    assert_eq!(conn.body(vec![b'x'; 1000]).await.unwrap(), Status::Continue);
    assert_eq!(
        conn.body(vec![b'x'; 1000]).await.unwrap(),
        rejected(TOO_BIG)
    );
    // Postfix aborts the message; the connection carries on.
    conn.abort().await.unwrap();
    let s = mail(&mut conn, outgoing(&[REMOTE]), "securejoin-vg-request").await;
    assert_eq!(s, Status::Accept);
    // A message exactly at the limit is fine.
    let subject = ("Subject", "x");
    let header = "Subject: x\r\n\r\n".len();
    through_header(&mut conn, &incoming(REMOTE, &[OPEN]), None, subject).await;
    assert_eq!(
        conn.body(vec![b'y'; 2000 - header]).await.unwrap(),
        Status::Continue
    );
    assert_eq!(conn.eom().await.unwrap().1, Status::Accept);
    m.stop_after(conn).await;
}

#[tokio::test]
async fn state_is_reset_between_messages() {
    let m = Milter::start().await;
    let mut conn = m.connect().await;
    // Message 1 outgoing, rejected; message 2 on the same connection
    // without a login is incoming: the login must not stick.
    let s = mail(&mut conn, outgoing(&[REMOTE]), "cleartext").await;
    assert_eq!(s, rejected(E2EE));
    let s = mail(&mut conn, incoming(REMOTE, &[OPEN]), "cleartext").await;
    assert_eq!(s, Status::Accept);
    // RSET after the recipients of a message to an enforcing user: the
    // next message's recipients start from scratch.
    envelope(&mut conn, &incoming(REMOTE, &[STRICT])).await;
    conn.abort().await.unwrap();
    let s = mail(&mut conn, incoming(REMOTE, &[OPEN]), "cleartext").await;
    assert_eq!(s, Status::Accept);
    // And the other way round: an accepted message leaves nothing behind.
    let s = mail(&mut conn, incoming(REMOTE, &[STRICT]), "cleartext").await;
    assert_eq!(s, rejected(E2EE));
    m.stop_after(conn).await;
}

#[tokio::test]
async fn abort_mid_message() {
    let m = Milter::start().await;
    let mut conn = m.connect().await;
    let from = ("From", "<alice@chat.example>");
    through_header(&mut conn, &outgoing(&[REMOTE]), None, from).await;
    assert_eq!(
        conn.body(b"half a mess".to_vec()).await.unwrap(),
        Status::Continue
    );
    conn.abort().await.unwrap();
    // The half message's body must not leak into the next one.
    let s = mail(&mut conn, outgoing(&[REMOTE]), "encrypted-v6-seipdv2").await;
    assert_eq!(s, Status::Accept);

    // A client that vanishes mid-message does not hurt the daemon.
    let mut gone = m.connect().await;
    envelope(&mut gone, &incoming(REMOTE, &[STRICT])).await;
    assert_eq!(gone.header("Subject", "x").await.unwrap(), Status::Continue);
    drop(gone);
    let s = mail(&mut conn, incoming(REMOTE, &[STRICT]), "cleartext").await;
    assert_eq!(s, rejected(E2EE));
    m.stop_after(conn).await;
}

#[tokio::test]
async fn unsafe_local_recipient_counts_as_enforcing() {
    let m = Milter::start().await;
    let mut conn = m.connect().await;
    let clear = testmail("cleartext");
    for rcpt in [
        "../strict@chat.example",
        "STRICT@Chat.Example",
        "strict+tag@chat.example",
    ] {
        let s = message(&mut conn, &incoming(REMOTE, &[rcpt]), &clear).await;
        assert_eq!(s, rejected(E2EE), "{rcpt}");
    }
    m.stop_after(conn).await;
}

#[tokio::test]
async fn many_connections_at_once() {
    let m = Milter::start().await;
    let encrypted = testmail("encrypted-v4-seipdv2");
    let clear = testmail("cleartext");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut conn = m.connect().await;
        let raw = if i % 2 == 0 {
            encrypted.clone()
        } else {
            clear.clone()
        };
        tasks.push(tokio::spawn(async move {
            let s = message(&mut conn, &outgoing(&[REMOTE]), &raw).await;
            conn.close().await.unwrap();
            s
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let want = if i % 2 == 0 {
            Status::Accept
        } else {
            rejected(E2EE)
        };
        assert_eq!(t.await.unwrap(), want);
    }
    m.stop().await;
}
