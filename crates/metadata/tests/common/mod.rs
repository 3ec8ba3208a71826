//! Runs `chatmail metadata` (its real `run` entry point) on a temp Unix
//! socket over a temp mailbox store, with a hand-driven clock and a local
//! cleartext HTTP/2 (h2c) notification gateway that records POST bodies and
//! answers scripted statuses.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmail_config::Config;
use chatmail_mailbox::Store;
use chatmail_metadata::{ManualClock, MetadataOptions};
use chatmail_net::Listener;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

pub const DOMAIN: &str = "example.org";
pub const GUID: &str = "43f5f508a7ea0366dff30200c15250e3";
/// A fixed "now" far from any real clock, so nothing passes by accident.
pub const T0: i64 = 1_800_000_000;
/// Longest wait for anything a test expects to happen.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub fn devicetoken_key() -> String {
    format!("priv/{GUID}/devicetoken")
}

pub fn messagenew_key() -> String {
    format!("priv/{GUID}/messagenew")
}

pub fn info_key(name: &str) -> String {
    format!("shared/{GUID}/vendor/vendor.dovecot/pvt/server/vendor/deltachat/{name}")
}

/// Polls `cond` until it holds; fails the test after [`PATIENCE`]. Only
/// waits for events, it never assumes how long they take.
pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------- gateway

#[derive(Default)]
struct GatewayState {
    /// Per token: statuses to answer, in order; afterwards 200.
    script: HashMap<String, VecDeque<u16>>,
    /// Tokens whose requests wait until released.
    held: HashSet<String>,
    /// (body, status) of every answered or held request, in arrival order.
    seen: Vec<(String, u16)>,
    connections: usize,
    versions: HashSet<String>,
}

/// The stand-in notification gateway.
pub struct Gateway {
    pub url: String,
    state: Arc<Mutex<GatewayState>>,
    release: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Gateway {
    pub async fn start() -> Gateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(GatewayState::default()));
        let (release, _) = watch::channel(0u64);
        let task = {
            let state = Arc::clone(&state);
            let release = release.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        break;
                    };
                    state.lock().unwrap().connections += 1;
                    let state = Arc::clone(&state);
                    let release = release.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            handle(Arc::clone(&state), release.subscribe(), req)
                        });
                        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            })
        };
        Gateway {
            url,
            state,
            release,
            task,
        }
    }

    /// Answers the next requests for `token` with `statuses`, then 200.
    pub fn script(&self, token: &str, statuses: &[u16]) {
        self.state
            .lock()
            .unwrap()
            .script
            .entry(token.to_owned())
            .or_default()
            .extend(statuses);
    }

    /// Requests for `token` get no answer until [`Gateway::release`].
    pub fn hold(&self, token: &str) {
        self.state.lock().unwrap().held.insert(token.to_owned());
    }

    /// Lets held requests (and later ones) through.
    pub fn release(&self, token: &str) {
        self.state.lock().unwrap().held.remove(token);
        self.release.send_modify(|n| *n += 1);
    }

    /// Bodies of all requests so far.
    pub fn bodies(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .map(|(b, _)| b.clone())
            .collect()
    }

    pub fn count(&self, token: &str) -> usize {
        self.bodies().iter().filter(|b| *b == token).count()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().unwrap().connections
    }

    pub fn versions(&self) -> HashSet<String> {
        self.state.lock().unwrap().versions.clone()
    }

    pub async fn wait_count(&self, token: &str, n: usize) {
        wait_for(&format!("{n} POSTs of {token}"), || self.count(token) >= n).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    state: Arc<Mutex<GatewayState>>,
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
        let mut s = state.lock().unwrap();
        s.versions.insert(version);
        let status = if ok {
            s.script
                .get_mut(&body)
                .and_then(VecDeque::pop_front)
                .unwrap_or(200)
        } else {
            404
        };
        s.seen.push((body.clone(), status));
        status
    };
    while state.lock().unwrap().held.contains(&body) {
        if release.changed().await.is_err() {
            break;
        }
    }
    Ok(Response::builder()
        .status(status)
        .body(Full::new(Bytes::new()))
        .unwrap())
}

// ---------------------------------------------------------------- server

/// One running `run` plus the directory it works in.
pub struct Server {
    pub socket: PathBuf,
    pub config: Arc<Config>,
    pub clock: ManualClock,
    pub queue_db: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

/// The directory a test works in; outlives server restarts.
pub struct World {
    pub dir: tempfile::TempDir,
    pub config: Arc<Config>,
    pub clock: ManualClock,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(Config::for_tests(DOMAIN, &dir.path().join("mail")));
        std::fs::create_dir_all(&config.mailboxes_dir).unwrap();
        World {
            dir,
            config,
            clock: ManualClock::new(T0),
        }
    }

