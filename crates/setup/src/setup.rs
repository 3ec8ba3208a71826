//! `chatmail setup`: applies the shipped snippets to the machine's Postfix
//! and Dovecot, writes `chatmail.ini`, makes a certificate when there is
//! none, and enables the units.
//!
//! Everything is computed first and compared with what is on disk, so a
//! second run writes nothing and `--dry-run` can show the exact diff.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use chatmail_config::{Config, ConfigError};
use chatmail_sandbox::render as shipped;

use crate::files::{self, Roots};
use crate::render::{self, TlsFiles};

/// The units `setup` enables, in start order (the helpers before the MTAs
/// that connect to them).
pub const UNITS: &[&str] = &[
    "chatmail-auth.service",
    "chatmail-lastlogin.service",
    "chatmail-metadata.service",
    "chatmail-milter.service",
    "chatmail-policy.service",
    "chatmail-expire.timer",
    "chatmail-report.timer",
];

/// The `main.cf` Debian's postinst starts from.
pub const DEBIAN_MAIN_CF: &str = "/usr/share/postfix/main.cf.debian";

/// What `chatmail setup` was asked to do.
#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The relay's mail domain (`mail_domain` of a new `chatmail.ini`).
    pub domain: String,
    /// Apply everything under this directory instead of `/etc`; systemd is
    /// then left alone (the commands are only printed). The files written
    /// there name the directory's own files (certificate, maps, scripts), so
    /// Postfix and Dovecot can be started from it.
    pub etc: Option<PathBuf>,
    /// Print what would change, change nothing.
    pub dry_run: bool,
}

/// Why `setup` stopped. Files already written stay written (each one is
/// complete); running `setup` again continues.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The domain cannot be a relay's `mail_domain`.
    #[error("{domain:?} is not a usable mail domain: {reason}")]
    BadDomain {
        /// As given.
        domain: String,
        /// Why.
        reason: String,
    },
    /// The existing `chatmail.ini` is for another domain.
    #[error(
        "{path} has mail_domain = {configured}, not {requested}; \
         edit it or pass --domain {configured}"
    )]
    DomainMismatch {
        /// The config file.
        path: PathBuf,
        /// Its `mail_domain`.
        configured: String,
        /// `--domain`.
        requested: String,
    },
    /// The existing `chatmail.ini` cannot be used.
    #[error("{path}: {source}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        source: chatmail_config::ConfigError,
    },
    /// A stock config file we merge into is missing.
    #[error("{path} not found; install the package first: apt-get install {package}")]
    NotInstalled {
        /// The missing file.
        path: PathBuf,
        /// The Debian package that ships it.
        package: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// "reading", "writing", ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// An external command (`openssl`, `systemctl`) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and stderr, or why it could not start.
        detail: String,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SetupError {
    let path = path.to_owned();
    move |source| SetupError::Io { what, path, source }
}

/// What happened (or, with `--dry-run`, would happen) to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It did not exist.
    Created,
    /// Its contents changed.
    Updated,
    /// It already had the right contents.
    Unchanged,
}

/// The outcome of one `setup` run.
#[derive(Debug, Clone, Default)]
pub struct SetupReport {
    /// Every file `setup` manages, with what happened to it (the path as it
    /// is on this machine, i.e. under `--etc`).
    pub files: Vec<(PathBuf, Change)>,
    /// A self-signed certificate was (or would be) created.
    pub certificate_created: bool,
    /// The commands run (or, with `--dry-run`, `--etc` or without systemd,
    /// the commands to run by hand).
    pub commands: Vec<String>,
    /// True when nothing was changed because of `--dry-run`.
    pub dry_run: bool,
}

impl SetupReport {
    /// True when nothing needed (or needs, for `--dry-run`) to change.
    pub fn unchanged(&self) -> bool {
        !self.certificate_created && self.files.iter().all(|(_, c)| *c == Change::Unchanged)
    }
}

impl fmt::Display for SetupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let would = if self.dry_run { "would be " } else { "" };
        for (path, change) in &self.files {
            let what = match change {
                Change::Created => "created",
                Change::Updated => "updated",
                Change::Unchanged => "unchanged",
            };
            let what = if *change == Change::Unchanged {
                what.to_owned()
            } else {
                format!("{would}{what}")
            };
            writeln!(f, "{what:>18}  {}", path.display())?;
        }
        if self.certificate_created {
            writeln!(f, "a self-signed certificate {would}created")?;
        }
        if self.unchanged() {
            writeln!(f, "configuration unchanged")
        } else {
            let n = self
                .files
                .iter()
                .filter(|(_, c)| *c != Change::Unchanged)
                .count();
            writeln!(
                f,
                "{n} file(s) {}changed",
                if self.dry_run { "would be " } else { "" }
            )
        }
    }
}

