//! Test harness for the dict server: runs [`serve`] with a scripted
//! [`Handler`] on a Unix socket in a temp directory, and gives byte-exact
//! client helpers.

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dovecot_dict::{CommitResult, Handler, LookupResult, Op, ServerOptions, Transaction, serve};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Answers from a fixed script and records every commit it is given.
#[derive(Default)]
pub struct TestHandler {
    pub commits: Mutex<Vec<Transaction>>,
}

impl TestHandler {
    pub fn commits(&self) -> Vec<Transaction> {
        self.commits.lock().unwrap().clone()
    }
}

impl Handler for TestHandler {
    async fn lookup(&self, key: &str, user: Option<&str>) -> LookupResult {
        match key {
            "shared/found" => LookupResult::Found("value".into()),
            "shared/escape" => LookupResult::Found("a\tb\nc\r\u{1}d".into()),
            "shared/fail" => LookupResult::Failed("backend\tdown".into()),
            "shared/many" => LookupResult::FoundMany(vec!["x".into(), "y\tz".into()]),
            "shared/whoami" => LookupResult::Found(user.unwrap_or("<none>").into()),
            "shared/slow" => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                LookupResult::Found("slow".into())
            }
            k if k.starts_with("shared/echo/") => LookupResult::Found(k.into()),
            _ => LookupResult::NotFound,
        }
    }

    async fn iterate(
        &self,
        path: &str,
        _flags: u32,
        _user: Option<&str>,
    ) -> Result<Vec<(String, String)>, String> {
        if path == "shared/userdb/" {
            Ok(vec![
                ("shared/userdb/a@x".into(), "{\"a\":1}".into()),
                ("shared/userdb/b\tc@x".into(), "tab\there".into()),
            ])
        } else {
            Err("no such path".into())
        }
    }

    async fn commit(&self, tx: Transaction) -> CommitResult {
        let has = |k: &str| {
            tx.ops
                .iter()
                .any(|op| matches!(op, Op::Set { key, .. } if key == k))
        };
        let result = if has("shared/failcommit") {
            CommitResult::Failed("disk\tfull".into())
        } else if has("shared/notfound") {
            CommitResult::NotFound
        } else {
            CommitResult::Ok
        };
        self.commits.lock().unwrap().push(tx);
        result
    }
}

/// A running server; dropping it (or [`TestServer::shutdown`]) stops it.
pub struct TestServer {
    pub path: PathBuf,
    pub handler: Arc<TestHandler>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_with(ServerOptions::default()).await
    }

    pub async fn start_with(options: ServerOptions) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dict.sock");
        let listener =
            chatmail_net::Listener::from_unix(tokio::net::UnixListener::bind(&path).unwrap());
        let handler = Arc::new(TestHandler::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, Arc::clone(&handler), options, async move {
            let _ = stopped.await;
        }));
        TestServer {
            path,
            handler,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    pub async fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.path).await.unwrap()
    }

    /// A connection that has already said HELLO (no user).
    pub async fn hello(&self) -> UnixStream {
        let mut c = self.connect().await;
        c.write_all(b"H3\t2\t0\t\tpassdb\n").await.unwrap();
        c
    }

    pub async fn shutdown(mut self) {
        drop(self.stop.take());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

pub use chatmail_wire_test::*;
