//! `chatmail auth` over its socket, with the bytes Dovecot's dict client sends.

mod common;

use chatmail_accounts::rules::Resources;
use common::{AuthServer, DOMAIN};
use sha_crypt::{PasswordVerifier, ShaCrypt};

fn reply_json(line: &str) -> serde_json::Value {
    let body = line
        .strip_prefix('O')
        .and_then(|l| l.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("not a found reply: {line:?}"));
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn first_login_creates_the_account_and_later_logins_find_it() {
    let server = AuthServer::start().await;
    let mut c = server.client().await;
    let addr = format!("abcdefghi@{DOMAIN}");

    let created = reply_json(&c.passdb("password1", &addr).await);
    let dir = server.mailbox_dir(&addr);
    assert_eq!(created["addr"], addr.as_str());
    assert_eq!(created["home"], dir.to_str().unwrap());
    assert_eq!(created["uid"], "vmail");
    assert_eq!(created["gid"], "vmail");
    let hash = created["password"].as_str().unwrap().to_owned();
    let crypt = hash.strip_prefix("{SHA512-CRYPT}").unwrap();
    ShaCrypt::SHA512
        .verify_password(b"password1", crypt)
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("password"))
            .unwrap()
            .trim(),
        hash
    );
    assert!(dir.join("enforceE2EEincoming").exists());

    // Another password finds the same hash; Dovecot then refuses the login.
    let again = reply_json(&c.passdb("password2", &addr).await);
    assert_eq!(again["password"], hash.as_str());

    // userdb: the same account, never the hash.
    let user = reply_json(&c.request(&format!("Lshared/userdb/{addr}\t{addr}\n")).await);
    assert_eq!(user["home"], dir.to_str().unwrap());
    assert!(user.get("password").is_none());
    server.shutdown().await;
}

#[tokio::test]
async fn inadmissible_logins_are_not_found_and_create_nothing() {
    let server = AuthServer::start().await;
    let mut c = server.client().await;
    let cases = [
        ("password1", "abcdefgh@example.org"),
        ("password1", "abcdefghij@example.org"),
        ("password1", "abcdEfghi@example.org"),
        ("password1", "abcd+fghi@example.org"),
        ("short", "abcdefghi@example.org"),
        ("password1", "abcdefghi@example.com"),
        ("password1", "abcdefghi"),
        ("password1", "../../etc@example.org"),
        ("password1", "abc/efghi@example.org"),
        ("password1", "abcdefghi@example.org@example.org"),
    ];
    for (password, user) in cases {
        assert_eq!(c.passdb(password, user).await, "N\n", "{user}");
    }
    assert!(
        !server.config.mailboxes_dir.exists() || {
            std::fs::read_dir(&server.config.mailboxes_dir)
                .unwrap()
                .next()
                .is_none()
        }
    );
    server.shutdown().await;
}

