//! `chatmail-bench metadata`: `chatmail metadata` as its own process, as
//! deployed, over a temporary mailbox store, pushing to an in-process
//! cleartext HTTP/2 (h2c) stand-in for the notification gateway:
//!
//! - (a) token registrations (`priv/<guid>/devicetoken` in a dict
//!   transaction whose user is the address) over 1 and 8 connections,
//!   against the echo ceiling measured in the same run;
//! - (b) notifications per second: N `messagenew`s for N users with one
//!   token each queued over one connection, first against a gateway that
//!   holds every request until all are queued (the notifier's drain rate
//!   alone), then against a live gateway (queuing and delivery together);
//! - (c) latency from a `messagenew` commit to its POST at the gateway,
//!   one message at a time;
//! - (d) the daemon's memory with many tokens registered and many
//!   notifications queued that cannot be delivered (a second daemon whose
//!   gateway URL points at a closed port).
//!
//! Every registration and every queue commit is durable (an fsync of the
//! user's directory, an SQLite commit with `synchronous = FULL`), so the
//! rates here are largely the disk's; the ratio to the echo ceiling says
//! how much of the socket round trip they leave.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chatmail_mailbox::{Metadata, Store};
use chatmail_push_gateway_stub::Gateway;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::Command;

use crate::{Run, cpu_seconds, memory_kib, print_row, spawn};

const DOMAIN: &str = "bench.example";
/// The mailbox GUID Dovecot puts in METADATA keys; the daemon ignores it.
const GUID: &str = "43f5f508a7ea0366dff30200c15250e3";
const PASSWORD_HASH: &str = "{SHA512-CRYPT}$6$x$y";

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `chatmail` binary (runs the daemon).
    pub exe: PathBuf,
    /// The `chatmail-bench` binary (runs the echo server).
    pub bench: PathBuf,
    /// Seconds per registration row.
    pub seconds: f64,
    /// Accounts created (with `Mailbox::create`) for (a) to (c); each gets
    /// one token.
    pub users: usize,
    /// Notifications queued in (b); at most `users`.
    pub notifications: usize,
    /// Messages sent one at a time in (c).
    pub latency_samples: usize,
    /// Tokens registered through the daemon before reading its memory (d).
    pub rss_tokens: usize,
    /// Undeliverable notifications queued before reading its memory (d).
    pub rss_queued: usize,
    /// Longest time spent registering the `rss_tokens` (d); fewer are
    /// registered when the disk is slower.
    pub rss_time_limit: Duration,
}

impl Options {
    /// The defaults: 3 s rows, 2000 accounts, 2000 notifications, 1000
    /// latency samples, 100k tokens (at most 120 s) and 10k queued.
    pub fn new(exe: PathBuf, bench: PathBuf) -> Options {
        Options {
            exe,
            bench,
            seconds: 3.0,
            users: 2000,
            notifications: 2000,
            latency_samples: 1000,
            rss_tokens: 100_000,
            rss_queued: 10_000,
            rss_time_limit: Duration::from_secs(120),
        }
    }
}

fn addr(n: usize) -> String {
    format!("u{n:08}@{DOMAIN}")
}

fn token(n: usize) -> String {
    format!("bench-token-{n:08}")
}

fn devicetoken_key() -> String {
    format!("priv/{GUID}/devicetoken")
}

fn messagenew_key() -> String {
    format!("priv/{GUID}/messagenew")
}

