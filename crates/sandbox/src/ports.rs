//! The sandbox's loopback ports: the five mail ports ([`Ports`]) and the
//! daemons' metrics ports, which follow the table of daemons
//! (docs/metrics.md). The web ports are in [`crate::web`].

use std::io;

use chatmail_snippets::daemons::{DAEMONS, Daemon, METRICS_PORTS};
use serde_json::json;

use crate::{Context, SandboxError};

/// The loopback ports of one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub smtp: u16,
    pub submission: u16,
    pub submissions: u16,
    pub imap: u16,
    pub imaps: u16,
}

pub(crate) fn pick_ports(base: Option<u16>) -> Result<Ports, SandboxError> {
    let ports: Vec<u16> = match base {
        Some(b) => (0..5).map(|i| b.saturating_add(i)).collect(),
        None => {
            // Hold all five at once so the kernel hands out five different ones.
            let listeners = (0..5)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
                .collect::<io::Result<Vec<_>>>()
                .ctx(|| "picking free ports".into())?;
            listeners
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect::<io::Result<Vec<_>>>()
                .ctx(|| "picking free ports".into())?
        }
    };
    Ok(Ports {
        smtp: ports[0],
        submission: ports[1],
        submissions: ports[2],
        imap: ports[3],
        imaps: ports[4],
    })
}

/// The first of the consecutive loopback ports for the daemons' metrics
/// endpoints (docs/metrics.md): with `--port-base`, the ones after the five
/// mail ports and the two web ports ([`crate::web`]), or else a free run.
pub(crate) fn pick_metrics_base(base: Option<u16>) -> Result<u16, SandboxError> {
    if let Some(b) = base {
        return Ok(b.saturating_add(7));
    }
    let others = METRICS_PORTS - 1;
    for _ in 0..100 {
        let first =
            std::net::TcpListener::bind("127.0.0.1:0").ctx(|| "picking free ports".into())?;
        let p = first
            .local_addr()
            .ctx(|| "picking free ports".into())?
            .port();
        let Some(last) = p.checked_add(others) else {
            continue;
        };
        let rest: Vec<_> = (p + 1..=last)
            .map_while(|q| std::net::TcpListener::bind(("127.0.0.1", q)).ok())
            .collect();
        if rest.len() == usize::from(others) {
            return Ok(p);
        }
    }
    Err(SandboxError::Startup(format!(
        "no {METRICS_PORTS} consecutive free loopback ports for the metrics endpoints"
    )))
}

/// The metrics port of `daemon`, when it serves metrics.
pub(crate) fn metrics_port(base: u16, daemon: &Daemon) -> Option<u16> {
    chatmail_metrics::Daemon::from_name(daemon.name).and_then(|_| daemon.metrics_port(base))
}

/// `relay.json`'s `metrics`: daemon -> URL of its endpoint.
pub(crate) fn metrics_urls(base: u16) -> serde_json::Value {
    DAEMONS
        .iter()
        .filter_map(|d| {
            let port = metrics_port(base, d)?;
            Some((
                d.name.to_owned(),
                json!(format!("http://127.0.0.1:{port}/metrics")),
            ))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The daemons of the table with a metrics port are the metrics
    /// crate's, and it knows no other.
    #[test]
    fn the_table_and_the_metrics_crate_name_the_same_daemons() {
        let table: Vec<&str> = DAEMONS
            .iter()
            .filter(|d| d.metrics_offset.is_some())
            .map(|d| d.name)
            .collect();
        let metrics: Vec<&str> = chatmail_metrics::Daemon::ALL
            .iter()
            .map(|d| d.name())
            .collect();
        assert_eq!(table, metrics);
    }

    #[test]
    fn metrics_urls_follow_the_table() {
        let urls = metrics_urls(9547);
        assert_eq!(urls["auth"], "http://127.0.0.1:9547/metrics");
        assert_eq!(urls["policy"], "http://127.0.0.1:9551/metrics");
        let serving = DAEMONS.iter().filter(|d| d.metrics_offset.is_some());
        assert_eq!(urls.as_object().map(|o| o.len()), Some(serving.count()));
        assert_eq!(pick_metrics_base(Some(2525)).unwrap(), 2532);
    }
}