#[tokio::test]
async fn escaped_quotes_in_passwords_are_passwords() {
    let server = AuthServer::start().await;
    let mut c = server.client().await;
    let addr = format!("quotetest@{DOMAIN}");
    // The client typed: pass"word\x — Dovecot's %E escaped it.
    let reply = reply_json(&c.passdb("pass\\\"word\\\\x", &addr).await);
    let crypt = reply["password"].as_str().unwrap();
    let crypt = crypt.strip_prefix("{SHA512-CRYPT}").unwrap();
    ShaCrypt::SHA512
        .verify_password(b"pass\"word\\x", crypt)
        .unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn nocreate_file_and_loaded_machine_refuse_creation_only() {
    let server = AuthServer::start().await;
    let mut c = server.client().await;
    let old = format!("oldoldold@{DOMAIN}");
    assert!(c.passdb("password1", &old).await.starts_with("O{"));

    std::fs::write(&server.config.nocreate_file, "").unwrap();
    assert_eq!(
        c.passdb("password1", &format!("newnewnew@{DOMAIN}")).await,
        "N\n"
    );
    assert!(c.passdb("password1", &old).await.starts_with("O{"));
    std::fs::remove_file(&server.config.nocreate_file).unwrap();

    let idle = *server.meter.0.lock().unwrap();
    let loaded = [
        Resources {
            load_1m: 5.5,
            ..idle
        },
        Resources {
            available_memory: 100 << 20,
            ..idle
        },
        Resources {
            free_disk: 500 << 20,
            ..idle
        },
    ];
    for res in loaded {
        server.meter.set(res);
        assert_eq!(
            c.passdb("password1", &format!("newnewnew@{DOMAIN}")).await,
            "N\n",
            "{res:?}"
        );
        // Existing users still log in on a loaded machine.
        assert!(c.passdb("password1", &old).await.starts_with("O{"));
    }
    assert!(!server.mailbox_dir(&format!("newnewnew@{DOMAIN}")).exists());
    server.meter.set(idle);
    assert!(
        c.passdb("password1", &format!("newnewnew@{DOMAIN}"))
            .await
            .starts_with("O{")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_first_logins_end_with_one_password() {
    let server = AuthServer::start().await;
    let addr = format!("racerace1@{DOMAIN}");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut c = server.client().await;
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let pw = format!("password-{i:02}");
            let reply = c.passdb(&pw, &addr).await;
            (
                pw,
                reply_json(&reply)["password"].as_str().unwrap().to_owned(),
            )
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let stored = std::fs::read_to_string(server.mailbox_dir(&addr).join("password")).unwrap();
    // Every login saw the stored hash, and exactly one password matches it.
    assert!(results.iter().all(|(_, h)| *h == stored.trim()));
    let crypt = stored.trim().strip_prefix("{SHA512-CRYPT}").unwrap();
    let winners: Vec<_> = results
        .iter()
        .filter(|(pw, _)| {
            ShaCrypt::SHA512
                .verify_password(pw.as_bytes(), crypt)
                .is_ok()
        })
        .collect();
    assert_eq!(winners.len(), 1);
    server.shutdown().await;
}

#[tokio::test]
async fn iterate_lists_accounts_and_writes_are_refused() {
    let server = AuthServer::start().await;
    let mut c = server.client().await;
    for local in ["aaaaaaaa1", "bbbbbbbb2"] {
        assert!(
            c.passdb("password1", &format!("{local}@{DOMAIN}"))
                .await
                .starts_with("O{")
        );
    }
    c.send("I0\t0\tshared/userdb/\t\n").await;
    let mut rows = Vec::new();
    loop {
        let line = c.line().await;
        if line == "\n" {
            break;
        }
        rows.push(line);
    }
    assert_eq!(
        rows,
        [
            format!("Oshared/userdb/aaaaaaaa1@{DOMAIN}\t\n"),
            format!("Oshared/userdb/bbbbbbbb2@{DOMAIN}\t\n"),
        ]
    );
    assert!(
        c.request("I0\t0\tshared/passdb/\t\n")
            .await
            .starts_with('F')
    );

    c.send("B1\t\n").await;
    c.send("S1\tshared/userdb/x@example.org\tvalue\n").await;
    assert_eq!(c.request("C1\n").await, "F1\tthe auth dict is read-only\n");
    // Unknown keys are simply not found, and the connection keeps serving.
    assert_eq!(c.request("Lshared/other/x\t\n").await, "N\n");
    // Garbage gets no answer (the command has none), and the next request
    // is still served in order.
    c.send("garbage\n").await;
    assert_eq!(
        c.request("Lshared/userdb/nobody@example.org\t\n").await,
        "N\n"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn every_lookup_sees_the_password_file_on_disk() {
    let server = AuthServer::start().await;
    let mut c = server.client().await;
    let addr = format!("abcdefghi@{DOMAIN}");
    let dir = server.mailbox_dir(&addr);
    let store = chatmail_mailbox::Store::from_config(&server.config);
    let mailbox = store.mailbox(&addr).unwrap();
    let first = reply_json(&c.passdb("password1", &addr).await)["password"]
        .as_str()
        .unwrap()
        .to_owned();
    // Past the window in which a written file is never cached, so what
    // follows are cached entries that must be found stale.
    tokio::time::sleep(
        chatmail_mailbox::cache::RACY_WINDOW + std::time::Duration::from_millis(200),
    )
    .await;
    for _ in 0..2 {
        assert_eq!(
            reply_json(&c.passdb("x", &addr).await)["password"],
            first.as_str()
        );
    }

    // Another process rewrites the hash in place, same length, old mtime.
    let second: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    assert_ne!(second, first);
    let path = dir.join("password");
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, second.as_bytes()).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(f);
    assert_eq!(
        reply_json(&c.passdb("x", &addr).await)["password"],
        second.as_str()
    );

    // The directory removed (expiry): userdb no longer finds it, and passdb
    // with refused creation neither.
    std::fs::remove_dir_all(&dir).unwrap();
    let userdb = format!("Lshared/userdb/{addr}\t{addr}\n");
    assert_eq!(c.request(&userdb).await, "N\n");
    std::fs::write(&server.config.nocreate_file, "").unwrap();
    assert_eq!(c.passdb("password1", &addr).await, "N\n");

    // Created again by another process.
    let third = format!("{first}x");
    mailbox.create(&third).unwrap();
    assert_eq!(
        reply_json(&c.passdb("x", &addr).await)["password"],
        third.as_str()
    );
    assert!(c.request(&userdb).await.starts_with("O{"));
    server.shutdown().await;
}

#[tokio::test]
async fn overlong_passwords_fail_every_login_without_hashing() {
    let server = AuthServer::start().await;
    let mut c = server.client().await;
    let addr = format!("abcdefghi@{DOMAIN}");
    let created = reply_json(&c.passdb("password1", &addr).await);
    let at_cap = "p".repeat(256);
    let other = format!("bcdefghij@{DOMAIN}");
    assert!(c.passdb(&at_cap, &other).await.starts_with("O{"));

    // Without the hash Dovecot has nothing to hash the password against.
    let over = "p".repeat(257);
    assert_eq!(c.passdb(&over, &addr).await, "N\n");
    let new = format!("cdefghijk@{DOMAIN}");
    assert_eq!(c.passdb(&over, &new).await, "N\n");
    assert!(!server.mailbox_dir(&new).exists());
    // 64 KB once cost seconds of CPU per attempt; now nothing is hashed.
    let huge = "p".repeat(65_000);
    let start = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(c.passdb(&huge, &new).await, "N\n");
    }
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
    assert!(!server.mailbox_dir(&new).exists());

    // The connection and a new one keep serving.
    assert_eq!(reply_json(&c.passdb("password1", &addr).await), created);
    let mut d = server.client().await;
    assert_eq!(reply_json(&d.passdb("password1", &addr).await), created);
    server.shutdown().await;
}

#[tokio::test]
async fn an_unmeasurable_machine_fails_creation_temporarily() {
    let server = AuthServer::start().await;
    let mut c = server.client().await;
    let addr = format!("abcdefghi@{DOMAIN}");
    // EMFILE while reading /proc: no file descriptor left to decide with.
    *server.meter.1.lock().unwrap() = Some(24);
    assert_eq!(c.passdb("password1", &addr).await, "Ftemporary failure\n");
    assert!(!server.mailbox_dir(&addr).exists());
    // A rule that says no is still a plain no.
    assert_eq!(c.passdb("short", &addr).await, "N\n");

    *server.meter.1.lock().unwrap() = None;
    assert!(c.passdb("password1", &addr).await.starts_with("O{"));
    let mut d = server.client().await;
    assert!(d.passdb("password1", &addr).await.starts_with("O{"));
    server.shutdown().await;
}
