//! `chatmail transport`: outgoing relay-to-relay mail over HTTPS, with
//! Postfix keeping the queue and sending SMTP (docs/design.md, "HTTPS
//! transport").
//!
//! Postfix hands every remote recipient to this LMTP agent
//! (`default_transport`). Per recipient domain it POSTs the message to
//! `https://<MX>/mxdeliv`; a 200 is that domain's recipients' 250. When
//! HTTPS fails and the domain's SMTP server answers a connection, the
//! recipients go straight back to Postfix, over SMTP on its
//! `chatmail-reinject` service, which queues them for Postfix's own SMTP
//! client; only once Postfix has taken them are they answered 250. When
//! neither works they are answered 4xx, and Postfix retries the whole
//! attempt later. So a message never lives only in our memory, the SMTP
//! fallback needs no queue retry, and a relay whose port 25 is blocked
//! never parks mail in an SMTP-only queue.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use chatmail_net::{Listener, Stream};
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use hyper::body::Bytes;
use tokio::io::{AsyncWriteExt, BufReader};

use crate::postfix::{Client, SmtpTarget};
use crate::routes::{Memory, domain_of};
use crate::wire::{self, DotStuffer, Reply, WireError};

/// One HTTPS request may take this long.
pub const HTTPS_TIMEOUT: Duration = Duration::from_secs(60);
/// After an LMTP command, the next must come within this.
const IDLE: Duration = Duration::from_secs(300);
/// How long a test connection to a destination's SMTP port may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How the agent runs.
#[derive(Clone)]
pub struct Options {
    /// The largest message accepted.
    pub max_message_size: u64,
    /// Our name in the LMTP greeting.
    pub name: String,
    /// Postfix's `chatmail-reinject` smtpd, which queues mail for its SMTP
    /// client.
    pub reinject: SmtpTarget,
    /// MX lookups.
    pub resolver: Arc<TokioResolver>,
}

/// Serves LMTP on `listener` until `shutdown`.
///
/// # Errors
///
/// When the HTTPS clients cannot be built.
pub async fn run(
    listener: Listener,
    memory: Arc<Memory>,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let clients = Arc::new(Clients::new()?);
    let serve = move |stream, _stop| {
        let agent = Agent {
            memory: Arc::clone(&memory),
            opts: opts.clone(),
            clients: Arc::clone(&clients),
        };
        async move {
            if let Err(e) = agent.session(stream).await {
                tracing::debug!("LMTP session: {e}");
            }
        }
    };
    // Postfix runs at most 50 `chatmail-https` processes (master.cf).
    chatmail_net::serve_connections(listener, "transport", 128, shutdown, serve).await;
    Ok(())
}

/// Two HTTPS clients: one verifying certificates, one for test relays
/// (domains starting with `_`, IP literals) that have self-signed ones.
struct Clients {
    verified: reqwest::Client,
    test_relays: reqwest::Client,
}

