//! `chatmail sandbox`: a complete chatmail relay on loopback, built from the
//! machine's stock Debian Postfix and Dovecot and the snippets this project
//! ships, with our daemons as child processes.
//!
//! Everything lives in one state directory: configuration, queue, mail,
//! sockets, logs and a self-signed certificate. The machine's own
//! `/etc/postfix` and `/etc/dovecot` are never touched. `DIR/relay.json`
//! tells scripts and tests where everything is.
//!
//! This file holds the order of a start; the state directory is in
//! [`layout`] (its paths) and [`state`] (what is put there first), the
//! ports in [`ports`], the Postfix and Dovecot instances' configuration in
//! [`postfix`] and [`dovecot`], the processes in [`processes`], the web
//! front (nginx) in [`web`], and `relay.json` in [`info`].
//!
//! Builds on `snippets` (the shipped files and the table of daemons), `web`,
//! `dkim`, `accounts`, `metrics`, `config`; must not depend on `setup`: both
//! installers build on `snippets` (docs/design.md, "Crates").

pub mod debian;
mod dovecot;
mod info;
mod layout;
mod ports;
mod postfix;
mod processes;
mod state;
pub mod web;

use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use chatmail_snippets::dialect::Dialect;
use tokio::process::Child;

use crate::info::Facts;
use crate::layout::{Layout, set_mode};
use crate::ports::{pick_metrics_base, pick_ports};
use crate::state::ensure_vmail;

/// Why the sandbox could not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("chatmail sandbox must run as root (Postfix's master and Dovecot need it)")]
    NotRoot,
    #[error("{0} not found; install it with: apt-get install {1}")]
    Missing(&'static str, &'static str),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}); see {log}")]
    Command {
        command: String,
        status: String,
        log: String,
    },
    #[error("{0}")]
    Startup(String),
    #[error("config {path}: {message}")]
    Config { path: String, message: String },
}

trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SandboxError>;
}

