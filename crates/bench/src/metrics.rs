//! `chatmail bench metrics`: what the metrics cost (docs/metrics.md).
//!
//! Two `chatmail auth` processes over the same mailboxes, one with metrics
//! off and one with `--metrics-listen` and a scrape every second (as
//! Prometheus would, at a higher rate than the shipped 30 s), answer the
//! same passdb lookups in alternating rounds; the table shows the median
//! round of both, their ratio, and the median ratio of back-to-back rounds. Then each of the five daemons is started with metrics off
//! and on, and its resident memory compared after start-up (and, for auth,
//! after the lookups).

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::{Options, Run, measure, passdb_key, print_row, spawn, status_kib, write_auth_ini};

/// Rounds of each variant; the median round is reported, and the median of
/// the ratios of rounds run back to back (robust against a machine whose
/// load drifts during the run).
const ROUNDS: usize = 15;

/// Runs the comparison and prints its table.
///
/// # Errors
/// When a daemon cannot be started or a connection fails.
pub async fn run(opts: Options) -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let ini = write_auth_ini(tmp.path())?;
    // The milter's memory is measured as it runs on a relay: with its
    // signing key loaded (without one it refuses outgoing mail).
    let key = tmp.path().join("dkim.private");
    chatmail_dkim::create_key(&key, None).map_err(io::Error::other)?;
    let mut text = std::fs::read_to_string(&ini)?;
    text.push_str(&format!("dkim_key_file = {}\n", key.display()));
    std::fs::write(&ini, text)?;
    let port = free_port()?;
    let on_flag = format!("--metrics-listen=inet:127.0.0.1:{port}");
    let off_sock = tmp.path().join("off.socket");
    let on_sock = tmp.path().join("on.socket");
    let auth = || Command::new(&opts.exe);
    let mut off = spawn(auth(), &["auth"], &off_sock, Some(&ini), None).await?;
    let mut on = spawn(auth(), &["auth", &on_flag], &on_sock, Some(&ini), None).await?;
    let scrapes = Arc::new(AtomicUsize::new(0));
    let scraper = tokio::spawn(scrape_every_second(port, Arc::clone(&scrapes)));

    // The accounts both look up, created through both in turn, so both
    // have hashed passwords (on their blocking threads) when memory is
    // compared.
    let users = opts.users.max(1);
    let created = Arc::new(AtomicUsize::new(0));
    for sock in [&off_sock, &on_sock].into_iter().cycle() {
        if created.load(Ordering::Relaxed) >= users {
            break;
        }
        let counter = Arc::clone(&created);
        measure(sock, 8, Duration::from_millis(300), move |_| {
            passdb_key(&format!("m{:08}", counter.fetch_add(1, Ordering::Relaxed)))
        })
        .await?;
    }
    let n = created.load(Ordering::Relaxed);
    let keys: Arc<Vec<String>> =
        Arc::new((0..n).map(|i| passdb_key(&format!("m{i:08}"))).collect());

    let secs = Duration::from_secs_f64(opts.seconds);
    println!(
        "chatmail bench metrics: {} cores, {ROUNDS} alternating rounds of {:.1} s, \
         {n} accounts, metrics scraped every second",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        opts.seconds
    );
    println!(
        "{:<28} {:>5} {:>10} {:>9} {:>9} {:>9}",
        "", "conns", "req/s", "p50 µs", "p99 µs", "on/off"
    );
    for conns in [1, 8] {
        let mut offs = Vec::new();
        let mut ons = Vec::new();
        for _ in 0..ROUNDS {
            for (sock, runs) in [(&off_sock, &mut offs), (&on_sock, &mut ons)] {
                let keys = Arc::clone(&keys);
                runs.push(measure(sock, conns, secs, move |i| keys[i % keys.len()].clone()).await?);
            }
        }
        let mut ratios: Vec<f64> = ons
            .iter()
            .zip(&offs)
            .map(|(on, off)| on.rate() / off.rate())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let off_run = median(offs);
        let on_run = median(ons);
        print_row("passdb lookup, metrics off", conns, &off_run, None);
        print_row("passdb lookup, metrics on", conns, &on_run, Some(&off_run));
        println!(
            "{:<28} {conns:>5} median of {ROUNDS} back-to-back ratios {:.3} (quartiles {:.3} to {:.3})",
            "  on/off per round",
            ratios[ROUNDS / 2],
            ratios[ROUNDS / 4],
            ratios[3 * ROUNDS / 4]
        );
    }
    hook_cost();
    let scraped = scrapes.load(Ordering::Relaxed);
    scraper.abort();
    let off_mem = Memory::of(off.id().unwrap_or(0));
    let on_mem = Memory::of(on.id().unwrap_or(0));
    println!("chatmail auth after the lookups ({scraped} scrapes):");
    print_memory("auth", &off_mem, &on_mem);
    for child in [&mut off, &mut on] {
        let _ = child.kill().await;
    }

    println!(
        "each daemon after start-up and one scrape (RSS = private + file-backed; the \
         file-backed part is the binary's code, shared and reclaimable):"
    );
    for daemon in chatmail_snippets::daemons::DAEMONS.iter().map(|d| d.name) {
        let [off_mem, on_mem] = idle_memory(&opts.exe, daemon, &ini, tmp.path()).await?;
        print_memory(daemon, &off_mem, &on_mem);
    }
    Ok(())
}

