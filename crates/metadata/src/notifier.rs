//! Delivers push notifications from the durable [`Queue`] to the gateway.
//!
//! Three parts:
//!
//! - the queue thread: owns the SQLite connection, so no SQLite call ever
//!   blocks the async reactor. It runs every job that piled up while it was
//!   busy in one transaction (each in its own savepoint) and answers only
//!   after the commit, which turns a burst of `messagenew`s into one fsync;
//! - the delivery loop: claims due rows (at most `max_in_flight` POSTs at
//!   once) and sleeps until the next row is due, a new row arrives, or a
//!   POST ends. Every POST that ended meanwhile frees its slot before the
//!   next claim, so slots are refilled in batches, and a claim commits
//!   nothing but expired rows (which rows are in flight is kept in memory,
//!   see [`crate::queue`]): its commit does not wait for the disk;
//! - one task per POST, sharing one HTTP client. Over TLS the gateway
//!   picks HTTP/2 or HTTP/1.1 by ALPN; with HTTP/2 all POSTs are
//!   multiplexed over one reused connection, with HTTP/1.1 they use a pool
//!   of keep-alive connections. A cleartext `http://` gateway gets
//!   HTTP/1.1 (what chatmaild's `requests` speaks, and what a local proxy
//!   in front of the egress usually is), or HTTP/2 with prior knowledge
//!   (h2c) when `push_notification_h2c` says so.
//!
//! The gateway's answer: 200 = delivered; 410 = the token is dead, remove it
//! from the user and stop; anything else, a connection error or a timeout =
//! retry with back-off (see [`crate::queue`]).
//!
//! Tokens are secrets that identify devices: logs only carry
//! [`token_tag`], a short hash. The gateway URL's query (where an API key
//! goes) is never logged ([`redacted_url`]). A failing gateway is logged
//! when its state changes and then once a minute as a summary
//! ([`FailureLog`]), not once per attempt.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use crate::clock::Clock;
use crate::queue::{Claimed, Finished, Item, Outcome, Queue, QueueError};
use crate::tokens::TokenStore;

/// Most jobs committed in one transaction.
const MAX_BATCH: usize = 512;

/// Short, stable, non-reversible tag of a token for correlating log lines.
pub fn token_tag(token: &str) -> String {
    let mut h = DefaultHasher::new();
    token.hash(&mut h);
    format!("{:08x}", h.finish() >> 32)
}

type Reply = Box<dyn FnOnce(Option<&str>) + Send>;
/// Runs on the queue, or (`Err`) reports that the batch could not start.
type Job = Box<dyn FnOnce(Result<&Queue, &str>) -> (bool, Reply) + Send>;

enum Msg {
    Job(Job),
    Stop,
}

/// A handle to the queue thread.
#[derive(Clone)]
pub struct QueueHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

impl QueueHandle {
    /// Starts the queue thread on `queue`.
    ///
    /// # Errors
    ///
    /// When the OS refuses a new thread.
    pub fn spawn(queue: Queue) -> std::io::Result<(QueueHandle, thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = thread::Builder::new()
            .name("push-queue".into())
            .spawn(move || queue_thread(&queue, rx))?;
        Ok((QueueHandle { tx }, thread))
    }

    /// Runs `f` on the queue thread inside a transaction and returns its
    /// result once committed.
    ///
    /// # Errors
    ///
    /// `f`'s error, a failed commit, or [`QueueError::Closed`].
    pub async fn call<T, F>(&self, f: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Queue) -> Result<T, QueueError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |queue| {
            let result = match queue {
                Ok(queue) => f(queue),
                Err(e) => Err(QueueError::Commit(e.to_owned())),
            };
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit_error| {
                let result = match commit_error {
                    Some(e) => Err(QueueError::Commit(e.to_owned())),
                    None => result,
                };
                let _ = tx.send(result);
            });
            (ok, reply)
        });
        self.tx
            .send(Msg::Job(job))
            .map_err(|_| QueueError::Closed)?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    /// Asks the thread to finish the jobs already sent and exit.
    pub fn stop(&self) {
        let _ = self.tx.send(Msg::Stop);
    }
}

