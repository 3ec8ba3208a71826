//! `chatmail sandbox`: a complete chatmail relay on loopback, built from the
//! machine's stock Debian Postfix and Dovecot and the snippets this project
//! ships, with our daemons as child processes.
//!
//! Everything lives in one state directory: configuration, queue, mail,
//! sockets, logs and a self-signed certificate. The machine's own
//! `/etc/postfix` and `/etc/dovecot` are never touched. `DIR/relay.json`
//! tells scripts and tests where everything is.
//!
//! Builds on `snippets` (the shipped files and the table of daemons), `web`,
//! `dkim`, `accounts`, `metrics`, `config`; must not depend on `setup`: both
//! installers build on `snippets` (docs/design.md, "Crates").

pub mod debian;
pub mod web;

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

use chatmail_snippets::daemons::{DAEMONS, Daemon};
use chatmail_snippets::dialect::Dialect;
use chatmail_snippets::files;
use chatmail_snippets::render::{self, Ports};

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
    /// Other relays: mail for DOMAIN goes to HOST:PORT with STARTTLS.
    pub peers: Vec<(String, String)>,
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
    /// Where a daemon's socket goes: its installed path (Dovecot's helpers
    /// under run/, Postfix's inside its queue directory) moved into the state
    /// directory the way the snippets are.
    fn socket(&self, daemon: &Daemon) -> PathBuf {
        PathBuf::from(render::relocate(daemon.socket, &self.state, Path::new("/")))
    }
    fn log(&self, name: &str) -> PathBuf {
        self.p(&format!("log/{name}.log"))
    }
}

/// What a start learnt on the way, for `relay.json`.
struct Facts {
    ports: Ports,
    metrics_base: u16,
    dovecot_version: String,
    postfix_version: String,
    dkim_txt: Option<String>,
    web: serde_json::Map<String, serde_json::Value>,
}

