//! A message waiting for memory whose Postfix goes away stops waiting at
//! once: its budget is returned and its connection released long before
//! the wait would have ended. A test binary of its own: it reads the
//! process-wide open-connections count.

mod common;

use std::time::{Duration, Instant};

use chatmail_milter::budget::{Limits, Meter};
use common::*;

const KIB: usize = 1024;

#[tokio::test]
async fn a_message_waiting_for_memory_stops_when_postfix_goes() {
    // Room for two first blocks; a third message waits up to 60 s.
    let limits = Limits {
        allowance: 96 * KIB,
        small: 4 * 96 * KIB,
        large: 2 * 160 * KIB,
        first_block: 256 * KIB,
        lane: Meter::cost_of_size(300_000),
        wait: Duration::from_secs(60),
    };
    let m = Milter::start_limited(|c| c.max_message_size = 300_000, Some(limits)).await;
    let b = m.budget();
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut c = m.connect().await;
        through_header(&mut c, &incoming(REMOTE, &[OPEN]), None, ("Subject", "x")).await;
        assert_eq!(
            c.body(vec![b'x'; 50_000]).await.unwrap(),
            indymilter_test::Status::Continue
        );
        holders.push(c);
    }
    let held = b.in_use();
    assert_eq!(held, 2 * limits.first_block);
    let mut waiter = m.connect().await;
    through_header(
        &mut waiter,
        &incoming(REMOTE, &[OPEN]),
        None,
        ("Subject", "x"),
    )
    .await;
    let with_waiter = b.in_use();
    let open = chatmail_net::open_connections();
    assert_eq!(open, 3);
    // The body needs a block: it waits, and Postfix gives up on it.
    let waited =
        tokio::time::timeout(Duration::from_millis(300), waiter.body(vec![b'x'; 40_000])).await;
    assert!(waited.is_err(), "the body did not wait");
    drop(waiter);
    let t = Instant::now();
    while chatmail_net::open_connections() > 2 || b.in_use() > held {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "still {} connections, {} bytes held (waiter had {})",
            chatmail_net::open_connections(),
            b.in_use(),
            with_waiter - held
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(holders);
    m.stop().await;
}
