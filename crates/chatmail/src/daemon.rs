//! What every daemon subcommand does before its `run`: logging, config,
//! binding the listener, telling systemd it is ready.

use std::sync::Arc;

use anyhow::Context;
use chatmail_config::Config;
use chatmail_net::{ListenAddr, Listener};
use tracing_subscriber::EnvFilter;

use crate::cli::DaemonArgs;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`). Under systemd
/// (`JOURNAL_STREAM` set) journald adds timestamps, so we print none and no
/// colours.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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

/// Where the shipped snippets expect each daemon: Dovecot's clients in
/// /run, Postfix's inside its (chroot) queue directory.
fn default_socket(name: &str) -> String {
    match name {
        "milter" | "policy" => format!("/var/spool/postfix/chatmail/{name}.socket"),
        _ => format!("/run/chatmail-{name}/{name}.socket"),
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

/// Loads the config and binds the listener of daemon `name`.
///
/// # Errors
/// A bad config or a socket that cannot be bound, with a one-line reason.
pub async fn prepare(args: &DaemonArgs, name: &str) -> anyhow::Result<(Listener, Arc<Config>)> {
    let config = load_config(&args.config)?;
    let addr = match &args.listen {
        Some(a) => a.clone(),
        None => ListenAddr::Unix(default_socket(name).into()),
    };
    let listener = Listener::bind(&addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    tracing::info!("chatmail {name} listening on {addr}");
    // Not running under systemd is fine.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    Ok((listener, Arc::new(config)))
}
