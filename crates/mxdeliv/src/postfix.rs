//! A client of Postfix's `smtpd`: the one SMTP conversation both daemons
//! of the HTTPS transport have with their own Postfix (mail from
//! `/mxdeliv` in, mail for Postfix's SMTP client out). Encoding stays in
//! [`crate::wire`].

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use chatmail_net::Stream;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use crate::wire::{self, Reply, WireError};

/// How long Postfix gets to answer a command or take a write.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long Postfix gets after the final dot (the milter's DKIM check has
/// a deadline of its own well below it).
const DATA_TIMEOUT: Duration = Duration::from_secs(300);

/// Where an `smtpd` of our Postfix listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpTarget {
    /// A TCP address, `127.0.0.1:10026`.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// One SMTP connection to Postfix.
pub struct Client {
    io: BufReader<Stream>,
}

fn timed_out(what: &str) -> WireError {
    WireError::Io(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what} timed out"),
    ))
}

impl Client {
    /// Connects to `target`.
    ///
    /// # Errors
    /// When the socket cannot be reached in [`STEP_TIMEOUT`].
    pub async fn connect(target: &SmtpTarget) -> Result<Client, WireError> {
        let connect = async {
            Ok::<_, io::Error>(match target {
                SmtpTarget::Tcp(addr) => Stream::Tcp(TcpStream::connect(addr).await?),
                SmtpTarget::Unix(path) => Stream::Unix(UnixStream::connect(path).await?),
            })
        };
        let stream = tokio::time::timeout(STEP_TIMEOUT, connect)
            .await
            .map_err(|_| timed_out("connect"))??;
        Ok(Client {
            io: BufReader::new(stream),
        })
    }

    /// Sends one command line.
    ///
    /// # Errors
    /// A failed or stalled write.
    pub async fn command(&mut self, line: &str) -> Result<(), WireError> {
        self.write(format!("{line}\r\n").as_bytes()).await
    }

    /// Sends raw bytes (a piece of DATA, already encoded).
    ///
    /// # Errors
    /// A failed or stalled write.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        tokio::time::timeout(STEP_TIMEOUT, self.io.get_mut().write_all(bytes))
            .await
            .map_err(|_| timed_out("write"))??;
        Ok(())
    }

    /// Reads one reply.
    ///
    /// # Errors
    /// A malformed, missing or late reply.
    pub async fn reply(&mut self) -> Result<Reply, WireError> {
        tokio::time::timeout(DATA_TIMEOUT, wire::read_reply(&mut self.io))
            .await
            .map_err(|_| timed_out("reply"))?
    }

    /// Reads one reply, which must have `code`.
    ///
    /// # Errors
    /// As [`Client::reply`], and any other code.
    pub async fn expect(&mut self, code: u16) -> Result<Reply, WireError> {
        let reply = self.reply().await?;
        if reply.code != code {
            return Err(WireError::Unexpected(reply.one_line()));
        }
        Ok(reply)
    }
}
