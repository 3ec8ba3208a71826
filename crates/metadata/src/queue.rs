//! The durable push queue: one SQLite table, used from one thread.
//!
//! One row is one notification still owed to one token. Rows are written
//! before Dovecot is told the `messagenew` was accepted and deleted only
//! when the gateway has answered for good or the notification is given up,
//! so a crash, `kill -9` or reboot never loses one; at worst a notification
//! whose POST was in flight is sent again.
//!
//! Durability settings: WAL journal with `synchronous = FULL`. WAL with
//! NORMAL survives a killed process but can lose the last commits on power
//! loss or a kernel crash; FULL syncs the WAL on every commit, so a reboot
//! of any kind keeps every answered `messagenew`. The cost (one fsync per
//! commit) is shared by batching: the queue thread commits every request
//! that piled up while it was busy in one transaction (see `notifier`).
//!
//! Back-off (chatmaild's `Notifier`): attempt 1 at once; after the n-th
//! failure the next attempt is 8^n seconds after that failure (8, 64, 512,
//! 4096 s); after the 5th failure, or when the next attempt would fall
//! more than 5 h after the notification was queued, it is given up.
//! Unlike chatmaild the attempt count survives a restart.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

/// Base of the exponential back-off, in seconds.
pub const BACKOFF_BASE: i64 = 8;
/// Attempts before giving up (chatmaild: `int(log(5h, 8)) + 1`).
pub const MAX_ATTEMPTS: i64 = 5;
/// A notification older than this (from when it was queued) is given up.
pub const DROP_DEADLINE: i64 = 5 * 3600;

/// Why the queue database failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// An SQLite error.
    #[error("push queue database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Creating the database file failed.
    #[error("push queue database: {0}")]
    Io(#[from] std::io::Error),
    /// The transaction holding the change could not be committed.
    #[error("push queue commit failed: {0}")]
    Commit(String),
    /// The queue thread is gone (the daemon is shutting down).
    #[error("push queue is closed")]
    Closed,
}

/// One notification to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Row id.
    pub id: i64,
    /// The user the token belongs to (for removal on 410).
    pub addr: String,
    /// The token, the POST body.
    pub token: String,
    /// Unix time it was queued.
    pub start_ts: i64,
    /// Attempts already made.
    pub attempts: i64,
}

/// What [`Queue::claim`] hands out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Due notifications, now marked as in flight.
    pub items: Vec<Item>,
    /// Notifications given up because their deadline passed while they
    /// waited (the daemon was down).
    pub expired: Vec<Item>,
    /// When the next not-yet-due notification is due.
    pub next_due: Option<i64>,
}

/// How a POST ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200, or 410 (the token was removed from the user): done.
    Done,
    /// Anything else: try again later.
    Failed,
}

/// What happened to a row after [`Queue::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Deleted: delivered, or the row was gone already.
    Done,
    /// Scheduled again for this unix time.
    Retry(i64),
    /// Given up (attempts or deadline exhausted) and deleted.
    GivenUp,
}

/// The next attempt after `attempts` failures, the last one at `now`, for a
/// notification queued at `start_ts`; `None` = give up.
pub fn next_attempt(start_ts: i64, attempts: i64, now: i64) -> Option<i64> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let delay = BACKOFF_BASE.checked_pow(u32::try_from(attempts).ok()?)?;
    let at = now.checked_add(delay)?;
    (at <= start_ts + DROP_DEADLINE).then_some(at)
}

/// The queue database.
pub struct Queue {
    conn: Connection,
}

