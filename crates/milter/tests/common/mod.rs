//! Test helper: runs `chatmail_milter::run` on a temp Unix socket over a temp
//! mailbox tree, and drives it with indymilter-test the way Postfix would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chatmail_config::Config;
use chatmail_net::Listener;
use indymilter_test::{MacroStage, Status, TestConnection};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const DOMAIN: &str = "chat.example";
pub const ALICE: &str = "alice@chat.example";
pub const STRICT: &str = "strict@chat.example";
pub const OPEN: &str = "open@chat.example";
pub const REMOTE: &str = "bob@other.example";

/// A running milter; [`Milter::stop`] shuts it down.
pub struct Milter {
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Milter {
    /// Starts with the default config, local users `strict` (enforcing) and `open`.
    pub async fn start() -> Milter {
        Milter::start_with(|_| {}).await
    }

    /// Starts with a config adjusted by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Milter {
        let dir = tempfile::tempdir().unwrap();
        let mailboxes = dir.path().join("mail");
        for (addr, enforce) in [(STRICT, true), (OPEN, false), (ALICE, true)] {
            let d = mailboxes.join(addr);
            std::fs::create_dir_all(&d).unwrap();
            if enforce {
                std::fs::write(d.join("enforceE2EEincoming"), b"").unwrap();
            }
        }
        let mut config = Config::for_tests(DOMAIN, &mailboxes);
        tweak(&mut config);
        let socket = dir.path().join("milter.sock");
        let listener = Listener::from_unix(tokio::net::UnixListener::bind(&socket).unwrap());
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(chatmail_milter::run(listener, Arc::new(config), async {
            let _ = rx.await;
        }));
        Milter {
            socket,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
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
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap().unwrap();
    }
}

/// The envelope of one test message.
pub struct Env<'a> {
    pub login: Option<&'a str>,
    pub sender: &'a str,
    pub rcpts: &'a [&'a str],
}

/// Sends MAIL FROM (with the auth macro when logged in) and the RCPT TOs.
pub async fn envelope(conn: &mut TestConnection, env: &Env<'_>) {
    let mut macros = vec![("i", "")];
    if let Some(login) = env.login {
        macros.push(("{auth_type}", "PLAIN"));
        macros.push(("{auth_authen}", login));
    }
    conn.macros(MacroStage::Mail, macros).await.unwrap();
    assert_eq!(
        conn.mail([format!("<{}>", env.sender)]).await.unwrap(),
        Status::Continue
    );
    for r in env.rcpts {
        assert_eq!(
            conn.rcpt([format!("<{r}>")]).await.unwrap(),
            Status::Continue
        );
    }
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
