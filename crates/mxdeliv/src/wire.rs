//! The bytes of the three protocols the HTTPS transport speaks with Postfix:
//! SMTP as a client (replies, RFC 5321 section 4.2; the DATA transparency of
//! section 4.5.2), LMTP as a server (RFC 2033: command lines, the dotted
//! DATA body) and socketmap lookups (Postfix's `socketmap_table(5)`:
//! netstrings).
//!
//! This module only parses and encodes; what a reply or a lookup means is
//! the daemons' business (docs/design.md, "HTTPS transport").

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// The longest reply or command line we read (RFC 5321 allows 512 octets
/// for a reply line; Postfix's XFORWARD lines can be longer).
pub const MAX_LINE: usize = 4096;
/// The most lines of one multi-line reply.
const MAX_REPLY_LINES: usize = 100;
/// The longest socketmap request (Postfix's own limit is 100,000).
pub const MAX_NETSTRING: usize = 100_000;

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The peer closed the connection or the socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer sent something that is not this protocol.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A reply other than the one the conversation needs.
    #[error("unexpected reply {0}")]
    Unexpected(String),
    /// A DATA body longer than allowed.
    #[error("message exceeds {0} bytes")]
    TooBig(u64),
}

/// One SMTP or LMTP reply: its code and the text of each line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text after the code of every line.
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply.
    pub fn new(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![text.to_owned()],
        }
    }

    /// 2xx.
    pub fn is_positive(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 5xx.
    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The reply as one line of text, `250 2.0.0 Ok`, its lines joined by
    /// spaces (for logs and HTTP answers).
    pub fn one_line(&self) -> String {
        format!("{} {}", self.code, self.lines.join(" "))
    }

    /// The reply as it goes on the wire, CRLF after every line.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            out.extend_from_slice(format!("{}{sep}{line}\r\n", self.code).as_bytes());
        }
        out
    }
}

/// Reads one line (without its line end) of at most [`MAX_LINE`] bytes.
/// `None` at the end of input.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, WireError> {
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64 + 2)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(WireError::Protocol("line too long or unterminated"));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(line))
}

/// Reads one (possibly multi-line) reply.
pub async fn read_reply<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Reply, WireError> {
    let mut lines = Vec::new();
    loop {
        let Some(line) = read_line(r).await? else {
            return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into()));
        };
        let (code, more, text) = parse_reply_line(&line)?;
        if lines.len() >= MAX_REPLY_LINES {
            return Err(WireError::Protocol("reply has too many lines"));
        }
        lines.push(text);
        if !more {
            return Ok(Reply { code, lines });
        }
    }
}

fn parse_reply_line(line: &[u8]) -> Result<(u16, bool, String), WireError> {
    let bad = WireError::Protocol("malformed reply line");
    if line.len() < 3 || !line[..3].iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    let code = u16::from(line[0] - b'0') * 100
        + u16::from(line[1] - b'0') * 10
        + u16::from(line[2] - b'0');
    if !(200..600).contains(&code) {
        return Err(bad);
    }
    let more = match line.get(3) {
        None | Some(b' ') => false,
        Some(b'-') => true,
        Some(_) => return Err(bad),
    };
    let text = String::from_utf8_lossy(line.get(4..).unwrap_or_default()).into_owned();
    Ok((code, more, text))
}

/// Encodes a message body for SMTP DATA: lines end in CRLF (a bare LF or
/// CR becomes CRLF) and a line starting with `.` gets a second one. Fed in
/// pieces of any size, so a body streams through without being held.
#[derive(Debug, Default)]
pub struct DotStuffer {
    mid_line: bool,
    after_cr: bool,
}

impl DotStuffer {
    /// Appends the encoding of `input` to `out`.
    pub fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        out.reserve(input.len() + input.len() / 64 + 4);
        for &b in input {
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' => {
                    out.extend_from_slice(b"\r\n");
                    self.mid_line = false;
                    self.after_cr = true;
                }
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.mid_line = false;
                }
                _ => {
                    if !self.mid_line && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.mid_line = true;
                }
            }
        }
    }

    /// Appends the end of the body: a line end if the last line lacks one,
    /// then the lone dot.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self.mid_line {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

/// Reads a dotted DATA body (as an LMTP or SMTP server receives it) up to
/// the lone dot, undoing the transparency dots; lines keep their CRLF. At
/// most `max` bytes are kept: a longer body is read to its end (so the
/// connection stays usable) and then refused with [`WireError::TooBig`].
pub async fn read_dotted<R: AsyncBufRead + Unpin>(
    r: &mut R,
    max: u64,
) -> Result<Vec<u8>, WireError> {
    let mut body = Vec::new();
    let mut too_big = false;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Lines may be long (base64 never is, but a peer may send anything);
        // read in bounded pieces so a line without an end cannot grow memory.
        let n = (&mut *r)
            .take(64 * 1024)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if line == b".\r\n" || line == b".\n" {
            break;
        }
        let piece = if line.first() == Some(&b'.') && body_at_line_start(&body) {
            &line[1..]
        } else {
            &line[..]
        };
        if too_big || body.len() as u64 + piece.len() as u64 > max {
            too_big = true;
            continue;
        }
        body.extend_from_slice(piece);
    }
    if too_big {
        return Err(WireError::TooBig(max));
    }
    Ok(body)
}

