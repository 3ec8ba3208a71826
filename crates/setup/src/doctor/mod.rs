//! `chatmail doctor`: checks that a relay is wired up and alive, and says how
//! to fix what is not.
//!
//! Every check is independent and never changes anything: the daemons get a
//! harmless question in their own protocol (a dict lookup of a key that
//! cannot exist, a policy query for a foreign recipient, a milter option
//! negotiation), so a daemon that accepts connections but cannot answer is
//! caught too. Each daemon gets a few seconds to answer, so a hung daemon is
//! a FAIL line, not a hung doctor.
//!
//! The checks, in the order they run: the config (here), the sockets
//! (`probe`), the metrics endpoints ([`metrics`]), the Postfix and Dovecot
//! configuration (`wiring`), then the machine (`host`: certificates,
//! mailboxes, disk, memory, inotify, nocreate), with the web front
//! ([`crate::web`]) and DNS ([`crate::dns`]) among them. What a relay must
//! do when a piece is missing is in docs/design.md, "Failure behaviour".

mod host;
pub mod metrics;
mod probe;
mod wiring;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chatmail_config::Config;

use crate::files::Roots;

pub use self::host::{
    INOTIFY_LIMIT_IN_PROC, INOTIFY_PACKAGE_LIMIT, inotify_check, resource_checks,
};

/// The daemons whose sockets the shipped units listen on and the snippets
/// point at.
pub use chatmail_snippets::daemons::DAEMONS;

/// Why a `--socket DAEMON=PATH` argument was refused.
#[derive(Debug, thiserror::Error)]
pub enum SocketArgError {
    #[error("expected DAEMON=PATH, got {0:?}")]
    Syntax(String),
    #[error("unknown daemon {0:?} (one of {known})", known = daemon_names())]
    UnknownDaemon(String),
}

fn daemon_names() -> String {
    DAEMONS
        .iter()
        .map(|d| d.name)
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
    let daemon = chatmail_snippets::daemons::daemon(daemon)
        .ok_or_else(|| SocketArgError::UnknownDaemon(daemon.to_owned()))?;
    Ok((daemon.name, PathBuf::from(path)))
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
    /// (mapped through [`Roots`] to probe it); those of [`DAEMONS`] unless
    /// moved.
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
    /// Where the web front is checked (docs/web.md).
    pub web: crate::web::WebProbe,
    /// Metrics endpoints given on the command line (`--metrics`), on top of
    /// those `metrics_listen` enables (see [`crate::doctor_metrics`]).
    pub metrics: Vec<(&'static str, std::net::SocketAddr)>,
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
            sockets: DAEMONS
                .iter()
                .map(|d| (d.name, PathBuf::from(d.socket)))
                .collect(),
            vmail_user: chatmail_accounts::VMAIL.into(),
            cert_margin_days: 14,
            timeout: Duration::from_secs(3),
            proc: "/proc".into(),
            web: crate::web::WebProbe::default(),
            metrics: Vec::new(),
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
        let shipped = || chatmail_snippets::daemons::daemon(daemon);
        moved
            .map(|(_, p)| p.clone())
            .or_else(|| shipped().map(|d| PathBuf::from(d.socket)))
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

/// The config check, plus a line naming the keys that nothing reads
/// (unknown, misspelt, or dropped by chatmaild), so an operator's file that
/// still sets them does not look fine while doing nothing.
fn config_checks(path: &Path, checks: &mut Vec<Check>) -> Option<Config> {
    match Config::load(path) {
        Ok((config, warnings)) => {
            let mut detail = format!("{} (mail_domain {})", path.display(), config.mail_domain);
            for w in warnings.iter().filter(|w| !w.is_ignored_key()) {
                detail.push_str(&format!("; warning: {w}"));
            }
            checks.push(Check::ok("config", detail));
            let ignored: Vec<String> = warnings
                .iter()
                .filter(|w| w.is_ignored_key())
                .map(ToString::to_string)
                .collect();
            if !ignored.is_empty() {
                checks.push(Check {
                    status: Status::Info,
                    name: "config keys ignored".into(),
                    detail: ignored.join("; "),
                    fix: None,
                });
            }
            Some(config)
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                format!("{}: {e}", path.display()),
                "fix the file, or create it with `chatmail setup --domain YOUR.DOMAIN`",
            ));
            None
        }
    }
}

/// Runs every check. Never fails: what cannot be checked is a FAIL line.
pub async fn doctor(opts: &DoctorOptions) -> DoctorReport {
    let mut checks = Vec::new();
    let config = config_checks(&opts.config, &mut checks);

    checks.extend(probe::socket_checks(opts).await);

    let endpoints = metrics::endpoints(config.as_ref(), &opts.metrics);
    checks.extend(metrics::check_all(endpoints, opts.timeout).await);
    checks.extend(wiring::postfix_wiring(opts));
    let (dovecot_checks, dovecot_cert) = wiring::dovecot_wiring(opts).await;
    checks.extend(dovecot_checks);

    let certs = wiring::certificates(opts, dovecot_cert);
    let postfix_cert = certs[0].clone();
    for cert in &certs {
        checks.push(host::check_certificate(&opts.roots, cert, opts.cert_margin_days).await);
    }
    // What the relay serves is never a root the web checks trust.
    let own_certs: Vec<PathBuf> = certs.iter().map(|c| opts.roots.host(c)).collect();
    checks.extend(crate::web::certbot_checks(
        &opts.roots,
        &opts.web,
        &postfix_cert,
    ));

    if let Some(config) = &config {
        checks.extend(crate::web::web_checks(config, &opts.roots, &opts.web, &own_certs).await);
        checks.push(host::check_mailboxes(opts, &config.mailboxes_dir));
        checks.extend(host::measured_resource_checks(opts, config));
        checks.extend(crate::dns::checks(config, &opts.roots).await);
        checks.push(host::inotify(&opts.proc));
        checks.push(host::nocreate_check(opts, config));
    }
    DoctorReport { checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("chatmail.ini");
        std::fs::write(
            &ini,
            "[params]\nmail_domain = chat.example.org\npassthrough_senders = a@b.org\n\
             max_imap_conections = 5\nmin_available_memory = 300\n",
        )
        .unwrap();
        let mut checks = Vec::new();
        assert!(config_checks(&ini, &mut checks).is_some());
        assert_eq!(checks.len(), 2, "{checks:?}");
        assert_eq!(checks[0].status, Status::Ok);
        assert!(checks[0].detail.contains("warning: min_available_memory"));
        assert_eq!(checks[1].status, Status::Info);
        assert_eq!(checks[1].name, "config keys ignored");
        assert!(
            checks[1]
                .detail
                .starts_with("line 3: passthrough_senders is ignored: chatmaild removed it"),
            "{:?}",
            checks[1]
        );
        assert!(
            checks[1]
                .detail
                .ends_with("; line 4: unknown key \"max_imap_conections\" in [params], ignored"),
            "{:?}",
            checks[1]
        );
        std::fs::write(&ini, "[params]\nmail_domain = chat.example.org\n").unwrap();
        let mut checks = Vec::new();
        config_checks(&ini, &mut checks);
        assert_eq!(checks.len(), 1);
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
        assert_eq!(opts.sockets.len(), DAEMONS.len());
    }
}
