//! Runs `chatmail auth` (its real `run` entry point) on a temp Unix socket
//! (through the shared harness of `chatmail-wire-test`) over a temp mailbox
//! store, with a resource meter the test controls.

#![allow(dead_code)]

use std::io;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmail_accounts::meter::ResourceMeter;
use chatmail_accounts::rules::Resources;
use chatmail_config::Config;
use chatmail_net::Listener;
use chatmail_wire_test::{LineClient, Spawned, bind_unix};

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
            chatmail_auth::run_with_meter(
                Listener::from_unix(listener),
                config.clone(),
                meter.clone(),
                stop,
            )
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
        let line = LineClient::connect(&self.socket).await;
        let mut c = Client(line.with_patience(Duration::from_secs(10)));
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

/// A connection to the auth socket, as Dovecot's passdb and userdb open
/// it; the line client's methods are its own.
pub struct Client(LineClient);

impl Deref for Client {
    type Target = LineClient;

    fn deref(&self) -> &LineClient {
        &self.0
    }
}

impl DerefMut for Client {
    fn deref_mut(&mut self) -> &mut LineClient {
        &mut self.0
    }
}

impl Client {
    /// A passdb lookup as Dovecot sends it for `password_key = passdb/%Ew"%Eu`.
    pub async fn passdb(&mut self, password: &str, user: &str) -> String {
        self.request(&format!("Lshared/passdb/{password}\"{user}\t{user}\n"))
            .await
    }
}