fn body_at_line_start(body: &[u8]) -> bool {
    body.is_empty() || body.last() == Some(&b'\n')
}

/// Reads one netstring (`<len>:<data>,`) of at most [`MAX_NETSTRING`]
/// bytes. `None` at a clean end of input.
pub async fn read_netstring<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> Result<Option<Vec<u8>>, WireError> {
    let mut len: usize = 0;
    let mut digits = 0;
    loop {
        let mut b = [0u8];
        if r.read(&mut b).await? == 0 {
            if digits == 0 {
                return Ok(None);
            }
            return Err(WireError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        match b[0] {
            d @ b'0'..=b'9' if digits < 6 => {
                len = len * 10 + usize::from(d - b'0');
                digits += 1;
            }
            b':' if digits > 0 => break,
            _ => return Err(WireError::Protocol("malformed netstring length")),
        }
    }
    if len > MAX_NETSTRING {
        return Err(WireError::Protocol("netstring too long"));
    }
    let mut data = vec![0u8; len + 1];
    r.read_exact(&mut data).await?;
    if data.pop() != Some(b',') {
        return Err(WireError::Protocol("netstring without its comma"));
    }
    Ok(Some(data))
}

/// Encodes `data` as a netstring.
pub fn netstring(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.push(b',');
    out
}

/// Encodes an address for `MAIL FROM:<...>` or `RCPT TO:<...>`: refuses
/// anything that could end the command early or inject another one.
pub fn path_arg(addr: &str) -> Result<&str, WireError> {
    if addr
        .bytes()
        .any(|b| b.is_ascii_control() || b == b'<' || b == b'>' || b == b' ')
        || addr.len() > 320
    {
        return Err(WireError::Protocol("address with forbidden characters"));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(pieces: &[&[u8]]) -> Vec<u8> {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for p in pieces {
            s.encode(p, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn dot_stuffing_cases() {
        let cases: &[(&[&[u8]], &[u8])] = &[
            (&[b"a\r\nb\r\n"], b"a\r\nb\r\n.\r\n"),
            (&[b"a\nb"], b"a\r\nb\r\n.\r\n"),
            (&[b".x\r\n..y\r\n"], b"..x\r\n...y\r\n.\r\n"),
            (&[b"a\r", b"\n.", b"b"], b"a\r\n..b\r\n.\r\n"),
            (&[b"a\r", b"b"], b"a\r\nb\r\n.\r\n"),
            (&[b""], b".\r\n"),
            (&[b"x.y\r\n.\r\n"], b"x.y\r\n..\r\n.\r\n"),
        ];
        for (input, want) in cases {
            assert_eq!(
                stuff(input),
                *want,
                "{:?}",
                String::from_utf8_lossy(&input.concat())
            );
        }
    }

    #[tokio::test]
    async fn dotted_body_round_trip() {
        let body = b"From: a\r\n\r\n.hidden\r\nx\r\n";
        let wire = stuff(&[body]);
        let mut r = &wire[..];
        assert_eq!(read_dotted(&mut r, 1000).await.unwrap(), body);
    }

    #[tokio::test]
    async fn dotted_body_over_the_limit_is_read_to_its_end() {
        let wire = b"0123456789\r\n0123456789\r\n.\r\nQUIT\r\n";
        let mut r = &wire[..];
        assert!(matches!(
            read_dotted(&mut r, 15).await,
            Err(WireError::TooBig(15))
        ));
        assert_eq!(r, b"QUIT\r\n");
    }

    #[tokio::test]
    async fn replies() {
        let mut r = &b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"[..];
        let reply = read_reply(&mut r).await.unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines, ["mx.example", "PIPELINING", "8BITMIME"]);
        assert_eq!(
            reply.encode(),
            b"250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n"
        );
        for bad in [&b"25 x\r\n"[..], b"abc x\r\n", b"250x\r\n", b"999 x\r\n"] {
            let mut r = bad;
            assert!(read_reply(&mut r).await.is_err(), "{bad:?}");
        }
        let mut r = &b"554 5.7.1 no\n"[..];
        assert_eq!(read_reply(&mut r).await.unwrap().one_line(), "554 5.7.1 no");
    }

    #[tokio::test]
    async fn netstrings() {
        let mut r = &b"12:route a.test,3:x y,"[..];
        assert_eq!(
            read_netstring(&mut r).await.unwrap().unwrap(),
            b"route a.test"
        );
        assert_eq!(read_netstring(&mut r).await.unwrap().unwrap(), b"x y");
        assert!(read_netstring(&mut r).await.unwrap().is_none());
        for bad in [&b"3:abc;"[..], b"x:", b"1234567:", b":a,"] {
            let mut r = bad;
            assert!(read_netstring(&mut r).await.is_err(), "{bad:?}");
        }
        assert_eq!(netstring(b"OK smtp:"), b"8:OK smtp:,");
    }

    #[test]
    fn path_args_cannot_inject() {
        assert!(path_arg("a@b.example").is_ok());
        for bad in ["a@b>\r\nRCPT TO:<x", "a b@c", "<a@b>", "a@b\0"] {
            assert!(path_arg(bad).is_err(), "{bad:?}");
        }
    }
}
