//! `chatmail setup`: applies the shipped snippets to the machine's Postfix
//! and Dovecot, writes `chatmail.ini`, makes a certificate when there is
//! none, and enables the units.
//!
//! Everything is computed first and compared with what is on disk, so a
//! second run writes nothing and `--dry-run` can show the exact diff.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chatmail_config::{Config, ConfigError};
use chatmail_snippets::files as shipped;

use crate::created::{ensure_dkim_key, ensure_mailboxes_dir, self_signed_certificate};
use crate::error::{SetupError, io_err, wln};
use crate::machine_conf::{self, TlsFiles};
use crate::roots::{self, Roots};
use crate::services::{self, Fingerprints, Reader};

/// The units `setup` enables, in start order: the daemons' (before the MTAs
/// that connect to them), then the timers of the periodic jobs.
pub fn units() -> Vec<&'static str> {
    let daemons = chatmail_snippets::daemons::DAEMONS.iter().map(|d| d.unit);
    daemons
        .chain(chatmail_snippets::daemons::TIMERS.iter().copied())
        .collect()
}

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
    /// Get the certificate from the ACME CA with this directory URL
    /// (certbot, HTTP-01 through nginx; `--acme`), see docs/web.md.
    pub acme: Option<String>,
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
    /// A DKIM key was (or would be) created.
    pub dkim_key_created: bool,
    /// The commands run (or, with `--dry-run`, `--etc` or without systemd,
    /// the commands to run by hand).
    pub commands: Vec<String>,
    /// True when nothing was changed because of `--dry-run`.
    pub dry_run: bool,
    /// The steps that failed, each with its cause: the relay is complete
    /// only when this is empty.
    pub failures: Vec<String>,
}

impl SetupReport {
    /// True when nothing needed (or needs, for `--dry-run`) to change.
    pub fn unchanged(&self) -> bool {
        !self.certificate_created
            && !self.dkim_key_created
            && self.files.iter().all(|(_, c)| *c == Change::Unchanged)
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
            writeln!(f, "configuration unchanged")?;
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
            )?;
        }
        if !self.failures.is_empty() {
            writeln!(
                f,
                "setup is incomplete: {} step(s) failed:",
                self.failures.len()
            )?;
            for why in &self.failures {
                writeln!(f, "  {why}")?;
            }
        }
        Ok(())
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

/// Every file `setup` wants to have, each with what is on disk now, in the
/// order they are written.
struct Plan<'a> {
    roots: &'a Roots,
    files: Vec<Planned>,
}

impl Plan<'_> {
    /// Plans the file the configs name `name` (under `/etc`).
    fn add(
        &mut self,
        name: &str,
        new: String,
        mode: u32,
        owner: Option<&'static str>,
    ) -> Result<(), SetupError> {
        self.add_host(self.roots.host(Path::new(name)), new, mode, owner)
    }

    /// Plans the file at `path` on this machine.
    fn add_host(
        &mut self,
        path: PathBuf,
        new: String,
        mode: u32,
        owner: Option<&'static str>,
    ) -> Result<(), SetupError> {
        let old = roots::read_optional(&path).map_err(io_err("reading", &path))?;
        self.files.push(Planned {
            path,
            old,
            new,
            mode,
            owner,
        });
        Ok(())
    }
}

/// What the steps did so far: the report, and the services that must
/// re-read their configuration.
struct Progress {
    report: SetupReport,
    reload: Vec<&'static str>,
}

impl Progress {
    fn reload(&mut self, service: &'static str) {
        if !self.reload.contains(&service) {
            self.reload.push(service);
        }
    }
}

/// Where `chatmail.ini` is, as the other files name it.
const INI_NAME: &str = "/etc/chatmail/chatmail.ini";

