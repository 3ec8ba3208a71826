//! Reads `chatmail.ini`, the relay's one config file, exactly as chatmaild does.
//!
//! Only the `[params]` section is read (see docs/design.md, "Compatibility contract"); every key
//! chatmaild knows is accepted with chatmaild's default, plus the keys only these helpers use
//! (`nocreate_file`, `push_notification_url`, `push_notification_h2c`, `appversions_file`,
//! `turn_secret_file`). Unknown keys, keys chatmaild removed, other sections and doubtful
//! values are reported as [`Warning`]s for the caller to log; values that cannot be used are a
//! [`ConfigError`] naming the key, the value and the reason. Values in messages are cut to
//! [`MAX_SHOWN`] characters, so a huge line is never echoed in full. Nothing is written.
//!
//! The INI dialect is that of Python's `iniconfig` (see the `ini` module): notably, `#`
//! after a value is part of the value, not a comment.

mod defaults;
mod ini;
mod keys;
mod value;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use defaults::{
    DEFAULT_APPVERSIONS_FILE, DEFAULT_MAX_IMAP_CONNECTIONS, DEFAULT_MAX_SMTP_CONNECTIONS,
    DEFAULT_NOCREATE_FILE, DEFAULT_PUSH_NOTIFICATION_URL, DEFAULT_TURN_SOCKET_PATH,
};
pub use value::{PlainUnit, Size, SizeError, SizeNote};

use value::parse_ipv4;

/// Longest piece of a value or key quoted in a warning or error.
pub const MAX_SHOWN: usize = 120;

/// What the quota step of expiry shrinks a mailbox to, in percent of
/// `max_mailbox_size` (docs/design.md, "Expiry"; chatmaild's `expire.py`):
/// the daily `chatmail expire`, and `chatmail quota-expire` when Dovecot's
/// 75 % quota warning runs it with the target the snippets render.
pub const QUOTA_CLEANUP_PERCENT: u64 = 70;

/// [`QUOTA_CLEANUP_PERCENT`] of `max_mailbox_size`, both in bytes.
pub fn quota_cleanup_target(max_mailbox_size: u64) -> u64 {
    u64::try_from(u128::from(max_mailbox_size) * u128::from(QUOTA_CLEANUP_PERCENT) / 100)
        .unwrap_or(u64::MAX)
}

/// `text` quoted for a message (`{:?}`, so on one line), cut to
/// [`MAX_SHOWN`] characters with the full length noted.
pub fn shown(text: &str) -> String {
    match text.char_indices().nth(MAX_SHOWN) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
    }
}

/// The commented default `chatmail.ini` the Debian package installs as
/// `/etc/chatmail/chatmail.ini` (`packaging/chatmail.ini`): every key with its
/// default on a commented-out `#key = value` line, and no `mail_domain`, so
/// parsing it as it is fails with [`ConfigError::MissingKey`] until
/// `chatmail setup --domain DOMAIN` fills that in.
pub const DEFAULT_INI: &str = include_str!("../../../packaging/chatmail.ini");

