//! The two rules of `chatmail policy` (docs/design.md, "Outgoing mail" and
//! "Failure behaviour"), as plain functions and types without any protocol:
//! the per-user send rate limit and the check of local recipients.
//!
//! Replies are the typed constants and constructors below. Postfix puts
//! `<address>: Recipient address rejected: ` (or `<DATA>: Data command
//! rejected: `) in front of a policy's text itself (`check_table_result` in
//! `smtpd_check.c`), so the texts here are just the reason.

use std::io;
use std::num::NonZeroU32;

use chatmail_mailbox::{AddressError, Store};
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use postfix_policy::{Action, ReplyCode};

/// Code of the rate limit reply: temporary, "delivery not authorized".
pub const RATE_LIMITED: ReplyCode = ReplyCode::constant(450, 7, 1);
/// Code of the unknown local recipient reply: "bad destination mailbox".
pub const NO_SUCH_USER: ReplyCode = ReplyCode::constant(550, 1, 1);
/// Text of the unknown local recipient reply; the client sees
/// `550 5.1.1 <addr>: Recipient address rejected: no such user`.
pub const NO_SUCH_USER_TEXT: &str = "no such user";
/// Code of the reply to mail for a disabled address: "mailbox disabled,
/// not accepting messages" (RFC 3463).
pub const MAILBOX_DISABLED: ReplyCode = ReplyCode::constant(550, 2, 1);
/// Text of that reply.
pub const MAILBOX_DISABLED_TEXT: &str = "mailbox disabled";
/// Code of the reply to a disabled address sending: "delivery not
/// authorized".
pub const SENDER_DISABLED: ReplyCode = ReplyCode::constant(550, 7, 1);
/// Text of that reply.
pub const SENDER_DISABLED_TEXT: &str = "sending from this address is disabled";
/// Text when a check failed on our side; Postfix turns it into a 450.
pub const INTERNAL_ERROR_TEXT: &str = "internal error in the chatmail policy service";
/// Postfix's `recipient_delimiter` in the shipped main.cf: `user+ext@domain`
/// is delivered to `user@domain`, so it is checked as that.
pub const RECIPIENT_DELIMITER: char = '+';

/// The reply to a sender over the rate limit.
pub fn rate_limited(per_minute: u32) -> Action {
    Action::reply(
        RATE_LIMITED,
        format!("Rate limit exceeded: at most {per_minute} messages per minute"),
    )
}

/// The reply to an RCPT for a local address without an account.
pub fn no_such_user() -> Action {
    Action::reply(NO_SUCH_USER, NO_SUCH_USER_TEXT)
}

/// The reply to an RCPT for a disabled local address.
pub fn mailbox_disabled() -> Action {
    Action::reply(MAILBOX_DISABLED, MAILBOX_DISABLED_TEXT)
}

/// The reply to a disabled address sending (logged in before it was
/// disabled: a disabled address cannot log in).
pub fn sender_disabled() -> Action {
    Action::reply(SENDER_DISABLED, SENDER_DISABLED_TEXT)
}

/// Whether the SASL login `login` is a disabled address of this relay.
///
/// # Errors
///
/// An I/O error looking for the marker.
pub fn sender_is_disabled(store: &Store, login: &str) -> io::Result<bool> {
    match store.mailbox(login) {
        Ok(mailbox) => mailbox.is_disabled(),
        Err(_) => Ok(false),
    }
}

/// The reply when we could not decide (defer, never accept unchecked).
pub fn internal_error() -> Action {
    Action::defer_if_permit(INTERNAL_ERROR_TEXT)
}

/// Where a recipient address belongs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// Another domain (or no domain at all): not ours to judge.
    Foreign,
    /// Our domain; the address whose mailbox would receive the mail.
    Local(String),
}

/// Sorts `recipient` (as Postfix passes it, case preserved) into local or
/// foreign.
///
/// The domain is compared case-insensitively (DNS names are). A local
/// address is mapped to the mailbox Dovecot would deliver it to: the
/// localpart is lower-cased (Dovecot's default `auth_username_format = %Lu`
/// lower-cases the user before the userdb lookup, and every chatmail
/// account is lower case, so `Alice@x` reaches `alice@x`), and an extension
/// after [`RECIPIENT_DELIMITER`] is dropped, as Postfix and Dovecot do.
/// Refusing `Alice@x` would bounce mail that would be delivered.
pub fn classify_recipient(recipient: &str, address_domain: &str) -> Recipient {
    let Some((localpart, domain)) = recipient.rsplit_once('@') else {
        return Recipient::Foreign;
    };
    if !domain.eq_ignore_ascii_case(address_domain) {
        return Recipient::Foreign;
    }
    let base = localpart
        .split_once(RECIPIENT_DELIMITER)
        .map_or(localpart, |(base, _ext)| base);
    Recipient::Local(format!("{}@{address_domain}", base.to_ascii_lowercase()))
}