impl Clients {
    fn new() -> io::Result<Clients> {
        let build = |insecure: bool| {
            reqwest::Client::builder()
                .timeout(HTTPS_TIMEOUT)
                .connect_timeout(Duration::from_secs(20))
                .redirect(reqwest::redirect::Policy::none())
                .tls_danger_accept_invalid_certs(insecure)
                .user_agent(concat!("chatmail-helpers/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(io::Error::other)
        };
        Ok(Clients {
            verified: build(false)?,
            test_relays: build(true)?,
        })
    }
}

struct Agent {
    memory: Arc<Memory>,
    opts: Options,
    clients: Arc<Clients>,
}

/// One message as LMTP delivered it.
#[derive(Debug, Default)]
struct Transaction {
    from: Option<String>,
    to: Vec<String>,
}

impl Agent {
    async fn session(&self, stream: Stream) -> Result<(), WireError> {
        let mut io = BufReader::new(stream);
        let mut queue_id: Option<String> = None;
        let mut tx = Transaction::default();
        self.send(
            &mut io,
            &Reply::new(220, &format!("{} LMTP", self.opts.name)),
        )
        .await?;
        loop {
            let line = match tokio::time::timeout(IDLE, wire::read_line(&mut io)).await {
                Err(_) => return Ok(()),
                Ok(line) => line?,
            };
            let Some(line) = line else {
                return Ok(());
            };
            let line = String::from_utf8_lossy(&line).into_owned();
            let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
            let reply = match verb.to_ascii_uppercase().as_str() {
                "LHLO" => Reply {
                    code: 250,
                    lines: vec![
                        self.opts.name.clone(),
                        "PIPELINING".into(),
                        "ENHANCEDSTATUSCODES".into(),
                        "8BITMIME".into(),
                        format!("SIZE {}", self.opts.max_message_size),
                        "XFORWARD NAME ADDR PROTO HELO IDENT".into(),
                    ],
                },
                "XFORWARD" => {
                    for attr in arg.split_ascii_whitespace() {
                        if let Some(id) = attr.strip_prefix("IDENT=") {
                            queue_id = Some(id.to_owned()).filter(|id| is_queue_id(id));
                        }
                    }
                    Reply::new(250, "2.0.0 Ok")
                }
                "MAIL" => match path(arg, "FROM:") {
                    Some(from) if tx.from.is_none() => {
                        tx.from = Some(from);
                        Reply::new(250, "2.1.0 Ok")
                    }
                    Some(_) => Reply::new(503, "5.5.1 nested MAIL"),
                    None => Reply::new(501, "5.5.4 bad MAIL FROM"),
                },
                "RCPT" => match path(arg, "TO:") {
                    _ if tx.from.is_none() => Reply::new(503, "5.5.1 MAIL first"),
                    Some(to) if !to.is_empty() && tx.to.len() < 1000 => {
                        tx.to.push(to);
                        Reply::new(250, "2.1.5 Ok")
                    }
                    _ => Reply::new(501, "5.5.4 bad RCPT TO"),
                },
                "DATA" if tx.to.is_empty() => Reply::new(503, "5.5.1 RCPT first"),
                "DATA" => {
                    self.send(&mut io, &Reply::new(354, "go ahead")).await?;
                    let body = wire::read_dotted(&mut io, self.opts.max_message_size).await;
                    let tx = std::mem::take(&mut tx);
                    let replies = match body {
                        Ok(body) => {
                            self.deliver(&tx, Bytes::from(body), queue_id.as_deref())
                                .await
                        }
                        Err(WireError::TooBig(_)) => {
                            vec![Reply::new(552, "5.3.4 message too big"); tx.to.len()]
                        }
                        Err(e) => return Err(e),
                    };
                    for r in &replies {
                        io.get_mut().write_all(&r.encode()).await?;
                    }
                    io.get_mut().flush().await?;
                    continue;
                }
                "RSET" => {
                    tx = Transaction::default();
                    Reply::new(250, "2.0.0 Ok")
                }
                "NOOP" => Reply::new(250, "2.0.0 Ok"),
                "QUIT" => {
                    self.send(&mut io, &Reply::new(221, "2.0.0 Bye")).await?;
                    return Ok(());
                }
                _ => Reply::new(500, "5.5.2 unknown command"),
            };
            self.send(&mut io, &reply).await?;
        }
    }

    async fn send(&self, io: &mut BufReader<Stream>, reply: &Reply) -> Result<(), WireError> {
        io.get_mut().write_all(&reply.encode()).await?;
        Ok(())
    }

    /// Delivers `body` to every recipient of `tx`, each recipient domain
    /// at once, and returns one reply per recipient in order.
    async fn deliver(&self, tx: &Transaction, body: Bytes, queue_id: Option<&str>) -> Vec<Reply> {
        let from = tx.from.clone().unwrap_or_default();
        let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, rcpt) in tx.to.iter().enumerate() {
            by_domain.entry(domain_of(rcpt)).or_default().push(i);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (domain, idx) in by_domain {
            let rcpts: Vec<String> = idx.iter().map(|&i| tx.to[i].clone()).collect();
            let job = Job {
                memory: Arc::clone(&self.memory),
                clients: Arc::clone(&self.clients),
                opts: self.opts.clone(),
                domain,
                from: from.clone(),
                rcpts,
                body: body.clone(),
                queue_id: queue_id.unwrap_or("-").to_owned(),
            };
            tasks.spawn(async move { (idx, job.run().await) });
        }
        let mut replies = vec![Reply::new(451, "4.3.0 not attempted"); tx.to.len()];
        while let Some(done) = tasks.join_next().await {
            let Ok((idx, domain_replies)) = done else {
                continue;
            };
            for (i, reply) in idx.into_iter().zip(domain_replies) {
                replies[i] = reply;
            }
        }
        replies
    }
}

/// The recipients of one domain in one message.
struct Job {
    memory: Arc<Memory>,
    clients: Arc<Clients>,
    opts: Options,
    domain: String,
    from: String,
    rcpts: Vec<String>,
    body: Bytes,
    queue_id: String,
}

impl Job {
    /// One reply per recipient.
    async fn run(self) -> Vec<Reply> {
        let all = |r: Reply| vec![r; self.rcpts.len()];
        let settings = self.memory.settings();
        let peer = self.memory.peer(&self.domain);
        if settings.peers_only && peer.is_none() {
            return all(Reply::new(
                550,
                "5.1.2 this relay delivers only to its peers",
            ));
        }
        let https_possible = settings.https_first && peer.is_none_or(|p| p.https.is_some());
        let dests = destinations(&self.memory, &self.opts.resolver, &self.domain).await;
        let mut why = String::from("SMTP only for now");
        if https_possible && !self.memory.smtp_only(&self.domain) {
            match &dests {
                Ok(d) => {
                    match post(&self.clients, d, &self.from, &self.rcpts, self.body.clone()).await {
                        Ok(host) => {
                            tracing::info!(
                                "{} from=<{}> to={}: delivered over HTTPS to {host}",
                                self.queue_id,
                                self.from,
                                self.rcpts.join(",")
                            );
                            return all(Reply::new(
                                250,
                                &format!("2.0.0 delivered over HTTPS to {host}"),
                            ));
                        }
                        Err(e) => why = e,
                    }
                }
                Err(e) => why.clone_from(e),
            }
        }
        // SMTP, through Postfix, but only when the destination answers:
        // otherwise the message would wait in Postfix's queue for SMTP
        // alone, while HTTPS may work again at the next attempt.
        let reachable = match &dests {
            Ok(d) => smtp_reachable(d).await,
            Err(_) => false,
        };
        if !reachable {
            self.memory.smtp_failed(&self.domain);
            tracing::info!(
                "{} from=<{}> to={}: deferred, not over HTTPS ({why}) and no SMTP server answers",
                self.queue_id,
                self.from,
                self.rcpts.join(",")
            );
            return all(Reply::new(
                451,
                &format!("4.4.0 {}: {why}; no SMTP server answers", self.domain),
            ));
        }
        let replies = self.reinject().await;
        tracing::info!(
            "{} from=<{}> to={}: not over HTTPS ({why}), to Postfix's SMTP client: {}",
            self.queue_id,
            self.from,
            self.rcpts.join(","),
            replies
                .iter()
                .map(Reply::one_line)
                .collect::<Vec<_>>()
                .join("; ")
        );
        replies
    }

    /// Hands the recipients back to Postfix for its SMTP client; one reply
    /// per recipient, 250 once Postfix has queued them.
    async fn reinject(&self) -> Vec<Reply> {
        match self.reinject_inner().await {
            Ok(replies) => replies,
            Err(e) => {
                tracing::warn!("{}: chatmail-reinject: {e}", self.queue_id);
                vec![Reply::new(451, "4.3.0 Postfix's SMTP queue is unavailable"); self.rcpts.len()]
            }
        }
    }

    async fn reinject_inner(&self) -> Result<Vec<Reply>, WireError> {
        let mut smtp = Client::connect(&self.opts.reinject).await?;
        smtp.expect(220).await?;
        smtp.command(&format!("EHLO {}", self.opts.name)).await?;
        smtp.expect(250).await?;
        smtp.command(&format!("MAIL FROM:<{}>", self.from)).await?;
        let mail = smtp.reply().await?;
        if !mail.is_positive() {
            return Ok(vec![transient(mail); self.rcpts.len()]);
        }
        let mut replies = Vec::new();
        for r in &self.rcpts {
            smtp.command(&format!("RCPT TO:<{r}>")).await?;
            replies.push(smtp.reply().await?);
        }
        if !replies.iter().any(Reply::is_positive) {
            let _ = smtp.command("QUIT").await;
            return Ok(replies.into_iter().map(transient).collect());
        }
        smtp.command("DATA").await?;
        smtp.expect(354).await?;
        // In pieces: the message is already held once, not twice.
        let mut out = Vec::new();
        let mut stuffer = DotStuffer::default();
        for piece in self.body.chunks(64 * 1024) {
            out.clear();
            stuffer.encode(piece, &mut out);
            smtp.write(&out).await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        smtp.write(&out).await?;
        let done = smtp.reply().await?;
        let _ = smtp.command("QUIT").await;
        Ok(replies
            .into_iter()
            .map(|r| {
                if r.is_positive() {
                    transient(done.clone())
                } else {
                    transient(r)
                }
            })
            .collect())
    }
}

/// Postfix's answer as our reply to its LMTP client. A refusal by our own
/// Postfix's re-injection service is never final for the message (it was
/// accepted once already): it becomes a 4xx.
fn transient(reply: Reply) -> Reply {
    if reply.is_positive() {
        return Reply::new(250, &format!("2.0.0 queued for SMTP: {}", reply.one_line()));
    }
    Reply::new(
        451,
        &format!("4.3.0 not queued for SMTP: {}", reply.one_line()),
    )
}

/// Where one domain's mail goes: its MX hosts (or a peer's addresses) in
/// order.
#[derive(Debug, Clone)]
struct Destinations {
    /// `host[:port]` of each HTTPS server.
    https: Vec<String>,
    /// `host:port` of each SMTP server.
    smtp: Vec<String>,
    /// The certificates go unverified (test relays).
    insecure: bool,
}

/// Whether any SMTP server of `dests` accepts a connection.
async fn smtp_reachable(dests: &Destinations) -> bool {
    for addr in &dests.smtp {
        let connect = tokio::net::TcpStream::connect(addr.as_str());
        if let Ok(Ok(_)) = tokio::time::timeout(PROBE_TIMEOUT, connect).await {
            return true;
        }
    }
    false
}

/// Whether `s` looks like a Postfix queue id (never passed to a command
/// otherwise).
fn is_queue_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The address of `MAIL FROM:<a>` or `RCPT TO:<a>` (parameters ignored).
fn path(arg: &str, prefix: &str) -> Option<String> {
    let rest = arg.get(..prefix.len())?;
    if !rest.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    let inner = rest.strip_prefix('<')?;
    let (addr, _) = inner.split_once('>')?;
    wire::path_arg(addr).ok().map(str::to_owned)
}

/// Where `domain`'s mail goes, in order: its MX hosts (the domain itself
/// without MX records), an address literal's address, or a peer's fixed
/// addresses.
async fn destinations(
    memory: &Memory,
    resolver: &TokioResolver,
    domain: &str,
) -> Result<Destinations, String> {
    if let Some(peer) = memory.peer(domain) {
        return Ok(Destinations {
            https: peer.https.iter().cloned().collect(),
            smtp: vec![peer.smtp.replacen('[', "", 1).replacen(']', "", 1)],
            insecure: true,
        });
    }
    if let Some(ip) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let ip = ip.strip_prefix("ipv6:").unwrap_or(ip);
        let ip: std::net::IpAddr = ip.parse().map_err(|_| "bad address literal".to_owned())?;
        let host = match ip {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        };
        return Ok(Destinations {
            smtp: vec![format!("{host}:25")],
            https: vec![host],
            insecure: true,
        });
    }
    let insecure = domain.starts_with('_');
    let hosts = match resolver.mx_lookup(format!("{domain}.")).await {
        Ok(mx) => {
            let mut hosts: Vec<(u16, String)> = mx
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((
                        mx.preference,
                        mx.exchange.to_string().trim_end_matches('.').to_owned(),
                    )),
                    _ => None,
                })
                .collect();
            hosts.sort();
            if hosts.iter().any(|(_, h)| h.is_empty()) {
                return Err("null MX".into());
            }
            hosts.into_iter().map(|(_, h)| h).collect()
        }
        Err(e) if e.is_no_records_found() => vec![domain.to_owned()],
        Err(e) => return Err(format!("MX lookup: {e}")),
    };
    Ok(Destinations {
        smtp: hosts.iter().map(|h| format!("{h}:25")).collect(),
        https: hosts,
        insecure,
    })
}

