//! `chatmail mxdeliv`: relay-to-relay mail arriving over HTTPS.
//!
//! nginx passes `POST /mxdeliv` here (over a Unix socket only it may reach,
//! with the client's address in `X-Real-IP`). The envelope comes in the
//! headers (`X-MAIL-FROM`, absent for the null sender; one `X-MAIL-TO` per
//! recipient), the body is the message as SMTP DATA would carry it. We hand
//! it to Postfix as one SMTP transaction on a loopback `smtpd` that trusts
//! us with XCLIENT, so every check of port 25 applies unchanged (milter,
//! policy, recipient checks, size) to the real client's address, and the
//! body streams through: nothing is buffered beyond one chunk.
//!
//! The answer: 200 only when Postfix accepted the message for every
//! recipient; otherwise Postfix's reply text in the body, with 400 for a
//! permanent refusal, 503 for a temporary one, 413 for an oversized body
//! and 405 for anything but POST (docs/design.md, "HTTPS transport").

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chatmail_net::Listener;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::HeaderMap;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

use crate::postfix::{Client, SmtpTarget};
use crate::wire::{self, DotStuffer, Reply, WireError};

/// The envelope sender; absent for the null sender.
pub const HEADER_MAIL_FROM: &str = "x-mail-from";
/// One recipient; the header appears once per recipient.
pub const HEADER_MAIL_TO: &str = "x-mail-to";
/// The client's address, set by nginx.
pub const HEADER_CLIENT: &str = "x-real-ip";
/// The client's port, set by nginx. Postfix passes it on to the milter,
/// which takes a port of 0 for mail Postfix made itself: it must be there.
pub const HEADER_CLIENT_PORT: &str = "x-real-port";

/// The most connections from nginx at once (it keeps some alive).
const MAX_CONNECTIONS: usize = 256;

/// How long Postfix and the client each get for one step.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Postfix's `smtpd` for mail from `/mxdeliv`.
    pub postfix: SmtpTarget,
    /// The largest body accepted (`max_message_size`).
    pub max_message_size: u64,
    /// The most messages on their way to Postfix at once; more get 503.
    pub max_concurrent: usize,
    /// The most recipients of one request.
    pub max_recipients: usize,
    /// Our name in EHLO.
    pub helo: String,
}

/// Serves `/mxdeliv` on `listener` until `shutdown`. A message in transit
/// when the service stops never reaches the queue (its SMTP transaction is
/// cut before the final dot) and the sender retries it.
///
/// # Errors
///
/// None at present: accept failures are logged and retried.
pub async fn run(
    listener: Listener,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let state = Arc::new(State {
        slots: Semaphore::new(opts.max_concurrent),
        opts,
    });
    let serve = move |stream, _stop| {
        let state = Arc::clone(&state);
        async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(state.handle(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(STEP_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!("connection: {e}");
            }
        }
    };
    chatmail_net::serve_connections(listener, "mxdeliv", MAX_CONNECTIONS, shutdown, serve).await;
    Ok(())
}

struct State {
    opts: Options,
    slots: Semaphore,
}

/// One answer: the status and the SMTP-style text of the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body: a reply line such as `250 2.0.0 Ok: queued as 4F2`.
    pub text: String,
}

impl Answer {
    fn new(status: StatusCode, text: impl Into<String>) -> Answer {
        Answer {
            status,
            text: text.into(),
        }
    }

    /// The answer for Postfix's final `reply`.
    pub fn from_reply(reply: &Reply) -> Answer {
        let status = if reply.is_positive() {
            StatusCode::OK
        } else if reply.code == 552 {
            StatusCode::PAYLOAD_TOO_LARGE
        } else if reply.is_permanent() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        Answer::new(status, reply.one_line())
    }
}

/// Refusals of our own, before Postfix is asked.
fn not_post() -> Answer {
    Answer::new(StatusCode::METHOD_NOT_ALLOWED, "405 only POST is accepted")
}
fn too_big() -> Answer {
    Answer::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "552 5.3.4 Message exceeds maximum size",
    )
}
fn busy() -> Answer {
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "451 4.3.2 Too many messages in transit, try again later",
    )
}
fn postfix_down() -> Answer {
    Answer::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "451 4.3.0 Mail system temporarily unavailable",
    )
}

/// The envelope of a request, read from its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The sender; empty for the null sender.
    pub from: String,
    /// The recipients, in order.
    pub to: Vec<String>,
    /// The client's address and port.
    pub client: std::net::SocketAddr,
}

