//! The one table of the daemons that serve Postfix and Dovecot over a Unix
//! socket: the `chatmail` subcommand, where the shipped files put its socket,
//! the group whose members may connect, its systemd unit, the offset of its
//! metrics port from `metrics_listen` and whether it writes mailboxes; and
//! the periodic jobs with their units.
//!
//! The binary's default `--listen` and metrics port, `chatmail setup` (units
//! to enable, the units that may write `mailboxes_dir`), `chatmail doctor`
//! (sockets and metrics endpoints to ask) and `chatmail sandbox` (sockets,
//! groups and metrics ports of a private instance) all read this table; the
//! tests below check that the shipped units, snippets and
//! `monitoring/prometheus.yml` say the same (docs/design.md, "Crates").

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
    /// Added to the port of `metrics_listen` for its metrics endpoint
    /// (docs/metrics.md): the daemons that serve metrics take consecutive
    /// ports; `None`: no metrics endpoint.
    pub metrics_offset: Option<u16>,
    /// Whether it writes into `mailboxes_dir`, so that its unit must be let
    /// write there (`ReadWritePaths=`).
    pub writes_mailboxes: bool,
}

/// One periodic job of the `chatmail` binary, started by a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// Its subcommand (`chatmail expire`).
    pub name: &'static str,
    /// Its systemd service (in [`crate::files::UNITS`]).
    pub unit: &'static str,
    /// The timer that starts it (in [`crate::files::UNITS`]).
    pub timer: &'static str,
    /// Whether it writes into `mailboxes_dir`, as [`Daemon::writes_mailboxes`].
    pub writes_mailboxes: bool,
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
    metrics_offset: Some(0),
    writes_mailboxes: true,
};

/// `chatmail lastlogin`: the day of each account's last login, for expiry.
pub const LASTLOGIN: Daemon = Daemon {
    name: "lastlogin",
    socket: "/run/chatmail-lastlogin/lastlogin.socket",
    group: "vmail",
    unit: "chatmail-lastlogin.service",
    metrics_offset: Some(1),
    writes_mailboxes: true,
};

/// `chatmail metadata`: IMAP METADATA (notify tokens) and push notifications.
pub const METADATA: Daemon = Daemon {
    name: "metadata",
    socket: "/run/chatmail-metadata/metadata.socket",
    group: "vmail",
    unit: "chatmail-metadata.service",
    metrics_offset: Some(2),
    writes_mailboxes: true,
};

/// `chatmail milter`: passes only encrypted mail, signs and verifies DKIM.
pub const MILTER: Daemon = Daemon {
    name: "milter",
    socket: "/var/spool/postfix/chatmail/milter.socket",
    group: "postfix",
    unit: "chatmail-milter.service",
    metrics_offset: Some(3),
    writes_mailboxes: false,
};

/// `chatmail policy`: Postfix's policy service (per-user send rate and
/// recipient limits).
pub const POLICY: Daemon = Daemon {
    name: "policy",
    socket: "/var/spool/postfix/chatmail/policy.socket",
    group: "postfix",
    unit: "chatmail-policy.service",
    metrics_offset: Some(4),
    writes_mailboxes: false,
};

/// `chatmail mxdeliv`: relay-to-relay mail arriving over HTTPS, behind
/// nginx (docs/design.md, "HTTPS transport").
pub const MXDELIV: Daemon = Daemon {
    name: "mxdeliv",
    socket: "/run/chatmail-mxdeliv/mxdeliv.socket",
    group: "www-data",
    unit: "chatmail-mxdeliv.service",
    metrics_offset: None,
    writes_mailboxes: false,
};

/// `chatmail transport`: Postfix's LMTP transport for remote mail, which
/// tries HTTPS first (docs/design.md, "HTTPS transport").
pub const TRANSPORT: Daemon = Daemon {
    name: "transport",
    socket: "/var/spool/postfix/chatmail/transport.socket",
    group: "postfix",
    unit: "chatmail-transport.service",
    metrics_offset: None,
    writes_mailboxes: false,
};

