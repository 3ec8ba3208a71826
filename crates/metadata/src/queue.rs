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
//!
//! Which rows are in flight is kept in memory, not in the table: it is
//! not durable state (every claim ends with the process), and writing it
//! would cost a commit, so an fsync, per claim. The `claimed` column is
//! kept for databases written by earlier versions and is always 0.
//! A claim therefore writes nothing but expired rows, and reads in
//! `(next_ts, id)` order along the `queue_due` index, stopping after
//! `limit` rows: its cost does not grow with the number of waiting rows.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
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

/// The rows whose POST is in flight and their tokens.
#[derive(Debug, Default)]
struct InFlight {
    /// Row id -> (addr, token).
    rows: HashMap<i64, (String, String)>,
    /// (addr, token) of every row in `rows`: one POST per token at a time.
    tokens: HashSet<(String, String)>,
}

impl InFlight {
    fn insert(&mut self, item: &Item) {
        let key = (item.addr.clone(), item.token.clone());
        self.tokens.insert(key.clone());
        self.rows.insert(item.id, key);
    }

    fn remove(&mut self, id: i64) {
        if let Some(key) = self.rows.remove(&id) {
            self.tokens.remove(&key);
        }
    }

    fn token_busy(&self, addr: &str, token: &str) -> bool {
        // A borrowed-tuple lookup would need a custom key type; the set
        // holds at most `max_in_flight` entries, so the allocation is cheap.
        self.tokens.contains(&(addr.to_owned(), token.to_owned()))
    }
}

/// The queue database.
pub struct Queue {
    conn: Connection,
    /// Rows handed out by [`Queue::claim`] and not yet finished.
    in_flight: RefCell<InFlight>,
    /// The `now` of the last expiry sweep: rows only expire as time
    /// passes (see [`Queue::claim`]), so one sweep per second suffices.
    swept_at: Cell<Option<i64>>,
}

impl Queue {
    /// Opens (creating if needed) the queue at `path` with no row in
    /// flight: whatever was in flight when the last process ended gets sent
    /// again.
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
        Ok(Queue {
            conn,
            in_flight: RefCell::default(),
            swept_at: Cell::new(None),
        })
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
        // At most two rows match: one in flight and one waiting.
        let untried: Vec<i64> = self
            .conn
            .prepare_cached("SELECT id FROM queue WHERE addr = ?1 AND token = ?2 AND attempts = 0")?
            .query_map(params![addr, token], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let in_flight = self.in_flight.borrow();
        if untried.iter().any(|id| !in_flight.rows.contains_key(id)) {
            return Ok(false);
        }
        drop(in_flight);
        if start_ts < now {
            // Backdated (imported) rows may be expired already.
            self.swept_at.set(None);
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
    /// oldest due first, skipping tokens with a POST in flight; gives up
    /// waiting ones past their deadline.
    ///
    /// The marks live in memory: if the transaction this runs in is not
    /// committed, the caller must drop the claims with
    /// [`Queue::release_all_but`] or the rows wait until the next restart.
    ///
    /// # Errors
    ///
    /// SQLite errors; then nothing is marked.
    pub fn claim(&self, now: i64, limit: usize) -> Result<Claimed, QueueError> {
        let mut claimed = Claimed::default();
        if self.swept_at.get() != Some(now) {
            // A row only expires as `now` passes its deadline: a retry is
            // never scheduled past it (`next_attempt`) and new rows start
            // now, so one sweep per second of `now` finds them all.
            claimed.expired = self.expire(now)?;
            self.swept_at.set(Some(now));
        }
        let mut in_flight = self.in_flight.borrow_mut();
        // Along the `queue_due` index, so no sort: rows in flight and rows
        // whose token is in flight (at most a few per POST in flight) are
        // skipped; the first other row ends the scan once `limit` rows are
        // taken or if it is not due yet (it is then `next_due`).
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, addr, token, start_ts, attempts, next_ts FROM queue
             WHERE claimed = 0 ORDER BY next_ts, id",
        )?;
        let mut rows = stmt.query([])?;
        let mut picked = Vec::new();
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            if in_flight.rows.contains_key(&id) {
                continue;
            }
            let addr: String = row.get(1)?;
            let token: String = row.get(2)?;
            // One POST per token at a time: while one is in flight, later
            // rows for the same token wait (and coalesce new messages), so
            // a stalled gateway sees at most two POSTs per token.
            if in_flight.token_busy(&addr, &token)
                || picked
                    .iter()
                    .any(|i: &Item| i.addr == addr && i.token == token)
            {
                continue;
            }
            let start_ts: i64 = row.get(3)?;
            if start_ts < now - DROP_DEADLINE {
                // Past its deadline but not swept (the sweep's transaction
                // was rolled back): never sent, swept within a second.
                continue;
            }
            let next_ts: i64 = row.get(5)?;
            if next_ts > now || picked.len() >= limit {
                claimed.next_due = Some(next_ts);
                break;
            }
            picked.push(Item {
                id,
                addr,
                token,
                start_ts,
                attempts: row.get(4)?,
            });
        }
        // Marked only once every read succeeded.
        for item in &picked {
            in_flight.insert(item);
        }
        claimed.items = picked;
        Ok(claimed)
    }

