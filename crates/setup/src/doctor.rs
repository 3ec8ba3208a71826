//! `chatmail doctor`: checks that a relay is wired up and alive, and says how
//! to fix what is not.
//!
//! Every check is independent and never changes anything: the daemons get a
//! harmless question in their own protocol (a dict lookup of a key that
//! cannot exist, a policy query for a foreign recipient, a milter option
//! negotiation), so a daemon that accepts connections but cannot answer is
//! caught too. Each daemon gets a few seconds to answer, so a hung daemon is
//! a FAIL line, not a hung doctor.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chatmail_auth::probe::{ResourceProbe, SystemProbe};
use chatmail_auth::rules::{self, Resources};
use chatmail_config::Config;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::files::Roots;
use crate::render::{self, DEFAULT_QUEUE_DIRECTORY};

/// The sockets the shipped units listen on and the snippets point at.
pub const SOCKETS: &[(&str, &str)] = &[
    ("auth", "/run/chatmail-auth/auth.socket"),
    ("lastlogin", "/run/chatmail-lastlogin/lastlogin.socket"),
    ("metadata", "/run/chatmail-metadata/metadata.socket"),
    ("policy", "/var/spool/postfix/chatmail/policy.socket"),
    ("milter", "/var/spool/postfix/chatmail/milter.socket"),
];

/// Why a `--socket DAEMON=PATH` argument was refused.
#[derive(Debug, thiserror::Error)]
pub enum SocketArgError {
    #[error("expected DAEMON=PATH, got {0:?}")]
    Syntax(String),
    #[error("unknown daemon {0:?} (one of {known})", known = daemon_names())]
    UnknownDaemon(String),
}

fn daemon_names() -> String {
    SOCKETS
        .iter()
        .map(|(d, _)| *d)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `--socket DAEMON=PATH`; PATH may carry the `unix:` prefix the
/// daemons' `--listen` takes.
///
/// # Errors
/// When the argument has no `=`, an empty path, or an unknown daemon.
pub fn parse_socket_arg(arg: &str) -> Result<(&'static str, PathBuf), SocketArgError> {
    let (daemon, path) = arg
        .split_once('=')
        .ok_or_else(|| SocketArgError::Syntax(arg.to_owned()))?;
    let path = path.strip_prefix("unix:").unwrap_or(path);
    if path.is_empty() {
        return Err(SocketArgError::Syntax(arg.to_owned()));
    }
    let (daemon, _) = SOCKETS
        .iter()
        .find(|(d, _)| *d == daemon)
        .ok_or_else(|| SocketArgError::UnknownDaemon(daemon.to_owned()))?;
    Ok((daemon, PathBuf::from(path)))
}

/// What to check.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// The relay's `chatmail.ini`.
    pub config: PathBuf,
    /// Where `/etc` and `/` are (see [`Roots`]): tests and `--etc` point
    /// them at copies.
    pub roots: Roots,
    /// The directory holding Postfix's `main.cf` on this machine; `None`
    /// is `/etc/postfix` under [`Roots`]. A private instance (`postfix -c
    /// DIR`, such as the sandbox's) keeps it elsewhere.
    pub postfix_config_dir: Option<PathBuf>,
    /// Dovecot's main configuration file on this machine, checked as
    /// `doveconf -c FILE -n` reads it (every include resolved). `None`
    /// reads the file `setup` installs, `conf.d/90-chatmail.conf` under
    /// [`Roots`], directly: that also works on a copy of `/etc` whose
    /// includes name the real `/etc`.
    pub dovecot_config: Option<PathBuf>,
    /// Where each daemon listens, as Postfix and Dovecot must name it
    /// (mapped through [`Roots`] to probe it); [`SOCKETS`] unless moved.
    pub sockets: Vec<(&'static str, PathBuf)>,
    /// The user that must own the mailboxes.
    pub vmail_user: String,
    /// A certificate expiring within this many days fails.
    pub cert_margin_days: u32,
    /// The kernel's `/proc` (the inotify limit and Dovecot's processes are
    /// read there); tests point it at a fake.
    pub proc: PathBuf,
    /// How long a daemon may take to answer. Short: a daemon that needs
    /// seconds for a lookup of nothing is as good as down for Postfix and
    /// Dovecot, and a stopped one must not hang the doctor.
    pub timeout: Duration,
}

impl DoctorOptions {
    /// The options of `chatmail doctor [--config PATH] [--etc DIR]`: the
    /// config defaults to `chatmail/chatmail.ini` under the etc directory.
    pub fn new(config: Option<PathBuf>, etc: Option<PathBuf>) -> DoctorOptions {
        let roots = Roots {
            etc: etc.unwrap_or_else(|| "/etc".into()),
            root: "/".into(),
        };
        DoctorOptions {
            config: config.unwrap_or_else(|| roots.etc.join("chatmail/chatmail.ini")),
            roots,
            postfix_config_dir: None,
            dovecot_config: None,
            sockets: SOCKETS
                .iter()
                .map(|(d, p)| (*d, PathBuf::from(p)))
                .collect(),
            vmail_user: chatmail_auth::VMAIL.into(),
            cert_margin_days: 14,
            timeout: Duration::from_secs(3),
            proc: "/proc".into(),
        }
    }

    /// Points the check of `daemon` at `path` (`--socket DAEMON=PATH`).
    pub fn set_socket(&mut self, daemon: &'static str, path: PathBuf) {
        match self.sockets.iter_mut().find(|(d, _)| *d == daemon) {
            Some(entry) => entry.1 = path,
            None => self.sockets.push((daemon, path)),
        }
    }

    /// Where `daemon` listens, as the configs name it (the shipped path
    /// when [`DoctorOptions::sockets`] lost it).
    fn socket(&self, daemon: &str) -> PathBuf {
        let moved = self.sockets.iter().find(|(d, _)| *d == daemon);
        let shipped = || SOCKETS.iter().find(|(d, _)| *d == daemon);
        moved
            .map(|(_, p)| p.clone())
            .or_else(|| shipped().map(|(_, p)| PathBuf::from(p)))
            .unwrap_or_default()
    }

    fn main_cf(&self) -> PathBuf {
        match &self.postfix_config_dir {
            Some(dir) => dir.join("main.cf"),
            None => self.roots.host(Path::new("/etc/postfix/main.cf")),
        }
    }
}

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Broken: mail is refused, deferred or insecure until fixed.
    Fail,
    /// Neither: a state the operator should know about.
    Info,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The verdict.
    pub status: Status,
    /// What was checked, e.g. `socket auth`.
    pub name: String,
    /// What was found.
    pub detail: String,
    /// How to fix it (for [`Status::Fail`]).
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            status: Status::Ok,
            name: name.into(),
            detail: detail.into(),
            fix: None,
        }
    }
    fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            name: name.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check's result, in the order they ran.
