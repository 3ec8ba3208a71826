//! The METADATA dict over its socket, with the exact lines Dovecot 2.3's
//! dict client sends for `mail_attribute_dict`.

mod common;

use std::sync::Arc;

use common::*;
use tokio::io::AsyncWriteExt;

const ADDR: &str = "abcdefghi@example.org";
const DAY: i64 = 86_400;

#[tokio::test]
async fn devicetoken_set_and_lookup_round_trip() {
    let (world, _gw, server) = started(ADDR).await;
    let mut c = server.client().await;
    let key = devicetoken_key();

    assert_eq!(c.lookup(&key, ADDR).await, "N\n");
    assert_eq!(
        c.request(&format!("B1\t{ADDR}\nS1\t{key}\ttok1\nC1\n"))
            .await,
        "O1\n"
    );
    assert_eq!(c.lookup(&key, ADDR).await, "Otok1\n");
    world.clock.advance(5);
    assert_eq!(c.set(ADDR, &key, "tok2").await, "O#\n");
    assert_eq!(c.lookup(&key, ADDR).await, "Otok1 tok2\n");
    assert_eq!(
        world.tokens_on_disk(ADDR),
        [("tok1".to_owned(), T0), ("tok2".to_owned(), T0 + 5)]
    );
    // Re-registering refreshes the time instead of adding a duplicate.
    world.clock.advance(5);
    assert_eq!(c.set(ADDR, &key, "tok1").await, "O#\n");
    assert_eq!(
        world.tokens_on_disk(ADDR),
        [("tok1".to_owned(), T0 + 10), ("tok2".to_owned(), T0 + 5)]
    );
    // Values are tab-escaped on the wire: unescaped, a token with a tab or
    // a newline would be ambiguous in the space-separated lookup, so it is refused.
    assert_eq!(
        c.set(ADDR, &key, "a\x01tb\x01nc").await,
        "F#\ttoken contains whitespace or a control character\n"
    );
    assert_eq!(c.lookup(&key, ADDR).await, "Otok1 tok2\n");
    // The file keeps chatmaild's shape.
    let json = std::fs::read_to_string(world.config.mailboxes_dir.join(ADDR).join("metadata.json"))
        .unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["devicetoken"]["tok2"], T0 + 5);
    server.shutdown().await;
}