/// Applies the shipped snippets to this machine's Postfix and Dovecot (or
/// to the tree under `opts.etc`), printing progress (and, with `dry_run`,
/// the diffs) to `out`.
///
/// # Errors
/// A domain that cannot be a relay's, an existing `chatmail.ini` that is
/// invalid or for another domain, Postfix or Dovecot not installed, a file
/// that cannot be read or written, or `openssl`/`systemctl` failing.
pub fn run(opts: &SetupOptions, out: &mut dyn Write) -> Result<SetupReport, SetupError> {
    let domain = opts.domain.trim().to_ascii_lowercase();
    let requested = check_domain(&domain)?;
    let roots = Roots {
        etc: opts.etc.clone().unwrap_or_else(|| "/etc".into()),
        root: "/".into(),
    };
    check_installed(&roots)?;
    let (config, ini_new) = chatmail_ini(&roots, &domain, requested)?;
    let tls = TlsFiles::for_config(&config);
    // What the config files say: with --etc, the tree's own files.
    let tls_written = TlsFiles {
        cert: roots.host(&tls.cert),
        key: roots.host(&tls.key),
        external: tls.external,
    };

    let mut plan = Plan {
        roots: &roots,
        files: Vec::new(),
    };
    plan.add(INI_NAME, ini_new, 0o644, Some("chatmail"))?;
    plan_unit_dropins(&mut plan, &config)?;
    plan_postfix(&mut plan, &config, &tls_written)?;
    plan_dovecot(&mut plan, &config, &tls_written)?;
    plan_web(&mut plan, &config, &tls_written, opts.etc.is_some())?;

    let mut done = Progress {
        report: SetupReport {
            dry_run: opts.dry_run,
            ..SetupReport::default()
        },
        reload: Vec::new(),
    };
    write_files(&plan.files, opts.dry_run, &mut done, out)?;
    certificate(&roots, &config, &tls, opts.dry_run, &mut done, out)?;
    dkim_key(&roots, &config, opts.dry_run, &mut done, out)?;
    directories(opts, &roots, &config, out)?;

    let systemd = opts.etc.is_none() && !opts.dry_run && Path::new("/run/systemd/system").exists();
    let units = units_to_enable(systemd, out)?;
    let fingerprints = fingerprints(&plan.files, &roots, &config, &tls);
    let fcgiwrap = fcgiwrap_installed(&fingerprints, out)?;
    let steps = if systemd {
        services::plan(
            &units,
            &fingerprints,
            fcgiwrap,
            &services::applied_in(&roots.root),
        )
    } else {
        // Nothing was applied by us: a service must re-read what this run
        // changed.
        let changed: Vec<Reader> = done
            .reload
            .iter()
            .filter_map(|o| Reader::of_owner(o))
            .collect();
        let unchanged = |unit: &str| {
            let readers = services::readers_of(unit);
            (!readers.iter().any(|r| changed.contains(r))).then(|| fingerprints.of(unit))
        };
        services::plan(&units, &fingerprints, fcgiwrap, &unchanged)
    };
    if systemd {
        done.report.failures = services::run(&steps, &roots.root, out);
    } else {
        for s in &steps {
            wln(out, format_args!("to run: {}", s.command))?;
        }
    }
    done.report.commands = steps.into_iter().map(|s| s.command).collect();
    acme_certificate(opts, &config, &tls, systemd, &mut done.report, out)?;
    Ok(done.report)
}

/// The fingerprint of each service's configuration: the files planned for
/// it, and the certificate and keys it reads.
fn fingerprints(plan: &[Planned], roots: &Roots, config: &Config, tls: &TlsFiles) -> Fingerprints {
    let mut f = Fingerprints::default();
    for p in plan {
        if let Some(reader) = p.owner.and_then(Reader::of_owner) {
            f.add(reader, &p.path, p.new.as_bytes());
        }
    }
    let mut tls_readers = vec![Reader::Postfix, Reader::Dovecot];
    if f.has(Reader::Nginx) {
        tls_readers.push(Reader::Nginx);
    }
    for path in [&tls.cert, &tls.key] {
        f.add_file(&tls_readers, &roots.host(path));
    }
    f.add_file(&[Reader::Milter], &roots.host(&config.dkim_key_file));
    f
}

/// Whether fcgiwrap can serve `/new`, when nginx is managed (with a warning
/// when it cannot).
fn fcgiwrap_installed(f: &Fingerprints, out: &mut dyn Write) -> Result<bool, SetupError> {
    if !f.has(Reader::Nginx) {
        return Ok(false);
    }
    let installed = Path::new("/usr/sbin/fcgiwrap").exists();
    if !installed {
        wln(
            out,
            format_args!(
                "warning: fcgiwrap is not installed, so /new cannot hand out accounts: apt-get install fcgiwrap"
            ),
        )?;
    }
    Ok(installed)
}