/// Reads the envelope; a refusal (400) says what is wrong.
pub fn envelope(headers: &HeaderMap, max_recipients: usize) -> Result<Envelope, Answer> {
    let bad = |what: &str| Answer::new(StatusCode::BAD_REQUEST, format!("501 5.5.4 {what}"));
    let text = |name: &str| -> Result<Vec<String>, Answer> {
        headers
            .get_all(name)
            .iter()
            .map(|v| {
                let v = v.to_str().map_err(|_| bad("header is not ASCII"))?.trim();
                let v = v
                    .strip_prefix('<')
                    .and_then(|v| v.strip_suffix('>'))
                    .unwrap_or(v);
                wire::path_arg(v).map_err(|_| bad("bad address"))?;
                Ok(v.to_owned())
            })
            .collect()
    };
    let mut from = text(HEADER_MAIL_FROM)?;
    if from.len() > 1 {
        return Err(bad("more than one X-MAIL-FROM"));
    }
    let to = text(HEADER_MAIL_TO)?;
    if to.is_empty() || to.iter().any(String::is_empty) {
        return Err(bad("no X-MAIL-TO recipient"));
    }
    if to.len() > max_recipients {
        return Err(Answer::new(
            StatusCode::BAD_REQUEST,
            "452 4.5.3 Too many recipients",
        ));
    }
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let ip: Option<IpAddr> = header(HEADER_CLIENT).and_then(|v| v.parse().ok());
    let port: Option<u16> = header(HEADER_CLIENT_PORT)
        .and_then(|v| v.parse().ok())
        .filter(|p| *p != 0);
    let (Some(ip), Some(port)) = (ip, port) else {
        return Err(bad("no client address"));
    };
    let client = std::net::SocketAddr::new(ip, port);
    Ok(Envelope {
        from: from.pop().unwrap_or_default(),
        to,
        client,
    })
}

impl State {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let answer = self.answer(req).await;
        Response::builder()
            .status(answer.status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(answer.text + "\r\n")))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }

    async fn answer(&self, req: Request<Incoming>) -> Answer {
        if req.method() != Method::POST {
            return not_post();
        }
        let env = match envelope(req.headers(), self.opts.max_recipients) {
            Ok(env) => env,
            Err(refusal) => {
                tracing::info!("refused before Postfix: {}", refusal.text);
                return refusal;
            }
        };
        let length = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|n| n > self.opts.max_message_size) {
            tracing::info!(
                "from=<{}> client={}: refused, {} bytes announced",
                env.from,
                env.client,
                length.unwrap_or(0)
            );
            return too_big();
        }
        let Ok(_slot) = self.slots.try_acquire() else {
            tracing::warn!(
                "client={}: deferred, too many messages in transit",
                env.client
            );
            return busy();
        };
        let answer = match self.inject(&env, length, req.into_body()).await {
            Ok(answer) => answer,
            Err(Injection::TooBig) => too_big(),
            Err(Injection::Client(e)) => {
                tracing::info!(
                    "from=<{}> client={}: body not received: {e}",
                    env.from,
                    env.client
                );
                return Answer::new(StatusCode::BAD_REQUEST, "451 4.3.0 body not received");
            }
            Err(Injection::Postfix(e)) => {
                tracing::warn!("from=<{}> client={}: Postfix: {e}", env.from, env.client);
                postfix_down()
            }
        };
        tracing::info!(
            "from=<{}> to={} client={}: {} {}",
            env.from,
            env.to.join(","),
            env.client,
            answer.status.as_u16(),
            answer.text
        );
        answer
    }

    /// One SMTP transaction with Postfix for `env`, the body streamed from
    /// `body`.
    async fn inject(
        &self,
        env: &Envelope,
        length: Option<u64>,
        mut body: Incoming,
    ) -> Result<Answer, Injection> {
        let mut smtp = Client::connect(&self.opts.postfix).await?;
        smtp.expect(220).await?;
        smtp.command(&format!("EHLO {}", self.opts.helo)).await?;
        smtp.expect(250).await?;
        let addr = match env.client.ip() {
            IpAddr::V4(a) => a.to_string(),
            IpAddr::V6(a) => format!("IPV6:{a}"),
        };
        let helo = env
            .from
            .rsplit_once('@')
            .map_or_else(|| format!("[{}]", env.client.ip()), |(_, d)| d.to_owned());
        smtp.command(&format!(
            "XCLIENT ADDR={addr} PORT={} NAME=[UNAVAILABLE] PROTO=ESMTP HELO={helo}",
            env.client.port()
        ))
        .await?;
        // Postfix answers XCLIENT with a new greeting.
        smtp.expect(220).await?;
        smtp.command(&format!("EHLO {helo}")).await?;
        smtp.expect(250).await?;
        let size = length.map(|n| format!(" SIZE={n}")).unwrap_or_default();
        smtp.command(&format!("MAIL FROM:<{}>{size}", env.from))
            .await?;
        let reply = smtp.reply().await?;
        if !reply.is_positive() {
            return Ok(Answer::from_reply(&reply));
        }
        for rcpt in &env.to {
            smtp.command(&format!("RCPT TO:<{rcpt}>")).await?;
            let reply = smtp.reply().await?;
            // All or nothing: a partial acceptance would make the sender
            // retry every recipient, duplicating the mail of those accepted.
            if !reply.is_positive() {
                let _ = smtp.command("QUIT").await;
                return Ok(Answer::from_reply(&reply));
            }
        }
        smtp.command("DATA").await?;
        let reply = smtp.reply().await?;
        if reply.code != 354 {
            return Ok(Answer::from_reply(&reply));
        }
        let mut stuffer = DotStuffer::default();
        let mut out = Vec::new();
        let mut seen: u64 = 0;
        loop {
            let frame = tokio::time::timeout(STEP_TIMEOUT, body.frame())
                .await
                .map_err(|_| Injection::Client("timed out".into()))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| Injection::Client(e.to_string()))?;
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            seen += chunk.len() as u64;
            if seen > self.opts.max_message_size {
                // Dropping the connection before the final dot discards
                // the transaction in Postfix. The rest of the body is read
                // and thrown away, so that nginx, still sending it, gets
                // the answer rather than a closed connection.
                drop(smtp);
                drain(&mut body, self.opts.max_message_size).await;
                return Err(Injection::TooBig);
            }
            out.clear();
            stuffer.encode(&chunk, &mut out);
            smtp.write(&out).await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        smtp.write(&out).await?;
        let reply = smtp.reply().await?;
        let _ = smtp.command("QUIT").await;
        Ok(Answer::from_reply(&reply))
    }
}

