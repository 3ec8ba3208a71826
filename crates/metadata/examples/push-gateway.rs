//! A stand-in for the Delta Chat notification gateway, for integration
//! tests: an HTTP/2 (h2c, prior knowledge) server on 127.0.0.1 that records
//! every POST and answers 410 for tokens starting with `gone-`, else 200;
//! tokens starting with `slow-` are answered after 3 seconds (a stalled
//! gateway).
//!
//! `push-gateway URL_FILE LOG_FILE`: writes its `http://127.0.0.1:PORT/notify`
//! URL to URL_FILE once it listens, then appends one JSON line per request
//! (`{"token": ..., "version": ..., "status": ...}`) to LOG_FILE.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url_file, log_file] = args.as_slice() else {
        eprintln!("usage: push-gateway URL_FILE LOG_FILE");
        std::process::exit(2);
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let log = Arc::new(Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_file)?,
    ));
    let url = format!("http://{}/notify", listener.local_addr()?);
    let tmp = format!("{url_file}.tmp");
    std::fs::write(&tmp, &url)?;
    std::fs::rename(&tmp, url_file)?;
    loop {
        let (stream, _) = listener.accept().await?;
        let log = Arc::clone(&log);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(Arc::clone(&log), req));
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    log: Arc<Mutex<std::fs::File>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let version = format!("{:?}", req.version());
    let is_notify = req.method() == hyper::Method::POST && req.uri().path() == "/notify";
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
        .unwrap_or_default();
    if body.starts_with("slow-") {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    }
    let status = match (is_notify, body.starts_with("gone-")) {
        (false, _) => 404,
        (true, true) => 410,
        (true, false) => 200,
    };
    let line = serde_json::json!({"token": body, "version": version, "status": status});
    if let Ok(mut f) = log.lock() {
        let _ = writeln!(f, "{line}");
    }
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    Ok(resp)
}
