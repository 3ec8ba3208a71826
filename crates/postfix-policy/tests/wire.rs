//! Socket tests for the policy server: exact protocol bytes as Postfix's
//! SMTP server sends and expects them (see `postfix_policy::proto`).

mod common;

use std::time::Duration;

use common::{TestServer, expect, expect_eof, expect_silence, rcpt, roundtrip};
use postfix_policy::{Limits, ServerOptions};
use tokio::io::AsyncWriteExt;

const DUNNO: &[u8] = b"action=DUNNO\n\n";
const NO_SUCH_USER: &[u8] = b"action=550 5.1.1 no such user\n\n";

#[tokio::test]
async fn one_request() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    roundtrip(&mut c, &rcpt("nouser@x"), NO_SUCH_USER).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn several_requests_per_connection() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    roundtrip(&mut c, &rcpt("ok@x"), DUNNO).await;
    roundtrip(&mut c, &rcpt("nouser@x"), NO_SUCH_USER).await;
    roundtrip(
        &mut c,
        &rcpt("echo@x"),
        b"action=REJECT state=Some(Rcpt) instance=1a2b.5f3e7d21.8c4a1.0 user=a@example.org\n\n",
    )
    .await;
    // The minimal request: just the request type.
    roundtrip(&mut c, b"request=smtpd_access_policy\n\n", DUNNO).await;
    assert_eq!(srv.handler.calls(), 4);
}

#[tokio::test]
async fn pipelined_requests_answered_in_order() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    let mut burst = rcpt("slow@x");
    burst.extend(rcpt("nouser@x"));
    burst.extend(rcpt("ok@x"));
    roundtrip(
        &mut c,
        &burst,
        b"action=OK\n\naction=550 5.1.1 no such user\n\naction=DUNNO\n\n",
    )
    .await;
}

#[tokio::test]
async fn split_reads() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    let req = rcpt("nouser@x");
    for chunk in req.chunks(7) {
        c.write_all(chunk).await.unwrap();
        c.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    expect(&mut c, NO_SUCH_USER).await;
    // Split exactly between the last attribute line and the empty line.
    let (head, tail) = req.split_at(req.len() - 1);
    c.write_all(head).await.unwrap();
    expect_silence(&mut c, 50).await;
    roundtrip(&mut c, tail, NO_SUCH_USER).await;
}

#[tokio::test]
async fn garbage_is_deferred_and_connection_stays_usable() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    roundtrip(
        &mut c,
        b"hello world\nrequest=smtpd_access_policy\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: line 1 is not name=value\n\n",
    )
    .await;
    roundtrip(
        &mut c,
        b"=x\nrequest=smtpd_access_policy\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: line 1 has an empty attribute name\n\n",
    )
    .await;
    roundtrip(
        &mut c,
        b"protocol_state=RCPT\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: no request attribute\n\n",
    )
    .await;
    roundtrip(
        &mut c,
        b"\n",
        b"action=DEFER_IF_PERMIT malformed policy request: no request attribute\n\n",
    )
    .await;
    roundtrip(
        &mut c,
        b"request=other\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: unsupported request type \"other\"\n\n",
    )
    .await;
    roundtrip(
        &mut c,
        b"request=smtpd_access_policy\nrecipient=a\nrecipient=b\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: attribute \"recipient\" appears more than once\n\n",
    )
    .await;
    roundtrip(
        &mut c,
        b"request=smtpd_access_policy\nx=a\0b\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: line 2 contains a NUL byte\n\n",
    )
    .await;
    roundtrip(&mut c, &rcpt("nouser@x"), NO_SUCH_USER).await;
    // Bad requests never reach the handler.
    assert_eq!(srv.handler.calls(), 1);
}

#[tokio::test]
async fn invalid_utf8_is_deferred() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    roundtrip(
        &mut c,
        b"request=smtpd_access_policy\nrecipient=caf\xe9@x\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: line 2 is not valid UTF-8\n\n",
    )
    .await;
    roundtrip(&mut c, &rcpt("ok@x"), DUNNO).await;
}

#[tokio::test]
async fn over_long_line_is_skipped_without_buffering() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    let mut req = b"request=smtpd_access_policy\nrecipient=".to_vec();
    req.extend(std::iter::repeat_n(b'a', 100_000));
    req.extend(b"@x\nprotocol_state=RCPT\n\n");
    roundtrip(
        &mut c,
        &req,
        b"action=DEFER_IF_PERMIT malformed policy request: attribute line longer than 8192 bytes\n\n",
    )
    .await;
    roundtrip(&mut c, &rcpt("nouser@x"), NO_SUCH_USER).await;
    // Exactly at the limit is fine.
    let at_limit = format!("x={}", "b".repeat(8190));
    let req = format!("request=smtpd_access_policy\n{at_limit}\n\n");
    roundtrip(&mut c, req.as_bytes(), DUNNO).await;
}