#[derive(Debug, Clone, Default)]
pub struct DoctorReport {
    /// The checks.
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// True when no check failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The process exit code: 0 when everything is fine, 1 when a check
    /// failed.
    pub fn exit_code(&self) -> i32 {
        if self.ok() { 0 } else { 1 }
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => "OK",
                Status::Fail => "FAIL",
                Status::Info => "INFO",
            };
            writeln!(f, "{status} {}: {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(f, "     fix: {fix}")?;
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        if failed == 0 {
            writeln!(f, "all {} checks passed", self.checks.len())
        } else {
            writeln!(f, "{failed} of {} checks failed", self.checks.len())
        }
    }
}

/// Runs every check. Never fails: what cannot be checked is a FAIL line.
pub async fn doctor(opts: &DoctorOptions) -> DoctorReport {
    let mut checks = Vec::new();
    let config = match Config::load(&opts.config) {
        Ok((config, warnings)) => {
            let mut detail = format!(
                "{} (mail_domain {})",
                opts.config.display(),
                config.mail_domain
            );
            for w in &warnings {
                detail.push_str(&format!("; warning: {w}"));
            }
            checks.push(Check::ok("config", detail));
            Some(config)
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                format!("{}: {e}", opts.config.display()),
                "fix the file, or create it with `chatmail setup --domain YOUR.DOMAIN`",
            ));
            None
        }
    };

    // All at once: a stopped daemon costs one timeout, not one each.
    let probes: Vec<_> = opts
        .sockets
        .iter()
        .map(|(daemon, path)| {
            let (daemon, host, timeout) = (*daemon, opts.roots.host(path), opts.timeout);
            let task = tokio::spawn(async move {
                tokio::time::timeout(timeout, probe(daemon, &host))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!("no answer within {} s", timeout.as_secs_f32()))
                    })
            });
            (daemon, opts.roots.host(path), task)
        })
        .collect();
    for (daemon, host, task) in probes {
        let result = task
            .await
            .unwrap_or_else(|e| Err(format!("the check itself failed: {e}")));
        let name = format!("socket {daemon}");
        checks.push(match result {
            Ok(answer) => Check::ok(name, format!("{} answers ({answer})", host.display())),
            Err(e) => Check::fail(
                name,
                format!("{}: {e}", host.display()),
                format!(
                    "systemctl enable --now chatmail-{daemon}.service; \
                     see journalctl -u chatmail-{daemon}"
                ),
            ),
        });
    }

    checks.extend(postfix_wiring(opts));
    let (dovecot_checks, dovecot_cert) = dovecot_wiring(opts).await;
    checks.extend(dovecot_checks);

    let main_cf = std::fs::read_to_string(opts.main_cf());
    let mut certs = vec![
        main_cf
            .ok()
            .and_then(|t| render::main_cf_value(&t, "smtpd_tls_cert_file"))
            .map_or_else(|| PathBuf::from(render::SNIPPET_CERT), PathBuf::from),
    ];
    if let Some(c) = dovecot_cert.filter(|c| !certs.contains(c)) {
        certs.push(c);
    }
    for cert in certs {
        checks.push(check_certificate(&opts.roots, &cert, opts.cert_margin_days).await);
    }

    if let Some(config) = &config {
        checks.push(check_mailboxes(opts, &config.mailboxes_dir));
        let dir = opts.roots.host(&config.mailboxes_dir);
        let measured = SystemProbe::default()
            .probe(&dir)
            .map_err(|e| e.to_string());
        checks.extend(resource_checks(config, &opts.config, &dir, &measured));
        checks.push(inotify_check(
            read_inotify_limit(&opts.proc.join(INOTIFY_LIMIT_IN_PROC)),
            count_imap_inotify(&opts.proc),
        ));
        let nocreate = opts.roots.host(&config.nocreate_file);
        checks.push(Check {
            status: Status::Info,
            name: "nocreate".into(),
            detail: if nocreate.exists() {
                format!(
                    "{} exists: no new accounts are created (remove it to allow them)",
                    nocreate.display()
                )
            } else {
                format!(
                    "{} absent: new accounts are created on first login",
                    nocreate.display()
                )
            },
            fix: None,
        });
    }
    DoctorReport { checks }
}

