//! The daily expiry and quota expiry on synthetic trees.

mod common;

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::symlink;

use chatmail_config::Config;
use chatmail_expire::{ExpireError, ExpireOptions, ExpireSummary, expire, quota_expire, synthetic};
use common::{DAY, HOUR, Tree, ago, exists, now, set_mtime};

fn opts(remove: bool) -> ExpireOptions {
    ExpireOptions {
        remove,
        verbose: false,
        days_offset: 0,
        max_mailboxes: None,
        now: now(),
    }
}

fn run(config: &Config, opts: &ExpireOptions) -> (ExpireSummary, String) {
    let mut out = Vec::new();
    let summary = expire(config, opts, &mut out).unwrap();
    (summary, String::from_utf8(out).unwrap())
}

#[test]
fn old_mail_goes_in_every_folder_and_nothing_else() {
    let tree = Tree::new();
    let mb = tree.account("alice");
    let old = [
        mb.message("cur", 21 * DAY, 1000),
        mb.message("new", 21 * DAY, 1000),
        mb.message("tmp", 21 * DAY, 1000),
        mb.message(".DeltaChat/cur", 21 * DAY, 1000),
        mb.message(".DeltaChat/new", 20 * DAY + 1, 1000),
    ];
    let young = [
        mb.message("cur", 19 * DAY, 1000),
        mb.message("new", 20 * DAY - 1, 1000),
        mb.message(".DeltaChat/cur", DAY, 1000),
    ];
    let index = mb.file("dovecot.index", b"index");
    let uidlist = mb.file(".DeltaChat/dovecot-uidlist", b"3 V1 N1");
    // Old, but not in a Maildir message directory.
    let stray = mb.file("notes/old", b"x");
    set_mtime(&stray, ago(100 * DAY));

    let (summary, _) = run(&tree.config(), &opts(true));
    for path in &old {
        assert!(!exists(path), "{} should be gone", path.display());
    }
    let password = mb.dir.join("password");
    for path in young.iter().chain([&index, &uidlist, &stray, &password]) {
        assert!(exists(path), "{} should be kept", path.display());
    }
    assert!(!exists(&mb.maildirsize()));
    assert_eq!(summary.mailboxes_total, 1);
    assert_eq!(summary.mailboxes_removed, 0);
    assert_eq!(summary.files_total, 8);
    assert_eq!(summary.files_removed, 5);
    assert_eq!(summary.bytes_freed, 5000);
    assert_eq!(summary.errors, 0);
    assert!(!summary.dry_run);
}

#[test]
fn large_mail_goes_only_from_cur() {
    let tree = Tree::new();
    let mb = tree.account("bob");
    let gone = [
        mb.message("cur", 8 * DAY, 300_000),
        mb.message("cur", 8 * DAY, 200_001),
        mb.message(".DeltaChat/cur", 8 * DAY, 300_000),
    ];
    let kept = [
        mb.message("new", 8 * DAY, 300_000),
        mb.message("tmp", 8 * DAY, 300_000),
        mb.message("cur", 8 * DAY, 200_000),
        mb.message("cur", 6 * DAY, 300_000),
        mb.message("cur", 8 * DAY, 1_000),
    ];
    let (summary, _) = run(&tree.config(), &opts(true));
    for path in &gone {
        assert!(!exists(path), "{} should be gone", path.display());
    }
    for path in &kept {
        assert!(exists(path), "{} should be kept", path.display());
    }
    assert_eq!(summary.files_removed, 3);
    assert_eq!(summary.bytes_freed, 800_001);
}

#[test]
fn inactive_mailboxes_are_removed_whole() {
    let tree = Tree::new();
    let gone = tree.account("inactive");
    // Login day 90 days back: its 00:00 is before now - 90 days.
    gone.password(90);
    gone.message("cur", HOUR, 1000);
    let kept = tree.account("active");
    kept.password(89);
    kept.message("cur", HOUR, 1000);

    let (summary, out) = run(&tree.config(), &opts(true));
    assert!(!exists(&gone.dir));
    assert!(exists(&kept.dir));
    assert!(
        exists(&kept.maildirsize()),
        "nothing removed, maildirsize stays"
    );
    assert_eq!(summary.mailboxes_total, 2);
    assert_eq!(summary.mailboxes_removed, 1);
    // Files are counted in the mailboxes that stay only, as chatmaild does.
    assert_eq!(summary.files_total, 1);
    assert_eq!(summary.files_removed, 0);
    assert!(summary.bytes_freed >= 1000);
    assert!(
        out.is_empty(),
        "not verbose, not dry: no lines, got {out:?}"
    );
}