/// One file `setup` wants to have.
struct Planned {
    /// Where it is on this machine.
    path: PathBuf,
    old: Option<String>,
    new: String,
    mode: u32,
    /// `postfix` or `dovecot`: which one must re-read its config.
    owner: Option<&'static str>,
}

/// Applies the shipped snippets to this machine's Postfix and Dovecot (or
/// to the tree under `opts.etc`), printing progress (and, with `dry_run`,
/// the diffs) to `out`.
///
/// # Errors
/// A domain that cannot be a relay's, an existing `chatmail.ini` that is
/// invalid or for another domain, Postfix or Dovecot not installed, a file
/// that cannot be read or written, or `openssl`/`systemctl` failing.
pub fn setup(opts: &SetupOptions, out: &mut dyn Write) -> Result<SetupReport, SetupError> {
    let domain = opts.domain.trim().to_ascii_lowercase();
    let requested = check_domain(&domain)?;
    let roots = Roots {
        etc: opts.etc.clone().unwrap_or_else(|| "/etc".into()),
        root: "/".into(),
    };
    for (p, package) in [
        ("/etc/postfix/master.cf", "postfix"),
        ("/etc/dovecot/dovecot.conf", "dovecot-core"),
    ] {
        let path = roots.host(Path::new(p));
        if !path.exists() {
            return Err(SetupError::NotInstalled { path, package });
        }
    }

    let ini_name = PathBuf::from("/etc/chatmail/chatmail.ini");
    let ini_path = roots.host(&ini_name);
    let ini_old = files::read_optional(&ini_path).map_err(io_err("reading", &ini_path))?;
    let config_err = |source| SetupError::Config {
        path: ini_path.clone(),
        source,
    };
    let (config, ini_new) = match &ini_old {
        Some(text) => match Config::parse(text) {
            Ok((config, _warnings)) => {
                if config.mail_domain.to_ascii_lowercase() != requested.mail_domain {
                    return Err(SetupError::DomainMismatch {
                        path: ini_path.clone(),
                        configured: config.mail_domain,
                        requested: domain,
                    });
                }
                // Never rewritten once it has a domain: the operator owns it.
                (config, text.clone())
            }
            // The package's commented default (or any file that only lacks
            // the domain): set mail_domain, keep every other line.
            Err(ConfigError::MissingKey { key: "mail_domain" }) => {
                let text = render::with_mail_domain(text, &domain);
                let (config, _warnings) = Config::parse(&text).map_err(config_err)?;
                (config, text)
            }
            Err(source) => return Err(config_err(source)),
        },
        None => (requested, render::chatmail_ini(&domain)),
    };
    let tls = TlsFiles::for_config(&config);
    // What the config files say: with --etc, the tree's own files.
    let tls_written = TlsFiles {
        cert: roots.host(&tls.cert),
        key: roots.host(&tls.key),
        external: tls.external,
    };

    let mut plan = Vec::new();
    let mut add = |name: &str, new: String, mode: u32, owner: Option<&'static str>| {
        let path = roots.host(Path::new(name));
        let old = files::read_optional(&path).map_err(io_err("reading", &path))?;
        plan.push(Planned {
            path,
            old,
            new,
            mode,
            owner,
        });
        Ok::<(), SetupError>(())
    };
    add(ini_name.to_str().unwrap_or_default(), ini_new, 0o644, None)?;
    let main_cf = main_cf_or_debian_default(&roots)?;
    let settings: Vec<(String, String)> = render::main_cf_settings(&config, &tls_written)
        .into_iter()
        .map(|(k, v)| (k, roots.relocate(&v)))
        .collect();
    add(
        "/etc/postfix/main.cf",
        render::merge_main_cf(&main_cf, &settings),
        0o644,
        Some("postfix"),
    )?;
    let master_cf = read(&roots, "/etc/postfix/master.cf")?;
    add(
        "/etc/postfix/master.cf",
        render::merge_master_cf(&master_cf, &roots.relocate(shipped::POSTFIX_MASTER_CF)),
        0o644,
        Some("postfix"),
    )?;
    add(
        "/etc/postfix/chatmail-login-map",
        shipped::POSTFIX_LOGIN_MAP.into(),
        0o644,
        Some("postfix"),
    )?;
    add(
        "/etc/postfix/chatmail-submission-header-cleanup",
        shipped::POSTFIX_HEADER_CLEANUP.into(),
        0o644,
        Some("postfix"),
    )?;
    let dovecot_conf = read(&roots, "/etc/dovecot/dovecot.conf")?;
    let new = render::dovecot_include(&dovecot_conf).unwrap_or(dovecot_conf);
    add("/etc/dovecot/dovecot.conf", new, 0o644, Some("dovecot"))?;
    let auth_conf = roots.host(Path::new("/etc/dovecot/conf.d/10-auth.conf"));
    if let Some(text) = files::read_optional(&auth_conf).map_err(io_err("reading", &auth_conf))? {
        let new = render::disable_system_auth(&text).unwrap_or(text);
        add(
            "/etc/dovecot/conf.d/10-auth.conf",
            new,
            0o644,
            Some("dovecot"),
        )?;
    }
    add(
        render::DOVECOT_CONF_D,
        roots.relocate(&render::dovecot_conf(&config, &tls_written)),
        0o644,
        Some("dovecot"),
    )?;
    add(
        "/etc/dovecot/chatmail-auth.conf.ext",
        roots.relocate(shipped::DOVECOT_AUTH_EXT),
        0o644,
        Some("dovecot"),
    )?;
    add(
        "/etc/dovecot/chatmail-push.lua",
        shipped::DOVECOT_PUSH_LUA.into(),
        0o644,
        Some("dovecot"),
    )?;

    let mut report = SetupReport {
        dry_run: opts.dry_run,
        ..SetupReport::default()
    };
    let mut reload = Vec::new();
    for p in &plan {
        let change = match &p.old {
            None => Change::Created,
            Some(old) if *old == p.new => Change::Unchanged,
            Some(_) => Change::Updated,
        };
        let shown = p.path.display();
        match (change, opts.dry_run) {
            (Change::Unchanged, _) => wln(out, format_args!("unchanged {shown}"))?,
            (_, true) => {
                let verb = if change == Change::Created {
                    "create"
                } else {
                    "update"
                };
                wln(out, format_args!("would {verb} {shown}"))?;
                let diff = files::unified_diff(&shown.to_string(), p.old.as_deref(), &p.new);
                out.write_all(diff.as_bytes())
                    .map_err(io_err("printing", Path::new("-")))?;
            }
            (_, false) => {
                files::write_atomic(&p.path, p.new.as_bytes(), p.mode)
                    .map_err(io_err("writing", &p.path))?;
                let verb = if change == Change::Created {
                    "created"
                } else {
                    "updated"
                };
                wln(out, format_args!("{verb} {shown}"))?;
                if let Some(o) = p.owner.filter(|o| !reload.contains(o)) {
                    reload.push(o);
                }
            }
        }
        report.files.push((p.path.clone(), change));
    }

    if !tls.external {
        let (cert, key) = (roots.host(&tls.cert), roots.host(&tls.key));
        if !(cert.exists() && key.exists()) {
            report.certificate_created = true;
            if opts.dry_run {
                wln(
                    out,
                    format_args!("would create a self-signed certificate {}", cert.display()),
                )?;
            } else {
                self_signed_certificate(&config.mail_domain, &cert, &key)?;
                wln(
                    out,
                    format_args!(
                        "created a self-signed certificate {} (key {})",
                        cert.display(),
                        key.display()
                    ),
                )?;
                for o in ["postfix", "dovecot"] {
                    if !reload.contains(&o) {
                        reload.push(o);
                    }
                }
            }
        }
    } else if !roots.host(&tls.cert).exists() {
        wln(
            out,
            format_args!(
                "warning: tls_external_cert_and_key names {}, which does not exist yet",
                tls.cert.display()
            ),
        )?;
    }

    if opts.etc.is_none() && !opts.dry_run {
        ensure_mailboxes_dir(&config.mailboxes_dir, out)?;
    }

    let systemd = opts.etc.is_none() && !opts.dry_run && Path::new("/run/systemd/system").exists();
    let mut units: Vec<&str> = UNITS.to_vec();
    if systemd {
        // Enabling a unit that is not installed fails the whole command.
        units.retain(|u| {
            [
                "/etc/systemd/system",
                "/lib/systemd/system",
                "/usr/lib/systemd/system",
            ]
            .iter()
            .any(|d| Path::new(d).join(u).exists())
        });
        for u in UNITS.iter().filter(|u| !units.contains(u)) {
            wln(out, format_args!("warning: {u} is not installed; skipped"))?;
        }
    }
    let mut commands = Vec::new();
    if !units.is_empty() {
        commands.push(format!("systemctl enable --now {}", units.join(" ")));
    }
    // Dovecot re-creates its listeners only on a restart; Postfix re-reads
    // master.cf on reload.
    if reload.contains(&"dovecot") {
        commands.push("systemctl restart dovecot".into());
    }
    if reload.contains(&"postfix") {
        commands.push("systemctl reload-or-restart postfix".into());
    }
    for c in &commands {
        if systemd {
            wln(out, format_args!("running {c}"))?;
            run(c)?;
        } else {
            wln(out, format_args!("to run: {c}"))?;
        }
    }
    report.commands = commands;
    Ok(report)
}

