//! What the outgoing side remembers, and the socketmap Postfix asks about it
//! (docs/design.md, "HTTPS transport").
//!
//! Three tables are served on one socket:
//! - `filter` (`check_recipient_access` of the `chatmail-reinject` smtpd):
//!   a message our LMTP agent hands back to Postfix for SMTP leaves through
//!   the `chatmail-smtp` transport, to the recipient domain's MX (or a
//!   peer's fixed address);
//! - `tlspolicy` (`smtp_tls_policy_maps`) and `status`
//!   (`smtp_delivery_status_filter`) of that transport: observers only,
//!   always `NOTFOUND`. Postfix's SMTP client asks the first with the
//!   destination before it delivers and the second with each recipient's
//!   result, so together they tell which domain just took (or could not
//!   be reached for) mail over SMTP: a domain that took mail is "SMTP only"
//!   for [`SMTP_ONLY_FOR`], and a failed connection ends that.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chatmail_net::{Listener, Stream};
use tokio::io::{AsyncWriteExt, BufReader};

use crate::wire;

/// How long a domain stays "SMTP only" after a successful SMTP delivery.
pub const SMTP_ONLY_FOR: Duration = Duration::from_secs(30 * 60);
/// Bounds on what is remembered, whatever the traffic.
const MAX_ENTRIES: usize = 100_000;

/// A destination given explicitly instead of through DNS (test relays on
/// one machine): its SMTP server and, if it has one, its HTTPS server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The recipient domain.
    pub domain: String,
    /// Postfix's next hop for SMTP, `[127.0.0.1]:2525`.
    pub smtp: String,
    /// `host:port` of its HTTPS server; `None`: SMTP only.
    pub https: Option<String>,
}