impl Queue {
    /// Opens (creating if needed) the queue at `path` and marks every row as
    /// not in flight: whatever was in flight when the last process ended
    /// gets sent again.
    ///
    /// # Errors
    ///
    /// SQLite errors (unwritable directory, corrupt file, ...).
    pub fn open(path: &Path) -> Result<Queue, QueueError> {
        // Tokens identify devices: the file (and the -wal/-shm files SQLite
        // creates with the same mode) is for the daemon's user only.
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path);
        if let Err(e) = created {
            return Err(QueueError::Io(e));
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS queue (
                 id INTEGER PRIMARY KEY,
                 addr TEXT NOT NULL,
                 token TEXT NOT NULL,
                 start_ts INTEGER NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 next_ts INTEGER NOT NULL,
                 claimed INTEGER NOT NULL DEFAULT 0
             );
             CREATE INDEX IF NOT EXISTS queue_due ON queue (claimed, next_ts);
             CREATE INDEX IF NOT EXISTS queue_token ON queue (addr, token);
             UPDATE queue SET claimed = 0 WHERE claimed != 0;",
        )?;
        Ok(Queue { conn })
    }

    /// The connection, for grouping several calls in one transaction.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Queues a notification of `token` for `addr`, unless one for the same
    /// token is already waiting for its first attempt (coalescing: the
    /// phone fetches all new mail at once). Returns whether a row was added.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn enqueue(
        &self,
        addr: &str,
        token: &str,
        start_ts: i64,
        now: i64,
    ) -> Result<bool, QueueError> {
        let waiting: Option<i64> = self
            .conn
            .prepare_cached(
                "SELECT id FROM queue
                 WHERE addr = ?1 AND token = ?2 AND attempts = 0 AND claimed = 0 LIMIT 1",
            )?
            .query_row(params![addr, token], |r| r.get(0))
            .optional()?;
        if waiting.is_some() {
            return Ok(false);
        }
        self.conn
            .prepare_cached(
                "INSERT INTO queue (addr, token, start_ts, attempts, next_ts)
                 VALUES (?1, ?2, ?3, 0, ?4)",
            )?
            .execute(params![addr, token, start_ts, now])?;
        Ok(true)
    }

    /// Marks up to `limit` due notifications as in flight and returns them,
    /// oldest due first; gives up waiting ones past their deadline.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn claim(&self, now: i64, limit: usize) -> Result<Claimed, QueueError> {
        let mut claimed = Claimed::default();
        let cutoff = now - DROP_DEADLINE;
        claimed.expired = self.select(
            "SELECT id, addr, token, start_ts, attempts FROM queue
             WHERE claimed = 0 AND start_ts < ?1",
            params![cutoff],
        )?;
        self.conn
            .prepare_cached("DELETE FROM queue WHERE claimed = 0 AND start_ts < ?1")?
            .execute(params![cutoff])?;
        if limit > 0 {
            // One POST per token at a time: while one is in flight, later
            // rows for the same token wait (and coalesce new messages), so
            // a stalled gateway sees at most two POSTs per token.
            let due = self.select(
                "SELECT id, addr, token, start_ts, attempts FROM queue q
                 WHERE claimed = 0 AND next_ts <= ?1 AND NOT EXISTS (
                     SELECT 1 FROM queue f
                     WHERE f.claimed = 1 AND f.addr = q.addr AND f.token = q.token)
                 ORDER BY next_ts, id LIMIT ?2",
                params![now, i64::try_from(limit).unwrap_or(i64::MAX)],
            )?;
            let mut seen = std::collections::HashSet::new();
            claimed.items = due
                .into_iter()
                .filter(|item| seen.insert((item.addr.clone(), item.token.clone())))
                .collect();
            let mut mark = self
                .conn
                .prepare_cached("UPDATE queue SET claimed = 1 WHERE id = ?1")?;
            for item in &claimed.items {
                mark.execute(params![item.id])?;
            }
        }
        claimed.next_due = self
            .conn
            .prepare_cached(
                "SELECT MIN(next_ts) FROM queue q
                 WHERE claimed = 0 AND NOT EXISTS (
                     SELECT 1 FROM queue f
                     WHERE f.claimed = 1 AND f.addr = q.addr AND f.token = q.token)",
            )?
            .query_row([], |r| r.get(0))?;
        Ok(claimed)
    }

    fn select(&self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<Item>, QueueError> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt.query_map(p, |r| {
            Ok(Item {
                id: r.get(0)?,
                addr: r.get(1)?,
                token: r.get(2)?,
                start_ts: r.get(3)?,
                attempts: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records how the attempt on row `id` ended at `now`.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn finish(&self, id: i64, outcome: Outcome, now: i64) -> Result<Finished, QueueError> {
        let row: Option<(i64, i64)> = self
            .conn
            .prepare_cached("SELECT start_ts, attempts FROM queue WHERE id = ?1")?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((start_ts, attempts)) = row else {
            return Ok(Finished::Done);
        };
        let retry = match outcome {
            Outcome::Done => None,
            Outcome::Failed => next_attempt(start_ts, attempts + 1, now),
        };
        match retry {
            Some(at) => {
                self.conn
                    .prepare_cached(
                        "UPDATE queue SET attempts = attempts + 1, next_ts = ?2, claimed = 0
                         WHERE id = ?1",
                    )?
                    .execute(params![id, at])?;
                Ok(Finished::Retry(at))
            }
            None => {
                self.conn
                    .prepare_cached("DELETE FROM queue WHERE id = ?1")?
                    .execute(params![id])?;
                Ok(match outcome {
                    Outcome::Done => Finished::Done,
                    Outcome::Failed => Finished::GivenUp,
                })
            }
        }
    }

    /// Number of queued notifications.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn len(&self) -> Result<usize, QueueError> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Whether nothing is queued.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000;

    fn queue() -> (tempfile::TempDir, Queue) {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(&dir.path().join("q.sqlite")).unwrap();
        (dir, q)
    }

    #[test]
    fn schedule_matches_chatmaild() {
        // Failures right when due: 8, 64, 512, 4096 s after each failure.
        let mut now = T0;
        let mut times = Vec::new();
        for attempts in 1.. {
            match next_attempt(T0, attempts, now) {
                Some(at) => {
                    times.push(at - now);
                    now = at;
                }
                None => break,
            }
        }
        assert_eq!(times, [8, 64, 512, 4096]);
        // A retry that would land beyond 5 h is given up.
        assert_eq!(next_attempt(T0, 1, T0 + DROP_DEADLINE - 7), None);
        assert_eq!(
            next_attempt(T0, 1, T0 + DROP_DEADLINE - 8),
            Some(T0 + DROP_DEADLINE)
        );
    }

    #[test]
    fn enqueue_coalesces_until_the_first_attempt_starts() {
        let (_dir, q) = queue();
        assert!(q.enqueue("a@x", "tok", T0, T0).unwrap());
        assert!(!q.enqueue("a@x", "tok", T0, T0).unwrap());
        assert!(q.enqueue("b@x", "tok", T0, T0).unwrap());
        let c = q.claim(T0, 10).unwrap();
        assert_eq!(c.items.len(), 2);
        // In flight: a new message needs a new notification.
        assert!(q.enqueue("a@x", "tok", T0 + 1, T0 + 1).unwrap());
        assert_eq!(q.len().unwrap(), 3);
    }

    #[test]
    fn one_attempt_per_token_at_a_time() {
        let (_dir, q) = queue();
        assert!(q.enqueue("a@x", "t", 100, 100).unwrap());
        let first = q.claim(100, 10).unwrap();
        assert_eq!(first.items.len(), 1);
        // In flight: a new message queues one row, later ones coalesce.
        assert!(q.enqueue("a@x", "t", 101, 101).unwrap());
        assert!(!q.enqueue("a@x", "t", 102, 102).unwrap());
        assert!(q.enqueue("b@x", "t", 102, 102).unwrap());
        let blocked = q.claim(103, 10).unwrap();
        assert_eq!(blocked.items.len(), 1, "only b's row may start");
        assert_eq!(blocked.items[0].addr, "b@x");
        assert_eq!(
            blocked.next_due, None,
            "a's row waits for its POST, not a timer"
        );
        q.finish(first.items[0].id, Outcome::Done, 104).unwrap();
        let after = q.claim(104, 10).unwrap();
        assert_eq!(after.items.len(), 1);
        assert_eq!(after.items[0].addr, "a@x");
    }

    #[test]
    fn claim_respects_due_time_limit_and_claims() {
        let (_dir, q) = queue();
        q.enqueue("a@x", "1", T0, T0).unwrap();
        q.enqueue("a@x", "2", T0, T0).unwrap();
        let c = q.claim(T0, 1).unwrap();
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.next_due, Some(T0));
        let c2 = q.claim(T0, 5).unwrap();
        assert_eq!(c2.items.len(), 1);
        assert_ne!(c.items[0].id, c2.items[0].id);
        assert_eq!(q.claim(T0, 5).unwrap(), Claimed::default());

        assert_eq!(
            q.finish(c.items[0].id, Outcome::Failed, T0 + 1).unwrap(),
            Finished::Retry(T0 + 9)
        );
        assert_eq!(
            q.finish(c2.items[0].id, Outcome::Done, T0 + 1).unwrap(),
            Finished::Done
        );
        let c = q.claim(T0 + 8, 5).unwrap();
        assert!(c.items.is_empty());
        assert_eq!(c.next_due, Some(T0 + 9));
        let c = q.claim(T0 + 9, 5).unwrap();
        assert_eq!(c.items[0].attempts, 1);
    }

    #[test]
    fn gives_up_after_five_attempts() {
        let (_dir, q) = queue();
        q.enqueue("a@x", "1", T0, T0).unwrap();
        let mut now = T0;
        for attempt in 1..=5 {
            let c = q.claim(now, 5).unwrap();
            assert_eq!(c.items.len(), 1, "attempt {attempt}");
            match q.finish(c.items[0].id, Outcome::Failed, now).unwrap() {
                Finished::Retry(at) => now = at,
                Finished::GivenUp => assert_eq!(attempt, 5),
                Finished::Done => panic!(),
            }
        }
        assert!(q.is_empty().unwrap());
    }

    #[test]
    fn database_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, _q) = queue();
        let mode = std::fs::metadata(dir.path().join("q.sqlite"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn restart_releases_claims_and_expires_old_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        {
            let q = Queue::open(&path).unwrap();
            q.enqueue("a@x", "1", T0, T0).unwrap();
            q.enqueue("a@x", "2", T0 - DROP_DEADLINE, T0).unwrap();
            assert_eq!(q.claim(T0, 5).unwrap().items.len(), 2);
        }
        let q = Queue::open(&path).unwrap();
        let c = q.claim(T0 + 1, 5).unwrap();
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].token, "1");
        assert_eq!(c.expired.len(), 1);
        assert_eq!(c.expired[0].token, "2");
    }
}