/// A running sandbox.
pub struct Sandbox {
    layout: Layout,
    children: Vec<(&'static str, Child)>,
    postfix_started: bool,
    dovecot_started: bool,
    /// The wrapper that runs the Debian root's programs, when there is one.
    root_exec: Option<PathBuf>,
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
        self.write_peers(&opts.peers)?;
        self.write_dovecot(&config, &ports, &exe, dialect)?;
        self.spawn_daemons(&exe, vmail, metrics_base).await?;
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

    /// The state directory's tree, readable where vmail must reach it.
    fn make_state_dirs(&self) -> Result<(), SandboxError> {
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
        Ok(())
    }

    /// Loads the sandbox's chatmail.ini, first writing it for `opts.domain`
    /// when there is none (an existing one is the operator's and kept).
    fn load_config(&self, opts: &Options) -> Result<Config, SandboxError> {
        let l = &self.layout;
        if !l.ini().exists() {
            let ini = format!(
                "# chatmail sandbox relay; edit and restart the sandbox to change.\n\
                 [params]\nmail_domain = {}\nmailboxes_dir = {}\nnocreate_file = {}\n\
                 appversions_file = {}\n",
                opts.domain,
                l.p(&format!("mail/{}", domain_dir(&opts.domain))).display(),
                l.p("chatmail-nocreate").display(),
                l.p("appversions.json").display(),
            );
            fs::write(l.ini(), ini).ctx(|| "writing chatmail.ini".into())?;
        }
        // The package's list, for a chatmail.ini whose appversions_file
        // points here.
        fs::write(l.p("appversions.json"), files::APPVERSIONS_JSON)
            .ctx(|| "writing appversions.json".into())?;
        add_dkim_params(&l.ini(), &l.p("dkim/opendkim.private"), opts.dns_resolver)?;
        let (config, _warnings) = Config::load(&l.ini()).map_err(|e| SandboxError::Config {
            path: l.ini().display().to_string(),
            message: e.to_string(),
        })?;
        Ok(config)
    }

    /// The mailboxes directory owned by vmail, and Postfix's private/
    /// directory for Dovecot's sockets.
    fn make_mail_dirs(&self, config: &Config, vmail: Ids) -> Result<(), SandboxError> {
        let l = &self.layout;
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

        Ok(())
    }

    /// Copies the `chatmail` binary into the state directory and returns
    /// the copy.
    fn install_binary(&self, built: &Path) -> Result<PathBuf, SandboxError> {
        let l = &self.layout;
        // Our daemons and Dovecot's quota-warning script run as vmail, which
        // may not be able to reach the binary where it was built.
        let exe = l.p("bin/chatmail");
        let tmp = l.p("bin/chatmail.tmp");
        fs::copy(built, &tmp).ctx(|| format!("copying {}", built.display()))?;
        set_mode(&tmp, 0o755)?;
        fs::rename(&tmp, &exe).ctx(|| "installing bin/chatmail".into())?;

        Ok(exe)
    }

    /// Starts each of our daemons of the table, as vmail, in the group of
    /// its socket's clients.
    async fn spawn_daemons(
        &mut self,
        exe: &Path,
        vmail: Ids,
        metrics_base: u16,
    ) -> Result<(), SandboxError> {
        for daemon in DAEMONS {
            let gid = Group::from_name(daemon.group)
                .ok()
                .flatten()
                .map_or(vmail.gid, |g| g.gid.as_raw());
            self.spawn_daemon(
                exe,
                daemon,
                vmail.uid,
                gid,
                metrics_port(metrics_base, daemon.name),
            )
            .await?;
        }

        Ok(())
    }

    /// Starts Dovecot, then Postfix, and waits until both listen.
    async fn start_mail_servers(&mut self, ports: &Ports) -> Result<(), SandboxError> {
        let l = &self.layout;
        self.dovecot_started = true;
        run_logged(
            self.tool("/usr/sbin/dovecot")
                .arg("-c")
                .arg(l.dovecot_conf()),
            &l.log("dovecot-start"),
        )?;
        self.postfix_started = true;
        run_logged(
            self.tool("/usr/sbin/postfix")
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

        Ok(())
    }

    /// Writes `relay.json` (what tests and tools need to know of this relay)
    /// atomically, and fresh credentials for the `/new` page.
    fn write_info(
        &mut self,
        opts: &Options,
        config: &Config,
        facts: Facts,
    ) -> Result<(), SandboxError> {
        let ports = &facts.ports;
        let domain = config.address_domain().to_owned();
        let l = &self.layout;
        let sockets: serde_json::Map<String, serde_json::Value> = DAEMONS
            .iter()
            .map(|d| (d.name.to_owned(), json!(l.socket(d))))
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
            "dovecot_version": facts.dovecot_version,
            "postfix_version": facts.postfix_version,
            "debian_root": opts.root,
            // Runs the relay's Postfix/Dovecot tools (doveadm, postconf, ...)
            // when they come from a Debian root; null when they are the machine's.
            "root_exec": self.root_exec,
            "metrics": metrics_urls(facts.metrics_base),
            "dkim_selector": config.dkim_selector,
            "dkim_txt": facts.dkim_txt,
        });
        if let Some(info) = self.info.as_object_mut() {
            info.extend(facts.web);
        }
        self.credentials =
            chatmail_accounts::fresh_credentials(config).ctx(|| "random credentials".into())?;
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
             TLS         {tls}: {cert}\n  \
             Web         {web}/ (http on 127.0.0.1:{http}, https on 127.0.0.1:{https})\n\
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
            tls = i["acme_directory"].as_str().unwrap_or("self-signed"),
            web = i["web_base"].as_str().unwrap_or_default(),
            http = i["http_port"],
            https = i["https_port"],
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

    /// The relay's DKIM key (created on first start, mode 0640 group
    /// postfix for the milter); returns its DNS TXT record value.
    fn make_dkim_key(&self, config: &Config) -> Result<Option<String>, SandboxError> {
        if config.ipv4_relay().is_some() {
            return Ok(None);
        }
        let key = &config.dkim_key_file;
        let fail = |e: chatmail_dkim::DkimError| SandboxError::Startup(e.to_string());
        // Keys are only ever created inside the state directory.
        if key
            .parent()
            .is_some_and(|d| d.starts_with(&self.layout.state))
        {
            chatmail_dkim::create_relay_key(key).map_err(fail)?;
        }
        let key = chatmail_dkim::load_key(key).map_err(fail)?;
        Ok(Some(chatmail_dkim::txt_record(&key)))
    }

    /// Routes mail for each peer's domain to its SMTP port, with STARTTLS
    /// required (peers' certificates are self-signed: not verified).
    fn write_peers(&self, peers: &[(String, String)]) -> Result<(), SandboxError> {
        let etc = self.layout.postfix_etc();
        let map: String = peers
            .iter()
            .map(|(domain, hostport)| {
                let (host, port) = hostport.rsplit_once(':').unwrap_or((hostport, "25"));
                format!("{domain} smtp:[{host}]:{port}\n")
            })
            .collect();
        fs::write(etc.join("transport"), map).ctx(|| "writing postfix/etc/transport".into())?;
        let main = etc.join("main.cf");
        let text = fs::read_to_string(&main).ctx(|| "reading postfix/etc/main.cf".into())?;
        let text = render::merge_main_cf(
            &text,
            &[
                (
                    "transport_maps",
                    format!("texthash:{}", etc.join("transport").display()),
                ),
                ("smtp_tls_security_level", "encrypt".into()),
            ],
        );
        fs::write(&main, text).ctx(|| "writing postfix/etc/main.cf".into())
    }

    fn write_postfix(
        &self,
        config: &Config,
        ports: &Ports,
        exe: &Path,
    ) -> Result<(), SandboxError> {
        let l = &self.layout;
        let st = l.state.display();
        let host = if config.ipv4_relay().is_some() {
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
                &render::relocate(files::POSTFIX_MAIN_CF, &l.state, exe),
                &overrides
            )
        );
        let etc = l.postfix_etc();
        for (name, text) in [
            ("main.cf", main),
            (
                "master.cf",
                render::master_cf(
                    &render::relocate(
                        &render::master_cf_limits(files::POSTFIX_MASTER_CF, config),
                        &l.state,
                        exe,
                    ),
                    ports,
                ),
            ),
            ("chatmail-login-map", files::POSTFIX_LOGIN_MAP.into()),
            (
                "chatmail-submission-header-cleanup",
                files::POSTFIX_HEADER_CLEANUP.into(),
            ),
            (
                "chatmail-lmtp-header-cleanup",
                files::POSTFIX_LMTP_HEADER_CLEANUP.into(),
            ),
        ] {
            fs::write(etc.join(name), text).ctx(|| format!("writing postfix/etc/{name}"))?;
        }
        Ok(())
    }