#[tokio::test]
async fn token_size_limit_is_4_kib() {
    let (world, _gw, server) = started(ADDR).await;
    let mut c = server.client().await;
    let key = devicetoken_key();
    let max = "a".repeat(4096);
    assert_eq!(c.set(ADDR, &key, &max).await, "O#\n");
    let reply = c.set(ADDR, &key, &"b".repeat(4097)).await;
    assert!(reply.starts_with("F#\t"), "{reply:?}");
    let reply = c.set(ADDR, &key, "").await;
    assert!(reply.starts_with("F#\t"), "{reply:?}");
    assert_eq!(c.lookup(&key, ADDR).await, format!("O{max}\n"));
    assert_eq!(world.tokens_on_disk(ADDR).len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_user_keeps_at_most_16_tokens_and_the_oldest_goes() {
    let (world, _gw, server) = started(ADDR).await;
    let mut c = server.client().await;
    let key = devicetoken_key();
    for i in 0..17 {
        assert_eq!(c.set(ADDR, &key, &format!("t{i:02}")).await, "O#\n");
        world.clock.advance(1);
    }
    let tokens = world.token_names_on_disk(ADDR);
    let want: Vec<String> = (1..17).map(|i| format!("t{i:02}")).collect();
    assert_eq!(tokens, want);
    assert_eq!(c.lookup(&key, ADDR).await, format!("O{}\n", want.join(" ")));
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_expire_after_90_days() {
    let (world, _gw, server) = started(ADDR).await;
    let mut c = server.client().await;
    let key = devicetoken_key();
    assert_eq!(c.set(ADDR, &key, "old").await, "O#\n");
    world.clock.advance(10 * DAY);
    assert_eq!(c.set(ADDR, &key, "young").await, "O#\n");
    world.clock.advance(80 * DAY - 1);
    assert_eq!(c.lookup(&key, ADDR).await, "Oold young\n");
    world.clock.advance(1);
    assert_eq!(c.lookup(&key, ADDR).await, "Oyoung\n");
    // The next write drops the dead token from the file.
    assert_eq!(c.set(ADDR, &key, "new").await, "O#\n");
    let tokens = world.token_names_on_disk(ADDR);
    assert_eq!(tokens, ["new", "young"]);
    world.clock.advance(90 * DAY);
    assert_eq!(c.lookup(&key, ADDR).await, "N\n");
    server.shutdown().await;
}

#[tokio::test]
async fn unset_removes_all_tokens() {
    let (world, _gw, server) = started(ADDR).await;
    let mut c = server.client().await;
    let key = devicetoken_key();
    assert_eq!(c.set(ADDR, &key, "t1").await, "O#\n");
    assert_eq!(c.set(ADDR, &key, "t2").await, "O#\n");
    assert_eq!(c.unset(ADDR, &key).await, "O#\n");
    assert_eq!(c.lookup(&key, ADDR).await, "N\n");
    assert!(world.tokens_on_disk(ADDR).is_empty());
    // Again, with nothing left: still fine.
    assert_eq!(c.unset(ADDR, &key).await, "O#\n");
    server.shutdown().await;
}

#[tokio::test]
async fn unknown_keys_are_neither_stored_nor_found() {
    let (world, _gw, server) = started(ADDR).await;
    let mut c = server.client().await;
    for key in [
        format!("priv/{GUID}/comment"),
        format!("priv/{GUID}/vendor/vendor.dovecot/pvt/server/devicetoken"),
        format!("shared/{GUID}/comment"),
        info_key("irohrelay"),
    ] {
        let reply = c.set(ADDR, &key, "x").await;
        assert!(reply.starts_with("F#\t"), "{key}: {reply:?}");
        assert_eq!(c.unset(ADDR, &key).await, "O#\n", "{key}");
    }
    for key in [
        format!("priv/{GUID}/comment"),
        format!("priv/{GUID}/messagenew"),
        format!("shared/{GUID}/comment"),
        info_key("nonsense"),
        format!("shared/{GUID}/vendor/vendor.dovecot/pvt/server/vendor/other/irohrelay"),
    ] {
        assert_eq!(c.lookup(&key, ADDR).await, "N\n", "{key}");
    }
    let reply = c
        .transaction(ADDR, &[format!("A{{id}}\tpriv/{GUID}/count\t1")])
        .await;
    assert!(reply.starts_with("F#\t"), "{reply:?}");
    // Iteration (mailbox delete/rename) finds nothing rather than failing.
    assert_eq!(
        c.request(&format!("I1\t0\tpriv/{GUID}/\t{ADDR}\n")).await,
        "\n"
    );
    // One bad op fails the commit, and a good op before it is not applied.
    let reply = c
        .transaction(
            ADDR,
            &[
                format!("S{{id}}\t{}\tkept", devicetoken_key()),
                format!("S{{id}}\tpriv/{GUID}/comment\tx"),
            ],
        )
        .await;
    assert_eq!(reply, "F#\tunknown key\n");
    assert!(world.tokens_on_disk(ADDR).is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn relay_info_keys() {
    let world = World::new();
    let gateway = Gateway::start().await;
    let options = world.options(&gateway);
    let appversions = options.appversions_file.clone();
    let server = world.start(options).await;
    let mut c = server.client().await;

    assert_eq!(
        c.lookup(&info_key("irohrelay"), ADDR).await,
        "Ohttps://example.org\n"
    );
    assert_eq!(
        c.lookup(&info_key("maxsmtprecipients"), ADDR).await,
        "O1000\n"
    );
    assert_eq!(
        c.lookup(&info_key("unixtimestamp"), ADDR).await,
        format!("O{T0}\n")
    );
    // Server lookups come without a user too.
    assert_eq!(
        c.request(&format!("L{}\t\n", info_key("maxsmtprecipients")))
            .await,
        "O1000\n"
    );

    assert_eq!(c.lookup(&info_key("appversions"), ADDR).await, "N\n");
    std::fs::write(
        &appversions,
        "{\n  \"clients\": [\n    {\"clientId\": \"deltachat\", \"sources\": []}\n  ]\n}\n",
    )
    .unwrap();
    assert_eq!(
        c.lookup(&info_key("appversions"), ADDR).await,
        "O{\"clients\":[{\"clientId\":\"deltachat\",\"sources\":[]}]}\n"
    );
    std::fs::write(&appversions, "{ broken").unwrap();
    assert_eq!(c.lookup(&info_key("appversions"), ADDR).await, "N\n");

    // No secret and no TURN service: not found.
    assert_eq!(c.lookup(&info_key("turn"), ADDR).await, "N\n");
    server.shutdown().await;

    // iroh_relay set to empty in chatmail.ini: not announced.
    let mut config = (*world.config).clone();
    config.iroh_relay = None;
    let world2 = World {
        dir: tempfile::tempdir().unwrap(),
        config: Arc::new(config),
        clock: world.clock.clone(),
    };
    let server = world2.start(world2.options(&gateway)).await;
    let mut c = server.client().await;
    assert_eq!(c.lookup(&info_key("irohrelay"), ADDR).await, "N\n");
    server.shutdown().await;
}

#[tokio::test]
async fn turn_credentials_from_a_shared_secret() {
    let world = World::new();
    let gateway = Gateway::start().await;
    let mut options = world.options(&gateway);
    let secret = world.dir.path().join("turn-secret");
    std::fs::write(&secret, "north\n").unwrap();
    options.turn.secret_file = Some(secret);
    let server = world.start(options).await;
    let mut c = server.client().await;
    // username = expiry (now + 5 days); password = base64(HMAC-SHA1("north",
    // username)), computed independently with Python's hmac module.
    assert_eq!(
        c.lookup(&info_key("turn"), ADDR).await,
        "Oexample.org:3478:1800432000:KOWEbuniLZJfbV55J4BRILbUWPI=\n"
    );
    world.clock.advance(1);
    let reply = c.lookup(&info_key("turn"), ADDR).await;
    let fields: Vec<&str> = reply.trim_end().split(':').collect();
    assert_eq!(fields[..3], ["Oexample.org", "3478", "1800432001"]);
    let want = chatmail_metadata::hmac::base64(&chatmail_metadata::hmac::hmac_sha1(
        b"north",
        b"1800432001",
    ));
    assert_eq!(fields[3], want);
    server.shutdown().await;
}

#[tokio::test]
async fn turn_credentials_from_the_turn_service() {
    let world = World::new();
    let gateway = Gateway::start().await;
    let options = world.options(&gateway);
    let listener = tokio::net::UnixListener::bind(&options.turn.socket_path).unwrap();
    let service = tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"1700000000:c2VjcmV0\n").await.unwrap();
        }
    });
    let server = world.start(options).await;
    let mut c = server.client().await;
    assert_eq!(
        c.lookup(&info_key("turn"), ADDR).await,
        "Oexample.org:3478:1700000000:c2VjcmV0\n"
    );
    server.shutdown().await;
    service.abort();
}

#[tokio::test]
async fn bad_users_are_refused() {
    let (world, _gw, server) = started(ADDR).await;
    let mut c = server.client().await;
    let key = devicetoken_key();
    for user in [
        "../abcdefghi@example.org",
        "../../etc/passwd",
        "a/b@example.org",
        "abcdefghi@other.org",
        ".hidden@example.org",
    ] {
        let reply = c.set(user, &key, "tok").await;
        assert!(reply.starts_with("F#\t"), "{user}: {reply:?}");
        let reply = c.lookup(&key, user).await;
        assert!(reply.starts_with('F'), "{user}: {reply:?}");
        let reply = c.set(user, &messagenew_key(), "").await;
        assert!(reply.starts_with("F#\t"), "{user}: {reply:?}");
    }
    // No user at all.
    let reply = c.request(&format!("L{key}\t\n")).await;
    assert!(reply.starts_with('F'), "{reply:?}");
    // A valid address without a mailbox directory: refused, nothing created.
    let ghost = "ghostuser@example.org";
    let reply = c.set(ghost, &key, "tok").await;
    assert!(reply.starts_with("F#\t"), "{reply:?}");
    assert!(!world.config.mailboxes_dir.join(ghost).exists());
    let mut entries: Vec<_> = std::fs::read_dir(world.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".socket") && !n.starts_with("chatmail-push.sqlite"))
        .collect();
    entries.sort();
    assert_eq!(entries, ["mail"]);
    server.shutdown().await;
}