impl<T> Context<T> for io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T, SandboxError> {
        self.map_err(|source| SandboxError::Io {
            what: what(),
            source,
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where everything goes; created if missing, reused if present.
    pub state_dir: PathBuf,
    /// The relay's mail domain (only used when the state has no config yet).
    pub domain: String,
    /// First of five consecutive ports; free ports are picked when unset.
    pub port_base: Option<u16>,
    /// The `chatmail` binary that runs the daemons.
    pub exe: PathBuf,
    /// A Debian root (`scripts/debian13-root`) whose Postfix and Dovecot
    /// run instead of the machine's; see [`debian`].
    pub root: Option<PathBuf>,
    /// Get the certificate from this ACME directory (certbot, HTTP-01)
    /// instead of making a self-signed one.
    pub acme_directory: Option<String>,
    /// The DNS resolver (`dns_resolver` in a new chatmail.ini).
    pub dns_resolver: Option<std::net::SocketAddr>,
    /// Other relays: mail for each goes over HTTPS to its `/mxdeliv` when
    /// it has one, else (or when that fails) to its SMTP port with STARTTLS.
    pub peers: Vec<chatmail_mxdeliv::routes::Peer>,
}

/// A running sandbox.
pub struct Sandbox {
    layout: Layout,
    children: Vec<(&'static str, Child)>,
    /// How each of our daemons was started, to start it again when it is
    /// killed (as systemd's `Restart=on-failure` does on a relay).
    daemons: Vec<processes::DaemonStart>,
    postfix_started: bool,
    dovecot_started: bool,
    /// The wrapper that runs the Debian root's programs, when there is one.
    root_exec: Option<PathBuf>,
    /// What `relay.json` holds.
    pub info: serde_json::Value,
    /// Ready-to-use credentials for people trying the relay.
    pub credentials: (String, String),
}

/// Runs a sandbox until `shutdown` resolves or one of its processes exits
/// on its own. One of our daemons killed by SIGKILL is started again, as
/// systemd does on a relay (the tests kill one in the middle of a
/// delivery); any other exit ends the sandbox, so that a crash is seen.
///
/// # Errors
/// When anything fails to start (everything started is stopped again), or
/// when a process exits while the relay runs.
pub async fn run(opts: Options, shutdown: impl Future<Output = ()>) -> Result<(), SandboxError> {
    let mut sandbox = Sandbox::start(&opts).await?;
    println!("{}", sandbox.describe());
    tokio::pin!(shutdown);
    let result = loop {
        let (name, status) = tokio::select! {
            () = &mut shutdown => break Ok(()),
            exited = sandbox.any_child_exit() => exited,
        };
        if std::os::unix::process::ExitStatusExt::signal(&status) == Some(9) {
            match sandbox.restart_daemon(name).await {
                Ok(()) => continue,
                Err(e) => break Err(e),
            }
        }
        break Err(SandboxError::Startup(format!(
            "chatmail {name} exited ({status}); see {}",
            sandbox.layout.log(name).display()
        )));
    };
    sandbox.stop().await;
    result
}

impl Sandbox {
    /// Starts everything; on failure, stops what was started.
    ///
    /// # Errors
    /// The first step that failed.
    pub async fn start(opts: &Options) -> Result<Sandbox, SandboxError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(SandboxError::NotRoot);
        }
        for (bin, pkg) in [
            ("/usr/sbin/postfix", "postfix"),
            (
                "/usr/sbin/dovecot",
                "dovecot-core dovecot-imapd dovecot-lmtpd",
            ),
            ("/usr/lib/dovecot/imap", "dovecot-imapd"),
            ("/usr/lib/dovecot/lmtp", "dovecot-lmtpd"),
            ("/usr/bin/openssl", "openssl"),
        ] {
            let in_root = opts.root.as_deref().map(|r| r.join(&bin[1..]));
            if !in_root.as_deref().unwrap_or(Path::new(bin)).exists() {
                return Err(SandboxError::Missing(bin, pkg));
            }
        }
        let state = std::path::absolute(&opts.state_dir).ctx(|| "state dir".into())?;
        let root_exec = match &opts.root {
            Some(root) => {
                let root = std::path::absolute(root).ctx(|| "Debian root".into())?;
                let bad = |p: &Path| p.to_str().is_none_or(|s| s.contains(['\'', '\n']));
                if bad(&root) || bad(&state) {
                    return Err(SandboxError::Startup(
                        "the Debian root and the state dir must not contain quotes or newlines"
                            .into(),
                    ));
                }
                fs::create_dir_all(state.join("bin")).ctx(|| "creating bin/".into())?;
                let exec = state.join(debian::ROOT_EXEC);
                fs::write(&exec, debian::root_exec_script(&root, &state))
                    .ctx(|| format!("writing {}", exec.display()))?;
                set_mode(&exec, 0o755)?;
                Some(exec)
            }
            None => None,
        };
        let mut sandbox = Sandbox {
            layout: Layout { state },
            children: Vec::new(),
            daemons: Vec::new(),
            postfix_started: false,
            dovecot_started: false,
            root_exec,
            info: serde_json::Value::Null,
            credentials: (String::new(), String::new()),
        };
        // Leftovers of a sandbox that was killed would hold the ports and pids.
        sandbox.postfix_started = true;
        sandbox.dovecot_started = true;
        sandbox.stop().await;
        web::stop_strays(&sandbox.layout.state);
        match sandbox.start_inner(opts).await {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.stop().await;
                Err(e)
            }
        }
    }

    /// Starts everything, in order: the state directory, chatmail.ini, the
    /// certificate and DKIM key, the Postfix and Dovecot configuration, our
    /// daemons, Postfix and Dovecot, the web front, then `relay.json`.
    async fn start_inner(&mut self, opts: &Options) -> Result<(), SandboxError> {
        let vmail = ensure_vmail()?;
        self.make_state_dirs()?;
        let config = self.load_config(opts)?;
        self.make_mail_dirs(&config, vmail)?;
        let exe = self.install_binary(&opts.exe)?;

        self.make_certificate(&config.mail_domain)?;
        let dkim_txt = self.make_dkim_key(&config)?;
        let ports = pick_ports(opts.port_base)?;
        let dovecot_version = self.tool_output("/usr/sbin/dovecot", &["--version"])?;
        let postfix_version =
            self.tool_output("/usr/sbin/postconf", &["-d", "-h", "mail_version"])?;
        let dialect = Dialect::from_version(&dovecot_version).ok_or_else(|| {
            SandboxError::Startup(format!("unsupported Dovecot version {dovecot_version:?}"))
        })?;
        let metrics_base = pick_metrics_base(opts.port_base)?;
        self.write_postfix(&config, &ports, &exe)?;
        self.write_peers()?;
        self.write_dovecot(&config, &ports, &exe, dialect)?;
        self.spawn_daemons(&exe, vmail, metrics_base, &opts.peers)
            .await?;
        self.start_mail_servers(&ports).await?;
        let web = self
            .start_web(
                &config,
                opts.port_base,
                (ports.imap, ports.imaps),
                (ports.submission, ports.submissions),
                opts.acme_directory.as_deref(),
            )
            .await?;
        let facts = Facts {
            ports,
            metrics_base,
            dovecot_version,
            postfix_version,
            dkim_txt,
            web,
        };
        self.write_info(opts, &config, facts)
    }
}