/// Asks `daemon` a harmless question on `socket`; the answer's gist.
async fn probe(daemon: &str, socket: &Path) -> Result<String, String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    match daemon {
        "policy" => probe_policy(stream).await,
        "milter" => probe_milter(stream).await,
        _ => probe_dict(daemon, stream).await,
    }
    .map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("closed the connection without answering")]
    Closed,
    #[error("unexpected answer {0:?}")]
    Unexpected(String),
}

/// Sends a line-protocol `query` and returns the first answer line.
async fn ask(stream: UnixStream, query: &[u8]) -> Result<String, ProbeError> {
    let mut stream = BufReader::new(stream);
    // A daemon that answers before reading (a greeting, an error) and hangs
    // up makes the write fail; its answer still says more than EPIPE.
    let sent = stream.get_mut().write_all(query).await;
    let mut line = String::new();
    match (stream.read_line(&mut line).await, sent) {
        (Ok(n), _) if n > 0 => Ok(line.trim_end().to_owned()),
        (_, Err(e)) => Err(ProbeError::Io(e)),
        (Ok(_), Ok(())) => Err(ProbeError::Closed),
        (Err(e), Ok(())) => Err(ProbeError::Io(e)),
    }
}

/// Dovecot dict protocol 3.2: HELLO, then a lookup of a key no daemon can
/// have; `N` (not found) or `F` (refused) both prove it is serving.
async fn probe_dict(daemon: &str, stream: UnixStream) -> Result<String, ProbeError> {
    let key = match daemon {
        // A userdb lookup never creates an account, and this domain is
        // reserved, so it cannot be ours.
        "auth" => "shared/userdb/chatmail-doctor@example.invalid",
        _ => "shared/chatmail-doctor/probe",
    };
    let line = ask(stream, format!("H3\t2\t0\t\t{daemon}\nL{key}\n").as_bytes()).await?;
    match line.as_bytes().first() {
        Some(b'N') => Ok("lookup: not found".into()),
        Some(b'F') => Ok("lookup: refused".into()),
        Some(b'O') => Ok("lookup: found".into()),
        _ => Err(ProbeError::Unexpected(line)),
    }
}

/// A policy query for a recipient in a reserved foreign domain at RCPT:
/// it counts against no rate limit and creates nothing.
async fn probe_policy(stream: UnixStream) -> Result<String, ProbeError> {
    let line = ask(
        stream,
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
          client_address=127.0.0.1\nclient_name=localhost\nhelo_name=localhost\n\
          sender=\nrecipient=chatmail-doctor@example.invalid\n\
          instance=chatmail-doctor\n\n",
    )
    .await?;
    if line.starts_with("action=") {
        Ok(line)
    } else {
        Err(ProbeError::Unexpected(line))
    }
}

