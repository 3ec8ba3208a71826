//! `chatmail doctor`'s check of the metrics endpoints (docs/metrics.md):
//! each enabled one must answer `GET /metrics` with 200 and name the daemon
//! that should be there in `chatmail_build_info`, so a port swapped between
//! two daemons or taken by another program is caught too.

use std::net::SocketAddr;
use std::time::Duration;

use chatmail_config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::check::{Check, Status};

/// The largest answer read; a daemon's page is a few kB.
const MAX_ANSWER: u64 = 1 << 20;

/// Why a `--metrics DAEMON=ADDRESS` argument was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetricsArgError {
    #[error("expected DAEMON=inet:IP:PORT or DAEMON=http://IP:PORT/metrics, got {0:?}")]
    Syntax(String),
    #[error("unknown daemon {0:?}")]
    UnknownDaemon(String),
}

/// Parses `--metrics DAEMON=inet:IP:PORT` (or the `http://IP:PORT/metrics`
/// URL the sandbox's relay.json lists).
///
/// # Errors
/// Without `=`, with an address that is not IP:PORT, or an unknown daemon.
pub fn parse_metrics_arg(arg: &str) -> Result<(&'static str, SocketAddr), MetricsArgError> {
    let syntax = || MetricsArgError::Syntax(arg.to_owned());
    let (daemon, addr) = arg.split_once('=').ok_or_else(syntax)?;
    let addr = match addr.strip_prefix("http://") {
        Some(url) => url.strip_suffix("/metrics").unwrap_or(url),
        None => addr.strip_prefix("inet:").unwrap_or(addr),
    };
    let addr = addr.parse().map_err(|_| syntax())?;
    let daemon = chatmail_snippets::daemons::daemon(daemon)
        .ok_or_else(|| MetricsArgError::UnknownDaemon(daemon.to_owned()))?;
    Ok((daemon.name, addr))
}

/// The endpoints to check: `metrics_listen` of `config` plus each daemon's
/// offset, replaced by the `explicit` ones given on the command line.
pub fn endpoints(
    config: Option<&Config>,
    explicit: &[(&'static str, SocketAddr)],
) -> Vec<(&'static str, SocketAddr)> {
    let mut out: Vec<(&'static str, SocketAddr)> = Vec::new();
    if let Some(base) = config.and_then(|c| c.metrics_listen) {
        for daemon in chatmail_snippets::daemons::DAEMONS {
            if let Some(port) = daemon.metrics_port(base.port()) {
                let mut addr = base;
                addr.set_port(port);
                out.push((daemon.name, addr));
            }
        }
    }
    for &(daemon, addr) in explicit {
        match out.iter_mut().find(|(d, _)| *d == daemon) {
            Some(entry) => entry.1 = addr,
            None => out.push((daemon, addr)),
        }
    }
    out
}

/// One check per endpoint, all asked at once.
pub async fn check_all(
    endpoints: Vec<(&'static str, SocketAddr)>,
    timeout: Duration,
) -> Vec<Check> {
    let tasks: Vec<_> = endpoints
        .into_iter()
        .map(|(daemon, addr)| {
            let task = tokio::spawn(async move {
                tokio::time::timeout(timeout, scrape(daemon, addr))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!("no answer within {} s", timeout.as_secs_f32()))
                    })
            });
            (daemon, addr, task)
        })
        .collect();
    let mut checks = Vec::new();
    for (daemon, addr, task) in tasks {
        let result = task
            .await
            .unwrap_or_else(|e| Err(format!("the check itself failed: {e}")));
        let name = format!("metrics {daemon}");
        let url = format!("http://{addr}/metrics");
        checks.push(match result {
            Ok(series) => Check {
                status: Status::Ok,
                name,
                detail: format!("{url} answers ({series} series)"),
                fix: None,
            },
            Err(e) => Check {
                status: Status::Fail,
                name,
                detail: format!("{url}: {e}"),
                fix: Some(format!(
                    "check metrics_listen in chatmail.ini and that chatmail-{daemon} runs; \
                     see journalctl -u chatmail-{daemon}"
                )),
            },
        });
    }
    checks
}

/// Fetches `/metrics` from `addr`; the number of samples on the page.
async fn scrape(daemon: &str, addr: SocketAddr) -> Result<usize, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("cannot read the answer: {e}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200 ") {
        return Err(format!("answered {status:?}, not 200"));
    }
    let build = format!("chatmail_build_info{{daemon=\"{daemon}\"");
    if !body.lines().any(|l| l.starts_with(&build)) {
        let other = body
            .lines()
            .find(|l| l.starts_with("chatmail_build_info"))
            .unwrap_or("no chatmail_build_info");
        return Err(format!("not chatmail {daemon}'s metrics ({other})"));
    }
    Ok(body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_take_an_address_or_the_sandbox_url() {
        let want = ("milter", "127.0.0.1:9543".parse().unwrap());
        for arg in [
            "milter=inet:127.0.0.1:9543",
            "milter=127.0.0.1:9543",
            "milter=http://127.0.0.1:9543/metrics",
        ] {
            assert_eq!(parse_metrics_arg(arg).unwrap(), want, "{arg}");
        }
        for bad in ["milter", "milter=localhost:1", "nobody=127.0.0.1:1"] {
            assert!(parse_metrics_arg(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn endpoints_follow_the_base_port_unless_given() {
        let mut config = Config::for_tests("x.org", std::path::Path::new("/tmp"));
        assert!(endpoints(Some(&config), &[]).is_empty());
        config.metrics_listen = Some("127.0.0.1:9540".parse().unwrap());
        let moved = [("policy", "127.0.0.1:1".parse().unwrap())];
        let got = endpoints(Some(&config), &moved);
        let ports: Vec<_> = got.iter().map(|(d, a)| (*d, a.port())).collect();
        assert_eq!(
            ports,
            [
                ("auth", 9540),
                ("lastlogin", 9541),
                ("metadata", 9542),
                ("milter", 9543),
                ("policy", 1)
            ]
        );
    }
}
