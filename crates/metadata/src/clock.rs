//! Wall-clock time for token expiry and push back-off, behind a trait so
//! tests can move time by hand instead of waiting for it.
//!
//! Everything here counts whole unix seconds: that is what `metadata.json`
//! and chatmaild's queue files store, and back-off steps are seconds long.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Source of "now" and of waiting for a later "now".
pub trait Clock: Send + Sync + 'static {
    /// The current unix time in seconds.
    fn now(&self) -> i64;

    /// Resolves no earlier than when [`Clock::now`] reaches `unix`; it may
    /// resolve early (callers re-check), never much later.
    fn sleep_until(&self, unix: i64) -> Sleep<'_>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

/// Upper bound of one real sleep, so that a wall clock stepped forward
/// (NTP after boot, a suspended VM) is noticed within this time.
const MAX_REAL_SLEEP: Duration = Duration::from_secs(60);

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    fn sleep_until(&self, unix: i64) -> Sleep<'_> {
        // Sleep to the second boundary, not a whole number of seconds from
        // now, so that waking up always finds `now() >= unix`.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let target = Duration::from_secs(u64::try_from(unix).unwrap_or(0));
        let wait = target.saturating_sub(now).min(MAX_REAL_SLEEP);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<watch::Sender<i64>>,
}

impl ManualClock {
    /// A clock standing at `unix`.
    pub fn new(unix: i64) -> ManualClock {
        ManualClock {
            now: Arc::new(watch::Sender::new(unix)),
        }
    }

    /// Moves the clock forward by `secs` and wakes every sleeper now due.
    pub fn advance(&self, secs: i64) {
        self.now.send_modify(|now| *now += secs);
    }

    /// Sets the clock to `unix` (also backwards).
    pub fn set(&self, unix: i64) {
        self.now.send_replace(unix);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, unix: i64) -> Sleep<'_> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, so this only ends when due.
            let _ = rx.wait_for(|now| *now >= unix).await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_due() {
        let clock = ManualClock::new(100);
        let mut sleep = clock.sleep_until(108);
        clock.advance(7);
        assert!(futures_poll_once(&mut sleep).is_pending());
        clock.advance(1);
        assert!(futures_poll_once(&mut sleep).is_ready());
        assert_eq!(clock.now(), 108);
    }

    fn futures_poll_once(f: &mut Sleep<'_>) -> std::task::Poll<()> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        f.as_mut().poll(&mut cx)
    }

    #[test]
    fn system_clock_is_near_system_time() {
        let a = SystemClock.now();
        let b = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!((a - i64::try_from(b).unwrap()).abs() <= 1);
    }
}
