//! `chatmail sandbox`: a complete chatmail relay on loopback, built from the
//! machine's stock Debian Postfix and Dovecot and the snippets this project
//! ships, with our daemons as child processes.
//!
//! Everything lives in one state directory: configuration, queue, mail,
//! sockets, logs and a self-signed certificate. The machine's own
//! `/etc/postfix` and `/etc/dovecot` are never touched. `DIR/relay.json`
//! tells scripts and tests where everything is.

#![forbid(unsafe_code)]

pub mod render;

use std::fs;
use std::future::Future;
use std::io;
use std::net::TcpStream;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatmail_config::Config;
use nix::unistd::{Group, User};
use serde_json::json;
use tokio::process::Child;

use crate::render::Ports;

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
}

/// Paths of one sandbox's state directory.
struct Layout {
    state: PathBuf,
}

impl Layout {
    fn p(&self, rel: &str) -> PathBuf {
        self.state.join(rel)
    }
    fn ini(&self) -> PathBuf {
        self.p("etc/chatmail.ini")
    }
    fn postfix_etc(&self) -> PathBuf {
        self.p("postfix/etc")
    }
    fn dovecot_conf(&self) -> PathBuf {
        self.p("dovecot/dovecot.conf")
    }
    fn dovecot_pid(&self) -> PathBuf {
        self.p("dovecot/run/master.pid")
    }
    /// Where a daemon's socket goes: as in the shipped snippets, Dovecot's
    /// helpers under run/, Postfix's inside its queue directory.
    fn socket(&self, daemon: &str) -> PathBuf {
        match daemon {
            "milter" | "policy" => self.p(&format!("postfix/queue/chatmail/{daemon}.socket")),
            _ => self.p(&format!("run/chatmail-{daemon}/{daemon}.socket")),
        }
    }
    fn log(&self, name: &str) -> PathBuf {
        self.p(&format!("log/{name}.log"))
    }
}

/// The daemons of ours a sandbox runs: name and the group whose members
/// connect to its socket (Dovecot's auth process, its mail processes running
/// as vmail, Postfix's smtpd).
const DAEMONS: &[(&str, &str)] = &[
    ("auth", "dovecot"),
    ("lastlogin", "vmail"),
    ("metadata", "vmail"),
    ("milter", "postfix"),
    ("policy", "postfix"),
];

/// A running sandbox.
pub struct Sandbox {
    layout: Layout,
    children: Vec<(&'static str, Child)>,
    postfix_started: bool,
    dovecot_started: bool,
    /// What `relay.json` holds.
    pub info: serde_json::Value,
    /// Ready-to-use credentials for people trying the relay.
    pub credentials: (String, String),
}

/// Runs a sandbox until `shutdown` resolves or one of its daemons dies.
///
/// # Errors
/// When anything fails to start (everything started is stopped again), or
/// when a daemon exits while the relay runs.
pub async fn run(opts: Options, shutdown: impl Future<Output = ()>) -> Result<(), SandboxError> {
    let mut sandbox = Sandbox::start(&opts).await?;
    println!("{}", sandbox.describe());
    let result = tokio::select! {
        () = shutdown => Ok(()),
        (name, status) = sandbox.any_child_exit() => Err(SandboxError::Startup(format!(
            "chatmail {name} exited ({status}); see {}",
            sandbox.layout.log(name).display()
        ))),
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
            if !Path::new(bin).exists() {
                return Err(SandboxError::Missing(bin, pkg));
            }
        }
        let state = std::path::absolute(&opts.state_dir).ctx(|| "state dir".into())?;
        let mut sandbox = Sandbox {
            layout: Layout { state },
            children: Vec::new(),
            postfix_started: false,
            dovecot_started: false,
            info: serde_json::Value::Null,
            credentials: (String::new(), String::new()),
        };
        // Leftovers of a sandbox that was killed would hold the ports and pids.
        sandbox.postfix_started = true;
        sandbox.dovecot_started = true;
        sandbox.stop().await;
        match sandbox.start_inner(opts).await {
            Ok(()) => Ok(sandbox),
            Err(e) => {
                sandbox.stop().await;
                Err(e)
            }
        }
    }

