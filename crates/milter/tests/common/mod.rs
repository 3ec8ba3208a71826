//! Test helper: runs the milter on a temp Unix socket over a temp mailbox
//! tree (through the shared harness of `chatmail-wire-test`), and drives it
//! with indymilter-test the way Postfix would.

#![allow(dead_code)]

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chatmail_config::Config;
use chatmail_milter::Filter;
use chatmail_milter::budget::{Budget, Limits};
use chatmail_net::Listener;
use chatmail_wire_test::{Spawned, Stop, bind_unix};
use indymilter_test::{MacroStage, Status, TestConnection};

pub const DOMAIN: &str = "chat.example";
pub const ALICE: &str = "alice@chat.example";
pub const STRICT: &str = "strict@chat.example";
pub const OPEN: &str = "open@chat.example";
pub const REMOTE: &str = "bob@other.example";

/// A temp dir with the mailboxes of the local users (`strict` and `alice`
/// refuse cleartext, `open` accepts it), and the test config for them.
pub fn test_config() -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let mailboxes = dir.path().join("mail");
    for (addr, enforce) in [(STRICT, true), (OPEN, false), (ALICE, true)] {
        let d = mailboxes.join(addr);
        std::fs::create_dir_all(&d).unwrap();
        if enforce {
            std::fs::write(d.join("enforceE2EEincoming"), b"").unwrap();
        }
    }
    let config = Config::for_tests(DOMAIN, &mailboxes);
    (dir, config)
}

/// A running milter; [`Milter::stop`] shuts it down, and so does dropping
/// it.
pub struct Milter {
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    /// The running filter, whose memory budget tests read; `None` when the
    /// daemon's entry point made its own.
    filter: Option<Arc<Filter>>,
    server: Spawned,
}

impl Milter {
    /// Starts with the default config, local users `strict` (enforcing) and `open`.
    pub async fn start() -> Milter {
        Milter::start_with(|_| {}).await
    }

    /// Starts with a config adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Milter {
        Milter::start_limited(tweak, None).await
    }

    /// Starts with a config adjusted by `tweak` and, if given, a memory
    /// budget of these sizes instead of the daemon's.
    pub async fn start_limited(tweak: impl FnOnce(&mut Config), limits: Option<Limits>) -> Milter {
        let (dir, mut config) = test_config();
        tweak(&mut config);
        let config = Arc::new(config);
        let filter = Arc::new(match limits {
            Some(limits) => Filter::with_limits(config, limits),
            None => Filter::new(config),
        });
        // DKIM has its own tests (milter_dkim.rs); these exercise the encryption rules.
        let dkim = Arc::new(chatmail_milter::Dkim::disabled());
        let serving = Arc::clone(&filter);
        Milter::spawn(dir, Some(filter), |listener, stop| {
            chatmail_milter::serve(listener, serving, dkim, stop)
        })
    }

    /// Starts the daemon's entry point on `config`, DKIM as configured;
    /// `dir` is the temp dir `config` points into.
    pub async fn run(dir: tempfile::TempDir, config: Config) -> Milter {
        Milter::spawn(dir, None, |listener, stop| {
            chatmail_milter::run(listener, Arc::new(config), stop)
        })
    }

    fn spawn<F, Fut>(dir: tempfile::TempDir, filter: Option<Arc<Filter>>, serve: F) -> Milter
    where
        F: FnOnce(Listener, Stop) -> Fut,
        Fut: Future<Output = io::Result<()>> + Send + 'static,
    {
        let (socket, listener) = bind_unix(dir.path(), "milter.sock");
        let server = Spawned::spawn(|stop| serve(Listener::from_unix(listener), stop));
        Milter {
            socket,
            dir,
            filter,
            server,
        }
    }

    /// The memory budget of the running filter.
    ///
    /// # Panics
    /// For a milter started through the daemon's entry point.
    pub fn budget(&self) -> &Budget {
        self.filter
            .as_ref()
            .expect("a milter started with a filter of its own")
            .budget()
    }

    /// A negotiated connection, as a Postfix smtpd process opens it.
    pub async fn connect(&self) -> TestConnection {
        TestConnection::configure()
            .open_unix(&self.socket)
            .await
            .unwrap()
    }

    pub fn mailboxes(&self) -> &Path {
        self.dir.path()
    }

    /// Shuts the milter down and checks it exits cleanly.
    pub async fn stop(self) {
        self.server.shutdown().await;
    }

    /// Closes `conn` as Postfix does, then [`Milter::stop`].
    pub async fn stop_after(self, conn: TestConnection) {
        conn.close().await.unwrap();
        self.stop().await;
    }
}

/// The envelope of one test message.
pub struct Env<'a> {
    pub login: Option<&'a str>,
    pub sender: &'a str,
    pub rcpts: &'a [&'a str],
}

/// A message our user `alice` submits, to `rcpts`.
pub fn outgoing<'a>(rcpts: &'a [&'a str]) -> Env<'a> {
    Env {
        login: Some(ALICE),
        sender: ALICE,
        rcpts,
    }
}

/// A message from another server (no login), from `sender` to `rcpts`.
pub fn incoming<'a>(sender: &'a str, rcpts: &'a [&'a str]) -> Env<'a> {
    Env {
        login: None,
        sender,
        rcpts,
    }
}

