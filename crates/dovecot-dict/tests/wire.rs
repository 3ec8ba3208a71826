//! Socket tests for the dict server: exact protocol bytes as Dovecot 2.3's
//! `proxy:` client sends and expects them (see `dovecot_dict::proto`).

mod common;

use std::time::Duration;

use common::{TestServer, expect, expect_eof, expect_silence, roundtrip};
use dovecot_dict::{Op, ServerOptions, Transaction};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn lookup_found_notfound_fail() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    roundtrip(&mut c, b"Lshared/found\t\n", b"Ovalue\n").await;
    roundtrip(&mut c, b"Lshared/missing\t\n", b"N\n").await;
    roundtrip(&mut c, b"Lshared/fail\t\n", b"Fbackend\x01tdown\n").await;
    // A lookup without the user field at all is fine too.
    roundtrip(&mut c, b"Lshared/found\n", b"Ovalue\n").await;
    srv.shutdown().await;
}

#[tokio::test]
async fn values_and_keys_are_escaped() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    roundtrip(
        &mut c,
        b"Lshared/escape\t\n",
        b"Oa\x01tb\x01nc\x01r\x011d\n",
    )
    .await;
    // The key reaches the handler unescaped and comes back escaped.
    roundtrip(
        &mut c,
        b"Lshared/echo/p\x01tw\x01nd\x011\t\n",
        b"Oshared/echo/p\x01tw\x01nd\x011\n",
    )
    .await;
    roundtrip(&mut c, b"Lshared/many\t\n", b"Mx\x01ty\x011tz\n").await;
}

#[tokio::test]
async fn user_from_command_else_hello() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.write_all(b"H3\t2\t0\thello@x\tpassdb\n").await.unwrap();
    roundtrip(&mut c, b"Lshared/whoami\t\n", b"Ohello@x\n").await;
    roundtrip(&mut c, b"Lshared/whoami\tcmd@x\n", b"Ocmd@x\n").await;
    let mut d = srv.hello().await;
    roundtrip(&mut d, b"Lpriv/whoami\t\n", b"N\n").await;
    roundtrip(&mut d, b"Lshared/whoami\t\n", b"O<none>\n").await;
}

#[tokio::test]
async fn iterate_rows_and_terminator() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    roundtrip(
        &mut c,
        b"I1\t0\tshared/userdb/\t\n",
        b"Oshared/userdb/a@x\t{\"a\":1}\nOshared/userdb/b\x01tc@x\ttab\x01there\n\n",
    )
    .await;
    roundtrip(
        &mut c,
        b"I1\t1\tshared/userdb/\t\n",
        b"Oshared/userdb/a@x\t{\"a\":1}\n\n",
    )
    .await;
    // Flag 0x08 NO_VALUE: rows keep the tab, the value is empty.
    roundtrip(
        &mut c,
        b"I9\t0\tshared/userdb/\t\n",
        b"Oshared/userdb/a@x\t\nOshared/userdb/b\x01tc@x\t\n\n",
    )
    .await;
    roundtrip(&mut c, b"I1\t0\tshared/nothing/\t\n", b"Fno such path\n").await;
}

fn set(key: &str, value: &str) -> Op {
    Op::Set {
        key: key.into(),
        value: value.into(),
    }
}

#[tokio::test]
async fn transactions_sync_and_async_commit() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    roundtrip(
        &mut c,
        b"B1\tu@x\nS1\tshared/k\tv\x01tx\nU1\tshared/u\nA1\tshared/n\t-3\nT1\t1700000000\t5\nC1\n",
        b"O1\n",
    )
    .await;
    roundtrip(&mut c, b"B2\t\nS2\tpriv/g/messagenew\t1\nD2\n", b"AO2\n").await;
    roundtrip(
        &mut c,
        b"B3\t\nS3\tshared/failcommit\tx\nC3\n",
        b"F3\tdisk\x01tfull\n",
    )
    .await;
    roundtrip(&mut c, b"B4\t\nS4\tshared/notfound\tx\nD4\n", b"AN4\n").await;
    roundtrip(&mut c, b"C9\n", b"F9\ttransaction 9 does not exist\n").await;
    roundtrip(&mut c, b"D9\n", b"AF9\ttransaction 9 does not exist\n").await;

    let commits = srv.handler.commits();
    assert_eq!(commits.len(), 4);
    assert_eq!(
        commits[0],
        Transaction {
            id: 1,
            user: Some("u@x".into()),
            ops: vec![
                set("shared/k", "v\tx"),
                Op::Unset {
                    key: "shared/u".into()
                },
                Op::AtomicInc {
                    key: "shared/n".into(),
                    diff: -3
                },
            ],
        }
    );
    assert_eq!(
        commits[1],
        Transaction {
            id: 2,
            user: None,
            ops: vec![set("priv/g/messagenew", "1")],
        }
    );
}

