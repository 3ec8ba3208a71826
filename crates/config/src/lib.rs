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

mod ini;
mod value;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

pub use value::{PlainUnit, Size, SizeError, SizeNote};

use ini::Entry;
use value::{IntError, has_inline_comment, is_valid_domain, parse_bool, parse_ipv4, parse_uint};

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
/// Longest piece of a value or key quoted in a warning or error.
pub const MAX_SHOWN: usize = 120;

/// Keys chatmaild dropped, and why they are ignored here too.
const REMOVED_KEYS: &[(&str, &str)] = &[
    (
        "passthrough_senders",
        "chatmaild removed it in 2026 to close a way for unencrypted mail to pass; \
         no sender may send unencrypted mail",
    ),
    (
        "passthrough_recipients",
        "chatmaild removed it in 2026 to close a way for unencrypted mail to pass; \
         no recipient may be sent unencrypted mail",
    ),
];

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
/// Field names are the ini keys. Defaults are chatmaild's (docs/design.md lists them).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `mail_domain` as written: a host name, or a bare IPv4 address for an IP-only relay.
    /// See [`Config::address_domain`] for the domain part of addresses.
    pub mail_domain: String,
    /// Messages a user may send per minute (GCRA rate). Default 60.
    pub max_user_send_per_minute: u32,
    /// GCRA burst size. Default 10.
    pub max_user_send_burst_size: u32,
    /// Mailbox quota. Default `500M`; a plain number counts MiB, as in chatmaild.
    pub max_mailbox_size: Size,
    /// Concurrent IMAP connections (Dovecot's `imap` and `imap-login`
    /// process limits). Default 10000.
    pub max_imap_connections: u32,
    /// Concurrent SMTP connections on each of the submission ports (Postfix
    /// process limit); one client may use a fifth of them. Default 1000.
    pub max_smtp_connections: u32,
    /// Largest accepted message, bytes. Default 31457280.
    pub max_message_size: u64,
    /// Days after which every message is deleted. Default 20.
    pub delete_mails_after: u32,
    /// Days after which messages over 200 kB are deleted. Default 7.
    pub delete_large_after: u32,
    /// Days without login after which an address is deleted. Default 90.
    pub delete_inactive_users_after: u32,
    /// Shortest localpart of a new address. Default 9.
    pub username_min_length: usize,
    /// Longest localpart of a new address. Default 9.
    pub username_max_length: usize,
    /// Shortest password of a new address. Default 9.
    pub password_min_length: usize,
    /// No new accounts while the 1-minute load average is above this. Default 5.
    pub max_load_1m: f64,
    /// No new accounts while available memory is below this. Default `200M`; a plain
    /// number counts MiB, as in chatmaild.
    pub min_available_memory: Size,
    /// No new accounts while free disk space is below this. Default `1G`; a plain
    /// number counts MiB, as in chatmaild.
    pub min_free_disk_space: Size,
    /// Root of the per-address directories. Default `/home/vmail/mail/<mail_domain>` (the
    /// bare `mail_domain`, without brackets for an IPv4 relay).
    pub mailboxes_dir: PathBuf,
    /// Account creation is refused while this file exists. Default `/etc/chatmail-nocreate`.
    /// (Not a chatmaild key.)
    pub nocreate_file: PathBuf,
    /// The iroh relay URL announced to clients: `https://<mail_domain>` when the key is
    /// absent, the value when set, `None` when set to an empty value (clients then use
    /// their default relay).
    pub iroh_relay: Option<String>,
    /// Whether this host runs its own iroh relay: true exactly when `iroh_relay` is absent.
    pub enable_iroh_relay: bool,
    /// Socket of the TURN credentials service. Default `/run/chatmail-turn/turn.socket`.
    pub turn_socket_path: PathBuf,
    /// Notification gateway URL. Default `https://notifications.delta.chat/notify`.
    /// (Not a chatmaild key.)
    pub push_notification_url: String,
    /// Speak HTTP/2 without negotiation (h2c, "prior knowledge") to an
    /// `http://` gateway; otherwise cleartext gateways get HTTP/1.1 and
    /// `https://` ones whatever ALPN agrees on. Default false. (Not a
    /// chatmaild key.)
    pub push_notification_h2c: bool,
    /// JSON file served as METADATA `/shared/vendor/deltachat/appversions`.
    /// Default [`DEFAULT_APPVERSIONS_FILE`]. (Not a chatmaild key: chatmaild
    /// serves the copy inside its package.)
    pub appversions_file: PathBuf,
    /// File holding the TURN shared secret (coturn's `static-auth-secret`):
    /// when set, chatmail-metadata hands out time-limited TURN credentials
    /// itself instead of asking `turn_socket_path`. Default none. (Not a
    /// chatmaild key.)
    pub turn_secret_file: Option<PathBuf>,
    /// Always empty: chatmaild removed `passthrough_senders`, and the key is
    /// ignored with a [`Warning::RemovedKey`]. Kept so callers that still
    /// build an exception list get an empty one.
    pub passthrough_senders: Vec<String>,
    /// Always empty, as [`Config::passthrough_senders`].
    pub passthrough_recipients: Vec<String>,
    /// Custom web pages directory (used by the deploy tool). Default empty.
    pub www_folder: String,
    /// Default 10080.
    pub filtermail_smtp_port: u16,
    /// Default 10081.
    pub filtermail_smtp_port_incoming: u16,
    /// Default 10082.
    pub filtermail_http_port_incoming: u16,
    /// Default 10083.
    pub filtermail_lmtp_port_transport: u16,
    /// Default 10025.
    pub postfix_reinject_port: u16,
    /// Default 10026.
    pub postfix_reinject_port_incoming: u16,
    /// Where mtail listens; `None` = mtail not run.
    pub mtail_address: Option<String>,
    /// Default false.
    pub disable_ipv6: bool,
    /// ACME account e-mail. Default empty.
    pub acme_email: String,
    /// Dovecot IMAP raw logs. Default false.
    pub imap_rawlog: bool,
    /// IMAP COMPRESS. Default false.
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
    /// Default `/home/vmail/passdb.sqlite`.
    pub passdb_path: PathBuf,
    /// Base address of the daemons' metrics endpoints (`inet:IP:PORT`): auth
    /// serves `GET /metrics` on PORT, lastlogin on PORT+1, metadata PORT+2,
    /// milter PORT+3, policy PORT+4 (docs/metrics.md). Default none: no
    /// metrics. (Not a chatmaild key.)
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// DKIM selector: the key is published at `<selector>._domainkey.<mail_domain>`.
    /// Default `opendkim`, as chatmaild's deployment. (Not a chatmaild key.)
    pub dkim_selector: String,
    /// The DKIM private key (PEM, PKCS#1 or PKCS#8). Default
    /// `/etc/dkimkeys/opendkim.private`. (Not a chatmaild key.)
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

