//! `chatmail-bench dict`: throughput and latency of our daemons, each reported as
//! a ratio to a ceiling measured in the same run on the same machine: a raw
//! Unix-socket server that answers every line with a line (the same framing
//! as the Dovecot dict protocol, no work in between).
//!
//! The daemon under test runs as its own process (`chatmail auth`, exactly as
//! deployed), so its CPU time and memory can be read from `/proc`. Nothing
//! here is asserted: the figures are for people.
//!
//! Only the `chatmail-bench` binary links this crate; the shipped `chatmail`
//! binary must never depend on it (docs/design.md, "Crates").

pub mod dkim;
pub mod expire;
pub mod metadata;
pub mod metrics;
pub mod milter;
pub mod rules;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chatmail_net::{ListenAddr, Listener};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::UnixStream;
use tokio::process::{Child, Command};

/// What to measure and for how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seconds per measurement.
    pub seconds: f64,
    /// Accounts created before measuring lookups.
    pub users: usize,
    /// The `chatmail` binary (runs the daemon).
    pub exe: PathBuf,
    /// The `chatmail-bench` binary (runs the echo server).
    pub bench: PathBuf,
}

/// Lookups made before reading the daemon's memory, so the figure is its
/// steady state under load rather than its start-up size.
const RSS_AFTER_LOOKUPS: usize = 100_000;
const DOMAIN: &str = "bench.example";
const PASSWORD: &str = "bench-password-1";

/// Runs the dict benchmark and prints its table.
///
/// # Errors
/// When a server cannot be started or a connection fails.
pub async fn run(opts: Options) -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let ini = write_auth_ini(tmp.path())?;
    let echo_sock = tmp.path().join("echo.socket");
    let auth_sock = tmp.path().join("auth.socket");
    let bench = Command::new(&opts.bench);
    let mut echo = spawn(bench, &["echo-server"], &echo_sock, None, None).await?;
    let daemon = Command::new(&opts.exe);
    let mut auth = spawn(daemon, &["auth"], &auth_sock, Some(&ini), None).await?;
    let auth_pid = auth.id().unwrap_or(0);
    let secs = Duration::from_secs_f64(opts.seconds);

    println!(
        "chatmail-bench dict: {} cores, {:.1} s per row, chatmail auth as its own process",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        opts.seconds
    );
    println!(
        "{:<28} {:>5} {:>10} {:>9} {:>9} {:>9}",
        "", "conns", "req/s", "p50 µs", "p99 µs", "ratio"
    );

    // Accounts first: creation is the expensive path (hashing), and the
    // lookup rows need existing users.
    let counter = Arc::new(AtomicUsize::new(0));
    let mut creation_cpu = Vec::new();
    for conns in [1, 8] {
        let cpu0 = cpu_seconds(auth_pid);
        let r = measure(&auth_sock, conns, secs, {
            let counter = counter.clone();
            move |_| {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                passdb_key(&format!("c{n:08}"))
            }
        })
        .await?;
        let cpu = cpu_seconds(auth_pid) - cpu0;
        creation_cpu.push((conns, cpu / r.wall.as_secs_f64()));
        print_row("account creation", conns, &r, None);
    }
    let created = counter.load(Ordering::Relaxed);
    let existing: Arc<Vec<String>> = Arc::new(
        (0..created.min(opts.users.max(1)))
            .map(|n| passdb_key(&format!("c{n:08}")))
            .collect(),
    );

    let mut lookups = 0;
    for conns in [1, 8] {
        let ceiling = measure(&echo_sock, conns, secs, {
            let keys = existing.clone();
            move |i| keys[i % keys.len()].clone()
        })
        .await?;
        print_row("echo ceiling", conns, &ceiling, None);
        let r = measure(&auth_sock, conns, secs, {
            let keys = existing.clone();
            move |i| keys[i % keys.len()].clone()
        })
        .await?;
        lookups += r.requests;
        print_row("passdb lookup (existing)", conns, &r, Some(&ceiling));
    }
    while lookups < RSS_AFTER_LOOKUPS {
        let r = measure(&auth_sock, 8, Duration::from_secs(1), {
            let keys = existing.clone();
            move |i| keys[i % keys.len()].clone()
        })
        .await?;
        lookups += r.requests;
    }
    for (conns, util) in creation_cpu {
        println!("chatmail auth CPU while creating over {conns} conn: {util:.2} cores");
    }
    let (rss, hwm) = memory_kib(auth_pid);
    println!(
        "chatmail auth memory after {lookups} lookups and {created} creations: \
         RSS {:.1} MB, peak {:.1} MB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    for child in [&mut echo, &mut auth] {
        let _ = child.kill().await;
    }
    Ok(())
}

