//! `chatmail doctor`: checks that a relay is wired up and alive, and says how
//! to fix what is not.
//!
//! Every check is independent and never changes anything: the daemons get a
//! harmless question in their own protocol (a dict lookup of a key that
//! cannot exist, a policy query for a foreign recipient, a milter option
//! negotiation), so a daemon that accepts connections but cannot answer is
//! caught too. Each daemon gets a few seconds to answer, so a hung daemon is
//! a FAIL line, not a hung doctor.
//!
//! The checks, in the order they run: the config (here), the sockets
//! (`sockets`), the metrics endpoints ([`metrics`]), the Postfix and Dovecot
//! configuration (`wiring`), then the machine (`host`: certificates,
//! mailboxes, disk, memory, inotify, nocreate), with the web front and
//! certbot ([`web`]) and DNS (`dns`) among them. What a relay must
//! do when a piece is missing is in docs/design.md, "Failure behaviour".

mod check;
mod dns;
mod host;
pub mod metrics;
mod options;
mod sockets;
pub mod web;
mod wiring;

use std::path::{Path, PathBuf};

use chatmail_config::Config;

pub use self::check::{Check, DoctorReport, Status};

pub use self::host::{
    INOTIFY_LIMIT_IN_PROC, INOTIFY_PACKAGE_LIMIT, inotify_check, resource_checks,
};
pub use self::options::{DAEMONS, DoctorOptions, SocketArgError, parse_socket_arg};

/// The config check, plus a line naming the keys that nothing reads
/// (unknown, misspelt, or dropped by chatmaild), so an operator's file that
/// still sets them does not look fine while doing nothing.
fn config_checks(path: &Path, checks: &mut Vec<Check>) -> Option<Config> {
    match Config::load(path) {
        Ok((config, warnings)) => {
            let mut detail = format!("{} (mail_domain {})", path.display(), config.mail_domain);
            for w in warnings.iter().filter(|w| !w.is_ignored_key()) {
                detail.push_str(&format!("; warning: {w}"));
            }
            checks.push(Check::ok("config", detail));
            let ignored: Vec<String> = warnings
                .iter()
                .filter(|w| w.is_ignored_key())
                .map(ToString::to_string)
                .collect();
            if !ignored.is_empty() {
                checks.push(Check {
                    status: Status::Info,
                    name: "config keys ignored".into(),
                    detail: ignored.join("; "),
                    fix: None,
                });
            }
            Some(config)
        }
        Err(e) => {
            checks.push(Check::fail(
                "config",
                format!("{}: {e}", path.display()),
                "fix the file, or create it with `chatmail setup --domain YOUR.DOMAIN`",
            ));
            None
        }
    }
}

/// Runs every check. Never fails: what cannot be checked is a FAIL line.
pub async fn doctor(opts: &DoctorOptions) -> DoctorReport {
    let mut checks = Vec::new();
    let config = config_checks(&opts.config, &mut checks);

    checks.extend(sockets::socket_checks(opts).await);

    let endpoints = metrics::endpoints(config.as_ref(), &opts.metrics);
    checks.extend(metrics::check_all(endpoints, opts.timeout).await);
    checks.extend(wiring::postfix_wiring(opts));
    let (dovecot_checks, dovecot_cert) = wiring::dovecot_wiring(opts).await;
    checks.extend(dovecot_checks);

    let certs = wiring::certificates(opts, dovecot_cert);
    let postfix_cert = certs[0].clone();
    for cert in &certs {
        checks.push(host::check_certificate(&opts.roots, cert, opts.cert_margin_days).await);
    }
    // What the relay serves is never a root the web checks trust.
    let own_certs: Vec<PathBuf> = certs.iter().map(|c| opts.roots.host(c)).collect();
    checks.extend(web::certbot_checks(&opts.roots, &opts.web, &postfix_cert));

    if let Some(config) = &config {
        checks.extend(web::web_checks(config, &opts.roots, &opts.web, &own_certs).await);
        checks.push(host::check_mailboxes(opts, &config.mailboxes_dir));
        checks.extend(host::measured_resource_checks(opts, config));
        checks.extend(dns::checks(config, &opts.roots).await);
        checks.push(host::inotify(&opts.proc));
        checks.push(host::nocreate_check(opts, config));
    }
    DoctorReport { checks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ini = dir.path().join("chatmail.ini");
        std::fs::write(
            &ini,
            "[params]\nmail_domain = chat.example.org\npassthrough_senders = a@b.org\n\
             max_imap_conections = 5\nmin_available_memory = 300\n",
        )
        .unwrap();
        let mut checks = Vec::new();
        assert!(config_checks(&ini, &mut checks).is_some());
        assert_eq!(checks.len(), 2, "{checks:?}");
        assert_eq!(checks[0].status, Status::Ok);
        assert!(checks[0].detail.contains("warning: min_available_memory"));
        assert_eq!(checks[1].status, Status::Info);
        assert_eq!(checks[1].name, "config keys ignored");
        assert!(
            checks[1]
                .detail
                .starts_with("line 3: passthrough_senders is ignored: chatmaild removed it"),
            "{:?}",
            checks[1]
        );
        assert!(
            checks[1]
                .detail
                .ends_with("; line 4: unknown key \"max_imap_conections\" in [params], ignored"),
            "{:?}",
            checks[1]
        );
        std::fs::write(&ini, "[params]\nmail_domain = chat.example.org\n").unwrap();
        let mut checks = Vec::new();
        config_checks(&ini, &mut checks);
        assert_eq!(checks.len(), 1);
    }
}