#[tokio::test]
async fn too_many_attributes() {
    let srv = TestServer::start_with(ServerOptions {
        limits: Limits {
            max_line: 64,
            max_attributes: 3,
        },
        ..ServerOptions::default()
    })
    .await;
    let mut c = srv.connect().await;
    roundtrip(
        &mut c,
        b"request=smtpd_access_policy\na=1\nb=2\nc=3\nd=4\n\n",
        b"action=DEFER_IF_PERMIT malformed policy request: more than 3 attributes\n\n",
    )
    .await;
    roundtrip(&mut c, b"request=smtpd_access_policy\na=1\nb=2\n\n", DUNNO).await;
}

#[tokio::test]
async fn flood_without_empty_line_closes() {
    let srv = TestServer::start_with(ServerOptions {
        max_request_bytes: 4096,
        ..ServerOptions::default()
    })
    .await;
    let mut c = srv.connect().await;
    // Short, individually valid lines that never end the request.
    let lines = "a=1\n".repeat(2000);
    let _ = c.write_all(lines.as_bytes()).await;
    expect_eof(&mut c).await;
    // One endless line.
    let mut c = srv.connect().await;
    let _ = c.write_all(&vec![b'x'; 20_000]).await;
    expect_eof(&mut c).await;
    // The server itself is fine.
    let mut c = srv.connect().await;
    roundtrip(&mut c, &rcpt("ok@x"), DUNNO).await;
}

#[tokio::test]
async fn missing_empty_line_at_eof_is_not_answered() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    let req = rcpt("nouser@x");
    c.write_all(&req[..req.len() - 1]).await.unwrap();
    c.shutdown().await.unwrap();
    expect_eof(&mut c).await;
    // Partial line at EOF.
    let mut c = srv.connect().await;
    c.write_all(b"request=smtpd_access_pol").await.unwrap();
    c.shutdown().await.unwrap();
    expect_eof(&mut c).await;
    assert_eq!(srv.handler.calls(), 0);
}

#[tokio::test]
async fn half_closed_connection_still_gets_its_reply() {
    let srv = TestServer::start().await;
    let mut c = srv.connect().await;
    let mut two = rcpt("slow@x");
    two.extend(rcpt("nouser@x"));
    c.write_all(&two).await.unwrap();
    c.shutdown().await.unwrap();
    expect(&mut c, b"action=OK\n\n").await;
    expect(&mut c, NO_SUCH_USER).await;
    expect_eof(&mut c).await;
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let srv = TestServer::start_with(ServerOptions {
        idle_timeout: Duration::from_millis(100),
        ..ServerOptions::default()
    })
    .await;
    let mut c = srv.connect().await;
    roundtrip(&mut c, &rcpt("ok@x"), DUNNO).await;
    expect_eof(&mut c).await;
    // Stalling mid-request counts as idle too.
    let mut c = srv.connect().await;
    c.write_all(b"request=smtpd_access_policy\n").await.unwrap();
    expect_eof(&mut c).await;
}

#[tokio::test]
async fn connection_limit_queues_extra_clients() {
    let srv = TestServer::start_with(ServerOptions {
        max_connections: 1,
        ..ServerOptions::default()
    })
    .await;
    let mut a = srv.connect().await;
    roundtrip(&mut a, &rcpt("ok@x"), DUNNO).await;
    let mut b = srv.connect().await;
    b.write_all(&rcpt("ok@x")).await.unwrap();
    expect_silence(&mut b, 100).await;
    drop(a);
    expect(&mut b, DUNNO).await;
}

#[tokio::test]
async fn shutdown_finishes_request_in_progress_and_closes_idle() {
    let mut srv = TestServer::start().await;
    let mut busy = srv.connect().await;
    let mut idle = srv.connect().await;
    roundtrip(&mut idle, &rcpt("ok@x"), DUNNO).await;
    busy.write_all(&rcpt("slow@x")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.begin_shutdown();
    expect_eof(&mut idle).await;
    expect(&mut busy, b"action=OK\n\n").await;
    expect_eof(&mut busy).await;
    srv.shutdown().await;
}
