//! Turning the shipped Postfix and Dovecot snippets (`postfix/`, `dovecot/`
//! at the top of the repository) into a private instance's configuration.
//!
//! The sandbox runs exactly what operators install; only paths and ports
//! change: a private instance lives in one state directory and listens on
//! 127.0.0.1 high ports, so the machine's own `/etc/postfix` and
//! `/etc/dovecot` are never read for settings nor written.

use std::path::Path;

/// The shipped Postfix `main.cf` settings.
pub const POSTFIX_MAIN_CF: &str = include_str!("../../../postfix/main.cf");
/// The shipped Postfix `master.cf` services.
pub const POSTFIX_MASTER_CF: &str = include_str!("../../../postfix/master.cf");
/// The shipped sender login map.
pub const POSTFIX_LOGIN_MAP: &str = include_str!("../../../postfix/chatmail-login-map");
/// The shipped submission header cleanup.
pub const POSTFIX_HEADER_CLEANUP: &str =
    include_str!("../../../postfix/chatmail-submission-header-cleanup");
/// The shipped Dovecot settings.
pub const DOVECOT_CONF: &str = include_str!("../../../dovecot/chatmail.conf");
/// The shipped push notification script.
pub const DOVECOT_PUSH_LUA: &str = include_str!("../../../dovecot/chatmail-push.lua");
/// The shipped dict passdb/userdb settings.
pub const DOVECOT_AUTH_EXT: &str = include_str!("../../../dovecot/chatmail-auth.conf.ext");

/// The loopback ports of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub smtp: u16,
    pub submission: u16,
    pub submissions: u16,
    pub imap: u16,
    pub imaps: u16,
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
}

/// The `openssl` command that makes the relay's self-signed certificate
/// (chatmaild's self-signed mode: P-256, ten years, the domain as CN and
/// subject alternative name, plus `extra_san` such as `IP:127.0.0.1`).
pub fn self_signed_cert_command(
    domain: &str,
    extra_san: Option<&str>,
    key: &Path,
    cert: &Path,
) -> std::process::Command {
    let mut san = match domain.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => format!("subjectAltName=IP:{ip}"),
        Err(_) => format!("subjectAltName=DNS:{domain}"),
    };
    if let Some(extra) = extra_san.filter(|_| domain.parse::<std::net::Ipv4Addr>().is_err()) {
        san = format!("{san},{extra}");
    }
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "3650", "-subj"])
        .arg(format!("/CN={domain}"))
        .arg("-addext")
        .arg(san)
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert);
    cmd
}

/// Applies `overrides` to a `main.cf` text the way `postconf -e` does: a
/// parameter that is set gets its value replaced in place (continuation
/// lines included), the others are appended.
pub fn merge_main_cf(text: &str, overrides: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(text.len() + 1024);
    let mut done = vec![false; overrides.len()];
    let mut skipping_continuation = false;
    for line in text.lines() {
        let continuation = line.starts_with([' ', '\t']) && !line.trim().is_empty();
        if continuation && skipping_continuation {
            continue;
        }
        skipping_continuation = false;
        let key = line.split('=').next().unwrap_or("").trim();
        let is_setting = !continuation && !line.trim_start().starts_with('#') && line.contains('=');
        if let Some(i) = overrides.iter().position(|(k, _)| is_setting && *k == key) {
            out.push_str(&format!("{key} = {}\n", overrides[i].1));
            done[i] = true;
            skipping_continuation = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    for (i, (k, v)) in overrides.iter().enumerate() {
        if !done[i] {
            out.push_str(&format!("{k} = {v}\n"));
        }
    }
    out
}

/// The internal services every Postfix instance needs, unchrooted (a private
/// instance has its own queue directory and no chroot jail set up).
const POSTFIX_INTERNAL_SERVICES: &str = "\
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
local      unix  -       n       n       -       -       local
virtual    unix  -       n       n       -       -       virtual
lmtp       unix  -       -       n       -       -       lmtp
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
";

/// A complete `master.cf`: Postfix's internal services plus the shipped
/// services, with `smtp`/`submission`/`submissions` bound to loopback ports
/// and chroot switched off.
pub fn master_cf(shipped: &str, ports: &Ports) -> String {
    let mut out = String::from("# Generated by chatmail sandbox from the shipped master.cf.\n");
    out.push_str(POSTFIX_INTERNAL_SERVICES);
    for line in shipped.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_service = !line.starts_with([' ', '\t', '#']) && fields.len() >= 8;
        if !is_service {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        let name = match (fields[0], fields[1]) {
            ("smtp", "inet") => format!("127.0.0.1:{}", ports.smtp),
            ("submission", "inet") => format!("127.0.0.1:{}", ports.submission),
            ("submissions", "inet") => format!("127.0.0.1:{}", ports.submissions),
            (name, _) => name.to_owned(),
        };
        let mut fields: Vec<String> = fields.iter().map(|f| (*f).to_owned()).collect();
        fields[0] = name;
        fields[4] = "n".into();
        out.push_str(&fields.join(" "));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relocates_every_absolute_path_of_the_snippets() {
        let state = Path::new("/tmp/sb");
        for snippet in [
            POSTFIX_MAIN_CF,
            POSTFIX_MASTER_CF,
            DOVECOT_CONF,
            DOVECOT_AUTH_EXT,
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
    fn merge_replaces_in_place_and_appends() {
        let text = "# c = comment\na = 1\nb = x,\n    y\nc = 3\n";
        let out = merge_main_cf(text, &[("b", "z".into()), ("d", "4".into())]);
        assert_eq!(out, "# c = comment\na = 1\nb = z\nc = 3\nd = 4\n");
    }

    #[test]
    fn master_cf_binds_loopback_without_chroot() {
        let ports = Ports {
            smtp: 2525,
            submission: 2587,
            submissions: 2465,
            imap: 2143,
            imaps: 2993,
        };
        let out = master_cf(POSTFIX_MASTER_CF, &ports);
        assert!(out.contains("\n127.0.0.1:2525 inet n - n - - smtpd\n"));
        assert!(out.contains("\n127.0.0.1:2587 inet n - n - - smtpd\n"));
        assert!(out.contains("\n127.0.0.1:2465 inet n - n - - smtpd\n"));
        assert!(out.contains("\nchatmail-submission-cleanup unix n - n - 0 cleanup\n"));
        assert!(out.contains("\n  -o smtpd_tls_wrappermode=yes\n"));
        assert!(!out.contains("\nsmtp       inet"));
    }
}
