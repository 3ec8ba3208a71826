//! The account-creation limits of a chatmaild `chatmail.ini` whose sizes
//! have no unit: chatmaild reads them as megabytes, and so must we (read as
//! bytes, `min_available_memory = 300` would never refuse anything).

mod common;

use chatmail_accounts::rules::Resources;
use chatmail_config::Config;
use common::AuthServer;

#[tokio::test]
async fn bare_numbers_are_megabytes() {
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = Config::parse(&format!(
        "[params]\nmail_domain = example.org\nmailboxes_dir = {}\nnocreate_file = {}\n\
         min_available_memory = 300\nmin_free_disk_space = 2048\n",
        dir.path().join("mail").display(),
        dir.path().join("nocreate").display(),
    ))
    .unwrap();
    let server = AuthServer::start_with(dir, config).await;
    let meter = &server.meter;
    let mut c = server.client().await;
    let idle = *meter.0.lock().unwrap();
    // (available memory, free disk, account created?)
    let cases: &[(u64, u64, bool)] = &[
        (299 << 20, 100 << 30, false),
        (300 << 20, 100 << 30, true),
        (8 << 30, (2048 << 20) - 1, false),
        (8 << 30, 2048 << 20, true),
    ];
    for (i, &(available_memory, free_disk, created)) in cases.iter().enumerate() {
        meter.set(Resources {
            available_memory,
            free_disk,
            ..idle
        });
        let reply = c
            .passdb("password1", &format!("newuser0{i}@example.org"))
            .await;
        assert_eq!(reply.starts_with("O{"), created, "case {i}: {reply:?}");
        assert_eq!(reply == "N\n", !created, "case {i}: {reply:?}");
    }
    server.shutdown().await;
}
