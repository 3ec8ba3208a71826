//! Every default of `chatmail.ini`, each written once: chatmaild's for its
//! keys, ours for the keys only these helpers read. The parser starts from
//! `Config::with_defaults` and overwrites what the file sets;
//! `packaging/chatmail.ini` ([`crate::DEFAULT_INI`]) shows every default,
//! and a test checks that it agrees with this module.

use std::path::Path;

use crate::value::parse_ipv4;
use crate::{Config, PlainUnit, Size};

/// Default path of the file whose existence stops account creation (chatmaild's
/// `NOCREATE_FILE`).
pub const DEFAULT_NOCREATE_FILE: &str = "/etc/chatmail-nocreate";
/// Default notification gateway (chatmaild's notifier posts here).
pub const DEFAULT_PUSH_NOTIFICATION_URL: &str = "https://notifications.delta.chat/notify";
/// Default socket of the TURN credentials service.
pub const DEFAULT_TURN_SOCKET_PATH: &str = "/run/chatmail-turn/turn.socket";
/// Default `appversions_file`: the list of Delta Chat releases the package
/// installs (`packaging/appversions.json`).
pub const DEFAULT_APPVERSIONS_FILE: &str = "/usr/share/chatmail-helpers/appversions.json";
/// chatmaild's default `max_imap_connections`.
pub const DEFAULT_MAX_IMAP_CONNECTIONS: u32 = 10_000;
/// chatmaild's default `max_smtp_connections`.
pub const DEFAULT_MAX_SMTP_CONNECTIONS: u32 = 1_000;

impl Config {
    /// A config with every default, for tests of other crates. `mail_domain` is not
    /// validated. Only with the `testing` feature (turned on by dev-dependencies and the
    /// benchmarks), so the shipped binary cannot build a config that skipped validation.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests(mail_domain: &str, mailboxes_dir: &Path) -> Config {
        let mut c = Config::with_defaults(mail_domain);
        c.mailboxes_dir = mailboxes_dir.to_owned();
        c
    }

    /// Every key at its default, for the relay `mail_domain` (some defaults
    /// are derived from it). The only place a default value is written.
    pub(crate) fn with_defaults(mail_domain: &str) -> Config {
        let size = |text: &str, plain| {
            Size::parse(text, plain).unwrap_or_else(|_| Size {
                bytes: 0,
                text: text.to_owned(),
            })
        };
        let address_domain = match parse_ipv4(mail_domain) {
            Some(_) => format!("[{mail_domain}]"),
            None => mail_domain.to_owned(),
        };
        Config {
            mail_domain: mail_domain.to_owned(),
            max_user_send_per_minute: 60,
            max_user_send_burst_size: 10,
            max_mailbox_size: size("500M", PlainUnit::Mebibytes),
            max_imap_connections: DEFAULT_MAX_IMAP_CONNECTIONS,
            max_smtp_connections: DEFAULT_MAX_SMTP_CONNECTIONS,
            max_message_size: 31_457_280,
            delete_mails_after: 20,
            delete_large_after: 7,
            delete_inactive_users_after: 90,
            username_min_length: 9,
            username_max_length: 9,
            password_min_length: 9,
            max_load_1m: 5.0,
            min_available_memory: size("200M", PlainUnit::Mebibytes),
            min_free_disk_space: size("1G", PlainUnit::Mebibytes),
            // The bare `mail_domain`, without brackets for an IPv4 relay.
            mailboxes_dir: Path::new("/home/vmail/mail").join(mail_domain),
            nocreate_file: DEFAULT_NOCREATE_FILE.into(),
            // This host's own relay, which it then runs.
            iroh_relay: Some(format!("https://{mail_domain}")),
            enable_iroh_relay: true,
            turn_socket_path: DEFAULT_TURN_SOCKET_PATH.into(),
            push_notification_url: DEFAULT_PUSH_NOTIFICATION_URL.to_owned(),
            push_notification_h2c: false,
            appversions_file: DEFAULT_APPVERSIONS_FILE.into(),
            turn_secret_file: None,
            passthrough_senders: Vec::new(),
            passthrough_recipients: Vec::new(),
            www_folder: String::new(),
            filtermail_smtp_port: 10080,
            filtermail_smtp_port_incoming: 10081,
            filtermail_http_port_incoming: 10082,
            filtermail_lmtp_port_transport: 10083,
            postfix_reinject_port: 10025,
            postfix_reinject_port_incoming: 10026,
            mtail_address: None,
            disable_ipv6: false,
            deliver_over_https: true,
            accept_over_https: true,
            acme_email: String::new(),
            imap_rawlog: false,
            imap_compress: false,
            privacy_postal: None,
            privacy_mail: None,
            privacy_pdo: None,
            privacy_supervisor: None,
            tls_external_cert_and_key: None,
            passdb_path: "/home/vmail/passdb.sqlite".into(),
            metrics_listen: None,
            dkim_selector: "opendkim".to_owned(),
            dkim_key_file: "/etc/dkimkeys/opendkim.private".into(),
            dns_resolver: None,
            address_domain,
        }
    }
}