fn invalid(entry: &Entry, reason: impl fmt::Display) -> ConfigError {
    let mut reason = reason.to_string();
    if has_inline_comment(&entry.value) {
        reason.push_str(" ('#' and ';' do not start comments after a value)");
    }
    ConfigError::Invalid {
        key: entry.key.clone(),
        value: entry.value.clone(),
        reason,
    }
}

/// `metrics_listen`: empty or `[inet:]IP:PORT`, with room for the five
/// daemons' ports above PORT.
fn parse_metrics_listen(entry: &Entry) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let value = entry.value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let addr: std::net::SocketAddr = value
        .strip_prefix("inet:")
        .unwrap_or(value)
        .parse()
        .map_err(|_| invalid(entry, "not inet:IP:PORT (an IP address, not a host name)"))?;
    if addr.port() == 0 || addr.port() > u16::MAX - 4 {
        return Err(invalid(
            entry,
            "the port must be 1 to 65531 (the daemons use PORT to PORT+4)",
        ));
    }
    Ok(Some(addr))
}

/// The `[params]` entries, with the ones already consumed taken out.
struct Params {
    entries: Vec<Option<Entry>>,
    /// Every key asked for, in order: the keys this crate knows.
    asked: Vec<&'static str>,
}

impl Params {
    fn take(&mut self, key: &'static str) -> Option<Entry> {
        self.asked.push(key);
        self.entries
            .iter_mut()
            .find(|e| e.as_ref().is_some_and(|e| e.key == key))
            .and_then(Option::take)
    }

    fn remaining(self) -> impl Iterator<Item = Entry> {
        self.entries.into_iter().flatten()
    }
}

/// Reads the typed values and records warnings on the way.
struct Reader {
    params: Params,
    warnings: Vec<Warning>,
}

