//! Push notifications end to end: `messagenew` over the dict socket, the
//! durable queue, and POSTs to a local h2c gateway. Time only moves when a
//! test advances the injected clock.

mod common;

use common::*;

const ADDR: &str = "abcdefghi@example.org";
const OTHER: &str = "otheruser@example.org";

async fn register(server: &Server, addr: &str, tokens: &[&str]) {
    let mut c = server.client().await;
    for t in tokens {
        assert_eq!(c.set(addr, &devicetoken_key(), t).await, "O#\n");
    }
}

async fn message_for(server: &Server, addr: &str) {
    let mut c = server.client().await;
    assert_eq!(c.set(addr, &messagenew_key(), "").await, "O#\n");
}

/// [`started`] with the one token `tok` registered for [`ADDR`], which the
/// gateway answers with `statuses` first, and a message for ADDR.
async fn tok_notified(statuses: &[u16]) -> (World, Gateway, Server) {
    let (world, gateway, server) = started(ADDR).await;
    gateway.script("tok", statuses);
    register(&server, ADDR, &["tok"]).await;
    message_for(&server, ADDR).await;
    (world, gateway, server)
}

async fn wait_queue_empty(server: &Server) {
    wait_for("the queue to drain", || server.queued().is_empty()).await;
}

/// Waits until the only row has `attempts` failures recorded.
async fn wait_attempts(server: &Server, attempts: i64) -> i64 {
    let mut next = 0;
    wait_for(&format!("{attempts} recorded attempts"), || {
        match server.queued().as_slice() {
            [(_, _, a, n)] if *a == attempts => {
                next = *n;
                true
            }
            _ => false,
        }
    })
    .await;
    next
}

#[tokio::test]
async fn a_cleartext_gateway_gets_http1_by_default() {
    let world = World::new();
    world.account(ADDR);
    let gateway = Gateway::start().await;
    let mut options = world.options(&gateway);
    options.push_h2c = false;
    let server = world.start(options).await;
    register(&server, ADDR, &["tok-a", "gone-b"]).await;
    gateway.script("gone-b", &[410]);
    gateway.script("tok-a", &[500]);
    message_for(&server, ADDR).await;
    gateway.wait_count("gone-b", 1).await;
    // 500 is retried (after the back-off), 410 removes the token.
    let next = wait_attempts(&server, 1).await;
    server.clock.set(next);
    gateway.wait_count("tok-a", 2).await;
    wait_queue_empty(&server).await;
    assert_eq!(gateway.versions(), ["HTTP/1.1".to_owned()].into());
    assert_eq!(world.token_names_on_disk(ADDR), ["tok-a"]);
    server.shutdown().await;
}