/// Sends MAIL FROM (with the auth macro when logged in) and the RCPT TOs.
pub async fn envelope(conn: &mut TestConnection, env: &Env<'_>) {
    envelope_sized(conn, env, None).await;
}

/// [`envelope`] with `SIZE=` in MAIL FROM when `size` is given.
pub async fn envelope_sized(conn: &mut TestConnection, env: &Env<'_>, size: Option<usize>) {
    let mut macros = vec![("i", "")];
    if let Some(login) = env.login {
        macros.push(("{auth_type}", "PLAIN"));
        macros.push(("{auth_authen}", login));
    }
    conn.macros(MacroStage::Mail, macros).await.unwrap();
    let mut args = vec![format!("<{}>", env.sender)];
    if let Some(size) = size {
        args.push(format!("SIZE={size}"));
    }
    assert_eq!(conn.mail(args).await.unwrap(), Status::Continue);
    for r in env.rcpts {
        assert_eq!(
            conn.rcpt([format!("<{r}>")]).await.unwrap(),
            Status::Continue
        );
    }
}

/// [`envelope_sized`], then a header of the one field `name: value` and its
/// end, each answered with Continue: the message is ready for its body.
pub async fn through_header(
    conn: &mut TestConnection,
    env: &Env<'_>,
    size: Option<usize>,
    (name, value): (&str, &str),
) {
    envelope_sized(conn, env, size).await;
    assert_eq!(conn.header(name, value).await.unwrap(), Status::Continue);
    assert_eq!(conn.eoh().await.unwrap(), Status::Continue);
}

/// Splits a raw message into header fields (folded lines joined by LF, as
/// Postfix passes them) and the body.
pub fn split_message(raw: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split('\n') {
        if line.starts_with([' ', '\t']) {
            let last = fields.last_mut().unwrap();
            last.1.push('\n');
            last.1.push_str(line);
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_owned(), value.trim_start().to_owned()));
        }
    }
    (fields, body.replace('\n', "\r\n").into_bytes())
}

/// Sends headers and body; returns the first non-Continue status on the
/// way, or the end-of-message status.
pub async fn content(conn: &mut TestConnection, raw: &[u8]) -> Status {
    let (fields, body) = split_message(raw);
    for (name, value) in fields {
        let s = conn.header(name, value).await.unwrap();
        if s != Status::Continue {
            return s;
        }
    }
    let s = conn.eoh().await.unwrap();
    if s != Status::Continue {
        return s;
    }
    for chunk in body.chunks(65535) {
        let s = conn.body(chunk.to_vec()).await.unwrap();
        if s != Status::Continue {
            return s;
        }
    }
    conn.macros(MacroStage::Eom, [("i", "4XyZ1234")])
        .await
        .unwrap();
    conn.eom().await.unwrap().1
}

/// One whole message on an open connection.
pub async fn message(conn: &mut TestConnection, env: &Env<'_>, raw: &[u8]) -> Status {
    envelope(conn, env).await;
    content(conn, raw).await
}

/// [`message`] with the generated test mail `name`.
pub async fn mail(conn: &mut TestConnection, env: Env<'_>, name: &str) -> Status {
    message(conn, &env, &testmail(name)).await
}

/// A temporary failure with exactly this reply text.
pub fn tempfailed(reply: &str) -> Status {
    Status::Tempfail {
        message: Some(std::ffi::CString::new(reply).unwrap()),
    }
}

/// An encrypted test mail grown to about `size` bytes (a longer SEIPD).
pub fn encrypted_of_size(size: usize) -> Vec<u8> {
    chatmail_e2ee::testmail::grow(&testmail("encrypted-v4-seipdv1"), size).unwrap()
}

/// The cleartext test mail padded with plain text lines to about `size`
/// bytes.
pub fn cleartext_of_size(size: usize) -> Vec<u8> {
    let mut raw = testmail("cleartext");
    let line = b"Lorem ipsum dolor sit amet consectetur adipiscing elit\r\n";
    while raw.len() + line.len() <= size {
        raw.extend_from_slice(line);
    }
    raw
}

/// Waits up to 10 s for the budget to be back at zero; the bytes still
/// held otherwise.
pub async fn budget_returned(m: &Milter) -> usize {
    for _ in 0..1000 {
        if m.budget().in_use() == 0 {
            return 0;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    m.budget().in_use()
}

/// A reject status with exactly this reply text.
pub fn rejected(reply: &str) -> Status {
    Status::Reject {
        message: Some(std::ffi::CString::new(reply).unwrap()),
    }
}

/// A generated test mail by name.
pub fn testmail(name: &str) -> Vec<u8> {
    // Key generation is slow in debug builds: generate once per test binary.
    static MAILS: std::sync::OnceLock<Vec<chatmail_e2ee::testmail::TestMail>> =
        std::sync::OnceLock::new();
    let mails = MAILS
        .get_or_init(|| chatmail_e2ee::testmail::generate(ALICE, &[REMOTE.to_owned()]).unwrap());
    mails.iter().find(|m| m.name == name).unwrap().raw.clone()
}
