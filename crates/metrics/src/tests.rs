use std::time::Instant;

use chatmail_e2ee::{AcceptReason, Direction, Reply, Verdict};
use postfix_policy::{Action, ProtocolState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn leak(on: bool) -> &'static Metrics {
    Box::leak(Box::new(Metrics::new(on)))
}

fn render(m: &'static Metrics, daemon: Daemon) -> String {
    server::Endpoint::new(m, daemon, Vec::new()).render()
}

/// The sample lines of `text` that start with `prefix`.
fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut v: Vec<_> = text.lines().filter(|l| l.starts_with(prefix)).collect();
    v.sort_unstable();
    v
}

const TOO_BIG: Reply = Reply {
    code: 552,
    enhanced: "5.3.4",
    text: "Message size exceeds fixed limit",
};
const TEMPFAIL: Reply = Reply {
    code: 451,
    enhanced: "4.3.0",
    text: "try again later",
};

#[test]
fn milter_verdicts_land_in_their_series() {
    let m = leak(true);
    let now = Instant::now();
    let encrypted = Verdict::Accept(AcceptReason::Encrypted);
    let cleartext = Verdict::Reject(chatmail_e2ee::ENCRYPTION_NEEDED);
    let mismatch = Verdict::Reject(chatmail_e2ee::FROM_MISMATCH);
    m.milter.decided(Direction::Outgoing, Some(&encrypted), now);
    m.milter.decided(Direction::Outgoing, Some(&encrypted), now);
    m.milter.decided(Direction::Incoming, Some(&cleartext), now);
    m.milter.decided(Direction::Outgoing, Some(&mismatch), now);
    m.milter.decided(Direction::Incoming, None, now);
    m.milter.refused_early(TOO_BIG);
    m.milter.refused_early(TEMPFAIL);
    m.milter.abandoned(Direction::Incoming, now);
    let text = render(m, Daemon::Milter);
    let nonzero: Vec<_> = lines(&text, "chatmail_milter_messages_total")
        .into_iter()
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert_eq!(
        nonzero,
        [
            r#"chatmail_milter_messages_total{direction="incoming",verdict="abandoned"} 1"#,
            r#"chatmail_milter_messages_total{direction="incoming",verdict="refused_cleartext"} 1"#,
            r#"chatmail_milter_messages_total{direction="incoming",verdict="tempfail"} 1"#,
            r#"chatmail_milter_messages_total{direction="outgoing",verdict="encrypted"} 2"#,
            r#"chatmail_milter_messages_total{direction="outgoing",verdict="refused_from_mismatch"} 1"#,
            r#"chatmail_milter_messages_total{direction="unknown",verdict="tempfail"} 1"#,
            r#"chatmail_milter_messages_total{direction="unknown",verdict="too_big"} 1"#,
        ]
    );
    assert_eq!(
        lines(&text, "chatmail_milter_decision_seconds_count"),
        ["chatmail_milter_decision_seconds_count 6"]
    );
    // 26 verdict series of known direction, 3 before a verdict.
    assert_eq!(lines(&text, "chatmail_milter_messages_total").len(), 29);
}