/// Milter option negotiation (SMFIC_OPTNEG, protocol 6), as Postfix opens
/// every connection; the daemon answers with its own OPTNEG.
async fn probe_milter(mut stream: UnixStream) -> Result<String, ProbeError> {
    let mut packet = Vec::with_capacity(17);
    packet.extend_from_slice(&13u32.to_be_bytes());
    packet.push(b'O');
    packet.extend_from_slice(&6u32.to_be_bytes());
    // Every action and protocol step Postfix 3.7 offers.
    packet.extend_from_slice(&0x1ffu32.to_be_bytes());
    packet.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
    stream.write_all(&packet).await?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ProbeError::Closed,
            _ => ProbeError::Io(e),
        })?;
    let len = u32::from_be_bytes(len);
    if len == 0 || len > 64 * 1024 {
        return Err(ProbeError::Unexpected(format!("packet length {len}")));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await?;
    // SMFIC_QUIT, so the daemon does not log an aborted connection.
    let _ = stream.write_all(&[0, 0, 0, 1, b'Q']).await;
    match body[0] {
        b'O' => {
            let version = body
                .get(1..5)
                .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
            Ok(format!(
                "option negotiation, version {}",
                version.unwrap_or(0)
            ))
        }
        c => Err(ProbeError::Unexpected(format!(
            "milter reply {:?}",
            char::from(c)
        ))),
    }
}

/// The `unix:` sockets a Postfix restriction list or milter list names,
/// resolved against the queue directory as Postfix does.
fn postfix_sockets(value: &str, after: Option<&str>, queue_dir: &Path) -> Vec<PathBuf> {
    let words: Vec<&str> = value
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let Some(path) = w.strip_prefix("unix:") else {
            continue;
        };
        if after.is_some_and(|a| i == 0 || words[i - 1] != a) {
            continue;
        }
        out.push(queue_dir.join(path));
    }
    out
}

fn postfix_wiring(opts: &DoctorOptions) -> Vec<Check> {
    let main_cf_path = opts.main_cf();
    let fix = "run `chatmail setup --domain YOUR.DOMAIN` (it merges the shipped main.cf settings)";
    let text = match std::fs::read_to_string(&main_cf_path) {
        Ok(t) => t,
        Err(e) => {
            return vec![Check::fail(
                "postfix",
                format!("{}: {e}", main_cf_path.display()),
                "apt-get install postfix, then run `chatmail setup --domain YOUR.DOMAIN`",
            )];
        }
    };
    let queue_dir = render::main_cf_value(&text, "queue_directory")
        .unwrap_or_else(|| DEFAULT_QUEUE_DIRECTORY.into());
    let queue_dir = Path::new(&queue_dir);
    let mut checks = Vec::new();

    let milter = &opts.socket("milter");
    let milters = render::main_cf_value(&text, "smtpd_milters").unwrap_or_default();
    let action = render::main_cf_value(&text, "milter_default_action").unwrap_or_default();
    checks.push(
        if !postfix_sockets(&milters, None, queue_dir)
            .iter()
            .any(|p| p == milter)
        {
            Check::fail(
                "postfix milter",
                format!(
                    "smtpd_milters = {milters:?} does not name {}",
                    milter.display()
                ),
                fix,
            )
        } else if action != "tempfail" {
            Check::fail(
                "postfix milter",
                format!(
                    "milter_default_action = {action:?}: mail would pass unchecked while \
                     chatmail-milter is down"
                ),
                "postconf -e milter_default_action=tempfail && postfix reload",
            )
        } else {
            Check::ok(
                "postfix milter",
                format!(
                    "smtpd_milters uses {}, milter_default_action = tempfail",
                    milter.display()
                ),
            )
        },
    );

    let policy = &opts.socket("policy");
    let mut missing = Vec::new();
    for key in ["smtpd_recipient_restrictions", "smtpd_data_restrictions"] {
        let value = render::main_cf_value(&text, key).unwrap_or_default();
        if !postfix_sockets(&value, Some("check_policy_service"), queue_dir)
            .iter()
            .any(|p| p == policy)
        {
            missing.push(key);
        }
    }
    checks.push(if missing.is_empty() {
        Check::ok(
            "postfix policy",
            format!(
                "smtpd_recipient_restrictions and smtpd_data_restrictions use {}",
                policy.display()
            ),
        )
    } else {
        Check::fail(
            "postfix policy",
            format!(
                "{} lack(s) check_policy_service unix:{}",
                missing.join(" and "),
                policy.display()
            ),
            fix,
        )
    });
    checks
}

