//! The work one incoming message can cost the milter, with a name server
//! that receives queries and never answers: only signatures of the From
//! domain are looked up, at most five and at once, the answer comes
//! within the deadline, and when Postfix closes the connection the check
//! stops, the message counts as abandoned and the connection is released.
//!
//! A test binary of its own: it reads the process-wide open-connections
//! count and metrics, which other tests would disturb; its tests take a
//! lock so they run one at a time.

mod common;

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use indymilter_test::{MacroStage, Status, TestConnection};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A name server on loopback that reads queries, records their names and
/// never answers (TCP connections are accepted and left silent).
struct Silent {
    addr: SocketAddr,
    names: Arc<Mutex<BTreeSet<String>>>,
    _tcp: std::net::TcpListener,
}

impl Silent {
    fn start() -> Silent {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        let tcp = std::net::TcpListener::bind(addr).unwrap();
        let names = Arc::new(Mutex::new(BTreeSet::new()));
        let seen = Arc::clone(&names);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok(n) = udp.recv(&mut buf) {
                if let Some(name) = query_name(&buf[..n]) {
                    seen.lock().unwrap().insert(name);
                }
            }
        });
        Silent {
            addr,
            names,
            _tcp: tcp,
        }
    }

    fn names(&self) -> BTreeSet<String> {
        self.names.lock().unwrap().clone()
    }
}

/// The question name of a DNS query, lowercased.
fn query_name(packet: &[u8]) -> Option<String> {
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*packet.get(pos)?);
        if len == 0 {
            break;
        }
        let label = packet.get(pos + 1..pos + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += 1 + len;
    }
    Some(labels.join("."))
}

/// A milter with DKIM on, asking `resolver`; metrics recorded.
async fn start(resolver: SocketAddr) -> Milter {
    chatmail_metrics::install();
    let (dir, mut config) = test_config();
    config.dkim_key_file = dir.path().join("dkim.private");
    chatmail_dkim::create_key(&config.dkim_key_file, None).unwrap();
    config.dns_resolver = Some(resolver);
    Milter::run(dir, config).await
}

/// An encrypted message from our domain with `n` signatures of it, each
/// with a selector of its own (`s0` ... ): `n` different keys to look up.
fn many_signatures(m: &Milter, n: usize) -> Vec<u8> {
    let key = chatmail_dkim::key::parse_key(
        &std::fs::read_to_string(m.dir.path().join("dkim.private")).unwrap(),
    )
    .unwrap();
    let raw = testmail("encrypted-v4-seipdv1");
    let mut out = Vec::new();
    for i in 0..n {
        let value = chatmail_dkim::Signer::new(key.clone(), DOMAIN, &format!("s{i}"))
            .sign(&raw, 1_700_000_000)
            .unwrap();
        out.extend_from_slice(
            format!("DKIM-Signature:{}\r\n", value.replace('\n', "\r\n")).as_bytes(),
        );
    }
    out.extend_from_slice(&raw);
    out
}

async fn open(m: &Milter) -> TestConnection {
    let mut conn = m.connect().await;
    let addr: SocketAddr = "127.0.0.1:40010".parse().unwrap();
    assert_eq!(
        conn.connect("localhost", addr).await.unwrap(),
        Status::Continue
    );
    conn
}

/// Everything of a message up to its end of data.
async fn send_until_eom(conn: &mut TestConnection, raw: &[u8]) {
    envelope(conn, &incoming(REMOTE, &[STRICT])).await;
    let (fields, body) = split_message(raw);
    for (name, value) in fields {
        assert_eq!(conn.header(name, value).await.unwrap(), Status::Continue);
    }
    assert_eq!(conn.eoh().await.unwrap(), Status::Continue);
    assert_eq!(conn.body(body).await.unwrap(), Status::Continue);
    conn.macros(MacroStage::Eom, [("i", "4XyZ5678")])
        .await
        .unwrap();
}

