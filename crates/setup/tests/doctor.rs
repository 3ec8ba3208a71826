//! `chatmail doctor` against a relay set up in a temp directory, with stub
//! daemons on the sockets.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chatmail_setup::doctor::DAEMONS;
use chatmail_setup::{DoctorOptions, DoctorReport, Roots, Status, doctor};
use common::{DOMAIN, debian_etc, run_setup};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

struct Relay {
    _dir: tempfile::TempDir,
    etc: PathBuf,
    root: PathBuf,
}

impl Relay {
    /// `setup` applied to a temp /etc, and the mailbox directory under a
    /// temp root owned by whoever runs the tests (standing in for vmail).
    fn new() -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let etc = debian_etc(dir.path());
        run_setup(&etc, false);
        // No DNS query leaves the test: a resolver that nothing answers at
        // gives doctor's one "cannot check" line instead of the machine's
        // view of chat.example.org.
        let ini = etc.join("chatmail/chatmail.ini");
        let mut text = fs::read_to_string(&ini).unwrap();
        text.push_str("dns_resolver = 127.0.0.1:9\n");
        fs::write(&ini, text).unwrap();
        let root = dir.path().join("root");
        fs::create_dir_all(root.join("home/vmail/mail").join(DOMAIN)).unwrap();
        Relay {
            _dir: dir,
            etc,
            root,
        }
    }

    fn options(&self) -> DoctorOptions {
        let mut opts = DoctorOptions::new(None, Some(self.etc.clone()));
        opts.roots = Roots {
            etc: self.etc.clone(),
            root: self.root.clone(),
        };
        opts.vmail_user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .unwrap()
            .unwrap()
            .name;
        opts.timeout = Duration::from_secs(2);
        // A kernel with the package's inotify limit and no IMAP processes,
        // whatever this machine runs.
        opts.proc = self.root.join("proc");
        let limit = opts
            .proc
            .join(chatmail_setup::doctor::INOTIFY_LIMIT_IN_PROC);
        fs::create_dir_all(limit.parent().unwrap()).unwrap();
        fs::write(limit, "65536\n").unwrap();
        opts
    }

    fn socket(&self, daemon: &str) -> PathBuf {
        let d = DAEMONS.iter().find(|d| d.name == daemon).unwrap();
        self.root.join(d.socket.trim_start_matches('/'))
    }

    /// Starts a stub for every daemon except those in `skip`.
    fn serve(&self, skip: &[&str]) {
        for daemon in DAEMONS.iter().map(|d| d.name).filter(|d| !skip.contains(d)) {
            let path = self.socket(daemon);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let listener = UnixListener::bind(&path).unwrap();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    tokio::spawn(async move {
                        let _ = match daemon {
                            "policy" => policy_stub(stream).await,
                            "milter" => milter_stub(stream).await,
                            "transport" => lmtp_stub(stream).await,
                            "mxdeliv" => mxdeliv_stub(stream).await,
                            _ => dict_stub(stream).await,
                        };
                    });
                }
            });
        }
    }
}

/// Answers every dict lookup with "not found", as our dict daemons do for
/// keys they do not have.
async fn dict_stub(stream: tokio::net::UnixStream) -> std::io::Result<()> {
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    while lines.read_line(&mut line).await? > 0 {
        if line.starts_with('L') {
            lines.get_mut().write_all(b"N\n").await?;
        }
        line.clear();
    }
    Ok(())
}

async fn policy_stub(stream: tokio::net::UnixStream) -> std::io::Result<()> {
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    while lines.read_line(&mut line).await? > 0 {
        if line == "\n" {
            lines.get_mut().write_all(b"action=DUNNO\n\n").await?;
        }
        line.clear();
    }
    Ok(())
}

/// The LMTP greeting `chatmail transport` opens with.
async fn lmtp_stub(mut stream: tokio::net::UnixStream) -> std::io::Result<()> {
    stream.write_all(b"220 chat.example.org LMTP\r\n").await
}

/// `chatmail mxdeliv`'s answer to anything but a POST.
async fn mxdeliv_stub(stream: tokio::net::UnixStream) -> std::io::Result<()> {
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    while lines.read_line(&mut line).await? > 0 {
        if line == "\r\n" {
            let answer = "HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n";
            return lines.get_mut().write_all(answer.as_bytes()).await;
        }
        line.clear();
    }
    Ok(())
}

