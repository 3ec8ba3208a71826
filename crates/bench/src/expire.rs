//! `chatmail-bench expire`: the daily expiry over a large synthetic mailbox
//! tree, against the physical limit measured in the same run: a bare
//! parallel walk that only lists every directory and `lstat`s every entry,
//! which any expiry has to do at least. Then the real run, which deletes.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use chatmail_config::Config;

/// Builds a tree of `mailboxes` × `messages` and times a dry-run expiry
/// (which reads exactly what a real one reads) against the bare walk.
///
/// # Errors
/// When the tree cannot be built or read.
pub fn run(mailboxes: usize, messages: usize) -> io::Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("mail");
    let t = Instant::now();
    let tree = chatmail_expire::synthetic::synthetic_tree(&dir, mailboxes, messages, 1)?;
    println!(
        "chatmail-bench expire: {} mailboxes ({} inactive), {} messages ({} old), built in {:.1} s",
        tree.mailboxes,
        tree.inactive_mailboxes,
        tree.messages,
        tree.old_messages,
        t.elapsed().as_secs_f64()
    );
    let config = Config::for_tests("bench.example", &dir);
    // Warm the page cache for both, so both measure the same thing.
    let entries = walk(&dir)?;
    let t = Instant::now();
    walk(&dir)?;
    let walk_secs = t.elapsed().as_secs_f64();
    let options = chatmail_expire::ExpireOptions {
        remove: false,
        verbose: false,
        days_offset: 0,
        max_mailboxes: None,
        now: SystemTime::now(),
    };
    let t = Instant::now();
    let summary =
        chatmail_expire::expire(&config, &options, &mut io::sink()).map_err(io::Error::other)?;
    let expire_secs = t.elapsed().as_secs_f64();
    println!("bare walk (readdir + lstat of {entries} entries): {walk_secs:.2} s");
    println!("expire dry run: {expire_secs:.2} s, {summary}");
    println!(
        "ratio walk/expire: {:.2} (1.00 = expiry costs no more than listing the tree); \
         {:.0} files scanned/s",
        walk_secs / expire_secs,
        summary.files_total as f64 / expire_secs
    );
    let t = Instant::now();
    let removed = chatmail_expire::expire(
        &config,
        &chatmail_expire::ExpireOptions {
            remove: true,
            ..options
        },
        &mut io::sink(),
    )
    .map_err(io::Error::other)?;
    println!(
        "expire real run: {:.2} s, {removed}",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Lists every directory and `lstat`s every entry, in parallel across the
/// top-level directories, like the expiry does; returns the entry count.
fn walk(root: &Path) -> io::Result<usize> {
    let tops: Vec<_> = std::fs::read_dir(root)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    let next = AtomicUsize::new(0);
    let count = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(top) = tops.get(i) else { break };
                    count.fetch_add(walk_one(top), Ordering::Relaxed);
                }
            });
        }
    });
    Ok(count.into_inner())
}

fn walk_one(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries.filter_map(Result::ok) {
        n += 1;
        let path = entry.path();
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
            n += walk_one(&path);
        }
    }
    n
}