fn queue_thread(queue: &Queue, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut stop = false;
    while !stop {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut jobs = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next {
            match msg {
                Msg::Job(job) => jobs.push(job),
                Msg::Stop => {
                    stop = true;
                    break;
                }
            }
            next = if jobs.len() < MAX_BATCH {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        run_batch(queue, jobs);
    }
}

fn run_batch(queue: &Queue, jobs: Vec<Job>) {
    if jobs.is_empty() {
        return;
    }
    let conn = queue.conn();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let msg = e.to_string();
        tracing::error!("push queue: cannot begin transaction: {msg}");
        for job in jobs {
            // Without a transaction each job would commit on its own, so
            // none is run; each caller gets the error.
            let (_, reply) = job(Err(&msg));
            reply(None);
        }
        return;
    }
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        // A failed job must not take the others' writes with it.
        let _ = conn.execute_batch("SAVEPOINT job");
        let (ok, reply) = job(Ok(queue));
        let _ = if ok {
            conn.execute_batch("RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        replies.push(reply);
    }
    let commit = conn.execute_batch("COMMIT").map_err(|e| e.to_string());
    if let Err(e) = &commit {
        tracing::error!("push queue: commit failed: {e}");
        let _ = conn.execute_batch("ROLLBACK");
    }
    let error = commit.err();
    for reply in replies {
        reply(error.as_deref());
    }
}

/// Settings of the delivery side.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// Where tokens are POSTed.
    pub url: String,
    /// Limit for one POST, connecting included (chatmaild: 60 s).
    pub request_timeout: Duration,
    /// POSTs in flight at once.
    pub max_in_flight: usize,
    /// Speak HTTP/2 with prior knowledge (h2c) to an `http://` URL.
    pub h2c: bool,
}

/// The HTTP client all POSTs share.
///
/// # Errors
///
/// When the TLS backend cannot be set up.
pub fn http_client(options: &DeliveryOptions) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("chatmail-metadata/", env!("CARGO_PKG_VERSION")))
        .timeout(options.request_timeout)
        .connect_timeout(options.request_timeout.min(Duration::from_secs(15)))
        .pool_idle_timeout(Duration::from_secs(300))
        // Dead connections are noticed by pings rather than by a POST
        // that hangs until its timeout.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none());
    if options.h2c && options.url.starts_with("http://") {
        // No TLS means no ALPN: HTTP/2 only when asked for.
        builder = builder.http2_prior_knowledge();
    }
    builder.build()
}

/// The enqueuing side, used by the dict handler.
#[derive(Clone)]
pub struct Notifier {
    queue: QueueHandle,
    wake: Arc<Notify>,
}

impl Notifier {
    /// Queues one notification per token of `addr` (coalesced with one
    /// that has not been tried yet); returns how many rows were added.
    /// Returns once the rows are committed.
    ///
    /// # Errors
    ///
    /// Queue errors; then nothing was queued.
    pub async fn enqueue(
        &self,
        addr: &str,
        tokens: Vec<String>,
        now: i64,
    ) -> Result<usize, QueueError> {
        let addr = addr.to_owned();
        let added = self
            .queue
            .call(move |q| {
                let mut added = 0;
                for token in &tokens {
                    added += usize::from(q.enqueue(&addr, token, now, now)?);
                }
                Ok(added)
            })
            .await?;
        if added > 0 {
            self.wake.notify_one();
        }
        Ok(added)
    }
}

struct Ctx {
    queue: QueueHandle,
    client: reqwest::Client,
    options: DeliveryOptions,
    /// The gateway URL as logged.
    shown_url: String,
    failures: std::sync::Mutex<FailureLog>,
    clock: Arc<dyn Clock>,
    tokens: Arc<TokenStore>,
}

/// The running delivery machinery.
pub struct Delivery {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    queue: QueueHandle,
    thread: thread::JoinHandle<()>,
}