async fn milter_stub(mut stream: tokio::net::UnixStream) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await?;
    assert_eq!(body[0], b'O');
    let mut reply = vec![0, 0, 0, 13, b'O', 0, 0, 0, 6];
    reply.extend_from_slice(&[0, 0, 0, 0x10, 0, 0, 0, 0]);
    stream.write_all(&reply).await
}

fn check<'a>(report: &'a DoctorReport, name: &str) -> &'a chatmail_setup::Check {
    report
        .checks
        .iter()
        .find(|c| c.name == name || c.name.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no check {name}:\n{report}"))
}

/// The check `name` of `report` failed, and the report says `says`.
fn assert_fails(report: &DoctorReport, name: &str, says: &str) {
    let text = report.to_string();
    assert_eq!(check(report, name).status, Status::Fail, "{text}");
    assert!(text.contains(says), "{text}");
}

#[tokio::test]
async fn a_healthy_relay_passes() {
    let relay = Relay::new();
    relay.serve(&[]);
    let report = doctor(&relay.options()).await;
    let text = report.to_string();
    assert!(report.ok(), "{text}");
    assert_eq!(report.exit_code(), 0);
    for name in [
        "config",
        "socket auth",
        "socket lastlogin",
        "socket metadata",
        "socket policy",
        "socket transport",
        "socket mxdeliv",
        "socket milter",
        "postfix milter",
        "postfix policy",
        "dovecot metadata",
        "dovecot lastlogin",
        "dovecot auth",
        "tls",
        "mailboxes",
        "disk",
        "memory",
        "inotify",
    ] {
        assert_eq!(check(&report, name).status, Status::Ok, "{name}\n{text}");
    }
    assert!(text.contains("OK socket auth: "), "{text}");
    assert!(text.contains("(lookup: not found)"), "{text}");
    assert!(text.contains("(action=DUNNO)"), "{text}");
    assert!(text.contains("(option negotiation, version 6)"), "{text}");
    assert!(text.contains("INFO nocreate: "), "{text}");
    assert!(
        text.contains("INFO dns: cannot check DNS (no answer from the resolver"),
        "{text}"
    );
    assert!(text.contains("all 21 checks passed"), "{text}");
}

#[tokio::test]
async fn a_missing_socket_fails_with_the_fix() {
    let relay = Relay::new();
    relay.serve(&["milter"]);
    let report = doctor(&relay.options()).await;
    let text = report.to_string();
    assert!(!report.ok());
    assert_eq!(report.exit_code(), 1);
    let c = check(&report, "socket milter");
    assert_eq!(c.status, Status::Fail, "{text}");
    assert!(text.contains("FAIL socket milter: "), "{text}");
    assert!(
        text.contains("fix: systemctl enable --now chatmail-milter.service"),
        "{text}"
    );
    assert_eq!(check(&report, "socket auth").status, Status::Ok);
    assert!(text.contains("1 of 21 checks failed"), "{text}");
}

#[tokio::test]
async fn a_daemon_that_answers_nonsense_fails() {
    let relay = Relay::new();
    relay.serve(&["policy"]);
    let path = relay.socket("policy");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"hello?\n").await.unwrap();
    });
    let report = doctor(&relay.options()).await;
    let c = check(&report, "socket policy");
    assert_eq!(c.status, Status::Fail, "{report}");
    assert!(
        c.detail.contains("unexpected answer \"hello?\""),
        "{report}"
    );
}

#[tokio::test]
async fn daemons_that_never_answer_time_out() {
    let relay = Relay::new();
    relay.serve(&["auth", "milter"]);
    // Listening but never accepting, as a stopped daemon's socket: the
    // kernel still completes the connect, nothing ever answers.
    let mut listeners = Vec::new();
    for daemon in ["auth", "milter"] {
        let path = relay.socket(daemon);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        listeners.push(std::os::unix::net::UnixListener::bind(path).unwrap());
    }
    let report = tokio::time::timeout(Duration::from_secs(60), doctor(&relay.options()))
        .await
        .expect("doctor hung");
    let text = report.to_string();
    for daemon in ["auth", "milter"] {
        let c = check(&report, &format!("socket {daemon}"));
        assert_eq!(c.status, Status::Fail, "{text}");
        assert!(c.detail.ends_with(": no answer within 2 s"), "{text}");
    }
    assert_eq!(check(&report, "socket policy").status, Status::Ok, "{text}");
    assert!(text.contains("2 of 21 checks failed"), "{text}");
    drop(listeners);
}

