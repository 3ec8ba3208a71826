//! The machine's own configuration files, as `chatmail setup` writes them
//! and `chatmail doctor` reads them back: pure text transformations that
//! merge the shipped snippets (the same ones `chatmail sandbox` runs in a
//! private instance, see `chatmail_snippets::render`) into a stock Debian
//! Postfix and Dovecot configuration, with the values of the relay's
//! `chatmail.ini`, and the readers of the values in such files.
//!
//! Every function here is idempotent: applied to its own output it returns
//! that output unchanged, which is what makes a second `chatmail setup` a
//! no-op.

use std::path::{Path, PathBuf};

use chatmail_config::Config;
use chatmail_snippets::files as shipped;

/// Where the shipped snippets expect the relay's certificate.
pub const SNIPPET_CERT: &str = "/etc/ssl/certs/chatmail.pem";
/// Where the shipped snippets expect the relay's private key.
pub const SNIPPET_KEY: &str = "/etc/ssl/private/chatmail.key";
/// The Dovecot `conf.d` file `setup` owns.
pub const DOVECOT_CONF_D: &str = "/etc/dovecot/conf.d/90-chatmail.conf";
/// Postfix's queue directory on Debian; relative socket paths in `main.cf`
/// are relative to it.
pub const DEFAULT_QUEUE_DIRECTORY: &str = "/var/spool/postfix";

/// The certificate and key Postfix and Dovecot are pointed at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate (chain) file.
    pub cert: PathBuf,
    /// Private key file.
    pub key: PathBuf,
    /// True when `chatmail.ini` names them (`tls_external_cert_and_key`):
    /// someone else manages them and `setup` never creates them.
    pub external: bool,
}

impl TlsFiles {
    /// The operator's certificate from `chatmail.ini`, else the snippets'
    /// paths (where `setup` creates a self-signed one when none is there).
    pub fn for_config(config: &Config) -> TlsFiles {
        match &config.tls_external_cert_and_key {
            Some((cert, key)) => TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                external: true,
            },
            None => TlsFiles {
                cert: SNIPPET_CERT.into(),
                key: SNIPPET_KEY.into(),
                external: false,
            },
        }
    }
}

/// The settings of a `main.cf` text in file order, continuation lines joined
/// with single spaces; comments and blank lines are dropped.
pub fn parse_main_cf(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut in_setting = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            // Postfix ends a logical line at a comment or blank line.
            in_setting = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let (true, Some(last)) = (in_setting, out.last_mut()) {
                if !last.1.is_empty() {
                    last.1.push(' ');
                }
                last.1.push_str(trimmed);
            }
            continue;
        }
        in_setting = false;
        if let Some((k, v)) = line.split_once('=') {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
            in_setting = true;
        }
    }
    out
}

/// The value of `key` in a `main.cf` text (the last one wins, as in Postfix).
pub fn main_cf_value(text: &str, key: &str) -> Option<String> {
    parse_main_cf(text)
        .into_iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The `main.cf` settings of the shipped snippet with this relay's values:
/// host and domain names, the message size limit and the certificate.
pub fn main_cf_settings(config: &Config, tls: &TlsFiles) -> Vec<(String, String)> {
    let mut settings = vec![
        // Set first: the snippet's settings refer to $mydomain.
        ("myhostname".to_owned(), config.postfix_myhostname()),
        ("mydomain".to_owned(), config.address_domain().to_owned()),
    ];
    for (k, v) in parse_main_cf(shipped::POSTFIX_MAIN_CF) {
        let v = match k.as_str() {
            "message_size_limit" => config.max_message_size.to_string(),
            "smtpd_tls_cert_file" => tls.cert.display().to_string(),
            "smtpd_tls_key_file" => tls.key.display().to_string(),
            _ => v,
        };
        settings.push((k, v));
    }
    settings
}

/// `main.cf` with `settings` applied the way `postconf -e` does (in place,
/// or appended).
pub fn apply_main_cf_settings(existing: &str, settings: &[(String, String)]) -> String {
    let overrides: Vec<(&str, String)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let merged = chatmail_snippets::render::merge_main_cf(existing, &overrides);
    // `key = ` with an empty value would leave trailing blanks behind.
    let mut out = String::with_capacity(merged.len());
    for line in merged.lines() {
        out.push_str(if line.ends_with("= ") {
            line.trim_end()
        } else {
            line
        });
        out.push('\n');
    }
    out
}

/// One `master.cf` service: its first line and `-o` continuation lines.
struct Service<'a> {
    key: (&'a str, &'a str),
    comments: Vec<&'a str>,
    lines: Vec<&'a str>,
}

