//! Per-connection state: what one SMTP session has told us about the
//! current message (envelope, headers, body), and the decision at its end
//! through the rules of `chatmail_e2ee`, made by the [`Filter`] all
//! sessions share. Knows nothing of the milter protocol;
//! [`crate::callbacks`] drives it.
//!
//! Every byte buffered is paid for from the process-wide [`Budget`] first
//! (see [`crate::budget`]); the reservation travels with the message into
//! its decision and is returned when the decision is made, the message is
//! aborted or refused, or the session is dropped with the connection.

use std::sync::Arc;

use chatmail_config::Config;
use chatmail_e2ee::{Direction, Envelope, Passthrough, Reply, Verdict};
use chatmail_mailbox::Store;

use crate::budget::{Budget, Limits, Meter, Reservation};
use crate::{MESSAGE_TOO_BIG, TEMPFAIL};

/// Too many header fields, or too many bytes of them: no mail we need to
/// pass has more than a few dozen fields.
pub const HEADER_TOO_BIG: Reply = Reply::new(552, "5.3.4", "Message header exceeds fixed limit");

/// The most top-level header fields a message may have.
pub const MAX_HEADER_FIELDS: usize = 1000;
/// The most bytes its top-level header may have (Postfix's
/// `header_size_limit` is 100 KiB per field).
pub const MAX_HEADER_BYTES: usize = 1024 * 1024;

/// The encryption filter shared by all sessions: the configuration, the
/// mailbox store (whose recipients may refuse cleartext) and the memory
/// budget; it judges each finished message.
#[derive(Debug)]
pub struct Filter {
    config: Arc<Config>,
    store: Store,
    budget: Budget,
}

impl Filter {
    /// The filter for `config`, with the memory budget sized for its
    /// `max_message_size` ([`Limits::for_max_message_size`]).
    pub fn new(config: Arc<Config>) -> Filter {
        let limits = Limits::for_max_message_size(
            usize::try_from(config.max_message_size).unwrap_or(usize::MAX),
        );
        Filter::with_limits(config, limits)
    }

    /// The filter for `config` with a memory budget of these sizes.
    pub fn with_limits(config: Arc<Config>, limits: Limits) -> Filter {
        let store = Store::new(config.mailboxes_dir.clone(), config.address_domain());
        Filter {
            config,
            store,
            budget: Budget::new(limits),
        }
    }

    /// The memory budget all sessions draw from.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The largest message we buffer, in bytes.
    pub fn max_message_size(&self) -> usize {
        usize::try_from(self.config.max_message_size).unwrap_or(usize::MAX)
    }

    /// Whether any recipient is a local address that refuses cleartext.
    ///
    /// Non-local recipients do not count (their servers decide). A local
    /// address we cannot even name safely counts as enforcing, and so does
    /// the base address of a `local+ext` extension: with Postfix's
    /// `recipient_delimiter` set, that is the mailbox the mail would land in.
    pub fn enforce_for_any_recipient(&self, recipients: &[String]) -> bool {
        let domain = self.store.domain();
        recipients.iter().any(|rcpt| {
            let rcpt = rcpt.to_ascii_lowercase();
            let Some((local, rdomain)) = rcpt.rsplit_once('@') else {
                // An address without a domain is local to Postfix.
                return true;
            };
            if !rdomain.eq_ignore_ascii_case(domain) {
                return false;
            }
            let mut candidates = vec![format!("{local}@{domain}")];
            if let Some((base, _)) = local.split_once('+')
                && !base.is_empty()
            {
                candidates.push(format!("{base}@{domain}"));
            }
            candidates
                .iter()
                .any(|addr| match self.store.mailbox(addr) {
                    Ok(mailbox) => mailbox.enforce_e2ee_incoming(),
                    Err(_) => true,
                })
        })
    }

    /// Applies the rules to a finished message.
    pub fn decide(&self, msg: &MessageData) -> Verdict {
        let passthrough = Passthrough {
            senders: &self.config.passthrough_senders,
            recipients: &self.config.passthrough_recipients,
        };
        let env = Envelope {
            direction: msg.direction,
            sender: &msg.sender,
            recipients: &msg.recipients,
            auth_login: msg.auth_login.as_deref(),
        };
        match msg.direction {
            Direction::Outgoing => chatmail_e2ee::check_outgoing(&env, &msg.raw, &passthrough),
            Direction::Incoming => {
                let enforce = self.enforce_for_any_recipient(&msg.recipients);
                chatmail_e2ee::check_incoming(&env, &msg.raw, enforce)
            }
        }
    }
}