#[tokio::test]
async fn rollback_drops_transaction() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    roundtrip(
        &mut c,
        b"B1\t\nS1\tshared/k\tv\nR1\nC1\n",
        b"F1\ttransaction 1 does not exist\n",
    )
    .await;
    // Writes to a rolled-back id go nowhere; the id can be reused.
    roundtrip(
        &mut c,
        b"S1\tshared/x\ty\nB1\t\nS1\tshared/k\tw\nC1\n",
        b"O1\n",
    )
    .await;
    assert_eq!(
        srv.handler.commits(),
        vec![Transaction {
            id: 1,
            user: None,
            ops: vec![set("shared/k", "w")],
        }]
    );
}

#[tokio::test]
async fn transaction_ids_are_per_connection() {
    let srv = TestServer::start().await;
    let mut a = srv.hello().await;
    let mut b = srv.hello().await;
    a.write_all(b"B1\ta@x\nS1\tshared/k\ta\n").await.unwrap();
    b.write_all(b"B1\tb@x\nS1\tshared/k\tb\n").await.unwrap();
    roundtrip(&mut b, b"C1\n", b"O1\n").await;
    roundtrip(&mut a, b"C1\n", b"O1\n").await;
    let commits = srv.handler.commits();
    assert_eq!(commits.len(), 2);
    assert_eq!(commits[0].user.as_deref(), Some("b@x"));
    assert_eq!(commits[0].ops, vec![set("shared/k", "b")]);
    assert_eq!(commits[1].user.as_deref(), Some("a@x"));
    assert_eq!(commits[1].ops, vec![set("shared/k", "a")]);
}

#[tokio::test]
async fn duplicate_begin_keeps_first_transaction() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    roundtrip(
        &mut c,
        b"B1\tfirst\nS1\tshared/a\t1\nB1\tsecond\nS1\tshared/b\t2\nC1\n",
        b"O1\n",
    )
    .await;
    let commits = srv.handler.commits();
    assert_eq!(commits[0].user.as_deref(), Some("first"));
    assert_eq!(
        commits[0].ops,
        vec![set("shared/a", "1"), set("shared/b", "2")]
    );
}

#[tokio::test]
async fn split_reads() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    for &b in b"H3\t2\t0\t\tpassdb\nLshared/found\t\n" {
        c.write_all(&[b]).await.unwrap();
        c.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    expect(&mut c, b"Ovalue\n").await;
}

#[tokio::test]
async fn pipelined_requests_answered_in_order() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    let mut req = b"H3\t2\t0\t\tpassdb\n".to_vec();
    let mut want = Vec::new();
    for i in 0..200 {
        if i % 2 == 0 {
            req.extend_from_slice(b"Lshared/found\t\n");
            want.extend_from_slice(b"Ovalue\n");
        } else {
            req.extend_from_slice(format!("Lshared/echo/{i}\t\n").as_bytes());
            want.extend_from_slice(format!("Oshared/echo/{i}\n").as_bytes());
        }
    }
    req.extend_from_slice(b"B7\t\nS7\tshared/k\tv\nC7\nI1\t0\tshared/userdb/\t\n");
    want.extend_from_slice(
        b"O7\nOshared/userdb/a@x\t{\"a\":1}\nOshared/userdb/b\x01tc@x\ttab\x01there\n\n",
    );
    roundtrip(&mut c, &req, &want).await;
}

#[tokio::test]
async fn garbage_is_answered_or_ignored_and_serving_continues() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    let req: &[u8] = b"garbage without command\n\
        \n\
        Xunknown\n\
        Lshared/k\textra\tfields\n\
        Ix\t0\tshared/\n\
        Cnotanumber\n\
        Sno-id\tk\tv\n\
        Lshared/found\t\n";
    // Unknown commands and broken writes get no answer (the client expects
    // none); broken lookup/iterate/commit lines get F to keep replies in step.
    roundtrip(&mut c, req, b"F\nF\nF\nOvalue\n").await;
}

#[tokio::test]
async fn invalid_utf8() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    roundtrip(&mut c, b"Lshared/\xc3\x28\t\n", b"F\n").await;
    roundtrip(&mut c, b"B1\t\xff\nS1\tk\t\xfe\n", b"").await;
    roundtrip(&mut c, b"Lshared/found\t\n", b"Ovalue\n").await;
    // B1 was rejected, so there is nothing to commit.
    roundtrip(&mut c, b"C1\n", b"F1\ttransaction 1 does not exist\n").await;
}