/// The socketmap of `chatmail transport`, which Postfix's `transport_maps`,
/// `smtp_tls_policy_maps` and `smtp_delivery_status_filter` ask.
pub const TRANSPORT_MAP_SOCKET: &str = "/var/spool/postfix/chatmail/transport-map.socket";

/// Every socket daemon, in the order their units start (the helpers before
/// the mail servers that connect to them), which is also the order of their
/// metrics ports.
pub const DAEMONS: &[Daemon] = &[
    AUTH, LASTLOGIN, METADATA, MILTER, POLICY, TRANSPORT, MXDELIV,
];

/// How many consecutive ports from `metrics_listen` the daemons' metrics
/// endpoints take: one past the largest offset.
pub const METRICS_PORTS: u16 = {
    let mut n = 0;
    let mut i = 0;
    while i < DAEMONS.len() {
        if let Some(offset) = DAEMONS[i].metrics_offset
            && offset >= n
        {
            n = offset + 1;
        }
        i += 1;
    }
    n
};

/// `chatmail expire`: daily removal of old mail and inactive accounts.
pub const EXPIRE: Job = Job {
    name: "expire",
    unit: "chatmail-expire.service",
    timer: "chatmail-expire.timer",
    writes_mailboxes: true,
};

/// `chatmail report`: the daily storage and login statistics.
pub const REPORT: Job = Job {
    name: "report",
    unit: "chatmail-report.service",
    timer: "chatmail-report.timer",
    writes_mailboxes: false,
};

/// Every periodic job.
pub const JOBS: &[Job] = &[EXPIRE, REPORT];

/// The units of the periodic jobs, started by their timers.
pub const TIMERS: &[&str] = &[EXPIRE.timer, REPORT.timer];

/// The daemon called `name`.
pub fn daemon(name: &str) -> Option<&'static Daemon> {
    DAEMONS.iter().find(|d| d.name == name)
}

/// The units that write into `mailboxes_dir`: the daemons', then the
/// periodic jobs'.
pub fn mailbox_writers() -> impl Iterator<Item = &'static str> {
    let daemons = DAEMONS
        .iter()
        .filter(|d| d.writes_mailboxes)
        .map(|d| d.unit);
    daemons.chain(JOBS.iter().filter(|j| j.writes_mailboxes).map(|j| j.unit))
}