#[tokio::test]
async fn an_expiring_certificate_fails() {
    let relay = Relay::new();
    relay.serve(&[]);
    let cert = relay.etc.join("ssl/certs/chatmail.pem");
    let key = relay.etc.join("ssl/private/chatmail.key");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=chat.example.org",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let report = doctor(&relay.options()).await;
    let text = report.to_string();
    let c = check(&report, "tls");
    assert_eq!(c.status, Status::Fail, "{text}");
    assert!(c.detail.contains("within 14 days"), "{text}");
    assert!(c.fix.as_deref().unwrap().contains("renew"), "{text}");
}

#[tokio::test]
async fn unwired_postfix_and_dovecot_fail() {
    let relay = Relay::new();
    relay.serve(&[]);
    let main = relay.etc.join("postfix/main.cf");
    let text = fs::read_to_string(&main).unwrap();
    fs::write(
        &main,
        text.replace("smtpd_milters = unix:chatmail/milter.socket\n", ""),
    )
    .unwrap();
    fs::remove_file(relay.etc.join("dovecot/chatmail-auth.lua")).unwrap();
    let report = doctor(&relay.options()).await;
    let text = report.to_string();
    assert_fails(
        &report,
        "postfix milter",
        "does not name /var/spool/postfix/chatmail/milter.socket",
    );
    assert_eq!(
        check(&report, "dovecot auth").status,
        Status::Fail,
        "{text}"
    );
    assert_eq!(
        check(&report, "postfix policy").status,
        Status::Ok,
        "{text}"
    );
}

#[tokio::test]
async fn missing_config_and_mailboxes_fail() {
    let relay = Relay::new();
    relay.serve(&[]);
    fs::remove_dir(relay.root.join("home/vmail/mail").join(DOMAIN)).unwrap();
    let report = doctor(&relay.options()).await;
    let c = check(&report, "mailboxes");
    assert_eq!(c.status, Status::Fail, "{report}");
    assert!(
        c.fix.as_deref().unwrap().starts_with("mkdir -p "),
        "{report}"
    );

    fs::remove_file(relay.etc.join("chatmail/chatmail.ini")).unwrap();
    let report = doctor(&relay.options()).await;
    let text = report.to_string();
    assert_eq!(check(&report, "config").status, Status::Fail, "{text}");
    assert!(text.contains("chatmail setup --domain"), "{text}");
    assert!(Path::new(&relay.etc).exists());
}

#[tokio::test]
async fn moved_sockets_are_asked_there_and_must_be_wired_there() {
    let relay = Relay::new();
    relay.serve(&["milter"]);
    // The milter listens elsewhere, and a private Postfix config dir (as
    // `postfix -c DIR` uses) names that place; Dovecot still names the
    // shipped sockets.
    let moved = relay.root.join("elsewhere/milter.socket");
    fs::create_dir_all(moved.parent().unwrap()).unwrap();
    let listener = UnixListener::bind(&moved).unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(milter_stub(stream));
        }
    });
    let postfix_dir = relay.root.join("private-postfix");
    fs::create_dir_all(&postfix_dir).unwrap();
    let main = fs::read_to_string(relay.etc.join("postfix/main.cf")).unwrap();
    let configured = Path::new("/elsewhere/milter.socket");
    fs::write(
        postfix_dir.join("main.cf"),
        main.replace(
            "smtpd_milters = unix:chatmail/milter.socket\n",
            &format!("smtpd_milters = unix:{}\n", configured.display()),
        ),
    )
    .unwrap();

    let mut opts = relay.options();
    let report = doctor(&opts).await;
    assert_eq!(check(&report, "socket milter").status, Status::Fail);

    opts.set_socket("milter", configured.to_owned());
    let report = doctor(&opts).await;
    let text = report.to_string();
    assert_eq!(check(&report, "socket milter").status, Status::Ok, "{text}");
    // /etc/postfix/main.cf still names the shipped path.
    assert_fails(
        &report,
        "postfix milter",
        "does not name /elsewhere/milter.socket",
    );

    opts.postfix_config_dir = Some(postfix_dir);
    let report = doctor(&opts).await;
    let text = report.to_string();
    assert!(report.ok(), "{text}");
    assert!(
        text.contains("OK postfix milter: smtpd_milters uses /elsewhere/milter.socket"),
        "{text}"
    );
}
