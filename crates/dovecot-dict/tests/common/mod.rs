//! Test harness for the dict server: runs [`serve`] with a scripted
//! [`Handler`] on a Unix socket in a temp directory, and gives byte-exact
//! client helpers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatmail_net::Listener;
use chatmail_wire_test::{Scripted, Served, Serving, Stop};
use dovecot_dict::{CommitResult, Handler, LookupResult, Op, ServerOptions, Transaction, serve};
use tokio::net::UnixListener;

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
pub type TestServer = Served<TestHandler>;

impl Scripted for TestHandler {
    type Options = ServerOptions;
    const SOCKET: &'static str = "dict.sock";
    const HELLO: &'static [u8] = b"H3\t2\t0\t\tpassdb\n";

    fn serve(listener: UnixListener, handler: Arc<Self>, o: ServerOptions, stop: Stop) -> Serving {
        Box::pin(serve(Listener::from_unix(listener), handler, o, stop))
    }
}

pub use chatmail_wire_test::*;
