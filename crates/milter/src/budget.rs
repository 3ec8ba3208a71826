//! The milter's memory budget: every byte a message in progress holds, and
//! every byte its decision will need at end of message, is drawn from one
//! process-wide budget, so the daemon's memory is bounded whatever the
//! number and size of concurrent messages (docs/milter-memory.md).
//!
//! # Why a budget and not a streaming check
//!
//! The rules of `chatmail_e2ee` (and DKIM verification) work on the whole
//! message; re-implementing them as a stream would be a second, divergent
//! copy of the rules. So messages stay buffered, and what is bounded is how
//! many bytes all of them may buffer and decide on at once. A message that
//! finds no budget waits: its callback does not return, indymilter reads
//! nothing more from that connection (it awaits each callback before
//! reading the next packet), Postfix's writes block, and Postfix's
//! `milter_content_timeout` turns a long wait into its
//! `milter_default_action = tempfail`. We also give up ourselves after
//! [`Limits::wait`] with a temporary failure. Nothing is ever accepted
//! unchecked.
//!
//! # Three pools, no wait that can close a circle
//!
//! A wait while holding part of the budget can deadlock: many messages each
//! holding a slice, each waiting for more. So every wait is for something
//! whose holders never wait on the waiter:
//!
//! 1. at its first header a message takes an *allowance* ([`Limits::allowance`],
//!    256 KiB: every chat message, Secure-Join request and key fits) from
//!    the small pool, holding nothing else while it waits;
//! 2. when it outgrows the allowance, it takes one *block* from the large
//!    pool at once, waiting while it holds only its allowance (from the
//!    other pool): sized for the whole message when the client declared a
//!    size with `SIZE=` in MAIL FROM (RFC 1870) and that fits half the
//!    large pool, else [`Limits::first_block`] (the cost of a 1 MiB
//!    message: chat messages with images stay within it);
//! 3. when it outgrows its block, it grows it only if the large pool has
//!    the bytes free right now; else it waits for the *lane*, which one
//!    message at a time holds, together with the whole lane pool
//!    ([`Limits::lane`], the cost of a `max_message_size` message). The
//!    lane pool is nobody else's, so the lane holder never waits for
//!    memory: it runs to its end and passes the lane on (FIFO).
//!
//! Holders of allowances and blocks wait only for blocks (whose holders
//! never wait for an allowance) or for the lane (whose holder never waits
//! at all), so every wait ends. A message that would cost more than its
//! allowance, a full large pool and the lane pool together is refused with
//! [`TOO_COSTLY`]; one that waits longer than [`Limits::wait`] gets
//! [`BUSY`].
//!
//! # What a message costs
//!
//! [`Meter`] estimates, as the bytes arrive, what the buffered message plus
//! its decision will occupy: the raw message, plus one and a half times its
//! size for the decoded copies the decision makes (one decode of a MIME
//! part by the parser, then the dearmored OpenPGP data of the payload),
//! plus per-item costs for what makes the MIME parser allocate: structure
//! (a line starting with `-`, and each of `: , ; < (`; each may become a
//! header, a part, an address or a parameter, which cost up to ~700 bytes
//! each when measured on hostile input), folded lines (a line starting
//! with a space or tab), `?` (encoded words), and bytes above 0x7f (a
//! charset decode can triple them). Base64 and armored data
//! contain none of these characters, so an encrypted message costs 2.5
//! times its size and nothing more, while a message built to make the
//! parser allocate 40 times its size is charged for it, and refused when
//! it could never fit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chatmail_e2ee::Reply;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::TEMPFAIL;

/// The message would need more memory to decide on than the whole budget:
/// resending the same message cannot help.
pub const TOO_COSTLY: Reply = Reply::new(552, "5.3.4", "Message too large or too complex to check");

/// No memory free right now for a message that outgrew its reservation, or
/// the wait for it took too long: the client retries later.
pub const BUSY: Reply = Reply::new(
    451,
    "4.3.1",
    "Insufficient system resources to check the message, try again later",
);

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// Bytes per semaphore permit: permits are counted in KiB so a budget of
/// any realistic size fits the `u32` that tokio's semaphore takes.
const UNIT: usize = KIB;

