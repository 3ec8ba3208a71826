//! TURN credentials for `/shared/vendor/deltachat/turn`, answered as
//! `<host>:<port>:<username>:<password>`.
//!
//! Two sources, tried in this order:
//!
//! 1. A shared secret (coturn `use-auth-secret` / `static-auth-secret`, the
//!    "TURN REST API" scheme): username = the expiry unix time, password =
//!    base64(HMAC-SHA1(secret, username)). The username is the bare
//!    timestamp, as chatmaild's own generator writes it: Delta Chat splits
//!    the value at `:`, so a `<ts>:<id>` username would not survive.
//! 2. Otherwise the chatmail-turn service on `turn_socket_path`, as
//!    chatmaild asks it: connect, read one line `<username>:<password>`.
//!
//! When neither works the key is not found, so clients simply do without.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::UnixStream;

use crate::hmac::{base64, hmac_sha1};

/// Port announced to clients (chatmaild's fixed 3478).
pub const DEFAULT_TURN_PORT: u16 = 3478;
/// Validity of secret-based credentials (chatmaild: 5 days).
pub const DEFAULT_TURN_TTL: i64 = 5 * 86_400;
/// Limit for each step of the socket exchange (chatmaild: 5 s).
const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest accepted line from the TURN service.
const MAX_LINE: u64 = 1024;

/// Where TURN credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnOptions {
    /// File holding the shared secret (trailing whitespace ignored).
    pub secret_file: Option<PathBuf>,
    /// Host name announced to clients (chatmaild: `mail_domain`).
    pub host: String,
    /// Port announced to clients.
    pub port: u16,
    /// Seconds secret-based credentials stay valid.
    pub ttl: i64,
    /// Socket of the chatmail-turn service.
    pub socket_path: PathBuf,
}

/// Username and password for `secret`, valid until `expiry`.
pub fn secret_credentials(secret: &[u8], expiry: i64) -> (String, String) {
    let username = expiry.to_string();
    let password = base64(&hmac_sha1(secret, username.as_bytes()));
    (username, password)
}

/// The lookup value at time `now`, or `None` (logged) when no source works.
pub async fn lookup(options: &TurnOptions, now: i64) -> Option<String> {
    let user_pass = match &options.secret_file {
        Some(path) => match tokio::fs::read(path).await {
            Ok(secret) => {
                let secret = secret.trim_ascii_end();
                if secret.is_empty() {
                    tracing::error!(file = %path.display(), "TURN secret file is empty");
                    return None;
                }
                let (user, pass) = secret_credentials(secret, now + options.ttl);
                format!("{user}:{pass}")
            }
            Err(e) => {
                tracing::error!(file = %path.display(), "cannot read TURN secret: {e}");
                return None;
            }
        },
        None => match from_socket(options).await {
            Ok(line) if !line.is_empty() => line,
            Ok(_) => {
                tracing::warn!("TURN service sent no credentials");
                return None;
            }
            Err(e) => {
                tracing::warn!(
                    socket = %options.socket_path.display(),
                    "failed to get TURN credentials: {e}"
                );
                return None;
            }
        },
    };
    Some(format!("{}:{}:{user_pass}", options.host, options.port))
}

async fn from_socket(options: &TurnOptions) -> std::io::Result<String> {
    let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out");
    let stream = tokio::time::timeout(SOCKET_TIMEOUT, UnixStream::connect(&options.socket_path))
        .await
        .map_err(|_| timed_out())??;
    let mut line = String::new();
    let mut reader = BufReader::new(stream).take(MAX_LINE);
    tokio::time::timeout(SOCKET_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| timed_out())??;
    Ok(line.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_credentials_match_coturn_scheme() {
        // Python: base64.b64encode(hmac.new(b"north", b"1700000000", sha1).digest())
        let (user, pass) = secret_credentials(b"north", 1_700_000_000);
        assert_eq!(user, "1700000000");
        assert_eq!(pass, "CWyHi3zCeWqXBir9thl4m+iZPRY=");
    }
}
