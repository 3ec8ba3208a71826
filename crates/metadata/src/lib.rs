//! `chatmail metadata`: the dict server behind Dovecot's
//! `mail_attribute_dict` (IMAP METADATA) plus the push notifier, in one
//! process, as chatmaild's `chatmail-metadata` is.
//!
//! - [`handler`]: which METADATA keys mean what (device tokens, new-mail
//!   events from the shipped Lua script, relay info for clients);
//! - [`tokens`]: the tokens in each user's `metadata.json`;
//! - [`queue`] and [`notifier`]: the durable push queue in SQLite and its
//!   delivery over HTTP/2 or HTTP/1.1 to the notification gateway;
//! - [`nudge`]: the post-delivery inbox nudge that keeps IMAP hibernation
//!   from losing wake-ups;
//! - [`legacy`]: one-time import of chatmaild's queue files;
//! - [`turn`] and [`hmac`]: TURN credentials for calls;
//! - [`clock`]: time, injectable for tests.
//!
//! See docs/design.md, "Dict keys", "Push" and "Failure behaviour".
//!
//! Builds on `dovecot-dict`, `mailbox`, `config`, `net`, `metrics`; must not
//! depend on another daemon crate (docs/design.md, "Crates").

pub mod clock;
pub mod handler;
pub mod hmac;
pub mod keys;
pub mod legacy;
pub mod notifier;
pub mod nudge;
pub mod queue;
pub mod tokens;
pub mod turn;

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chatmail_config::Config;
use chatmail_mailbox::Store;
use chatmail_net::Listener;
use dovecot_dict::ServerOptions;

pub use clock::{Clock, ManualClock, SystemClock};
pub use handler::{MetadataHandler, ServerInfo};
pub use notifier::{DeliveryOptions, Notifier};
pub use queue::{Queue, QueueError};
pub use tokens::{TokenLimits, TokenStore};
pub use turn::TurnOptions;

/// File name of the push queue database (see [`MetadataOptions::queue_db`]).
pub const QUEUE_DB_NAME: &str = "chatmail-push.sqlite";
/// Default `appversions` file (config `appversions_file`).
pub use chatmail_config::DEFAULT_APPVERSIONS_FILE;
/// The recipient limit of the shipped Postfix config (`smtpd_recipient_limit`,
/// Postfix's default), announced as `maxsmtprecipients`.
pub const MAX_SMTP_RECIPIENTS: u32 = 1000;
/// Limit for one POST (chatmaild: 60 s).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// POSTs in flight at once. HTTP/2 multiplexes them over one connection;
/// the bound keeps a backlog after an outage from flooding the gateway.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// Settings of [`run`] beyond `chatmail.ini`.
#[derive(Clone)]
pub struct MetadataOptions {
    /// The push queue database. Default: `chatmail-push.sqlite` next to
    /// `mailboxes_dir` (`/home/vmail/mail/chatmail-push.sqlite`): the
    /// daemon's user (vmail) owns that directory, so nothing needs to be
    /// provisioned; it is on persistent disk with the mail it belongs to;
    /// and it is outside `mailboxes_dir`, whose entries tools take for
    /// mailboxes.
    pub queue_db: PathBuf,
    /// JSON file served as `appversions`; absent = not found.
    pub appversions_file: PathBuf,
    /// Announced as `maxsmtprecipients`.
    pub max_smtp_recipients: u32,
    /// Sources of `turn` credentials.
    pub turn: TurnOptions,
    /// Token count and size limits.
    pub token_limits: TokenLimits,
    /// Gateway URL (config `push_notification_url`).
    pub push_url: String,
    /// HTTP/2 with prior knowledge to an `http://` gateway (config
    /// `push_notification_h2c`).
    pub push_h2c: bool,
    /// Limit for one POST.
    pub request_timeout: Duration,
    /// POSTs in flight at once.
    pub max_in_flight: usize,
    /// How long after each delivery to nudge the recipient's inbox (see
    /// [`nudge`]); `None` disables the nudge.
    pub nudge_delay: Option<Duration>,
    /// Time source; [`SystemClock`] outside tests.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MetadataOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataOptions")
            .field("queue_db", &self.queue_db)
            .field("appversions_file", &self.appversions_file)
            .field("max_smtp_recipients", &self.max_smtp_recipients)
            .field("turn", &self.turn)
            .field("token_limits", &self.token_limits)
            .field("push_url", &notifier::redacted_url(&self.push_url))
            .field("push_h2c", &self.push_h2c)
            .field("request_timeout", &self.request_timeout)
            .field("max_in_flight", &self.max_in_flight)
            .field("nudge_delay", &self.nudge_delay)
            .finish_non_exhaustive()
    }
}