/// The sizes of the budget. [`Limits::for_max_message_size`] is what the
/// daemon uses; tests make them small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// What each message may hold without a block.
    pub allowance: usize,
    /// The pool allowances come from: `small / allowance` messages in
    /// progress at once, the others wait at their first header.
    pub small: usize,
    /// The pool blocks come from.
    pub large: usize,
    /// The block of a message without a usable `SIZE=`.
    pub first_block: usize,
    /// The pool of the lane: what one message may take beyond its block.
    pub lane: usize,
    /// How long a message waits for budget before a temporary failure;
    /// below Postfix's `milter_content_timeout` (300 s by default), so the
    /// answer is ours and logged.
    pub wait: Duration,
}

/// The allowance: a Delta Chat message with its Autocrypt key is a few
/// KiB, a Secure-Join request less, and their headers and MIME structure
/// are charged up to ~100 KiB by the cost model.
pub const ALLOWANCE: usize = 256 * KIB;
/// 32 messages in progress before one waits at its first header.
pub const SMALL_POOL: usize = 8 * MIB;
/// Six first blocks, or messages that declare up to ~3 MB, at once.
pub const LARGE_POOL: usize = 16 * MIB;
/// The message size a first block is for.
pub const FIRST_BLOCK_SIZE: usize = MIB;
/// How long a message waits for budget.
pub const WAIT: Duration = Duration::from_secs(240);

impl Limits {
    /// The daemon's limits: the lane pool fits one message of
    /// `max_message_size` (75 MiB at chatmaild's default 30 MiB); with the
    /// other pools and the daemon's own ~10 MiB, the process stays under
    /// 128 MiB.
    pub fn for_max_message_size(max_message_size: usize) -> Limits {
        Limits {
            allowance: ALLOWANCE,
            small: SMALL_POOL,
            large: LARGE_POOL,
            first_block: Meter::cost_of_size(FIRST_BLOCK_SIZE),
            lane: Meter::cost_of_size(max_message_size),
            wait: WAIT,
        }
    }

    /// The most the budget can hold: all three pools.
    pub fn total(&self) -> usize {
        self.small + self.large + self.lane
    }
}

/// The process-wide budget, shared by all connections.
#[derive(Debug)]
pub struct Budget {
    limits: Limits,
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
    /// One permit: the right to the lane pool.
    lane: Arc<Semaphore>,
    lane_pool: Arc<Semaphore>,
    gauge: Arc<Gauge>,
}

/// Bytes held from the budget now and at most so far.
#[derive(Debug, Default)]
struct Gauge {
    in_use: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn add(&self, bytes: usize) {
        let now = self.in_use.fetch_add(bytes, Ordering::AcqRel) + bytes;
        self.peak.fetch_max(now, Ordering::AcqRel);
    }
    fn sub(&self, bytes: usize) {
        self.in_use.fetch_sub(bytes, Ordering::AcqRel);
    }
}

fn units(bytes: usize) -> usize {
    bytes.div_ceil(UNIT)
}

fn permits(bytes: usize) -> u32 {
    u32::try_from(units(bytes)).unwrap_or(u32::MAX)
}

impl Budget {
    /// A budget of these sizes, nothing held.
    pub fn new(limits: Limits) -> Budget {
        // The allowance must come from the small pool, and a block must be
        // able to hold at least what an allowance does.
        let large = limits.large.max(limits.allowance).max(UNIT);
        let limits = Limits {
            allowance: limits.allowance.clamp(UNIT, limits.small.max(UNIT)),
            small: limits.small.max(UNIT),
            large,
            first_block: limits.first_block.clamp(UNIT, large),
            lane: limits.lane.max(UNIT),
            wait: limits.wait,
        };
        Budget {
            small: Arc::new(Semaphore::new(units(limits.small))),
            large: Arc::new(Semaphore::new(units(limits.large))),
            lane: Arc::new(Semaphore::new(1)),
            lane_pool: Arc::new(Semaphore::new(units(limits.lane))),
            gauge: Arc::new(Gauge::default()),
            limits,
        }
    }

    /// The sizes in effect.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes held by messages now.
    pub fn in_use(&self) -> usize {
        self.gauge.in_use.load(Ordering::Acquire)
    }

    /// The most bytes held at once since start.
    pub fn peak(&self) -> usize {
        self.gauge.peak.load(Ordering::Acquire)
    }