impl std::fmt::Display for Peer {
    /// The form [`Peer`] parses from.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let smtp = self.smtp.replacen('[', "", 1).replacen(']', "", 1);
        write!(f, "{}={smtp}", self.domain)?;
        if let Some(https) = &self.https {
            write!(f, ",https={https}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Peer {
    type Err = String;

    /// `DOMAIN=SMTP_IP:PORT[,https=HOST:PORT]`.
    fn from_str(s: &str) -> Result<Peer, String> {
        let err = || format!("{s:?}: expected DOMAIN=SMTP_IP:PORT[,https=HOST:PORT]");
        let (domain, rest) = s.split_once('=').ok_or_else(err)?;
        let (smtp, https) = match rest.split_once(',') {
            Some((smtp, https)) => (smtp, Some(https.strip_prefix("https=").ok_or_else(err)?)),
            None => (rest, None),
        };
        let (host, port) = smtp.rsplit_once(':').ok_or_else(err)?;
        let valid_domain = !domain.is_empty()
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        let https_ok = https.is_none_or(|h| {
            h.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        });
        if !valid_domain
            || host.parse::<std::net::IpAddr>().is_err()
            || port.parse::<u16>().is_err()
            || !https_ok
        {
            return Err(err());
        }
        Ok(Peer {
            domain: domain.to_ascii_lowercase(),
            smtp: format!("[{host}]:{port}"),
            https: https.map(str::to_owned),
        })
    }
}

/// The outgoing side's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Our own domain, never routed.
    pub own_domain: String,
    /// Whether outgoing mail tries HTTPS first (`false`: Postfix's SMTP
    /// only).
    pub https_first: bool,
    /// Explicit destinations.
    pub peers: Vec<Peer>,
    /// Route only to [`Settings::peers`] (a relay on loopback must not send
    /// mail off the machine).
    pub peers_only: bool,
}

/// The shared memory of the LMTP agent and the socketmap.
#[derive(Debug)]
pub struct Memory {
    settings: Settings,
    inner: Mutex<Tables>,
}

#[derive(Debug, Default)]
struct Tables {
    /// Domains that took mail over SMTP, and when.
    smtp_only: HashMap<String, Instant>,
    /// The destination each SMTP client process last asked about.
    asking: HashMap<u64, String>,
}

fn prune(map: &mut HashMap<String, Instant>, ttl: Duration, now: Instant) {
    if map.len() >= MAX_ENTRIES {
        map.retain(|_, t| now.duration_since(*t) < ttl);
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
    }
}

/// The domain of an address, lower case (`[1.2.3.4]` for a literal).
pub fn domain_of(addr: &str) -> String {
    addr.rsplit_once('@')
        .map_or(addr, |(_, d)| d)
        .to_ascii_lowercase()
}

impl Memory {
    /// An empty memory.
    pub fn new(settings: Settings) -> Memory {
        Memory {
            settings,
            inner: Mutex::new(Tables::default()),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The explicit destination for `domain`.
    pub fn peer(&self, domain: &str) -> Option<&Peer> {
        self.settings.peers.iter().find(|p| p.domain == domain)
    }

    /// Whether `domain` is "SMTP only" now.
    pub fn smtp_only(&self, domain: &str) -> bool {
        let t = self.tables();
        t.smtp_only
            .get(domain)
            .is_some_and(|since| since.elapsed() < SMTP_ONLY_FOR)
    }

    /// Forgets that `domain` took mail over SMTP (its SMTP server could
    /// not be reached).
    pub fn smtp_failed(&self, domain: &str) {
        if self.tables().smtp_only.remove(domain).is_some() {
            tracing::info!("{domain}: SMTP connection failed, HTTPS first again");
        }
    }

    /// The answer to a lookup in `table` for `key` by client `who`.
    pub fn lookup(&self, table: &str, key: &str, who: u64) -> String {
        match table {
            "filter" => self.filter(key),
            "tlspolicy" => {
                if let Some(domain) = self.destination(key) {
                    let mut t = self.tables();
                    if t.asking.len() >= MAX_ENTRIES {
                        t.asking.clear();
                    }
                    t.asking.insert(who, domain);
                }
                "NOTFOUND ".into()
            }
            "status" => {
                self.observe(key, who);
                "NOTFOUND ".into()
            }
            _ => "PERM unknown table".into(),
        }
    }

    /// The recipient domain of Postfix's next hop `nexthop`: a peer's
    /// fixed address, or the domain itself (an address literal stays in
    /// brackets, as in the address). Parent-domain lookups (`.example`)
    /// name no destination.
    fn destination(&self, nexthop: &str) -> Option<String> {
        let nexthop = nexthop.to_ascii_lowercase();
        if let Some(p) = self.settings.peers.iter().find(|p| p.smtp == nexthop) {
            return Some(p.domain.clone());
        }
        if nexthop.is_empty() || nexthop.starts_with('.') {
            return None;
        }
        Some(match nexthop.rsplit_once("]:") {
            Some((host, _port)) => format!("{host}]"),
            None => nexthop,
        })
    }

    /// The `FILTER` action that sends a re-injected recipient to Postfix's
    /// SMTP client: the MX of its domain, or a peer's fixed address.
    fn filter(&self, key: &str) -> String {
        let domain = domain_of(key);
        match self.peer(&domain) {
            Some(p) => format!("OK FILTER chatmail-smtp:{}", p.smtp),
            None => "OK FILTER chatmail-smtp:".into(),
        }
    }

    /// A delivery status from Postfix's SMTP client `who`.
    fn observe(&self, key: &str, who: u64) {
        let mut t = self.tables();
        let Some(domain) = t.asking.get(&who).cloned() else {
            return;
        };
        let delivered = key.starts_with('2');
        if delivered {
            if !t.smtp_only.contains_key(&domain) {
                tracing::info!("{domain}: SMTP only for the next 30 minutes");
            }
            prune(&mut t.smtp_only, SMTP_ONLY_FOR, Instant::now());
            t.smtp_only.insert(domain, Instant::now());
        } else if connection_failed(key) {
            drop(t);
            self.smtp_failed(&domain);
        }
    }
}

/// Whether a Postfix delivery status says the SMTP connection failed (as
/// opposed to a reply from the server).
fn connection_failed(status: &str) -> bool {
    let text = status.split_once(' ').map_or(status, |(_, t)| t);
    text.starts_with("connect to ")
        || text.starts_with("lost connection with ")
        || text.contains("Connection timed out")
        || text.contains("Connection refused")
        || text.contains("Network is unreachable")
}

/// Serves the socketmap on `listener` until `shutdown`.
///
/// # Errors
///
/// None at present: accept failures are logged and retried.
pub async fn serve_map(
    listener: Listener,
    memory: Arc<Memory>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let next_id = Arc::new(std::sync::atomic::AtomicU64::new(1 << 32));
    let serve = move |stream: Stream, _stop| {
        // A Postfix process is known by its pid: its TLS policy and status
        // lookups may come over separate connections.
        let pid = match &stream {
            Stream::Unix(s) => s.peer_cred().ok().and_then(|c| c.pid()),
            Stream::Tcp(_) => None,
        };
        let who = pid.map_or_else(
            || next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            |p| p as u64,
        );
        let memory = Arc::clone(&memory);
        async move {
            if let Err(e) = map_connection(stream, &memory, who).await {
                tracing::debug!("socketmap connection: {e}");
            }
            memory.tables().asking.remove(&who);
        }
    };
    // Each Postfix process that asks keeps its connection.
    chatmail_net::serve_connections(listener, "socketmap", 512, shutdown, serve).await;
    Ok(())
}

async fn map_connection(stream: Stream, memory: &Memory, who: u64) -> Result<(), wire::WireError> {
    let mut io = BufReader::new(stream);
    // Postfix keeps its connection; an idle one is closed after a while
    // and simply reopened by Postfix.
    while let Ok(request) =
        tokio::time::timeout(Duration::from_secs(300), wire::read_netstring(&mut io)).await
    {
        let Some(request) = request? else {
            return Ok(());
        };
        let request = String::from_utf8_lossy(&request);
        let answer = match request.split_once(' ') {
            Some((table, key)) => memory.lookup(table, key, who),
            None => "PERM malformed request".into(),
        };
        io.get_mut()
            .write_all(&wire::netstring(answer.as_bytes()))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Memory {
        Memory::new(Settings {
            own_domain: "a.test".into(),
            https_first: true,
            peers: vec![
                "b.test=127.0.0.1:2525,https=127.0.0.1:8443"
                    .parse()
                    .unwrap(),
            ],
            peers_only: false,
        })
    }

    #[test]
    fn filters() {
        let m = memory();
        let cases = [
            ("x@c.test", "OK FILTER chatmail-smtp:"),
            ("x@B.test", "OK FILTER chatmail-smtp:[127.0.0.1]:2525"),
        ];
        for (key, want) in cases {
            assert_eq!(m.lookup("filter", key, 1), want, "{key}");
        }
        assert_eq!(m.lookup("nope", "k", 1), "PERM unknown table");
        assert_eq!(m.lookup("tlspolicy", "b.test", 1), "NOTFOUND ");
        assert_eq!(m.lookup("status", "2.0.0 250 Ok", 1), "NOTFOUND ");
    }

    #[test]
    fn smtp_only_is_set_by_success_and_cleared_by_a_failed_connection() {
        let m = memory();
        // A status without a preceding TLS policy lookup tells nothing.
        m.lookup("status", "2.0.0 250 2.0.0 Ok", 7);
        assert!(!m.smtp_only("c.test"));
        m.lookup("tlspolicy", "c.test", 7);
        m.lookup(
            "status",
            "4.7.1 host mx.c.test[192.0.2.1] said: 451 later",
            7,
        );
        assert!(!m.smtp_only("c.test"));
        m.lookup("status", "2.0.0 250 2.0.0 Ok: queued as 4F", 7);
        assert!(m.smtp_only("c.test"));
        // Another process's failure for another domain changes nothing.
        m.lookup("tlspolicy", "[d.test]:25", 8);
        m.lookup("tlspolicy", ".d.test", 8);
        m.lookup(
            "status",
            "4.4.1 connect to d.test[192.0.2.2]:25: Connection refused",
            8,
        );
        assert!(m.smtp_only("c.test"));
        m.lookup(
            "status",
            "4.4.1 connect to mx.c.test[192.0.2.1]:25: Connection refused",
            7,
        );
        assert!(!m.smtp_only("c.test"));
    }

    #[test]
    fn destinations_of_next_hops() {
        let m = memory();
        let cases = [
            ("c.test", Some("c.test")),
            ("C.Test", Some("c.test")),
            ("[127.0.0.1]:2525", Some("b.test")),
            ("[192.0.2.1]:25", Some("[192.0.2.1]")),
            ("[192.0.2.1]", Some("[192.0.2.1]")),
            (".c.test", None),
            ("", None),
        ];
        for (nexthop, want) in cases {
            assert_eq!(m.destination(nexthop).as_deref(), want, "{nexthop}");
        }
    }

    #[test]
    fn peers_parse() {
        let p: Peer = "B.test=127.0.0.1:2525,https=127.0.0.1:8443"
            .parse()
            .unwrap();
        assert_eq!(p.domain, "b.test");
        assert_eq!(p.smtp, "[127.0.0.1]:2525");
        assert_eq!(p.https.as_deref(), Some("127.0.0.1:8443"));
        assert_eq!(p.to_string(), "b.test=127.0.0.1:2525,https=127.0.0.1:8443");
        let p: Peer = "c.test=127.0.0.1:25".parse().unwrap();
        assert_eq!(p.https, None);
        assert_eq!(p.to_string(), "c.test=127.0.0.1:25");
        for bad in [
            "b.test",
            "b.test=x",
            "=1.2.3.4:2",
            "b=h:1",
            "b=1.2.3.4:1,h:2",
            "b=1.2.3.4:1,https=h:x",
        ] {
            assert!(bad.parse::<Peer>().is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_failures() {
        assert!(connection_failed(
            "4.4.1 connect to x[1.2.3.4]:25: Connection refused"
        ));
        assert!(connection_failed(
            "4.4.2 lost connection with x[1.2.3.4] while receiving the initial server greeting"
        ));
        assert!(!connection_failed(
            "5.1.1 host x[1.2.3.4] said: 550 no such user"
        ));
    }
}
