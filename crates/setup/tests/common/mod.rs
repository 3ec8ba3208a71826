//! A Debian-like `/etc` in a temp directory: the stock Postfix and Dovecot
//! files this machine's packages ship when they are there, else minimal
//! stand-ins with the lines `setup` has to deal with.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use chatmail_setup::{SetupError, SetupOptions, SetupReport, install};

pub const DOMAIN: &str = "chat.example.org";

const MINIMAL_MAIN_CF: &str = "\
smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU)
biff = no
append_dot_mydomain = no
readme_directory = no
compatibility_level = 3.6
smtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem
smtpd_tls_key_file=/etc/ssl/private/ssl-cert-snakeoil.key
smtpd_tls_security_level=may
smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated defer_unauth_destination
myhostname = debian
alias_maps = hash:/etc/aliases
alias_database = hash:/etc/aliases
mydestination = $myhostname, debian, localhost.localdomain, localhost
relayhost =
mynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128
mailbox_size_limit = 0
recipient_delimiter = +
inet_interfaces = all
inet_protocols = all
";

const MINIMAL_MASTER_CF: &str = "\
smtp      inet  n       -       y       -       -       smtpd
#submission inet n       -       y       -       -       smtpd
#  -o syslog_name=postfix/submission
pickup    unix  n       -       y       60      1       pickup
cleanup   unix  n       -       y       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
relay     unix  -       -       y       -       -       smtp
        -o syslog_name=postfix/$service_name
";

/// A fresh `/etc` copy under `dir`; returns its path.
pub fn debian_etc(dir: &Path) -> PathBuf {
    let etc = dir.join("etc");
    fs::create_dir_all(etc.join("postfix")).unwrap();
    fs::create_dir_all(etc.join("dovecot/conf.d")).unwrap();
    // Debian's postinst builds main.cf from main.cf.debian; master.cf is
    // master.cf.dist as shipped.
    let main = fs::read_to_string("/usr/share/postfix/main.cf.debian")
        .unwrap_or_else(|_| MINIMAL_MAIN_CF.to_owned());
    let main = format!("{main}myhostname = debian\nmydestination = $myhostname, localhost\n");
    fs::write(etc.join("postfix/main.cf"), main).unwrap();
    let master = fs::read_to_string("/usr/share/postfix/master.cf.dist")
        .unwrap_or_else(|_| MINIMAL_MASTER_CF.to_owned());
    fs::write(etc.join("postfix/master.cf"), master).unwrap();
    let dovecot = fs::read_to_string("/etc/dovecot/dovecot.conf")
        .unwrap_or_else(|_| "protocols = imap\n!include conf.d/*.conf\n".to_owned());
    fs::write(etc.join("dovecot/dovecot.conf"), dovecot).unwrap();
    let auth = fs::read_to_string("/etc/dovecot/conf.d/10-auth.conf")
        .unwrap_or_else(|_| "auth_mechanisms = plain\n!include auth-system.conf.ext\n".to_owned());
    fs::write(etc.join("dovecot/conf.d/10-auth.conf"), auth).unwrap();
    etc
}

/// `chatmail setup --domain DOMAIN` on `etc`, expected to succeed: its
/// report and what it printed.
pub fn run_setup(etc: &Path, dry_run: bool) -> (SetupReport, String) {
    let (result, out) = setup_as(DOMAIN, etc, dry_run);
    (result.unwrap(), out)
}

/// `chatmail setup --domain domain` on `etc`: its result and what it printed.
pub fn setup_as(
    domain: &str,
    etc: &Path,
    dry_run: bool,
) -> (Result<SetupReport, SetupError>, String) {
    let mut out = Vec::new();
    let result = install::run(
        &SetupOptions {
            domain: domain.into(),
            etc: Some(etc.to_owned()),
            dry_run,
            acme: None,
        },
        &mut out,
    );
    (result, String::from_utf8(out).unwrap())
}

/// Every file under `dir` with its contents, for before/after comparisons.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let data = fs::read(&p).unwrap();
                out.push((p, data));
            }
        }
    }
    out.sort();
    out
}