impl Delivery {
    /// Starts delivering from `queue`; returns the enqueuing handle.
    ///
    /// # Errors
    ///
    /// When the HTTP client or the queue thread cannot be created.
    pub fn start(
        queue: Queue,
        options: DeliveryOptions,
        clock: Arc<dyn Clock>,
        tokens: Arc<TokenStore>,
    ) -> std::io::Result<(Notifier, Delivery)> {
        let client = http_client(&options).map_err(std::io::Error::other)?;
        let (handle, thread) = QueueHandle::spawn(queue)?;
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = watch::channel(false);
        let ctx = Arc::new(Ctx {
            queue: handle.clone(),
            client,
            shown_url: redacted_url(&options.url),
            failures: std::sync::Mutex::new(FailureLog::default()),
            options,
            clock,
            tokens,
        });
        let task = tokio::spawn(delivery_loop(ctx, Arc::clone(&wake), stopped));
        Ok((
            Notifier {
                queue: handle.clone(),
                wake,
            },
            Delivery {
                stop,
                task,
                queue: handle,
                thread,
            },
        ))
    }

    /// Stops delivering. POSTs in flight are abandoned; their rows stay
    /// queued and are sent again on the next start. Waits for the queue
    /// thread to commit what it was given.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.queue.stop();
        let thread = self.thread;
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
}

async fn delivery_loop(ctx: Arc<Ctx>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let mut in_flight = JoinSet::new();
    // Row ids of the POSTs in `in_flight`.
    let mut started = HashSet::new();
    loop {
        // Ended POSTs still count in `len()` until joined.
        while let Some(ended) = in_flight.try_join_next() {
            forget(&mut started, ended);
        }
        let free = ctx.options.max_in_flight.saturating_sub(in_flight.len());
        let now = ctx.clock.now();
        let claimed = ctx.queue.call(move |q| q.claim(now, free)).await;
        let next_due = match claimed {
            Ok(Claimed {
                items,
                expired,
                next_due,
            }) => {
                for item in expired {
                    chatmail_metrics::metadata().expired_in_queue();
                    tracing::warn!(
                        token = %token_tag(&item.token),
                        attempts = item.attempts,
                        "push notification given up: deadline passed while queued"
                    );
                }
                for item in items {
                    started.insert(item.id);
                    in_flight.spawn(attempt(Arc::clone(&ctx), item));
                }
                next_due
            }
            Err(QueueError::Closed) => break,
            Err(e) => {
                tracing::error!("push queue: {e}");
                // The claim may have marked rows that were never started.
                let keep = started.clone();
                let _ = ctx
                    .queue
                    .call(move |q| {
                        q.release_all_but(&keep);
                        Ok(())
                    })
                    .await;
                tokio::select! {
                    _ = stop.changed() => break,
                    () = tokio::time::sleep(Duration::from_secs(5)) => continue,
                }
            }
        };
        let can_start = in_flight.len() < ctx.options.max_in_flight;
        let due = next_due.filter(|_| can_start);
        let sleep = async {
            match due {
                Some(at) => ctx.clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.changed() => break,
            () = wake.notified() => {}
            Some(ended) = in_flight.join_next(), if !in_flight.is_empty() => {
                forget(&mut started, ended);
            }
            () = sleep => {}
        }
    }
    in_flight.abort_all();
    while in_flight.join_next().await.is_some() {}
}

/// Drops the row id an ended POST task returned from `started`.
fn forget(started: &mut HashSet<i64>, ended: Result<i64, tokio::task::JoinError>) {
    match ended {
        Ok(id) => {
            started.remove(&id);
        }
        // Only an abort (on stop) or a panic ends a task without its id.
        Err(e) => tracing::error!("push notification task ended: {e}"),
    }
}

/// What the gateway said.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Delivered,
    Gone,
    Failed(String),
}

async fn post(ctx: &Ctx, token: &str) -> Answer {
    let sent = ctx
        .client
        .post(&ctx.options.url)
        .body(token.to_owned())
        .send()
        .await;
    chatmail_metrics::metadata().posted(sent.as_ref().ok().map(|r| r.status().as_u16()));
    match sent {
        Ok(resp) => match resp.status().as_u16() {
            200 => Answer::Delivered,
            410 => Answer::Gone,
            status => Answer::Failed(format!("HTTP status {status}")),
        },
        Err(e) => Answer::Failed(error_chain(&e.without_url())),
    }
}

