//! The keys of `[params]`: which ones are read, how each value is checked,
//! and the warnings that come with them (chatmaild's semantics, see
//! docs/design.md, "Compatibility contract"). A key that is absent keeps the
//! value `Config::with_defaults` (module `defaults`) gave it: no default is
//! written here.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ini::{self, Entry};
use crate::value::{
    IntError, has_inline_comment, is_valid_domain, parse_bool, parse_ipv4, parse_uint,
};
use crate::{Config, ConfigError, PlainUnit, Size, Warning};

/// Keys chatmaild dropped, and why they are ignored here too.
pub(crate) const REMOVED_KEYS: &[(&str, &str)] = &[
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
        plain: PlainUnit,
        default: &Size,
    ) -> Result<Size, ConfigError> {
        match self.params.take(key) {
            None => Ok(default.clone()),
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

    fn boolean(&mut self, key: &'static str, default: bool) -> bool {
        let Some(entry) = self.params.take(key) else {
            return default;
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

    fn path(&mut self, key: &'static str, default: &Path) -> Result<PathBuf, ConfigError> {
        let Some(entry) = self.params.take(key) else {
            return Ok(default.to_owned());
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
    /// [`Config::parse`], also returning every key this crate reads (all of
    /// them, when the text parses). Each key absent from the text keeps its
    /// value from [`Config::with_defaults`].
    pub(crate) fn parse_keys(
        text: &str,
    ) -> Result<(Config, Vec<Warning>, Vec<&'static str>), ConfigError> {
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

        c.max_user_send_per_minute =
            r.u32("max_user_send_per_minute", c.max_user_send_per_minute)?;
        c.max_user_send_burst_size =
            r.u32("max_user_send_burst_size", c.max_user_send_burst_size)?;
        c.max_mailbox_size = r.size(
            "max_mailbox_size",
            PlainUnit::Mebibytes,
            &c.max_mailbox_size,
        )?;
        c.max_imap_connections = r.count("max_imap_connections", c.max_imap_connections)?;
        c.max_smtp_connections = r.count("max_smtp_connections", c.max_smtp_connections)?;
        if c.max_smtp_connections < 5 {
            r.risky(
                "max_smtp_connections",
                c.max_smtp_connections,
                "a fifth of it is 0, which Postfix takes as no per-client connection limit",
            );
        }
        c.max_message_size = r.uint("max_message_size")?.unwrap_or(c.max_message_size);
        c.delete_mails_after = r.u32("delete_mails_after", c.delete_mails_after)?;
        c.delete_large_after = r.u32("delete_large_after", c.delete_large_after)?;
        c.delete_inactive_users_after =
            r.u32("delete_inactive_users_after", c.delete_inactive_users_after)?;
        c.username_min_length = r.usize("username_min_length", c.username_min_length)?;
        c.username_max_length = r.usize("username_max_length", c.username_max_length)?;
        c.password_min_length = r.usize("password_min_length", c.password_min_length)?;
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
        c.min_available_memory = r.size(
            "min_available_memory",
            PlainUnit::Mebibytes,
            &c.min_available_memory,
        )?;
        c.min_free_disk_space = r.size(
            "min_free_disk_space",
            PlainUnit::Mebibytes,
            &c.min_free_disk_space,
        )?;
        c.mailboxes_dir = r.path("mailboxes_dir", &c.mailboxes_dir)?;
        c.nocreate_file = r.path("nocreate_file", &c.nocreate_file)?;
        if let Some(relay) = r.text("iroh_relay") {
            let relay = relay.trim();
            c.iroh_relay = (!relay.is_empty()).then(|| relay.to_owned());
            c.enable_iroh_relay = false;
        }
        c.turn_socket_path = r.path("turn_socket_path", &c.turn_socket_path)?;
        if let Some(p) = r.text("turn_secret_file") {
            c.turn_secret_file =
                Some(PathBuf::from(p.trim())).filter(|p| !p.as_os_str().is_empty());
        }
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
        c.push_notification_h2c = r.boolean("push_notification_h2c", c.push_notification_h2c);
        c.appversions_file = r.path("appversions_file", &c.appversions_file)?;
        for (key, reason) in REMOVED_KEYS {
            r.removed(key, reason);
        }
        if let Some(folder) = r.text("www_folder") {
            c.www_folder = folder;
        }
        c.filtermail_smtp_port = r.port("filtermail_smtp_port", c.filtermail_smtp_port)?;
        c.filtermail_smtp_port_incoming = r.port(
            "filtermail_smtp_port_incoming",
            c.filtermail_smtp_port_incoming,
        )?;
        c.filtermail_http_port_incoming = r.port(
            "filtermail_http_port_incoming",
            c.filtermail_http_port_incoming,
        )?;
        c.filtermail_lmtp_port_transport = r.port(
            "filtermail_lmtp_port_transport",
            c.filtermail_lmtp_port_transport,
        )?;
        c.postfix_reinject_port = r.port("postfix_reinject_port", c.postfix_reinject_port)?;
        c.postfix_reinject_port_incoming = r.port(
            "postfix_reinject_port_incoming",
            c.postfix_reinject_port_incoming,
        )?;
        if let Some(address) = r.text("mtail_address") {
            c.mtail_address = Some(address);
        }
        c.disable_ipv6 = r.boolean("disable_ipv6", c.disable_ipv6);
        c.deliver_over_https = r.boolean("deliver_over_https", c.deliver_over_https);
        c.accept_over_https = r.boolean("accept_over_https", c.accept_over_https);
        if let Some(email) = r.text("acme_email") {
            c.acme_email = email;
        }
        c.imap_rawlog = r.boolean("imap_rawlog", c.imap_rawlog);
        c.imap_compress = r.boolean("imap_compress", c.imap_compress);
        for (key, field) in [
            ("privacy_postal", &mut c.privacy_postal),
            ("privacy_mail", &mut c.privacy_mail),
            ("privacy_pdo", &mut c.privacy_pdo),
            ("privacy_supervisor", &mut c.privacy_supervisor),
        ] {
            if let Some(text) = r.text(key) {
                *field = Some(text);
            }
        }
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
        c.passdb_path = r.path("passdb_path", &c.passdb_path)?;
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
        c.dkim_key_file = r.path("dkim_key_file", &c.dkim_key_file)?;
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
}