#[tokio::test]
async fn overlong_line_fails_and_closes() {
    let opts = ServerOptions {
        max_line: 100,
        ..ServerOptions::default()
    };
    let srv = TestServer::start_with(opts.clone()).await;
    let mut c = srv.hello().await;
    roundtrip(&mut c, b"Lshared/found\t\n", b"Ovalue\n").await;
    let mut long = b"Lshared/".to_vec();
    long.extend(std::iter::repeat_n(b'a', 200));
    long.extend_from_slice(b"\t\nLshared/found\t\n");
    roundtrip(&mut c, &long, b"Frequest line too long\n").await;
    expect_eof(&mut c).await;

    // Even with lots of unread input behind it, the F still arrives.
    let c = srv.hello().await;
    let mut long = b"Lshared/".to_vec();
    long.extend(std::iter::repeat_n(b'a', 300_000));
    long.push(b'\n');
    let writer = {
        let (mut r, mut w) = c.into_split();
        let t = tokio::spawn(async move {
            let _ = w.write_all(&long).await;
            w
        });
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), r.read_to_end(&mut got)).await;
        assert!(
            got.starts_with(b"Frequest line too long\n"),
            "{:?}",
            got.escape_ascii().to_string()
        );
        t
    };
    drop(writer.await.unwrap());

    // A write command gets no answer, just the close; a line of exactly
    // max_line bytes is still fine.
    let mut c = srv.hello().await;
    let mut ok = b"Lshared/echo/".to_vec();
    ok.extend(std::iter::repeat_n(b'b', 100 - ok.len()));
    let mut want = b"O".to_vec();
    want.extend_from_slice(&ok[1..]);
    want.push(b'\n');
    ok.push(b'\n');
    roundtrip(&mut c, &ok, &want).await;
    let mut long = b"S1\tshared/k\t".to_vec();
    long.extend(std::iter::repeat_n(b'v', 100_000));
    // The server may close before reading it all; a failed write is fine.
    let _ = c.write_all(&long).await;
    expect_eof(&mut c).await;
}

#[tokio::test]
async fn disconnect_mid_transaction_commits_nothing() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    c.write_all(b"B1\t\nS1\tshared/k\tv\n").await.unwrap();
    // A partial COMMIT line is not a commit either.
    c.write_all(b"C1").await.unwrap();
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut d = srv.hello().await;
    roundtrip(&mut d, b"C1\n", b"F1\ttransaction 1 does not exist\n").await;
    assert!(srv.handler.commits().is_empty());
}

#[tokio::test]
async fn max_connections_bound() {
    let opts = ServerOptions {
        max_connections: 1,
        ..ServerOptions::default()
    };
    let srv = TestServer::start_with(opts).await;
    let mut a = srv.hello().await;
    roundtrip(&mut a, b"Lshared/found\t\n", b"Ovalue\n").await;
    let mut b = srv.hello().await;
    b.write_all(b"Lshared/found\t\n").await.unwrap();
    expect_silence(&mut b, 300).await;
    drop(a);
    expect(&mut b, b"Ovalue\n").await;
}

#[tokio::test]
async fn wrong_major_version_closes() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    c.write_all(b"H2\t2\t0\t\tpassdb\nLshared/found\t\n")
        .await
        .unwrap();
    expect_eof(&mut c).await;
}

