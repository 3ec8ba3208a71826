//! The memory budget seen from Postfix's side of the socket: concurrent
//! large messages all decided as without a budget while the bytes held stay
//! within it, reservations returned on ABORT and on a vanished connection,
//! and a message that waits too long for memory gets a temporary failure,
//! never an accept.

mod common;

use std::time::{Duration, Instant};

use chatmail_milter::budget::{Limits, Meter};
use common::*;
use indymilter_test::{MacroStage, Status};

const E2EE: &str = "523 5.7.1 Encryption Needed: Invalid Unencrypted Mail";
const BUSY: &str = "451 4.3.1 Insufficient system resources to check the message, try again later";
const TEMPFAIL: &str = "451 4.3.0 Temporary failure of the encryption check, try again later";
const KIB: usize = 1024;
/// The one header field of the messages built by hand.
const SUBJECT: (&str, &str) = ("Subject", "x");

#[tokio::test]
async fn concurrent_large_messages_are_decided_within_the_budget() {
    const SIZE: usize = 150_000;
    const MAX: usize = 200_000;
    // Room for two messages that declare their size; those that do not
    // start with a block for 50 kB and grow, through the lane when the
    // large pool is taken.
    let limits = Limits {
        allowance: 16 * KIB,
        small: 64 * KIB,
        large: 1000 * KIB,
        first_block: Meter::cost_of_size(50_000),
        lane: Meter::cost_of_size(MAX),
        wait: Duration::from_secs(60),
    };
    let m = Milter::start_limited(|c| c.max_message_size = MAX as u64, Some(limits)).await;
    let encrypted = encrypted_of_size(SIZE);
    let clear = cleartext_of_size(SIZE);
    assert!(encrypted.len() > SIZE - 1000 && clear.len() > SIZE - 1000);
    let mut tasks = Vec::new();
    for i in 0..12 {
        let mut conn = m.connect().await;
        let (raw, want) = if i % 2 == 0 {
            (encrypted.clone(), Status::Accept)
        } else {
            (clear.clone(), rejected(E2EE))
        };
        // Every third message declares no SIZE= and takes a whole block.
        let size = (i % 3 != 0).then_some(raw.len());
        tasks.push(tokio::spawn(async move {
            let env = if i % 4 < 2 {
                outgoing(&[REMOTE])
            } else {
                incoming(REMOTE, &[STRICT])
            };
            envelope_sized(&mut conn, &env, size).await;
            let s = content(&mut conn, &raw).await;
            conn.close().await.unwrap();
            (i, s, want)
        }));
    }
    for t in tasks {
        let (i, got, want) = t.await.unwrap();
        assert_eq!(got, want, "message {i}");
    }
    let b = m.budget();
    // The budget was used, and never beyond its size.
    assert!(b.peak() >= Meter::cost_of_size(SIZE), "peak {}", b.peak());
    assert!(
        b.peak() <= limits.total(),
        "peak {} over {}",
        b.peak(),
        limits.total()
    );
    assert_eq!(budget_returned(&m).await, 0);
    m.stop().await;
}

/// One message through its body, not ended; with `size` as `SIZE=`.
async fn half_message(
    m: &Milter,
    size: Option<usize>,
    body: usize,
) -> indymilter_test::TestConnection {
    let mut conn = m.connect().await;
    through_header(&mut conn, &incoming(REMOTE, &[STRICT]), size, SUBJECT).await;
    assert_eq!(conn.body(vec![b'x'; body]).await.unwrap(), Status::Continue);
    conn
}

#[tokio::test]
async fn abort_and_vanished_connections_return_their_memory() {
    let limits = Limits {
        allowance: 16 * KIB,
        small: 64 * KIB,
        large: 4 * 1024 * KIB,
        first_block: Meter::cost_of_size(200_000),
        lane: Meter::cost_of_size(1_000_000),
        wait: Duration::from_secs(5),
    };
    let m = Milter::start_limited(|c| c.max_message_size = 1_000_000, Some(limits)).await;
    let b = m.budget();

    // ABORT (RSET, or Postfix giving up on the message).
    let mut conn = half_message(&m, None, 100_000).await;
    assert!(b.in_use() >= Meter::cost_of_size(100_000));
    conn.abort().await.unwrap();
    assert_eq!(budget_returned(&m).await, 0);
    // The connection carries on with a message that fits its allowance.
    let s = mail(&mut conn, outgoing(&[REMOTE]), "encrypted-v4-seipdv1").await;
    assert_eq!(s, Status::Accept);
    assert_eq!(budget_returned(&m).await, 0);

    // The connection drops in the middle of the body, and in the headers.
    let conn = half_message(&m, Some(300_000), 100_000).await;
    assert!(b.in_use() >= Meter::cost_of_size(300_000));
    drop(conn);
    assert_eq!(budget_returned(&m).await, 0);
    let mut conn = m.connect().await;
    envelope(&mut conn, &incoming(REMOTE, &[STRICT])).await;
    assert_eq!(conn.header("Subject", "x").await.unwrap(), Status::Continue);
    assert!(b.in_use() > 0);
    drop(conn);
    assert_eq!(budget_returned(&m).await, 0);

    // A message refused for its size returns its memory at once.
    let mut conn = half_message(&m, None, 900_000).await;
    assert_eq!(
        conn.body(vec![b'x'; 200_000]).await.unwrap(),
        rejected("552 5.3.4 Message size exceeds fixed limit")
    );
    assert_eq!(b.in_use(), 0);
    conn.abort().await.unwrap();
    conn.close().await.unwrap();
    assert!(b.peak() <= limits.total());
    m.stop().await;
}

