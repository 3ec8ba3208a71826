//! The metric families of each daemon, as typed handles with one method per
//! event. Series with a fixed label set are created up front, so they are
//! exported as 0 before the first event (rates and alerts need that) and a
//! hook costs one atomic add, not a map lookup.

use std::time::Instant;

use chatmail_e2ee::{AcceptReason, Direction, Reply, Verdict};
use postfix_policy::{Action, ProtocolState};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type L1 = [(&'static str, &'static str); 1];
type L2 = [(&'static str, &'static str); 2];

fn counters(
    family: &Family<L1, Counter>,
    key: &'static str,
    values: &[&'static str],
) -> Vec<Counter> {
    values
        .iter()
        .map(|v| family.get_or_create_owned(&[(key, *v)]))
        .collect()
}

fn index(values: &[&str], value: &str) -> usize {
    values
        .iter()
        .position(|v| *v == value)
        .unwrap_or(values.len() - 1)
}

fn gauge_f64() -> Gauge<f64, std::sync::atomic::AtomicU64> {
    Gauge::default()
}

/// `chatmail_auth_lookups_total{result}` values.
pub const AUTH_RESULTS: [&str; 5] = ["found", "created", "refused", "invalid", "failed"];
/// `chatmail_auth_refusals_total{rule}` values (the last one catches a rule
/// this list does not know yet).
pub const AUTH_RULES: [&str; 9] = [
    "nocreate",
    "localpart_length",
    "localpart_chars",
    "password_too_short",
    "load",
    "memory",
    "disk",
    "unmeasured",
    "other",
];

/// `chatmail auth`.
#[derive(Debug)]
pub struct Auth {
    on: bool,
    lookups: Family<L1, Counter>,
    lookup: Vec<Counter>,
    refusals: Family<L1, Counter>,
    refusal: Vec<Counter>,
    creation: Histogram,
    /// Mailbox directories (set before each scrape, see [`crate::probes`]).
    pub accounts: Gauge,
    /// What account creation compares with its limits, and the limits
    /// (set before each scrape): `free_disk_bytes`, `min_free_disk_bytes`,
    /// `available_memory_bytes`, `min_available_memory_bytes`, `load1`,
    /// `max_load1`.
    pub resources: Family<L1, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Auth {
    pub(crate) fn new(on: bool) -> Auth {
        let lookups = Family::default();
        let refusals = Family::default();
        Auth {
            on,
            lookup: counters(&lookups, "result", &AUTH_RESULTS),
            refusal: counters(&refusals, "rule", &AUTH_RULES),
            lookups,
            refusals,
            // SHA512-crypt hashing and two small writes: milliseconds,
            // seconds on a stalled disk.
            creation: Histogram::new([0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            accounts: Gauge::default(),
            resources: Family::default(),
        }
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "lookups",
            "Passdb lookups (logins) by result, plus failed userdb lookups",
            self.lookups.clone(),
        );
        r.register(
            "refusals",
            "Accounts not created, by the rule that refused them",
            self.refusals.clone(),
        );
        r.register(
            "account_creation_seconds",
            "Time to hash the password and write a new account",
            self.creation.clone(),
        );
        r.register(
            "accounts",
            "Mailbox directories on disk (counted at most once a minute)",
            self.accounts.clone(),
        );
        r.register(
            "resource",
            "What account creation measures (free_disk_bytes, available_memory_bytes, load1) \
             and the limit below (or above, for load) which it refuses (min_*, max_*)",
            self.resources.clone(),
        );
    }

    /// Sets the `chatmail_auth_resource{measure}` gauge.
    pub fn set_resource(&self, measure: &'static str, value: f64) {
        self.resources
            .get_or_create(&[("measure", measure)])
            .set(value);
    }

    /// A login of an existing account.
    pub fn found(&self) {
        if self.on {
            self.lookup[0].inc();
        }
    }

    /// An account created by a first login that began at `started`.
    pub fn created(&self, started: Instant) {
        if self.on {
            self.lookup[1].inc();
            self.creation.observe(started.elapsed().as_secs_f64());
        }
    }

    /// No account created: `rule` (one of [`AUTH_RULES`]) refused it.
    pub fn refused(&self, rule: &str) {
        if self.on {
            self.lookup[2].inc();
            self.refusal[index(&AUTH_RULES, rule)].inc();
        }
    }

    /// A login with an address that cannot be an account.
    pub fn invalid(&self) {
        if self.on {
            self.lookup[3].inc();
        }
    }

    /// A lookup answered with a dict failure (Dovecot retries).
    pub fn failed(&self) {
        if self.on {
            self.lookup[4].inc();
        }
    }
}

/// `chatmail lastlogin`.
#[derive(Debug)]
pub struct Lastlogin {
    on: bool,
    updates: Counter,
    commits: Family<L1, Counter>,
    commit: Vec<Counter>,
}

impl Lastlogin {
    pub(crate) fn new(on: bool) -> Lastlogin {
        let commits = Family::default();
        Lastlogin {
            on,
            updates: Counter::default(),
            commit: counters(&commits, "result", &["ok", "failed"]),
            commits,
        }
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "updates",
            "Last-login days changed (password file touched)",
            self.updates.clone(),
        );
        r.register(
            "commits",
            "Transactions of the last_login plugin by result",
            self.commits.clone(),
        );
    }

    /// A user's last-login day moved.
    pub fn updated(&self) {
        if self.on {
            self.updates.inc();
        }
    }

    /// A transaction was answered: `ok` or failed.
    pub fn committed(&self, ok: bool) {
        if self.on {
            self.commit[usize::from(!ok)].inc();
        }
    }
}

/// `chatmail_milter_messages_total{verdict}` values. `abandoned`: Postfix
/// closed the connection before the answer (its timeout, a stopped smtpd);
/// the check stopped and Postfix applied its own default.
pub const MILTER_VERDICTS: [&str; 13] = [
    "encrypted",
    "securejoin",
    "autocrypt_setup",
    "bounce",
    "passthrough_sender",
    "passthrough_recipients",
    "cleartext_allowed",
    "refused_cleartext",
    "refused_from_mismatch",
    "too_big",
    "tempfail",
    "refused_other",
    "abandoned",
];
const TOO_BIG: usize = 9;
const TEMPFAIL: usize = 10;
const REFUSED_OTHER: usize = 11;
const ABANDONED: usize = 12;

/// `chatmail milter`.
#[derive(Debug)]
pub struct Milter {
    on: bool,
    messages: Family<L2, Counter>,
    /// Outgoing verdicts, then incoming ones, then `direction="unknown"`
    /// (too big, tempfail, refused otherwise).
    message: Vec<Counter>,
    decision: Histogram,
    dkim: Family<L2, Counter>,
}

impl Milter {
    pub(crate) fn new(on: bool) -> Milter {
        let messages: Family<L2, Counter> = Family::default();
        let mut message = Vec::new();
        for direction in ["outgoing", "incoming"] {
            for verdict in MILTER_VERDICTS {
                message.push(
                    messages.get_or_create_owned(&[("direction", direction), ("verdict", verdict)]),
                );
            }
        }
        // Before the end of data only these can happen.
        for verdict in &MILTER_VERDICTS[TOO_BIG..=REFUSED_OTHER] {
            message.push(
                messages.get_or_create_owned(&[("direction", "unknown"), ("verdict", verdict)]),
            );
        }
        let dkim: Family<L2, Counter> = Family::default();
        for (op, results) in [
            ("sign", &["ok", "failed"][..]),
            (
                "verify",
                &["pass", "fail", "none", "temperror", "permerror"][..],
            ),
        ] {
            for result in results {
                let _ = dkim.get_or_create_owned(&[("operation", op), ("result", result)]);
            }
        }
        Milter {
            on,
            messages,
            message,
            // Parsing and checking one message: well under a millisecond
            // for chat messages, tens of milliseconds for the largest.
            decision: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
            dkim,
        }
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "messages",
            "Messages decided at end of data, by direction and verdict",
            self.messages.clone(),
        );
        r.register(
            "decision_seconds",
            "Time from end of data to the verdict",
            self.decision.clone(),
        );
        r.register(
            "dkim",
            "DKIM signatures made and verified, by result",
            self.dkim.clone(),
        );
    }

    /// The verdict on a message of `direction` whose end of data arrived at
    /// `started`; `None` when the check itself failed (tempfail).
    pub fn decided(&self, direction: Direction, verdict: Option<&Verdict>, started: Instant) {
        if !self.on {
            return;
        }
        let v = match verdict {
            Some(Verdict::Accept(reason)) => match reason {
                AcceptReason::Encrypted => 0,
                AcceptReason::SecureJoin => 1,
                AcceptReason::AutocryptSetup => 2,
                AcceptReason::Bounce => 3,
                AcceptReason::PassthroughSender => 4,
                AcceptReason::PassthroughRecipients => 5,
                AcceptReason::CleartextAllowed => 6,
            },
            Some(Verdict::Reject(reply)) => reject_index(*reply),
            None => TEMPFAIL,
        };
        let d = match direction {
            Direction::Outgoing => 0,
            Direction::Incoming => 1,
        };
        self.message[d * MILTER_VERDICTS.len() + v].inc();
        self.decision.observe(started.elapsed().as_secs_f64());
    }

    /// Postfix closed the connection while the message of `direction`,
    /// whose end of data arrived at `started`, was being checked: counted
    /// as what Postfix did, not as what the answer would have been.
    pub fn abandoned(&self, direction: Direction, started: Instant) {
        if !self.on {
            return;
        }
        let d = match direction {
            Direction::Outgoing => 0,
            Direction::Incoming => 1,
        };
        self.message[d * MILTER_VERDICTS.len() + ABANDONED].inc();
        self.decision.observe(started.elapsed().as_secs_f64());
    }

    /// A message refused before a verdict (too big, no envelope); its
    /// direction is not known at that point.
    pub fn refused_early(&self, reply: Reply) {
        if self.on {
            let v = reject_index(reply).max(TOO_BIG) - TOO_BIG;
            self.message[2 * MILTER_VERDICTS.len() + v].inc();
        }
    }

    /// A DKIM signature was made (`ok`) or could not be.
    pub fn dkim_signed(&self, ok: bool) {
        if self.on {
            let result = if ok { "ok" } else { "failed" };
            self.dkim
                .get_or_create(&[("operation", "sign"), ("result", result)])
                .inc();
        }
    }

    /// A DKIM verification ended with `result` (`pass`, `fail`, `none`,
    /// `temperror`, `permerror`; anything else counts as `permerror`).
    pub fn dkim_verified(&self, result: &str) {
        if self.on {
            let known = ["pass", "fail", "none", "temperror", "permerror"];
            let result = known[index(&known, result)];
            self.dkim
                .get_or_create(&[("operation", "verify"), ("result", result)])
                .inc();
        }
    }
}

fn reject_index(reply: Reply) -> usize {
    if reply == chatmail_e2ee::ENCRYPTION_NEEDED {
        7
    } else if reply == chatmail_e2ee::FROM_MISMATCH {
        8
    } else if reply.code == 552 {
        TOO_BIG
    } else if reply.is_transient() {
        TEMPFAIL
    } else {
        REFUSED_OTHER
    }
}

/// `chatmail policy`.
#[derive(Debug)]
pub struct Policy {
    on: bool,
    requests: Family<L2, Counter>,
    rate_limited: Counter,
}

impl Policy {
    pub(crate) fn new(on: bool) -> Policy {
        let requests: Family<L2, Counter> = Family::default();
        for (state, answers) in [
            ("rcpt", &["dunno", "reply", "defer_if_permit"][..]),
            ("data", &["dunno", "reply"][..]),
        ] {
            for answer in answers {
                let _ = requests.get_or_create_owned(&[("state", state), ("answer", answer)]);
            }
        }
        Policy {
            on,
            requests,
            rate_limited: Counter::default(),
        }
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "requests",
            "Policy requests by SMTP state and answer",
            self.requests.clone(),
        );
        r.register(
            "rate_limited",
            "Messages refused because the sender exceeded the send rate",
            self.rate_limited.clone(),
        );
    }

    /// A request in `state` answered with `action`.
    pub fn answered(&self, state: Option<ProtocolState>, action: &Action) {
        if !self.on {
            return;
        }
        let state = match state {
            None => "none",
            Some(ProtocolState::Connect) => "connect",
            Some(ProtocolState::Ehlo) => "ehlo",
            Some(ProtocolState::Helo) => "helo",
            Some(ProtocolState::Mail) => "mail",
            Some(ProtocolState::Rcpt) => "rcpt",
            Some(ProtocolState::Data) => "data",
            Some(ProtocolState::EndOfMessage) => "end_of_message",
            Some(ProtocolState::Vrfy) => "vrfy",
            Some(ProtocolState::Etrn) => "etrn",
            Some(ProtocolState::Other) => "other",
        };
        let answer = match action {
            Action::Dunno => "dunno",
            Action::Ok => "ok",
            Action::Reject(_) => "reject",
            Action::Defer(_) => "defer",
            Action::DeferIfPermit(_) => "defer_if_permit",
            Action::DeferIfReject(_) => "defer_if_reject",
            Action::Reply { .. } => "reply",
        };
        self.requests
            .get_or_create(&[("state", state), ("answer", answer)])
            .inc();
    }

    /// A message refused by the send rate limit.
    pub fn rate_limited(&self) {
        if self.on {
            self.rate_limited.inc();
        }
    }
}

