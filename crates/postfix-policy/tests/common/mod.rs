//! Test harness for the policy server: runs [`serve`] with a scripted
//! [`Handler`] on a Unix socket in a temp directory, and gives byte-exact
//! client helpers.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chatmail_net::Listener;
use chatmail_wire_test::{Scripted, Served, Serving, Stop};
use postfix_policy::{Action, Handler, ReplyCode, Request, ServerOptions, serve};
use tokio::net::UnixListener;

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
pub type TestServer = Served<TestHandler>;

impl Scripted for TestHandler {
    type Options = ServerOptions;
    const SOCKET: &'static str = "policy.sock";
    const HELLO: &'static [u8] = b"";

    fn serve(listener: UnixListener, handler: Arc<Self>, o: ServerOptions, stop: Stop) -> Serving {
        Box::pin(serve(Listener::from_unix(listener), handler, o, stop))
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