    /// Dovecot's configuration for `dialect`: the instance's `dovecot.conf`
    /// around the shipped snippets, relocated into the state directory.
    fn write_dovecot(
        &self,
        config: &Config,
        ports: &Ports,
        exe: &Path,
        dialect: Dialect,
    ) -> Result<(), SandboxError> {
        let l = &self.layout;
        let snippet = match dialect {
            Dialect::V23 => files::DOVECOT_CONF,
            Dialect::V24 => files::DOVECOT_24_CONF,
        };
        let conf = render::dovecot_sandbox_conf(
            dialect,
            &l.state,
            &l.log("dovecot"),
            ports,
            config.max_mailbox_size.bytes,
            config.max_message_size,
        );
        for (name, text) in [
            ("dovecot.conf", conf),
            (
                "chatmail.conf",
                render::relocate(&render::dovecot_limits(snippet, config), &l.state, exe),
            ),
            ("chatmail-push.lua", files::DOVECOT_PUSH_LUA.to_owned()),
            // Relocated: Dovecot 2.3 cannot pass the socket, the script's
            // default path is the one it uses.
            (
                "chatmail-auth.lua",
                render::relocate(files::DOVECOT_AUTH_LUA, &l.state, exe),
            ),
        ] {
            fs::write(l.p("dovecot").join(name), text).ctx(|| format!("writing dovecot/{name}"))?;
        }
        Ok(())
    }