/// `url` without its query and fragment (`?<redacted>` in their place):
/// a gateway's API key typically rides in the query.
pub fn redacted_url(url: &str) -> String {
    match url.find(['?', '#']) {
        Some(i) => format!("{}?<redacted>", &url[..i]),
        None => url.to_owned(),
    }
}

/// An error and its causes on one line, outermost first, repeated
/// messages (a wrapper quoting its source) left out.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out.replace(['\n', '\r'], " ")
}

/// How often a gateway that keeps failing is summarized in the log.
pub const FAILURE_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// What [`FailureLog`] says should be logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayLog {
    /// The first failure after success (or start): a warning.
    Failing(String),
    /// Still failing: the failures since the last line, and the last error.
    StillFailing {
        /// Failed attempts since the last line.
        failures: u64,
        /// The last error.
        last: String,
    },
    /// The gateway answers again after `failures` failed attempts.
    Recovered {
        /// Failed attempts while it was down.
        failures: u64,
    },
}

/// The gateway's state as the log sees it: one line when it starts
/// failing, one summary per [`FAILURE_SUMMARY_INTERVAL`] while it keeps
/// failing, one line when it answers again.
#[derive(Debug, Default)]
pub struct FailureLog {
    down: Option<Down>,
}

#[derive(Debug)]
struct Down {
    total: u64,
    since_line: u64,
    last_line: Instant,
}

impl FailureLog {
    /// Records a failed attempt.
    pub fn failed(&mut self, now: Instant, why: &str) -> Option<GatewayLog> {
        let Some(down) = &mut self.down else {
            self.down = Some(Down {
                total: 1,
                since_line: 0,
                last_line: now,
            });
            return Some(GatewayLog::Failing(why.to_owned()));
        };
        down.total += 1;
        down.since_line += 1;
        if now.duration_since(down.last_line) < FAILURE_SUMMARY_INTERVAL {
            return None;
        }
        down.last_line = now;
        Some(GatewayLog::StillFailing {
            failures: std::mem::take(&mut down.since_line),
            last: why.to_owned(),
        })
    }

    /// Records an answer from the gateway (any that is not a failure).
    pub fn answered(&mut self) -> Option<GatewayLog> {
        self.down
            .take()
            .map(|d| GatewayLog::Recovered { failures: d.total })
    }
}

fn log_gateway(url: &str, line: Option<GatewayLog>) {
    match line {
        None => {}
        Some(GatewayLog::Failing(why)) => {
            tracing::warn!(gateway = %url, "push gateway failing, notifications are retried: {why}");
        }
        Some(GatewayLog::StillFailing { failures, last }) => tracing::warn!(
            gateway = %url,
            failures,
            "push gateway still failing: {failures} more failed attempts; last: {last}"
        ),
        Some(GatewayLog::Recovered { failures }) => tracing::info!(
            gateway = %url,
            failures,
            "push gateway answers again after {failures} failed attempts"
        ),
    }
}

