//! Gauges read from the system just before a scrape rather than kept up to
//! date by hooks: open connections (a counter in `chatmail-net`), accounts
//! on disk (a directory listing, at most once a minute) and the push
//! queue's depth and oldest row (one query on a read-only connection to the
//! queue database, which the notifier's own connection never waits for in
//! WAL mode).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags};

use crate::Metrics;

/// Something to do before each scrape.
pub type Probe = Box<dyn Fn(&Metrics) + Send + Sync>;

/// Logs a probe's failure when it starts failing, not on every scrape.
#[derive(Debug, Default)]
pub struct WarnOnce(std::sync::atomic::AtomicBool);

impl WarnOnce {
    /// Whether this failure is the first since the last success.
    pub fn failed(&self) -> bool {
        !self.0.swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// A success: the next failure is logged again.
    pub fn ok(&self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Sets `chatmail_open_connections`.
pub fn open_connections() -> Probe {
    Box::new(|m: &Metrics| {
        let n = chatmail_net::open_connections();
        m.open_connections.set(i64::try_from(n).unwrap_or(i64::MAX));
    })
}

/// How long a count of accounts is reused: listing a large mailbox
/// directory takes tens of milliseconds.
const ACCOUNTS_TTL: Duration = Duration::from_secs(60);

/// Sets `chatmail_auth_accounts` from the entries of `mailboxes_dir` that
/// look like addresses (contain `@`).
pub fn accounts(mailboxes_dir: PathBuf) -> Probe {
    let counted: Mutex<Option<Instant>> = Mutex::new(None);
    let warn = WarnOnce::default();
    Box::new(move |m: &Metrics| {
        let mut last = counted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < ACCOUNTS_TTL) {
            return;
        }
        match count_accounts(&mailboxes_dir) {
            Ok(n) => {
                m.auth.accounts.set(i64::try_from(n).unwrap_or(i64::MAX));
                *last = Some(Instant::now());
                warn.ok();
            }
            Err(e) if warn.failed() => {
                tracing::warn!(dir = %mailboxes_dir.display(), "counting accounts: {e}");
            }
            Err(_) => {}
        }
    })
}

fn count_accounts(dir: &std::path::Path) -> std::io::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        if entry?.file_name().as_encoded_bytes().contains(&b'@') {
            n += 1;
        }
    }
    Ok(n)
}

/// Sets the push queue gauges from the database at `queue_db`.
pub fn push_queue(queue_db: PathBuf) -> Probe {
    let conn: Mutex<Option<Connection>> = Mutex::new(None);
    let warn = WarnOnce::default();
    Box::new(move |m: &Metrics| {
        let mut conn = conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match queue_stats(&mut conn, &queue_db) {
            Ok((depth, oldest)) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                m.metadata.queue_depth.set(depth);
                let age = oldest.map_or(0, |ts| now.saturating_sub(ts).max(0));
                m.metadata.oldest_waiting.set(age as f64);
                warn.ok();
            }
            Err(e) => {
                // Reopened on the next scrape.
                *conn = None;
                if warn.failed() {
                    tracing::warn!(db = %queue_db.display(), "reading the push queue size: {e}");
                }
            }
        }
    })
}

fn queue_stats(
    conn: &mut Option<Connection>,
    path: &std::path::Path,
) -> rusqlite::Result<(i64, Option<i64>)> {
    if conn.is_none() {
        let c = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(Duration::from_millis(500))?;
        *conn = Some(c);
    }
    let Some(c) = conn.as_ref() else {
        return Err(rusqlite::Error::InvalidQuery);
    };
    c.prepare_cached("SELECT count(*), min(start_ts) FROM queue")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_directories_with_an_at_sign() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a@x", "b@x", "chatmail-push.sqlite", ".hidden"] {
            std::fs::create_dir(dir.path().join(name)).unwrap();
        }
        assert_eq!(count_accounts(dir.path()).unwrap(), 2);
    }

    #[test]
    fn queue_stats_count_rows_and_find_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.sqlite");
        let w = Connection::open(&path).unwrap();
        w.execute_batch(
            "PRAGMA journal_mode=WAL;
             CREATE TABLE queue (id INTEGER PRIMARY KEY, addr TEXT, token TEXT, start_ts INTEGER);",
        )
        .unwrap();
        let mut conn = None;
        assert_eq!(queue_stats(&mut conn, &path).unwrap(), (0, None));
        w.execute_batch(
            "INSERT INTO queue (addr, token, start_ts) VALUES ('a', 't', 100), ('b', 'u', 50);",
        )
        .unwrap();
        assert_eq!(queue_stats(&mut conn, &path).unwrap(), (2, Some(50)));
    }
}