/// A drop-in for each unit that writes mailboxes, naming `mailboxes_dir`
/// of `chatmail.ini`, wherever the operator put it.
fn plan_unit_dropins(plan: &mut Plan, config: &Config) -> Result<(), SetupError> {
    let dir = config.mailboxes_dir.display().to_string();
    if dir.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        return Err(SetupError::Config {
            path: plan.roots.host(Path::new(INI_NAME)),
            source: ConfigError::Invalid {
                key: "mailboxes_dir".into(),
                value: dir.clone(),
                reason: "a path with white space, quotes or backslashes cannot be given to systemd"
                    .into(),
            },
        });
    }
    for unit in chatmail_snippets::daemons::mailbox_writers() {
        plan.add(
            &format!("/etc/systemd/system/{unit}.d/chatmail-mailboxes.conf"),
            format!(
                "# Written by `chatmail setup` from mailboxes_dir in {INI_NAME}.\n\
                 [Service]\nReadWritePaths=-{dir}\n"
            ),
            0o644,
            Some("chatmail"),
        )?;
    }
    Ok(())
}

/// Stops early when Postfix or Dovecot is not installed: `setup` merges
/// into their stock files.
fn check_installed(roots: &Roots) -> Result<(), SetupError> {
    for (p, package) in [
        ("/etc/postfix/master.cf", "postfix"),
        ("/etc/dovecot/dovecot.conf", "dovecot-core"),
    ] {
        let path = roots.host(Path::new(p));
        if !path.exists() {
            return Err(SetupError::NotInstalled { path, package });
        }
    }
    Ok(())
}

/// The relay's config and the text `chatmail.ini` must have: the existing
/// file for the same domain, the package's default with the domain set, or
/// a new one.
fn chatmail_ini(
    roots: &Roots,
    domain: &str,
    requested: Config,
) -> Result<(Config, String), SetupError> {
    let ini_path = roots.host(Path::new(INI_NAME));
    let ini_old = roots::read_optional(&ini_path).map_err(io_err("reading", &ini_path))?;
    let config_err = |source| SetupError::Config {
        path: ini_path.clone(),
        source,
    };
    Ok(match &ini_old {
        Some(text) => match Config::parse(text) {
            Ok((config, _warnings)) => {
                if config.mail_domain.to_ascii_lowercase() != requested.mail_domain {
                    return Err(SetupError::DomainMismatch {
                        path: ini_path.clone(),
                        configured: config.mail_domain,
                        requested: domain.to_owned(),
                    });
                }
                // Never rewritten once it has a domain: the operator owns it.
                (config, text.clone())
            }
            // The package's commented default (or any file that only lacks
            // the domain): set mail_domain, keep every other line.
            Err(ConfigError::MissingKey { key: "mail_domain" }) => {
                let text = machine_conf::with_mail_domain(text, domain);
                let (config, _warnings) = Config::parse(&text).map_err(config_err)?;
                (config, text)
            }
            Err(source) => return Err(config_err(source)),
        },
        None => (requested, machine_conf::chatmail_ini(domain)),
    })
}

/// Postfix: `main.cf` and `master.cf` merged with the shipped settings, and
/// the shipped maps.
fn plan_postfix(
    plan: &mut Plan,
    config: &Config,
    tls_written: &TlsFiles,
) -> Result<(), SetupError> {
    let roots = plan.roots;
    let main_cf = main_cf_or_debian_default(roots)?;
    let settings: Vec<(String, String)> = machine_conf::main_cf_settings(config, tls_written)
        .into_iter()
        .map(|(k, v)| (k, roots.rewrite_etc_paths(&v)))
        .collect();
    plan.add(
        "/etc/postfix/main.cf",
        machine_conf::apply_main_cf_settings(&main_cf, &settings),
        0o644,
        Some("postfix"),
    )?;
    let master_cf = read(roots, "/etc/postfix/master.cf")?;
    plan.add(
        "/etc/postfix/master.cf",
        machine_conf::merge_master_cf(
            &master_cf,
            &roots.rewrite_etc_paths(&chatmail_snippets::render::master_cf_limits(
                shipped::POSTFIX_MASTER_CF,
                config,
            )),
        ),
        0o644,
        Some("postfix"),
    )?;
    for (path, map) in [
        (
            "/etc/postfix/chatmail-login-map",
            shipped::POSTFIX_LOGIN_MAP,
        ),
        (
            "/etc/postfix/chatmail-submission-header-cleanup",
            shipped::POSTFIX_HEADER_CLEANUP,
        ),
        (
            "/etc/postfix/chatmail-lmtp-header-cleanup",
            shipped::POSTFIX_LMTP_HEADER_CLEANUP,
        ),
    ] {
        plan.add(path, map.into(), 0o644, Some("postfix"))?;
    }
    Ok(())
}

