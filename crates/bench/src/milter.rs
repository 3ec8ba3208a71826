//! `chatmail-bench milter`: memory and wall time of `chatmail milter` (its
//! own process, as deployed, with chatmaild's default `max_message_size`)
//! when N Postfix processes hand it large messages at once.
//!
//! Each of N connections speaks the milter protocol as Postfix's smtpd
//! does (MAIL FROM with the SASL login macro and optionally `SIZE=`, RCPT
//! TO, the header fields one by one, the body in 64 KiB chunks, end of
//! message) and sends one message of the given size: every other one a
//! valid OpenPGP/MIME message (whose SEIPD is grown to the size), expected
//! accepted, the others cleartext, expected refused with 523. Reported per
//! row: wall time, the decisions (and any that differ from the expected
//! ones), and the daemon's peak RSS (VmHWM, reset before each row through
//! `/proc/PID/clear_refs`).
//!
//! Ratios: the wall time against the ceiling measured in the same run,
//! the same connections and bytes sent to an in-process indymilter server
//! that stores nothing and accepts everything (the protocol and socket cost
//! alone); the peak RSS against the 128 MiB the daemon is meant to stay
//! under, and against its idle RSS measured in the same run. The daemon
//! starts with an empty environment: its memory bound must hold however it
//! is started (docs/milter-memory.md). [`load`] is one such row on its
//! own, for tests.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use indymilter::{Callbacks, Status as MilterStatus};
use indymilter_test::{MacroStage, Status, TestConnection};
use tokio::process::Command;

use crate::{memory_kib, spawn};

const DOMAIN: &str = "bench.example";
const FROM: &str = "benchsend@bench.example";
const TO: &str = "benchrcpt@bench.example";
const E2EE: &str = "523 5.7.1 Encryption Needed: Invalid Unencrypted Mail";
/// What the milter's peak RSS is meant to stay under.
const RSS_LIMIT_KIB: u64 = 128 * 1024;
/// Postfix's body chunk size (the milter protocol's 64 KiB).
const CHUNK: usize = 65535;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `chatmail` binary whose `milter` is measured.
    pub exe: PathBuf,
    /// Concurrent connections per row.
    pub connections: Vec<usize>,
    /// Bytes per message.
    pub size: usize,
}

/// The decisions of one row.
#[derive(Debug, Default)]
pub struct Row {
    /// From the first connection to the last decision.
    pub wall: Duration,
    /// Encrypted messages accepted, as expected.
    pub accepted: usize,
    /// Cleartext messages refused with the 523 reply, as expected.
    pub refused: usize,
    /// Temporary failures.
    pub tempfailed: usize,
    /// Any other decision.
    pub wrong: usize,
}

/// What one load did to the milter.
#[derive(Debug)]
pub struct Load {
    /// Its decisions.
    pub row: Row,
    /// RSS (KiB) after one small message each way, before the load.
    pub idle_kib: u64,
    /// Peak RSS (KiB) during the load.
    pub peak_kib: u64,
}

/// A running `chatmail milter` and the messages to send it.
struct Rig {
    /// Holds the config, key, mailboxes and socket.
    tmp: tempfile::TempDir,
    milter: tokio::process::Child,
    pid: u32,
    sock: PathBuf,
    /// Half encrypted, half cleartext, of the requested size.
    messages: Arc<[Message; 2]>,
    /// The same two, small, to warm the daemon up.
    small: Arc<[Message; 2]>,
}