impl Daemon {
    /// The port of its metrics endpoint for `metrics_listen` port `base`;
    /// `None` when it serves no metrics.
    pub fn metrics_port(&self, base: u16) -> Option<u16> {
        self.metrics_offset.map(|o| base.saturating_add(o))
    }

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
            // The transport also serves its socketmap.
            let more = match d.name {
                "transport" => format!(" --map-listen unix:{TRANSPORT_MAP_SOCKET}"),
                _ => String::new(),
            };
            assert_eq!(
                setting(unit, "ExecStart"),
                [format!(
                    "/usr/bin/chatmail {} --config /etc/chatmail/chatmail.ini --listen unix:{}{more}",
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
                // nginx's: the /mxdeliv location.
                None if d.group == "www-data" => {
                    assert_eq!(d.name, "mxdeliv");
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
    fn every_unit_may_write_mailboxes_as_the_table_says() {
        let writers: Vec<&str> = mailbox_writers().collect();
        assert_eq!(
            writers,
            [
                "chatmail-auth.service",
                "chatmail-lastlogin.service",
                "chatmail-metadata.service",
                "chatmail-expire.service",
            ]
        );
        for (name, unit) in files::UNITS.iter().filter(|(n, _)| n.ends_with(".service")) {
            let paths = setting(unit, "ReadWritePaths");
            assert_eq!(
                paths.contains(&"-/home/vmail/mail"),
                writers.contains(name),
                "{name}: ReadWritePaths={paths:?}"
            );
        }
    }

    #[test]
    fn every_job_has_its_service_and_timer() {
        for j in JOBS {
            let unit = files::unit(j.unit).unwrap_or_else(|| panic!("no unit {}", j.unit));
            let exec = setting(unit, "ExecStart");
            let prefix = format!(
                "/usr/bin/chatmail {} --config /etc/chatmail/chatmail.ini",
                j.name
            );
            assert!(
                exec.len() == 1 && exec[0].starts_with(&prefix),
                "{}: {exec:?}",
                j.unit
            );
            assert!(files::unit(j.timer).is_some(), "{}", j.timer);
            assert_eq!(j.timer.replace(".timer", ".service"), j.unit);
        }
        assert_eq!(TIMERS, JOBS.iter().map(|j| j.timer).collect::<Vec<_>>());
    }

    #[test]
    fn metrics_ports_are_consecutive_in_table_order() {
        let offsets: Vec<u16> = DAEMONS.iter().filter_map(|d| d.metrics_offset).collect();
        assert_eq!(offsets, (0..METRICS_PORTS).collect::<Vec<_>>());
        assert_eq!(METRICS_PORTS, 5);
        assert_eq!(daemon("milter").unwrap().metrics_port(9540), Some(9543));
        assert_eq!(daemon("transport").unwrap().metrics_port(9540), None);
    }

    /// `metrics_listen` in chatmail.ini must leave room for every port.
    #[test]
    fn the_config_leaves_room_for_every_metrics_port() {
        let parse = |port: u32| {
            chatmail_config::Config::parse(&format!(
                "[params]\nmail_domain = chat.example.org\n\
                 metrics_listen = inet:127.0.0.1:{port}\n"
            ))
            .map(|(c, _)| c.metrics_listen)
        };
        let last = u32::from(u16::MAX) - u32::from(METRICS_PORTS - 1);
        assert!(matches!(parse(last), Ok(Some(_))));
        assert!(parse(last + 1).is_err());
    }

    /// The shipped Prometheus configuration scrapes every daemon on its
    /// port for the `metrics_listen` its comment recommends, under the
    /// table's name.
    #[test]
    fn prometheus_scrapes_every_daemon_on_its_port() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../monitoring/prometheus.yml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let base: u16 = text
            .lines()
            .find_map(|l| l.split_once("metrics_listen = inet:127.0.0.1:"))
            .and_then(|(_, port)| port.trim().parse().ok())
            .expect("the comment naming metrics_listen");
        let words = ["no", "one", "two", "three", "four", "five", "six", "seven"];
        let others = words[usize::from(METRICS_PORTS - 1)];
        assert!(
            text.contains(&format!("that port and the {others} after it")),
            "the comment must count {others} more ports"
        );
        // The targets of job `chatmail`, each followed by its daemon label.
        let job = text
            .split("- job_name: ")
            .find(|j| j.starts_with("chatmail\n"))
            .expect("job chatmail");
        let mut scraped = Vec::new();
        let mut port = None;
        for line in job.lines().map(str::trim) {
            if let Some(target) = line.strip_prefix("- targets: [\"127.0.0.1:") {
                port = target
                    .strip_suffix("\"]")
                    .and_then(|p| p.parse::<u16>().ok());
                assert!(port.is_some(), "{line}");
            } else if let Some(name) = line.strip_prefix("daemon: ") {
                scraped.push((name.to_owned(), port.take().expect("a target")));
            }
        }
        let table: Vec<(String, u16)> = DAEMONS
            .iter()
            .filter_map(|d| Some((d.name.to_owned(), d.metrics_port(base)?)))
            .collect();
        assert_eq!(scraped, table);
    }

    #[test]
    fn nginx_names_no_daemon_socket() {
        for d in DAEMONS {
            assert!(!files::NGINX_TEMPLATE.contains(d.socket), "{}", d.socket);
            assert!(!files::NGINX_TEMPLATE.contains(d.unit), "{}", d.unit);
        }
        assert!(!files::NGINX_TEMPLATE.contains(".socket"));
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