/// Runs the metadata benchmark and prints its figures.
///
/// # Errors
/// When a server cannot be started, a connection fails or the daemon
/// answers a request with a failure.
pub async fn run(opts: Options) -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mailboxes = tmp.path().join("mail");
    std::fs::create_dir_all(&mailboxes)?;
    let store = Store::new(&mailboxes, DOMAIN);
    let users = opts.users.max(1);
    let notifications = opts.notifications.clamp(1, users);
    println!(
        "chatmail-bench metadata: {} cores, chatmail metadata as its own process, \
         queue and mailboxes on {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        tmp.path().display()
    );

    let t = Instant::now();
    create_accounts(&store, 0..users).await?;
    println!(
        "{users} accounts created with Mailbox::create in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let gateway = Gateway::start().await;
    let ini = tmp.path().join("chatmail.ini");
    write_ini(&ini, &mailboxes, &gateway.url)?;
    let echo_sock = tmp.path().join("echo.socket");
    let sock = tmp.path().join("metadata.socket");
    let bench = Command::new(&opts.bench);
    let mut echo = spawn(bench, &["echo-server"], &echo_sock, None, None).await?;
    let mut daemon = spawn(
        Command::new(&opts.exe),
        &["metadata"],
        &sock,
        Some(&ini),
        Some(&tmp.path().join("metadata-1.log")),
    )
    .await?;
    let pid = daemon.id().unwrap_or(0);
    let secs = Duration::from_secs_f64(opts.seconds);

    // (a) registrations.
    println!(
        "\n(a) token registrations: B/S priv/<guid>/devicetoken/C, user = the address, \
         {users} users in turn, {:.1} s per row",
        opts.seconds
    );
    println!(
        "{:<30} {:>5} {:>10} {:>9} {:>9} {:>9}",
        "", "conns", "req/s", "p50 µs", "p99 µs", "ratio"
    );
    for conns in [1, 8] {
        // The echo gets the same bytes as one line, so that it answers one
        // line per transaction as the daemon does.
        let ceiling = crate::measure(&echo_sock, conns, secs, move |i| {
            let n = i % users;
            format!(
                "B{i}\t{}\tS{i}\t{}\t{}\tC{i}\n",
                addr(n),
                devicetoken_key(),
                token(n)
            )
        })
        .await?;
        print_row("echo ceiling", conns, &ceiling, None);
        let cpu0 = cpu_seconds(pid);
        let r = measure_tx(&sock, conns, secs, move |i| registration(i % users)).await?;
        let cpu = cpu_seconds(pid) - cpu0;
        print_row("token registration", conns, &r, Some(&ceiling));
        println!(
            "{:<30} chatmail metadata CPU {:.2} cores",
            "",
            cpu / r.wall.as_secs_f64()
        );
    }
    // Every account gets its token, whatever the rows above reached.
    let t = Instant::now();
    register_all(&sock, 8, 0..users).await?;
    println!(
        "registering all {users} accounts over 8 conns: {:.0}/s",
        users as f64 / t.elapsed().as_secs_f64()
    );

    // (b) notification throughput.
    println!(
        "\n(b) notifications: {notifications} messagenew for {notifications} users with one \
         token each, over 1 connection, one commit at a time"
    );
    for held in [true, false] {
        gateway.drain();
        gateway.hold_all(held);
        let mut c = Dict::connect(&sock).await?;
        let t0 = Instant::now();
        for n in 0..notifications {
            c.set(&addr(n), &messagenew_key(), "").await?;
        }
        let queued = t0.elapsed();
        let t_release = Instant::now();
        gateway.hold_all(false);
        let mut got = 0;
        while got < notifications {
            next_post(&gateway).await?;
            got += 1;
        }
        let done = Instant::now();
        println!(
            "{:<44} {:>8.0} messagenew commits/s",
            if held {
                "queued while the gateway held every POST"
            } else {
                "queued with the gateway live"
            },
            notifications as f64 / queued.as_secs_f64()
        );
        if held {
            println!(
                "{:<44} {:>8.0} POSTs/s ({notifications} in {:.2} s after release; \
                 up to 64 were already in flight)",
                "  drained after release",
                notifications as f64 / (done - t_release).as_secs_f64(),
                (done - t_release).as_secs_f64()
            );
        } else {
            println!(
                "{:<44} {:>8.0} POSTs/s (first commit to last POST, {:.2} s)",
                "  delivered, end to end",
                notifications as f64 / (done - t0).as_secs_f64(),
                (done - t0).as_secs_f64()
            );
        }
    }

    // (c) latency.
    gateway.drain();
    let mut c = Dict::connect(&sock).await?;
    let mut from_ack = Vec::with_capacity(opts.latency_samples);
    let mut from_send = Vec::with_capacity(opts.latency_samples);
    let mut commit = Vec::with_capacity(opts.latency_samples);
    for k in 0..opts.latency_samples {
        let n = k % users;
        let sent = Instant::now();
        c.set(&addr(n), &messagenew_key(), "").await?;
        let acked = Instant::now();
        let arrived = loop {
            let (tok, at) = next_post(&gateway).await?;
            if tok == token(n) {
                break at;
            }
        };
        // The POST can beat the commit reply to us: count that as 0.
        from_ack.push(arrived.saturating_duration_since(acked));
        from_send.push(arrived - sent);
        commit.push(acked - sent);
    }
    println!(
        "\n(c) latency over {} messages sent one at a time (p50 / p99 / max, ms):",
        opts.latency_samples
    );
    for (name, v) in [
        ("commit acknowledged -> POST at gateway", &mut from_ack),
        ("commit sent -> POST at gateway", &mut from_send),
        ("commit sent -> acknowledged", &mut commit),
    ] {
        v.sort_unstable();
        println!(
            "{name:<44} {:>7.2} {:>7.2} {:>7.2}",
            ms(pct(v, 0.5)),
            ms(pct(v, 0.99)),
            ms(v.last().copied().unwrap_or_default())
        );
    }
    let (rss, hwm) = memory_kib(pid);
    println!(
        "chatmail metadata memory after (a)-(c): RSS {:.1} MB, peak {:.1} MB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    for child in [&mut echo, &mut daemon] {
        let _ = child.kill().await;
        let _ = child.wait().await;
    }
    drop(gateway);

    // (d) memory with many tokens and an undeliverable backlog.
    rss_run(&opts, tmp.path(), &store).await
}