/// The Dovecot settings to check and where they come from: the output of
/// `doveconf -c FILE -n`, or the snippet file `setup` installs.
///
/// # Errors
/// The FAIL line when neither can be read.
async fn dovecot_settings(opts: &DoctorOptions, fix: &str) -> Result<(String, String), Check> {
    let Some(file) = &opts.dovecot_config else {
        let path = opts.roots.host(Path::new(render::DOVECOT_CONF_D));
        return match std::fs::read_to_string(&path) {
            Ok(text) => Ok((path.display().to_string(), text)),
            Err(e) => Err(Check::fail(
                "dovecot",
                format!("{}: {e}", path.display()),
                fix,
            )),
        };
    };
    let what = format!("doveconf -c {} -n", file.display());
    match tokio::process::Command::new("doveconf")
        .arg("-c")
        .arg(file)
        .arg("-n")
        .output()
        .await
    {
        Ok(out) if out.status.success() => {
            Ok((what, String::from_utf8_lossy(&out.stdout).into_owned()))
        }
        Ok(out) => Err(Check::fail(
            "dovecot",
            format!(
                "`{what}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            format!("fix what `{what}` reports"),
        )),
        Err(e) => Err(Check::fail(
            "dovecot",
            format!("cannot run doveconf: {e}"),
            "apt-get install dovecot-core",
        )),
    }
}

/// The Dovecot checks and the certificate Dovecot uses (if it says).
async fn dovecot_wiring(opts: &DoctorOptions) -> (Vec<Check>, Option<PathBuf>) {
    let roots = &opts.roots;
    let fix = "run `chatmail setup --domain YOUR.DOMAIN` (it installs conf.d/90-chatmail.conf)";
    let (source, text) = match dovecot_settings(opts, fix).await {
        Ok(found) => found,
        Err(check) => return (vec![check], None),
    };
    let mut checks = Vec::new();
    let mut dict = |daemon: &str, key: &str, source: &str, text: &str| {
        let want = opts.socket(daemon);
        let name = format!("dovecot {daemon}");
        let value = render::dovecot_value(text, key);
        checks.push(match value.as_deref().and_then(render::dict_socket) {
            Some(p) if p == want => {
                Check::ok(name, format!("{key} in {source} uses {}", want.display()))
            }
            _ => Check::fail(
                name,
                format!(
                    "{key} in {source} is {value:?}, not proxy:{}:{daemon}",
                    want.display()
                ),
                fix,
            ),
        });
    };
    dict("metadata", "mail_attribute_dict", &source, &text);
    dict("lastlogin", "last_login_dict", &source, &text);
    let ext_name = render::dovecot_value(&text, "args")
        .unwrap_or_else(|| "/etc/dovecot/chatmail-auth.conf.ext".into());
    let ext_path = roots.host(Path::new(&ext_name));
    match std::fs::read_to_string(&ext_path) {
        Ok(ext) => dict("auth", "uri", &ext_path.display().to_string(), &ext),
        Err(e) => checks.push(Check::fail(
            "dovecot auth",
            format!("passdb/userdb args {}: {e}", ext_path.display()),
            fix,
        )),
    }
    let cert = render::dovecot_value(&text, "ssl_cert")
        .map(|c| PathBuf::from(c.trim_start_matches('<').trim()));
    (checks, cert)
}

async fn check_certificate(roots: &Roots, cert: &Path, margin_days: u32) -> Check {
    let name = format!("tls {}", cert.display());
    let host = roots.host(cert);
    let fix = format!(
        "renew it (a self-signed one: remove {} and its key, then run `chatmail setup --domain \
         YOUR.DOMAIN`), then `systemctl reload postfix dovecot`",
        cert.display()
    );
    let openssl = |args: &[&str]| {
        tokio::process::Command::new("openssl")
            .args(["x509", "-noout", "-in"])
            .arg(&host)
            .args(args)
            .output()
    };
    let end = match openssl(&["-enddate"]).await {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .trim()
            .trim_start_matches("notAfter=")
            .to_owned(),
        Ok(o) => {
            return Check::fail(
                name,
                format!(
                    "{}: not a readable certificate ({})",
                    host.display(),
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                ),
                fix,
            );
        }
        Err(e) => {
            return Check::fail(
                name,
                format!("cannot run openssl: {e}"),
                "apt-get install openssl",
            );
        }
    };
    let seconds = (u64::from(margin_days) * 86_400).to_string();
    match openssl(&["-checkend", &seconds]).await {
        Ok(o) if o.status.success() => Check::ok(name, format!("valid until {end}")),
        Ok(_) => Check::fail(
            name,
            format!("expires {end}, within {margin_days} days"),
            fix,
        ),
        Err(e) => Check::fail(
            name,
            format!("cannot run openssl: {e}"),
            "apt-get install openssl",
        ),
    }
}

fn check_mailboxes(opts: &DoctorOptions, dir: &Path) -> Check {
    let host = opts.roots.host(dir);
    let name = "mailboxes";
    let user = &opts.vmail_user;
    let fix = format!(
        "mkdir -p {d} && chown {user}:{user} {d} && chmod 0750 {d}",
        d = host.display()
    );
    let Some(vmail) = nix::unistd::User::from_name(user).ok().flatten() else {
        return Check::fail(
            name,
            format!("there is no {user} user"),
            "reinstall chatmail-helpers (its postinst creates vmail), or: \
             adduser --system --group --home /home/vmail vmail",
        );
    };
    match std::fs::metadata(&host) {
        Ok(m) if !m.is_dir() => {
            Check::fail(name, format!("{} is not a directory", host.display()), fix)
        }
        Ok(m) if m.uid() != vmail.uid.as_raw() => Check::fail(
            name,
            format!(
                "{} is owned by uid {}, not {user} ({})",
                host.display(),
                m.uid(),
                vmail.uid
            ),
            format!("chown -R {user}:{user} {}", host.display()),
        ),
        Ok(_) => Check::ok(name, format!("{} exists, owned by {user}", host.display())),
        Err(e) => Check::fail(name, format!("{}: {e}", host.display()), fix),
    }
}

/// The kernel's per-user limit of inotify instances, under `/proc`.
pub const INOTIFY_LIMIT_IN_PROC: &str = "sys/fs/inotify/max_user_instances";
/// What the package's `/usr/lib/sysctl.d/60-chatmail-helpers.conf` sets.
pub const INOTIFY_PACKAGE_LIMIT: u64 = 65536;

/// The `inotify` line. Every IMAP connection in IDLE, and every one Dovecot
/// has hibernated, holds one inotify instance created as vmail, the user
/// all mailboxes run as (docs/latency.md); past the limit Dovecot polls new
/// IDLE connections every 30 s and cannot hibernate them. `used` counts
/// those instances when they could be counted (root can). Less than half
/// the limit left fails; a limit below the package's value is reported as
/// information only: a small relay may never need more.
pub fn inotify_check(limit: Result<u64, String>, used: Option<u64>) -> Check {
    let limit = match limit {
        Ok(limit) => limit,
        Err(e) => {
            return Check {
                status: Status::Info,
                name: "inotify".into(),
                detail: format!("cannot read fs.inotify.max_user_instances: {e}"),
                fix: None,
            };
        }
    };
    let in_use = used.map_or_else(String::new, |u| format!("{u} in use by IMAP connections, "));
    let detail = format!("{in_use}fs.inotify.max_user_instances = {limit}");
    let fix = format!(
        "sysctl -w fs.inotify.max_user_instances={INOTIFY_PACKAGE_LIMIT} and keep it in \
         /etc/sysctl.d/ (the package installs /usr/lib/sysctl.d/60-chatmail-helpers.conf)"
    );
    if used.is_some_and(|u| u.saturating_mul(2) > limit) {
        return Check::fail(
            "inotify",
            format!(
                "{detail}: less than half left; past it IDLE connections are polled every 30 s"
            ),
            fix,
        );
    }
    if limit < INOTIFY_PACKAGE_LIMIT {
        return Check {
            status: Status::Info,
            name: "inotify".into(),
            detail: format!(
                "{detail}: each connected device needs one; raise it before {limit} devices \
                 connect ({fix})"
            ),
            fix: None,
        };
    }
    Check::ok("inotify", detail)
}

fn read_inotify_limit(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    text.trim()
        .parse()
        .map_err(|e| format!("{:?}: {e}", text.trim()))
}

/// The inotify instances held by Dovecot's `imap` and `imap-hibernate`
/// processes under `proc`; `None` when any of them cannot be read (not
/// root), rather than a count that is too low.
fn count_imap_inotify(proc: &Path) -> Option<u64> {
    let mut count = 0;
    for entry in std::fs::read_dir(proc).ok()?.flatten() {
        let pid_dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(pid_dir.join("comm")) else {
            continue; // not a process, or it just exited
        };
        if !matches!(comm.trim_end(), "imap" | "imap-hibernate") {
            continue;
        }
        let fds = match std::fs::read_dir(pid_dir.join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t == Path::new("anon_inode:inotify")) {
                count += 1;
            }
        }
    }
    Some(count)
}