/// Dovecot: the include in `dovecot.conf`, system auth off, the chatmail
/// snippet in the dialect of the installed Dovecot, and the Lua scripts.
fn plan_dovecot(
    plan: &mut Plan,
    config: &Config,
    tls_written: &TlsFiles,
) -> Result<(), SetupError> {
    let roots = plan.roots;
    let dovecot_conf = read(roots, "/etc/dovecot/dovecot.conf")?;
    // Debian 13's Dovecot 2.4 speaks another configuration language; its
    // stock dovecot.conf says so (docs/dovecot-2.4.md).
    let dovecot_24 = machine_conf::dovecot_conf_is_24(&dovecot_conf);
    let new = machine_conf::dovecot_include(&dovecot_conf).unwrap_or(dovecot_conf);
    plan.add("/etc/dovecot/dovecot.conf", new, 0o644, Some("dovecot"))?;
    let auth_conf = roots.host(Path::new("/etc/dovecot/conf.d/10-auth.conf"));
    if let Some(text) = roots::read_optional(&auth_conf).map_err(io_err("reading", &auth_conf))? {
        let new = machine_conf::disable_system_auth(&text).unwrap_or(text);
        plan.add(
            "/etc/dovecot/conf.d/10-auth.conf",
            new,
            0o644,
            Some("dovecot"),
        )?;
    }
    if dovecot_24 {
        plan.add(
            machine_conf::DOVECOT_CONF_D,
            roots.rewrite_etc_paths(&machine_conf::dovecot_24_conf(config, tls_written)),
            0o644,
            Some("dovecot"),
        )?;
    } else {
        plan.add(
            machine_conf::DOVECOT_CONF_D,
            roots.rewrite_etc_paths(&machine_conf::dovecot_conf(config, tls_written)),
            0o644,
            Some("dovecot"),
        )?;
    }
    // The passdb/userdb of both versions (docs/dovecot-2.4.md).
    plan.add(
        "/etc/dovecot/chatmail-auth.lua",
        shipped::DOVECOT_AUTH_LUA.into(),
        0o644,
        Some("dovecot"),
    )?;
    plan.add(
        "/etc/dovecot/chatmail-push.lua",
        shipped::DOVECOT_PUSH_LUA.into(),
        0o644,
        Some("dovecot"),
    )
}

/// The web front: rendered pages and nginx's server block (docs/web.md).
fn plan_web(
    plan: &mut Plan,
    config: &Config,
    tls_written: &TlsFiles,
    etc: bool,
) -> Result<(), SetupError> {
    for (path, new, owner) in crate::site::planned_files(config, tls_written, plan.roots, etc) {
        plan.add_host(path, new, 0o644, owner)?;
    }
    Ok(())
}

/// Writes the planned files that differ from what is on disk (with
/// `dry_run`, prints their diffs instead), noting who must reload.
fn write_files(
    plan: &[Planned],
    dry_run: bool,
    done: &mut Progress,
    out: &mut dyn Write,
) -> Result<(), SetupError> {
    for p in plan {
        let change = match &p.old {
            None => Change::Created,
            Some(old) if *old == p.new => Change::Unchanged,
            Some(_) => Change::Updated,
        };
        let shown = p.path.display();
        match (change, dry_run) {
            (Change::Unchanged, _) => wln(out, format_args!("unchanged {shown}"))?,
            (_, true) => {
                let verb = if change == Change::Created {
                    "create"
                } else {
                    "update"
                };
                wln(out, format_args!("would {verb} {shown}"))?;
                let diff = crate::diff::unified_diff(&shown.to_string(), p.old.as_deref(), &p.new);
                out.write_all(diff.as_bytes())
                    .map_err(io_err("printing", Path::new("-")))?;
            }
            (_, false) => {
                chatmail_mailbox::write_atomic_keeping_mode(&p.path, p.new.as_bytes(), p.mode)
                    .map_err(io_err("writing", &p.path))?;
                let verb = if change == Change::Created {
                    "created"
                } else {
                    "updated"
                };
                wln(out, format_args!("{verb} {shown}"))?;
                if let Some(o) = p.owner {
                    done.reload(o);
                }
            }
        }
        done.report.files.push((p.path.clone(), change));
    }
    Ok(())
}