/// The envelope and content of the message in progress.
#[derive(Debug, Clone)]
pub struct MessageData {
    /// Outgoing when the session is authenticated.
    pub direction: Direction,
    /// MAIL FROM without angle brackets.
    pub sender: String,
    /// RCPT TO addresses without angle brackets.
    pub recipients: Vec<String>,
    /// The SASL login, if any.
    pub auth_login: Option<String>,
    /// The message as received: header lines, blank line, body (CRLF).
    pub raw: Vec<u8>,
}

/// A message being collected, with what it holds from the budget.
#[derive(Debug)]
struct Collecting {
    data: MessageData,
    /// The size announced with `SIZE=` in MAIL FROM, if any.
    declared_size: Option<usize>,
    /// What the message and its decision are estimated to cost.
    meter: Meter,
    /// Taken at the first header; `None` until then.
    reservation: Option<Reservation>,
    /// Top-level header fields so far.
    header_fields: usize,
}

/// Where the message in progress stands.
#[derive(Debug, Default)]
enum State {
    /// Between messages (after connect, RSET or the end of a message).
    #[default]
    Idle,
    /// Collecting a message (boxed: one per connection, and the other
    /// states are small).
    Collecting(Box<Collecting>),
    /// The message was refused before its end (too big, no memory for
    /// it); its content was dropped and its budget returned.
    Refused(Reply),
}

/// A finished message, ready for its decision.
#[derive(Debug)]
pub struct Finished {
    /// The message.
    pub msg: MessageData,
    /// What it holds from the budget, its decision included: keep it until
    /// the decision is made.
    pub reservation: Option<Reservation>,
}

/// One SMTP connection's state.
#[derive(Debug, Default)]
pub struct Session {
    state: State,
}

/// Strips the angle brackets of an SMTP path (`<a@b>` → `a@b`, `<>` → ``).
pub fn strip_path(arg: &str) -> &str {
    let arg = arg.trim();
    arg.strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(arg)
}

impl Session {
    /// A new session with no message in progress.
    pub fn new() -> Session {
        Session::default()
    }

    /// MAIL FROM: starts a new message, discarding anything left over.
    /// `esmtp_args` are the MAIL FROM parameters (`SIZE=123`, ...).
    pub fn mail(&mut self, sender: &str, auth_login: Option<&str>, esmtp_args: &[String]) {
        let auth_login = auth_login.filter(|l| !l.is_empty()).map(str::to_owned);
        self.state = State::Collecting(Box::new(Collecting {
            data: MessageData {
                direction: if auth_login.is_some() {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                },
                sender: strip_path(sender).to_owned(),
                recipients: Vec::new(),
                auth_login,
                raw: Vec::new(),
            },
            declared_size: declared_size(esmtp_args),
            meter: Meter::default(),
            reservation: None,
            header_fields: 0,
        }));
    }

    /// RCPT TO (only recipients Postfix accepted are passed to milters).
    pub fn rcpt(&mut self, recipient: &str) {
        if let State::Collecting(c) = &mut self.state {
            c.data.recipients.push(strip_path(recipient).to_owned());
        }
    }

    /// One header field. `value` is as Postfix sent it: with its leading
    /// space when `leading_space` was negotiated, else with it stripped;
    /// folded lines are separated by LF.
    ///
    /// # Errors
    /// The reply to give when the message is refused now: over
    /// `max_message_size`, over the header bounds, or no budget for it.
    pub async fn header(
        &mut self,
        filter: &Filter,
        name: &[u8],
        value: &[u8],
        leading_space: bool,
    ) -> Result<(), Reply> {
        let mut line = Vec::with_capacity(name.len() + value.len() + 4);
        line.extend_from_slice(name);
        line.push(b':');
        if !leading_space {
            line.push(b' ');
        }
        push_crlf_normalized(&mut line, value);
        line.extend_from_slice(b"\r\n");
        if let State::Collecting(c) = &mut self.state {
            c.header_fields += 1;
            if c.header_fields > MAX_HEADER_FIELDS
                || c.data.raw.len().saturating_add(line.len()) > MAX_HEADER_BYTES
            {
                return Err(self.refuse(HEADER_TOO_BIG));
            }
        }
        self.append(filter, &line).await
    }

