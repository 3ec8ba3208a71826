//! What a start puts into the state directory before anything runs: the
//! `vmail` user, chatmail.ini, the mail directories, the copy of the
//! `chatmail` binary, the certificate and the DKIM key.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use chatmail_config::Config;
use chatmail_snippets::files;
use chatmail_snippets::render;
use nix::unistd::User;

use crate::layout::{chown_path, domain_dir, set_mode};
use crate::processes::run_logged;
use crate::{Context, Options, Sandbox, SandboxError};

#[derive(Clone, Copy)]
pub(crate) struct Ids {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// The `vmail` user that owns every mailbox; created (as a system user
/// without a home) when the machine has none, as the Debian package does.
pub(crate) fn ensure_vmail() -> Result<Ids, SandboxError> {
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

/// Adds `dkim_key_file` (inside the state directory) and `dns_resolver`
/// to the sandbox's chatmail.ini when it does not set them, so the
/// sandbox never uses the machine's /etc/dkimkeys.
pub(crate) fn add_dkim_params(
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

impl Sandbox {
    /// Loads the sandbox's chatmail.ini, first writing it for `opts.domain`
    /// when there is none (an existing one is the operator's and kept).
    pub(crate) fn load_config(&self, opts: &Options) -> Result<Config, SandboxError> {
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
    pub(crate) fn make_mail_dirs(&self, config: &Config, vmail: Ids) -> Result<(), SandboxError> {
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
    pub(crate) fn install_binary(&self, built: &Path) -> Result<PathBuf, SandboxError> {
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
    pub(crate) fn make_certificate(&self, domain: &str) -> Result<(), SandboxError> {
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
    pub(crate) fn make_dkim_key(&self, config: &Config) -> Result<Option<String>, SandboxError> {
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
}