#[tokio::test]
async fn messagenew_without_tokens_queues_nothing() {
    let (_world, gateway, server) = started(ADDR).await;
    let mut c = server.client().await;
    assert_eq!(c.set(ADDR, &messagenew_key(), "").await, "O#\n");
    assert!(server.queued().is_empty());
    assert!(gateway.bodies().is_empty());
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_with_whitespace_or_control_characters_are_refused_whole() {
    let (world, _gw, server) = started(ADDR).await;
    let mut c = server.client().await;
    let key = devicetoken_key();
    let good = "openpgp:wcBMA0Fq+/8xZ2K3AQ/9Hb==";
    for bad in [
        "a b", "a\x01tb", "a\x01nb", "a\x01rb", "a\x010b", "a\u{7}b", "a\u{a0}b", "ab ",
    ] {
        // A valid registration in the same transaction is not applied either.
        let reply = c
            .transaction(
                ADDR,
                &[
                    format!("S{{id}}\t{key}\t{good}"),
                    format!("S{{id}}\t{key}\t{bad}"),
                ],
            )
            .await;
        assert_eq!(
            reply, "F#\ttoken contains whitespace or a control character\n",
            "{bad:?}"
        );
    }
    assert!(world.tokens_on_disk(ADDR).is_empty());
    assert_eq!(c.lookup(&key, ADDR).await, "N\n");
    // The same connection and a new one keep working.
    assert_eq!(c.set(ADDR, &key, good).await, "O#\n");
    let mut d = server.client().await;
    assert_eq!(d.lookup(&key, ADDR).await, format!("O{good}\n"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_metadata_json_that_is_a_fifo_or_a_symlink_is_ignored_and_replaced() {
    let (world, _gw, server) = started(ADDR).await;
    let mut c = server.client().await;
    let key = devicetoken_key();
    let path = world.config.mailboxes_dir.join(ADDR).join("metadata.json");
    for plant in ["fifo", "symlink"] {
        if plant == "fifo" {
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        } else {
            std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        }
        // Answered at once as no tokens (logged), not after reading forever.
        assert_eq!(c.lookup(&key, ADDR).await, "N\n", "{plant}");
        // A registration replaces the planted file with a real one.
        assert_eq!(c.set(ADDR, &key, "tok1").await, "O#\n", "{plant}");
        assert!(
            std::fs::symlink_metadata(&path).unwrap().is_file(),
            "{plant}"
        );
        assert_eq!(c.lookup(&key, ADDR).await, "Otok1\n", "{plant}");
        std::fs::remove_file(&path).unwrap();
    }
    server.shutdown().await;
}