/// Whether a local address can receive mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not our domain.
    Foreign,
    /// An account exists.
    Exists,
    /// An account exists, but it is disabled (`DISABLED` marker).
    Disabled,
    /// Our domain, but no account (no or empty `password` file).
    NoSuchUser,
    /// Our domain, but no account could ever have this name.
    Invalid(AddressError),
}

/// Checks `recipient` against the mailbox store. Reads one small file for
/// local addresses.
///
/// # Errors
///
/// An I/O error reading the `password` file (other than "not found").
pub fn check_recipient(store: &Store, recipient: &str) -> io::Result<Verdict> {
    let addr = match classify_recipient(recipient, store.domain()) {
        Recipient::Foreign => return Ok(Verdict::Foreign),
        Recipient::Local(addr) => addr,
    };
    let mailbox = match store.mailbox(&addr) {
        Ok(m) => m,
        Err(e) => return Ok(Verdict::Invalid(e)),
    };
    Ok(match mailbox.password_hash()? {
        Some(_) if mailbox.is_disabled()? => Verdict::Disabled,
        Some(_) => Verdict::Exists,
        None => Verdict::NoSuchUser,
    })
}

type Keyed<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The per-user send rate limit: GCRA with `per_minute` messages per minute
/// and bursts of up to `burst`, keyed by the SASL login.
///
/// governor's keyed limiter is used as is: it implements GCRA with one
/// atomic word per key, takes an injectable clock (tests use
/// `FakeRelativeClock`), and its `retain_recent` drops exactly the keys whose
/// state equals a fresh one, which bounds memory without changing any
/// decision.
pub struct SendLimiter<C: Clock> {
    /// `None` when the limit is disabled.
    limiter: Option<Keyed<C>>,
    per_minute: u32,
}

