//! `push-gateway URL_FILE LOG_FILE`: the stand-in notification gateway (see
//! the library) as a process, for the pytest integration tests. It writes
//! its `http://127.0.0.1:PORT/notify` URL to URL_FILE once it listens, then
//! appends one JSON line per request (`{"status": ..., "token": ...,
//! "version": ...}`) to LOG_FILE; tokens starting with `gone-` get 410,
//! tokens starting with `slow-` are answered after 3 seconds.

use chatmail_push_gateway_stub::{Gateway, Options};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, url_file, log_file] = args.as_slice() else {
        eprintln!("usage: push-gateway URL_FILE LOG_FILE");
        std::process::exit(2);
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)?;
    let gateway = Gateway::start_with(Options {
        prefix_rules: true,
        log: Some(log),
    })
    .await;
    let tmp = format!("{url_file}.tmp");
    std::fs::write(&tmp, &gateway.url)?;
    std::fs::rename(&tmp, url_file)?;
    std::future::pending::<()>().await;
    Ok(())
}
