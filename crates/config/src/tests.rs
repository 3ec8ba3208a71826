use super::*;
use crate::keys::REMOVED_KEYS;

const MI: u64 = 1024 * 1024;

fn parse_ok(text: &str) -> (Config, Vec<Warning>) {
    Config::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn with(extra: &str) -> String {
    format!("[params]\nmail_domain = chat.example.org\n{extra}\n")
}

fn error_text(text: &str) -> String {
    match Config::parse(text) {
        Ok(_) => panic!("{text:?} parsed"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_default() {
    let (c, warnings) = parse_ok("[params]\nmail_domain = chat.example.org\n");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.mail_domain, "chat.example.org");
    assert_eq!(c.address_domain(), "chat.example.org");
    assert_eq!(c.max_user_send_per_minute, 60);
    assert_eq!(c.max_user_send_burst_size, 10);
    assert_eq!(c.max_mailbox_size.bytes, 500 * MI);
    assert_eq!(c.max_mailbox_size.text, "500M");
    assert_eq!(c.max_message_size, 31_457_280);
    assert_eq!(c.delete_mails_after, 20);
    assert_eq!(c.delete_large_after, 7);
    assert_eq!(c.delete_inactive_users_after, 90);
    assert_eq!(c.username_min_length, 9);
    assert_eq!(c.username_max_length, 9);
    assert_eq!(c.password_min_length, 9);
    assert_eq!(c.max_load_1m, 5.0);
    assert_eq!(c.min_available_memory.bytes, 200 * MI);
    assert_eq!(c.min_available_memory.text, "200M");
    assert_eq!(c.min_free_disk_space.bytes, 1024 * MI);
    assert_eq!(c.min_free_disk_space.text, "1G");
    assert_eq!(
        c.mailboxes_dir,
        Path::new("/home/vmail/mail/chat.example.org")
    );
    assert_eq!(c.nocreate_file, Path::new("/etc/chatmail-nocreate"));
    assert_eq!(c.iroh_relay.as_deref(), Some("https://chat.example.org"));
    assert!(c.enable_iroh_relay);
    assert_eq!(
        c.turn_socket_path,
        Path::new("/run/chatmail-turn/turn.socket")
    );
    assert_eq!(
        c.push_notification_url,
        "https://notifications.delta.chat/notify"
    );
    assert!(c.passthrough_senders.is_empty());
    assert!(c.passthrough_recipients.is_empty());
    assert_eq!(c.www_folder, "");
    assert_eq!(c.filtermail_smtp_port, 10080);
    assert_eq!(c.filtermail_smtp_port_incoming, 10081);
    assert_eq!(c.filtermail_http_port_incoming, 10082);
    assert_eq!(c.filtermail_lmtp_port_transport, 10083);
    assert_eq!(c.postfix_reinject_port, 10025);
    assert_eq!(c.postfix_reinject_port_incoming, 10026);
    assert_eq!(c.mtail_address, None);
    assert!(!c.disable_ipv6);
    assert_eq!(c.acme_email, "");
    assert!(!c.imap_rawlog);
    assert!(!c.imap_compress);
    assert_eq!(c.privacy_postal, None);
    assert_eq!(c.privacy_mail, None);
    assert_eq!(c.privacy_pdo, None);
    assert_eq!(c.privacy_supervisor, None);
    assert_eq!(c.tls_external_cert_and_key, None);
    assert_eq!(c.passdb_path, Path::new("/home/vmail/passdb.sqlite"));
    assert_eq!(c.postfix_myhostname(), "chat.example.org");
    let tls = c.tls_cert();
    assert_eq!(tls.mode, TlsCertMode::Acme);
    assert_eq!(
        tls.cert_path,
        Path::new("/var/lib/acme/live/chat.example.org/fullchain")
    );
    assert_eq!(
        tls.key_path,
        Path::new("/var/lib/acme/live/chat.example.org/privkey")
    );
}

#[test]
fn for_tests_is_the_defaults_with_another_dir() {
    let (parsed, _) = parse_ok("[params]\nmail_domain = chat.example.org\n");
    let mut t = Config::for_tests("chat.example.org", Path::new("/tmp/x"));
    assert_eq!(t.mailboxes_dir, Path::new("/tmp/x"));
    t.mailboxes_dir = parsed.mailboxes_dir.clone();
    assert_eq!(t, parsed);
    let ip = Config::for_tests("127.0.0.1", Path::new("/tmp/x"));
    assert_eq!(ip.address_domain(), "[127.0.0.1]");
}

#[test]
fn ipv4_mail_domain() {
    let (c, _) = parse_ok("[params]\nmail_domain = 1.3.3.7\n");
    assert_eq!(c.mail_domain, "1.3.3.7");
    assert_eq!(c.address_domain(), "[1.3.3.7]");
    assert_eq!(c.ipv4_relay(), Some(Ipv4Addr::new(1, 3, 3, 7)));
    // chatmaild builds these from the bare address, without brackets.
    assert_eq!(c.mailboxes_dir, Path::new("/home/vmail/mail/1.3.3.7"));
    assert_eq!(c.iroh_relay.as_deref(), Some("https://1.3.3.7"));
    assert_eq!(c.postfix_myhostname(), "7.3.3.1.in-addr.arpa");
    assert_eq!(c.tls_cert().mode, TlsCertMode::SelfSigned);

    let (c, _) = parse_ok("[params]\nmail_domain = chat.example.org\n");
    assert_eq!(c.ipv4_relay(), None);
}

#[test]
fn underscore_domain_is_self_signed_unless_external() {
    let (c, _) = parse_ok("[params]\nmail_domain = _test.example.org\n");
    let tls = c.tls_cert();
    assert_eq!(tls.mode, TlsCertMode::SelfSigned);
    assert_eq!(tls.cert_path, Path::new("/etc/ssl/certs/mailserver.pem"));
    assert_eq!(tls.key_path, Path::new("/etc/ssl/private/mailserver.key"));

    let (c, _) = parse_ok(
        "[params]\nmail_domain = _test.example.org\n\
         tls_external_cert_and_key = /c/fullchain.pem   /c/privkey.pem\n",
    );
    let tls = c.tls_cert();
    assert_eq!(tls.mode, TlsCertMode::External);
    assert_eq!(tls.cert_path, Path::new("/c/fullchain.pem"));
    assert_eq!(tls.key_path, Path::new("/c/privkey.pem"));

    let (c, _) = parse_ok(&with("tls_external_cert_and_key ="));
    assert_eq!(c.tls_cert().mode, TlsCertMode::Acme);
}

#[test]
fn unknown_keys_and_sections_are_warnings() {
    let text = "[params]\nmail_domain = chat.example.org\nfoo = 1\ninvite_token = x\n\
                [privacy]\nbar = 2\n";
    let (_, warnings) = parse_ok(text);
    assert_eq!(
        warnings,
        vec![
            Warning::IgnoredSection {
                name: "privacy".into(),
                line: 5
            },
            Warning::UnknownKey {
                key: "foo".into(),
                line: 3
            },
            Warning::UnknownKey {
                key: "invite_token".into(),
                line: 4
            },
        ]
    );
    assert_eq!(
        warnings[1].to_string(),
        "line 3: unknown key \"foo\" in [params], ignored"
    );
    assert_eq!(
        warnings[0].to_string(),
        "line 5: section [privacy] is ignored (only [params] is read)"
    );
    // Keys are case-sensitive, as in iniconfig.
    let (c, warnings) = parse_ok(&with("Max_Message_Size = 5"));
    assert_eq!(c.max_message_size, 31_457_280);
    assert_eq!(
        warnings,
        vec![Warning::UnknownKey {
            key: "Max_Message_Size".into(),
            line: 3
        }]
    );
}

#[test]
fn booleans_take_only_true_as_true() {
    let (c, warnings) = parse_ok(&with("disable_ipv6 = True\nimap_rawlog = TRUE"));
    assert!(c.disable_ipv6 && c.imap_rawlog && !c.imap_compress);
    assert!(warnings.is_empty());
    let c = parse_ok(&with("")).0;
    assert!(c.deliver_over_https && c.accept_over_https);
    let (c, warnings) = parse_ok(&with(
        "deliver_over_https = false\naccept_over_https = False",
    ));
    assert!(
        !c.deliver_over_https && !c.accept_over_https,
        "{warnings:?}"
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let (c, warnings) = parse_ok(&with("disable_ipv6 = yes\nimap_compress = False"));
    assert!(!c.disable_ipv6 && !c.imap_compress);
    assert_eq!(
        warnings,
        vec![Warning::NotABoolean {
            key: "disable_ipv6".into(),
            value: "yes".into()
        }]
    );
    assert_eq!(
        warnings[0].to_string(),
        "disable_ipv6 = \"yes\": neither \"true\" nor \"false\", taken as false"
    );
}

#[test]
fn inline_comments_are_values() {
    let (c, warnings) = parse_ok(&with("privacy_mail = a@b.org # the boss"));
    assert_eq!(c.privacy_mail.as_deref(), Some("a@b.org # the boss"));
    assert_eq!(
        warnings,
        vec![Warning::InlineComment {
            key: "privacy_mail".into(),
            value: "a@b.org # the boss".into()
        }]
    );
    assert_eq!(
        error_text(&with("max_user_send_per_minute = 60 # per minute")),
        "max_user_send_per_minute = \"60 # per minute\": not a number \
         ('#' and ';' do not start comments after a value)"
    );
}

#[test]
fn invalid_values_name_key_value_and_reason() {
    let cases: &[(&str, &str)] = &[
        ("max_load_1m = abc", r#"max_load_1m = "abc": not a number"#),
        (
            "max_load_1m = -1",
            r#"max_load_1m = "-1": must not be negative"#,
        ),
        ("max_load_1m = nan", r#"max_load_1m = "nan": not a number"#),
        ("max_load_1m = inf", r#"max_load_1m = "inf": not a number"#),
        (
            "max_user_send_per_minute = x",
            r#"max_user_send_per_minute = "x": not a number"#,
        ),
        (
            "max_user_send_burst_size = -3",
            r#"max_user_send_burst_size = "-3": must not be negative"#,
        ),
        (
            "max_user_send_per_minute = 99999999999",
            r#"max_user_send_per_minute = "99999999999": too large"#,
        ),
        (
            "max_message_size = 30M",
            r#"max_message_size = "30M": not a number"#,
        ),
        (
            "max_mailbox_size = 1.5G",
            r#"max_mailbox_size = "1.5G": not a size (expected a whole number with an optional M or G suffix)"#,
        ),
        (
            "min_available_memory = lots",
            r#"min_available_memory = "lots": not a size (expected a whole number with an optional M or G suffix)"#,
        ),
        (
            "min_free_disk_space = 99999999999T",
            r#"min_free_disk_space = "99999999999T": too large"#,
        ),
        (
            "delete_mails_after = 20d",
            r#"delete_mails_after = "20d": not a number"#,
        ),
        (
            "delete_large_after = 7.5",
            r#"delete_large_after = "7.5": not a number"#,
        ),
        (
            "delete_inactive_users_after = never",
            r#"delete_inactive_users_after = "never": not a number"#,
        ),
        (
            "username_min_length = nine",
            r#"username_min_length = "nine": not a number"#,
        ),
        (
            "username_max_length = -9",
            r#"username_max_length = "-9": must not be negative"#,
        ),
        (
            "password_min_length = 9x",
            r#"password_min_length = "9x": not a number"#,
        ),
        (
            "filtermail_smtp_port = 70000",
            r#"filtermail_smtp_port = "70000": not a port number (1 to 65535)"#,
        ),
        (
            "postfix_reinject_port = 0",
            r#"postfix_reinject_port = "0": not a port number (1 to 65535)"#,
        ),
        (
            "filtermail_smtp_port_incoming = p",
            r#"filtermail_smtp_port_incoming = "p": not a number"#,
        ),
        (
            "filtermail_http_port_incoming = -1",
            r#"filtermail_http_port_incoming = "-1": must not be negative"#,
        ),
        (
            "filtermail_lmtp_port_transport = 1.0",
            r#"filtermail_lmtp_port_transport = "1.0": not a number"#,
        ),
        (
            "postfix_reinject_port_incoming = 65536",
            r#"postfix_reinject_port_incoming = "65536": not a port number (1 to 65535)"#,
        ),
        (
            "mailboxes_dir =",
            r#"mailboxes_dir = "": must not be empty"#,
        ),
        (
            "nocreate_file =",
            r#"nocreate_file = "": must not be empty"#,
        ),
        (
            "turn_socket_path =",
            r#"turn_socket_path = "": must not be empty"#,
        ),
        ("passdb_path =", r#"passdb_path = "": must not be empty"#),
        (
            "push_notification_url = notifications.delta.chat",
            r#"push_notification_url = "notifications.delta.chat": not an http:// or https:// URL"#,
        ),
        (
            "tls_external_cert_and_key = /only/one.pem",
            r#"tls_external_cert_and_key = "/only/one.pem": must be two space-separated paths: CERT_PATH KEY_PATH"#,
        ),
    ];
    for (line, expected) in cases {
        assert_eq!(error_text(&with(line)), *expected, "{line}");
    }
}

#[test]
fn structural_errors() {
    assert_eq!(
        error_text("[other]\nmail_domain = x.org\n"),
        "no [params] section"
    );
    assert_eq!(error_text(""), "no [params] section");
    assert_eq!(
        error_text("[params]\nmax_load_1m = 3\n"),
        "mail_domain is not set (it is required; `chatmail setup --domain DOMAIN` sets it)"
    );
    assert!(matches!(
        Config::parse("[params]\nmail_domain = x.org\nmail_domain = y.org\n"),
        Err(ConfigError::Syntax { line: 3, .. })
    ));
    assert_eq!(
        error_text("mail_domain = x.org\n"),
        "line 1: no section header defined"
    );
    assert_eq!(
        error_text("[params]\nmail_domain x.org\n"),
        "line 2: unexpected line: \"mail_domain x.org\""
    );
    assert_eq!(
        error_text("[params]\nmail_domain = exa mple.org\n"),
        r#"mail_domain = "exa mple.org": not a valid domain name or IPv4 address"#
    );
    assert_eq!(
        error_text("[params]\nmail_domain =\n"),
        r#"mail_domain = "": not a valid domain name or IPv4 address"#
    );
    assert_eq!(
        error_text(&with("username_min_length = 10\nusername_max_length = 8")),
        "username_min_length (10) is greater than username_max_length (8)"
    );
    let (c, _) = parse_ok(&with("username_min_length = 6\nusername_max_length = 20"));
    assert_eq!((c.username_min_length, c.username_max_length), (6, 20));
}

#[test]
fn load_reports_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.ini");
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    let text = err.to_string();
    assert_eq!(text, format!("cannot read {}", path.display()));
    let source = std::error::Error::source(&err).unwrap().to_string();
    assert!(source.contains("No such file"), "{source}");

    let path = dir.path().join("chatmail.ini");
    std::fs::write(&path, "[params]\nmail_domain = c.example.org\n").unwrap();
    let (c, warnings) = Config::load(&path).unwrap();
    assert_eq!(c.mail_domain, "c.example.org");
    assert!(warnings.is_empty());

    std::fs::write(&path, b"[params]\nmail_domain = \xff\n").unwrap();
    assert!(matches!(Config::load(&path), Err(ConfigError::Read { .. })));
}

#[test]
fn comments_blank_lines_and_continuations() {
    let text = "\n# leading comment\n; another\n[params] ; header comment\n\n\
                mail_domain = chat.example.org\n   # indented comment\n\n\
                iroh_relay =\n    https://iroh.example.org\n\
                privacy_postal =\n    Line 1\n    Line 2\n";
    let (c, warnings) = parse_ok(text);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(c.iroh_relay.as_deref(), Some("https://iroh.example.org"));
    assert_eq!(c.privacy_postal.as_deref(), Some("Line 1\nLine 2"));
}

#[test]
fn iroh_relay_absent_empty_or_set() {
    let (c, _) = parse_ok(&with("iroh_relay ="));
    assert_eq!(c.iroh_relay, None);
    assert!(!c.enable_iroh_relay);
    let (c, _) = parse_ok(&with("iroh_relay = https://iroh.example.net"));
    assert_eq!(c.iroh_relay.as_deref(), Some("https://iroh.example.net"));
    assert!(!c.enable_iroh_relay);
}

#[test]
fn turn_secret_file_is_optional() {
    let (c, w) = parse_ok(&with(""));
    assert_eq!(c.turn_secret_file, None);
    assert!(w.is_empty(), "{w:?}");
    let (c, w) = parse_ok(&with("turn_secret_file = /etc/chatmail/turn-secret"));
    assert_eq!(c.turn_secret_file, Some("/etc/chatmail/turn-secret".into()));
    assert!(w.is_empty(), "a known key: {w:?}");
    let (c, _) = parse_ok(&with("turn_secret_file ="));
    assert_eq!(c.turn_secret_file, None);
}

#[test]
fn sizes_and_overrides() {
    let (c, _) = parse_ok(&with(
        "max_mailbox_size = 256\nmin_available_memory = 4096M\nmin_free_disk_space = 100K\n\
         max_load_1m = 2.5\nmax_message_size = 10000\nmailboxes_dir = /srv/mail \n\
         nocreate_file = /run/nocreate\npush_notification_url = http://127.0.0.1:8080/notify\n\
         turn_socket_path = /tmp/turn.sock",
    ));
    // chatmaild's parse_size_mb reads a plain max_mailbox_size as MiB.
    assert_eq!(c.max_mailbox_size.bytes, 256 * MI);
    assert_eq!(c.max_mailbox_size.text, "256");
    assert_eq!(c.min_available_memory.bytes, 4096 * MI);
    assert_eq!(c.min_free_disk_space.bytes, 100 * 1024);
    assert_eq!(c.min_free_disk_space.to_string(), "100K");
    assert_eq!(c.max_load_1m, 2.5);
    assert_eq!(c.max_message_size, 10000);
    assert_eq!(c.mailboxes_dir, Path::new("/srv/mail"));
    assert_eq!(c.nocreate_file, Path::new("/run/nocreate"));
    assert_eq!(c.push_notification_url, "http://127.0.0.1:8080/notify");
    assert_eq!(c.turn_socket_path, Path::new("/tmp/turn.sock"));
}

/// chatmaild's `chatmail.ini.f` template as `cmdeploy init` writes it, with typical edits.
const REALISTIC: &str = "[params]

# mail domain (MUST be set to fully qualified chat mail domain)
mail_domain = chat.example.org

#
# If you only do private test deploys, you don't need to modify any settings below
#

#
# Restrictions on user addresses
#

# email sending rate per user and minute
max_user_send_per_minute = 60

# per-user max burst size for sending rate limiting (GCRA bucket capacity)
max_user_send_burst_size = 10

# maximum mailbox size of a chatmail address
max_mailbox_size = 500M

# maximum message size for an e-mail in bytes
max_message_size = 31457280

# days after which mails are unconditionally deleted
delete_mails_after = 20

# days after which large messages (>200k) are unconditionally deleted
delete_large_after = 7

# days after which users without a successful login are deleted (database and mails)
delete_inactive_users_after = 90

# minimum length a username must have
username_min_length = 9

# maximum length a username can have
username_max_length = 9

# minimum length a password must have
password_min_length = 9

# list of chatmail addresses which can send outbound un-encrypted mail
passthrough_senders =

# list of e-mail recipients for which to accept outbound un-encrypted mails
# (space-separated, item may start with \"@\" to whitelist whole recipient domains)
passthrough_recipients = echo@chat.example.org @nine.testrun.org

# path to www directory - documented here: https://chatmail.at/doc/relay/getting_started.html#custom-web-pages
#www_folder = www

#
# Deployment Details
#

# SMTP outgoing filtermail and reinjection 
filtermail_smtp_port = 10080
postfix_reinject_port = 10025

# SMTP incoming filtermail and reinjection 
filtermail_smtp_port_incoming = 10081
postfix_reinject_port_incoming = 10026

# if set to \"True\" IPv6 is disabled
disable_ipv6 = False

# Your email adress, which will be used in acmetool to manage Let's Encrypt SSL certificates
acme_email = 

# Defaults to https://iroh.{{mail_domain}} and running `iroh-relay` on the chatmail
# service.
# If you set it to anything else, the service will be disabled
# and users will be directed to use the given iroh relay URL.
# Set it to empty string if you want users to use their default iroh relay.
# iroh_relay =

# Address on which `mtail` listens,
# e.g. 127.0.0.1 or some private network
# address like 192.168.10.1.
# mtail_address = 127.0.0.1

#
# Debugging options 
#

# set to True if you want to track imap protocol execution
# in per-maildir \".in/.out\" files. 
imap_rawlog = false 


#
# Privacy Policy
#

# postal address of privacy contact
privacy_postal =
    Example e.V.
    Somestreet 1
    12345 Town

# email address of privacy contact
privacy_mail = privacy@example.org

# postal address of the privacy data officer
privacy_pdo =

# postal address of the privacy supervisor
privacy_supervisor =
";

#[test]
fn realistic_template() {
    let (c, warnings) = parse_ok(REALISTIC);
    // An older chatmaild's file: the exception lists it still had are
    // ignored, each with one warning saying why.
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    for (w, key) in warnings
        .iter()
        .zip(["passthrough_senders", "passthrough_recipients"])
    {
        assert!(
            matches!(w, Warning::RemovedKey { key: k, .. } if k == key),
            "{w:?}"
        );
        assert!(w.to_string().contains("unencrypted"), "{w}");
    }
    assert!(c.passthrough_recipients.is_empty() && c.passthrough_senders.is_empty());
    let mut expected = Config::for_tests(
        "chat.example.org",
        Path::new("/home/vmail/mail/chat.example.org"),
    );
    expected.privacy_postal = Some("Example e.V.\nSomestreet 1\n12345 Town".into());
    expected.privacy_mail = Some("privacy@example.org".into());
    expected.privacy_pdo = Some(String::new());
    expected.privacy_supervisor = Some(String::new());
    assert_eq!(c, expected);
}

/// Keys whose commented-out line in the shipped default shows an example
/// instead of the default: leaving them unset means something no value says.
const EXAMPLE_ONLY: &[&str] = &[
    "mail_domain",
    "tls_external_cert_and_key",
    "iroh_relay",
    "turn_secret_file",
    "privacy_postal",
    "privacy_mail",
    "privacy_pdo",
    "privacy_supervisor",
    "mtail_address",
    "metrics_listen",
];

/// The `#key = value` lines of the shipped default: (line index, key, value).
/// Prose comments start with `# `; a `#` followed by a letter is a key line.
fn default_ini_entries() -> Vec<(usize, &'static str, &'static str)> {
    DEFAULT_INI
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let rest = line.strip_prefix('#')?;
            rest.starts_with(|c: char| c.is_ascii_lowercase()).then(|| {
                let (key, value) = rest
                    .split_once('=')
                    .unwrap_or_else(|| panic!("line {}: {line:?} is not #key = value", i + 1));
                (i, key.trim(), value.trim())
            })
        })
        .collect()
}

/// The shipped default with the lines at `indexes` uncommented.
fn uncommented(indexes: &[usize]) -> String {
    DEFAULT_INI
        .lines()
        .enumerate()
        .map(|(i, line)| match indexes.contains(&i) {
            true => &line[1..],
            false => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shipped_default_ini_lacks_only_mail_domain() {
    assert!(
        matches!(
            Config::parse(DEFAULT_INI),
            Err(ConfigError::MissingKey { key: "mail_domain" })
        ),
        "{:?}",
        Config::parse(DEFAULT_INI)
    );
    let entries = default_ini_entries();
    let (domain_line, _, domain) = entries
        .iter()
        .find(|(_, key, _)| *key == "mail_domain")
        .copied()
        .expect("a #mail_domain line");
    assert_eq!(domain, "chat.example.org");
    let (config, warnings) = parse_ok(&uncommented(&[domain_line]));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(config, parse_ok(&with("")).0);
}

#[test]
fn shipped_default_ini_shows_every_key_with_its_default() {
    let (base, _, known) = Config::parse_keys(&with("")).unwrap();
    let entries = default_ini_entries();
    for key in &known {
        let n = entries.iter().filter(|(_, k, _)| k == key).count();
        assert_eq!(
            n, 1,
            "{key} is on {n} #key = value lines of packaging/chatmail.ini"
        );
    }
    for key in EXAMPLE_ONLY {
        assert!(known.contains(key), "{key} is not a key");
    }
    let domain_line = entries
        .iter()
        .find(|(_, k, _)| *k == "mail_domain")
        .unwrap()
        .0;
    for &(i, key, value) in &entries {
        let line = i + 1;
        assert!(
            known.contains(&key),
            "line {line}: {key} is not a key chatmail-config reads"
        );
        if key == "mail_domain" {
            continue;
        }
        let text = uncommented(&[domain_line, i]);
        let (config, warnings) =
            Config::parse(&text).unwrap_or_else(|e| panic!("line {line}: {key} = {value}: {e}"));
        assert!(warnings.is_empty(), "line {line}: {warnings:?}");
        if EXAMPLE_ONLY.contains(&key) {
            assert_ne!(
                config, base,
                "line {line}: the example {key} = {value} changes nothing"
            );
        } else {
            assert_eq!(
                config, base,
                "line {line}: {key} = {value} is not the default"
            );
        }
    }
}

#[test]
fn values_that_switch_a_protection_off_are_warned_about() {
    for (line, key) in [
        ("password_min_length = 0", "password_min_length"),
        ("delete_mails_after = 0", "delete_mails_after"),
        ("max_smtp_connections = 4", "max_smtp_connections"),
    ] {
        let (_, warnings) = parse_ok(&with(line));
        assert!(
            matches!(&warnings[..], [Warning::Risky { key: k, .. }] if k == key),
            "{line}: {warnings:?}"
        );
    }
    let (_, warnings) = parse_ok(&with(
        "password_min_length = 1\ndelete_mails_after = 1\nmax_smtp_connections = 5",
    ));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        error_text(&with("max_imap_connections = 0")),
        r#"max_imap_connections = "0": must be at least 1"#
    );
}

#[test]
fn removed_keys_are_ignored_with_the_reason() {
    let (c, warnings) = parse_ok(&with(
        "passthrough_senders = bot@chat.example.org\npassthrough_recipients = @x.org",
    ));
    assert!(c.passthrough_senders.is_empty() && c.passthrough_recipients.is_empty());
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(Warning::is_ignored_key));
    assert_eq!(
        warnings[0].to_string(),
        "line 3: passthrough_senders is ignored: chatmaild removed it in 2026 to close a way \
         for unencrypted mail to pass; no sender may send unencrypted mail"
    );
}

#[test]
fn huge_values_are_shown_cut_on_one_line() {
    let huge = "x".repeat(10_000_000);
    let text = error_text(&with(&format!("max_load_1m = {huge}")));
    assert!(text.len() < 300, "{} bytes", text.len());
    assert!(!text.contains('\n'));
    assert!(
        text.ends_with("... (10000000 bytes): not a number"),
        "{text}"
    );
    let text = error_text(&format!("[params]\n{huge}\n"));
    assert!(text.len() < 300 && text.starts_with("line 2: unexpected line: \"xxx"));
    let (_, warnings) = parse_ok(&with(&format!("{huge} = 1")));
    assert!(warnings[0].to_string().len() < 300);
}

#[test]
fn a_bad_push_url_is_shown_without_its_query() {
    assert_eq!(
        error_text(&with(
            "push_notification_url = gw.example/notify?key=SECRET"
        )),
        r#"push_notification_url = "gw.example/notify?<redacted>": not an http:// or https:// URL"#
    );
}

#[test]
fn shipped_default_ini_explains_every_removed_key() {
    for (key, _) in REMOVED_KEYS {
        let prose = DEFAULT_INI
            .lines()
            .any(|l| l.starts_with("# ") && l.contains(key));
        assert!(
            prose,
            "packaging/chatmail.ini does not say why {key} is ignored"
        );
        assert!(
            !DEFAULT_INI.contains(&format!("#{key} =")),
            "{key} must not look like a setting there"
        );
    }
}

#[test]
fn metrics_listen_is_an_ip_and_a_port_with_room_for_five() {
    let (c, _) = parse_ok(&with("metrics_listen = inet:127.0.0.1:9540\n"));
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9540".parse().unwrap()));
    let (c, _) = parse_ok(&with("metrics_listen = [::1]:9540\n"));
    assert_eq!(c.metrics_listen, Some("[::1]:9540".parse().unwrap()));
    let (c, _) = parse_ok(&with("metrics_listen =\n"));
    assert_eq!(c.metrics_listen, None);
    for bad in [
        "localhost:9540",
        "inet:127.0.0.1",
        "127.0.0.1:65532",
        "127.0.0.1:0",
    ] {
        let err = Config::parse(&with(&format!("metrics_listen = {bad}\n"))).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "metrics_listen"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn dkim_and_resolver_keys() {
    let (c, _) = parse_ok(&with(""));
    assert_eq!(c.dkim_selector, "opendkim");
    assert_eq!(c.dkim_key_file, Path::new("/etc/dkimkeys/opendkim.private"));
    assert_eq!(c.dns_resolver, None);
    let (c, w) = parse_ok(&with(
        "dkim_selector = s2026\ndkim_key_file = /k/dkim.pem\ndns_resolver = 127.0.0.1:5353\n",
    ));
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(c.dkim_selector, "s2026");
    assert_eq!(c.dkim_key_file, Path::new("/k/dkim.pem"));
    assert_eq!(c.dns_resolver, Some("127.0.0.1:5353".parse().unwrap()));
    for bad in [
        "dkim_selector = a.b",
        "dkim_selector = ",
        "dns_resolver = 127.0.0.1",
    ] {
        assert!(Config::parse(&with(bad)).is_err(), "{bad}");
    }
}
