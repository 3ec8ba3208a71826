//! The state directory of one sandbox: the paths of its tree, where the
//! installed paths of the shipped files land in it ([`relocate`]), and
//! making the tree.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use chatmail_snippets::daemons::Daemon;

use crate::{Context, Sandbox, SandboxError};

/// Paths of one sandbox's state directory.
pub(crate) struct Layout {
    pub(crate) state: PathBuf,
}

impl Layout {
    pub(crate) fn p(&self, rel: &str) -> PathBuf {
        self.state.join(rel)
    }
    pub(crate) fn ini(&self) -> PathBuf {
        self.p("etc/chatmail.ini")
    }
    pub(crate) fn postfix_etc(&self) -> PathBuf {
        self.p("postfix/etc")
    }
    pub(crate) fn dovecot_conf(&self) -> PathBuf {
        self.p("dovecot/dovecot.conf")
    }
    pub(crate) fn dovecot_pid(&self) -> PathBuf {
        self.p("dovecot/run/master.pid")
    }
    /// Where a daemon's socket goes: its installed path (Dovecot's helpers
    /// under run/, Postfix's inside its queue directory) moved into the state
    /// directory the way the snippets are.
    pub(crate) fn socket(&self, daemon: &Daemon) -> PathBuf {
        PathBuf::from(relocate(daemon.socket, &self.state, Path::new("/")))
    }
    pub(crate) fn log(&self, name: &str) -> PathBuf {
        self.p(&format!("log/{name}.log"))
    }
}

/// Rewrites the absolute paths of the shipped snippets into `state`, and
/// the installed `chatmail` binary into `exe`.
pub fn relocate(text: &str, state: &Path, exe: &Path) -> String {
    let s = state.display();
    text.replace("/usr/bin/chatmail", &exe.display().to_string())
        .replace("/etc/dovecot/", &format!("{s}/dovecot/"))
        .replace("/etc/postfix/", &format!("{s}/postfix/etc/"))
        .replace("/var/spool/postfix/", &format!("{s}/postfix/queue/"))
        .replace("/run/chatmail-", &format!("{s}/run/chatmail-"))
        .replace("/etc/ssl/certs/chatmail.pem", &format!("{s}/tls/cert.pem"))
        .replace("/etc/ssl/private/chatmail.key", &format!("{s}/tls/key.pem"))
        .replace(
            "/var/lib/prometheus/node-exporter",
            &format!("{s}/node-exporter"),
        )
}

/// `[1.2.3.4]` is a fine directory name, but keep the bracketless form
/// chatmaild uses for its default mailboxes_dir.
pub(crate) fn domain_dir(domain: &str) -> &str {
    domain.trim_start_matches('[').trim_end_matches(']')
}

impl Sandbox {
    /// The state directory's tree, readable where vmail must reach it.
    pub(crate) fn make_state_dirs(&self) -> Result<(), SandboxError> {
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
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), SandboxError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .ctx(|| format!("chmod {}", path.display()))
}

pub(crate) fn chown_path(path: &Path, uid: u32, gid: u32) -> Result<(), SandboxError> {
    chown(path, Some(uid), Some(gid)).ctx(|| format!("chown {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatmail_snippets::files::*;

    #[test]
    fn relocates_every_absolute_path_of_the_snippets() {
        let state = Path::new("/tmp/sb");
        for snippet in [
            POSTFIX_MAIN_CF,
            POSTFIX_MASTER_CF,
            DOVECOT_CONF,
            DOVECOT_AUTH_LUA,
            DOVECOT_24_CONF,
        ] {
            let out = relocate(snippet, state, Path::new("/tmp/sb/bin/chatmail"));
            for line in out.lines().filter(|l| !l.trim_start().starts_with('#')) {
                for word in line.split(|c: char| c.is_whitespace() || c == '=' || c == ':') {
                    if word.starts_with('/') {
                        assert!(word.starts_with("/tmp/sb/"), "{word} in {line:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_certbot_hook_is_relocated_into_the_state_directory() {
        let hook = relocate(CERTBOT_DEPLOY_HOOK, Path::new("/s"), Path::new("/"));
        assert!(hook.contains("mv -f /s/tls/key.pem.new /s/tls/key.pem\n"));
        assert!(hook.contains("mv -f /s/tls/cert.pem.new /s/tls/cert.pem\n"));
        // The expiry textfile goes to the sandbox, never the machine's node-exporter.
        assert!(hook.contains("textfiles=/s/node-exporter\n"));
    }
}