fn wln(out: &mut dyn Write, args: fmt::Arguments<'_>) -> Result<(), SetupError> {
    writeln!(out, "{args}").map_err(io_err("printing", Path::new("-")))
}

fn read(roots: &Roots, name: &str) -> Result<String, SetupError> {
    let path = roots.host(Path::new(name));
    std::fs::read_to_string(&path).map_err(io_err("reading", &path))
}

/// Debian's postfix package ships no `main.cf` when "No configuration" was
/// chosen; its postinst starts every other choice from `main.cf.debian`
/// (compatibility level and all), and so does `setup`.
fn main_cf_or_debian_default(roots: &Roots) -> Result<String, SetupError> {
    let path = roots.host(Path::new("/etc/postfix/main.cf"));
    if let Some(text) = files::read_optional(&path).map_err(io_err("reading", &path))? {
        return Ok(text);
    }
    let debian = roots.host(Path::new(DEBIAN_MAIN_CF));
    Ok(files::read_optional(&debian)
        .map_err(io_err("reading", &debian))?
        .unwrap_or_default())
}

/// Validates `domain` exactly as `chatmail.ini`'s `mail_domain` is, so that
/// what `setup` accepts the daemons accept too.
fn check_domain(domain: &str) -> Result<Config, SetupError> {
    let bad = |reason: String| SetupError::BadDomain {
        domain: domain.to_owned(),
        reason,
    };
    // A newline would smuggle extra keys into the ini.
    if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(bad("expected a host name like chat.example.org".into()));
    }
    if !domain.contains('.') && domain.parse::<std::net::Ipv4Addr>().is_err() {
        return Err(bad(
            "a relay needs a fully qualified name like chat.example.org".into(),
        ));
    }
    match Config::parse(&render::chatmail_ini(domain)) {
        Ok((config, _)) => Ok(config),
        Err(chatmail_config::ConfigError::Invalid { reason, .. }) => Err(bad(reason)),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// The same kind of certificate the sandbox makes (and chatmaild's
/// self-signed mode): P-256, ten years, the domain as CN and SAN.
fn self_signed_certificate(domain: &str, cert: &Path, key: &Path) -> Result<(), SetupError> {
    use std::os::unix::fs::DirBuilderExt;
    // A missing key directory is made private, like Debian's /etc/ssl/private.
    for (dir, mode) in [(cert.parent(), 0o755), (key.parent(), 0o700)] {
        if let Some(dir) = dir.filter(|d| !d.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(io_err("creating", dir))?;
        }
    }
    // openssl writes the key with the umask; make it private from the start
    // by writing into a private temp name, then renaming.
    let key_tmp = key.with_extension("key.chatmail-setup.tmp");
    let cert_tmp = cert.with_extension("pem.chatmail-setup.tmp");
    let mut cmd =
        chatmail_sandbox::render::self_signed_cert_command(domain, None, &key_tmp, &cert_tmp);
    let result = run_command(&mut cmd, "openssl req -x509 ...");
    if let Err(e) = result {
        let _ = std::fs::remove_file(&key_tmp);
        let _ = std::fs::remove_file(&cert_tmp);
        return Err(e);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod", &key_tmp))?;
    std::fs::set_permissions(&cert_tmp, std::fs::Permissions::from_mode(0o644))
        .map_err(io_err("chmod", &cert_tmp))?;
    std::fs::rename(&key_tmp, key).map_err(io_err("writing", key))?;
    std::fs::rename(&cert_tmp, cert).map_err(io_err("writing", cert))
}

fn ensure_mailboxes_dir(dir: &Path, out: &mut dyn Write) -> Result<(), SetupError> {
    if dir.exists() {
        return Ok(());
    }
    let Some(vmail) = nix::unistd::User::from_name("vmail").ok().flatten() else {
        return wln(
            out,
            format_args!(
                "warning: no vmail user, so {} was not created (the package's postinst makes it)",
                dir.display()
            ),
        );
    };
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    nix::unistd::chown(dir, Some(vmail.uid), Some(vmail.gid)).map_err(|e| SetupError::Io {
        what: "chown",
        path: dir.to_owned(),
        source: e.into(),
    })?;
    wln(out, format_args!("created {} (owner vmail)", dir.display()))
}

fn run(command_line: &str) -> Result<(), SetupError> {
    let mut words = command_line.split_whitespace();
    let mut cmd = Command::new(words.next().unwrap_or_default());
    cmd.args(words);
    run_command(&mut cmd, command_line)
}

fn run_command(cmd: &mut Command, shown: &str) -> Result<(), SetupError> {
    let failed = |detail: String| SetupError::Command {
        command: shown.to_owned(),
        detail,
    };
    let output = cmd.output().map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}
