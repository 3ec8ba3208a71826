//! The daemons' sockets, each asked a harmless question in its own
//! protocol: a Dovecot dict lookup of a key that cannot exist (auth,
//! lastlogin, metadata; docs/design.md, "Dict keys"), a Postfix policy query
//! for a foreign recipient, and a milter option negotiation, as Postfix and
//! Dovecot open their connections (docs/design.md, "Architecture"). A daemon
//! that accepts connections but cannot answer fails too, and each gets
//! [`DoctorOptions::timeout`] to answer, so a hung daemon is a FAIL line.

use std::path::Path;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::check::Check;
use super::options::DoctorOptions;

/// The `socket DAEMON` lines, one per socket in [`DoctorOptions::sockets`].
pub(super) async fn socket_checks(opts: &DoctorOptions) -> Vec<Check> {
    let mut checks = Vec::new();
    // All at once: a stopped daemon costs one timeout, not one each.
    let pending: Vec<_> = opts
        .sockets
        .iter()
        .map(|(daemon, path)| {
            let (daemon, host, timeout) = (*daemon, opts.roots.host(path), opts.timeout);
            let task = tokio::spawn(async move {
                tokio::time::timeout(timeout, question(daemon, &host))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!("no answer within {} s", timeout.as_secs_f32()))
                    })
            });
            (daemon, opts.roots.host(path), task)
        })
        .collect();
    for (daemon, host, task) in pending {
        let result = task
            .await
            .unwrap_or_else(|e| Err(format!("the check itself failed: {e}")));
        let name = format!("socket {daemon}");
        checks.push(match result {
            Ok(answer) => Check::ok(name, format!("{} answers ({answer})", host.display())),
            Err(e) => Check::fail(
                name,
                format!("{}: {e}", host.display()),
                format!(
                    "systemctl enable --now chatmail-{daemon}.service; \
                     see journalctl -u chatmail-{daemon}"
                ),
            ),
        });
    }
    checks
}

/// Asks `daemon` a harmless question on `socket`; the answer's gist.
async fn question(daemon: &str, socket: &Path) -> Result<String, String> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    match daemon {
        "policy" => question_policy(stream).await,
        "milter" => question_milter(stream).await,
        "transport" => question_lmtp(stream).await,
        "mxdeliv" => question_mxdeliv(stream).await,
        _ => question_dict(daemon, stream).await,
    }
    .map_err(|e| e.to_string())
}

#[derive(Debug, thiserror::Error)]
enum AnswerError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("closed the connection without answering")]
    Closed,
    #[error("unexpected answer {0:?}")]
    Unexpected(String),
}

/// Sends a line-protocol `query` and returns the first answer line.
async fn ask(stream: UnixStream, query: &[u8]) -> Result<String, AnswerError> {
    let mut stream = BufReader::new(stream);
    // A daemon that answers before reading (a greeting, an error) and hangs
    // up makes the write fail; its answer still says more than EPIPE.
    let sent = stream.get_mut().write_all(query).await;
    let mut line = String::new();
    match (stream.read_line(&mut line).await, sent) {
        (Ok(n), _) if n > 0 => Ok(line.trim_end().to_owned()),
        (_, Err(e)) => Err(AnswerError::Io(e)),
        (Ok(_), Ok(())) => Err(AnswerError::Closed),
        (Err(e), Ok(())) => Err(AnswerError::Io(e)),
    }
}

/// Dovecot dict protocol 3.2: HELLO, then a lookup of a key no daemon can
/// have; `N` (not found) or `F` (refused) both prove it is serving.
async fn question_dict(daemon: &str, stream: UnixStream) -> Result<String, AnswerError> {
    let key = match daemon {
        // A userdb lookup never creates an account, and this domain is
        // reserved, so it cannot be ours.
        "auth" => "shared/userdb/chatmail-doctor@example.invalid",
        _ => "shared/chatmail-doctor/probe",
    };
    let line = ask(stream, format!("H3\t2\t0\t\t{daemon}\nL{key}\n").as_bytes()).await?;
    match line.as_bytes().first() {
        Some(b'N') => Ok("lookup: not found".into()),
        Some(b'F') => Ok("lookup: refused".into()),
        Some(b'O') => Ok("lookup: found".into()),
        _ => Err(AnswerError::Unexpected(line)),
    }
}

/// A policy query for a recipient in a reserved foreign domain at RCPT:
/// it counts against no rate limit and creates nothing.
async fn question_policy(stream: UnixStream) -> Result<String, AnswerError> {
    let line = ask(
        stream,
        b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
          client_address=127.0.0.1\nclient_name=localhost\nhelo_name=localhost\n\
          sender=\nrecipient=chatmail-doctor@example.invalid\n\
          instance=chatmail-doctor\n\n",
    )
    .await?;
    if line.starts_with("action=") {
        Ok(line)
    } else {
        Err(AnswerError::Unexpected(line))
    }
}

/// The LMTP greeting of `chatmail transport` (then QUIT: nothing is sent).
async fn question_lmtp(stream: UnixStream) -> Result<String, AnswerError> {
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    if stream.read_line(&mut line).await? == 0 {
        return Err(AnswerError::Closed);
    }
    let _ = stream.get_mut().write_all(b"QUIT\r\n").await;
    let line = line.trim_end().to_owned();
    if line.starts_with("220 ") && line.ends_with(" LMTP") {
        Ok(format!("LMTP greeting: {line}"))
    } else {
        Err(AnswerError::Unexpected(line))
    }
}

/// A GET on `/mxdeliv`, which `chatmail mxdeliv` answers 405 (only other
/// relays' POSTs are mail).
async fn question_mxdeliv(stream: UnixStream) -> Result<String, AnswerError> {
    let line = ask(
        stream,
        b"GET /mxdeliv HTTP/1.1\r\nHost: chatmail-doctor\r\nConnection: close\r\n\r\n",
    )
    .await?;
    if line.starts_with("HTTP/1.1 405") {
        Ok(format!("{line} to GET /mxdeliv"))
    } else {
        Err(AnswerError::Unexpected(line))
    }
}

/// Milter option negotiation (SMFIC_OPTNEG, protocol 6), as Postfix opens
/// every connection; the daemon answers with its own OPTNEG.
async fn question_milter(mut stream: UnixStream) -> Result<String, AnswerError> {
    let mut packet = Vec::with_capacity(17);
    packet.extend_from_slice(&13u32.to_be_bytes());
    packet.push(b'O');
    packet.extend_from_slice(&6u32.to_be_bytes());
    // Every action and protocol step Postfix 3.7 offers.
    packet.extend_from_slice(&0x1ffu32.to_be_bytes());
    packet.extend_from_slice(&0x1f_ffffu32.to_be_bytes());
    stream.write_all(&packet).await?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => AnswerError::Closed,
            _ => AnswerError::Io(e),
        })?;
    let len = u32::from_be_bytes(len);
    if len == 0 || len > 64 * 1024 {
        return Err(AnswerError::Unexpected(format!("packet length {len}")));
    }
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).await?;
    // SMFIC_QUIT, so the daemon does not log an aborted connection.
    let _ = stream.write_all(&[0, 0, 0, 1, b'Q']).await;
    match body[0] {
        b'O' => {
            let version = body
                .get(1..5)
                .map(|v| u32::from_be_bytes([v[0], v[1], v[2], v[3]]));
            Ok(format!(
                "option negotiation, version {}",
                version.unwrap_or(0)
            ))
        }
        c => Err(AnswerError::Unexpected(format!(
            "milter reply {:?}",
            char::from(c)
        ))),
    }
}