/// Serves the echo ceiling: answers every line with the same line.
///
/// # Errors
/// When the socket cannot be bound.
pub async fn echo_server(addr: &ListenAddr) -> io::Result<()> {
    let listener = Listener::bind(addr).await?;
    loop {
        let stream = listener.accept().await?;
        tokio::spawn(async move {
            let (r, w) = tokio::io::split(stream);
            let mut r = BufReader::new(r);
            let mut w = BufWriter::new(w);
            let mut line = Vec::new();
            loop {
                line.clear();
                match r.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if w.write_all(&line).await.is_err() {
                    return;
                }
                // Flush like the dict server: only when no request is waiting.
                if r.buffer().is_empty() && w.flush().await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Writes `dir/chatmail.ini` for `chatmail auth` with its mailboxes in
/// `dir/mail`; the path of the file.
fn write_auth_ini(dir: &Path) -> io::Result<PathBuf> {
    let ini = dir.join("chatmail.ini");
    // The benchmark itself loads the machine: lift the resource limits so
    // they measure creation, not refusal.
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = {DOMAIN}\nmailboxes_dir = {}\nnocreate_file = {}\n\
             max_load_1m = 1000\nmin_available_memory = 0M\nmin_free_disk_space = 0M\n",
            dir.join("mail").display(),
            dir.join("nocreate").display()
        ),
    )?;
    Ok(ini)
}

fn passdb_key(localpart: &str) -> String {
    format!("Lshared/passdb/{PASSWORD}\"{localpart}@{DOMAIN}\t{localpart}@{DOMAIN}\n")
}

/// Starts `cmd args --listen unix:SOCK [--config INI]` with its stderr in
/// `log` (or inherited) and waits until it accepts connections.
async fn spawn(
    mut cmd: Command,
    args: &[&str],
    sock: &Path,
    ini: Option<&Path>,
    log: Option<&Path>,
) -> io::Result<Child> {
    cmd.args(args)
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true);
    if let Some(ini) = ini {
        cmd.arg("--config").arg(ini);
    }
    if let Some(log) = log {
        cmd.stderr(std::fs::File::create(log)?);
    }
    let child = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while UnixStream::connect(sock).await.is_err() {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("{} did not start", args[0])));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(child)
}

struct Run {
    requests: usize,
    wall: Duration,
    latencies_us: Vec<u32>,
}

impl Run {
    /// Waits for every connection's latencies (in µs) and sorts them; the
    /// wall time runs from `start` to the last connection's end.
    async fn collect(
        mut tasks: tokio::task::JoinSet<io::Result<Vec<u32>>>,
        start: Instant,
    ) -> io::Result<Run> {
        let mut latencies_us = Vec::new();
        while let Some(res) = tasks.join_next().await {
            latencies_us.extend(res.map_err(io::Error::other)??);
        }
        let wall = start.elapsed();
        latencies_us.sort_unstable();
        Ok(Run {
            requests: latencies_us.len(),
            wall,
            latencies_us,
        })
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.wall.as_secs_f64()
    }
    fn percentile(&self, p: f64) -> u32 {
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us.get(i).copied().unwrap_or(0)
    }
}

/// `conns` connections, each sending one request and waiting for its reply,
/// as Dovecot's auth process does, for `duration`.
async fn measure(
    sock: &Path,
    conns: usize,
    duration: Duration,
    request: impl Fn(usize) -> String + Send + Sync + Clone + 'static,
) -> io::Result<Run> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns {
        let stream = UnixStream::connect(sock).await?;
        let request = request.clone();
        tasks.spawn(async move {
            let (r, mut w) = stream.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"H3\t2\t0\t\tauth\n").await?;
            let mut lat = Vec::new();
            let mut line = String::new();
            let mut i = c * 7919;
            while start.elapsed() < duration {
                let req = request(i);
                i += 1;
                let t = Instant::now();
                w.write_all(req.as_bytes()).await?;
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Err(io::Error::other("server closed the connection"));
                }
                lat.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok::<_, io::Error>(lat)
        });
    }
    Run::collect(tasks, start).await
}

fn print_row(name: &str, conns: usize, r: &Run, ceiling: Option<&Run>) {
    let ratio = ceiling.map_or(String::new(), |c| format!("{:.2}", r.rate() / c.rate()));
    println!(
        "{name:<28} {conns:>5} {:>10.0} {:>9} {:>9} {ratio:>9}",
        r.rate(),
        r.percentile(0.5),
        r.percentile(0.99)
    );
}

/// User + system CPU seconds of a process, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesized command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // USER_HZ is 100 on every Linux this runs on.
    ticks / 100.0
}

/// (VmRSS, VmHWM) in KiB from `/proc/PID/status`.
fn memory_kib(pid: u32) -> (u64, u64) {
    let [rss, hwm] = status_kib(pid, ["VmRSS:", "VmHWM:"]);
    (rss, hwm)
}

/// The values (KiB) of these `/proc/PID/status` fields, each named with
/// its colon; 0 for one that is missing or unreadable.
fn status_kib<const N: usize>(pid: u32, names: [&str; N]) -> [u64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    names.map(|name| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_of_this_process() {
        let [rss, hwm, missing] = status_kib(std::process::id(), ["VmRSS:", "VmHWM:", "NoSuch:"]);
        assert!(rss > 0 && hwm >= rss, "VmRSS {rss} VmHWM {hwm}");
        assert_eq!(missing, 0);
        assert!(memory_kib(std::process::id()).0 > 0);
    }
}
