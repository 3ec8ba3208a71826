//! The one table of the daemons that serve Postfix and Dovecot over a Unix
//! socket: the `chatmail` subcommand, where the shipped files put its socket,
//! the group whose members may connect, and its systemd unit.
//!
//! The binary's default `--listen`, `chatmail setup` (units to enable),
//! `chatmail doctor` (sockets to ask) and `chatmail sandbox` (sockets and
//! groups of a private instance) all read this table; the tests below check
//! that the shipped units and snippets say the same (docs/design.md,
//! "Crates").

/// One daemon of the `chatmail` binary that listens on a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Daemon {
    /// Its subcommand (`chatmail auth`) and short name in logs and metrics.
    pub name: &'static str,
    /// Its socket on an installed relay. Dovecot's clients find it in
    /// `/run`; Postfix's inside the queue directory, because Debian's smtpd
    /// runs chrooted there.
    pub socket: &'static str,
    /// The socket's group: the processes that connect run in it (Dovecot's
    /// auth process, its mail processes running as vmail, Postfix's smtpd).
    pub group: &'static str,
    /// Its systemd unit (in [`crate::files::UNITS`]).
    pub unit: &'static str,
}

/// Where Postfix's queue directory is on Debian: the chroot of smtpd.
pub const POSTFIX_QUEUE_DIRECTORY: &str = "/var/spool/postfix";

/// `chatmail auth`: Dovecot's passdb and userdb, creating accounts on first
/// login.
pub const AUTH: Daemon = Daemon {
    name: "auth",
    socket: "/run/chatmail-auth/auth.socket",
    group: "dovecot",
    unit: "chatmail-auth.service",
};

/// `chatmail lastlogin`: the day of each account's last login, for expiry.
pub const LASTLOGIN: Daemon = Daemon {
    name: "lastlogin",
    socket: "/run/chatmail-lastlogin/lastlogin.socket",
    group: "vmail",
    unit: "chatmail-lastlogin.service",
};

/// `chatmail metadata`: IMAP METADATA (notify tokens) and push notifications.
pub const METADATA: Daemon = Daemon {
    name: "metadata",
    socket: "/run/chatmail-metadata/metadata.socket",
    group: "vmail",
    unit: "chatmail-metadata.service",
};

/// `chatmail milter`: passes only encrypted mail, signs and verifies DKIM.
pub const MILTER: Daemon = Daemon {
    name: "milter",
    socket: "/var/spool/postfix/chatmail/milter.socket",
    group: "postfix",
    unit: "chatmail-milter.service",
};

/// `chatmail policy`: Postfix's policy service (per-user send rate and
/// recipient limits).
pub const POLICY: Daemon = Daemon {
    name: "policy",
    socket: "/var/spool/postfix/chatmail/policy.socket",
    group: "postfix",
    unit: "chatmail-policy.service",
};

/// Every socket daemon, in the order their units start (the helpers before
/// the mail servers that connect to them).
pub const DAEMONS: &[Daemon] = &[AUTH, LASTLOGIN, METADATA, MILTER, POLICY];

/// The units of the periodic jobs, started by their timers.
pub const TIMERS: &[&str] = &["chatmail-expire.timer", "chatmail-report.timer"];

/// The daemon called `name`.
pub fn daemon(name: &str) -> Option<&'static Daemon> {
    DAEMONS.iter().find(|d| d.name == name)
}

impl Daemon {
    /// The socket as Postfix names it, relative to its queue directory
    /// (`chatmail/milter.socket`), for a daemon Postfix connects to.
    pub fn postfix_socket(&self) -> Option<&'static str> {
        self.socket
            .strip_prefix(POSTFIX_QUEUE_DIRECTORY)?
            .strip_prefix('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files;

    fn setting<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect()
    }

    #[test]
    fn every_unit_runs_its_daemon_on_the_tables_socket_and_group() {
        for d in DAEMONS {
            let unit = files::unit(d.unit).unwrap_or_else(|| panic!("no unit {}", d.unit));
            assert_eq!(
                setting(unit, "ExecStart"),
                [format!(
                    "/usr/bin/chatmail {} --config /etc/chatmail/chatmail.ini --listen unix:{}",
                    d.name, d.socket
                )],
                "{}",
                d.unit
            );
            assert_eq!(setting(unit, "Group"), [d.group], "{}", d.unit);
            assert_eq!(setting(unit, "Type"), ["notify"], "{}", d.unit);
            // A socket under /run/chatmail-NAME needs that runtime directory.
            if let Some(rest) = d.socket.strip_prefix("/run/") {
                let dir = rest.split('/').next().unwrap();
                assert_eq!(setting(unit, "RuntimeDirectory"), [dir], "{}", d.unit);
            }
        }
    }

    #[test]
    fn every_shipped_unit_is_a_daemon_or_a_periodic_job() {
        for (name, _) in files::UNITS {
            let known = DAEMONS.iter().any(|d| d.unit == *name)
                || TIMERS.contains(name)
                || TIMERS.contains(&name.replace(".service", ".timer").as_str());
            assert!(known, "{name} is in no table");
        }
        for t in TIMERS {
            assert!(files::unit(t).is_some(), "{t}");
            assert!(
                files::unit(&t.replace(".timer", ".service")).is_some(),
                "{t}"
            );
        }
    }

    #[test]
    fn postfix_and_dovecot_snippets_name_the_tables_sockets() {
        let dovecot_23 = format!("{}{}", files::DOVECOT_CONF, files::DOVECOT_AUTH_LUA);
        let dovecot_24 = format!("{}{}", files::DOVECOT_24_CONF, files::DOVECOT_AUTH_LUA);
        for d in DAEMONS {
            match d.postfix_socket() {
                Some(rel) => {
                    assert!(
                        files::POSTFIX_MAIN_CF.contains(&format!("unix:{rel}")),
                        "main.cf does not name {rel}"
                    );
                    assert!(!dovecot_23.contains(d.socket) && !dovecot_24.contains(d.socket));
                }
                None => {
                    assert!(
                        dovecot_23.contains(d.socket),
                        "2.3 snippets lack {}",
                        d.socket
                    );
                    assert!(
                        dovecot_24.contains(d.socket),
                        "2.4 snippets lack {}",
                        d.socket
                    );
                }
            }
        }
        // No snippet names a socket outside the table.
        for text in [files::POSTFIX_MAIN_CF, &dovecot_23, &dovecot_24] {
            for word in text.split(|c: char| c.is_whitespace() || "=:,{}\"".contains(c)) {
                if word.ends_with(".socket") && word.contains("chatmail") {
                    assert!(
                        DAEMONS
                            .iter()
                            .any(|d| d.socket == word || d.postfix_socket() == Some(word)),
                        "{word} is not in the table"
                    );
                }
            }
        }
    }

    #[test]
    fn postfix_names_its_sockets_relative_to_the_queue_directory() {
        assert_eq!(
            daemon("milter").unwrap().postfix_socket(),
            Some("chatmail/milter.socket")
        );
        assert_eq!(daemon("auth").unwrap().postfix_socket(), None);
        assert_eq!(daemon("nope"), None);
    }
}