/// Resident memory of a process, KiB.
#[derive(Debug, Default, Clone, Copy)]
struct Memory {
    rss: u64,
    anon: u64,
}

impl Memory {
    fn of(pid: u32) -> Memory {
        let [rss, anon] = status_kib(pid, ["VmRSS:", "RssAnon:"]);
        Memory { rss, anon }
    }
}

fn print_memory(daemon: &str, off: &Memory, on: &Memory) {
    println!(
        "  chatmail {daemon:<10} RSS off {:>5.1} MB on {:>5.1} MB ({:+.2} MB), \
         private off {:>5.1} MB on {:>5.1} MB ({:+.2} MB)",
        mb(off.rss),
        mb(on.rss),
        mb(on.rss) - mb(off.rss),
        mb(off.anon),
        mb(on.anon),
        mb(on.anon) - mb(off.anon)
    );
}

/// The round with the median request rate.
fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
}

fn mb(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Fetches `/metrics` once; the body's length.
async fn scrape(port: u16) -> io::Result<usize> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    if !out.starts_with(b"HTTP/1.1 200 ") {
        return Err(io::Error::other("the metrics endpoint did not answer 200"));
    }
    Ok(out.len())
}

async fn scrape_every_second(port: u16, count: Arc<AtomicUsize>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if scrape(port).await.is_ok() {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Memory of `daemon` started with metrics off, then on (after one
/// scrape), each left 300 ms to settle.
async fn idle_memory(exe: &Path, daemon: &str, ini: &Path, dir: &Path) -> io::Result<[Memory; 2]> {
    let mut out = [Memory::default(); 2];
    for (i, slot) in out.iter_mut().enumerate() {
        let sock = dir.join(format!("{daemon}-{i}.socket"));
        let port = free_port()?;
        let flag = format!("--metrics-listen=inet:127.0.0.1:{port}");
        let args: Vec<&str> = if i == 0 {
            vec![daemon]
        } else {
            vec![daemon, &flag]
        };
        let mut child: Child = spawn(Command::new(exe), &args, &sock, Some(ini), None).await?;
        if i == 1 {
            scrape(port).await?;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        *slot = Memory::of(child.id().unwrap_or(0));
        let _ = child.kill().await;
        let _ = child.wait().await;
        let _ = std::fs::remove_file(&sock);
    }
    Ok(out)
}

/// Times the hook a passdb lookup of an existing account runs, in this
/// process: first with metrics off, then installed.
fn hook_cost() {
    const CALLS: u32 = 10_000_000;
    let time = || {
        let t = std::time::Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(chatmail_metrics::auth()).found();
        }
        t.elapsed().as_nanos() as f64 / f64::from(CALLS)
    };
    let off = time();
    chatmail_metrics::install();
    let on = time();
    println!("the lookup hook itself: {off:.1} ns off, {on:.1} ns on per call");
}
