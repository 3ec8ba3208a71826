//! `chatmail lastlogin` over its socket, with the transaction Dovecot's
//! last_login plugin sends.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatmail_config::Config;
use chatmail_mailbox::Store;
use chatmail_net::Listener;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const DAY: u64 = 86400;

fn mtime(path: &std::path::Path) -> u64 {
    std::fs::metadata(path)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
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
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1000 * DAY);
    std::fs::File::options()
        .write(true)
        .open(&password)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let socket = dir.path().join("lastlogin.socket");
    let listener = Listener::bind(&format!("unix:{}", socket.display()).parse().unwrap())
        .await
        .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(chatmail_lastlogin::run(listener, config, async {
        let _ = stopped.await;
    }));

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

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