    /// End of headers: the blank line.
    ///
    /// # Errors
    /// As [`Session::header`].
    pub async fn end_of_headers(&mut self, filter: &Filter) -> Result<(), Reply> {
        self.append(filter, b"\r\n").await
    }

    /// A body chunk, verbatim (Postfix sends CRLF line endings).
    ///
    /// # Errors
    /// As [`Session::header`].
    pub async fn body(&mut self, filter: &Filter, chunk: &[u8]) -> Result<(), Reply> {
        self.append(filter, chunk).await
    }

    /// Appends `bytes` once the budget holds what the message will cost
    /// with them; may wait for budget (see [`crate::budget`]).
    async fn append(&mut self, filter: &Filter, bytes: &[u8]) -> Result<(), Reply> {
        let limit = filter.max_message_size();
        let c = match &mut self.state {
            State::Collecting(c) => c,
            State::Refused(reply) => return Err(*reply),
            // Content without MAIL FROM: nothing sane to decide on.
            State::Idle => return Err(TEMPFAIL),
        };
        if c.data.raw.len().saturating_add(bytes.len()) > limit {
            return Err(self.refuse(MESSAGE_TOO_BIG));
        }
        let budget = filter.budget();
        if c.reservation.is_none() {
            match budget.allowance().await {
                Ok(r) => c.reservation = Some(r),
                Err(reply) => return Err(self.refuse(reply)),
            }
        }
        let Some(reservation) = c.reservation.as_mut() else {
            return Err(self.refuse(TEMPFAIL));
        };
        // The size the message will end at when its `SIZE=` was honest,
        // with slack for Postfix's own Received field and line endings.
        let declared = c
            .declared_size
            .map(|s| s.saturating_add(s / 16 + 16 * 1024).min(limit));
        let total = declared.unwrap_or(limit);
        let need = c.meter.cost_with(bytes);
        let had_block = reservation.has_block();
        if let Err(reply) = budget
            .ensure(
                reservation,
                need,
                declared.map(|d| c.meter.expected_cost(d)),
            )
            .await
        {
            return Err(self.refuse(reply));
        }
        let State::Collecting(c) = &mut self.state else {
            return Err(TEMPFAIL);
        };
        if !had_block && c.reservation.as_ref().is_some_and(Reservation::has_block) {
            // Room for the whole message at once: no doubling copies.
            // Pages not yet written to cost no memory.
            let want = total.max(c.data.raw.len() + bytes.len());
            c.data.raw.reserve_exact(want - c.data.raw.len());
        }
        c.meter.scan(bytes);
        c.data.raw.extend_from_slice(bytes);
        Ok(())
    }

    /// Refuses the message in progress with `reply`: its content and budget
    /// go now, and whatever Postfix still sends of it gets the same reply.
    fn refuse(&mut self, reply: Reply) -> Reply {
        self.state = State::Refused(reply);
        reply
    }

    /// End of message: hands over the collected message and resets, so the
    /// next message on this connection starts clean.
    ///
    /// # Errors
    /// The reply to give when there is no complete message to decide on.
    pub fn finish(&mut self) -> Result<Finished, Reply> {
        match std::mem::take(&mut self.state) {
            State::Collecting(c) => {
                let c = *c;
                Ok(Finished {
                    msg: c.data,
                    reservation: c.reservation,
                })
            }
            State::Refused(reply) => Err(reply),
            State::Idle => Err(TEMPFAIL),
        }
    }

    /// ABORT (RSET, or the SMTP client went away mid-message).
    pub fn abort(&mut self) {
        self.state = State::Idle;
    }

    /// The sender of the message in progress, for logs.
    pub fn sender(&self) -> Option<&str> {
        match &self.state {
            State::Collecting(c) => Some(&c.data.sender),
            _ => None,
        }
    }
}

