//! The storage report, its Prometheus rendering, and the textfile.

#[path = "../../expire/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use chatmail_report::{ExpireError, LOGIN_BUCKET_DAYS, Report, report, write_textfile};
use common::{DAY, Tree, now};

fn known_tree() -> (Tree, Report) {
    let tree = Tree::new();
    let a = tree.mailbox("a");
    a.password(0);
    a.message("cur", DAY, 50_000);
    a.message("new", DAY, 200_000);
    a.message("cur", DAY, 600_000);
    tree.mailbox("b").password(5);
    tree.mailbox("b").message("tmp", DAY, 1_000);
    tree.mailbox("c").password(35);
    tree.mailbox("d").password(120);
    tree.mailbox("e").password(200);
    tree.mailbox("ci-x").password(0);
    let f = tree.mailbox("f");
    f.message("cur", DAY, (3 << 20) + 1);
    f.message(".DeltaChat/cur", DAY, 11 << 20);
    f.file("dovecot.index", &[0; 100]);
    fs::create_dir_all(tree.root.join("pending_notifications/cur")).unwrap();
    fs::write(tree.root.join("pending_notifications/cur/x"), [0; 5000]).unwrap();
    let report = report(&tree.config(), now()).unwrap();
    (tree, report)
}

#[test]
fn buckets_on_a_known_tree() {
    let (tree, r) = known_tree();
    assert_eq!(r.mailboxes, 7);
    assert_eq!(r.accounts, 6);
    assert_eq!(r.ci_accounts, 1);
    let logins: Vec<(u32, u64)> = r
        .login_buckets
        .iter()
        .map(|b| (b.days, b.accounts))
        .collect();
    assert_eq!(
        logins,
        [
            (1, 1),
            (10, 2),
            (30, 2),
            (40, 3),
            (80, 3),
            (100, 3),
            (150, 4)
        ]
    );
    let sizes: Vec<(u64, u64, u64)> = r
        .size_buckets
        .iter()
        .map(|b| (b.min_bytes, b.messages, b.bytes))
        .collect();
    let big = (3 << 20) + 1 + (11 << 20);
    assert_eq!(
        sizes,
        [
            (0, 6, 851_000 + big),
            (100 << 10, 4, 800_000 + big),
            (512 << 10, 3, 600_000 + big),
            (1 << 20, 2, big),
            (2 << 20, 2, big),
            (5 << 20, 1, 11 << 20),
            (10 << 20, 1, 11 << 20),
        ]
    );
    assert_eq!(r.messages, 6);
    assert_eq!(r.message_bytes, 851_000 + big);
    let password_len = fs::metadata(tree.root.join("a@example.org/password"))
        .unwrap()
        .len();
    assert_eq!(r.extra_bytes, 6 * password_len + 100);
    assert_eq!(r.errors, 0);

    let text = r.to_string();
    assert!(
        text.contains("Messages total size    : 15.5 MB in 6 messages"),
        "{text}"
    );
    assert!(
        text.contains("Login stats, relative to 2025-06-15 (UTC)"),
        "{text}"
    );
    assert!(text.contains("last 150 days:        4"), "{text}");
}

#[test]
fn unreadable_mailboxes_dir_is_an_error() {
    let tree = Tree::new();
    let config = chatmail_config::Config::for_tests("example.org", &tree.outside.join("nope"));
    assert!(matches!(
        report(&config, now()),
        Err(ExpireError::ReadDir { .. })
    ));
}

/// Checks the Prometheus text format 0.0.4 the way a strict parser would: each family's
/// HELP and TYPE come once, before its samples; names and labels are valid; values parse.
fn check_exposition(text: &str) -> Vec<(String, String, f64)> {
    assert!(text.ends_with('\n'));
    let valid_name = |n: &str| {
        let mut chars = n.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut seen_families = HashSet::new();
    let mut current: Option<String> = None;
    let mut typed = false;
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(valid_name(name) && !help.is_empty(), "{line}");
            assert!(
                seen_families.insert(name.to_owned()),
                "family {name} repeated"
            );
            current = Some(name.to_owned());
            typed = false;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(Some(name), current.as_deref(), "{line}");
            assert_eq!(kind, "gauge");
            typed = true;
        } else {
            assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap();
                    for pair in labels.split(',') {
                        let (k, v) = pair.split_once('=').unwrap();
                        assert!(valid_name(k) && !k.starts_with("__"), "{line}");
                        assert!(v.starts_with('"') && v.ends_with('"') && v.len() >= 2);
                    }
                    (name, labels.to_owned())
                }
                None => (series, String::new()),
            };
            assert_eq!(
                Some(name),
                current.as_deref(),
                "sample outside its family: {line}"
            );
            assert!(typed);
            assert!(name.starts_with("chatmail_"));
            samples.push((name.to_owned(), labels, value.parse::<f64>().unwrap()));
        }
    }
    samples
}

#[test]
fn prometheus_text_format() {
    let (_tree, r) = known_tree();
    let text = r.prometheus();
    let samples = check_exposition(&text);
    let get = |name: &str, labels: &str| {
        samples
            .iter()
            .find(|(n, l, _)| n == name && l == labels)
            .map(|s| s.2)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
    };
    assert_eq!(get("chatmail_mailboxes", ""), 7.0);
    assert_eq!(get("chatmail_accounts", ""), 6.0);
    assert_eq!(get("chatmail_ci_accounts", ""), 1.0);
    assert_eq!(get("chatmail_active_accounts", "days=\"40\""), 3.0);
    assert_eq!(get("chatmail_messages", "min_bytes=\"1048576\""), 2.0);
    assert_eq!(
        get("chatmail_message_bytes", "min_bytes=\"0\""),
        r.message_bytes as f64
    );
    assert_eq!(
        get("chatmail_report_timestamp_seconds", ""),
        1_750_004_800.0
    );
    assert_eq!(
        samples
            .iter()
            .filter(|s| s.0 == "chatmail_active_accounts")
            .count(),
        LOGIN_BUCKET_DAYS.len()
    );
}

#[test]
fn textfile_is_written_atomically_and_readable() {
    let (tree, r) = known_tree();
    let dir = tree.outside.join("textfiles");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("chatmail.prom"), "old").unwrap();
    write_textfile(&dir, &r).unwrap();
    let path = dir.join("chatmail.prom");
    assert_eq!(fs::read_to_string(&path).unwrap(), r.prometheus());
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o644
    );
    let names: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["chatmail.prom"], "no temp file left behind");
    assert!(write_textfile(&tree.outside.join("missing"), &r).is_err());
}