    /// Refuses all waiting and future requests with a temporary failure
    /// (at shutdown); what is held stays held until returned.
    pub fn close(&self) {
        self.small.close();
        self.large.close();
        self.lane.close();
    }

    /// Takes a message's allowance, waiting (holding nothing) until one is
    /// free.
    ///
    /// # Errors
    /// [`BUSY`] after [`Limits::wait`].
    pub async fn allowance(&self) -> Result<Reservation, Reply> {
        let acquire = Arc::clone(&self.small).acquire_many_owned(permits(self.limits.allowance));
        let permit = match tokio::time::timeout(self.limits.wait, acquire).await {
            Ok(Ok(p)) => p,
            Ok(Err(_closed)) => return Err(TEMPFAIL),
            Err(_elapsed) => return Err(BUSY),
        };
        let bytes = units(self.limits.allowance) * UNIT;
        self.gauge.add(bytes);
        Ok(Reservation {
            small: Some(permit),
            large: None,
            lane_pool: None,
            lane: None,
            small_bytes: bytes,
            large_bytes: 0,
            lane_bytes: 0,
            gauge: Arc::clone(&self.gauge),
        })
    }

    /// Makes `r` hold at least `need` bytes; `declared` is the expected
    /// cost of the whole message when the client declared its size.
    ///
    /// In the order of the module docs: a block from the large pool
    /// (waiting, holding only the allowance), else growth of the block if
    /// the bytes are free now, else the lane (waiting for it while holding
    /// the block) with the whole lane pool.
    ///
    /// # Errors
    /// [`TOO_COSTLY`] when `need` exceeds what the budget can ever give one
    /// message; [`BUSY`] when a block or the lane does not come within
    /// [`Limits::wait`]; [`TEMPFAIL`] at shutdown.
    pub async fn ensure(
        &self,
        r: &mut Reservation,
        need: usize,
        declared: Option<usize>,
    ) -> Result<(), Reply> {
        if need <= r.bytes() {
            return Ok(());
        }
        let large = units(self.limits.large) * UNIT;
        let lane = units(self.limits.lane) * UNIT;
        if need > r.small_bytes + large + lane {
            return Err(TOO_COSTLY);
        }
        if r.large.is_none() {
            let total = match declared {
                Some(cost) if cost.saturating_sub(r.small_bytes) <= large / 2 => cost,
                _ => self.limits.first_block,
            };
            let want = units(need.max(total).saturating_sub(r.small_bytes).min(large));
            let acquire = Arc::clone(&self.large).acquire_many_owned(permits(want * UNIT));
            let permit = match tokio::time::timeout(self.limits.wait, acquire).await {
                Ok(Ok(p)) => p,
                Ok(Err(_closed)) => return Err(TEMPFAIL),
                Err(_elapsed) => return Err(BUSY),
            };
            r.large = Some(permit);
            r.large_bytes = want * UNIT;
            self.gauge.add(want * UNIT);
            if need <= r.bytes() {
                return Ok(());
            }
        }
        if r.lane.is_none() {
            // Grow the block by at least half, if the bytes are free now.
            let extra = units((need - r.bytes()).max(r.large_bytes / 2));
            if let (Some(held), Ok(more)) = (
                r.large.as_mut(),
                Arc::clone(&self.large).try_acquire_many_owned(permits(extra * UNIT)),
            ) {
                held.merge(more);
                r.large_bytes += extra * UNIT;
                self.gauge.add(extra * UNIT);
                return Ok(());
            }
            let acquire = Arc::clone(&self.lane).acquire_owned();
            let turn = match tokio::time::timeout(self.limits.wait, acquire).await {
                Ok(Ok(p)) => p,
                Ok(Err(_closed)) => return Err(TEMPFAIL),
                Err(_elapsed) => return Err(BUSY),
            };
            // The previous holder returned the whole pool before its turn.
            let pool = Arc::clone(&self.lane_pool)
                .try_acquire_many_owned(permits(lane))
                .map_err(|_| TEMPFAIL)?;
            r.lane = Some(turn);
            r.lane_pool = Some(pool);
            r.lane_bytes = lane;
            self.gauge.add(lane);
        }
        if need <= r.bytes() {
            Ok(())
        } else {
            Err(TOO_COSTLY)
        }
    }
}