/// The `SIZE=` parameter of MAIL FROM (RFC 1870), if present and a number.
fn declared_size(esmtp_args: &[String]) -> Option<usize> {
    esmtp_args.iter().find_map(|a| {
        let (key, value) = a.split_once('=')?;
        if key.eq_ignore_ascii_case("SIZE") {
            value.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Appends `value`, turning bare LFs (Postfix's header folding) into CRLF.
fn push_crlf_normalized(out: &mut Vec<u8>, value: &[u8]) {
    let mut prev = 0u8;
    for &b in value {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget;

    #[test]
    fn paths() {
        assert_eq!(strip_path("<a@b.example>"), "a@b.example");
        assert_eq!(strip_path("<>"), "");
        assert_eq!(strip_path("a@b.example"), "a@b.example");
        assert_eq!(strip_path(" <a@b> "), "a@b");
    }

    fn filter_with(max_message_size: u64, limits: Limits) -> (tempfile::TempDir, Filter) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::for_tests("chat.example", dir.path());
        config.max_message_size = max_message_size;
        (dir, Filter::with_limits(Arc::new(config), limits))
    }

    fn small_limits() -> Limits {
        Limits {
            allowance: 1024,
            small: 2048,
            large: 256 * 1024,
            first_block: 64 * 1024,
            lane: 256 * 1024,
            wait: std::time::Duration::from_millis(100),
        }
    }

    #[tokio::test]
    async fn reconstruction() {
        let (_dir, filter) = filter_with(1000, Limits::for_max_message_size(1000));
        let mut s = Session::new();
        s.mail("<a@x.example>", Some("a@x.example"), &[]);
        s.rcpt("<b@y.example>");
        s.header(&filter, b"From", b" <a@x.example>", true)
            .await
            .unwrap();
        s.header(&filter, b"Subject", b"folded\n\tline", false)
            .await
            .unwrap();
        s.end_of_headers(&filter).await.unwrap();
        s.body(&filter, b"hello\r\n").await.unwrap();
        let f = s.finish().unwrap();
        let m = f.msg;
        assert_eq!(
            m.raw,
            b"From: <a@x.example>\r\nSubject: folded\r\n\tline\r\n\r\nhello\r\n"
        );
        assert_eq!(m.direction, Direction::Outgoing);
        assert_eq!(m.sender, "a@x.example");
        assert_eq!(m.recipients, ["b@y.example"]);
        assert!(f.reservation.is_some_and(|r| r.bytes() >= m.raw.len()));
        // Finished: the next message must start with MAIL FROM.
        assert_eq!(s.finish().unwrap_err(), TEMPFAIL);
        assert_eq!(filter.budget().in_use(), 0);
    }

    #[tokio::test]
    async fn size_limit_and_reset() {
        let (_dir, filter) = filter_with(10, Limits::for_max_message_size(10));
        let mut s = Session::new();
        s.mail("<>", None, &[]);
        s.body(&filter, b"12345").await.unwrap();
        s.body(&filter, b"12345").await.unwrap();
        assert!(filter.budget().in_use() > 0);
        assert_eq!(s.body(&filter, b"1").await, Err(MESSAGE_TOO_BIG));
        // Refused: the budget is back at once.
        assert_eq!(filter.budget().in_use(), 0);
        assert_eq!(s.body(&filter, b"1").await, Err(MESSAGE_TOO_BIG));
        assert_eq!(s.finish().unwrap_err(), MESSAGE_TOO_BIG);
        s.mail("<>", Some(""), &[]);
        assert_eq!(s.sender(), Some(""));
        s.body(&filter, b"x").await.unwrap();
        assert!(filter.budget().in_use() > 0);
        s.abort();
        assert_eq!(filter.budget().in_use(), 0);
        assert_eq!(s.sender(), None);
        assert_eq!(s.body(&filter, b"x").await, Err(TEMPFAIL));
    }

    #[tokio::test]
    async fn header_bounds() {
        let (_dir, filter) = filter_with(10 << 20, Limits::for_max_message_size(10 << 20));
        let mut s = Session::new();
        s.mail("<>", None, &[]);
        for _ in 0..MAX_HEADER_FIELDS {
            s.header(&filter, b"X", b"y", false).await.unwrap();
        }
        assert_eq!(
            s.header(&filter, b"X", b"y", false).await,
            Err(HEADER_TOO_BIG)
        );
        assert_eq!(s.end_of_headers(&filter).await, Err(HEADER_TOO_BIG));
        assert_eq!(filter.budget().in_use(), 0);
        s.mail("<>", None, &[]);
        let value = vec![b'v'; 100 * 1024];
        for _ in 0..10 {
            s.header(&filter, b"X", &value, false).await.unwrap();
        }
        assert_eq!(
            s.header(&filter, b"X", &value, false).await,
            Err(HEADER_TOO_BIG)
        );
        assert_eq!(filter.budget().in_use(), 0);
    }

    #[test]
    fn size_parameter() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let cases: &[(&[&str], Option<usize>)] = &[
            (&[], None),
            (&["SIZE=123"], Some(123)),
            (&["BODY=8BITMIME", "size=42"], Some(42)),
            (&["SIZE=x"], None),
            (&["SIZE"], None),
            (&["XSIZE=5"], None),
        ];
        for (a, want) in cases {
            assert_eq!(declared_size(&args(a)), *want, "{a:?}");
        }
    }

    #[tokio::test]
    async fn declared_size_sets_the_block() {
        let (_dir, filter) = filter_with(60_000, small_limits());
        let mut s = Session::new();
        // Without SIZE=, outgrowing the allowance takes a first block.
        s.mail("<>", None, &[]);
        s.body(&filter, &[b'A'; 2000]).await.unwrap();
        assert_eq!(filter.budget().in_use(), small_limits().first_block);
        // With SIZE=, the cost of the declared size (and some slack).
        s.mail("<>", None, &["SIZE=20000".to_owned()]);
        assert_eq!(filter.budget().in_use(), 0);
        s.body(&filter, &[b'A'; 2000]).await.unwrap();
        let used = filter.budget().in_use();
        assert!(used >= Meter::cost_of_size(20_000), "{used}");
        // A lying SIZE= grows while memory is free.
        s.body(&filter, &[b'A'; 55_000]).await.unwrap();
        assert!(filter.budget().in_use() >= Meter::cost_of_size(57_000));
        let f = s.finish().unwrap();
        assert_eq!(f.msg.raw.len(), 57_000);
        drop(f);
        assert_eq!(filter.budget().in_use(), 0);
    }

    #[tokio::test]
    async fn costly_structure_is_refused_when_it_can_never_fit() {
        let (_dir, filter) = filter_with(60_000, small_limits());
        let mut s = Session::new();
        s.mail("<>", None, &[]);
        // 513 KiB of budget for one message cannot decide on 600 parts.
        let parts = b"--b\r\n\r\n".repeat(600);
        assert_eq!(s.body(&filter, &parts).await, Err(budget::TOO_COSTLY));
        assert_eq!(filter.budget().in_use(), 0);
        // The same bytes as base64 are fine.
        s.mail("<>", None, &[]);
        s.body(&filter, &[b'Q'; 1400]).await.unwrap();
    }

    #[test]
    fn enforcement() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::for_tests("chat.example", dir.path());
        for (addr, enforce) in [("strict@chat.example", true), ("open@chat.example", false)] {
            let d = dir.path().join(addr);
            std::fs::create_dir_all(&d).unwrap();
            if enforce {
                std::fs::write(d.join("enforceE2EEincoming"), b"").unwrap();
            }
        }
        let filter = Filter::new(Arc::new(config));
        let cases: &[(&[&str], bool)] = &[
            (&["strict@chat.example"], true),
            (&["STRICT@Chat.Example"], true),
            (&["strict+tag@chat.example"], true),
            (&["open@chat.example"], false),
            (&["open@chat.example", "strict@chat.example"], true),
            (&["nobody@chat.example"], false),
            (&["strict@other.example"], false),
            (&["../strict@chat.example"], true),
            (&["postmaster"], true),
            (&[], false),
        ];
        for (rcpts, want) in cases {
            let rcpts: Vec<String> = rcpts.iter().map(|s| (*s).to_owned()).collect();
            assert_eq!(filter.enforce_for_any_recipient(&rcpts), *want, "{rcpts:?}");
        }
    }
}
