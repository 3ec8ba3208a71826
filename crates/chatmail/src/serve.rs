//! What every daemon subcommand does before its `run`: logging, config,
//! the metrics endpoint (`metrics_wiring`), binding the listener, telling
//! systemd it is ready.

use std::sync::Arc;

use anyhow::Context;
use chatmail_config::Config;
use chatmail_net::{ListenAddr, Listener};
use chatmail_snippets::daemons::Daemon;
use tracing_subscriber::EnvFilter;

use crate::cli::DaemonArgs;

/// Logs to stderr, filtered by `RUST_LOG` (default: `default`, a filter
/// such as `info`). Under systemd (`JOURNAL_STREAM` set) journald adds
/// timestamps, so we print none and no colours.
pub fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

/// Loads the config, logging its warnings once.
///
/// # Errors
/// A missing or invalid config, with a one-line reason.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<Config> {
    let (config, warnings) =
        Config::load(path).with_context(|| format!("config {}", path.display()))?;
    for w in warnings {
        tracing::warn!("config {}: {w}", path.display());
    }
    Ok(config)
}

/// Loads the config and binds the listener of `daemon`.
///
/// # Errors
/// A bad config or a socket that cannot be bound, with a one-line reason.
pub async fn prepare(
    args: &DaemonArgs,
    daemon: &Daemon,
) -> anyhow::Result<(Listener, Arc<Config>)> {
    let name = daemon.name;
    let config = load_config(&args.config)?;
    crate::metrics_wiring::start_metrics(args, daemon, &config).await?;
    let addr = match &args.listen {
        Some(a) => a.clone(),
        // Where the shipped snippets expect the daemon (docs/design.md).
        None => ListenAddr::Unix(daemon.socket.into()),
    };
    let listener = Listener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!("chatmail {name} listening on {addr}");
    // Not running under systemd is fine.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    Ok((listener, Arc::new(config)))
}