    pub fn store(&self) -> Store {
        Store::from_config(&self.config)
    }

    /// Creates the account `addr` (its directory, as Dovecot/auth would).
    pub fn account(&self, addr: &str) {
        self.store()
            .mailbox(addr)
            .unwrap()
            .create("{SHA512-CRYPT}$6$x$y")
            .unwrap();
    }

    pub fn tokens_on_disk(&self, addr: &str) -> Vec<(String, i64)> {
        let m = self.store().mailbox(addr).unwrap().read_metadata().unwrap();
        m.devicetoken.into_iter().collect()
    }

    /// Options as `run` gets them in production, pointed into the temp dir.
    pub fn options(&self, gateway: &Gateway) -> MetadataOptions {
        let mut options = MetadataOptions::from_config(&self.config);
        options.push_url = gateway.url.clone();
        options.appversions_file = self.dir.path().join("appversions.json");
        options.turn.socket_path = self.dir.path().join("turn.socket");
        options.clock = Arc::new(self.clock.clone());
        options
    }

    pub fn queue_db(&self) -> PathBuf {
        chatmail_metadata::default_queue_db(&self.config.mailboxes_dir)
    }

    pub async fn start(&self, options: MetadataOptions) -> Server {
        let socket = self.dir.path().join(format!(
            "metadata-{}.socket",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let listener = Listener::bind(&format!("unix:{}", socket.display()).parse().unwrap())
            .await
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let queue_db = options.queue_db.clone();
        let task = tokio::spawn(chatmail_metadata::run(
            listener,
            Arc::clone(&self.config),
            options,
            async {
                let _ = stopped.await;
            },
        ));
        Server {
            socket,
            config: Arc::clone(&self.config),
            clock: self.clock.clone(),
            queue_db,
            stop: Some(stop),
            task: Some(task),
        }
    }
}

impl Server {
    pub async fn client(&self) -> Client {
        let stream = UnixStream::connect(&self.socket).await.unwrap();
        let (r, w) = stream.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
            next_tx: 1,
        };
        // What Dovecot 2.3's dict client sends first.
        c.send("H3\t2\t0\t\tmetadata\n").await;
        c
    }

    /// Rows in the queue database, read as a second process would.
    pub fn queued(&self) -> Vec<(String, String, i64, i64)> {
        queued(&self.queue_db)
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(PATIENCE, self.task.take().unwrap())
            .await
            .expect("shutdown took too long")
            .unwrap()
            .unwrap();
    }
}

/// `(addr, token, attempts, next_ts)` of every row in the queue at `db`.
pub fn queued(db: &Path) -> Vec<(String, String, i64, i64)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT addr, token, attempts, next_ts FROM queue ORDER BY id")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

pub struct Client {
    r: BufReader<tokio::net::unix::OwnedReadHalf>,
    w: tokio::net::unix::OwnedWriteHalf,
    next_tx: u32,
}

impl Client {
    pub async fn send(&mut self, bytes: &str) {
        self.w.write_all(bytes.as_bytes()).await.unwrap();
    }

    pub async fn line(&mut self) -> String {
        let mut line = String::new();
        // A missing reply must fail the test, not hang it.
        tokio::time::timeout(PATIENCE, self.r.read_line(&mut line))
            .await
            .expect("no reply in time")
            .unwrap();
        line
    }

    pub async fn request(&mut self, bytes: &str) -> String {
        self.send(bytes).await;
        self.line().await
    }

    pub async fn lookup(&mut self, key: &str, user: &str) -> String {
        self.request(&format!("L{key}\t{user}\n")).await
    }

    /// One transaction as Dovecot's dict client sends it; returns the
    /// commit reply with the id replaced by `#`.
    pub async fn transaction(&mut self, user: &str, ops: &[String]) -> String {
        let id = self.next_tx;
        self.next_tx += 1;
        let mut text = format!("B{id}\t{user}\n");
        for op in ops {
            text.push_str(&op.replace("{id}", &id.to_string()));
            text.push('\n');
        }
        text.push_str(&format!("C{id}\n"));
        let reply = self.request(&text).await;
        reply.replacen(&id.to_string(), "#", 1)
    }

    pub async fn set(&mut self, user: &str, key: &str, value: &str) -> String {
        self.transaction(user, &[format!("S{{id}}\t{key}\t{value}")])
            .await
    }

    pub async fn unset(&mut self, user: &str, key: &str) -> String {
        self.transaction(user, &[format!("U{{id}}\t{key}")]).await
    }
}
