//! The edits `chatmail setup` and `chatmail sandbox` both make to the
//! shipped Postfix and Dovecot snippets ([`crate::files`]): the connection
//! limits of `chatmail.ini`, `main.cf` overrides, and the relay's
//! self-signed certificate. What only a sandbox needs (its own
//! `dovecot.conf` and `master.cf`, moving paths into its state directory)
//! is in the sandbox crate.

use std::path::Path;

use chatmail_config::Config;

/// The names the relay's certificate covers: the domain, `mta-sts.` and
/// `www.` (the names nginx serves and `setup --acme` asks certbot for), as
/// `subjectAltName` entries; an IPv4 relay has its address only.
pub fn certificate_names(domain: &str) -> Vec<String> {
    match domain.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => vec![format!("IP:{ip}")],
        Err(_) => ["", "mta-sts.", "www."]
            .iter()
            .map(|prefix| format!("DNS:{prefix}{domain}"))
            .collect(),
    }
}

/// The `openssl` command that makes the relay's self-signed certificate
/// (chatmaild's self-signed mode: P-256, ten years, the domain as CN),
/// an end-entity certificate for a TLS server: not a CA, for digital
/// signatures and server authentication only, valid for
/// [`certificate_names`] plus `extra_san` such as `IP:127.0.0.1` (ignored
/// for an IPv4 relay). A client that is given it as its trust anchor (`curl
/// --cacert`, `chatmail doctor --ca-file`, Python's `ssl`) accepts it on
/// each of those names; webpki refuses a CA certificate as a server's.
pub fn self_signed_cert_command(
    domain: &str,
    extra_san: Option<&str>,
    key: &Path,
    cert: &Path,
) -> std::process::Command {
    let mut names = certificate_names(domain);
    if let Some(extra) = extra_san.filter(|_| domain.parse::<std::net::Ipv4Addr>().is_err()) {
        names.push(extra.to_owned());
    }
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:prime256v1")
        .args(["-nodes", "-days", "3650", "-subj"])
        .arg(format!("/CN={domain}"));
    // -addext replaces openssl.cnf's v3_ca basicConstraints (CA:TRUE).
    for ext in [
        format!("subjectAltName={}", names.join(",")),
        "basicConstraints=critical,CA:FALSE".to_owned(),
        "keyUsage=critical,digitalSignature".to_owned(),
        "extendedKeyUsage=serverAuth".to_owned(),
    ] {
        cmd.arg("-addext").arg(ext);
    }
    cmd.arg("-keyout").arg(key).arg("-out").arg(cert);
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

/// `line` with its `n`th (0-based) blank-separated field replaced by
/// `value`, every other character kept.
fn replace_field(line: &str, n: usize, value: &str) -> String {
    let mut start = None;
    let mut field = 0;
    let mut in_field = false;
    for (i, c) in line.char_indices() {
        if c.is_whitespace() {
            if in_field && field == n {
                return format!("{}{value}{}", &line[..start.unwrap_or(0)], &line[i..]);
            }
            if in_field {
                field += 1;
            }
            in_field = false;
        } else if !in_field {
            in_field = true;
            if field == n {
                start = Some(i);
            }
        }
    }
    match start {
        Some(s) if in_field && field == n => format!("{}{value}", &line[..s]),
        _ => line.to_owned(),
    }
}

/// The shipped `master.cf` with the connection limits of `chatmail.ini`,
/// as chatmaild's deploy renders them: `max_smtp_connections` as the
/// process limit (maxproc) of the submission services, a fifth of it as
/// their `smtpd_client_connection_count_limit`. The snippet holds
/// chatmaild's defaults; a test keeps them equal to the config crate's.
pub fn master_cf_limits(text: &str, config: &Config) -> String {
    let maxproc = config.max_smtp_connections.to_string();
    let per_client = config.smtp_client_connection_limit();
    let mut out = String::with_capacity(text.len());
    let mut in_submission = false;
    for line in text.lines() {
        let service = !line.starts_with([' ', '\t', '#']) && !line.trim().is_empty();
        if service {
            let mut f = line.split_whitespace();
            in_submission = matches!(
                (f.next(), f.next()),
                (Some("submission" | "submissions"), Some("inet"))
            );
        }
        let new = if service && in_submission {
            replace_field(line, 6, &maxproc)
        } else if in_submission
            && line
                .trim_start()
                .starts_with("-o smtpd_client_connection_count_limit=")
        {
            let indent = &line[..line.len() - line.trim_start().len()];
            format!("{indent}-o smtpd_client_connection_count_limit={per_client}")
        } else {
            line.to_owned()
        };
        out.push_str(&new);
        out.push('\n');
    }
    out
}

/// The shipped Dovecot settings with the relay's `chatmail.ini`:
/// `max_imap_connections` as the process limit of `imap` (as chatmaild
/// renders it) and of `imap-login` (every connection keeps its login
/// process, which holds the TLS session), `default_client_limit` raised to
/// twice that when the default is too low, and `mail_server_admin` (IMAP
/// METADATA `/shared/admin`) from `privacy_mail` when it is set.
pub fn dovecot_limits(text: &str, config: &Config) -> String {
    let limit = config.max_imap_connections;
    let mut out = String::with_capacity(text.len() + 256);
    let mut block: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        let indent = &line[..line.len() - line.trim_start().len()];
        if let Some(name) = trimmed
            .strip_prefix("service ")
            .and_then(|r| r.strip_suffix('{'))
        {
            block = Some(name.trim().to_owned());
        } else if trimmed == "}" && indent.is_empty() {
            block = None;
        }
        let key = trimmed.split('=').next().unwrap_or("").trim();
        let in_imap = matches!(block.as_deref(), Some("imap" | "imap-login"));
        if key == "process_limit" && in_imap && trimmed.contains('=') {
            out.push_str(&format!("{indent}process_limit = {limit}\n"));
        } else if key == "default_client_limit" && block.is_none() && trimmed.contains('=') {
            let shipped: u64 = trimmed
                .split('=')
                .nth(1)
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let needed = 2 * u64::from(limit);
            out.push_str(&format!("default_client_limit = {}\n", shipped.max(needed)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if let Some(admin) = config.server_admin() {
        out.push_str(&format!(
            "\n# privacy_mail of chatmail.ini, given to clients as IMAP METADATA\n\
             # /shared/admin (RFC 5464).\n\
             mail_server_admin = {}\n",
            admin.replace('%', "%%")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::*;

    fn config(extra: &str) -> Config {
        Config::parse(&format!(
            "[params]\nmail_domain = chat.example.org\n{extra}\n"
        ))
        .unwrap()
        .0
    }

    #[test]
    fn shipped_snippets_hold_chatmailds_default_limits() {
        let defaults = config("");
        assert_eq!(
            master_cf_limits(POSTFIX_MASTER_CF, &defaults),
            POSTFIX_MASTER_CF,
            "postfix/master.cf must show the defaults of max_smtp_connections"
        );
        assert_eq!(
            dovecot_limits(DOVECOT_CONF, &defaults),
            DOVECOT_CONF,
            "dovecot/chatmail.conf must show the defaults of max_imap_connections"
        );
    }

    #[test]
    fn connection_limits_follow_the_config() {
        let c = config("max_smtp_connections = 1500\nmax_imap_connections = 30000");
        let master = master_cf_limits(POSTFIX_MASTER_CF, &c);
        let services: Vec<&str> = master
            .lines()
            .filter(|l| l.starts_with("submission"))
            .collect();
        assert_eq!(services.len(), 2, "{master}");
        for s in services {
            assert_eq!(s.split_whitespace().nth(6), Some("1500"), "{s}");
        }
        assert_eq!(
            master
                .matches("\n  -o smtpd_client_connection_count_limit=300\n")
                .count(),
            2,
            "{master}"
        );
        assert!(!master.contains("smtpd_client_connection_count_limit=200"));
        // Port 25 keeps Postfix's defaults.
        assert!(
            master.contains("\nsmtp       inet  n       -       y       -       -       smtpd\n")
        );

        let dovecot = dovecot_limits(DOVECOT_CONF, &c);
        assert_eq!(
            dovecot.matches("  process_limit = 30000\n").count(),
            2,
            "{dovecot}"
        );
        assert!(dovecot.contains("\ndefault_client_limit = 60000\n"));
        assert!(!dovecot.contains("mail_server_admin"));

        let c = config("privacy_mail = privacy@example.org");
        let dovecot = dovecot_limits(DOVECOT_CONF, &c);
        assert!(dovecot.ends_with("\nmail_server_admin = mailto:privacy@example.org\n"));
        assert!(dovecot.contains("\ndefault_client_limit = 20000\n"));
    }

    #[test]
    fn fields_are_replaced_in_place() {
        assert_eq!(replace_field("a  b\tc -  d", 3, "99"), "a  b\tc 99  d");
        assert_eq!(replace_field("a b", 1, "x"), "a x");
        assert_eq!(replace_field("a b", 5, "x"), "a b");
    }

    #[test]
    fn merge_replaces_in_place_and_appends() {
        let text = "# c = comment\na = 1\nb = x,\n    y\nc = 3\n";
        let out = merge_main_cf(text, &[("b", "z".into()), ("d", "4".into())]);
        assert_eq!(out, "# c = comment\na = 1\nb = z\nc = 3\nd = 4\n");
    }

    /// The first value of a top-level-or-nested `key = value` line, in
    /// either dialect.
    fn value_of<'a>(text: &'a str, key: &str) -> Option<&'a str> {
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim())
            })
    }

    /// The values both dialects share, so a change cannot land in one and be
    /// forgotten in the other: (2.3 setting, 2.4 setting) must have equal
    /// values; the socket paths must appear in both.
    #[test]
    fn dialects_share_their_values() {
        for (v23, v24) in [
            ("auth_mechanisms", "auth_mechanisms"),
            ("auth_username_chars", "auth_username_chars"),
            ("auth_failure_delay", "auth_failure_delay"),
            ("protocols", "protocols"),
            ("first_valid_uid", "first_valid_uid"),
            ("mail_privileged_group", "mail_privileged_group"),
            ("quota_max_mail_size", "quota_mail_size"),
            ("default_client_limit", "default_client_limit"),
            ("process_limit", "process_limit"),
            ("process_min_avail", "process_min_avail"),
            ("service_count", "restart_request_count"),
            ("ssl", "ssl"),
            ("ssl_min_protocol", "ssl_min_protocol"),
            ("lmtp_save_to_detail_mailbox", "lmtp_save_to_detail_mailbox"),
            ("executable", "executable"),
            ("mode", "mode"),
        ] {
            let a = value_of(DOVECOT_CONF, v23).unwrap_or_else(|| panic!("2.3 {v23}"));
            let b = value_of(DOVECOT_24_CONF, v24).unwrap_or_else(|| panic!("2.4 {v24}"));
            assert_eq!(a, b, "2.3 {v23} vs 2.4 {v24}");
        }
        let quota23 = value_of(DOVECOT_CONF, "quota_rule").unwrap();
        let quota24 = value_of(DOVECOT_24_CONF, "quota_storage_size").unwrap();
        assert_eq!(quota23, format!("*:storage={quota24}"));
        let warn23 = value_of(DOVECOT_CONF, "quota_warning").unwrap();
        let args24 = value_of(DOVECOT_24_CONF, "execute_args").unwrap();
        let pct24 = value_of(DOVECOT_24_CONF, "quota_storage_percentage").unwrap();
        assert_eq!(
            warn23,
            format!(
                "storage={pct24}%% quota-warning {}",
                args24.replace("%{home}", "%h")
            )
        );
        let all = |text: &str, key: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .filter(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().to_owned())
                .collect()
        };
        assert_eq!(
            all(DOVECOT_CONF, "process_limit"),
            all(DOVECOT_24_CONF, "process_limit")
        );
        // Hibernation after 1 s on both (docs/latency.md); 2.4 must not offer
        // COMPRESS, under which no connection can hibernate (2.3 has no
        // COMPRESS without its imap_zlib plugin, which is never loaded).
        assert_eq!(value_of(DOVECOT_CONF, "imap_hibernate_timeout"), Some("1s"));
        assert_eq!(
            value_of(DOVECOT_24_CONF, "imap_hibernate_timeout"),
            Some("1s")
        );
        assert!(
            DOVECOT_24_CONF
                .lines()
                .any(|l| l.trim() == "\"COMPRESS=DEFLATE\" = no")
        );
        assert!(!DOVECOT_CONF.contains("zlib"));
        let ext = DOVECOT_AUTH_LUA;
        for path in [
            "/run/chatmail-auth/auth.socket",
            "/run/chatmail-metadata/metadata.socket",
            "/run/chatmail-lastlogin/lastlogin.socket",
            "/var/spool/postfix/private/dovecot-lmtp",
            "/var/spool/postfix/private/auth",
            "/etc/ssl/certs/chatmail.pem",
            "/etc/ssl/private/chatmail.key",
            "/usr/bin/chatmail quota-expire",
            "/etc/dovecot/chatmail-push.lua",
            "/etc/dovecot/chatmail-auth.lua",
        ] {
            assert!(
                DOVECOT_CONF.contains(path) || ext.contains(path),
                "2.3 lacks {path}"
            );
            assert!(DOVECOT_24_CONF.contains(path), "2.4 lacks {path}");
        }
    }

    /// The certificate openssl makes: an end-entity certificate for a TLS
    /// server on every name of the relay, which openssl itself verifies
    /// with the certificate as its only trust anchor.
    #[test]
    fn self_signed_certificate_is_a_server_certificate_for_every_name() {
        let dir = std::env::temp_dir().join(format!("chatmail-cert-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str], cert: &Path| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .arg(cert)
                .output()
                .expect("openssl");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        for (domain, extra, names) in [
            (
                "chat.example.org",
                None,
                "DNS:chat.example.org, DNS:mta-sts.chat.example.org, DNS:www.chat.example.org\n",
            ),
            (
                "chat.localhost",
                Some("IP:127.0.0.1"),
                "DNS:chat.localhost, DNS:mta-sts.chat.localhost, DNS:www.chat.localhost, \
                 IP Address:127.0.0.1\n",
            ),
            ("192.0.2.1", Some("IP:127.0.0.1"), "IP Address:192.0.2.1\n"),
        ] {
            let (cert, key) = (dir.join(format!("{domain}.pem")), dir.join("key.pem"));
            let out = self_signed_cert_command(domain, extra, &key, &cert)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let (ok, text) = openssl(
                &[
                    "x509",
                    "-noout",
                    "-ext",
                    "subjectAltName,basicConstraints,keyUsage,extendedKeyUsage",
                    "-in",
                ],
                &cert,
            );
            assert!(ok, "{text}");
            assert!(
                text.contains(&format!("Subject Alternative Name: \n    {names}")),
                "{text}"
            );
            assert!(
                text.contains("Basic Constraints: critical\n    CA:FALSE\n"),
                "{text}"
            );
            assert!(
                text.contains("Key Usage: critical\n    Digital Signature\n"),
                "{text}"
            );
            assert!(
                text.contains("Extended Key Usage: \n    TLS Web Server Authentication"),
                "{text}"
            );
            let ca = format!("{}", cert.display());
            let check = |name: &str| {
                let mut args = vec!["verify", "-CAfile", &ca, "-purpose", "sslserver"];
                let flag = if name.parse::<std::net::Ipv4Addr>().is_ok() {
                    "-verify_ip"
                } else {
                    "-verify_hostname"
                };
                args.extend([flag, name]);
                openssl(&args, &cert).0
            };
            for name in certificate_names(domain) {
                let name = name.split_once(':').unwrap().1.to_owned();
                assert!(check(&name), "{domain}: {name}");
            }
            assert!(!check(&format!("other.{domain}")), "{domain}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
