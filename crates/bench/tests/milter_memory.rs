//! The milter's memory bound is a property of the `chatmail` binary: started
//! with an empty environment, 40 concurrent 10 MB messages keep its peak RSS
//! under 64 MiB (docs/milter-memory.md).
//!
//! Runs the `chatmail` binary named by `CHATMAIL_BIN`, else the one built
//! beside this test (`target/<profile>/chatmail`; `cargo build --bin
//! chatmail` makes it, as `cargo test --workspace` does).

use std::path::PathBuf;

/// Where the daemon's peak must stay, with 40 messages of 10 MB at once.
const PEAK_LIMIT_KIB: u64 = 64 * 1024;

fn chatmail_exe() -> PathBuf {
    if let Some(path) = std::env::var_os("CHATMAIL_BIN") {
        return PathBuf::from(path);
    }
    // This test runs from target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let chatmail = dir.join("chatmail");
    assert!(
        chatmail.exists(),
        "{} is missing: build it first (cargo build --bin chatmail) or set CHATMAIL_BIN",
        chatmail.display()
    );
    chatmail
}

#[tokio::test(flavor = "multi_thread")]
async fn forty_ten_megabyte_messages_with_an_empty_environment() {
    // Without SIZE=: each message takes a first block, then grows through
    // the lane, the path with the most reallocations.
    let load = chatmail_bench::milter::load(&chatmail_exe(), 40, 10_000_000, false)
        .await
        .unwrap();
    let row = &load.row;
    assert_eq!(
        (row.accepted, row.refused, row.tempfailed, row.wrong),
        (20, 20, 0, 0),
        "{load:?}"
    );
    assert!(
        load.peak_kib < PEAK_LIMIT_KIB,
        "peak RSS {} KiB (idle {} KiB), limit {PEAK_LIMIT_KIB} KiB",
        load.peak_kib,
        load.idle_kib
    );
}