impl Rig {
    /// Starts the milter of `exe` with an empty environment and makes its
    /// messages of `size` bytes.
    async fn start(exe: &Path, size: usize) -> io::Result<Rig> {
        let tmp = tempfile::tempdir()?;
        let mailboxes = tmp.path().join("mail");
        std::fs::create_dir_all(&mailboxes)?;
        // Submitted mail is DKIM-signed at the end of the message: the key is
        // part of what the milter does, and of its memory.
        let key = tmp.path().join("dkim.private");
        chatmail_dkim::key::create_key(&key, None).map_err(io::Error::other)?;
        let ini = tmp.path().join("chatmail.ini");
        std::fs::write(
            &ini,
            format!(
                "[params]\nmail_domain = {DOMAIN}\nmailboxes_dir = {}\ndkim_key_file = {}\n",
                mailboxes.display(),
                key.display()
            ),
        )?;
        let sock = tmp.path().join("milter.socket");
        let log = tmp.path().join("milter.log");
        // An empty environment (but for `RUST_LOG`): what the daemon does
        // must not depend on what the caller's environment holds.
        let mut cmd = Command::new(exe);
        cmd.env_clear();
        let milter = spawn(cmd, &["milter"], &sock, Some(&ini), Some(&log)).await?;
        let pid = milter.id().unwrap_or(0);

        let mails =
            chatmail_e2ee::testmail::generate(FROM, &[TO.to_owned()]).map_err(io::Error::other)?;
        let template = |name: &str| {
            mails
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.raw.clone())
                .ok_or_else(|| io::Error::other(format!("no {name} test mail")))
        };
        let encrypted = Message::new(
            &chatmail_e2ee::testmail::grow(&template("encrypted-v4-seipdv1")?, size)
                .map_err(io::Error::other)?,
        );
        let mut clear = template("cleartext")?;
        let line = b"Lorem ipsum dolor sit amet consectetur adipiscing elit sed do\r\n";
        while clear.len() + line.len() <= size {
            clear.extend_from_slice(line);
        }
        let clear = Message::new(&clear);
        let small = Arc::new([
            Message::new(&template("encrypted-v4-seipdv1")?),
            Message::new(&template("cleartext")?),
        ]);
        Ok(Rig {
            tmp,
            milter,
            pid,
            sock,
            messages: Arc::new([encrypted, clear]),
            small,
        })
    }

    /// One small message each way; then the idle RSS (KiB).
    async fn warm_up(&self) -> io::Result<u64> {
        let warm = drive(&self.sock, 2, &self.small, true).await?;
        if warm.accepted + warm.refused != 2 {
            return Err(io::Error::other(format!(
                "small messages not decided as expected: {warm:?}"
            )));
        }
        Ok(memory_kib(self.pid).0)
    }

    /// `n` messages at once; the decisions and the peak RSS (KiB).
    async fn row(&self, n: usize, declare: bool) -> io::Result<(Row, u64)> {
        reset_peak(self.pid);
        let row = drive(&self.sock, n, &self.messages, declare).await?;
        Ok((row, memory_kib(self.pid).1))
    }

    async fn stop(mut self) {
        let _ = self.milter.kill().await;
        drop(self.tmp);
    }
}

/// Starts the milter of `exe` with an empty environment and sends it
/// `connections` messages of `size` bytes at once, half encrypted and half
/// cleartext, with `SIZE=` when `declare`: its decisions and memory.
///
/// # Errors
/// When the milter cannot be started or a connection fails.
pub async fn load(exe: &Path, connections: usize, size: usize, declare: bool) -> io::Result<Load> {
    let rig = Rig::start(exe, size).await?;
    let idle_kib = rig.warm_up().await?;
    let (row, peak_kib) = rig.row(connections, declare).await?;
    rig.stop().await;
    Ok(Load {
        row,
        idle_kib,
        peak_kib,
    })
}

/// Runs the milter benchmark and prints its table.
///
/// # Errors
/// When the milter cannot be started or a connection fails.
pub async fn run(opts: Options) -> io::Result<()> {
    let rig = Rig::start(&opts.exe, opts.size).await?;
    let ceiling_sock = rig.tmp.path().join("ceiling.socket");
    let ceiling = tokio::spawn(ceiling_server(ceiling_sock.clone()));
    let messages = Arc::clone(&rig.messages);
    let idle_kib = rig.warm_up().await?;
    println!(
        "chatmail-bench milter: {} cores, {} bytes per message (half encrypted, half cleartext), \
         max_message_size 31457280, {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        messages[0].raw.len(),
        opts.exe.display()
    );
    println!(
        "chatmail milter environment: empty; idle RSS {:.1} MiB",
        kib_mib(idle_kib)
    );
    println!(
        "{:>5} {:>6} {:>9} {:>9} {:>7} {:>7} {:>6} {:>6} {:>11} {:>9} {:>9}",
        "conns",
        "SIZE=",
        "wall s",
        "ceiling s",
        "ratio",
        "accept",
        "523",
        "other",
        "peak RSS MiB",
        "/128 MiB",
        "/idle"
    );
    for &n in &opts.connections {
        for declare in [true, false] {
            let floor = drive(&ceiling_sock, n, &messages, declare).await?;
            let (row, peak_kib) = rig.row(n, declare).await?;
            println!(
                "{n:>5} {:>6} {:>9.2} {:>9.2} {:>7.2} {:>7} {:>6} {:>6} {:>11.1} {:>9.2} {:>9.1}",
                if declare { "yes" } else { "no" },
                row.wall.as_secs_f64(),
                floor.wall.as_secs_f64(),
                row.wall.as_secs_f64() / floor.wall.as_secs_f64(),
                row.accepted,
                row.refused,
                row.tempfailed + row.wrong,
                kib_mib(peak_kib),
                peak_kib as f64 / RSS_LIMIT_KIB as f64,
                peak_kib as f64 / idle_kib.max(1) as f64,
            );
            if row.wrong > 0 || row.tempfailed > 0 {
                println!(
                    "      {} decisions differ from the expected ones, {} temporary failures",
                    row.wrong, row.tempfailed
                );
            }
        }
    }
    println!(
        "ratio = wall time / ceiling (the same bytes to a milter that stores nothing); \
         expected: the encrypted half accepted, the cleartext half refused with 523"
    );
    ceiling.abort();
    rig.stop().await;
    Ok(())
}