impl Reader {
    fn uint(&mut self, key: &'static str) -> Result<Option<u64>, ConfigError> {
        let Some(entry) = self.params.take(key) else {
            return Ok(None);
        };
        parse_uint(&entry.value)
            .map(Some)
            .map_err(|e| invalid(&entry, e))
    }

    fn u32(&mut self, key: &'static str, default: u32) -> Result<u32, ConfigError> {
        self.narrow(key, default)
    }

    fn usize(&mut self, key: &'static str, default: usize) -> Result<usize, ConfigError> {
        self.narrow(key, default)
    }

    fn narrow<T: TryFrom<u64>>(&mut self, key: &'static str, default: T) -> Result<T, ConfigError> {
        let Some(entry) = self.params.take(key) else {
            return Ok(default);
        };
        let n = parse_uint(&entry.value).map_err(|e| invalid(&entry, e))?;
        T::try_from(n).map_err(|_| invalid(&entry, IntError::TooLarge))
    }

    fn port(&mut self, key: &'static str, default: u16) -> Result<u16, ConfigError> {
        let Some(entry) = self.params.take(key) else {
            return Ok(default);
        };
        match parse_uint(&entry.value) {
            Ok(n @ 1..=65535) => Ok(u16::try_from(n).unwrap_or(default)),
            Ok(_) => Err(invalid(&entry, "not a port number (1 to 65535)")),
            Err(e) => Err(invalid(&entry, e)),
        }
    }

    fn size(
        &mut self,
        key: &'static str,
        default: &str,
        plain: PlainUnit,
    ) -> Result<Size, ConfigError> {
        match self.params.take(key) {
            None => Ok(Size::parse(default, plain).unwrap_or_else(|_| Size {
                bytes: 0,
                text: default.to_owned(),
            })),
            Some(entry) => {
                let (size, note) =
                    Size::parse_noted(&entry.value, plain).map_err(|e| invalid(&entry, e))?;
                if let Some(note) = note {
                    self.warnings.push(Warning::AmbiguousSize {
                        key: entry.key,
                        value: entry.value,
                        note,
                        bytes: size.bytes,
                    });
                }
                Ok(size)
            }
        }
    }

    fn boolean(&mut self, key: &'static str) -> bool {
        let Some(entry) = self.params.take(key) else {
            return false;
        };
        let (value, recognised) = parse_bool(&entry.value);
        if !recognised {
            self.warnings.push(Warning::NotABoolean {
                key: entry.key,
                value: entry.value,
            });
        }
        value
    }

    /// A free-text value; warns when it seems to carry an inline comment.
    fn text(&mut self, key: &'static str) -> Option<String> {
        let entry = self.params.take(key)?;
        if has_inline_comment(&entry.value) {
            self.warnings.push(Warning::InlineComment {
                key: entry.key.clone(),
                value: entry.value.clone(),
            });
        }
        Some(entry.value)
    }

    fn path(
        &mut self,
        key: &'static str,
        default: impl Into<PathBuf>,
    ) -> Result<PathBuf, ConfigError> {
        let Some(entry) = self.params.take(key) else {
            return Ok(default.into());
        };
        let value = entry.value.trim();
        if value.is_empty() {
            return Err(invalid(&entry, "must not be empty"));
        }
        if has_inline_comment(value) {
            return Err(invalid(&entry, "looks like a path followed by a comment"));
        }
        Ok(PathBuf::from(value))
    }

    /// Takes a key chatmaild removed, warning when it is set. It is not
    /// counted among the keys read (the shipped default has no line for it).
    fn removed(&mut self, key: &'static str, reason: &'static str) {
        let found = self
            .params
            .entries
            .iter_mut()
            .find(|e| e.as_ref().is_some_and(|e| e.key == key))
            .and_then(Option::take);
        if let Some(entry) = found {
            self.warnings.push(Warning::RemovedKey {
                key: entry.key,
                line: entry.line,
                reason,
            });
        }
    }

    /// A positive count.
    fn count(&mut self, key: &'static str, default: u32) -> Result<u32, ConfigError> {
        let Some(entry) = self.params.take(key) else {
            return Ok(default);
        };
        let n = parse_uint(&entry.value).map_err(|e| invalid(&entry, e))?;
        match u32::try_from(n) {
            Ok(0) => Err(invalid(&entry, "must be at least 1")),
            Ok(n) => Ok(n),
            Err(_) => Err(invalid(&entry, IntError::TooLarge)),
        }
    }

