//! OpenMetrics from the chatmail daemons (`prometheus-client`), served on
//! `GET /metrics` by [`server`]; the metric names, labels and the
//! `--metrics-listen` / `metrics_listen` settings are in `docs/metrics.md`.
//!
//! Each daemon is one process. At start it calls [`install`] once with its
//! [`Daemon`] (only when metrics are enabled); the hooks in the daemon crates
//! record through [`auth`], [`milter`], [`policy`], [`metadata`] and
//! [`lastlogin`], one line at the point of each decision. Before
//! [`install`] (metrics off, unit tests) every hook is a load and a branch
//! and records nothing. The handles live in a `OnceLock` so that a hook deep
//! inside a crate (the push notifier, a token pruning helper) needs no extra
//! parameter threaded through code other work is changing; the registry
//! itself is an ordinary value owned by the HTTP server.
//!
//! Every label value comes from a closed set of `&'static str`s chosen here,
//! never from a request: no address, token or other user data can reach a
//! label, and the number of series is fixed.
//!
//! Builds on `net` and the verdict types of `e2ee` and `postfix-policy`; must
//! not depend on a daemon crate: the daemons depend on it (docs/design.md,
//! "Crates").

pub mod families;
pub mod probes;
pub mod server;

use std::sync::{LazyLock, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

pub use families::{Auth, Lastlogin, Metadata, Milter, Policy};

/// The daemons that serve metrics: which families an endpoint registers
/// and the `daemon` label of `chatmail_build_info`. Where each one listens
/// is not this crate's concern: the binary reads it from its table of
/// daemons and hands [`server::serve`] the bound listener (docs/design.md,
/// "Crates").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Daemon {
    /// `chatmail auth`.
    Auth,
    /// `chatmail lastlogin`.
    Lastlogin,
    /// `chatmail metadata`.
    Metadata,
    /// `chatmail milter`.
    Milter,
    /// `chatmail policy`.
    Policy,
}

impl Daemon {
    /// Every daemon.
    pub const ALL: [Daemon; 5] = [
        Daemon::Auth,
        Daemon::Lastlogin,
        Daemon::Metadata,
        Daemon::Milter,
        Daemon::Policy,
    ];

    /// The subcommand name, also the `daemon` label of `chatmail_build_info`.
    pub fn name(self) -> &'static str {
        match self {
            Daemon::Auth => "auth",
            Daemon::Lastlogin => "lastlogin",
            Daemon::Metadata => "metadata",
            Daemon::Milter => "milter",
            Daemon::Policy => "policy",
        }
    }

    /// The daemon called `name`, if it serves metrics.
    pub fn from_name(name: &str) -> Option<Daemon> {
        Daemon::ALL.into_iter().find(|d| d.name() == name)
    }
}

/// The metric handles of one process.
#[derive(Debug)]
pub struct Metrics {
    /// `chatmail auth`.
    pub auth: Auth,
    /// `chatmail lastlogin`.
    pub lastlogin: Lastlogin,
    /// `chatmail metadata`.
    pub metadata: Metadata,
    /// `chatmail milter`.
    pub milter: Milter,
    /// `chatmail policy`.
    pub policy: Policy,
    /// Accepted connections still open (set before each scrape).
    pub open_connections: Gauge,
    start_time: Gauge<f64, std::sync::atomic::AtomicU64>,
}

impl Metrics {
    fn new(on: bool) -> Metrics {
        Metrics {
            auth: Auth::new(on),
            lastlogin: Lastlogin::new(on),
            metadata: Metadata::new(on),
            milter: Milter::new(on),
            policy: Policy::new(on),
            open_connections: Gauge::default(),
            start_time: Gauge::default(),
        }
    }

    /// The registry `daemon` serves: build info, start time, open
    /// connections, and the daemon's own families.
    pub fn registry(&self, daemon: Daemon) -> Registry {
        let mut root = Registry::default();
        // The conventional unprefixed name, so standard dashboards find it.
        root.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch, in seconds",
            self.start_time.clone(),
        );
        let registry = root.sub_registry_with_prefix("chatmail");
        registry.register(
            "build",
            "Version of the chatmail daemon answering",
            Info::new(vec![
                ("daemon", daemon.name()),
                ("version", env!("CARGO_PKG_VERSION")),
            ]),
        );
        registry.register(
            "open_connections",
            "Connections from Postfix or Dovecot accepted and not yet closed",
            self.open_connections.clone(),
        );
        let own = registry.sub_registry_with_prefix(daemon.name());
        match daemon {
            Daemon::Auth => self.auth.register(own),
            Daemon::Lastlogin => self.lastlogin.register(own),
            Daemon::Metadata => self.metadata.register(own),
            Daemon::Milter => self.milter.register(own),
            Daemon::Policy => self.policy.register(own),
        }
        root
    }
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();
static OFF: LazyLock<Metrics> = LazyLock::new(|| Metrics::new(false));

/// Turns recording on for this process and returns the handles. Called
/// once, at start, by a daemon whose metrics are enabled; later calls
/// return the first handles.
pub fn install() -> &'static Metrics {
    INSTALLED.get_or_init(|| {
        let m = Metrics::new(true);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        m.start_time.set(now);
        m
    })
}

/// The handles: the installed ones, or ones that record nothing.
pub fn get() -> &'static Metrics {
    INSTALLED.get().unwrap_or(&OFF)
}

/// Whether [`install`] was called.
pub fn enabled() -> bool {
    INSTALLED.get().is_some()
}

/// Hooks of `chatmail auth`.
pub fn auth() -> &'static Auth {
    &get().auth
}

/// Hooks of `chatmail lastlogin`.
pub fn lastlogin() -> &'static Lastlogin {
    &get().lastlogin
}

/// Hooks of `chatmail metadata`.
pub fn metadata() -> &'static Metadata {
    &get().metadata
}

/// Hooks of `chatmail milter`.
pub fn milter() -> &'static Milter {
    &get().milter
}

/// Hooks of `chatmail policy`.
pub fn policy() -> &'static Policy {
    &get().policy
}

#[cfg(test)]
mod tests;