    async fn start_inner(&mut self, opts: &Options) -> Result<(), SandboxError> {
        let vmail = ensure_vmail()?;
        let l = &self.layout;
        for dir in [
            "etc",
            "run",
            "log",
            "tls",
            "bin",
            "postfix/etc",
            "postfix/queue",
            "dovecot/run",
        ] {
            fs::create_dir_all(l.p(dir)).ctx(|| format!("creating {}", l.p(dir).display()))?;
        }
        for dir in [
            Path::new(""),
            Path::new("run"),
            Path::new("log"),
            Path::new("bin"),
        ] {
            set_mode(&l.state.join(dir), 0o755)?;
        }
        // Our daemons run as vmail and must reach their config and sockets.
        for dir in l.state.ancestors().skip(1) {
            let mode = fs::metadata(dir).ctx(|| format!("stat {}", dir.display()))?;
            if mode.permissions().mode() & 0o001 == 0 {
                return Err(SandboxError::Startup(format!(
                    "{} is not searchable by other users, so vmail cannot reach {}; \
                     pick another --state-dir (or chmod o+x it)",
                    dir.display(),
                    l.state.display()
                )));
            }
        }
        if !l.ini().exists() {
            let ini = format!(
                "# chatmail sandbox relay; edit and restart the sandbox to change.\n\
                 [params]\nmail_domain = {}\nmailboxes_dir = {}\nnocreate_file = {}\n",
                opts.domain,
                l.p(&format!("mail/{}", domain_dir(&opts.domain))).display(),
                l.p("chatmail-nocreate").display(),
            );
            fs::write(l.ini(), ini).ctx(|| "writing chatmail.ini".into())?;
        }
        let (config, _warnings) = Config::load(&l.ini()).map_err(|e| SandboxError::Config {
            path: l.ini().display().to_string(),
            message: e.to_string(),
        })?;
        let domain = config.address_domain().to_owned();
        fs::create_dir_all(&config.mailboxes_dir).ctx(|| "creating mailboxes_dir".into())?;
        chown_path(&config.mailboxes_dir, vmail.uid, vmail.gid)?;
        // chatmail-metadata keeps its push queue next to the mailboxes, as
        // in /home/vmail/mail on a relay.
        let parent = config.mailboxes_dir.parent();
        if let Some(parent) = parent.filter(|p| p.starts_with(&l.state) && *p != l.state) {
            chown_path(parent, vmail.uid, vmail.gid)?;
        }
        // The mailboxes dir's parents must let vmail through.
        let mut parent = config.mailboxes_dir.parent();
        while let Some(p) = parent.filter(|p| p.starts_with(&l.state) && *p != l.state) {
            set_mode(p, 0o755)?;
            parent = p.parent();
        }

        // Dovecot puts its LMTP and SASL sockets into Postfix's private/
        // directory and starts first, so create it the way Postfix would.
        let private = l.p("postfix/queue/private");
        fs::create_dir_all(&private).ctx(|| "creating postfix/queue/private".into())?;
        if let Some(postfix) = User::from_name("postfix").ok().flatten() {
            chown_path(&private, postfix.uid.as_raw(), 0)?;
        }
        set_mode(&private, 0o700)?;

        // Our daemons and Dovecot's quota-warning script run as vmail, which
        // may not be able to reach the binary where it was built.
        let exe = l.p("bin/chatmail");
        let tmp = l.p("bin/chatmail.tmp");
        fs::copy(&opts.exe, &tmp).ctx(|| format!("copying {}", opts.exe.display()))?;
        set_mode(&tmp, 0o755)?;
        fs::rename(&tmp, &exe).ctx(|| "installing bin/chatmail".into())?;

        self.make_certificate(&config.mail_domain)?;
        let ports = pick_ports(opts.port_base)?;
        self.write_postfix(&config, &ports, &exe)?;
        self.write_dovecot(&config, &ports, &exe)?;

        for &(name, group) in DAEMONS {
            let gid = Group::from_name(group)
                .ok()
                .flatten()
                .map_or(vmail.gid, |g| g.gid.as_raw());
            self.spawn_daemon(&exe, name, vmail.uid, gid).await?;
        }

        let l = &self.layout;
        self.dovecot_started = true;
        run_logged(
            Command::new("/usr/sbin/dovecot")
                .arg("-c")
                .arg(l.dovecot_conf()),
            &l.log("dovecot-start"),
        )?;
        self.postfix_started = true;
        run_logged(
            Command::new("/usr/sbin/postfix")
                .arg("-c")
                .arg(l.postfix_etc())
                .arg("start"),
            &l.log("postfix-start"),
        )?;
        for (what, port) in [
            ("Dovecot IMAP", ports.imaps),
            ("Dovecot IMAP", ports.imap),
            ("Postfix SMTP", ports.smtp),
            ("Postfix submission", ports.submission),
            ("Postfix submissions", ports.submissions),
        ] {
            wait_for(&format!("{what} on port {port}"), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .await?;
        }

        let sockets: serde_json::Map<String, serde_json::Value> = DAEMONS
            .iter()
            .map(|(name, _)| ((*name).to_owned(), json!(l.socket(name))))
            .collect();
        let pids: serde_json::Map<String, serde_json::Value> = self
            .children
            .iter()
            .map(|(name, child)| ((*name).to_owned(), json!(child.id())))
            .collect();
        self.info = json!({
            "domain": domain,
            "host": "127.0.0.1",
            "imaps_port": ports.imaps,
            "imap_port": ports.imap,
            "submissions_port": ports.submissions,
            "submission_port": ports.submission,
            "smtp_port": ports.smtp,
            "config": l.ini(),
            "sockets": sockets,
            "mailboxes_dir": config.mailboxes_dir,
            "nocreate_file": config.nocreate_file,
            "tls_cert": l.p("tls/cert.pem"),
            "postfix_config_dir": l.postfix_etc(),
            "dovecot_config": l.dovecot_conf(),
            "log_dir": l.p("log"),
            "pids": pids,
        });
        self.credentials =
            chatmail_auth::fresh_credentials(&config).ctx(|| "random credentials".into())?;
        let json = serde_json::to_string_pretty(&self.info).unwrap_or_default();
        let tmp = l.p("relay.json.tmp");
        fs::write(&tmp, json + "\n").ctx(|| "writing relay.json".into())?;
        fs::rename(&tmp, l.p("relay.json")).ctx(|| "writing relay.json".into())?;
        Ok(())
    }

    /// A text for people: endpoints, credentials and where things are.
    pub fn describe(&self) -> String {
        let i = &self.info;
        format!(
            "chatmail sandbox relay for {domain} is running (Ctrl-C stops it)\n\
             \n  IMAP        127.0.0.1:{imaps} (implicit TLS), 127.0.0.1:{imap} (STARTTLS)\n  \
             SMTP        127.0.0.1:{subs} (implicit TLS), 127.0.0.1:{sub} (STARTTLS, submission)\n  \
             Port 25     127.0.0.1:{smtp} (mail from other servers)\n  \
             TLS         self-signed: {cert}\n\
             \n  Log in with any new address @{domain} to create it, for example:\n  \
             address     {addr}\n  password    {pw}\n\
             \n  Config {config}, logs in {logs}, details in {json}\n",
            domain = i["domain"].as_str().unwrap_or_default(),
            imaps = i["imaps_port"],
            imap = i["imap_port"],
            subs = i["submissions_port"],
            sub = i["submission_port"],
            smtp = i["smtp_port"],
            cert = i["tls_cert"].as_str().unwrap_or_default(),
            addr = self.credentials.0,
            pw = self.credentials.1,
            config = i["config"].as_str().unwrap_or_default(),
            logs = i["log_dir"].as_str().unwrap_or_default(),
            json = self.layout.p("relay.json").display(),
        )
    }

    fn make_certificate(&self, domain: &str) -> Result<(), SandboxError> {
        let (cert, key) = (self.layout.p("tls/cert.pem"), self.layout.p("tls/key.pem"));
        if cert.exists() && key.exists() {
            return Ok(());
        }
        run_logged(
            &mut render::self_signed_cert_command(domain, Some("IP:127.0.0.1"), &key, &cert),
            &self.layout.log("openssl"),
        )?;
        set_mode(&key, 0o600)
    }

    fn write_postfix(
        &self,
        config: &Config,
        ports: &Ports,
        exe: &Path,
    ) -> Result<(), SandboxError> {
        let l = &self.layout;
        let st = l.state.display();
        let host = if config.mail_domain.parse::<std::net::Ipv4Addr>().is_ok() {
            "localhost".to_owned()
        } else {
            config.mail_domain.clone()
        };
        let overrides: Vec<(&str, String)> = vec![
            ("compatibility_level", "3.6".into()),
            ("queue_directory", format!("{st}/postfix/queue")),
            ("data_directory", format!("{st}/postfix/data")),
            ("mail_owner", "postfix".into()),
            ("setgid_group", "postdrop".into()),
            ("myhostname", host),
            ("mydomain", config.address_domain().into()),
            ("inet_interfaces", "127.0.0.1".into()),
            ("inet_protocols", "ipv4".into()),
            ("maillog_file", l.log("postfix").display().to_string()),
            ("maillog_file_prefixes", st.to_string()),
            ("message_size_limit", config.max_message_size.to_string()),
            // A sandbox never sends mail off the machine.
            (
                "default_transport",
                "error:the sandbox relay delivers only locally".into(),
            ),
            (
                "relay_transport",
                "error:the sandbox relay delivers only locally".into(),
            ),
        ];
        let main = format!(
            "# Generated by chatmail sandbox from the shipped main.cf.\n{}",
            render::merge_main_cf(
                &render::relocate(render::POSTFIX_MAIN_CF, &l.state, exe),
                &overrides
            )
        );
        let etc = l.postfix_etc();
        for (name, text) in [
            ("main.cf", main),
            (
                "master.cf",
                render::master_cf(
                    &render::relocate(render::POSTFIX_MASTER_CF, &l.state, exe),
                    ports,
                ),
            ),
            ("chatmail-login-map", render::POSTFIX_LOGIN_MAP.into()),
            (
                "chatmail-submission-header-cleanup",
                render::POSTFIX_HEADER_CLEANUP.into(),
            ),
        ] {
            fs::write(etc.join(name), text).ctx(|| format!("writing postfix/etc/{name}"))?;
        }
        Ok(())
    }

    fn write_dovecot(
        &self,
        config: &Config,
        ports: &Ports,
        exe: &Path,
    ) -> Result<(), SandboxError> {
        let l = &self.layout;
        let st = l.state.display();
        let conf = format!(
            "# Generated by chatmail sandbox: a private Dovecot instance.\n\
             base_dir = {st}/dovecot/run\n\
             state_dir = {st}/dovecot/state\n\
             instance_name = chatmail-sandbox\n\
             log_path = {dlog}\n\
             listen = 127.0.0.1\n\
             ssl_cert = <{st}/tls/cert.pem\n\
             ssl_key = <{st}/tls/key.pem\n\
             default_internal_user = dovecot\n\
             default_login_user = dovenull\n\
             # One debug line per IMAP hibernation and wake-up (docs/latency.md).\n\
             log_debug = event=imap_client_hibernated OR event=imap_client_unhibernated\n\
             service imap-login {{\n  \
               inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap}\n  }}\n  \
               inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps}\n    ssl = yes\n  }}\n\
             }}\n\
             service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n  \
             inet_listener pop3s {{\n    port = 0\n  }}\n}}\n\
             service submission-login {{\n  inet_listener submission {{\n    port = 0\n  }}\n}}\n\
             service managesieve-login {{\n  inet_listener sieve {{\n    port = 0\n  }}\n}}\n\
             !include {st}/dovecot/chatmail.conf\n\
             # The quota of this relay's chatmail.ini (the snippet has the defaults).\n\
             plugin {{\n  \
               quota_rule = *:storage={quota_kib}k\n  \
               quota_max_mail_size = {max_mail_kib}k\n  \
               quota_warning = storage=75%% quota-warning {target_mib} %h\n\
             }}\n\
             # Local experiments (kept across restarts): settings here win.\n\
             !include_try {st}/dovecot/local.conf\n",
            dlog = l.log("dovecot").display(),
            imap = ports.imap,
            imaps = ports.imaps,
            quota_kib = config.max_mailbox_size.bytes / 1024,
            max_mail_kib = config.max_message_size.div_ceil(1024),
            target_mib = config.max_mailbox_size.bytes * 7 / 10 / (1024 * 1024),
        );
        for (name, text) in [
            ("dovecot.conf", conf),
            (
                "chatmail.conf",
                render::relocate(render::DOVECOT_CONF, &l.state, exe),
            ),
            (
                "chatmail-auth.conf.ext",
                render::relocate(render::DOVECOT_AUTH_EXT, &l.state, exe),
            ),
            ("chatmail-push.lua", render::DOVECOT_PUSH_LUA.to_owned()),
        ] {
            fs::write(l.p("dovecot").join(name), text).ctx(|| format!("writing dovecot/{name}"))?;
        }
        Ok(())
    }

    async fn spawn_daemon(
        &mut self,
        exe: &Path,
        name: &'static str,
        uid: u32,
        gid: u32,
    ) -> Result<(), SandboxError> {
        let socket = self.layout.socket(name);
        let dir = socket.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        chown_path(dir, uid, gid)?;
        set_mode(dir, 0o750)?;
        let log = open_log(&self.layout.log(name))?;
        let child = tokio::process::Command::new(exe)
            .arg(name)
            .arg("--config")
            .arg(self.layout.ini())
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .ctx(|| format!("starting chatmail {name}"))?;
        self.children.push((name, child));
        let child = &mut self.children.last_mut().expect("just pushed").1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(SandboxError::Startup(format!(
                    "chatmail {name} exited ({status}); see {}",
                    self.layout.log(name).display()
                )));
            }
            if Instant::now() > deadline {
                return Err(SandboxError::Startup(format!(
                    "chatmail {name} did not create {}",
                    socket.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn any_child_exit(&mut self) -> (&'static str, String) {
        loop {
            for (name, child) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    return (*name, status.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops Postfix, Dovecot and our daemons; tolerant of parts that never
    /// started.
    pub async fn stop(&mut self) {
        let l = &self.layout;
        if self.postfix_started && l.p("postfix/queue/pid/master.pid").exists() {
            let _ = run_logged(
                Command::new("/usr/sbin/postfix")
                    .arg("-c")
                    .arg(l.postfix_etc())
                    .arg("stop"),
                &l.log("postfix-stop"),
            );
        }
        let dovecot_pid = fs::read_to_string(l.dovecot_pid())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|_| self.dovecot_started);
        if let Some(pid) = dovecot_pid {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for (_, child) in &mut self.children {
            if let Some(pid) = child.id() {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        self.children.clear();
        self.postfix_started = false;
        self.dovecot_started = false;
    }
}

struct Ids {
    uid: u32,
    gid: u32,
}

/// The `vmail` user that owns every mailbox; created (as a system user
/// without a home) when the machine has none, as the Debian package does.
fn ensure_vmail() -> Result<Ids, SandboxError> {
    let lookup = || User::from_name(chatmail_auth::VMAIL).ok().flatten();
    if lookup().is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--home-dir", "/home/vmail", "--shell", "/usr/sbin/nologin"])
            .arg(chatmail_auth::VMAIL)
            .status()
            .ctx(|| "running useradd".into())?;
        if !status.success() {
            return Err(SandboxError::Startup(format!(
                "useradd vmail failed ({status})"
            )));
        }
    }
    let user = lookup().ok_or_else(|| SandboxError::Startup("no vmail user".into()))?;
    Ok(Ids {
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
    })
}

/// `[1.2.3.4]` is a fine directory name, but keep the bracketless form
/// chatmaild uses for its default mailboxes_dir.
fn domain_dir(domain: &str) -> &str {
    domain.trim_start_matches('[').trim_end_matches(']')
}

fn pick_ports(base: Option<u16>) -> Result<Ports, SandboxError> {
    let ports: Vec<u16> = match base {
        Some(b) => (0..5).map(|i| b.saturating_add(i)).collect(),
        None => {
            // Hold all five at once so the kernel hands out five different ones.
            let listeners = (0..5)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
                .collect::<io::Result<Vec<_>>>()
                .ctx(|| "picking free ports".into())?;
            listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<io::Result<Vec<_>>>()
                .ctx(|| "picking free ports".into())?
        }
    };
    Ok(Ports {
        smtp: ports[0],
        submission: ports[1],
        submissions: ports[2],
        imap: ports[3],
        imaps: ports[4],
    })
}

fn open_log(path: &Path) -> Result<fs::File, SandboxError> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ctx(|| format!("opening {}", path.display()))
}

/// Runs a command to completion with its output in a log file: Postfix and
/// Dovecot daemonize, and their children would hold a pipe open forever.
fn run_logged(cmd: &mut Command, log: &Path) -> Result<(), SandboxError> {
    let out = open_log(log)?;
    let err = out.try_clone().ctx(|| "log file".into())?;
    let command = format!("{cmd:?}").replace('"', "");
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .ctx(|| format!("running {command}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(SandboxError::Command {
            command,
            status: status.to_string(),
            log: log.display().to_string(),
        })
    }
}

async fn wait_for(what: &str, mut ready: impl FnMut() -> bool) -> Result<(), SandboxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if Instant::now() > deadline {
            return Err(SandboxError::Startup(format!(
                "timed out waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), SandboxError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .ctx(|| format!("chmod {}", path.display()))
}

fn chown_path(path: &Path, uid: u32, gid: u32) -> Result<(), SandboxError> {
    chown(path, Some(uid), Some(gid)).ctx(|| format!("chown {}", path.display()))
}