/// One test message, split as Postfix hands it to a milter.
struct Message {
    raw: Vec<u8>,
    /// Header fields, folded lines joined by LF.
    fields: Vec<(String, String)>,
    /// The body, shared by all connections sending it.
    body: Bytes,
}

impl Message {
    fn new(raw: &[u8]) -> Message {
        let text = String::from_utf8_lossy(raw).replace("\r\n", "\n");
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in head.split('\n') {
            if line.starts_with([' ', '\t']) {
                if let Some(last) = fields.last_mut() {
                    last.1.push('\n');
                    last.1.push_str(line);
                }
            } else if let Some((name, value)) = line.split_once(':') {
                fields.push((name.to_owned(), value.trim_start().to_owned()));
            }
        }
        Message {
            raw: raw.to_vec(),
            fields,
            body: Bytes::from(body.replace('\n', "\r\n").into_bytes()),
        }
    }
}

/// `n` connections at once, connection `i` sending message `i % 2`, with
/// `SIZE=` when `declare`.
async fn drive(
    sock: &Path,
    n: usize,
    messages: &Arc<[Message; 2]>,
    declare: bool,
) -> io::Result<Row> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let sock = sock.to_owned();
        let messages = Arc::clone(messages);
        tasks.spawn(async move {
            let msg = &messages[i % 2];
            let size = declare.then_some(msg.raw.len());
            let status = send(&sock, msg, size).await?;
            Ok::<_, io::Error>((i, status))
        });
    }
    let mut row = Row::default();
    while let Some(res) = tasks.join_next().await {
        let (i, status) = res.map_err(io::Error::other)??;
        let expected_accept = i % 2 == 0;
        match status {
            Status::Accept if expected_accept => row.accepted += 1,
            Status::Reject { message: Some(m) }
                if !expected_accept && m.to_bytes() == E2EE.as_bytes() =>
            {
                row.refused += 1;
            }
            Status::Tempfail { .. } => row.tempfailed += 1,
            _ => row.wrong += 1,
        }
    }
    row.wall = start.elapsed();
    Ok(row)
}

/// One message over a new connection, as Postfix's smtpd sends it.
async fn send(sock: &Path, msg: &Message, size: Option<usize>) -> io::Result<Status> {
    let to_io = |e: indymilter_test::TestError| io::Error::other(e.to_string());
    let mut conn = TestConnection::configure()
        .read_timeout(Duration::from_secs(600))
        .write_timeout(Duration::from_secs(600))
        .open_unix(sock)
        .await
        .map_err(to_io)?;
    conn.macros(
        MacroStage::Mail,
        [("i", ""), ("{auth_type}", "PLAIN"), ("{auth_authen}", FROM)],
    )
    .await
    .map_err(to_io)?;
    let mut args = vec![format!("<{FROM}>")];
    if let Some(size) = size {
        args.push(format!("SIZE={size}"));
    }
    let mut status = conn.mail(args).await.map_err(to_io)?;
    if status == Status::Continue {
        status = conn.rcpt([format!("<{TO}>")]).await.map_err(to_io)?;
    }
    for (name, value) in &msg.fields {
        if status != Status::Continue {
            break;
        }
        status = conn
            .header(name.as_str(), value.as_str())
            .await
            .map_err(to_io)?;
    }
    if status == Status::Continue {
        status = conn.eoh().await.map_err(to_io)?;
    }
    let mut at = 0;
    while status == Status::Continue && at < msg.body.len() {
        let end = (at + CHUNK).min(msg.body.len());
        status = conn.body(msg.body.slice(at..end)).await.map_err(to_io)?;
        at = end;
    }
    if status == Status::Continue {
        conn.macros(MacroStage::Eom, [("i", "BENCH1234")])
            .await
            .map_err(to_io)?;
        status = conn.eom().await.map_err(to_io)?.1;
    } else {
        conn.abort().await.map_err(to_io)?;
    }
    conn.close().await.map_err(to_io)?;
    Ok(status)
}

/// The ceiling: the milter protocol over a Unix socket, nothing stored,
/// everything accepted.
async fn ceiling_server(sock: PathBuf) -> io::Result<()> {
    let listener = tokio::net::UnixListener::bind(&sock)?;
    // The same stages as the real milter, so the same packets flow.
    let callbacks: Callbacks<()> = Callbacks::new()
        .on_mail(|_, _| Box::pin(async { MilterStatus::Continue }))
        .on_rcpt(|_, _| Box::pin(async { MilterStatus::Continue }))
        .on_header(|_, _, _| Box::pin(async { MilterStatus::Continue }))
        .on_eoh(|_| Box::pin(async { MilterStatus::Continue }))
        .on_body(|_, _| Box::pin(async { MilterStatus::Continue }))
        .on_eom(|_| Box::pin(async { MilterStatus::Accept }));
    let config = indymilter::Config {
        max_connections: 4096,
        ..Default::default()
    };
    indymilter::run(listener, callbacks, config, std::future::pending::<()>()).await
}

/// Resets the process's VmHWM to its current RSS (Linux 4.0 and later).
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

fn kib_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