/// Room for two first blocks in the large pool.
fn tight_limits(wait: Duration) -> Limits {
    Limits {
        allowance: 96 * KIB,
        small: 4 * 96 * KIB,
        large: 2 * 160 * KIB,
        first_block: 256 * KIB,
        lane: Meter::cost_of_size(300_000),
        wait,
    }
}

#[tokio::test]
async fn a_message_waiting_for_memory_is_never_accepted() {
    let limits = tight_limits(Duration::from_secs(1));
    let m = Milter::start_limited(|c| c.max_message_size = 300_000, Some(limits)).await;
    let b = m.budget();
    // Two messages take the large pool.
    let mut holder = half_message(&m, None, 50_000).await;
    let mut other = half_message(&m, None, 50_000).await;
    assert_eq!(b.in_use(), 2 * limits.first_block);

    // Fits its allowance: not held up.
    let mut small = m.connect().await;
    let s = mail(&mut small, incoming(REMOTE, &[STRICT]), "cleartext").await;
    assert_eq!(s, rejected(E2EE));

    // Needs a block: waits, then a temporary failure, not an accept.
    let mut waiter = m.connect().await;
    through_header(&mut waiter, &incoming(REMOTE, &[OPEN]), None, SUBJECT).await;
    let t = Instant::now();
    assert_eq!(
        waiter.body(vec![b'x'; 40_000]).await.unwrap(),
        tempfailed(BUSY)
    );
    assert!(t.elapsed() >= limits.wait, "{:?}", t.elapsed());
    // Postfix ends the message there.
    waiter.abort().await.unwrap();

    // One that gives up while waiting holds nothing afterwards.
    let mut quitter = m.connect().await;
    through_header(&mut quitter, &incoming(REMOTE, &[OPEN]), None, SUBJECT).await;
    let quit = tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_millis(200), quitter.body(vec![b'x'; 40_000]))
            .await;
        drop(quitter);
    });
    quit.await.unwrap();

    // A holder outgrows its block with the large pool taken: it goes on
    // through the lane, and its message is decided as ever.
    assert_eq!(
        holder.body(vec![b'x'; 50_000]).await.unwrap(),
        Status::Continue
    );
    assert!(b.in_use() >= 2 * limits.first_block + limits.lane);
    holder
        .macros(MacroStage::Eom, [("i", "4XyZ1234")])
        .await
        .unwrap();
    assert_eq!(holder.eom().await.unwrap().1, rejected(E2EE));
    other.abort().await.unwrap();
    assert_eq!(budget_returned(&m).await, 0);
    // The waiter's connection is usable again.
    let s = message(
        &mut waiter,
        &incoming(REMOTE, &[OPEN]),
        &cleartext_of_size(100_000),
    )
    .await;
    assert_eq!(s, Status::Accept);
    assert_eq!(budget_returned(&m).await, 0);
    assert!(b.peak() <= limits.total());
    m.stop().await;
}

#[tokio::test]
async fn shutdown_ends_a_wait_with_a_temporary_failure() {
    let limits = tight_limits(Duration::from_secs(60));
    let m = Milter::start_limited(|c| c.max_message_size = 300_000, Some(limits)).await;
    let holder = half_message(&m, None, 50_000).await;
    let other = half_message(&m, None, 50_000).await;
    let mut waiter = m.connect().await;
    through_header(&mut waiter, &incoming(REMOTE, &[OPEN]), None, SUBJECT).await;
    let waiting = tokio::spawn(async move { waiter.body(vec![b'x'; 40_000]).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished());
    // The milter stops long before the 60 s wait would end, and the
    // waiting message is deferred, not accepted.
    let t = Instant::now();
    let stop = tokio::spawn(m.stop());
    assert_eq!(waiting.await.unwrap(), tempfailed(TEMPFAIL));
    drop((holder, other));
    stop.await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}