fn service_key(line: &str) -> Option<(&str, &str)> {
    if line.starts_with([' ', '\t', '#']) {
        return None;
    }
    let mut f = line.split_whitespace();
    Some((f.next()?, f.next()?))
}

fn shipped_services(text: &str) -> Vec<Service<'_>> {
    let mut out: Vec<Service<'_>> = Vec::new();
    let mut comments = Vec::new();
    let mut in_service = false;
    for line in text.lines() {
        if let Some(key) = service_key(line) {
            out.push(Service {
                key,
                comments: std::mem::take(&mut comments),
                lines: vec![line],
            });
            in_service = true;
        } else if line.trim().is_empty() {
            comments.clear();
            in_service = false;
        } else if line.trim_start().starts_with('#') {
            comments.push(line);
            in_service = false;
        } else if let (true, Some(s)) = (in_service, out.last_mut()) {
            s.lines.push(line);
        }
    }
    out
}

/// `master.cf` with the shipped services: a service already defined (the
/// stock `smtp inet` line, or ours from an earlier run) is replaced in
/// place with its continuation lines; the others are appended with their
/// explaining comments.
pub fn merge_master_cf(existing: &str, shipped_text: &str) -> String {
    let services = shipped_services(shipped_text);
    let mut done = vec![false; services.len()];
    let mut out = String::with_capacity(existing.len() + shipped_text.len());
    let mut skipping = false;
    for line in existing.lines() {
        let continuation = line.starts_with([' ', '\t']) && !line.trim().is_empty();
        if skipping && continuation && !line.trim_start().starts_with('#') {
            continue;
        }
        skipping = false;
        if let Some(i) = service_key(line).and_then(|k| services.iter().position(|s| s.key == k)) {
            if done[i] {
                // A duplicate would make Postfix refuse to start.
                skipping = true;
                continue;
            }
            for l in &services[i].lines {
                out.push_str(l);
                out.push('\n');
            }
            done[i] = true;
            skipping = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if done.iter().any(|d| !d) {
        out.push_str("\n# chatmail-helpers services (added by `chatmail setup`).\n");
    }
    for (s, _) in services.iter().zip(&done).filter(|(_, d)| !**d) {
        out.push('\n');
        for l in s.comments.iter().chain(&s.lines) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// A Dovecot size: whole MiB when exact, else KiB rounded up (a quota
/// limit must never end up below what `chatmail.ini` promises).
pub fn dovecot_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    if bytes.is_multiple_of(MIB) {
        format!("{}M", bytes / MIB)
    } else {
        format!("{}k", bytes.div_ceil(1024))
    }
}

/// The relay's `conf.d/90-chatmail.conf`: the shipped `chatmail.conf` with
/// the quota from `chatmail.ini` and the relay's certificate (Debian's
/// 10-ssl.conf points at its own snakeoil one; clients must see the same
/// certificate on IMAP as on SMTP).
pub fn dovecot_conf(config: &Config, tls: &TlsFiles) -> String {
    let quota = config.max_mailbox_size.bytes;
    // quota-expire trims a mailbox to 70 % of the quota (docs/design.md, "Expiry").
    let target_mib = chatmail_config::quota_cleanup_target(quota) / (1024 * 1024);
    let mut out = format!(
        "# Written by `chatmail setup` for {} from the shipped dovecot/chatmail.conf,\n\
         # with the values of /etc/chatmail/chatmail.ini: run it again after changing\n\
         # max_mailbox_size, max_message_size, max_imap_connections or privacy_mail,\n\
         # rather than editing this file.\n\n",
        config.mail_domain
    );
    let shipped = chatmail_snippets::render::dovecot_limits(shipped::DOVECOT_CONF, config);
    set_values(&mut out, &shipped, |key| match key {
        "quota_rule" => Some(format!("*:storage={}", dovecot_size(quota))),
        "quota_max_mail_size" => Some(dovecot_size(config.max_message_size)),
        "quota_warning" => Some(format!("storage=75%% quota-warning {target_mib} %h")),
        "ssl_cert" => Some(format!("<{}", tls.cert.display())),
        "ssl_key" => Some(format!("<{}", tls.key.display())),
        _ => None,
    });
    out
}

/// Appends `text` to `out` line by line, with the value of every
/// `key = value` line for which `value_of(key)` has one replaced.
fn set_values(out: &mut String, text: &str, value_of: impl Fn(&str) -> Option<String>) {
    for line in text.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let key = line.split('=').next().unwrap_or("").trim();
        match value_of(key) {
            Some(v) if line.contains('=') => out.push_str(&format!("{indent}{key} = {v}\n")),
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
}

/// The Dovecot 2.4 dialect of [`dovecot_conf`]: the shipped
/// `dovecot/2.4/chatmail.conf` with the quota from `chatmail.ini` and the
/// relay's certificate.
pub fn dovecot_24_conf(config: &Config, tls: &TlsFiles) -> String {
    let quota = config.max_mailbox_size.bytes;
    let target_mib = chatmail_config::quota_cleanup_target(quota) / (1024 * 1024);
    let mut out = format!(
        "# Written by `chatmail setup` for {} from the shipped dovecot/2.4/chatmail.conf,\n\
         # with the values of /etc/chatmail/chatmail.ini: run it again after changing\n\
         # max_mailbox_size or max_message_size, rather than editing this file.\n\n",
        config.mail_domain
    );
    let shipped = chatmail_snippets::render::dovecot_limits(shipped::DOVECOT_24_CONF, config);
    set_values(&mut out, &shipped, |key| match key {
        "quota_storage_size" => Some(dovecot_size(quota)),
        "quota_mail_size" => Some(dovecot_size(config.max_message_size)),
        "execute_args" => Some(format!("{target_mib} %{{home}}")),
        "ssl_server_cert_file" => Some(tls.cert.display().to_string()),
        "ssl_server_key_file" => Some(tls.key.display().to_string()),
        _ => None,
    });
    out
}

/// Whether a `dovecot.conf` is written for Dovecot 2.4: 2.4 refuses to
/// start without `dovecot_config_version`, and 2.3 does not know it.
pub fn dovecot_conf_is_24(dovecot_conf: &str) -> bool {
    dovecot_value(dovecot_conf, "dovecot_config_version").is_some()
}

/// `dovecot.conf` with an `!include` of our `conf.d` file appended, or
/// `None` when it already includes it (Debian's includes `conf.d/*.conf`).
pub fn dovecot_include(dovecot_conf: &str) -> Option<String> {
    let included = dovecot_conf.lines().any(|l| {
        let mut w = l.split_whitespace();
        matches!(w.next(), Some("!include" | "!include_try"))
            && w.next().is_some_and(|p| {
                let p = p.trim_start_matches("/etc/dovecot/");
                p == "conf.d/*.conf" || p == "conf.d/90-chatmail.conf"
            })
    });
    if included {
        return None;
    }
    let mut out = dovecot_conf.to_owned();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("\n# chatmail relay settings (added by `chatmail setup`).\n");
    out.push_str("!include conf.d/90-chatmail.conf\n");
    Some(out)
}

/// Debian's `conf.d/10-auth.conf` with its `!include auth-system.conf.ext`
/// commented out, or `None` when it is not active. Left in, PAM would be
/// asked before our Lua passdb, so every system account with a password
/// could log in over IMAP and SMTP.
pub fn disable_system_auth(auth_conf: &str) -> Option<String> {
    let active = |l: &str| {
        let mut w = l.split_whitespace();
        matches!(w.next(), Some("!include" | "!include_try"))
            && w.next()
                .is_some_and(|p| p.ends_with("auth-system.conf.ext"))
    };
    if !auth_conf.lines().any(active) {
        return None;
    }
    let mut out = String::with_capacity(auth_conf.len() + 64);
    for line in auth_conf.lines() {
        if active(line) {
            out.push_str(
                "# Disabled by `chatmail setup`: only chatmail accounts may log in.
#",
            );
        }
        out.push_str(line);
        out.push('\n');
    }
    Some(out)
}

/// A fresh `chatmail.ini` for `domain`: the package's commented default
/// ([`chatmail_config::DEFAULT_INI`]) with `mail_domain` set, so every other
/// key keeps its default and the file shows them all.
pub fn chatmail_ini(domain: &str) -> String {
    with_mail_domain(chatmail_config::DEFAULT_INI, domain)
}

/// `text`, a `chatmail.ini` whose `[params]` section has no `mail_domain`,
/// with `mail_domain = DOMAIN` in place of the first commented-out
/// `#mail_domain = ...` line of that section, or else right below its
/// header; every other line, comments included, stays as it is. A text
/// without a `[params]` header gets one at the end.
pub fn with_mail_domain(text: &str, domain: &str) -> String {
    let entry = format!("mail_domain = {domain}");
    let lines: Vec<&str> = text.lines().collect();
    // Section headers as the ini dialect reads them: `[name]` at the start
    // of a line, anything from `#` or `;` on dropped.
    let header = |line: &str| -> Option<String> {
        let cut = line.split(['#', ';']).next().unwrap_or_default().trim_end();
        (line.starts_with('[') && cut.len() >= 2 && cut.ends_with(']'))
            .then(|| cut[1..cut.len() - 1].to_owned())
    };
    let commented_domain = |line: &str| {
        line.trim_start()
            .strip_prefix(['#', ';'])
            .map(str::trim_start)
            .and_then(|rest| rest.strip_prefix("mail_domain"))
            .is_some_and(|rest| rest.trim_start().starts_with(['=', ':']))
    };
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    match lines
        .iter()
        .position(|l| header(l).as_deref() == Some("params"))
    {
        Some(start) => {
            let end = lines[start + 1..]
                .iter()
                .position(|l| header(l).is_some())
                .map_or(lines.len(), |n| start + 1 + n);
            match (start + 1..end).find(|&i| commented_domain(lines[i])) {
                Some(i) => out[i] = entry,
                None => out.insert(start + 1, entry),
            }
        }
        None => {
            out.push("[params]".to_owned());
            out.push(entry);
        }
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}

/// The `proxy:` socket path of a Dovecot dict URI (`proxy:PATH:NAME`).
pub fn dict_socket(uri: &str) -> Option<&Path> {
    let rest = uri.trim().strip_prefix("proxy:")?;
    let (path, _name) = rest.rsplit_once(':')?;
    Some(Path::new(path.trim_start_matches(':')))
}

/// The value of `key` in a Dovecot config text (last one wins; sections
/// are not told apart, which is enough for the keys we ship once).
pub fn dovecot_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .next_back()
}

/// The value of the first of `keys` inside the first `anchor { ... }` block
/// of a Dovecot 2.4 text (nested blocks included), or, with an empty anchor,
/// at any depth. Dovecot 2.4 names settings both ways: the snippet writes
/// `dict_proxy_socket_path` inside `mail_attribute { dict proxy { } }`,
/// `doveconf -n` prints it as `socket_path`.
pub fn dovecot_block_value(text: &str, anchor: &str, keys: &[&str]) -> Option<String> {
    let mut depth: Option<usize> = anchor.is_empty().then_some(1);
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') {
            continue;
        }
        match depth {
            None => {
                if t.strip_suffix('{').map(str::trim) == Some(anchor) {
                    depth = Some(1);
                }
            }
            Some(d) => {
                if t.ends_with('{') {
                    depth = Some(d + 1);
                } else if t == "}" {
                    if d == 1 && !anchor.is_empty() {
                        return None;
                    }
                    depth = Some(d.saturating_sub(1).max(1));
                } else if let Some((k, v)) = t.split_once('=')
                    && keys.contains(&k.trim())
                {
                    return Some(v.trim().to_owned());
                }
            }
        }
    }
    None
}

/// The script a Dovecot 2.3 Lua passdb/userdb runs: `file=` of its `args`.
pub fn lua_args_file(args: &str) -> Option<&str> {
    args.split_whitespace()
        .find_map(|a| a.strip_prefix("file="))
}

/// The socket `chatmail-auth.lua` connects to unless Dovecot 2.4 names
/// another: its `local socket_path = "..."` line.
pub fn lua_script_socket(script: &str) -> Option<&str> {
    script.lines().find_map(|l| {
        l.trim()
            .strip_prefix("local socket_path = \"")?
            .strip_suffix('"')
    })
}

/// Whether a Dovecot settings text (the 2.4 snippet as installed, or
/// `doveconf -n` of Dovecot 2.4) authenticates through the Lua passdb.
pub fn dovecot_uses_lua_passdb(text: &str) -> bool {
    text.lines().any(|l| l.trim() == "passdb lua {")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dovecot_23_lua_passdb_script_and_socket() {
        let args = dovecot_value(shipped::DOVECOT_CONF, "args").unwrap();
        assert_eq!(lua_args_file(&args), Some("/etc/dovecot/chatmail-auth.lua"));
        assert_eq!(
            lua_script_socket(shipped::DOVECOT_AUTH_LUA),
            Some("/run/chatmail-auth/auth.socket")
        );
        assert_eq!(lua_args_file("blocking=yes"), None);
    }

    #[test]
    fn dovecot_24_values_from_snippet_and_doveconf() {
        let snippet = shipped::DOVECOT_24_CONF;
        let doveconf = "ssl_server {\n  cert_file = /c.pem\n}\npassdb lua {\n  lua_file = /x\n  \
                        lua_settings {\n    socket = /run/a.socket\n  }\n}\n\
                        mail_attribute {\n  dict proxy {\n    name = metadata\n    \
                        socket_path = /run/m.socket\n  }\n}\n";
        let sock = ["dict_proxy_socket_path", "socket_path"];
        assert_eq!(
            dovecot_block_value(snippet, "mail_attribute", &sock).as_deref(),
            Some("/run/chatmail-metadata/metadata.socket")
        );
        assert_eq!(
            dovecot_block_value(snippet, "last_login", &sock).as_deref(),
            Some("/run/chatmail-lastlogin/lastlogin.socket")
        );
        assert_eq!(
            dovecot_block_value(snippet, "passdb lua", &["socket"]).as_deref(),
            Some("/run/chatmail-auth/auth.socket")
        );
        assert_eq!(
            dovecot_block_value(doveconf, "mail_attribute", &sock).as_deref(),
            Some("/run/m.socket")
        );
        assert_eq!(
            dovecot_block_value(doveconf, "passdb lua", &["socket"]).as_deref(),
            Some("/run/a.socket")
        );
        assert_eq!(
            dovecot_block_value(doveconf, "ssl_server", &["cert_file"]).as_deref(),
            Some("/c.pem")
        );
        assert_eq!(dovecot_block_value(doveconf, "last_login", &sock), None);
        assert!(dovecot_uses_lua_passdb(snippet) && dovecot_uses_lua_passdb(doveconf));
        assert!(!dovecot_uses_lua_passdb(shipped::DOVECOT_CONF));
    }

    #[test]
    fn dovecot_24_conf_follows_the_quota_and_the_certificate() {
        let (c, _) = Config::parse(
            "[params]\nmail_domain = x.org\nmax_mailbox_size = 100M\nmax_message_size = 1000\n",
        )
        .unwrap();
        let tls = TlsFiles {
            cert: "/c.pem".into(),
            key: "/k.pem".into(),
            external: true,
        };
        let out = dovecot_24_conf(&c, &tls);
        assert!(out.contains("\n  quota_storage_size = 100M\n"), "{out}");
        assert!(out.contains("\nquota_mail_size = 1k\n"));
        assert!(out.contains("\n      execute_args = 70 %{home}\n"));
        assert!(out.contains("\nssl_server_cert_file = /c.pem\n"));
        assert!(out.contains("\nssl_server_key_file = /k.pem\n"));
        assert!(out.contains("\npassdb lua {\n"));
        assert!(dovecot_conf_is_24(
            "dovecot_config_version = 2.4.0\n!include conf.d/*.conf\n"
        ));
        assert!(!dovecot_conf_is_24("!include conf.d/*.conf\n"));
    }

    #[test]
    fn mail_domain_goes_where_the_commented_line_was() {
        let text = "# top\n[params]\n# The domain.\n#mail_domain = chat.example.org\n\
                    #max_message_size = 31457280\n";
        assert_eq!(
            with_mail_domain(text, "x.org"),
            "# top\n[params]\n# The domain.\nmail_domain = x.org\n\
             #max_message_size = 31457280\n"
        );
        // Without a commented line: right below the header, other sections
        // and their commented keys left alone.
        let text = "[other]\n#mail_domain = a.org\n[params] # main\nmax_load_1m = 3\n";
        assert_eq!(
            with_mail_domain(text, "x.org"),
            "[other]\n#mail_domain = a.org\n[params] # main\nmail_domain = x.org\n\
             max_load_1m = 3\n"
        );
        assert_eq!(
            with_mail_domain("# x", "x.org"),
            "# x\n[params]\nmail_domain = x.org\n"
        );
    }

    #[test]
    fn a_fresh_chatmail_ini_is_the_shipped_default_with_the_domain() {
        let ini = chatmail_ini("x.org");
        let (config, warnings) = Config::parse(&ini).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            config,
            Config::parse("[params]\nmail_domain = x.org\n").unwrap().0
        );
        assert_eq!(
            ini.lines().count(),
            chatmail_config::DEFAULT_INI.lines().count()
        );
        assert_eq!(ini.matches("mail_domain = x.org\n").count(), 1);
        assert!(!ini.contains("#mail_domain"));
    }

    fn config() -> Config {
        Config::parse("[params]\nmail_domain = chat.example.org\n")
            .unwrap()
            .0
    }

    #[test]
    fn main_cf_settings_carry_the_snippet_and_the_relay() {
        let c = config();
        let s = main_cf_settings(&c, &TlsFiles::for_config(&c));
        let get = |k: &str| s.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        assert_eq!(get("myhostname"), Some("chat.example.org"));
        assert_eq!(get("mydomain"), Some("chat.example.org"));
        assert_eq!(get("mydestination"), Some(""));
        assert_eq!(get("smtpd_milters"), Some("unix:chatmail/milter.socket"));
        assert_eq!(
            get("smtpd_recipient_restrictions"),
            Some(
                "check_policy_service { unix:chatmail/policy.socket, timeout=10s, \
                 default_action=DEFER_IF_PERMIT }"
            )
        );
        assert_eq!(get("message_size_limit"), Some("31457280"));
    }

    #[test]
    fn main_cf_merge_is_idempotent_and_leaves_no_trailing_blanks() {
        let c = config();
        let s = main_cf_settings(&c, &TlsFiles::for_config(&c));
        let stock = "myhostname = debian\nmydestination = $myhostname, localhost\n\
                     smtpd_tls_cert_file=/etc/ssl/certs/ssl-cert-snakeoil.pem\n";
        let once = apply_main_cf_settings(stock, &s);
        assert_eq!(apply_main_cf_settings(&once, &s), once);
        assert!(once.contains("\nmydestination =\n"));
        assert!(once.starts_with("myhostname = chat.example.org\n"));
        assert!(once.contains("smtpd_tls_cert_file = /etc/ssl/certs/chatmail.pem\n"));
        assert!(!once.lines().any(|l| l.ends_with(' ')));
    }

    #[test]
    fn master_cf_replaces_smtp_and_appends_once() {
        let stock = "# comment\nsmtp      inet  n       -       y       -       -       smtpd\n\
                     #submission inet n - y - - smtpd\n#  -o syslog_name=postfix/submission\n\
                     pickup    unix  n       -       y       60      1       pickup\n\
                     relay     unix  -       -       y       -       -       smtp\n\
                     \x20       -o syslog_name=postfix/$service_name\n";
        let once = merge_master_cf(stock, shipped::POSTFIX_MASTER_CF);
        assert_eq!(merge_master_cf(&once, shipped::POSTFIX_MASTER_CF), once);
        assert_eq!(once.matches("\nsmtp       inet").count(), 1);
        assert!(once.contains(
            "smtp       inet  n       -       y       -       -       smtpd\n  \
             -o smtpd_tls_security_level=encrypt\n  -o smtpd_sasl_auth_enable=no\n#submission"
        ));
        assert_eq!(once.matches("\nsubmission inet").count(), 1);
        assert_eq!(once.matches("\nsubmissions inet").count(), 1);
        assert!(once.contains("-o syslog_name=postfix/$service_name\n"));
        assert!(once.contains("# Port 465: the same with implicit TLS.\nsubmissions inet"));
    }

    #[test]
    fn dovecot_conf_follows_the_connection_limit_and_admin() {
        let c = Config::parse(
            "[params]\nmail_domain = x.org\nmax_imap_connections = 777\n\
             privacy_mail = privacy@x.org\n",
        )
        .unwrap()
        .0;
        let out = dovecot_conf(&c, &TlsFiles::for_config(&c));
        assert_eq!(out.matches("  process_limit = 777\n").count(), 2, "{out}");
        assert!(out.contains("\nmail_server_admin = mailto:privacy@x.org\n"));
    }

    #[test]
    fn dovecot_conf_follows_the_quota() {
        let c = config();
        let tls = TlsFiles::for_config(&c);
        let out = dovecot_conf(&c, &tls);
        // The snippet's numbers are chatmaild's defaults.
        assert!(out.contains("  quota_rule = *:storage=500M\n"));
        assert!(out.contains("  quota_max_mail_size = 30M\n"));
        assert!(out.contains("  quota_warning = storage=75%% quota-warning 350 %h\n"));
        assert_eq!(
            out.matches("ssl_cert = </etc/ssl/certs/chatmail.pem\n")
                .count(),
            1
        );
        assert_eq!(out.matches("ssl_key = ").count(), 1);
        let external = TlsFiles {
            cert: "/etc/letsencrypt/live/x/fullchain.pem".into(),
            key: "/etc/letsencrypt/live/x/privkey.pem".into(),
            external: true,
        };
        let out = dovecot_conf(&c, &external);
        assert!(out.contains("\nssl_cert = </etc/letsencrypt/live/x/fullchain.pem\n"));
        assert!(out.contains("\nssl_key = </etc/letsencrypt/live/x/privkey.pem\n"));
        assert!(!out.contains("chatmail.pem"), "{out}");
        let c = Config::parse(
            "[params]\nmail_domain = x.org\nmax_mailbox_size = 1G\nmax_message_size = 1000000\n",
        )
        .unwrap()
        .0;
        let out = dovecot_conf(&c, &tls);
        assert!(out.contains("  quota_rule = *:storage=1024M\n"));
        assert!(out.contains("  quota_max_mail_size = 977k\n"));
        assert!(out.contains("  quota_warning = storage=75%% quota-warning 716 %h\n"));
    }

    #[test]
    fn dovecot_include_only_when_missing() {
        assert_eq!(dovecot_include("!include conf.d/*.conf\n"), None);
        let out = dovecot_include("protocols = imap").unwrap();
        assert!(out.ends_with("!include conf.d/90-chatmail.conf\n"));
        assert_eq!(dovecot_include(&out), None);
    }

    #[test]
    fn system_auth_is_disabled_once() {
        let stock =
            "auth_mechanisms = plain\n!include auth-system.conf.ext\n#!include auth-sql.conf.ext\n";
        let out = disable_system_auth(stock).unwrap();
        assert!(out.contains("\n#!include auth-system.conf.ext\n"), "{out}");
        assert_eq!(disable_system_auth(&out), None);
    }

    #[test]
    fn dict_socket_paths() {
        assert_eq!(
            dict_socket("proxy:/run/chatmail-auth/auth.socket:auth"),
            Some(Path::new("/run/chatmail-auth/auth.socket"))
        );
        assert_eq!(dict_socket("file:/x"), None);
    }
}
