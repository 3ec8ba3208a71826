//! What `chatmail doctor` checks and where: the options of the command
//! line (`--config`, `--etc`, `--socket DAEMON=PATH`, the web front's
//! address and trust), with the shipped defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::web::WebTarget;
use crate::roots::Roots;

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
    /// (mapped through [`Roots`] to ask it); those of [`DAEMONS`] unless
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
    pub web: WebTarget,
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
            web: WebTarget::default(),
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
    pub(super) fn socket(&self, daemon: &str) -> PathBuf {
        let moved = self.sockets.iter().find(|(d, _)| *d == daemon);
        let shipped = || chatmail_snippets::daemons::daemon(daemon);
        moved
            .map(|(_, p)| p.clone())
            .or_else(|| shipped().map(|d| PathBuf::from(d.socket)))
            .unwrap_or_default()
    }

    pub(super) fn main_cf(&self) -> PathBuf {
        match &self.postfix_config_dir {
            Some(dir) => dir.join("main.cf"),
            None => self.roots.host(Path::new("/etc/postfix/main.cf")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