/// The parsed `[params]` section of `chatmail.ini`.
///
/// Field names are the ini keys. Defaults are chatmaild's (docs/design.md lists them), each
/// written once, in the `defaults` module; [`DEFAULT_INI`] shows them all.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `mail_domain` as written: a host name, or a bare IPv4 address for an IP-only relay.
    /// See [`Config::address_domain`] for the domain part of addresses.
    pub mail_domain: String,
    /// Messages a user may send per minute (GCRA rate).
    pub max_user_send_per_minute: u32,
    /// GCRA burst size.
    pub max_user_send_burst_size: u32,
    /// Mailbox quota; a plain number counts MiB, as in chatmaild.
    pub max_mailbox_size: Size,
    /// Concurrent IMAP connections (Dovecot's `imap` and `imap-login`
    /// process limits).
    pub max_imap_connections: u32,
    /// Concurrent SMTP connections on each of the submission ports (Postfix
    /// process limit); one client may use a fifth of them.
    pub max_smtp_connections: u32,
    /// Largest accepted message, bytes.
    pub max_message_size: u64,
    /// Days after which every message is deleted.
    pub delete_mails_after: u32,
    /// Days after which messages over 200 kB are deleted.
    pub delete_large_after: u32,
    /// Days without login after which an address is deleted.
    pub delete_inactive_users_after: u32,
    /// Shortest localpart of a new address.
    pub username_min_length: usize,
    /// Longest localpart of a new address.
    pub username_max_length: usize,
    /// Shortest password of a new address.
    pub password_min_length: usize,
    /// No new accounts while the 1-minute load average is above this.
    pub max_load_1m: f64,
    /// No new accounts while available memory is below this; a plain number
    /// counts MiB, as in chatmaild.
    pub min_available_memory: Size,
    /// No new accounts while free disk space is below this; a plain number
    /// counts MiB, as in chatmaild.
    pub min_free_disk_space: Size,
    /// Root of the per-address directories.
    pub mailboxes_dir: PathBuf,
    /// Account creation is refused while this file exists. (Not a
    /// chatmaild key.)
    pub nocreate_file: PathBuf,
    /// The iroh relay URL announced to clients: the value when set, `None` when set to an
    /// empty value (clients then use their default relay), this relay's own when absent.
    pub iroh_relay: Option<String>,
    /// Whether this host runs its own iroh relay: true exactly when `iroh_relay` is absent.
    pub enable_iroh_relay: bool,
    /// Socket of the TURN credentials service.
    pub turn_socket_path: PathBuf,
    /// Notification gateway URL. (Not a chatmaild key.)
    pub push_notification_url: String,
    /// Speak HTTP/2 without negotiation (h2c, "prior knowledge") to an
    /// `http://` gateway; otherwise cleartext gateways get HTTP/1.1 and
    /// `https://` ones whatever ALPN agrees on. (Not a chatmaild
    /// key.)
    pub push_notification_h2c: bool,
    /// JSON file served as METADATA `/shared/vendor/deltachat/appversions`.
    /// (Not a chatmaild key: chatmaild serves the copy inside its package.)
    pub appversions_file: PathBuf,
    /// File holding the TURN shared secret (coturn's `static-auth-secret`):
    /// when set, chatmail-metadata hands out time-limited TURN credentials
    /// itself instead of asking `turn_socket_path`. (Not a chatmaild
    /// key.)
    pub turn_secret_file: Option<PathBuf>,
    /// Always empty: chatmaild removed `passthrough_senders`, and the key is
    /// ignored with a [`Warning::RemovedKey`]. Kept so callers that still
    /// build an exception list get an empty one.
    pub passthrough_senders: Vec<String>,
    /// Always empty, as [`Config::passthrough_senders`].
    pub passthrough_recipients: Vec<String>,
    /// Custom web pages directory (used by the deploy tool).
    pub www_folder: String,
    /// A port of chatmaild's filtermail (chatmail-milter replaces it; read, unused).
    pub filtermail_smtp_port: u16,
    /// See [`Config::filtermail_smtp_port`].
    pub filtermail_smtp_port_incoming: u16,
    /// See [`Config::filtermail_smtp_port`].
    pub filtermail_http_port_incoming: u16,
    /// See [`Config::filtermail_smtp_port`].
    pub filtermail_lmtp_port_transport: u16,
    /// Where Postfix takes filtered mail back from filtermail (read, unused).
    pub postfix_reinject_port: u16,
    /// See [`Config::postfix_reinject_port`].
    pub postfix_reinject_port_incoming: u16,
    /// Where mtail listens; `None` = mtail not run.
    pub mtail_address: Option<String>,
    /// No IPv6 listeners (nginx listens on IPv4 only).
    pub disable_ipv6: bool,
    /// Mail to other relays goes over HTTPS (`POST /mxdeliv`) first, over
    /// SMTP only when that fails; `false`: SMTP only (still through
    /// `chatmail transport`, docs/design.md, "HTTPS transport").
    pub deliver_over_https: bool,
    /// Other relays may deliver over HTTPS to `/mxdeliv` (nginx passes it
    /// to `chatmail mxdeliv`); `false`: nginx serves no `/mxdeliv`.
    pub accept_over_https: bool,
    /// ACME account e-mail.
    pub acme_email: String,
    /// Dovecot IMAP raw logs.
    pub imap_rawlog: bool,
    /// IMAP COMPRESS.
    pub imap_compress: bool,
    /// Privacy policy contact data; `None` when absent (may span several lines).
    pub privacy_postal: Option<String>,
    /// See [`Config::privacy_postal`].
    pub privacy_mail: Option<String>,
    /// See [`Config::privacy_postal`].
    pub privacy_pdo: Option<String>,
    /// See [`Config::privacy_postal`].
    pub privacy_supervisor: Option<String>,
    /// Externally managed TLS certificate and key paths; `None` = derived (see
    /// [`Config::tls_cert`]).
    pub tls_external_cert_and_key: Option<(PathBuf, PathBuf)>,
    /// Old SQLite account database, only read by chatmaild's one-time migration.
    pub passdb_path: PathBuf,
    /// Base address of the daemons' metrics endpoints (`inet:IP:PORT`): auth
    /// serves `GET /metrics` on PORT, lastlogin on PORT+1, metadata PORT+2,
    /// milter PORT+3, policy PORT+4 (docs/metrics.md); `None`: no metrics.
    /// (Not a chatmaild key.)
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// DKIM selector: the key is published at `<selector>._domainkey.<mail_domain>`.
    /// (Not a chatmaild key.)
    pub dkim_selector: String,
    /// The DKIM private key (PEM, PKCS#1 or PKCS#8). (Not a chatmaild
    /// key.)
    pub dkim_key_file: PathBuf,
    /// The DNS resolver for DKIM and `chatmail doctor`, `IP:PORT`; `None` =
    /// the system's (`/etc/resolv.conf`). (Not a chatmaild key.)
    pub dns_resolver: Option<std::net::SocketAddr>,
    address_domain: String,
}

