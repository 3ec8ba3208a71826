//! Runs `chatmail metadata` (its real `run` entry point) on a temp Unix
//! socket (through the shared harness of `chatmail-wire-test`) over a temp
//! mailbox store, with a hand-driven clock and the
//! stand-in notification gateway of `chatmail-push-gateway-stub` (HTTP/2
//! with prior knowledge or HTTP/1.1) that records POST bodies and answers
//! scripted statuses.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chatmail_config::Config;
use chatmail_mailbox::Store;
use chatmail_metadata::{ManualClock, MetadataOptions};
use chatmail_net::Listener;
use chatmail_wire_test::{LineClient, Spawned, bind_unix};

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

/// The stand-in notification gateway.
pub use chatmail_push_gateway_stub::Gateway;

// ---------------------------------------------------------------- server

/// One running `run` plus the directory it works in.
pub struct Server {
    pub socket: PathBuf,
    pub config: Arc<Config>,
    pub clock: ManualClock,
    pub queue_db: PathBuf,
    server: Spawned,
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

    /// The tokens on disk for `addr`, without their times.
    pub fn token_names_on_disk(&self, addr: &str) -> Vec<String> {
        self.tokens_on_disk(addr)
            .into_iter()
            .map(|(t, _)| t)
            .collect()
    }

    /// Options as `run` gets them in production, pointed into the temp dir.
    pub fn options(&self, gateway: &Gateway) -> MetadataOptions {
        let mut options = MetadataOptions::from_config(&self.config);
        options.push_url = gateway.url.clone();
        // The tests of queueing and multiplexing speak h2c; the HTTP/1.1
        // ones switch it off.
        options.push_h2c = true;
        options.appversions_file = self.dir.path().join("appversions.json");
        options.turn.socket_path = self.dir.path().join("turn.socket");
        options.clock = Arc::new(self.clock.clone());
        options
    }

    pub fn queue_db(&self) -> PathBuf {
        chatmail_metadata::default_queue_db(&self.config.mailboxes_dir)
    }

    pub async fn start(&self, options: MetadataOptions) -> Server {
        let name = format!(
            "metadata-{}.socket",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let (socket, listener) = bind_unix(self.dir.path(), &name);
        let queue_db = options.queue_db.clone();
        let config = Arc::clone(&self.config);
        let server = Spawned::spawn(|stop| {
            chatmail_metadata::run(Listener::from_unix(listener), config, options, stop)
        });
        Server {
            socket,
            config: Arc::clone(&self.config),
            clock: self.clock.clone(),
            queue_db,
            server,
        }
    }
}

/// A world with the account `addr`, a gateway, and the daemon on it with
/// the options of production ([`World::options`]).
pub async fn started(addr: &str) -> (World, Gateway, Server) {
    let world = World::new();
    world.account(addr);
    let gateway = Gateway::start().await;
    let server = world.start(world.options(&gateway)).await;
    (world, gateway, server)
}

impl Server {
    pub async fn client(&self) -> Client {
        let mut c = Client {
            line: LineClient::connect(&self.socket)
                .await
                .with_patience(PATIENCE),
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

    pub async fn shutdown(self) {
        self.server.shutdown_within(PATIENCE).await;
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

/// A dict connection as Dovecot's metadata plugin opens it; the line
/// client's methods are its own.
pub struct Client {
    line: LineClient,
    next_tx: u32,
}

impl Deref for Client {
    type Target = LineClient;

    fn deref(&self) -> &LineClient {
        &self.line
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut LineClient {
        &mut self.line
    }
}

impl Client {
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