/// What one message holds from the budget; returned when dropped (end of
/// the decision, ABORT, or the connection going away).
#[derive(Debug)]
pub struct Reservation {
    small: Option<OwnedSemaphorePermit>,
    large: Option<OwnedSemaphorePermit>,
    lane_pool: Option<OwnedSemaphorePermit>,
    lane: Option<OwnedSemaphorePermit>,
    small_bytes: usize,
    large_bytes: usize,
    lane_bytes: usize,
    gauge: Arc<Gauge>,
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.small_bytes + self.large_bytes + self.lane_bytes
    }

    /// Whether a block from the large pool is held.
    pub fn has_block(&self) -> bool {
        self.large.is_some()
    }

    /// Whether the lane is held.
    pub fn has_lane(&self) -> bool {
        self.lane.is_some()
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // The gauge first, then the permits: the other way round, another
        // message could take them and count them before they are
        // uncounted here, and the gauge would show more than the budget.
        self.gauge.sub(self.bytes());
        self.small.take();
        self.large.take();
        // The pool before the turn: the next holder finds it whole.
        self.lane_pool.take();
        self.lane.take();
    }
}

/// The running estimate of what a message costs: its bytes and what its
/// decision will allocate (see the module docs for the model).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meter {
    /// Bytes of the raw message so far.
    pub size: usize,
    /// Structure items: lines starting with `-`, and `: , ; < (`.
    pub structure: usize,
    /// `?` characters (encoded words in headers).
    pub questions: usize,
    /// Lines starting with a space or tab (folded header lines).
    pub folded: usize,
    /// Bytes above 0x7f.
    pub high: usize,
    /// Whether the next byte starts a line.
    mid_line: bool,
}

/// What the parser may allocate for one structure item: measured up to
/// ~720 bytes per item (an empty `message/rfc822` part), ~240 for a bare
/// part, ~120 for a header field.
const STRUCTURE_COST: usize = 1024;
/// Per `?`: an encoded word has four and measured ~90 bytes.
const QUESTION_COST: usize = 32;
/// Per folded line: the parser takes each line of a folded address field
/// as a word, measured ~50 bytes each.
const FOLDED_COST: usize = 64;
/// Per byte above 0x7f: a single-byte charset decodes it to up to three
/// bytes of UTF-8, two more than the decode allowance covers.
const HIGH_COST: usize = 2;
/// A fixed part per message: the parsed message's own structures, the
/// envelope, the log line.
const FIXED_COST: usize = 16 * KIB;