#[test]
fn nothing_to_do_leaves_maildirsize() {
    let tree = Tree::new();
    let mb = tree.account("quiet");
    mb.message("cur", DAY, 1000);
    let (summary, _) = run(&tree.config(), &opts(true));
    assert_eq!(summary.files_removed, 0);
    assert!(exists(&mb.maildirsize()));
}

fn small_quota(tree: &Tree) -> Config {
    let mut config = tree.config();
    config.max_mailbox_size.bytes = 1_000_000;
    config
}

#[test]
fn quota_step_removes_oldest_down_to_70_percent() {
    let tree = Tree::new();
    let mb = tree.account("full");
    // Ten messages of 100 kB (all under the large limit), 2..=11 days old.
    let messages: Vec<_> = (0..10)
        .map(|i| {
            mb.message(
                if i % 2 == 0 { "cur" } else { "new" },
                (11 - i) * DAY,
                100_000,
            )
        })
        .collect();
    let (summary, _) = run(&small_quota(&tree), &opts(true));
    // 1 000 000 -> 700 000: the three oldest go.
    for (i, path) in messages.iter().enumerate() {
        assert_eq!(exists(path), i >= 3, "message {i}");
    }
    assert_eq!(summary.files_removed, 3);
    assert!(!exists(&mb.maildirsize()));
}

#[test]
fn quota_step_orders_by_name_time_and_counts_name_size() {
    let tree = Tree::new();
    let mb = tree.account("names");
    // The name says 10 days old and 400 kB, the file is young and tiny: the name wins.
    let ts = now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 10 * DAY;
    let by_name = mb.raw_message(
        "cur",
        &format!("{ts}.M1P1.host,S=400000,W=400000:2,S"),
        ago(2 * DAY),
        10,
    );
    // No Dovecot name: mtime and length are used instead.
    let by_stat = mb.raw_message("cur", "strange-name", ago(9 * DAY), 150_000);
    let rest: Vec<_> = (0..6)
        .map(|i| mb.message("cur", (8 - i) * DAY, 100_000))
        .collect();
    // Total 400 000 + 150 000 + 600 000 = 1 150 000; target 700 000: the first two go.
    let (summary, _) = run(&small_quota(&tree), &opts(true));
    assert!(!exists(&by_name));
    assert!(!exists(&by_stat));
    assert!(rest.iter().all(|p| exists(p)));
    assert_eq!(summary.files_removed, 2);
    // Freed bytes are what the disk gets back: the file lengths.
    assert_eq!(summary.bytes_freed, 150_010);
}

#[test]
fn quota_step_spares_the_last_24_hours() {
    let tree = Tree::new();
    let mb = tree.account("busy");
    let older = mb.message("cur", DAY, 100_000);
    let young: Vec<_> = (0..9)
        .map(|i| mb.message("cur", DAY - 1 - i * HOUR, 100_000))
        .collect();
    let (summary, _) = run(&small_quota(&tree), &opts(true));
    assert!(!exists(&older), "exactly 24 h old is not protected");
    assert!(young.iter().all(|p| exists(p)));
    assert_eq!(summary.files_removed, 1);
}

