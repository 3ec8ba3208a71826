//! Per-connection policy state: what one SMTP session has told us about
//! the current message (envelope, headers, body), and the decision at its
//! end through the rules of `chatmail_e2ee`. Knows nothing of the milter
//! protocol; [`crate::callbacks`] drives it.

use std::sync::Arc;

use chatmail_config::Config;
use chatmail_e2ee::{Direction, Envelope, Passthrough, Reply, Verdict};
use chatmail_mailbox::Store;

use crate::{MESSAGE_TOO_BIG, TEMPFAIL};

/// What the milter needs from the configuration, shared by all sessions.
#[derive(Debug)]
pub struct Policy {
    config: Arc<Config>,
    store: Store,
}

impl Policy {
    /// The policy for `config`.
    pub fn new(config: Arc<Config>) -> Policy {
        let store = Store::new(config.mailboxes_dir.clone(), config.address_domain());
        Policy { config, store }
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

/// Where the message in progress stands.
#[derive(Debug, Default)]
enum State {
    /// Between messages (after connect, RSET or the end of a message).
    #[default]
    Idle,
    /// Collecting a message.
    Collecting(MessageData),
    /// The message outgrew the limit; its content was dropped.
    TooBig,
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
    pub fn mail(&mut self, sender: &str, auth_login: Option<&str>) {
        let auth_login = auth_login.filter(|l| !l.is_empty()).map(str::to_owned);
        self.state = State::Collecting(MessageData {
            direction: if auth_login.is_some() {
                Direction::Outgoing
            } else {
                Direction::Incoming
            },
            sender: strip_path(sender).to_owned(),
            recipients: Vec::new(),
            auth_login,
            raw: Vec::new(),
        });
    }

    /// RCPT TO (only recipients Postfix accepted are passed to milters).
    pub fn rcpt(&mut self, recipient: &str) {
        if let State::Collecting(m) = &mut self.state {
            m.recipients.push(strip_path(recipient).to_owned());
        }
    }

    /// One header field. `value` is as Postfix sent it: with its leading
    /// space when `leading_space` was negotiated, else with it stripped;
    /// folded lines are separated by LF.
    ///
    /// # Errors
    /// The reply to give when the message is now over `limit` bytes.
    pub fn header(
        &mut self,
        name: &[u8],
        value: &[u8],
        leading_space: bool,
        limit: usize,
    ) -> Result<(), Reply> {
        let mut line = Vec::with_capacity(name.len() + value.len() + 4);
        line.extend_from_slice(name);
        line.push(b':');
        if !leading_space {
            line.push(b' ');
        }
        push_crlf_normalized(&mut line, value);
        line.extend_from_slice(b"\r\n");
        self.append(&line, limit)
    }

    /// End of headers: the blank line.
    ///
    /// # Errors
    /// As [`Session::header`].
    pub fn end_of_headers(&mut self, limit: usize) -> Result<(), Reply> {
        self.append(b"\r\n", limit)
    }

    /// A body chunk, verbatim (Postfix sends CRLF line endings).
    ///
    /// # Errors
    /// As [`Session::header`].
    pub fn body(&mut self, chunk: &[u8], limit: usize) -> Result<(), Reply> {
        self.append(chunk, limit)
    }

    fn append(&mut self, bytes: &[u8], limit: usize) -> Result<(), Reply> {
        match &mut self.state {
            State::Collecting(m) => {
                if m.raw.len().saturating_add(bytes.len()) > limit {
                    self.state = State::TooBig;
                    return Err(MESSAGE_TOO_BIG);
                }
                m.raw.extend_from_slice(bytes);
                Ok(())
            }
            State::TooBig => Err(MESSAGE_TOO_BIG),
            // Content without MAIL FROM: nothing sane to decide on.
            State::Idle => Err(TEMPFAIL),
        }
    }

    /// End of message: hands over the collected message and resets, so the
    /// next message on this connection starts clean.
    ///
    /// # Errors
    /// The reply to give when there is no complete message to decide on.
    pub fn finish(&mut self) -> Result<MessageData, Reply> {
        match std::mem::take(&mut self.state) {
            State::Collecting(m) => Ok(m),
            State::TooBig => Err(MESSAGE_TOO_BIG),
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
            State::Collecting(m) => Some(&m.sender),
            _ => None,
        }
    }
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

    #[test]
    fn paths() {
        assert_eq!(strip_path("<a@b.example>"), "a@b.example");
        assert_eq!(strip_path("<>"), "");
        assert_eq!(strip_path("a@b.example"), "a@b.example");
        assert_eq!(strip_path(" <a@b> "), "a@b");
    }

    #[test]
    fn reconstruction() {
        let mut s = Session::new();
        s.mail("<a@x.example>", Some("a@x.example"));
        s.rcpt("<b@y.example>");
        s.header(b"From", b" <a@x.example>", true, 1000).unwrap();
        s.header(b"Subject", b"folded\n\tline", false, 1000)
            .unwrap();
        s.end_of_headers(1000).unwrap();
        s.body(b"hello\r\n", 1000).unwrap();
        let m = s.finish().unwrap();
        assert_eq!(
            m.raw,
            b"From: <a@x.example>\r\nSubject: folded\r\n\tline\r\n\r\nhello\r\n"
        );
        assert_eq!(m.direction, Direction::Outgoing);
        assert_eq!(m.sender, "a@x.example");
        assert_eq!(m.recipients, ["b@y.example"]);
        // Finished: the next message must start with MAIL FROM.
        assert_eq!(s.finish().unwrap_err(), TEMPFAIL);
    }

    #[test]
    fn size_limit_and_reset() {
        let mut s = Session::new();
        s.mail("<>", None);
        s.body(b"12345", 10).unwrap();
        s.body(b"12345", 10).unwrap();
        assert_eq!(s.body(b"1", 10), Err(MESSAGE_TOO_BIG));
        assert_eq!(s.body(b"1", 10), Err(MESSAGE_TOO_BIG));
        assert_eq!(s.finish().unwrap_err(), MESSAGE_TOO_BIG);
        s.mail("<>", Some(""));
        assert_eq!(s.sender(), Some(""));
        s.abort();
        assert_eq!(s.sender(), None);
        assert_eq!(s.body(b"x", 10), Err(TEMPFAIL));
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
        let policy = Policy::new(Arc::new(config));
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
            assert_eq!(policy.enforce_for_any_recipient(&rcpts), *want, "{rcpts:?}");
        }
    }
}
