//! Runs `chatmail auth` (its real `run` entry point) on a temp Unix socket
//! (through the shared harness of `chatmail-wire-test`) over a temp mailbox
//! store, with a resource meter the test controls.

#![allow(dead_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chatmail_accounts::meter::ResourceMeter;
use chatmail_accounts::rules::Resources;
use chatmail_config::Config;
use chatmail_wire_test::{Spawned, bind_unix};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub const DOMAIN: &str = "example.org";

/// A machine whose load the test sets; the second field makes measuring
/// fail with that OS error.
pub struct FakeMeter(pub Mutex<Resources>, pub Mutex<Option<i32>>);

impl FakeMeter {
    pub fn idle() -> Arc<FakeMeter> {
        Arc::new(FakeMeter(
            Mutex::new(Resources {
                load_1m: 0.1,
                available_memory: 8 << 30,
                free_disk: 100 << 30,
            }),
            Mutex::new(None),
        ))
    }
    pub fn set(&self, res: Resources) {
        *self.0.lock().unwrap() = res;
    }
}

impl ResourceMeter for FakeMeter {
    fn measure(&self, _dir: &Path) -> io::Result<Resources> {
        if let Some(errno) = *self.1.lock().unwrap() {
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(*self.0.lock().unwrap())
    }
}

pub struct AuthServer {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub config: Arc<Config>,
    pub meter: Arc<FakeMeter>,
    server: Spawned,
}

impl AuthServer {
    pub async fn start() -> AuthServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests(DOMAIN, &dir.path().join("mail"));
        config.nocreate_file = dir.path().join("nocreate");
        AuthServer::start_with(dir, config).await
    }

    /// Starts on `config`; `dir` is the temp dir it points into.
    pub async fn start_with(dir: tempfile::TempDir, config: Config) -> AuthServer {
        let config = Arc::new(config);
        let (socket, listener) = bind_unix(dir.path(), "auth.socket");
        let meter = FakeMeter::idle();
        let server = Spawned::spawn(|stop| {
            chatmail_auth::run_with_meter(listener, config.clone(), meter.clone(), stop)
        });
        AuthServer {
            dir,
            socket,
            config,
            meter,
            server,
        }
    }

    pub async fn client(&self) -> Client {
        let stream = UnixStream::connect(&self.socket).await.unwrap();
        let (r, w) = stream.into_split();
        let mut c = Client {
            r: BufReader::new(r),
            w,
        };
        c.send("H3\t2\t0\t\tauth\n").await;
        c
    }

    pub fn mailbox_dir(&self, addr: &str) -> PathBuf {
        self.config.mailboxes_dir.join(addr)
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

pub struct Client {
    r: BufReader<tokio::net::unix::OwnedReadHalf>,
    w: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    pub async fn send(&mut self, bytes: &str) {
        self.w.write_all(bytes.as_bytes()).await.unwrap();
    }

    pub async fn line(&mut self) -> String {
        let mut line = String::new();
        // A missing reply must fail the test, not hang it.
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.r.read_line(&mut line),
        )
        .await
        .expect("no reply within 10 s")
        .unwrap();
        line
    }

    pub async fn request(&mut self, bytes: &str) -> String {
        self.send(bytes).await;
        self.line().await
    }

    /// A passdb lookup as Dovecot sends it for `password_key = passdb/%Ew"%Eu`.
    pub async fn passdb(&mut self, password: &str, user: &str) -> String {
        self.request(&format!("Lshared/passdb/{password}\"{user}\t{user}\n"))
            .await
    }
}