/// How the TLS certificate is obtained (chatmaild's `tls_cert_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsCertMode {
    /// Paths from `tls_external_cert_and_key`.
    External,
    /// Self-signed: `mail_domain` starts with `_` or is an IPv4 address.
    SelfSigned,
    /// Let's Encrypt via acmetool.
    Acme,
}

/// TLS certificate mode and file paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCert {
    /// Where the certificate comes from.
    pub mode: TlsCertMode,
    /// Certificate chain file.
    pub cert_path: PathBuf,
    /// Private key file.
    pub key_path: PathBuf,
}

/// Something in the file that is accepted but probably not what the operator meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A key in `[params]` that no component reads (it may belong to another tool).
    UnknownKey {
        /// The key as written.
        key: String,
        /// 1-based line number.
        line: usize,
    },
    /// A section other than `[params]`; its keys are not read.
    IgnoredSection {
        /// The section name.
        name: String,
        /// 1-based line number.
        line: usize,
    },
    /// A boolean that is neither `true` nor `false`; like chatmaild, it counts as false.
    NotABoolean {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
    },
    /// A value containing ` #` or ` ;`, which this dialect keeps as part of the value.
    InlineComment {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
    },
    /// A key chatmaild no longer knows and these helpers ignore on purpose.
    RemovedKey {
        /// The key.
        key: String,
        /// 1-based line number.
        line: usize,
        /// Why it is ignored.
        reason: &'static str,
    },
    /// A size that parsed but may not mean what the operator thinks.
    AmbiguousSize {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// How it was read.
        note: SizeNote,
        /// The bytes it was read as.
        bytes: u64,
    },
    /// A value that is valid but turns a protection off or destroys mail.
    Risky {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What it does.
        reason: &'static str,
    },
}

impl Warning {
    /// True for a key in `[params]` that nothing reads (unknown or removed).
    pub fn is_ignored_key(&self) -> bool {
        matches!(
            self,
            Warning::UnknownKey { .. } | Warning::RemovedKey { .. }
        )
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownKey { key, line } => {
                write!(
                    f,
                    "line {line}: unknown key {} in [params], ignored",
                    shown(key)
                )
            }
            Warning::RemovedKey { key, line, reason } => {
                write!(f, "line {line}: {key} is ignored: {reason}")
            }
            Warning::AmbiguousSize {
                key,
                value,
                note,
                bytes,
            } => write!(
                f,
                "{key} = {}: read as {} MiB ({bytes} bytes): {note}",
                shown(value),
                bytes >> 20
            ),
            Warning::Risky { key, value, reason } => {
                write!(f, "{key} = {}: {reason}", shown(value))
            }
            Warning::IgnoredSection { name, line } => write!(
                f,
                "line {line}: section [{}] is ignored (only [params] is read)",
                shown(name).trim_matches('"')
            ),
            Warning::NotABoolean { key, value } => write!(
                f,
                "{key} = {}: neither \"true\" nor \"false\", taken as false",
                shown(value)
            ),
            Warning::InlineComment { key, value } => write!(
                f,
                "{key} = {}: '#' and ';' only start comments at the beginning of a \
                 line; the whole text is the value",
                shown(value)
            ),
        }
    }
}

