//! A `chatmail.ini` as chatmaild's deploy tool writes it (its template with
//! `mail_domain` filled in, the operator's overrides appended at the end),
//! with every key chatmaild reads set to a value other than its default:
//! each value we derive must be the one chatmaild derives.

use std::path::Path;

use chatmail_config::{Config, SizeNote, TlsCertMode, Warning};

const MI: u64 = 1024 * 1024;
const TEXT: &str = include_str!("data/chatmaild.ini");

#[test]
fn every_key_of_a_chatmaild_ini_is_read_as_chatmaild_reads_it() {
    let (c, warnings) = Config::parse(TEXT).unwrap();
    assert_eq!(c.mail_domain, "chat.example.org");
    assert_eq!(c.max_user_send_per_minute, 80);
    assert_eq!(c.max_user_send_burst_size, 20);
    assert_eq!(c.max_mailbox_size.bytes, 2048 * MI);
    assert_eq!(c.max_mailbox_size.mebibytes(), 2048);
    assert_eq!(c.max_message_size, 41_943_040);
    assert_eq!(c.delete_mails_after, 30);
    assert_eq!(c.delete_large_after, 10);
    assert_eq!(c.delete_inactive_users_after, 120);
    assert_eq!(c.username_min_length, 10);
    assert_eq!(c.username_max_length, 12);
    assert_eq!(c.password_min_length, 12);
    assert_eq!(c.max_load_1m, 8.5);
    // parse_size_mb: a bare number is megabytes, "2GB" is 2048 of them.
    assert_eq!(c.min_available_memory.mebibytes(), 300);
    assert_eq!(c.min_available_memory.bytes, 300 * MI);
    assert_eq!(c.min_free_disk_space.mebibytes(), 2048);
    assert_eq!(c.max_imap_connections, 20_000);
    assert_eq!(c.max_smtp_connections, 1500);
    assert_eq!(c.smtp_client_connection_limit(), 300);
    let tls = c.tls_cert();
    assert_eq!(tls.mode, TlsCertMode::External);
    assert_eq!(tls.cert_path, Path::new("/etc/tls/fullchain.pem"));
    assert_eq!(tls.key_path, Path::new("/etc/tls/privkey.pem"));
    assert_eq!(c.www_folder, "/srv/www");
    assert!(c.disable_ipv6);
    assert_eq!(c.acme_email, "admin@example.org");
    assert_eq!(c.iroh_relay.as_deref(), Some("https://iroh.example.org"));
    assert!(!c.enable_iroh_relay);
    assert_eq!(c.mtail_address.as_deref(), Some("127.0.0.1"));
    assert!(c.imap_rawlog);
    assert!(c.imap_compress);
    assert_eq!(c.privacy_postal.as_deref(), Some(""));
    assert_eq!(c.privacy_mail.as_deref(), Some("privacy@example.org"));
    assert_eq!(c.privacy_pdo.as_deref(), Some(""));
    assert_eq!(c.privacy_supervisor.as_deref(), Some(""));
    assert_eq!(
        c.server_admin().as_deref(),
        Some("mailto:privacy@example.org")
    );
    assert_eq!(c.mailboxes_dir, Path::new("/srv/vmail/chat.example.org"));
    assert_eq!(c.passdb_path, Path::new("/srv/vmail/passdb.sqlite"));
    assert_eq!(c.filtermail_smtp_port, 11080);
    assert_eq!(c.filtermail_smtp_port_incoming, 11081);
    assert_eq!(c.filtermail_http_port_incoming, 11082);
    assert_eq!(c.filtermail_lmtp_port_transport, 11083);
    assert_eq!(c.postfix_reinject_port, 11025);
    assert_eq!(c.postfix_reinject_port_incoming, 11026);
    // Only the bare number is worth a word: every key is known.
    assert_eq!(
        warnings,
        [Warning::AmbiguousSize {
            key: "min_available_memory".into(),
            value: "300".into(),
            note: SizeNote::PlainMegabytes,
            bytes: 300 * MI,
        }]
    );
}

#[test]
fn the_template_as_rendered_gives_chatmailds_defaults() {
    // The file before the overrides were appended.
    let end = TEXT.find("\nmax_user_send_per_minute = 80").unwrap();
    let (c, warnings) = Config::parse(&TEXT[..end]).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let mut expected = Config::for_tests(
        "chat.example.org",
        Path::new("/home/vmail/mail/chat.example.org"),
    );
    expected.privacy_postal = Some(String::new());
    expected.privacy_mail = Some("privacy@example.org".into());
    expected.privacy_pdo = Some(String::new());
    expected.privacy_supervisor = Some(String::new());
    assert_eq!(c, expected);
    assert_eq!(c.max_imap_connections, 10_000);
    assert_eq!(c.max_smtp_connections, 1000);
    assert_eq!(c.smtp_client_connection_limit(), 200);
    assert_eq!(c.min_available_memory.mebibytes(), 200);
    assert_eq!(c.min_free_disk_space.mebibytes(), 1024);
    // Each commented-out default, switched on, changes nothing.
    for (i, line) in TEXT[..end].lines().enumerate() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        if !rest.starts_with(|ch: char| ch.is_ascii_lowercase()) {
            continue;
        }
        let text: String = TEXT[..end]
            .lines()
            .enumerate()
            .map(|(j, l)| if j == i { &l[1..] } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        let (c, warnings) = Config::parse(&text).unwrap_or_else(|e| panic!("{rest}: {e}"));
        assert!(warnings.is_empty(), "{rest}: {warnings:?}");
        if rest.starts_with("www_folder") {
            // An example there: the default is no folder.
            assert_eq!(c.www_folder, "www");
            continue;
        }
        let same = c == expected;
        assert!(same, "{rest} is not chatmaild's default here");
    }
}

#[test]
fn an_empty_privacy_mail_advertises_no_admin() {
    let end = TEXT.find("\nmax_user_send_per_minute = 80").unwrap();
    let text = TEXT[..end].replace("privacy_mail = privacy@example.org", "privacy_mail =");
    let (c, _) = Config::parse(&text).unwrap();
    assert_eq!(c.server_admin(), None);
}