/// A self-signed certificate when the config names no external one and
/// there is none yet; a warning when the external one is missing.
fn certificate(
    roots: &Roots,
    config: &Config,
    tls: &TlsFiles,
    dry_run: bool,
    done: &mut Progress,
    out: &mut dyn Write,
) -> Result<(), SetupError> {
    if !tls.external {
        let (cert, key) = (roots.host(&tls.cert), roots.host(&tls.key));
        if !(cert.exists() && key.exists()) {
            done.report.certificate_created = true;
            if dry_run {
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
                    done.reload(o);
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
    Ok(())
}

/// The DKIM key, for a relay with a domain name (an IP-literal relay has no
/// DNS to publish it in).
fn dkim_key(
    roots: &Roots,
    config: &Config,
    dry_run: bool,
    done: &mut Progress,
    out: &mut dyn Write,
) -> Result<(), SetupError> {
    if config.ipv4_relay().is_none() {
        let key = roots.host(&config.dkim_key_file);
        if let Some(o) = ensure_dkim_key(&key, dry_run, out)? {
            done.report.dkim_key_created = true;
            done.reload(o);
        }
    }
    Ok(())
}

/// The mailboxes directory (on the machine itself only) and the web
/// front's directories; nothing with `--dry-run`.
fn directories(
    opts: &SetupOptions,
    roots: &Roots,
    config: &Config,
    out: &mut dyn Write,
) -> Result<(), SetupError> {
    if opts.etc.is_none() && !opts.dry_run {
        ensure_mailboxes_dir(&config.mailboxes_dir, out)?;
    }
    if !opts.dry_run {
        let made = crate::site::ensure_dirs(roots, opts.etc.is_some()).map_err(io_err(
            "creating",
            Path::new(chatmail_snippets::nginx::WWW_OVERRIDE),
        ))?;
        for dir in made {
            wln(out, format_args!("created {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The [`units`] to enable: under systemd only those installed (with a
/// warning for each other one).
fn units_to_enable(systemd: bool, out: &mut dyn Write) -> Result<Vec<&'static str>, SetupError> {
    let all = units();
    let mut units = all.clone();
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
        for u in all.iter().filter(|u| !units.contains(u)) {
            wln(out, format_args!("warning: {u} is not installed; skipped"))?;
        }
    }
    Ok(units)
}

/// With `--acme`, a certificate from the CA (docs/web.md), unless the
/// config rules one out.
fn acme_certificate(
    opts: &SetupOptions,
    config: &Config,
    tls: &TlsFiles,
    systemd: bool,
    report: &mut SetupReport,
    out: &mut dyn Write,
) -> Result<(), SetupError> {
    if let Some(directory) = &opts.acme {
        match crate::acme::acme_refusal(config, tls) {
            Some(why) => wln(out, format_args!("warning: no ACME certificate: {why}"))?,
            None => {
                let acme = crate::acme::acme(config, directory, systemd, out)?;
                report.commands.extend(acme);
            }
        }
    }
    Ok(())
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
    if let Some(text) = roots::read_optional(&path).map_err(io_err("reading", &path))? {
        return Ok(text);
    }
    let debian = roots.host(Path::new(DEBIAN_MAIN_CF));
    Ok(roots::read_optional(&debian)
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
    match Config::parse(&machine_conf::chatmail_ini(domain)) {
        Ok((config, _)) => Ok(config),
        Err(chatmail_config::ConfigError::Invalid { reason, .. }) => Err(bad(reason)),
        Err(e) => Err(bad(e.to_string())),
    }
}