/// The free disk and memory lines: the account-creation rules of
/// `chatmail auth` ([`rules::check_disk`], [`rules::check_memory`]) applied
/// to what was measured (`dir` is the mailboxes directory on this machine,
/// `ini` the config file to name in the fix). Below a limit the relay keeps
/// working, but every first login of a new address is refused.
pub fn resource_checks(
    config: &Config,
    ini: &Path,
    dir: &Path,
    measured: &Result<Resources, String>,
) -> [Check; 2] {
    let res = match measured {
        Ok(res) => res,
        Err(e) => {
            let fail = |name: &str| {
                Check::fail(
                    name,
                    format!("cannot measure: {e}"),
                    format!(
                        "make /proc/meminfo and {} readable; chatmail auth refuses \
                         new accounts until it can measure them",
                        dir.display()
                    ),
                )
            };
            return [fail("disk"), fail("memory")];
        }
    };
    let disk_limit = format!("min_free_disk_space = {}", config.min_free_disk_space.text);
    let disk = match rules::check_disk(config, res.free_disk) {
        Ok(()) => Check::ok(
            "disk",
            format!(
                "{} free on the file system of {} (new accounts need {disk_limit})",
                bytes(res.free_disk),
                dir.display()
            ),
        ),
        Err(_) => Check::fail(
            "disk",
            format!(
                "{} free on the file system of {}, below {disk_limit}: no new accounts \
                 are created",
                bytes(res.free_disk),
                dir.display()
            ),
            format!(
                "free space there (`df -h {}`; `chatmail expire` removes old mail), \
                 or lower min_free_disk_space in {}",
                dir.display(),
                ini.display()
            ),
        ),
    };
    let memory_limit = format!(
        "min_available_memory = {}",
        config.min_available_memory.text
    );
    let memory = match rules::check_memory(config, res.available_memory) {
        Ok(()) => Check::ok(
            "memory",
            format!(
                "{} available (new accounts need {memory_limit})",
                bytes(res.available_memory)
            ),
        ),
        Err(_) => Check::fail(
            "memory",
            format!(
                "{} available, below {memory_limit}: no new accounts are created",
                bytes(res.available_memory)
            ),
            format!(
                "stop what uses the memory (`ps aux --sort=-rss | head`) or add RAM, \
                 or lower min_available_memory in {}",
                ini.display()
            ),
        ),
    };
    [disk, memory]
}