#[test]
fn quota_expire_removes_oldest_to_target() {
    let tree = Tree::new();
    let mb = tree.account("dovecot");
    let messages: Vec<_> = (0..10)
        .map(|i| {
            mb.message(
                if i < 8 { "cur" } else { ".DeltaChat/new" },
                (12 - i) * DAY,
                100_000,
            )
        })
        .collect();
    let tmp = mb.message("tmp", 30 * DAY, 100_000);
    let summary = quota_expire(&mb.dir, 500_000, now()).unwrap();
    for (i, path) in messages.iter().enumerate() {
        assert_eq!(exists(path), i >= 5, "message {i}");
    }
    assert!(exists(&tmp), "tmp/ does not count towards the quota");
    assert_eq!(summary.removed, 5);
    assert_eq!(summary.size_before, 1_000_000);
    assert_eq!(summary.size_after, 500_000);
    assert!(summary.maildirsize_removed);
    assert!(!exists(&mb.maildirsize()));
    assert!(
        summary
            .to_string()
            .starts_with("quota-expire: removed 5 message(s) from dovecot@")
    );

    // Already under the target: nothing happens, maildirsize stays.
    let mb2 = tree.account("calm");
    mb2.message("cur", 5 * DAY, 100_000);
    let summary = quota_expire(&mb2.dir, 500_000, now()).unwrap();
    assert_eq!(summary.removed, 0);
    assert!(exists(&mb2.maildirsize()));
}

#[test]
fn quota_expire_keeps_young_mail_even_over_target() {
    let tree = Tree::new();
    let mb = tree.account("flooded");
    let young: Vec<_> = (0..5)
        .map(|i| mb.message("cur", i * HOUR, 100_000))
        .collect();
    let summary = quota_expire(&mb.dir, 100_000, now()).unwrap();
    assert_eq!(summary.removed, 0);
    assert_eq!(summary.size_after, 500_000);
    assert!(young.iter().all(|p| exists(p)));
    assert!(exists(&mb.maildirsize()));
    assert!(summary.to_string().contains("within 24 hours"));
}

#[test]
fn quota_expire_rejects_symlinks_and_tolerates_missing() {
    let tree = Tree::new();
    let mb = tree.account("real");
    mb.message("cur", 5 * DAY, 100_000);
    let link = tree.root.join("link@example.org");
    symlink(&mb.dir, &link).unwrap();
    assert!(matches!(
        quota_expire(&link, 0, now()),
        Err(ExpireError::NotADirectory { .. })
    ));
    let missing = quota_expire(&tree.root.join("gone@example.org"), 0, now()).unwrap();
    assert_eq!(missing.removed, 0);
}

#[test]
fn dry_run_removes_nothing_and_predicts_the_real_run() {
    let tree = Tree::new();
    let a = tree.account("a");
    a.message("cur", 25 * DAY, 1000);
    a.message("cur", 8 * DAY, 300_000);
    (0..10).for_each(|i| {
        a.message("cur", (2 + i) * DAY, 100_000);
    });
    let b = tree.account("b");
    b.password(120);
    let before = listing(&tree);

    let mut config = small_quota(&tree);
    config.max_mailbox_size.bytes = 1_000_000;
    let (dry, out) = run(&config, &opts(false));
    assert_eq!(listing(&tree), before, "dry run must not change the tree");
    assert!(dry.dry_run);
    assert!(out.contains("would remove"), "{out}");
    assert!(out.contains("(old)") && out.contains("(large)") && out.contains("(quota)"));
    assert!(out.contains("maildirsize"));
    assert!(
        dry.to_string()
            .starts_with("Dry run: would remove 1 out of 2 mailboxes")
    );

    let (real, _) = run(&config, &opts(true));
    assert_eq!(
        (
            dry.mailboxes_removed,
            dry.files_removed,
            dry.files_total,
            dry.bytes_freed
        ),
        (
            real.mailboxes_removed,
            real.files_removed,
            real.files_total,
            real.bytes_freed
        )
    );
    assert_ne!(listing(&tree), before);
    assert!(
        real.to_string()
            .starts_with("Removed 1 out of 2 mailboxes and")
    );
}