/// Why the config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read {}", path.display())]
    Read {
        /// The path given to [`Config::load`].
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid in chatmaild's INI dialect.
    #[error("line {line}: {message}")]
    Syntax {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// There is no `[params]` section.
    #[error("no [params] section")]
    MissingSection,
    /// A required key is missing.
    #[error("{key} is not set (it is required; `chatmail setup --domain DOMAIN` sets it)")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A value cannot be used.
    #[error("{key} = {}: {reason}", shown(value))]
    Invalid {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// `username_min_length` exceeds `username_max_length`.
    #[error("username_min_length ({min}) is greater than username_max_length ({max})")]
    UsernameLengths {
        /// `username_min_length`.
        min: usize,
        /// `username_max_length`.
        max: usize,
    },
}

impl Config {
    /// Reads and parses the config file at `path`.
    ///
    /// Returns the config and the warnings the caller should log.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] (with the path) when the file cannot be read or is not UTF-8;
    /// otherwise as [`Config::parse`].
    pub fn load(path: &Path) -> Result<(Config, Vec<Warning>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parses the text of a `chatmail.ini`.
    ///
    /// Returns the config and the warnings the caller should log.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Syntax`] for INI syntax errors, [`ConfigError::MissingSection`] without
    /// `[params]`, [`ConfigError::MissingKey`] without `mail_domain`,
    /// [`ConfigError::Invalid`] for a value that cannot be used, and
    /// [`ConfigError::UsernameLengths`] when the minimum exceeds the maximum.
    pub fn parse(text: &str) -> Result<(Config, Vec<Warning>), ConfigError> {
        Config::parse_keys(text).map(|(config, warnings, _keys)| (config, warnings))
    }

    /// The domain part of the relay's addresses: `mail_domain`, or `[a.b.c.d]` when
    /// `mail_domain` is an IPv4 address.
    pub fn address_domain(&self) -> &str {
        &self.address_domain
    }

    /// What Dovecot's `mail_server_admin` (IMAP METADATA `/shared/admin`,
    /// RFC 5464) is set to: `mailto:` and `privacy_mail`, as chatmaild's
    /// deploy renders it, when that is set to one line without blanks.
    pub fn server_admin(&self) -> Option<String> {
        let mail = self.privacy_mail.as_deref()?.trim();
        (!mail.is_empty() && !mail.contains(char::is_whitespace)).then(|| format!("mailto:{mail}"))
    }

    /// Postfix's `smtpd_client_connection_count_limit` on the submission
    /// ports: a fifth of `max_smtp_connections`, as chatmaild renders it.
    pub fn smtp_client_connection_limit(&self) -> u32 {
        self.max_smtp_connections / 5
    }

    /// The relay's IPv4 address when `mail_domain` is one.
    pub fn ipv4_relay(&self) -> Option<Ipv4Addr> {
        parse_ipv4(&self.mail_domain)
    }

    /// Postfix `myhostname`: `mail_domain`, or the reverse-DNS name
    /// (`d.c.b.a.in-addr.arpa`) of an IPv4 relay.
    pub fn postfix_myhostname(&self) -> String {
        match self.ipv4_relay() {
            Some(ip) => {
                let [a, b, c, d] = ip.octets();
                format!("{d}.{c}.{b}.{a}.in-addr.arpa")
            }
            None => self.mail_domain.clone(),
        }
    }

    /// Where the TLS certificate and key are, as chatmaild derives them.
    pub fn tls_cert(&self) -> TlsCert {
        if let Some((cert, key)) = &self.tls_external_cert_and_key {
            return TlsCert {
                mode: TlsCertMode::External,
                cert_path: cert.clone(),
                key_path: key.clone(),
            };
        }
        if self.mail_domain.starts_with('_') || self.ipv4_relay().is_some() {
            return TlsCert {
                mode: TlsCertMode::SelfSigned,
                cert_path: "/etc/ssl/certs/mailserver.pem".into(),
                key_path: "/etc/ssl/private/mailserver.key".into(),
            };
        }
        let live = Path::new("/var/lib/acme/live").join(&self.mail_domain);
        TlsCert {
            mode: TlsCertMode::Acme,
            cert_path: live.join("fullchain"),
            key_path: live.join("privkey"),
        }
    }
}

#[cfg(test)]
mod tests;