/// Reads and discards what is left of `body`, for at most [`STEP_TIMEOUT`]
/// and `limit` more bytes.
async fn drain(body: &mut Incoming, limit: u64) {
    let mut left = limit;
    let _ = tokio::time::timeout(STEP_TIMEOUT, async {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(chunk) = frame.into_data() {
                let n = chunk.len() as u64;
                if n > left {
                    return;
                }
                left -= n;
            }
        }
    })
    .await;
}

enum Injection {
    TooBig,
    Client(String),
    Postfix(String),
}

impl From<WireError> for Injection {
    fn from(e: WireError) -> Injection {
        Injection::Postfix(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn envelopes() {
        let env = envelope(
            &headers(&[
                ("X-MAIL-FROM", "a@x.test"),
                ("X-MAIL-TO", "b@y.test"),
                ("X-MAIL-TO", "<c@y.test>"),
                ("X-Real-IP", "192.0.2.7"),
                ("X-Real-Port", "41234"),
            ]),
            10,
        )
        .unwrap();
        assert_eq!(env.from, "a@x.test");
        assert_eq!(env.to, ["b@y.test", "c@y.test"]);
        assert_eq!(env.client.to_string(), "192.0.2.7:41234");

        let null = envelope(
            &headers(&[
                ("X-MAIL-TO", "b@y.test"),
                ("X-Real-IP", "::1"),
                ("X-Real-Port", "1"),
            ]),
            10,
        )
        .unwrap();
        assert_eq!(null.from, "");

        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("X-MAIL-FROM", "a@x"), ("X-Real-IP", "::1")],
                "501 5.5.4 no X-MAIL-TO recipient",
            ),
            (
                &[
                    ("X-MAIL-FROM", "a@x"),
                    ("X-MAIL-FROM", "b@x"),
                    ("X-MAIL-TO", "c@y"),
                    ("X-Real-IP", "::1"),
                ],
                "501 5.5.4 more than one X-MAIL-FROM",
            ),
            (&[("X-MAIL-TO", "c@y")], "501 5.5.4 no client address"),
            (
                &[
                    ("X-MAIL-TO", "c@y"),
                    ("X-Real-IP", "::1"),
                    ("X-Real-Port", "0"),
                ],
                "501 5.5.4 no client address",
            ),
            (
                &[("X-MAIL-TO", "c@y>\r\nRSET"), ("X-Real-IP", "::1")],
                "501 5.5.4 bad address",
            ),
            (
                &[
                    ("X-MAIL-TO", "a@y"),
                    ("X-MAIL-TO", "b@y"),
                    ("X-MAIL-TO", "c@y"),
                    ("X-Real-IP", "::1"),
                ],
                "452 4.5.3 Too many recipients",
            ),
        ];
        for (h, want) in cases {
            // Header values cannot carry CR LF; the injection case is
            // checked on path_arg's own table instead.
            let Ok(h) = std::panic::catch_unwind(|| headers(h)) else {
                continue;
            };
            assert_eq!(envelope(&h, 2).unwrap_err().text, *want);
        }
    }

    #[test]
    fn answers_for_postfix_replies() {
        let cases = [
            (250, StatusCode::OK),
            (552, StatusCode::PAYLOAD_TOO_LARGE),
            (554, StatusCode::BAD_REQUEST),
            (523, StatusCode::BAD_REQUEST),
            (451, StatusCode::SERVICE_UNAVAILABLE),
        ];
        for (code, status) in cases {
            let a = Answer::from_reply(&Reply::new(code, "x"));
            assert_eq!(a.status, status, "{code}");
            assert_eq!(a.text, format!("{code} x"));
        }
    }
}
