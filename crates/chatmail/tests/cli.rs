//! The `chatmail` binary as an operator and systemd run it: help texts,
//! one-line errors for bad configs, socket modes, clean SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const EXE: &str = env!("CARGO_BIN_EXE_chatmail");
/// The daemons that serve Postfix and Dovecot through our connection cap
/// (`chatmail_net`), each with a descriptor limit in its unit.
const DAEMONS: &[&str] = &["auth", "lastlogin", "metadata", "milter", "policy"];

/// Every daemon of the table, with the arguments it needs beyond
/// `--config` and `--listen` to run in `dir` (the transport's socketmap).
fn all_daemons(dir: &Path) -> Vec<(&'static str, Vec<String>)> {
    chatmail_snippets::daemons::DAEMONS
        .iter()
        .map(|d| {
            let extra = match d.name {
                "transport" => vec![format!(
                    "--map-listen=unix:{}",
                    dir.join("map.socket").display()
                )],
                _ => Vec::new(),
            };
            (d.name, extra)
        })
        .collect()
}

fn run(args: &[&str]) -> Output {
    Command::new(EXE).args(args).output().unwrap()
}

fn write_config(dir: &Path) -> String {
    let ini = dir.join("chatmail.ini");
    std::fs::write(
        &ini,
        format!(
            "[params]\nmail_domain = example.org\nmailboxes_dir = {}\n",
            dir.join("mail").display()
        ),
    )
    .unwrap();
    ini.display().to_string()
}

#[test]
fn help_explains_every_subcommand() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let table: Vec<&str> = chatmail_snippets::daemons::DAEMONS
        .iter()
        .map(|d| d.name)
        .collect();
    for sub in table
        .iter()
        .chain(&["expire", "quota-expire", "report", "newemail", "sandbox"])
    {
        assert!(
            text.contains(&format!("  {sub} ")),
            "{sub} missing in:\n{text}"
        );
        let out = run(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        assert!(
            String::from_utf8(out.stdout)
                .unwrap()
                .contains("Usage: chatmail")
        );
    }
    // Benchmarks are their own binary (`chatmail-bench`), not part of what
    // ships.
    assert!(!text.contains("  bench "), "bench in:\n{text}");
    assert!(!run(&["bench-echo-server", "--help"]).status.success());
}

#[test]
fn a_bad_config_is_one_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.ini");
    let socket = format!("unix:{}", dir.path().join("s").display());
    for (daemon, extra) in all_daemons(dir.path()) {
        let mut args = vec![
            daemon,
            "--config",
            missing.to_str().unwrap(),
            "--listen",
            &socket,
        ];
        args.extend(extra.iter().map(String::as_str));
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{daemon}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        let reasons: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("chatmail:"))
            .collect();
        assert_eq!(reasons.len(), 1, "{stderr}");
        // Said once, not also as a log line.
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(reasons[0].contains("missing.ini"), "{stderr}");
        assert!(reasons[0].contains("No such file"), "{stderr}");
    }
    let ini = dir.path().join("bad.ini");
    std::fs::write(
        &ini,
        "[params]\nmail_domain = example.org\nusername_min_length = -3\n",
    )
    .unwrap();
    let out = run(&[
        "auth",
        "--config",
        ini.to_str().unwrap(),
        "--listen",
        &socket,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("username_min_length = \"-3\""), "{stderr}");
}

#[test]
fn a_bad_listen_address_is_a_usage_error() {
    let out = run(&["auth", "--listen", "tcp:1.2.3.4"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("tcp:1.2.3.4"), "{stderr}");
}

#[test]
fn daemons_replace_stale_sockets_use_mode_0660_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_config(dir.path());
    for (daemon, extra) in all_daemons(dir.path()) {
        let path = dir.path().join(format!("{daemon}.socket"));
        // A socket left behind by a killed daemon.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let mut child = Command::new(EXE)
            .args([daemon, "--config", &ini, "--listen"])
            .arg(format!("unix:{}", path.display()))
            .args(&extra)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Waits for the daemon's own word, not for a connect to succeed: a
        // process forked by a test running in parallel can hold the stale
        // listener open until it execs, and a connect then reaches that.
        let (listening, heard) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(" listening on unix:") {
                    let _ = listening.send(());
                }
            }
        });
        assert!(
            heard.recv_timeout(Duration::from_secs(20)).is_ok(),
            "{daemon} did not listen"
        );
        std::os::unix::net::UnixStream::connect(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o660, "{daemon}");

        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{daemon} ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{daemon}: {status}");
    }
}

#[test]
fn a_live_socket_is_not_stolen() {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_config(dir.path());
    let path = dir.path().join("busy.socket");
    let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let out = Command::new(EXE)
        .args(["auth", "--config", &ini, "--listen"])
        .arg(format!("unix:{}", path.display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr).unwrap().contains("in use"));
}

/// `LimitNOFILE` of the shipped systemd unit of `daemon`.
fn unit_nofile(daemon: &str) -> u64 {
    let unit = chatmail_snippets::daemons::daemon(daemon).unwrap().unit;
    let text = chatmail_snippets::files::unit(unit).unwrap();
    let value = text
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .unwrap_or_else(|| panic!("{unit} sets no LimitNOFILE"));
    value.parse().unwrap()
}

/// Runs `daemon` with a descriptor limit of `nofile` until it listens, stops
/// it, and returns its log.
fn log_with_nofile(daemon: &str, nofile: u64) -> String {
    let dir = tempfile::tempdir().unwrap();
    let ini = write_config(dir.path());
    let path = dir.path().join(format!("{daemon}.socket"));
    // prlimit sets the limit, then execs the daemon.
    let mut child = Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg("--")
        .arg(EXE)
        .args([daemon, "--config", &ini, "--listen"])
        .arg(format!("unix:{}", path.display()))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&path).is_err() {
        assert!(Instant::now() < deadline, "{daemon} did not listen");
        assert!(child.try_wait().unwrap().is_none(), "{daemon} exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{daemon}: {}", out.status);
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn every_units_descriptor_limit_covers_its_connection_cap() {
    for daemon in DAEMONS {
        let log = log_with_nofile(daemon, unit_nofile(daemon));
        assert!(log.contains("listening"), "{daemon}: {log}");
        assert!(
            !log.contains("file descriptor limit allows"),
            "{daemon}: {log}"
        );
    }
    // Below the cap plus the reserve the cap is lowered, and said so.
    let log = log_with_nofile("lastlogin", 512);
    assert!(
        log.contains("file descriptor limit allows 256 connections, not 1024"),
        "{log}"
    );
}