impl Meter {
    /// Counts `bytes`, appended to the message.
    pub fn scan(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len());
        let mut mid_line = self.mid_line;
        for &b in bytes {
            match b {
                b'-' if !mid_line => self.structure += 1,
                b' ' | b'\t' if !mid_line => self.folded += 1,
                b':' | b',' | b';' | b'<' | b'(' => self.structure += 1,
                b'?' => self.questions += 1,
                0x80..=0xff => self.high += 1,
                _ => {}
            }
            mid_line = b != b'\n';
        }
        self.mid_line = mid_line;
    }

    /// The estimate after `bytes` more, without counting them.
    pub fn cost_with(&self, bytes: &[u8]) -> usize {
        let mut m = *self;
        m.scan(bytes);
        m.cost()
    }

    /// Bytes the message and its decision are expected to need.
    pub fn cost(&self) -> usize {
        Meter::cost_of_size(self.size)
            .saturating_add(self.structure.saturating_mul(STRUCTURE_COST))
            .saturating_add(self.questions.saturating_mul(QUESTION_COST))
            .saturating_add(self.folded.saturating_mul(FOLDED_COST))
            .saturating_add(self.high.saturating_mul(HIGH_COST))
    }

    /// The cost of a message of `size` bytes with nothing but base64 in
    /// it: itself, one and a half times itself for the decoded copies, and
    /// the fixed part.
    pub fn cost_of_size(size: usize) -> usize {
        size.saturating_add(size.saturating_mul(3) / 2)
            .saturating_add(FIXED_COST)
    }

    /// What the rest of the message will cost when it ends at `total`
    /// bytes and contains nothing that costs extra: the cost so far plus
    /// the plain cost of the bytes still to come.
    pub fn expected_cost(&self, total: usize) -> usize {
        let rest = total.saturating_sub(self.size);
        self.cost()
            .saturating_add(rest.saturating_add(rest.saturating_mul(3) / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two allowances of 4 KiB, a large pool of 64 KiB with first blocks
    /// of 16 KiB, a lane of 100 KiB.
    fn limits() -> Limits {
        Limits {
            allowance: 4 * KIB,
            small: 8 * KIB,
            large: 64 * KIB,
            first_block: 16 * KIB,
            lane: 100 * KIB,
            wait: Duration::from_millis(200),
        }
    }

    #[test]
    fn meter_case_table() {
        let cases: &[(&[u8], usize, usize, usize, usize)] = &[
            // (bytes, structure, questions, high, folded)
            (b"QUJDREVG\r\nR0hJ\r\n", 0, 0, 0, 0),
            (b"-----BEGIN PGP MESSAGE-----\r\n", 1, 0, 0, 0),
            (b"a-b\r\n--b\r\n", 1, 0, 0, 0),
            (b"To: a@b, c@d\r\n", 2, 0, 0, 0),
            (b"To: x\r\n a@b\r\n\tc@d\r\na b\r\n", 1, 0, 0, 2),
            (b"Subject: =?utf-8?q?x?=\r\n", 1, 4, 0, 0),
            (b"Content-Type: text/plain; charset=x\r\n", 2, 0, 0, 0),
            (b"<a>(b)\r\n", 2, 0, 0, 0),
            ("é\r\n".as_bytes(), 0, 0, 2, 0),
        ];
        for (bytes, structure, questions, high, folded) in cases {
            let mut m = Meter::default();
            m.scan(bytes);
            assert_eq!(
                (m.structure, m.questions, m.high, m.folded, m.size),
                (*structure, *questions, *high, *folded, bytes.len()),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn meter_keeps_line_state_across_chunks() {
        let mut whole = Meter::default();
        whole.scan(b"abc\r\n--b\r\nx-y\r\n-");
        let mut parts = Meter::default();
        for chunk in [&b"abc\r"[..], b"\n-", b"-b\r\nx", b"-y\r\n", b"-"] {
            parts.scan(chunk);
        }
        assert_eq!(whole, parts);
        assert_eq!(whole.structure, 2);
        assert_eq!(whole.cost(), parts.cost());
        assert_eq!(whole.cost_with(b"--"), {
            let mut m = whole;
            m.scan(b"--");
            m.cost()
        });
    }

    #[test]
    fn cost_model() {
        // Plain base64: 2.5 times the size plus the fixed part.
        let mut m = Meter::default();
        m.scan(&[b'A'; 1000]);
        assert_eq!(m.cost(), 2500 + FIXED_COST);
        assert_eq!(m.expected_cost(2000), 5000 + FIXED_COST);
        // A byte of structure costs far more than its size.
        m.scan(b":");
        assert_eq!(m.cost(), 2502 + FIXED_COST + STRUCTURE_COST);
        // The lane fits one message of chatmaild's default maximum, and
        // all pools stay within what keeps the daemon under 128 MiB.
        let l = Limits::for_max_message_size(31_457_280);
        assert_eq!(l.lane, Meter::cost_of_size(31_457_280));
        assert!(l.total() <= 100 * MIB, "{}", l.total());
        // A larger maximum makes the lane larger, never too small.
        let l = Limits::for_max_message_size(100 * MIB);
        assert_eq!(l.lane, Meter::cost_of_size(100 * MIB));
    }

    #[tokio::test]
    async fn allowance_then_block_then_lane_and_return() {
        let b = Budget::new(limits());
        let mut r = b.allowance().await.unwrap();
        assert_eq!((r.bytes(), b.in_use()), (4 * KIB, 4 * KIB));
        b.ensure(&mut r, 3 * KIB, None).await.unwrap();
        assert!(!r.has_block());
        // Outgrowing the allowance without a declared size: a first block.
        b.ensure(&mut r, 10 * KIB, None).await.unwrap();
        assert!(r.has_block());
        assert_eq!(r.bytes(), 16 * KIB);
        // Growth while the large pool has room: the block by at least half.
        b.ensure(&mut r, 17 * KIB, None).await.unwrap();
        assert_eq!(r.bytes(), 22 * KIB);
        assert!(!r.has_lane());
        // A second message takes the rest of the large pool; the first
        // then grows through the lane, with all of its pool at once.
        let mut other = b.allowance().await.unwrap();
        b.ensure(&mut other, 40 * KIB, Some(40 * KIB))
            .await
            .unwrap();
        assert_eq!(other.bytes(), 40 * KIB);
        b.ensure(&mut r, 40 * KIB, None).await.unwrap();
        assert!(r.has_lane());
        assert_eq!(r.bytes(), 22 * KIB + 100 * KIB);
        assert_eq!(b.in_use(), r.bytes() + other.bytes());
        // Beyond allowance, block and lane: never.
        assert_eq!(b.ensure(&mut r, 130 * KIB, None).await, Err(TOO_COSTLY));
        assert_eq!(b.ensure(&mut other, 200 * KIB, None).await, Err(TOO_COSTLY));
        drop((r, other));
        assert_eq!(b.in_use(), 0);
        assert!(b.peak() <= b.limits().total());
    }

    #[tokio::test]
    async fn a_declared_size_takes_its_block_at_once() {
        let b = Budget::new(limits());
        let mut r = b.allowance().await.unwrap();
        // Fits half the large pool: the whole cost at once.
        b.ensure(&mut r, 10 * KIB, Some(30 * KIB)).await.unwrap();
        assert_eq!(r.bytes(), 30 * KIB);
        drop(r);
        // Too large for that: a first block like everyone else.
        let mut r = b.allowance().await.unwrap();
        b.ensure(&mut r, 10 * KIB, Some(90 * KIB)).await.unwrap();
        assert_eq!(r.bytes(), 16 * KIB);
    }

    #[tokio::test]
    async fn waits_end_and_give_up_in_time() {
        let b = Arc::new(Budget::new(Limits {
            wait: Duration::from_secs(30),
            ..limits()
        }));
        // The lane holder: a block, then the lane.
        let mut holder = b.allowance().await.unwrap();
        b.ensure(&mut holder, 60 * KIB, Some(60 * KIB))
            .await
            .unwrap();
        b.ensure(&mut holder, 70 * KIB, None).await.unwrap();
        assert!(holder.has_lane());
        // A message waiting for a block (holding its allowance) ...
        let waiter = tokio::spawn({
            let b = Arc::clone(&b);
            async move {
                let mut r = b.allowance().await.unwrap();
                b.ensure(&mut r, 10 * KIB, None).await.map(|()| r)
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        // ... a third one waits for its allowance and gives up in time.
        let short = Budget::new(limits());
        let _a = short.allowance().await.unwrap();
        let _b = short.allowance().await.unwrap();
        assert_eq!(short.allowance().await.unwrap_err(), BUSY);
        // The holder never waits; when it is done, the waiter goes on.
        b.ensure(&mut holder, 120 * KIB, None).await.unwrap();
        drop(holder);
        let r = waiter.await.unwrap().unwrap();
        assert_eq!(r.bytes(), 16 * KIB);
        drop(r);
        assert_eq!(b.in_use(), 0);
        assert!(b.peak() <= b.limits().total());
    }

    #[tokio::test]
    async fn lane_waiters_are_served_in_turn() {
        let b = Arc::new(Budget::new(Limits {
            wait: Duration::from_secs(30),
            ..limits()
        }));
        // Two messages with blocks filling the large pool both need more.
        let mut first = b.allowance().await.unwrap();
        let mut second = b.allowance().await.unwrap();
        b.ensure(&mut first, 32 * KIB, Some(32 * KIB))
            .await
            .unwrap();
        b.ensure(&mut second, 32 * KIB, Some(32 * KIB))
            .await
            .unwrap();
        b.ensure(&mut first, 50 * KIB, None).await.unwrap();
        assert!(first.has_lane());
        let waiting = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.ensure(&mut second, 50 * KIB, None).await.map(|()| second) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(first);
        let second = waiting.await.unwrap().unwrap();
        assert!(second.has_lane());
        // At shutdown, a wait for the lane ends at once.
        let mut third = b.allowance().await.unwrap();
        b.ensure(&mut third, 32 * KIB, Some(32 * KIB))
            .await
            .unwrap();
        let waiting = tokio::spawn({
            let b = Arc::clone(&b);
            async move { b.ensure(&mut third, 50 * KIB, None).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        b.close();
        assert_eq!(waiting.await.unwrap(), Err(TEMPFAIL));
        drop(second);
        assert_eq!(b.in_use(), 0);
    }
}