    fn risky(&mut self, key: &'static str, value: impl fmt::Display, reason: &'static str) {
        self.warnings.push(Warning::Risky {
            key: key.to_owned(),
            value: value.to_string(),
            reason,
        });
    }
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

    /// [`Config::parse`], also returning every key this crate reads (all of
    /// them, when the text parses).
    fn parse_keys(text: &str) -> Result<(Config, Vec<Warning>, Vec<&'static str>), ConfigError> {
        let sections = ini::parse(text)?;
        let mut warnings = Vec::new();
        let mut params = None;
        for section in sections {
            if section.name == "params" {
                params = Some(section.entries);
            } else {
                warnings.push(Warning::IgnoredSection {
                    name: section.name,
                    line: section.line,
                });
            }
        }
        let params = params.ok_or(ConfigError::MissingSection)?;
        let mut r = Reader {
            params: Params {
                entries: params.into_iter().map(Some).collect(),
                asked: Vec::new(),
            },
            warnings,
        };

        let domain_entry = r
            .params
            .take("mail_domain")
            .ok_or(ConfigError::MissingKey { key: "mail_domain" })?;
        if parse_ipv4(&domain_entry.value).is_none() && !is_valid_domain(&domain_entry.value) {
            return Err(invalid(
                &domain_entry,
                "not a valid domain name or IPv4 address",
            ));
        }
        let mut c = Config::with_defaults(&domain_entry.value);

        c.max_user_send_per_minute = r.u32("max_user_send_per_minute", 60)?;
        c.max_user_send_burst_size = r.u32("max_user_send_burst_size", 10)?;
        c.max_mailbox_size = r.size("max_mailbox_size", "500M", PlainUnit::Mebibytes)?;
        c.max_imap_connections = r.count("max_imap_connections", DEFAULT_MAX_IMAP_CONNECTIONS)?;
        c.max_smtp_connections = r.count("max_smtp_connections", DEFAULT_MAX_SMTP_CONNECTIONS)?;
        if c.max_smtp_connections < 5 {
            r.risky(
                "max_smtp_connections",
                c.max_smtp_connections,
                "a fifth of it is 0, which Postfix takes as no per-client connection limit",
            );
        }
        c.max_message_size = r.uint("max_message_size")?.unwrap_or(c.max_message_size);
        c.delete_mails_after = r.u32("delete_mails_after", 20)?;
        c.delete_large_after = r.u32("delete_large_after", 7)?;
        c.delete_inactive_users_after = r.u32("delete_inactive_users_after", 90)?;
        c.username_min_length = r.usize("username_min_length", 9)?;
        c.username_max_length = r.usize("username_max_length", 9)?;
        c.password_min_length = r.usize("password_min_length", 9)?;
        if c.password_min_length == 0 {
            r.risky(
                "password_min_length",
                0,
                "any password is accepted for a new account, even an empty one",
            );
        }
        if c.delete_mails_after == 0 {
            r.risky(
                "delete_mails_after",
                0,
                "the daily expiry deletes every message, however new",
            );
        }
        if let Some(entry) = r.params.take("max_load_1m") {
            c.max_load_1m = match entry.value.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => v,
                Ok(v) if v.is_finite() => return Err(invalid(&entry, "must not be negative")),
                _ => return Err(invalid(&entry, "not a number")),
            };
        }
        c.min_available_memory = r.size("min_available_memory", "200M", PlainUnit::Mebibytes)?;
        c.min_free_disk_space = r.size("min_free_disk_space", "1G", PlainUnit::Mebibytes)?;
        c.mailboxes_dir = r.path("mailboxes_dir", c.mailboxes_dir.clone())?;
        c.nocreate_file = r.path("nocreate_file", DEFAULT_NOCREATE_FILE)?;
        if let Some(relay) = r.text("iroh_relay") {
            let relay = relay.trim();
            c.iroh_relay = (!relay.is_empty()).then(|| relay.to_owned());
            c.enable_iroh_relay = false;
        }
        c.turn_socket_path = r.path("turn_socket_path", DEFAULT_TURN_SOCKET_PATH)?;
        c.turn_secret_file = r
            .text("turn_secret_file")
            .map(|p| PathBuf::from(p.trim()))
            .filter(|p| !p.as_os_str().is_empty());
        if let Some(entry) = r.params.take("push_notification_url") {
            let url = entry.value.trim();
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.contains(char::is_whitespace)
            {
                // The query may hold an API key: never echo it.
                let mut shown = entry.clone();
                if let Some(i) = shown.value.find(['?', '#']) {
                    shown.value.truncate(i);
                    shown.value.push_str("?<redacted>");
                }
                return Err(invalid(&shown, "not an http:// or https:// URL"));
            }
            c.push_notification_url = url.to_owned();
        }
        if let Some(entry) = r.params.take("metrics_listen") {
            c.metrics_listen = parse_metrics_listen(&entry)?;
        }
        c.push_notification_h2c = r.boolean("push_notification_h2c");
        c.appversions_file = r.path("appversions_file", DEFAULT_APPVERSIONS_FILE)?;
        for (key, reason) in REMOVED_KEYS {
            r.removed(key, reason);
        }
        c.www_folder = r.text("www_folder").unwrap_or_default();
        c.filtermail_smtp_port = r.port("filtermail_smtp_port", 10080)?;
        c.filtermail_smtp_port_incoming = r.port("filtermail_smtp_port_incoming", 10081)?;
        c.filtermail_http_port_incoming = r.port("filtermail_http_port_incoming", 10082)?;
        c.filtermail_lmtp_port_transport = r.port("filtermail_lmtp_port_transport", 10083)?;
        c.postfix_reinject_port = r.port("postfix_reinject_port", 10025)?;
        c.postfix_reinject_port_incoming = r.port("postfix_reinject_port_incoming", 10026)?;
        c.mtail_address = r.text("mtail_address");
        c.disable_ipv6 = r.boolean("disable_ipv6");
        c.acme_email = r.text("acme_email").unwrap_or_default();
        c.imap_rawlog = r.boolean("imap_rawlog");
        c.imap_compress = r.boolean("imap_compress");
        c.privacy_postal = r.text("privacy_postal");
        c.privacy_mail = r.text("privacy_mail");
        c.privacy_pdo = r.text("privacy_pdo");
        c.privacy_supervisor = r.text("privacy_supervisor");
        if let Some(entry) = r.params.take("tls_external_cert_and_key") {
            let parts: Vec<&str> = entry.value.split_whitespace().collect();
            match parts[..] {
                [] => {}
                [cert, key] => c.tls_external_cert_and_key = Some((cert.into(), key.into())),
                _ => {
                    return Err(invalid(
                        &entry,
                        "must be two space-separated paths: CERT_PATH KEY_PATH",
                    ));
                }
            }
        }
        c.passdb_path = r.path("passdb_path", c.passdb_path.clone())?;
        if let Some(entry) = r.params.take("dkim_selector") {
            let sel = entry.value.trim();
            if sel.is_empty()
                || sel.len() > 63
                || !sel
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(invalid(
                    &entry,
                    "not a DNS label (letters, digits, - and _)",
                ));
            }
            c.dkim_selector = sel.to_owned();
        }
        c.dkim_key_file = r.path("dkim_key_file", c.dkim_key_file.clone())?;
        if let Some(entry) = r.params.take("dns_resolver") {
            let v = entry.value.trim();
            if !v.is_empty() {
                c.dns_resolver = Some(
                    v.parse()
                        .map_err(|_| invalid(&entry, "not an IP:PORT address"))?,
                );
            }
        }

        if c.username_min_length > c.username_max_length {
            return Err(ConfigError::UsernameLengths {
                min: c.username_min_length,
                max: c.username_max_length,
            });
        }
        let Reader {
            mut params,
            mut warnings,
        } = r;
        let keys = std::mem::take(&mut params.asked);
        warnings.extend(params.remaining().map(|e| Warning::UnknownKey {
            key: e.key,
            line: e.line,
        }));
        Ok((c, warnings, keys))
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

    /// A config with every default, for tests of other crates. `mail_domain` is not
    /// validated. Only with the `testing` feature (turned on by dev-dependencies and the
    /// benchmarks), so the shipped binary cannot build a config that skipped validation.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests(mail_domain: &str, mailboxes_dir: &Path) -> Config {
        let mut c = Config::with_defaults(mail_domain);
        c.mailboxes_dir = mailboxes_dir.to_owned();
        c
    }

    fn with_defaults(mail_domain: &str) -> Config {
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
            mailboxes_dir: Path::new("/home/vmail/mail").join(mail_domain),
            nocreate_file: DEFAULT_NOCREATE_FILE.into(),
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

#[cfg(test)]
mod tests;