/// `chatmail_metadata_push_posts_total{class}` values.
pub const POST_CLASSES: [&str; 5] = ["2xx", "3xx", "4xx", "5xx", "error"];

/// `chatmail metadata`.
#[derive(Debug)]
pub struct Metadata {
    on: bool,
    registered: Counter,
    removed: Family<L1, Counter>,
    removed_by: Vec<Counter>,
    expired: Counter,
    queued: Counter,
    posts: Family<L1, Counter>,
    post: Vec<Counter>,
    retries: Counter,
    given_up: Family<L1, Counter>,
    given_up_by: Vec<Counter>,
    wait: Histogram,
    nudges: Counter,
    /// Rows in the push queue (set before each scrape).
    pub queue_depth: Gauge,
    /// Age of the oldest row in the push queue, seconds (set before each scrape).
    pub oldest_waiting: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metadata {
    pub(crate) fn new(on: bool) -> Metadata {
        let removed = Family::default();
        let posts = Family::default();
        let given_up = Family::default();
        Metadata {
            on,
            registered: Counter::default(),
            removed_by: counters(&removed, "reason", &["client", "gone"]),
            removed,
            expired: Counter::default(),
            queued: Counter::default(),
            post: counters(&posts, "class", &POST_CLASSES),
            posts,
            retries: Counter::default(),
            given_up_by: counters(&given_up, "reason", &["attempts", "deadline"]),
            given_up,
            // The queue keeps whole seconds; retries back off up to hours.
            wait: Histogram::new([
                1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 18000.0,
            ]),
            nudges: Counter::default(),
            queue_depth: Gauge::default(),
            oldest_waiting: gauge_f64(),
        }
    }

    pub(crate) fn register(&self, r: &mut Registry) {
        r.register(
            "tokens_registered",
            "Push tokens registered by clients",
            self.registered.clone(),
        );
        r.register(
            "tokens_removed",
            "Push tokens removed: by the client, or reported gone (410) by the gateway",
            self.removed.clone(),
        );
        r.register(
            "tokens_expired",
            "Push tokens dropped because they were not renewed in time",
            self.expired.clone(),
        );
        r.register(
            "notifications_queued",
            "Push notifications added to the queue",
            self.queued.clone(),
        );
        r.register(
            "push_posts",
            "POSTs to the notification gateway by HTTP status class (error: no answer)",
            self.posts.clone(),
        );
        r.register(
            "push_retries",
            "Push notifications scheduled for another attempt",
            self.retries.clone(),
        );
        r.register(
            "push_given_up",
            "Push notifications dropped: too many attempts, or past their deadline",
            self.given_up.clone(),
        );
        r.register(
            "push_wait_seconds",
            "Time from queueing a notification to the gateway's answer to a POST of it (whole seconds)",
            self.wait.clone(),
        );
        r.register(
            "nudges",
            "Inbox nudges made after a delivery",
            self.nudges.clone(),
        );
        r.register(
            "push_queue_depth",
            "Notifications in the push queue",
            self.queue_depth.clone(),
        );
        r.register(
            "push_oldest_waiting_seconds",
            "Age of the oldest notification in the push queue (0 when empty)",
            self.oldest_waiting.clone(),
        );
    }

    /// A client registered a token.
    pub fn token_registered(&self) {
        if self.on {
            self.registered.inc();
        }
    }

    /// A client removed its tokens.
    pub fn tokens_removed(&self) {
        if self.on {
            self.removed_by[0].inc();
        }
    }

    /// The gateway said a token is gone (410).
    pub fn token_gone(&self) {
        if self.on {
            self.removed_by[1].inc();
        }
    }

    /// `n` tokens were pruned as expired.
    pub fn tokens_expired(&self, n: usize) {
        if self.on && n > 0 {
            self.expired.inc_by(n as u64);
        }
    }

    /// `n` notifications were queued.
    pub fn queued(&self, n: usize) {
        if self.on && n > 0 {
            self.queued.inc_by(n as u64);
        }
    }

    /// A POST was answered with `status`, or not at all (`None`).
    pub fn posted(&self, status: Option<u16>) {
        if !self.on {
            return;
        }
        let class = match status {
            Some(200..=299) => 0,
            Some(300..=399) => 1,
            Some(400..=499) => 2,
            Some(500..=599) => 3,
            _ => 4,
        };
        self.post[class].inc();
    }

    /// A POST ended `waited` seconds after its notification was queued.
    pub fn waited(&self, waited: i64) {
        if self.on {
            self.wait.observe(waited.max(0) as f64);
        }
    }

    /// A failed notification will be tried again.
    pub fn retry(&self) {
        if self.on {
            self.retries.inc();
        }
    }

    /// A notification was dropped after its last attempt.
    pub fn given_up(&self) {
        if self.on {
            self.given_up_by[0].inc();
        }
    }

    /// A notification was dropped unsent: its deadline passed in the queue.
    pub fn expired_in_queue(&self) {
        if self.on {
            self.given_up_by[1].inc();
        }
    }

    /// An inbox was nudged.
    pub fn nudged(&self) {
        if self.on {
            self.nudges.inc();
        }
    }
}
