//! `chatmail lastlogin` over its socket, with the transaction Dovecot's
//! last_login plugin sends.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatmail_config::Config;
use chatmail_mailbox::Store;
use chatmail_net::Listener;
use chatmail_wire_test::Spawned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const DAY: u64 = 86400;

fn mtime(path: &Path) -> u64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(time)
        .unwrap();
}

/// `chatmail lastlogin` on `dir/lastlogin.socket`; the socket's path.
async fn start(dir: &Path, config: Arc<Config>) -> (PathBuf, Spawned) {
    let socket = dir.join("lastlogin.socket");
    let listener = Listener::bind(&format!("unix:{}", socket.display()).parse().unwrap())
        .await
        .unwrap();
    let server = Spawned::spawn(|stop| chatmail_lastlogin::run(listener, config, stop));
    (socket, server)
}

#[tokio::test]
async fn logins_set_the_password_mtime_to_the_day() {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(Config::for_tests("example.org", &dir.path().join("mail")));
    let store = Store::new(config.mailboxes_dir.clone(), config.address_domain());
    let addr = "abcdefghi@example.org";
    let mailbox = store.mailbox(addr).unwrap();
    mailbox.create("{SHA512-CRYPT}$6$x$y").unwrap();
    let password = mailbox.password_path();
    set_mtime(
        &password,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1000 * DAY),
    );
    let (socket, server) = start(dir.path(), config).await;

    let stream = UnixStream::connect(&socket).await.unwrap();
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut reply = async |req: String| {
        w.write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
            .await
            .expect("no reply")
            .unwrap();
        line
    };

    let login = 20_000 * DAY + 12345;
    let tx = format!(
        "H3\t2\t0\t{addr}\tlastlogin\nB1\t{addr}\nS1\tshared/last-login/{addr}\t{login}\nC1\n"
    );
    assert_eq!(reply(tx).await, "O1\n");
    assert_eq!(mtime(&password), 20_000 * DAY);

    // Later the same day: the file is not touched again.
    let tx = format!(
        "B2\t{addr}\nS2\tshared/last-login/{addr}\t{}\nC2\n",
        login + 3600
    );
    assert_eq!(reply(tx).await, "O2\n");
    assert_eq!(mtime(&password), 20_000 * DAY);

    // Next day.
    let tx = format!(
        "B3\t{addr}\nS3\tshared/last-login/{addr}\t{}\nC3\n",
        login + DAY
    );
    assert_eq!(reply(tx).await, "O3\n");
    assert_eq!(mtime(&password), 20_001 * DAY);

    // Bad input is refused, never written.
    for (i, (key, value)) in [
        ("shared/last-login/x@other.org", "1".to_owned()),
        ("shared/last-login/../../etc@example.org", "1".to_owned()),
        ("shared/unknown", "1".to_owned()),
        (
            &*format!("shared/last-login/{addr}"),
            "yesterday".to_owned(),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let id = 10 + i;
        let line = reply(format!("B{id}\t{addr}\nS{id}\t{key}\t{value}\nC{id}\n")).await;
        assert!(line.starts_with(&format!("F{id}\t")), "{key}: {line:?}");
    }
    assert_eq!(mtime(&password), 20_001 * DAY);

    // An address without an account is not an error and creates nothing.
    let other = "nobodyxyz@example.org";
    let line = reply(format!(
        "B20\t{other}\nS20\tshared/last-login/{other}\t{login}\nC20\n"
    ))
    .await;
    assert_eq!(line, "O20\n");
    assert!(!store.mailbox(other).unwrap().dir().exists());

    server.shutdown().await;
}

#[tokio::test]
async fn impossible_login_times_fail_the_whole_transaction_and_the_server_keeps_serving() {
    use chatmail_wire_test::{expect, roundtrip};

    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(Config::for_tests("example.org", &dir.path().join("mail")));
    let store = Store::new(config.mailboxes_dir.clone(), config.address_domain());
    let (a, b) = ("abcdefghi@example.org", "bcdefghij@example.org");
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 * DAY);
    for addr in [a, b] {
        let mailbox = store.mailbox(addr).unwrap();
        mailbox.create("{SHA512-CRYPT}$6$x$y").unwrap();
        set_mtime(&mailbox.password_path(), old);
    }
    let (socket, server) = start(dir.path(), config).await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    let mut c = UnixStream::connect(&socket).await.unwrap();
    c.write_all(b"H3\t2\t0\t\tlastlogin\n").await.unwrap();
    let cases: [(&str, &[u8]); 4] = [
        // u64::MAX once overflowed a time computation and killed the server.
        ("18446744073709551615", b"F1\tlogin time in the future\n"),
        // 2446-02-12: that account would never expire.
        ("15120000000", b"F1\tlogin time in the future\n"),
        ("946684799", b"F1\tlogin time before the year 2000\n"),
        ("18446744073709551616", b"F1\tvalue is not a unix time\n"),
    ];
    for (value, want) in cases {
        // A valid set first: nothing of a refused transaction is applied.
        let req = format!(
            "B1\t{a}\nS1\tshared/last-login/{a}\t{now}\nS1\tshared/last-login/{b}\t{value}\nC1\n"
        );
        roundtrip(&mut c, req.as_bytes(), want).await;
    }
    for addr in [a, b] {
        assert_eq!(
            mtime(&store.mailbox(addr).unwrap().password_path()),
            1000 * DAY,
            "{addr}"
        );
    }

    // The same connection and a new one keep working.
    let req = format!("B2\t{a}\nS2\tshared/last-login/{a}\t{now}\nC2\n");
    roundtrip(&mut c, req.as_bytes(), b"O2\n").await;
    let mut d = UnixStream::connect(&socket).await.unwrap();
    let req = format!("H3\t2\t0\t\tlastlogin\nB1\t{b}\nS1\tshared/last-login/{b}\t{now}\nC1\n");
    d.write_all(req.as_bytes()).await.unwrap();
    expect(&mut d, b"O1\n").await;
    for addr in [a, b] {
        assert_eq!(
            mtime(&store.mailbox(addr).unwrap().password_path()),
            now / DAY * DAY,
            "{addr}"
        );
    }

    server.shutdown().await;
}

#[tokio::test]
async fn lookups_find_nothing_and_iterations_are_refused() {
    use chatmail_wire_test::roundtrip;

    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(Config::for_tests("example.org", &dir.path().join("mail")));
    let (socket, server) = start(dir.path(), config).await;
    let mut c = UnixStream::connect(&socket).await.unwrap();
    c.write_all(b"H3\t2\t0\t\tlastlogin\n").await.unwrap();
    let cases: [(&[u8], &[u8]); 2] = [
        (b"Lshared/last-login/a@example.org\t\n", b"N\n"),
        (
            b"I1\t0\tshared/last-login/\t\n",
            b"Fcannot iterate shared/last-login/\n",
        ),
    ];
    for (request, reply) in cases {
        roundtrip(&mut c, request, reply).await;
    }
    server.shutdown().await;
}