impl MetadataOptions {
    /// The defaults for `config`.
    pub fn from_config(config: &Config) -> MetadataOptions {
        MetadataOptions {
            queue_db: default_queue_db(&config.mailboxes_dir),
            appversions_file: config.appversions_file.clone(),
            max_smtp_recipients: MAX_SMTP_RECIPIENTS,
            turn: TurnOptions {
                secret_file: config.turn_secret_file.clone(),
                host: config.mail_domain.clone(),
                port: turn::DEFAULT_TURN_PORT,
                ttl: turn::DEFAULT_TURN_TTL,
                socket_path: config.turn_socket_path.clone(),
            },
            token_limits: TokenLimits::default(),
            push_url: config.push_notification_url.clone(),
            push_h2c: config.push_notification_h2c,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            nudge_delay: Some(nudge::DEFAULT_NUDGE_DELAY),
            clock: Arc::new(SystemClock),
        }
    }
}

/// `<parent of mailboxes_dir>/chatmail-push.sqlite`, or a hidden file in
/// `mailboxes_dir` itself when it has no parent.
pub fn default_queue_db(mailboxes_dir: &Path) -> PathBuf {
    match mailboxes_dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.join(QUEUE_DB_NAME),
        _ => mailboxes_dir.join(format!(".{QUEUE_DB_NAME}")),
    }
}

/// Serves IMAP METADATA on `listener` and delivers push notifications until
/// `shutdown`.
///
/// On start it opens (or creates) the queue database and imports chatmaild's
/// pending notifications; on shutdown it stops accepting, finishes the
/// requests in progress, and abandons POSTs in flight (they stay queued).
///
/// # Errors
///
/// When the queue database cannot be opened or the legacy import fails to
/// write it (the daemon must not run without its queue), or when the HTTP
/// client or queue thread cannot be created.
pub async fn run(
    listener: Listener,
    config: Arc<Config>,
    options: MetadataOptions,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let store = Store::from_config(&config);
    let clock = Arc::clone(&options.clock);
    let queue = open_queue(options.queue_db.clone(), store.clone(), clock.now()).await?;
    let nudger = options
        .nudge_delay
        .map(|delay| nudge::Nudger::new(store.clone(), delay));
    let tokens = Arc::new(TokenStore::new(store, options.token_limits));
    let (notifier, delivery) = notifier::Delivery::start(
        queue,
        DeliveryOptions {
            url: options.push_url.clone(),
            request_timeout: options.request_timeout,
            max_in_flight: options.max_in_flight.max(1),
            h2c: options.push_h2c,
        },
        Arc::clone(&clock),
        Arc::clone(&tokens),
    )?;
    let handler = Arc::new(MetadataHandler::new(
        tokens,
        notifier,
        nudger,
        ServerInfo {
            iroh_relay: config.iroh_relay.clone(),
            max_smtp_recipients: options.max_smtp_recipients,
            appversions_file: options.appversions_file.clone(),
            turn: options.turn.clone(),
        },
        clock,
    ));
    let served = dovecot_dict::serve(listener, handler, ServerOptions::default(), shutdown).await;
    delivery.stop().await;
    served
}

async fn open_queue(path: PathBuf, store: Store, now: i64) -> io::Result<Queue> {
    tokio::task::spawn_blocking(move || {
        let queue = Queue::open(&path)
            .map_err(|e| io::Error::other(format!("opening push queue {}: {e}", path.display())))?;
        match legacy::import(&store, &queue, now) {
            Ok(n) if n.queued + n.skipped > 0 => tracing::info!(
                queued = n.queued,
                skipped = n.skipped,
                "imported chatmaild's pending notifications"
            ),
            Ok(_) => {}
            Err(legacy::ImportError::Queue(e)) => {
                return Err(io::Error::other(format!(
                    "importing legacy push queue: {e}"
                )));
            }
            // Files we cannot list or remove do not stop push for everyone.
            Err(e) => tracing::error!("{e}"),
        }
        Ok(queue)
    })
    .await
    .map_err(io::Error::other)?
}