fn listing(tree: &Tree) -> Vec<String> {
    fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            out.push(e.path().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(&tree.root, &mut out);
    out.sort();
    out
}

#[test]
fn days_offset_moves_today_forward() {
    let tree = Tree::new();
    let mb = tree.account("later");
    let msg = mb.message("cur", 15 * DAY, 1000);
    let mut o = opts(true);
    o.days_offset = 5;
    run(&tree.config(), &o);
    assert!(exists(&msg), "15 + 5 days is not older than 20 days");
    o.days_offset = 6;
    let (summary, _) = run(&tree.config(), &o);
    assert!(!exists(&msg));
    assert_eq!(summary.files_removed, 1);
    // The account logged in today; 89 days later it is still active, 90 days later not.
    o.days_offset = 89;
    run(&tree.config(), &o);
    assert!(exists(&mb.dir));
    o.days_offset = 90;
    run(&tree.config(), &o);
    assert!(!exists(&mb.dir));
}

#[test]
fn symlinks_are_never_followed() {
    let tree = Tree::new();
    // Old things outside the tree that a followed link would expose.
    let outside_msg = tree.outside.join("secret");
    fs::write(&outside_msg, b"x").unwrap();
    set_mtime(&outside_msg, ago(100 * DAY));
    let outside_folder = tree.outside.join("folder");
    fs::create_dir_all(outside_folder.join("cur")).unwrap();
    let outside_folder_msg = outside_folder.join("cur").join("1.M1P1.x,S=1");
    fs::write(&outside_folder_msg, b"x").unwrap();
    set_mtime(&outside_folder_msg, ago(100 * DAY));
    let outside_mailbox = tree.outside.join("victim");
    fs::create_dir_all(&outside_mailbox).unwrap();
    fs::write(outside_mailbox.join("password"), b"x").unwrap();
    set_mtime(&outside_mailbox.join("password"), ago(200 * DAY));
    let outside_cur = tree.outside.join("cur");
    fs::create_dir_all(&outside_cur).unwrap();
    let outside_cur_msg = outside_cur.join("old");
    fs::write(&outside_cur_msg, b"x").unwrap();
    set_mtime(&outside_cur_msg, ago(100 * DAY));

    let mb = tree.account("linker");
    let old = mb.message("cur", 30 * DAY, 10);
    symlink(&outside_msg, mb.dir.join("cur").join("1.M9P9.link,S=1")).unwrap();
    symlink(&outside_folder, mb.dir.join(".Evil")).unwrap();
    symlink(&outside_mailbox, tree.root.join("victim@example.org")).unwrap();
    symlink(
        outside_mailbox.join("password"),
        mb.dir.join("password-link"),
    )
    .unwrap();
    // A Maildir subdirectory replaced by a link.
    let mb2 = tree.account("linkedcur");
    fs::remove_dir(mb2.dir.join("cur")).unwrap();
    symlink(&outside_cur, mb2.dir.join("cur")).unwrap();
    // A symlinked password does not make an account (and does not count as a login).
    let mb3 = tree.mailbox("fakepw");
    symlink(outside_mailbox.join("password"), mb3.dir.join("password")).unwrap();

    let (summary, _) = run(&tree.config(), &opts(true));
    assert!(!exists(&old), "the real old message goes");
    for path in [
        &outside_msg,
        &outside_folder_msg,
        &outside_mailbox.join("password"),
        &outside_cur_msg,
    ] {
        assert!(exists(path), "{} must be untouched", path.display());
    }
    assert!(exists(&tree.root.join("victim@example.org")));
    assert!(
        exists(&mb3.dir),
        "no regular password: never removed as inactive"
    );
    assert_eq!(
        summary.mailboxes_total, 3,
        "the symlinked mailbox is not one"
    );
    assert_eq!(summary.mailboxes_removed, 0);
    assert_eq!(summary.files_removed, 1);
    assert_eq!(summary.errors, 0);
}

#[test]
fn non_mailbox_entries_are_left_alone() {
    let tree = Tree::new();
    let pending = tree.root.join("pending_notifications");
    fs::create_dir_all(pending.join("cur")).unwrap();
    let queued = pending.join("cur").join("x");
    fs::write(&queued, b"x").unwrap();
    set_mtime(&queued, ago(100 * DAY));
    let file = tree.root.join("stray@file");
    fs::write(&file, b"x").unwrap();
    let hidden = tree.root.join(".tmp@example.org");
    fs::create_dir_all(&hidden).unwrap();
    set_mtime(&hidden, ago(200 * DAY));

    let (summary, _) = run(&tree.config(), &opts(true));
    assert!(exists(&queued) && exists(&file) && exists(&hidden));
    assert_eq!(summary.mailboxes_total, 0);
    assert_eq!(summary.skipped_entries, 3);
}

#[test]
fn mailboxes_without_password() {
    let tree = Tree::new();
    // Empty and as old as an inactive account: a creation that never finished.
    let empty_old = tree.root.join("emptyold@example.org");
    fs::create_dir(&empty_old).unwrap();
    set_mtime(&empty_old, ago(91 * DAY));
    // Empty but recent: maybe being created right now.
    let empty_new = tree.root.join("emptynew@example.org");
    fs::create_dir(&empty_new).unwrap();
    set_mtime(&empty_new, ago(DAY));
    // Not empty: kept however old, but its old mail still expires.
    let full = tree.mailbox("nopassword");
    let old = full.message("cur", 30 * DAY, 10);
    let young = full.message("cur", DAY, 10);
    set_mtime(&full.dir, ago(200 * DAY));

    let (dry, out) = run(&tree.config(), &opts(false));
    assert!(exists(&empty_old));
    assert!(
        out.contains("emptyold@example.org (empty, no password)"),
        "{out}"
    );
    assert_eq!(dry.mailboxes_removed, 1);

    let (summary, _) = run(&tree.config(), &opts(true));
    assert!(!exists(&empty_old));
    assert!(exists(&empty_new));
    assert!(exists(&full.dir));
    assert!(!exists(&old));
    assert!(exists(&young));
    assert_eq!(summary.mailboxes_total, 3);
    assert_eq!(summary.mailboxes_removed, 1);
    assert_eq!(summary.files_removed, 1);
}

#[test]
fn verbose_lists_checks_and_removals() {
    let tree = Tree::new();
    let mb = tree.account("talk");
    let msg = mb.message("cur", 30 * DAY, 10);
    let mut o = opts(true);
    o.verbose = true;
    let (_, out) = run(&tree.config(), &o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "checking mailbox Jun 15 talk@example.org");
    assert_eq!(lines[1], format!("removing May 16 {} (old)", msg.display()));
    assert_eq!(lines[2], format!("removing {}", mb.maildirsize().display()));
    assert_eq!(lines.len(), 3);
}

#[test]
fn max_mailboxes_takes_the_first_by_name() {
    let tree = Tree::new();
    let msgs: Vec<_> = ["c", "a", "b"]
        .iter()
        .map(|n| tree.account(n).message("cur", 30 * DAY, 10))
        .collect();
    let mut o = opts(true);
    o.max_mailboxes = Some(2);
    let (summary, _) = run(&tree.config(), &o);
    assert_eq!(summary.mailboxes_total, 2);
    assert_eq!(summary.skipped_entries, 1);
    assert!(exists(&msgs[0]), "c is beyond the first two");
    assert!(!exists(&msgs[1]) && !exists(&msgs[2]));
}

#[test]
fn missing_or_unreadable_mailboxes_dir() {
    let tree = Tree::new();
    let config = Config::for_tests(common::DOMAIN, &tree.outside.join("nope"));
    let (summary, out) = run(&config, &opts(true));
    assert_eq!(summary.mailboxes_total, 0);
    assert!(out.starts_with("no mailboxes found at:"));

    let file = tree.outside.join("file");
    fs::write(&file, b"").unwrap();
    let config = Config::for_tests(common::DOMAIN, &file);
    let err = expire(&config, &opts(true), &mut Vec::new()).unwrap_err();
    assert!(matches!(err, ExpireError::ReadDir { .. }), "{err}");
}

struct Broken;

impl Write for Broken {
    fn write(&mut self, _: &[u8]) -> io::Result<usize> {
        Err(io::Error::from(io::ErrorKind::BrokenPipe))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn output_failure_still_completes_the_run() {
    let tree = Tree::new();
    let msgs: Vec<_> = (0..5)
        .map(|i| tree.account(&format!("u{i}")).message("cur", 30 * DAY, 10))
        .collect();
    let mut o = opts(true);
    o.verbose = true;
    let err = expire(&tree.config(), &o, &mut Broken).unwrap_err();
    assert!(matches!(err, ExpireError::Output(_)));
    assert!(msgs.iter().all(|p| !exists(p)));
}

#[test]
fn concurrent_deletion_is_not_an_error() {
    // A second expiry racing the first over the same tree: every file is removed by one
    // of them, and vanished files are not errors for the other.
    let tree = Tree::new();
    for i in 0..40 {
        let mb = tree.account(&format!("r{i:02}"));
        for _ in 0..20 {
            mb.message("cur", 30 * DAY, 10);
        }
    }
    let config = tree.config();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| run(&config, &opts(true)).0);
        let b = s.spawn(|| run(&config, &opts(true)).0);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_eq!(a.errors + b.errors, 0);
    assert_eq!(a.files_removed + b.files_removed, 800);
}

#[test]
fn synthetic_tree_for_benchmarks() {
    let tree = Tree::new();
    let root = tree.root.join("bench");
    let built = synthetic::synthetic_tree(&root, 60, 10, 7).unwrap();
    assert_eq!(built.mailboxes, 60);
    assert_eq!(built.messages, 600);
    let again = synthetic::synthetic_tree(&tree.outside.join("again"), 60, 10, 7).unwrap();
    assert_eq!(
        (again.inactive_mailboxes, again.message_bytes),
        (built.inactive_mailboxes, built.message_bytes),
        "same seed, same tree"
    );

    let config = Config::for_tests("bench.example", &root);
    let o = ExpireOptions {
        now: std::time::SystemTime::now(),
        ..opts(false)
    };
    let (summary, _) = run(&config, &o);
    assert_eq!(summary.mailboxes_total, 60);
    assert_eq!(summary.mailboxes_removed, built.inactive_mailboxes);
    assert!(summary.files_removed >= built.old_messages / 2);
}

#[test]
fn temp_files_left_by_a_crashed_writer_are_removed_after_an_hour() {
    let tree = Tree::new();
    let mb = tree.account("alice");
    let stale = mb.raw_message(
        "",
        ".password.4242.0.0123456789abcdef.tmp",
        ago(2 * HOUR),
        40,
    );
    let stale_meta = mb.raw_message(
        "",
        ".metadata.json.4242.1.0123456789abcdef.tmp",
        ago(DAY),
        9,
    );
    let fresh = mb.raw_message("", ".password.4243.0.fedcba9876543210.tmp", ago(60), 40);
    // Only the names of our writers, and only in the mailbox directory itself.
    let other = mb.raw_message("", ".other.1.tmp", ago(DAY), 1);
    let deeper = mb.raw_message(".DeltaChat", ".password.1.0.0.tmp", ago(DAY), 1);

    let dry = ExpireOptions {
        verbose: true,
        ..opts(false)
    };
    let (_, out) = run(&tree.config(), &dry);
    assert!(
        out.contains(&format!(
            "would remove {} (stale temp file)",
            stale.display()
        )),
        "{out}"
    );
    assert!(exists(&stale));

    let (summary, out) = run(&tree.config(), &opts(true));
    assert_eq!(summary.errors, 0);
    assert_eq!(out, "");
    assert!(!exists(&stale));
    assert!(!exists(&stale_meta));
    for kept in [&fresh, &other, &deeper, &mb.dir.join("password")] {
        assert!(exists(kept), "{}", kept.display());
    }
}

#[test]
fn verbose_output_escapes_newlines_in_file_names() {
    let tree = Tree::new();
    let mb = tree.account("alice");
    // A file name cannot hold '/', but it can forge a whole line.
    let forged = "1.M1P1.test:2,S\nremoving Jan 01 bob@x (old)";
    let path = mb.raw_message("cur", forged, ago(30 * DAY), 10);
    let verbose = ExpireOptions {
        verbose: true,
        ..opts(true)
    };
    let (summary, out) = run(&tree.config(), &verbose);
    assert_eq!(summary.files_removed, 1);
    assert!(!exists(&path));
    let escaped = path.display().to_string().replace('\n', "\\n");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("checking mailbox "), "{out}");
    assert!(lines[1].starts_with("removing "), "{out}");
    assert!(lines[1].ends_with(&format!("{escaped} (old)")), "{out}");
    assert!(lines[2].ends_with("/maildirsize"), "{out}");
}
