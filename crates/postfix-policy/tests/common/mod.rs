//! Test harness for the policy server: runs [`serve`] with a scripted
//! [`Handler`] on a Unix socket in a temp directory, and gives byte-exact
//! client helpers.

#![allow(dead_code)]

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use postfix_policy::{Action, Handler, ReplyCode, Request, ServerOptions, serve};
use tokio::net::UnixStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const NO_SUCH_USER: ReplyCode = ReplyCode::constant(550, 1, 1);

/// Answers by recipient and counts the requests it was given.
#[derive(Default)]
pub struct TestHandler {
    pub calls: AtomicUsize,
}

impl TestHandler {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Handler for TestHandler {
    async fn check(&self, req: &Request) -> Action {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match req.recipient() {
            Some("nouser@x") => Action::reply(NO_SUCH_USER, "no such user"),
            Some("slow@x") => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Action::Ok
            }
            Some("echo@x") => Action::Reject(format!(
                "state={:?} instance={} user={}",
                req.protocol_state(),
                req.instance().unwrap_or("-"),
                req.sasl_username().unwrap_or("-"),
            )),
            _ => Action::Dunno,
        }
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
        let path = dir.path().join("policy.sock");
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

    /// Asks the server to stop and waits (5 s at most) until it has.
    pub async fn shutdown(mut self) {
        drop(self.stop.take());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }

    /// Starts stopping without waiting.
    pub fn begin_shutdown(&mut self) {
        drop(self.stop.take());
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// A request as Postfix sends it at RCPT for `recipient`, with its empty line.
pub fn rcpt(recipient: &str) -> Vec<u8> {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address=192.0.2.1\nsender=a@example.org\nrecipient={recipient}\n\
         instance=1a2b.5f3e7d21.8c4a1.0\nsasl_username=a@example.org\n\n"
    )
    .into_bytes()
}

pub use chatmail_wire_test::*;