async fn rss_run(opts: &Options, dir: &Path, store: &Store) -> io::Result<()> {
    let wanted = opts.rss_tokens.max(1);
    // The accounts themselves are written directly (directory, password,
    // empty metadata.json) without the fsyncs of Mailbox::create: 100k of
    // those would take minutes on a VM disk and measure nothing about the
    // daemon. The tokens then go through the daemon.
    let t = Instant::now();
    let base = 10_000_000;
    {
        let store = store.clone();
        tokio::task::spawn_blocking(move || -> io::Result<()> {
            let empty = serde_json::to_vec(&Metadata::default()).map_err(io::Error::other)?;
            for n in base..base + wanted {
                let m = store.mailbox(&addr(n)).map_err(io::Error::other)?;
                std::fs::create_dir_all(m.dir())?;
                std::fs::write(m.password_path(), PASSWORD_HASH)?;
                std::fs::write(m.metadata_path(), &empty)?;
            }
            Ok(())
        })
        .await
        .map_err(io::Error::other)??;
    }
    println!(
        "\n(d) {wanted} more accounts written directly (no fsync) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    // A port nobody listens on: bind, note, close.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let ini = dir.join("chatmail-closed.ini");
    write_ini(
        &ini,
        store.mailboxes_dir(),
        &format!("http://{closed}/notify"),
    )?;
    let sock = dir.join("metadata-2.socket");
    let mut daemon = spawn(
        Command::new(&opts.exe),
        &["metadata"],
        &sock,
        Some(&ini),
        Some(&dir.join("metadata-2.log")),
    )
    .await?;
    let pid = daemon.id().unwrap_or(0);
    let (rss0, _) = memory_kib(pid);
    println!(
        "second chatmail metadata, gateway URL http://{closed}/notify (closed): \
         RSS at start {:.1} MB",
        rss0 as f64 / 1024.0
    );
    let t = Instant::now();
    let registered = register_until(&sock, 8, base..base + wanted, opts.rss_time_limit).await?;
    println!(
        "registered {registered} of {wanted} tokens over 8 conns in {:.1} s ({:.0}/s)",
        t.elapsed().as_secs_f64(),
        registered as f64 / t.elapsed().as_secs_f64()
    );
    let (rss1, hwm1) = memory_kib(pid);
    println!(
        "  RSS with {registered} tokens registered: {:.1} MB (peak {:.1} MB)",
        rss1 as f64 / 1024.0,
        hwm1 as f64 / 1024.0
    );
    let queued = opts.rss_queued.min(registered);
    let t = Instant::now();
    parallel(&sock, 8, base..base + queued, message_new).await?;
    println!(
        "queued {queued} undeliverable notifications over 8 conns in {:.1} s ({:.0}/s)",
        t.elapsed().as_secs_f64(),
        queued as f64 / t.elapsed().as_secs_f64()
    );
    // Let the notifier make its first (failing) attempts on the backlog.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss2, hwm2) = memory_kib(pid);
    println!(
        "  RSS with {registered} tokens and {queued} notifications queued: {:.1} MB \
         (peak {:.1} MB)",
        rss2 as f64 / 1024.0,
        hwm2 as f64 / 1024.0
    );
    let _ = daemon.kill().await;
    let _ = daemon.wait().await;
    Ok(())
}

fn write_ini(path: &Path, mailboxes: &Path, push_url: &str) -> io::Result<()> {
    std::fs::write(
        path,
        format!(
            "[params]\nmail_domain = {DOMAIN}\nmailboxes_dir = {}\npush_notification_url = {push_url}\n\
             push_notification_h2c = true\n",
            mailboxes.display()
        ),
    )
}

/// Creates the accounts `range` with `Mailbox::create` (durable, as
/// `chatmail auth` does), on four blocking threads.
async fn create_accounts(store: &Store, range: std::ops::Range<usize>) -> io::Result<()> {
    let threads = 4;
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..threads {
        let store = store.clone();
        let range = range.clone();
        tasks.spawn_blocking(move || -> io::Result<()> {
            for n in range.skip(t).step_by(threads) {
                store
                    .mailbox(&addr(n))
                    .map_err(io::Error::other)?
                    .create(PASSWORD_HASH)?;
            }
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(io::Error::other)??;
    }
    Ok(())
}

async fn register_all(sock: &Path, conns: usize, range: std::ops::Range<usize>) -> io::Result<()> {
    parallel(sock, conns, range, registration).await
}

/// Registers tokens for `range` until done or `limit`; how many.
async fn register_until(
    sock: &Path,
    conns: usize,
    range: std::ops::Range<usize>,
    limit: Duration,
) -> io::Result<usize> {
    let start = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..conns {
        let mut c = Dict::connect(sock).await?;
        let range = range.clone();
        let done = done.clone();
        tasks.spawn(async move {
            for n in range.skip(k).step_by(conns) {
                if start.elapsed() >= limit {
                    break;
                }
                c.set(&addr(n), &devicetoken_key(), &token(n)).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, io::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(io::Error::other)??;
    }
    Ok(done.load(Ordering::Relaxed))
}

/// Commits `set(n)` for every n in `range`, spread over `conns` connections.
async fn parallel(
    sock: &Path,
    conns: usize,
    range: std::ops::Range<usize>,
    set: fn(usize) -> (String, String, String),
) -> io::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..conns {
        let mut c = Dict::connect(sock).await?;
        let range = range.clone();
        tasks.spawn(async move {
            for n in range.skip(k).step_by(conns) {
                let (user, key, value) = set(n);
                c.set(&user, &key, &value).await?;
            }
            Ok::<_, io::Error>(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(io::Error::other)??;
    }
    Ok(())
}

fn registration(n: usize) -> (String, String, String) {
    (addr(n), devicetoken_key(), token(n))
}

fn message_new(n: usize) -> (String, String, String) {
    (addr(n), messagenew_key(), String::new())
}

/// `conns` connections, each committing one transaction (one set) and
/// waiting for its reply, for `duration`; a failed commit is an error.
async fn measure_tx(
    sock: &Path,
    conns: usize,
    duration: Duration,
    request: impl Fn(usize) -> (String, String, String) + Send + Sync + Clone + 'static,
) -> io::Result<Run> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..conns {
        let mut c = Dict::connect(sock).await?;
        let request = request.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            let mut i = k * 7919;
            while start.elapsed() < duration {
                let (user, key, value) = request(i);
                i += 1;
                let t = Instant::now();
                c.set(&user, &key, &value).await?;
                lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok::<_, io::Error>(lat)
        });
    }
    Run::collect(tasks, start).await
}

/// One dict connection, as Dovecot's dict client uses it.
struct Dict {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    next_tx: u32,
    line: String,
}

impl Dict {
    async fn connect(sock: &Path) -> io::Result<Dict> {
        let (r, mut w) = UnixStream::connect(sock).await?.into_split();
        w.write_all(b"H3\t2\t0\t\tmetadata\n").await?;
        Ok(Dict {
            r: BufReader::new(r),
            w,
            next_tx: 1,
            line: String::new(),
        })
    }

    /// One transaction setting `key` = `value` for `user`; fails unless
    /// the commit answers OK.
    async fn set(&mut self, user: &str, key: &str, value: &str) -> io::Result<()> {
        let id = self.next_tx;
        self.next_tx = self.next_tx.wrapping_add(1);
        let req = format!("B{id}\t{user}\nS{id}\t{key}\t{value}\nC{id}\n");
        self.w.write_all(req.as_bytes()).await?;
        self.line.clear();
        if self.r.read_line(&mut self.line).await? == 0 {
            return Err(io::Error::other("chatmail metadata closed the connection"));
        }
        if !self.line.starts_with('O') {
            return Err(io::Error::other(format!(
                "commit for {user} answered {:?}",
                self.line.trim_end()
            )));
        }
        Ok(())
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ------------------------------------------------------------- gateway

/// The next POST the stand-in gateway answered (h2c on 127.0.0.1, 200 to
/// every POST), with when it was answered; fails after 30 s without one.
async fn next_post(gateway: &Gateway) -> io::Result<(String, Instant)> {
    gateway
        .next_answered(Duration::from_secs(30))
        .await
        .ok_or_else(|| io::Error::other("no POST at the gateway for 30 s"))
}