/// POSTs `item` and records the outcome; returns its row id.
async fn attempt(ctx: Arc<Ctx>, item: Item) -> i64 {
    let tag = token_tag(&item.token);
    let answer = post(&ctx, &item.token).await;
    let line = {
        let mut log = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
        match &answer {
            Answer::Failed(why) => log.failed(Instant::now(), why),
            _ => log.answered(),
        }
    };
    log_gateway(&ctx.shown_url, line);
    chatmail_metrics::metadata().waited(ctx.clock.now() - item.start_ts);
    let outcome = match &answer {
        Answer::Delivered => {
            // One line per push, as the milter logs one per message: how an
            // operator sees that a phone was woken.
            tracing::info!(addr = %item.addr, token = %tag, "push notification delivered");
            Outcome::Done
        }
        Answer::Gone => {
            chatmail_metrics::metadata().token_gone();
            match ctx
                .tokens
                .remove(&item.addr, &item.token, ctx.clock.now())
                .await
            {
                Ok(_) => tracing::info!(
                    addr = %item.addr,
                    token = %tag,
                    "gateway reports token gone (410); removed"
                ),
                Err(e) => tracing::warn!(
                    addr = %item.addr,
                    token = %tag,
                    "gateway reports token gone (410), but removing it failed: {e}"
                ),
            }
            Outcome::Done
        }
        Answer::Failed(why) => {
            tracing::debug!(token = %tag, attempt = item.attempts + 1, "push notification failed: {why}");
            Outcome::Failed
        }
    };
    let now = ctx.clock.now();
    let id = item.id;
    match ctx.queue.call(move |q| q.finish(id, outcome, now)).await {
        Ok(Finished::Done) => {}
        Ok(Finished::Retry(at)) => {
            chatmail_metrics::metadata().retry();
            tracing::debug!(token = %tag, in_secs = at - now, "push notification will be retried");
        }
        Ok(Finished::GivenUp) => {
            chatmail_metrics::metadata().given_up();
            tracing::warn!(
                token = %tag,
                attempts = item.attempts + 1,
                "push notification given up"
            );
        }
        Err(e) => tracing::error!(token = %tag, "push queue: {e}"),
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_logged_without_their_query() {
        let cases = [
            (
                "https://gw.example/notify?key=SECRET",
                "https://gw.example/notify?<redacted>",
            ),
            (
                "http://127.0.0.1:8080/n#SECRET",
                "http://127.0.0.1:8080/n?<redacted>",
            ),
            ("https://gw.example/notify", "https://gw.example/notify"),
        ];
        for (url, shown) in cases {
            assert_eq!(redacted_url(url), shown);
        }
    }

    #[tokio::test]
    async fn errors_are_logged_with_their_cause_and_no_query() {
        // A port nobody listens on: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ctx_options = DeliveryOptions {
            url: format!("http://127.0.0.1:{port}/notify?api_key=SECRET"),
            request_timeout: Duration::from_secs(5),
            max_in_flight: 1,
            h2c: false,
        };
        let client = http_client(&ctx_options).unwrap();
        let err = client
            .post(&ctx_options.url)
            .body("t")
            .send()
            .await
            .unwrap_err();
        let line = error_chain(&err.without_url());
        assert!(!line.contains("SECRET"), "{line}");
        assert!(!line.contains('\n'), "{line}");
        assert!(line.contains("onnection refused"), "{line}");
    }

    #[test]
    fn a_failing_gateway_is_logged_on_change_and_in_summaries() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut log = FailureLog::default();
        assert_eq!(log.answered(), None);
        assert_eq!(
            log.failed(s(0), "refused"),
            Some(GatewayLog::Failing("refused".into()))
        );
        for i in 1..=59 {
            assert_eq!(log.failed(s(i), "refused"), None, "{i}");
        }
        assert_eq!(
            log.failed(s(60), "timeout"),
            Some(GatewayLog::StillFailing {
                failures: 60,
                last: "timeout".into()
            })
        );
        assert_eq!(log.failed(s(61), "refused"), None);
        assert_eq!(log.answered(), Some(GatewayLog::Recovered { failures: 62 }));
        assert_eq!(log.answered(), None);
        assert_eq!(
            log.failed(s(62), "x"),
            Some(GatewayLog::Failing("x".into()))
        );
    }

    #[test]
    fn token_tags_are_short_and_stable() {
        assert_eq!(token_tag("abc"), token_tag("abc"));
        assert_ne!(token_tag("abc"), token_tag("abd"));
        assert_eq!(token_tag("abc").len(), 8);
    }

    #[tokio::test]
    async fn batched_jobs_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(&dir.path().join("q.sqlite")).unwrap();
        let (handle, thread) = QueueHandle::spawn(queue).unwrap();
        let bad = handle.call(|q| {
            q.enqueue("a@x", "1", 0, 0)?;
            q.conn().execute_batch("SELECT * FROM nonexistent")?;
            Ok(())
        });
        let good = handle.call(|q| q.enqueue("b@x", "2", 0, 0));
        let (bad, good) = tokio::join!(bad, good);
        assert!(bad.is_err());
        assert!(good.unwrap());
        assert_eq!(handle.call(|q| q.len()).await.unwrap(), 1);
        handle.stop();
        thread.join().unwrap();
        assert!(matches!(
            handle.call(|q| q.len()).await,
            Err(QueueError::Closed)
        ));
    }
}