#[test]
fn policy_answers_and_auth_rules() {
    let m = leak(true);
    m.policy.answered(
        Some(ProtocolState::Rcpt),
        &Action::DeferIfPermit("x".into()),
    );
    m.policy.answered(None, &Action::Dunno);
    m.policy.rate_limited();
    m.auth.refused("disk");
    m.auth.refused("a rule added later");
    m.auth.created(Instant::now());
    let text = render(m, Daemon::Policy);
    let nonzero: Vec<_> = lines(&text, "chatmail_policy_")
        .into_iter()
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert_eq!(
        nonzero,
        [
            r#"chatmail_policy_rate_limited_total 1"#,
            r#"chatmail_policy_requests_total{state="none",answer="dunno"} 1"#,
            r#"chatmail_policy_requests_total{state="rcpt",answer="defer_if_permit"} 1"#,
        ]
    );
    let text = render(m, Daemon::Auth);
    let nonzero: Vec<_> = lines(&text, "chatmail_auth_")
        .into_iter()
        .filter(|l| !l.ends_with(" 0") && !l.contains("seconds"))
        .collect();
    assert_eq!(
        nonzero,
        [
            r#"chatmail_auth_lookups_total{result="created"} 1"#,
            r#"chatmail_auth_lookups_total{result="refused"} 2"#,
            r#"chatmail_auth_refusals_total{rule="disk"} 1"#,
            r#"chatmail_auth_refusals_total{rule="other"} 1"#,
        ]
    );
    // Only the daemon's own families are on its page.
    assert!(!text.contains("chatmail_policy_"));
    assert!(text.contains(r#"chatmail_build_info{daemon="auth",version=""#));
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn metrics_off_record_nothing() {
    let m = leak(false);
    m.auth.found();
    m.metadata.posted(Some(200));
    m.metadata.queued(3);
    m.lastlogin.committed(true);
    for daemon in Daemon::ALL {
        let text = render(m, daemon);
        for l in text
            .lines()
            .filter(|l| l.starts_with("chatmail_") && !l.contains("_info"))
        {
            assert!(l.ends_with(" 0") || l.ends_with(" 0.0"), "{l}");
        }
    }
}

async fn exchange(port: u16, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn the_endpoint_answers_get_metrics_only() {
    let m = leak(true);
    m.lastlogin.updated();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let endpoint = server::Endpoint::new(m, Daemon::Lastlogin, Vec::new());
    tokio::spawn(server::serve(listener, endpoint));

    let ok = exchange(
        port,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = ok.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(
            "\r\ncontent-type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n"
        ),
        "{head}"
    );
    assert!(
        body.contains("\nchatmail_lastlogin_updates_total 1\n"),
        "{body}"
    );
    assert!(body.ends_with("# EOF\n"));

    let other = exchange(
        port,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
    assert!(
        other.ends_with("\r\n\r\nnot found: the metrics are at /metrics\n"),
        "{other}"
    );
    let post = exchange(
        port,
        b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{post}"
    );
    assert!(post.contains("\r\nallow: GET, HEAD\r\n"), "{post}");
    let garbage = exchange(port, b"\x00\x01\x02\r\n\r\n").await;
    assert!(
        garbage.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{garbage}"
    );
}

/// One scrape: connect, request, read the whole answer; how long it took.
async fn scrape(port: u16) -> (std::time::Duration, String) {
    let started = Instant::now();
    let text = exchange(
        port,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    (started.elapsed(), text)
}

#[tokio::test]
async fn slow_clients_cannot_starve_a_scrape() {
    use std::time::Duration;
    assert!(server::HEADER_TIMEOUT < server::SCRAPE_TIMEOUT);
    assert!(server::CONNECTION_LIFETIME < server::SCRAPE_TIMEOUT);
    let m = leak(true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(server::serve(
        listener,
        server::Endpoint::new(m, Daemon::Milter, Vec::new()),
    ));
    // 100 clients that start a request, send a byte now and then, and
    // reconnect as soon as they are dropped; 20 that send requests and
    // never read the answers.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut flood = Vec::new();
    for i in 0..120 {
        let stop = std::sync::Arc::clone(&stop);
        flood.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                    continue;
                };
                if i < 100 {
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n").await;
                    while s.write_all(b"X").await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        let mut b = [0u8; 1];
                        // Closed by the server: the read ends.
                        if let Ok(Ok(0) | Err(_)) =
                            tokio::time::timeout(Duration::from_millis(1), s.read(&mut b)).await
                        {
                            break;
                        }
                    }
                } else {
                    let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2000);
                    let _ = s.write_all(&req).await;
                    let mut b = [0u8; 1];
                    let _ = s.read(&mut b).await;
                    // Holds the connection, reading nothing more.
                    let mut rest = Vec::new();
                    let _ = s.read_to_end(&mut rest).await;
                }
            }
        }));
    }
    // Let the flood take every slot and fill the queue.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut took = Vec::new();
    for _ in 0..3 {
        let (t, text) = tokio::time::timeout(server::SCRAPE_TIMEOUT, scrape(port))
            .await
            .expect("a scrape failed under the flood");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
        took.push(t);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        f.abort();
    }
    eprintln!("scrapes under a flood of 120 slow clients took {took:?}");
}