#[tokio::test]
async fn shutdown_finishes_current_request_and_closes_idle() {
    let srv = TestServer::start().await;
    let mut idle = srv.hello().await;
    let mut busy = srv.hello().await;
    roundtrip(&mut idle, b"Lshared/found\t\n", b"Ovalue\n").await;
    busy.write_all(b"Lshared/slow\t\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let path = srv.path.clone();
    srv.shutdown().await;
    expect(&mut busy, b"Oslow\n").await;
    expect_eof(&mut busy).await;
    expect_eof(&mut idle).await;
    assert!(tokio::net::UnixStream::connect(&path).await.is_err());
}

/// Sends `n` small writes to transaction 1 in one burst.
fn writes(id: u32, n: usize) -> Vec<u8> {
    let mut req = Vec::new();
    for i in 0..n {
        req.extend_from_slice(format!("S{id}\tshared/k{i}\tv\n").as_bytes());
    }
    req
}

#[tokio::test]
async fn a_transaction_over_the_write_limit_is_refused_and_closed() {
    // Default limits: 1000 writes per transaction.
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    c.write_all(b"B1\t\n").await.unwrap();
    let _ = c.write_all(&writes(1, 1001)).await;
    expect(&mut c, b"F1\ttoo many writes in one transaction\n").await;
    expect_eof(&mut c).await;
    assert!(srv.handler.commits().is_empty());
    // The server keeps serving; 1000 writes are fine.
    let mut d = srv.hello().await;
    d.write_all(b"B1\t\n").await.unwrap();
    d.write_all(&writes(1, 1000)).await.unwrap();
    roundtrip(&mut d, b"C1\n", b"O1\n").await;
    assert_eq!(srv.handler.commits()[0].ops.len(), 1000);
}

#[tokio::test]
async fn transaction_connection_and_server_byte_limits() {
    let opts = ServerOptions {
        max_transaction_bytes: 1000,
        max_connection_bytes: 1500,
        max_connection_ops: 20,
        max_total_bytes: 2500,
        ..ServerOptions::default()
    };
    let srv = TestServer::start_with(opts).await;
    let big = |id: u32, n: usize| format!("S{id}\tshared/k\t{}\n", "v".repeat(n));

    // One transaction over its bytes.
    let mut c = srv.hello().await;
    c.write_all(format!("B1\t\n{}{}", big(1, 400), big(1, 600)).as_bytes())
        .await
        .unwrap();
    expect(&mut c, b"F1\ttransaction too large\n").await;
    expect_eof(&mut c).await;

    // Two transactions, each within bounds, over the connection's bytes.
    let mut c = srv.hello().await;
    c.write_all(format!("B1\t\nB2\t\n{}{}", big(1, 800), big(2, 800)).as_bytes())
        .await
        .unwrap();
    expect(&mut c, b"F2\topen transactions too large\n").await;
    expect_eof(&mut c).await;

    // Many tiny writes over the connection's write count.
    let mut c = srv.hello().await;
    c.write_all(b"B1\t\nB2\t\n").await.unwrap();
    c.write_all(&writes(1, 12)).await.unwrap();
    let _ = c.write_all(&writes(2, 10)).await;
    expect(&mut c, b"F2\ttoo many writes in open transactions\n").await;
    expect_eof(&mut c).await;

    // Two connections together over the server's budget: the second is refused.
    let mut a = srv.hello().await;
    a.write_all(format!("B1\t\nB2\t\n{}{}", big(1, 900), big(2, 400)).as_bytes())
        .await
        .unwrap();
    let mut b = srv.hello().await;
    roundtrip(&mut b, b"Lshared/found\t\n", b"Ovalue\n").await;
    roundtrip(&mut a, b"Lshared/found\t\n", b"Ovalue\n").await;
    let mut b2 = srv.hello().await;
    b2.write_all(format!("B7\t\nB8\t\n{}{}", big(7, 700), big(8, 400)).as_bytes())
        .await
        .unwrap();
    expect(&mut b2, b"F8\tserver out of transaction memory\n").await;
    expect_eof(&mut b2).await;
    // A commit gives the bytes back, and so does a closed connection.
    roundtrip(&mut a, b"C1\n", b"O1\n").await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut d = srv.hello().await;
    d.write_all(format!("B1\t\nB2\t\n{}{}", big(1, 700), big(2, 400)).as_bytes())
        .await
        .unwrap();
    roundtrip(&mut d, b"C1\n", b"O1\n").await;
    roundtrip(&mut b, b"Lshared/found\t\n", b"Ovalue\n").await;
}

#[tokio::test]
async fn a_refused_write_fails_the_whole_transaction() {
    let srv = TestServer::start().await;
    let mut c = srv.hello().await;
    // The second write is not UTF-8: it is lost, so nothing may commit.
    c.write_all(b"B1\t\nS1\tshared/a\tok\nS1\tpriv/devicetoken\t\xff\xfe\n")
        .await
        .unwrap();
    roundtrip(&mut c, b"C1\n", b"F1\ta write was refused\n").await;
    // A write whose transaction id cannot be read fails every open one.
    c.write_all(b"B2\t\nB3\t\nS2\tshared/a\tok\nS\xff\tshared/b\tv\n")
        .await
        .unwrap();
    roundtrip(&mut c, b"C2\n", b"F2\ta write was refused\n").await;
    roundtrip(&mut c, b"C3\n", b"F3\ta write was refused\n").await;
    // Other transactions on the same connection are not affected.
    c.write_all(b"B4\t\nS4\tshared/a\tok\n").await.unwrap();
    roundtrip(&mut c, b"C4\n", b"O4\n").await;
    assert_eq!(
        srv.handler.commits(),
        [Transaction {
            id: 4,
            user: None,
            ops: vec![Op::Set {
                key: "shared/a".into(),
                value: "ok".into()
            }],
        }]
    );
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let opts = ServerOptions {
        idle_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let srv = TestServer::start_with(opts).await;
    let mut idle = srv.hello().await;
    let mut stalled = srv.hello().await;
    stalled.write_all(b"Lshared/fo").await.unwrap();
    let mut busy = srv.hello().await;
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        roundtrip(&mut busy, b"Lshared/found\t\n", b"Ovalue\n").await;
    }
    expect_eof(&mut idle).await;
    expect_eof(&mut stalled).await;
    roundtrip(&mut busy, b"Lshared/found\t\n", b"Ovalue\n").await;
    assert_eq!(dovecot_dict::server::IDLE_TIMEOUT, Duration::from_secs(60));
}
