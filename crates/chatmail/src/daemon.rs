//! What every daemon subcommand does before its `run`: logging, config,
//! binding the listener, telling systemd it is ready.

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
    start_metrics(args, daemon, &config).await?;
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

/// Starts the metrics endpoint of `table` when `--metrics-listen` or
/// `metrics_listen` asks for one (docs/metrics.md).
///
/// # Errors
/// A unix: address.
async fn start_metrics(args: &DaemonArgs, table: &Daemon, config: &Config) -> anyhow::Result<()> {
    let name = table.name;
    let Some(daemon) = chatmail_metrics::Daemon::from_name(name) else {
        return Ok(());
    };
    let hostport = match (&args.metrics_listen, config.metrics_listen) {
        (Some(ListenAddr::Inet(hostport)), _) => hostport.clone(),
        (Some(ListenAddr::Unix(_)), _) => {
            anyhow::bail!("--metrics-listen must be inet:HOST:PORT (Prometheus scrapes over TCP)")
        }
        (None, Some(base)) => {
            let Some(port) = table.metrics_port(base.port()) else {
                return Ok(());
            };
            let mut addr = base;
            addr.set_port(port);
            addr.to_string()
        }
        (None, None) => return Ok(()),
    };
    // Without its metrics a daemon still does its job: the failure is
    // logged, and Prometheus (`up == 0`) and `chatmail doctor` report the
    // missing endpoint.
    let listener = match tokio::net::TcpListener::bind(&hostport).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("metrics endpoint on inet:{hostport}: {e}; serving without metrics");
            return Ok(());
        }
    };
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            "metrics endpoint on inet:{local} is not on loopback: anyone who can reach it \
             sees the relay's counters (there is no authentication)"
        );
    }
    let metrics = chatmail_metrics::install();
    let mut probes = vec![chatmail_metrics::probes::open_connections()];
    match daemon {
        chatmail_metrics::Daemon::Auth => {
            probes.push(chatmail_metrics::probes::accounts(
                config.mailboxes_dir.clone(),
            ));
            probes.push(resources_probe(config));
        }
        chatmail_metrics::Daemon::Metadata => probes.push(chatmail_metrics::probes::push_queue(
            chatmail_metadata::default_queue_db(&config.mailboxes_dir),
        )),
        _ => {}
    }
    let endpoint = chatmail_metrics::server::Endpoint::new(metrics, daemon, probes);
    tokio::spawn(chatmail_metrics::server::serve(listener, endpoint));
    tracing::info!("chatmail {name} serving metrics on http://{local}/metrics");
    Ok(())
}

/// Sets `chatmail_auth_resource`: the machine as account creation measures
/// it, next to the configured limits, so an alert can fire before creation
/// is refused (docs/metrics.md).
fn resources_probe(config: &Config) -> chatmail_metrics::probes::Probe {
    use chatmail_accounts::probe::{ResourceProbe, SystemProbe};
    let dir = config.mailboxes_dir.clone();
    let limits = [
        (
            "min_free_disk_bytes",
            config.min_free_disk_space.bytes as f64,
        ),
        (
            "min_available_memory_bytes",
            config.min_available_memory.bytes as f64,
        ),
        ("max_load1", config.max_load_1m),
    ];
    let probe = SystemProbe::default();
    let warn = chatmail_metrics::probes::WarnOnce::default();
    Box::new(move |m: &chatmail_metrics::Metrics| {
        for (measure, value) in limits {
            m.auth.set_resource(measure, value);
        }
        match probe.probe(&dir) {
            Ok(r) => {
                m.auth.set_resource("free_disk_bytes", r.free_disk as f64);
                m.auth
                    .set_resource("available_memory_bytes", r.available_memory as f64);
                m.auth.set_resource("load1", r.load_1m);
                warn.ok();
            }
            Err(e) if warn.failed() => tracing::warn!("measuring the machine for metrics: {e}"),
            Err(_) => {}
        }
    })
}
