//! The metrics endpoint: HTTP/1.1 `GET /metrics` answered with the
//! OpenMetrics text format, on its own TCP address (never a mail socket).
//! Anything else gets 404 or 405.
//!
//! Prometheus keeps one connection per target and gives up on a scrape
//! after its `scrape_timeout` (10 s by default), waiting in our listen
//! queue included. So that slow or silent clients cannot hold every slot
//! for longer than that, each connection has a read deadline for its
//! request head ([`HEADER_TIMEOUT`], idle time between requests included)
//! and a lifetime ([`CONNECTION_LIFETIME`], for clients that send requests
//! but never read the answers), both well under the scrape timeout, and
//! [`MAX_CONNECTIONS`] slots: a flood of slow clients delays a scrape by a
//! few deadlines at most, instead of failing it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::probes::Probe;
use crate::{Daemon, Metrics};

/// The OpenMetrics text format's media type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Connections served at once; more wait in the listen queue. Each costs
/// a task and hyper's buffers (tens of KiB at most).
pub const MAX_CONNECTIONS: usize = 64;
/// Longest wait for a request's head, counted from the connection's start
/// or the end of the previous answer: a scrape's arrives within
/// milliseconds on loopback.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest life of one connection: Prometheus opens a new one when we
/// have closed its last.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(4);
/// Prometheus's default `scrape_timeout`, which the deadlines above stay
/// under.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one daemon's endpoint serves.
pub struct Endpoint {
    metrics: &'static Metrics,
    registry: Registry,
    probes: Vec<Probe>,
}

impl Endpoint {
    /// The endpoint of `daemon`, refreshing the scrape-time gauges with
    /// `probes` (see [`crate::probes`]).
    pub fn new(metrics: &'static Metrics, daemon: Daemon, probes: Vec<Probe>) -> Endpoint {
        Endpoint {
            registry: metrics.registry(daemon),
            metrics,
            probes,
        }
    }

    /// The current text of `/metrics`.
    pub fn render(&self) -> String {
        for probe in &self.probes {
            probe(self.metrics);
        }
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `endpoint` on `listener` for as long as the process runs.
pub async fn serve(listener: TcpListener, endpoint: Endpoint) {
    let endpoint = Arc::new(endpoint);
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&limit).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("metrics endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoint = Arc::clone(&endpoint);
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let endpoint = Arc::clone(&endpoint);
                async move { Ok::<_, Infallible>(answer(&endpoint, &req)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // Past its lifetime the connection is dropped, whatever it is
            // doing.
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
        });
    }
}

fn answer(endpoint: &Endpoint, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut resp = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        resp.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static("GET, HEAD"),
        );
        return resp;
    }
    // Rendered in place: the probes cost a stat-sized system call or a
    // one-row SQLite query (the account count lists a directory at most
    // once a minute), less than a thread hand-over would, and a thread of
    // its own would cost every daemon a malloc arena.
    let mut resp = Response::new(Full::new(Bytes::from(endpoint.render())));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(CONTENT_TYPE),
    );
    resp
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