fn milter_metrics() -> String {
    chatmail_metrics::server::Endpoint::new(
        chatmail_metrics::get(),
        chatmail_metrics::Daemon::Milter,
        vec![],
    )
    .render()
}

async fn wait_for_no_open_connections(within: Duration) -> Duration {
    let started = Instant::now();
    while chatmail_net::open_connections() > 0 {
        assert!(
            started.elapsed() < within,
            "{} connections still open",
            chatmail_net::open_connections()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test]
async fn fifty_silent_signatures_cost_five_lookups_and_one_deadline() {
    let _serial = SERIAL.lock().await;
    let dns = Silent::start();
    let m = start(dns.addr).await;
    let raw = many_signatures(&m, 50);
    let mut conn = open(&m).await;
    send_until_eom(&mut conn, &raw).await;
    let started = Instant::now();
    let (_, status) = conn.eom().await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        status,
        Status::Tempfail {
            message: Some(
                c"451 4.7.5 DKIM key lookup failed temporarily, try again later".to_owned()
            )
        }
    );
    // Two attempts of 5 s for the five lookups at once; one after another
    // they would take 50 s, all fifty 500 s.
    assert!(took < chatmail_dkim::verify::DEADLINE, "{took:?}");
    let names = dns.names();
    let keys: BTreeSet<_> = names
        .iter()
        .filter(|n| n.ends_with("._domainkey.chat.example"))
        .collect();
    assert_eq!(keys.len(), 5, "{names:?}");
    assert!(keys.iter().all(|n| {
        ["s0.", "s1.", "s2.", "s3.", "s4."]
            .iter()
            .any(|s| n.starts_with(s))
    }));
    conn.close().await.unwrap();
    wait_for_no_open_connections(Duration::from_secs(2)).await;
    eprintln!("50 signatures, silent name server: answered in {took:?}");
}

#[tokio::test]
async fn postfix_closing_stops_the_check() {
    let _serial = SERIAL.lock().await;
    let dns = Silent::start();
    let m = start(dns.addr).await;
    let raw = many_signatures(&m, 1);
    let mut conn = open(&m).await;
    send_until_eom(&mut conn, &raw).await;
    let abandoned = r#"chatmail_milter_messages_total{direction="incoming",verdict="abandoned"}"#;
    let count = |text: &str, series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = milter_metrics();
    // End of data, then Postfix gives up before the answer (the lookup
    // takes ten seconds): it closes the connection.
    let waited = tokio::time::timeout(Duration::from_millis(500), conn.eom()).await;
    assert!(waited.is_err(), "answered before the lookup could end");
    assert_eq!(chatmail_net::open_connections(), 1);
    drop(conn);
    let released = wait_for_no_open_connections(Duration::from_secs(2)).await;
    // Counted as what Postfix did; no verdict, no DKIM result.
    let after = milter_metrics();
    assert_eq!(
        count(&after, abandoned),
        count(&before, abandoned) + 1,
        "{after}"
    );
    for series in [
        r#"chatmail_milter_messages_total{direction="incoming",verdict="tempfail"}"#,
        r#"chatmail_milter_dkim_total{operation="verify",result="temperror"}"#,
    ] {
        assert_eq!(count(&after, series), count(&before, series), "{series}");
    }
    // Nothing counts it later, when the lookup would have ended.
    tokio::time::sleep(chatmail_dkim::verify::DNS_TIMEOUT * 2 + Duration::from_secs(1)).await;
    let later = milter_metrics();
    for series in [
        r#"chatmail_milter_messages_total{direction="incoming",verdict="tempfail"}"#,
        r#"chatmail_milter_dkim_total{operation="verify",result="temperror"}"#,
        abandoned,
    ] {
        assert_eq!(count(&later, series), count(&after, series), "{series}");
    }
    eprintln!("connection released {released:?} after Postfix closed it");
}