    /// A command of the relay's Postfix or Dovecot: the machine's, or the
    /// Debian root's through its wrapper.
    fn tool(&self, program: &str) -> Command {
        match &self.root_exec {
            Some(exec) => {
                let mut cmd = Command::new(exec);
                cmd.arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// The first line a tool prints, e.g. a version.
    fn tool_output(&self, program: &str, args: &[&str]) -> Result<String, SandboxError> {
        let out = self
            .tool(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ctx(|| format!("running {program}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().next().map(str::trim) {
            Some(line) if out.status.success() && !line.is_empty() => Ok(line.to_owned()),
            _ => Err(SandboxError::Startup(format!(
                "{program} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }

    async fn spawn_daemon(
        &mut self,
        exe: &Path,
        daemon: &'static Daemon,
        uid: u32,
        gid: u32,
        metrics_port: Option<u16>,
    ) -> Result<(), SandboxError> {
        let name = daemon.name;
        let socket = self.layout.socket(daemon);
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
            .args(metrics_port.map(|p| format!("--metrics-listen=inet:127.0.0.1:{p}")))
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
                self.tool("/usr/sbin/postfix")
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

#[derive(Clone, Copy)]
struct Ids {
    uid: u32,
    gid: u32,
}

/// The `vmail` user that owns every mailbox; created (as a system user
/// without a home) when the machine has none, as the Debian package does.
fn ensure_vmail() -> Result<Ids, SandboxError> {
    let lookup = || User::from_name(chatmail_accounts::VMAIL).ok().flatten();
    if lookup().is_none() {
        let status = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--home-dir", "/home/vmail", "--shell", "/usr/sbin/nologin"])
            .arg(chatmail_accounts::VMAIL)
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
/// Adds `dkim_key_file` (inside the state directory) and `dns_resolver`
/// to the sandbox's chatmail.ini when it does not set them, so the
/// sandbox never uses the machine's /etc/dkimkeys.
fn add_dkim_params(
    ini: &Path,
    key: &Path,
    resolver: Option<std::net::SocketAddr>,
) -> Result<(), SandboxError> {
    let mut text = fs::read_to_string(ini).ctx(|| "reading chatmail.ini".into())?;
    let has = |text: &str, k: &str| {
        text.lines()
            .any(|l| l.split('=').next().is_some_and(|n| n.trim() == k))
    };
    let mut changed = false;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    if !has(&text, "dkim_key_file") {
        text.push_str(&format!("dkim_key_file = {}\n", key.display()));
        changed = true;
    }
    if let Some(r) = resolver.filter(|_| !has(&text, "dns_resolver")) {
        text.push_str(&format!("dns_resolver = {r}\n"));
        changed = true;
    }
    if changed {
        fs::write(ini, text).ctx(|| "writing chatmail.ini".into())?;
    }
    Ok(())
}

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

/// The first of five consecutive loopback ports for the daemons' metrics
/// endpoints (docs/metrics.md): with `--port-base`, the five after the five
/// mail ports and the two web ports ([`web`]), or else a free run of five.
fn pick_metrics_base(base: Option<u16>) -> Result<u16, SandboxError> {
    if let Some(b) = base {
        return Ok(b.saturating_add(7));
    }
    for _ in 0..100 {
        let first =
            std::net::TcpListener::bind("127.0.0.1:0").ctx(|| "picking free ports".into())?;
        let p = first
            .local_addr()
            .ctx(|| "picking free ports".into())?
            .port();
        let Some(last) = p.checked_add(4) else {
            continue;
        };
        let rest: Vec<_> = (p + 1..=last)
            .map_while(|q| std::net::TcpListener::bind(("127.0.0.1", q)).ok())
            .collect();
        if rest.len() == 4 {
            return Ok(p);
        }
    }
    Err(SandboxError::Startup(
        "no five consecutive free loopback ports for the metrics endpoints".into(),
    ))
}

/// The metrics port of daemon `name`.
fn metrics_port(base: u16, name: &str) -> Option<u16> {
    chatmail_metrics::Daemon::from_name(name).map(|d| base.saturating_add(d.port_offset()))
}

/// `relay.json`'s `metrics`: daemon -> URL of its endpoint.
fn metrics_urls(base: u16) -> serde_json::Value {
    chatmail_metrics::Daemon::ALL
        .iter()
        .map(|d| {
            let port = base.saturating_add(d.port_offset());
            (
                d.name().to_owned(),
                json!(format!("http://127.0.0.1:{port}/metrics")),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
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
