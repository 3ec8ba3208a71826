//! DKIM in the milter on a real socket, driven as Postfix drives it:
//! submitted and Postfix-generated mail gets a signature header, mail from
//! other servers without a valid aligned signature gets the exact refusal,
//! and an unreachable resolver a temporary failure.

mod common;

use std::net::SocketAddr;

use common::*;
use indymilter_test::{EomAction, MacroStage, Status, TestConnection};

/// A milter with DKIM as configured: a key in the temp dir (unless
/// `with_key` is false) and a resolver at a closed loopback port.
async fn start(with_key: bool) -> Milter {
    let (dir, mut config) = test_config();
    config.dkim_key_file = dir.path().join("dkim.private");
    if with_key {
        chatmail_dkim::create_key(&config.dkim_key_file, None).unwrap();
    }
    // Nothing listens there: every lookup fails for now.
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let resolver = closed.local_addr().unwrap();
    drop(closed);
    config.dns_resolver = Some(resolver);
    Milter::run(dir, config).await
}

async fn open(m: &Milter, peer: &str) -> TestConnection {
    let mut conn = m.connect().await;
    let addr: SocketAddr = peer.parse().unwrap();
    assert_eq!(
        conn.connect("localhost", addr).await.unwrap(),
        Status::Continue
    );
    conn
}

/// Sends a whole message; returns the end-of-message actions and status.
async fn send(conn: &mut TestConnection, env: &Env<'_>, raw: &[u8]) -> (Vec<EomAction>, Status) {
    envelope(conn, env).await;
    let (fields, body) = split_message(raw);
    for (name, value) in fields {
        assert_eq!(conn.header(name, value).await.unwrap(), Status::Continue);
    }
    assert_eq!(conn.eoh().await.unwrap(), Status::Continue);
    assert_eq!(conn.body(body).await.unwrap(), Status::Continue);
    conn.macros(MacroStage::Eom, [("i", "4XyZ1234")])
        .await
        .unwrap();
    let (actions, status) = conn.eom().await.unwrap();
    (actions.actions, status)
}

fn signature(actions: &[EomAction]) -> String {
    match actions {
        [
            EomAction::InsertHeader {
                index: 0,
                name,
                value,
            },
        ] => {
            assert_eq!(name.to_str().unwrap(), "DKIM-Signature");
            value.to_str().unwrap().to_owned()
        }
        other => panic!("expected one inserted DKIM-Signature, got {other:?}"),
    }
}

#[tokio::test]
async fn submitted_and_bounced_mail_is_signed() {
    let m = start(true).await;
    let mut conn = open(&m, "127.0.0.1:40001").await;
    let env = outgoing(&[REMOTE]);
    let (actions, status) = send(&mut conn, &env, &testmail("encrypted-v4-seipdv1")).await;
    assert_eq!(status, Status::Accept);
    let sig = signature(&actions);
    assert!(
        sig.starts_with(" v=1; a=rsa-sha256; c=relaxed/relaxed; d=chat.example; s=opendkim;\n\t"),
        "{sig:?}"
    );
    assert!(sig.contains("h=from:from:to:to:"), "{sig:?}");
    conn.close().await.unwrap();

    // Postfix's own mail (client port 0): a bounce is signed ...
    let mut conn = open(&m, "127.0.0.1:0").await;
    let env = incoming("", &[REMOTE]);
    let (actions, status) = send(&mut conn, &env, &testmail("bounce-null-sender")).await;
    assert_eq!(status, Status::Accept);
    signature(&actions);
    // ... cleartext that is no bounce is not.
    let env = incoming("root@chat.example", &[REMOTE]);
    let (actions, status) = send(&mut conn, &env, &testmail("cleartext")).await;
    assert_eq!(
        status,
        rejected("523 5.7.1 Encryption Needed: Invalid Unencrypted Mail")
    );
    assert!(actions.is_empty(), "{actions:?}");
    conn.close().await.unwrap();
}

#[tokio::test]
async fn incoming_without_valid_signature() {
    let m = start(true).await;
    let mut conn = open(&m, "127.0.0.1:40002").await;
    // Unsigned mail claiming one of our own users: refused, no lookup.
    let env = incoming(REMOTE, &[STRICT]);
    let (actions, status) = send(&mut conn, &env, &testmail("encrypted-v4-seipdv1")).await;
    assert_eq!(status, rejected("550 5.7.20 No DKIM signature found"));
    assert!(actions.is_empty());
    // Signed, but the key cannot be looked up now: try again later.
    let key = chatmail_dkim::key::parse_key(
        &std::fs::read_to_string(m.dir.path().join("dkim.private")).unwrap(),
    )
    .unwrap();
    let raw = testmail("encrypted-v4-seipdv1");
    let value = chatmail_dkim::Signer::new(key, DOMAIN, "opendkim")
        .sign(&raw, 1_700_000_000)
        .unwrap();
    let mut signed = format!("DKIM-Signature:{}\r\n", value.replace('\n', "\r\n")).into_bytes();
    signed.extend_from_slice(&raw);
    let (_, status) = send(&mut conn, &env, &signed).await;
    assert_eq!(
        status,
        Status::Tempfail {
            message: Some(
                c"451 4.7.5 DKIM key lookup failed temporarily, try again later".to_owned()
            )
        }
    );
    // Cleartext is refused by the encryption rule first (no lookup).
    let (_, status) = send(&mut conn, &env, &testmail("cleartext")).await;
    assert_eq!(
        status,
        rejected("523 5.7.1 Encryption Needed: Invalid Unencrypted Mail")
    );
    conn.close().await.unwrap();
}

#[tokio::test]
async fn missing_key_defers_outgoing_mail() {
    let m = start(false).await;
    let mut conn = open(&m, "127.0.0.1:40003").await;
    let env = outgoing(&[REMOTE]);
    let (actions, status) = send(&mut conn, &env, &testmail("encrypted-v4-seipdv1")).await;
    assert_eq!(
        status,
        Status::Tempfail {
            message: Some(c"451 4.7.0 DKIM signing is not available, try again later".to_owned())
        }
    );
    assert!(actions.is_empty());
    conn.close().await.unwrap();
}
