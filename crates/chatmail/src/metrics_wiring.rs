//! A daemon's metrics endpoint (docs/metrics.md): where it listens, and the
//! gauges measured at scrape time next to the daemon's own counters.

use chatmail_config::Config;
use chatmail_net::ListenAddr;
use chatmail_snippets::daemons::Daemon;

use crate::cli::DaemonArgs;

/// Starts the metrics endpoint of `table` when `--metrics-listen` or
/// `metrics_listen` asks for one (docs/metrics.md).
///
/// # Errors
/// A unix: address.
pub async fn start_metrics(
    args: &DaemonArgs,
    table: &Daemon,
    config: &Config,
) -> anyhow::Result<()> {
    let Some(daemon) = chatmail_metrics::Daemon::from_name(table.name) else {
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
    tracing::info!(
        "chatmail {} serving metrics on http://{local}/metrics",
        table.name
    );
    Ok(())
}

/// Sets `chatmail_auth_resource`: the machine as account creation measures
/// it, next to the configured limits, so an alert can fire before creation
/// is refused (docs/metrics.md).
fn resources_probe(config: &Config) -> chatmail_metrics::probes::Probe {
    use chatmail_accounts::meter::{ResourceMeter, SystemMeter};
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
    let meter = SystemMeter::default();
    let warn = chatmail_metrics::probes::WarnOnce::default();
    Box::new(move |m: &chatmail_metrics::Metrics| {
        for (measure, value) in limits {
            m.auth.set_resource(measure, value);
        }
        match meter.measure(&dir) {
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