    /// Deletes the rows not in flight that were queued more than
    /// [`DROP_DEADLINE`] before `now`, and returns them.
    fn expire(&self, now: i64) -> Result<Vec<Item>, QueueError> {
        let cutoff = now - DROP_DEADLINE;
        let in_flight = self.in_flight.borrow();
        let expired: Vec<Item> = self
            .select(
                "SELECT id, addr, token, start_ts, attempts FROM queue WHERE start_ts < ?1",
                params![cutoff],
            )?
            .into_iter()
            .filter(|item| !in_flight.rows.contains_key(&item.id))
            .collect();
        let mut delete = self
            .conn
            .prepare_cached("DELETE FROM queue WHERE id = ?1")?;
        for item in &expired {
            delete.execute(params![item.id])?;
        }
        Ok(expired)
    }

    /// Drops the in-flight mark of every row not in `started`: for a claim
    /// whose result never reached the caller (its commit failed), so those
    /// rows are claimed again.
    pub fn release_all_but(&self, started: &HashSet<i64>) {
        let mut in_flight = self.in_flight.borrow_mut();
        let in_flight = &mut *in_flight;
        in_flight.rows.retain(|id, _| started.contains(id));
        in_flight.tokens = in_flight.rows.values().cloned().collect();
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
        // Released even if what follows fails: the row, if it is still
        // there, is then claimed and sent again rather than stuck.
        self.in_flight.borrow_mut().remove(id);
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
                        "UPDATE queue SET attempts = attempts + 1, next_ts = ?2 WHERE id = ?1",
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
    fn claim_skips_busy_tokens_and_reports_the_next_free_row() {
        let (_dir, q) = queue();
        q.enqueue("a@x", "t", T0, T0).unwrap();
        let a = q.claim(T0, 10).unwrap().items;
        assert_eq!(a.len(), 1);
        // Behind a's POST: one waiting row for a, then two other tokens,
        // one due later.
        assert!(q.enqueue("a@x", "t", T0 + 1, T0 + 1).unwrap());
        q.enqueue("b@x", "t", T0 + 1, T0 + 1).unwrap();
        q.conn()
            .execute(
                "INSERT INTO queue (addr, token, start_ts, attempts, next_ts)
                 VALUES ('c@x', 't', ?1, 1, ?2)",
                params![T0, T0 + 50],
            )
            .unwrap();
        let c = q.claim(T0 + 2, 0).unwrap();
        assert!(c.items.is_empty());
        assert_eq!(c.next_due, Some(T0 + 1), "b's row, not a's");
        let c = q.claim(T0 + 2, 10).unwrap();
        assert_eq!(c.items.len(), 1);
        assert_eq!(c.items[0].addr, "b@x");
        assert_eq!(c.next_due, Some(T0 + 50), "c's row; a's waits for its POST");
        // Claimed rows are not handed out twice.
        assert!(q.claim(T0 + 2, 10).unwrap().items.is_empty());
    }

    #[test]
    fn claims_are_not_written_to_the_database() {
        // In flight is not durable state: a claim commits nothing, so a
        // restart (and a second reader) sees every row as waiting.
        let (dir, q) = queue();
        q.enqueue("a@x", "t", T0, T0).unwrap();
        q.conn().execute_batch("BEGIN IMMEDIATE").unwrap();
        assert_eq!(q.claim(T0, 10).unwrap().items.len(), 1);
        assert_eq!(q.conn().total_changes(), 1, "only the enqueue wrote");
        q.conn().execute_batch("COMMIT").unwrap();
        let other = Connection::open(dir.path().join("q.sqlite")).unwrap();
        let claimed: i64 = other
            .query_row("SELECT COUNT(*) FROM queue WHERE claimed != 0", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(claimed, 0);
    }

    #[test]
    fn release_all_but_hands_out_unstarted_claims_again() {
        let (_dir, q) = queue();
        q.enqueue("a@x", "1", T0, T0).unwrap();
        q.enqueue("a@x", "2", T0, T0).unwrap();
        let c = q.claim(T0, 10).unwrap();
        assert_eq!(c.items.len(), 2);
        let started = std::collections::HashSet::from([c.items[0].id]);
        q.release_all_but(&started);
        let again = q.claim(T0, 10).unwrap();
        assert_eq!(again.items, [c.items[1].clone()]);
        // The started one is still in flight: its token stays blocked.
        assert!(q.enqueue("a@x", "1", T0, T0).unwrap());
        assert!(q.claim(T0, 10).unwrap().items.is_empty());
        q.finish(c.items[0].id, Outcome::Done, T0).unwrap();
        assert_eq!(q.claim(T0, 10).unwrap().items.len(), 1);
    }

    #[test]
    fn expiry_follows_the_clock_and_spares_rows_in_flight() {
        let (_dir, q) = queue();
        q.enqueue("a@x", "1", T0, T0).unwrap();
        q.enqueue("a@x", "2", T0, T0).unwrap();
        let first = q.claim(T0, 1).unwrap();
        assert!(first.expired.is_empty());
        let late = T0 + DROP_DEADLINE + 1;
        let c = q.claim(late, 0).unwrap();
        assert_eq!(c.expired.len(), 1, "the waiting row, not the one in flight");
        assert_ne!(c.expired[0].id, first.items[0].id);
        // A backdated row queued within the same second is still swept.
        q.enqueue("b@x", "1", T0, late).unwrap();
        assert_eq!(q.claim(late, 10).unwrap().expired.len(), 1);
        assert_eq!(
            q.finish(first.items[0].id, Outcome::Failed, late).unwrap(),
            Finished::GivenUp
        );
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