impl<C: Clock> SendLimiter<C> {
    /// A limiter using `clock`. `per_minute = 0` disables the limit (a relay
    /// where nobody may send makes no sense, so 0 is read as "no limit");
    /// `burst = 0` is read as 1.
    pub fn new(per_minute: u32, burst: u32, clock: C) -> SendLimiter<C> {
        let limiter = NonZeroU32::new(per_minute).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
            RateLimiter::dashmap_with_clock(Quota::per_minute(rate).allow_burst(burst), clock)
        });
        SendLimiter {
            limiter,
            per_minute,
        }
    }

    /// Counts one message by `user` and says whether it may be sent. A
    /// refused message is not counted, so a client that keeps retrying gets
    /// through as soon as the rate allows. The login is lower-cased so that
    /// case variants of one account share one budget.
    pub fn allow(&self, user: &str) -> bool {
        match &self.limiter {
            Some(l) => l.check_key(&user.to_ascii_lowercase()).is_ok(),
            None => true,
        }
    }

    /// The configured rate, for the reply text.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Forgets users whose budget is full again (idle for `burst / rate`),
    /// so memory follows the number of recent senders, not of all senders.
    pub fn purge(&self) {
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// Users currently remembered.
    pub fn tracked(&self) -> usize {
        self.limiter.as_ref().map_or(0, Keyed::len)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn classify_table() {
        let d = "example.org";
        let cases = [
            (
                "bob@example.org",
                Recipient::Local("bob@example.org".into()),
            ),
            (
                "Bob@Example.ORG",
                Recipient::Local("bob@example.org".into()),
            ),
            (
                "bob+tag@example.org",
                Recipient::Local("bob@example.org".into()),
            ),
            (
                "bob+a+b@example.org",
                Recipient::Local("bob@example.org".into()),
            ),
            ("+tag@example.org", Recipient::Local("@example.org".into())),
            (
                "a@b@example.org",
                Recipient::Local("a@b@example.org".into()),
            ),
            ("bob@other.org", Recipient::Foreign),
            ("bob@sub.example.org", Recipient::Foreign),
            ("bob@example.org.evil", Recipient::Foreign),
            ("postmaster", Recipient::Foreign),
            ("", Recipient::Foreign),
        ];
        for (rcpt, want) in cases {
            assert_eq!(classify_recipient(rcpt, d), want, "{rcpt}");
        }
        assert_eq!(
            classify_recipient("x@[1.2.3.4]", "[1.2.3.4]"),
            Recipient::Local("x@[1.2.3.4]".into())
        );
    }

    #[test]
    fn check_recipient_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "example.org");
        store
            .mailbox("alice@example.org")
            .unwrap()
            .create("{SHA512-CRYPT}$6$salt$hash")
            .unwrap();
        // An empty password file blocks the address (as in chatmaild).
        let empty = store.mailbox("empty@example.org").unwrap();
        std::fs::create_dir_all(empty.dir()).unwrap();
        std::fs::write(empty.password_path(), "").unwrap();

        let cases = [
            ("alice@example.org", Verdict::Exists),
            ("ALICE@example.org", Verdict::Exists),
            ("alice+chat@EXAMPLE.org", Verdict::Exists),
            ("bob@example.org", Verdict::NoSuchUser),
            ("empty@example.org", Verdict::NoSuchUser),
            ("alice@other.org", Verdict::Foreign),
            (
                "..etc@example.org",
                Verdict::Invalid(AddressError::LeadingDot),
            ),
            (
                "../etc@example.org",
                Verdict::Invalid(AddressError::ForbiddenChar('/')),
            ),
            (
                "a/b@example.org",
                Verdict::Invalid(AddressError::ForbiddenChar('/')),
            ),
            (
                "+x@example.org",
                Verdict::Invalid(AddressError::EmptyLocalpart),
            ),
            ("a@b@example.org", Verdict::Invalid(AddressError::SeveralAt)),
        ];
        for (rcpt, want) in cases {
            assert_eq!(check_recipient(&store, rcpt).unwrap(), want, "{rcpt}");
        }

        // A password that cannot be read is an error, not "no such user".
        let broken = store.mailbox("broken@example.org").unwrap();
        std::fs::create_dir_all(broken.password_path()).unwrap();
        assert!(check_recipient(&store, "broken@example.org").is_err());
    }

    #[test]
    fn replies() {
        assert_eq!(
            rate_limited(60).to_string(),
            "450 4.7.1 Rate limit exceeded: at most 60 messages per minute"
        );
        assert_eq!(no_such_user().to_string(), "550 5.1.1 no such user");
        assert_eq!(
            internal_error().to_string(),
            "DEFER_IF_PERMIT internal error in the chatmail policy service"
        );
    }

    /// Runs `steps` of (advance seconds, user, expected decision).
    fn run(
        limiter: &SendLimiter<FakeRelativeClock>,
        clock: &FakeRelativeClock,
        steps: &[(u64, &str, bool)],
    ) {
        for (i, &(advance, user, want)) in steps.iter().enumerate() {
            clock.advance(Duration::from_secs(advance));
            assert_eq!(
                limiter.allow(user),
                want,
                "step {i}: {user} after +{advance}s"
            );
        }
    }

    #[test]
    fn gcra_burst_then_rate() {
        let clock = FakeRelativeClock::default();
        let l = SendLimiter::new(60, 10, clock.clone());
        let mut steps: Vec<(u64, &str, bool)> = vec![(0, "a@x", true); 10];
        steps.extend([
            (0, "a@x", false),
            (0, "A@X", false),
            (0, "b@x", true),
            (1, "a@x", true),
            (0, "a@x", false),
            (60, "a@x", true),
        ]);
        steps.extend([(0, "a@x", true); 9]);
        steps.push((0, "a@x", false));
        run(&l, &clock, &steps);
        assert_eq!(l.per_minute(), 60);
    }

    #[test]
    fn slow_rate_and_degenerate_settings() {
        let clock = FakeRelativeClock::default();
        // 2 per minute, burst 1: one every 30 s.
        let l = SendLimiter::new(2, 1, clock.clone());
        run(
            &l,
            &clock,
            &[
                (0, "u", true),
                (0, "u", false),
                (29, "u", false),
                (1, "u", true),
            ],
        );
        // Burst 0 behaves as 1.
        let l = SendLimiter::new(60, 0, clock.clone());
        run(
            &l,
            &clock,
            &[(0, "u", true), (0, "u", false), (1, "u", true)],
        );
        // Rate 0 disables the limit.
        let l = SendLimiter::new(0, 10, clock.clone());
        for _ in 0..1000 {
            assert!(l.allow("u"));
        }
        assert_eq!(l.tracked(), 0);
        l.purge();
    }

    #[test]
    fn purge_forgets_only_users_with_a_full_budget() {
        let clock = FakeRelativeClock::default();
        let l = SendLimiter::new(60, 10, clock.clone());
        for i in 0..1000 {
            assert!(l.allow(&format!("user{i}@x")));
        }
        for _ in 0..10 {
            l.allow("busy@x");
        }
        assert_eq!(l.tracked(), 1001);
        clock.advance(Duration::from_secs(5));
        l.purge();
        // busy@x still owes 5 s of its budget; the others are fresh again.
        assert_eq!(l.tracked(), 1);
        assert!(l.allow("busy@x"));
        clock.advance(Duration::from_secs(60));
        l.purge();
        assert_eq!(l.tracked(), 0);
    }
}