/// A byte count for people, rounded down so a figure just below a limit
/// never prints as the limit itself.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = n;
    while scaled >= 1024 && unit < UNITS.len() - 1 {
        scaled /= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} bytes");
    }
    // One decimal, rounded down: tenths of the unit.
    let tenths = u128::from(n) * 10 / (1u128 << (10 * unit));
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_and_memory_against_the_account_creation_limits() {
        // Defaults: min_free_disk_space = 1G, min_available_memory = 200M.
        let config = Config::for_tests("example.org", Path::new("/m"));
        let (ini, dir) = (Path::new("/etc/chatmail/chatmail.ini"), Path::new("/m"));
        const G: u64 = 1 << 30;
        const M: u64 = 1 << 20;
        let cases: &[(u64, u64, Status, Status, &str, &str)] = &[
            (
                100 * G,
                8 * G,
                Status::Ok,
                Status::Ok,
                "100.0 GiB free on the file system of /m (new accounts need \
                 min_free_disk_space = 1G)",
                "8.0 GiB available (new accounts need min_available_memory = 200M)",
            ),
            // Exactly at a limit is enough, as for chatmail auth.
            (
                G,
                200 * M,
                Status::Ok,
                Status::Ok,
                "1.0 GiB free",
                "200.0 MiB available",
            ),
            (
                G - 1,
                200 * M - 1,
                Status::Fail,
                Status::Fail,
                "1023.9 MiB free on the file system of /m, below min_free_disk_space = 1G: \
                 no new accounts are created",
                "199.9 MiB available, below min_available_memory = 200M",
            ),
            (
                0,
                8 * G,
                Status::Fail,
                Status::Ok,
                "0 bytes free",
                "8.0 GiB available",
            ),
            (
                5 * G,
                3 * M / 2,
                Status::Ok,
                Status::Fail,
                "5.0 GiB free",
                "1.5 MiB available",
            ),
        ];
        for &(free_disk, available_memory, disk_status, memory_status, disk, memory) in cases {
            let res = Resources {
                load_1m: 0.0,
                available_memory,
                free_disk,
            };
            let [d, m] = resource_checks(&config, ini, dir, &Ok(res));
            assert_eq!((d.name.as_str(), m.name.as_str()), ("disk", "memory"));
            assert_eq!(d.status, disk_status, "{d:?}");
            assert_eq!(m.status, memory_status, "{m:?}");
            assert!(d.detail.starts_with(disk), "{d:?}");
            assert!(m.detail.starts_with(memory), "{m:?}");
            // The same decision as the account-creation rules.
            assert_eq!(
                d.status == Status::Ok,
                rules::check_disk(&config, free_disk).is_ok()
            );
            assert_eq!(
                m.status == Status::Ok,
                rules::check_memory(&config, available_memory).is_ok()
            );
            for c in [&d, &m] {
                assert_eq!(c.fix.is_some(), c.status == Status::Fail, "{c:?}");
            }
        }
        let [d, _] = resource_checks(
            &config,
            ini,
            dir,
            &Ok(Resources {
                load_1m: 0.0,
                available_memory: 0,
                free_disk: 0,
            }),
        );
        assert!(
            d.fix
                .unwrap()
                .contains("lower min_free_disk_space in /etc/chatmail/chatmail.ini")
        );
        let [d, m] = resource_checks(&config, ini, dir, &Err("no /proc".into()));
        assert_eq!((d.status, m.status), (Status::Fail, Status::Fail));
        assert_eq!(m.detail, "cannot measure: no /proc");
    }

    #[test]
    fn inotify_lines() {
        // (limit, instances in use, verdict, start of the detail)
        type Case = (Result<u64, String>, Option<u64>, Status, &'static str);
        let cases: &[Case] = &[
            (
                Ok(65536),
                Some(10),
                Status::Ok,
                "10 in use by IMAP connections, fs.inotify.max_user_instances = 65536",
            ),
            (
                Ok(65536),
                None,
                Status::Ok,
                "fs.inotify.max_user_instances = 65536",
            ),
            (
                Ok(128),
                Some(3),
                Status::Info,
                "3 in use by IMAP connections, fs.inotify.max_user_instances = 128: each",
            ),
            (Ok(128), Some(64), Status::Info, "64 in use"),
            (
                Ok(128),
                Some(65),
                Status::Fail,
                "65 in use by IMAP connections, fs.inotify.max_user_instances = 128: less than half left",
            ),
            (Ok(65536), Some(40000), Status::Fail, "40000 in use"),
            (
                Ok(128),
                None,
                Status::Info,
                "fs.inotify.max_user_instances = 128: each",
            ),
            (
                Err("denied".into()),
                Some(1),
                Status::Info,
                "cannot read fs.inotify.max_user_instances: denied",
            ),
        ];
        for (limit, used, status, detail) in cases {
            let c = inotify_check(limit.clone(), *used);
            assert_eq!(c.name, "inotify");
            assert_eq!(c.status, *status, "{c:?}");
            assert!(c.detail.starts_with(detail), "{c:?}");
            assert_eq!(c.fix.is_some(), c.status == Status::Fail, "{c:?}");
        }
    }

    #[test]
    fn inotify_instances_are_counted_per_imap_process() {
        let proc = tempfile::tempdir().unwrap();
        let p = proc.path();
        for (pid, comm, fds) in [
            ("10", "imap\n", &["anon_inode:inotify", "socket:[1]"][..]),
            (
                "11",
                "imap-hibernate\n",
                &["anon_inode:inotify", "anon_inode:inotify"][..],
            ),
            ("12", "dovecot\n", &["anon_inode:inotify"][..]),
        ] {
            std::fs::create_dir_all(p.join(pid).join("fd")).unwrap();
            std::fs::write(p.join(pid).join("comm"), comm).unwrap();
            for (i, target) in fds.iter().enumerate() {
                std::os::unix::fs::symlink(target, p.join(pid).join("fd").join(i.to_string()))
                    .unwrap();
            }
        }
        std::fs::write(p.join("uptime"), "1 2\n").unwrap();
        assert_eq!(count_imap_inotify(p), Some(3));
        assert_eq!(count_imap_inotify(&p.join("missing")), None);
        let limit = p.join("max_user_instances");
        std::fs::write(&limit, "128\n").unwrap();
        assert_eq!(read_inotify_limit(&limit), Ok(128));
        std::fs::write(&limit, "x").unwrap();
        assert!(read_inotify_limit(&limit).is_err());
    }

    #[test]
    fn socket_arguments() {
        assert_eq!(
            parse_socket_arg("milter=/x/m.sock").unwrap(),
            ("milter", PathBuf::from("/x/m.sock"))
        );
        assert_eq!(
            parse_socket_arg("auth=unix:/run/a").unwrap(),
            ("auth", PathBuf::from("/run/a"))
        );
        for bad in ["milter", "milter=", "milter=unix:", "smtpd=/x"] {
            assert!(parse_socket_arg(bad).is_err(), "{bad}");
        }
        let mut opts = DoctorOptions::new(None, None);
        opts.set_socket("policy", "/p".into());
        assert_eq!(opts.socket("policy"), PathBuf::from("/p"));
        assert_eq!(
            opts.socket("milter"),
            PathBuf::from("/var/spool/postfix/chatmail/milter.socket")
        );
        assert_eq!(opts.sockets.len(), SOCKETS.len());
    }

    #[test]
    fn policy_sockets_are_found_after_check_policy_service() {
        let q = Path::new("/var/spool/postfix");
        let v = "check_policy_service { unix:chatmail/policy.socket, timeout=10s }";
        assert_eq!(
            postfix_sockets(v, Some("check_policy_service"), q),
            vec![PathBuf::from("/var/spool/postfix/chatmail/policy.socket")]
        );
        assert_eq!(
            postfix_sockets(
                "check_policy_service unix:/abs/p",
                Some("check_policy_service"),
                q
            ),
            vec![PathBuf::from("/abs/p")]
        );
        assert!(postfix_sockets("permit unix:x", Some("check_policy_service"), q).is_empty());
    }
}
