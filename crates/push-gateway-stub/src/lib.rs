//! The one stand-in for the Delta Chat notification gateway, the only
//! component the tests do not run for real (docs/design.md, "Push" and "How
//! we test"): a cleartext server on 127.0.0.1 that speaks HTTP/2 with
//! prior knowledge (h2c) and HTTP/1.1, told apart by the HTTP/2 preface,
//! records every request body (the device token) and answers `POST /notify`
//! with a status the test chooses (200 unless scripted), anything else 404.
//!
//! Used by the metadata crate's socket tests, the push benchmark and, as the
//! `push-gateway` binary, the pytest integration tests. A dev/test crate:
//! nothing shipped may depend on it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Longest [`Gateway::wait_count`] waits.
const PATIENCE: Duration = Duration::from_secs(10);

/// How a [`Gateway`] answers beyond scripted statuses.
#[derive(Debug, Default)]
pub struct Options {
    /// Tokens starting with `gone-` get 410 and tokens starting with `slow-`
    /// are answered after 3 seconds (a stalled gateway), unless scripted.
    pub prefix_rules: bool,
    /// Appends one JSON line per answered request:
    /// `{"status": ..., "token": ..., "version": ...}`.
    pub log: Option<std::fs::File>,
}

#[derive(Default)]
struct State {
    /// Per token: statuses to answer, in order; afterwards the default.
    script: HashMap<String, VecDeque<u16>>,
    /// Tokens whose requests wait until released.
    held: HashSet<String>,
    /// Every request waits until released.
    hold_all: bool,
    /// (body, status) of every answered or held request, in arrival order.
    seen: Vec<(String, u16)>,
    connections: usize,
    versions: HashSet<String>,
}

struct Shared {
    state: Mutex<State>,
    prefix_rules: bool,
    log: Option<Mutex<std::fs::File>>,
    answered: mpsc::UnboundedSender<(String, Instant)>,
}

/// The stand-in notification gateway; stops when dropped.
pub struct Gateway {
    /// `http://127.0.0.1:PORT/notify`.
    pub url: String,
    shared: Arc<Shared>,
    release: watch::Sender<u64>,
    answered: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Instant)>>,
    task: JoinHandle<()>,
}

impl Gateway {
    /// Listens on a free port of 127.0.0.1, answering 200 unless scripted.
    ///
    /// # Panics
    /// When no port of 127.0.0.1 can be bound.
    pub async fn start() -> Gateway {
        Gateway::start_with(Options::default()).await
    }

    /// [`Gateway::start`] with `options`.
    ///
    /// # Panics
    /// When no port of 127.0.0.1 can be bound.
    pub async fn start_with(options: Options) -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("cannot listen on 127.0.0.1");
        let url = format!(
            "http://{}/notify",
            listener
                .local_addr()
                .expect("a bound socket has an address")
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            prefix_rules: options.prefix_rules,
            log: options.log.map(Mutex::new),
            answered: tx,
        });
        let (release, _) = watch::channel(0u64);
        let task = {
            let shared = Arc::clone(&shared);
            let release = release.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    shared.state.lock().unwrap().connections += 1;
                    let shared = Arc::clone(&shared);
                    let release = release.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            handle(Arc::clone(&shared), release.subscribe(), req)
                        });
                        let mut preface = [0u8; 3];
                        let h2 =
                            matches!(stream.peek(&mut preface).await, Ok(3)) && &preface == b"PRI";
                        if h2 {
                            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        } else {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    });
                }
            })
        };
        Gateway {
            url,
            shared,
            release,
            answered: tokio::sync::Mutex::new(rx),
            task,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// Answers the next requests for `token` with `statuses`, then the default.
    pub fn script(&self, token: &str, statuses: &[u16]) {
        self.state()
            .script
            .entry(token.to_owned())
            .or_default()
            .extend(statuses);
    }

    /// Requests for `token` get no answer until [`Gateway::release`].
    pub fn hold(&self, token: &str) {
        self.state().held.insert(token.to_owned());
    }

    /// Lets held requests (and later ones) through.
    pub fn release(&self, token: &str) {
        self.state().held.remove(token);
        self.release.send_modify(|n| *n += 1);
    }

    /// While `on`, every request waits before it is answered.
    pub fn hold_all(&self, on: bool) {
        self.state().hold_all = on;
        self.release.send_modify(|n| *n += 1);
    }

    /// Bodies of all requests so far.
    pub fn bodies(&self) -> Vec<String> {
        self.state().seen.iter().map(|(b, _)| b.clone()).collect()
    }

    /// How many requests carried `token`.
    pub fn count(&self, token: &str) -> usize {
        self.bodies().iter().filter(|b| *b == token).count()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state().connections
    }

    /// HTTP versions seen (`"HTTP/2.0"`, `"HTTP/1.1"`).
    pub fn versions(&self) -> HashSet<String> {
        self.state().versions.clone()
    }

    /// Waits until `n` requests carried `token`.
    ///
    /// # Panics
    /// After 10 seconds without them.
    pub async fn wait_count(&self, token: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.count(token) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {n} POSTs of {token}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Forgets which requests were answered so far (for [`Gateway::next_answered`]).
    pub fn drain(&self) {
        if let Ok(mut rx) = self.answered.try_lock() {
            while rx.try_recv().is_ok() {}
        }
    }

    /// The next answered request: its body and when it was answered; `None`
    /// when none comes within `timeout`.
    pub async fn next_answered(&self, timeout: Duration) -> Option<(String, Instant)> {
        let mut rx = self.answered.lock().await;
        tokio::time::timeout(timeout, rx.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    shared: Arc<Shared>,
    mut release: watch::Receiver<u64>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let version = format!("{:?}", req.version());
    let ok = req.method() == hyper::Method::POST && req.uri().path() == "/notify";
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    let status = {
        let mut s = shared.state.lock().unwrap();
        s.versions.insert(version.clone());
        let status = if ok {
            s.script
                .get_mut(&body)
                .and_then(VecDeque::pop_front)
                .unwrap_or(if shared.prefix_rules && body.starts_with("gone-") {
                    410
                } else {
                    200
                })
        } else {
            404
        };
        s.seen.push((body.clone(), status));
        status
    };
    loop {
        {
            let s = shared.state.lock().unwrap();
            if !s.hold_all && !s.held.contains(&body) {
                break;
            }
        }
        if release.changed().await.is_err() {
            break;
        }
    }
    if shared.prefix_rules && body.starts_with("slow-") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if let Some(log) = &shared.log {
        let line = serde_json::json!({"token": body, "version": version, "status": status});
        if let Ok(mut f) = log.lock() {
            let _ = writeln!(f, "{line}");
        }
    }
    let _ = shared.answered.send((body, Instant::now()));
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .unwrap())
}