/// POSTs to each HTTPS server of `dests` in turn; the host that took it.
async fn post(
    clients: &Clients,
    dests: &Destinations,
    from: &str,
    rcpts: &[String],
    body: Bytes,
) -> Result<String, String> {
    let client = if dests.insecure {
        &clients.test_relays
    } else {
        &clients.verified
    };
    let mut last = String::from("no HTTPS server");
    for host in &dests.https {
        let mut req = client
            .post(format!("https://{host}/mxdeliv"))
            .header(reqwest::header::CONTENT_TYPE, "message/rfc822");
        if !from.is_empty() {
            req = req.header(crate::incoming::HEADER_MAIL_FROM, from);
        }
        for r in rcpts {
            req = req.header(crate::incoming::HEADER_MAIL_TO, r);
        }
        match req.body(body.clone()).send().await {
            Ok(resp) if resp.status() == reqwest::StatusCode::OK => return Ok(host.clone()),
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                last = format!("{host} answered {} {}", status.as_u16(), printable(&text));
            }
            Err(e) => last = format!("{host}: {}", printable(&error_chain(&e))),
        }
    }
    Err(last)
}

/// `text` as it may go into an LMTP reply line: printable ASCII, one line,
/// at most 200 characters.
fn printable(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let cases = [
            ("FROM:<a@b.test>", "FROM:", Some("a@b.test")),
            (
                "from: <a@b.test> SIZE=10 BODY=8BITMIME",
                "FROM:",
                Some("a@b.test"),
            ),
            ("FROM:<>", "FROM:", Some("")),
            ("TO:<c@d.test> NOTIFY=NEVER", "TO:", Some("c@d.test")),
            ("TO:c@d.test", "TO:", None),
            ("FROM:<a b>", "FROM:", None),
            ("TO:", "TO:", None),
        ];
        for (arg, prefix, want) in cases {
            assert_eq!(path(arg, prefix).as_deref(), want, "{arg}");
        }
    }

    #[test]
    fn queue_ids() {
        assert!(is_queue_id("4F2A91B3C"));
        assert!(is_queue_id("4dQxyz1bXhz9t"));
        assert!(!is_queue_id("-rf"));
        assert!(!is_queue_id(""));
        assert!(!is_queue_id("a;b"));
    }
}