/// A minimal HTTP/1.1 server written by hand (no HTTP library): one
/// request per connection, `Connection: close`, answers 200.
#[tokio::test]
async fn a_plain_http1_gateway_receives_the_token() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let world = World::new();
    world.account(ADDR);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify?key=1", listener.local_addr().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let request = loop {
                let n = stream.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if body.len() >= len || n == 0 {
                        break text;
                    }
                }
            };
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let _ = tx.send(request);
        }
    });
    let gateway = Gateway::start().await;
    let mut options = world.options(&gateway);
    options.push_url = url;
    options.push_h2c = false;
    let server = world.start(options).await;
    register(&server, ADDR, &["tok-plain"]).await;
    message_for(&server, ADDR).await;
    let request = tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("a POST within the patience")
        .unwrap();
    assert!(
        request.starts_with("POST /notify?key=1 HTTP/1.1\r\n"),
        "{request:?}"
    );
    assert!(request.ends_with("\r\n\r\ntok-plain"), "{request:?}");
    wait_queue_empty(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn messagenew_posts_each_token_over_http2() {
    let (world, gateway, server) = started(ADDR).await;
    register(&server, ADDR, &["tok-a", "tok-b"]).await;
    message_for(&server, ADDR).await;
    gateway.wait_count("tok-a", 1).await;
    gateway.wait_count("tok-b", 1).await;
    wait_queue_empty(&server).await;
    assert_eq!(gateway.versions(), ["HTTP/2.0".to_owned()].into());
    // Delivered tokens stay registered.
    assert_eq!(world.tokens_on_disk(ADDR).len(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn gone_410_removes_the_token() {
    let (world, gateway, server) = started(ADDR).await;
    gateway.script("dead", &[410]);
    register(&server, ADDR, &["dead", "alive"]).await;
    message_for(&server, ADDR).await;
    gateway.wait_count("dead", 1).await;
    gateway.wait_count("alive", 1).await;
    wait_queue_empty(&server).await;
    assert_eq!(world.tokens_on_disk(ADDR), [("alive".to_owned(), T0)]);
    let mut c = server.client().await;
    assert_eq!(c.lookup(&devicetoken_key(), ADDR).await, "Oalive\n");
    server.shutdown().await;
}

#[tokio::test]
async fn failure_is_retried_after_8_s_on_the_same_connection() {
    let (world, gateway, server) = tok_notified(&[500]).await;
    gateway.wait_count("tok", 1).await;
    assert_eq!(wait_attempts(&server, 1).await, T0 + 8);
    world.clock.advance(8);
    gateway.wait_count("tok", 2).await;
    wait_queue_empty(&server).await;
    assert_eq!(gateway.count("tok"), 2);
    assert_eq!(gateway.connections(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn gives_up_after_five_attempts() {
    let (world, gateway, server) = tok_notified(&[500, 502, 503, 429, 404]).await;
    let mut now = T0;
    for n in 1..=4 {
        gateway.wait_count("tok", n).await;
        let next = wait_attempts(&server, n as i64).await;
        let delay = 8i64.pow(n as u32);
        assert_eq!(next, now + delay, "after failure {n}");
        world.clock.advance(delay);
        now += delay;
    }
    gateway.wait_count("tok", 5).await;
    wait_queue_empty(&server).await;
    assert_eq!(gateway.count("tok"), 5);
    // Failures never unregister a token.
    assert_eq!(world.tokens_on_disk(ADDR).len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn gives_up_5_hours_after_queuing() {
    let (world, gateway, server) = tok_notified(&[500]).await;
    gateway.wait_count("tok", 1).await;
    wait_attempts(&server, 1).await;
    // As if the relay had been down for 6 hours.
    world.clock.advance(6 * 3600);
    wait_queue_empty(&server).await;
    assert_eq!(gateway.count("tok"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn messagenew_is_coalesced_until_the_post_starts() {
    let world = World::new();
    world.account(ADDR);
    world.account(OTHER);
    let gateway = Gateway::start().await;
    let mut options = world.options(&gateway);
    options.max_in_flight = 1;
    let server = world.start(options).await;
    register(&server, OTHER, &["blocker"]).await;
    register(&server, ADDR, &["tok"]).await;

    // Occupy the only slot, so "tok" cannot start.
    gateway.hold("blocker");
    message_for(&server, OTHER).await;
    gateway.wait_count("blocker", 1).await;

    message_for(&server, ADDR).await;
    message_for(&server, ADDR).await;
    message_for(&server, ADDR).await;
    let waiting: Vec<_> = server
        .queued()
        .into_iter()
        .filter(|(_, t, _, _)| t == "tok")
        .collect();
    assert_eq!(waiting.len(), 1);

    gateway.release("blocker");
    gateway.wait_count("tok", 1).await;
    wait_queue_empty(&server).await;
    assert_eq!(gateway.count("tok"), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn queued_notifications_survive_a_restart() {
    let world = World::new();
    world.account(ADDR);
    let down = Gateway::start().await;
    down.hold("tok");
    let server = world.start(world.options(&down)).await;
    register(&server, ADDR, &["tok"]).await;
    message_for(&server, ADDR).await;
    // Stopped while the POST is in flight and unanswered.
    down.wait_count("tok", 1).await;
    server.shutdown().await;
    assert_eq!(queued(&world.queue_db()).len(), 1);

    let up = Gateway::start().await;
    let server = world.start(world.options(&up)).await;
    up.wait_count("tok", 1).await;
    wait_queue_empty(&server).await;
    server.shutdown().await;
    drop(down);
}

#[tokio::test]
async fn retry_state_survives_a_restart() {
    let (world, gateway, server) = tok_notified(&[500, 500]).await;
    gateway.wait_count("tok", 1).await;
    wait_attempts(&server, 1).await;
    server.shutdown().await;

    let server = world.start(world.options(&gateway)).await;
    // Not due before its time, even after a restart: the row keeps its
    // attempt count and due time.
    assert_eq!(server.queued()[0].2, 1);
    world.clock.advance(8);
    gateway.wait_count("tok", 2).await;
    assert_eq!(wait_attempts(&server, 2).await, T0 + 8 + 64);
    world.clock.advance(64);
    gateway.wait_count("tok", 3).await;
    wait_queue_empty(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn chatmaild_queue_files_are_imported_once() {
    let world = World::new();
    world.account(ADDR);
    let dir = world.config.mailboxes_dir.join("pending_notifications");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("0a1b2c3d4e5f"),
        format!("{ADDR}\n{T0}\nlegacy-tok"),
    )
    .unwrap();
    std::fs::write(dir.join("99aa.tmp"), format!("{ADDR}\n{T0}\nhalf")).unwrap();
    std::fs::write(dir.join("ffee"), "garbage").unwrap();
    // Older than 5 hours: given up rather than sent.
    std::fs::write(
        dir.join("dd00"),
        format!("{ADDR}\n{}\nstale-tok", T0 - 6 * 3600),
    )
    .unwrap();

    let gateway = Gateway::start().await;
    let server = world.start(world.options(&gateway)).await;
    gateway.wait_count("legacy-tok", 1).await;
    wait_queue_empty(&server).await;
    assert!(!dir.exists());
    assert_eq!(gateway.bodies(), ["legacy-tok"]);
    server.shutdown().await;
}
