//! `chatmail newemail`: the CGI behind `https://DOMAIN/new` (chatmaild's `newemail.py`),
//! which hands out fresh random credentials as JSON. The account itself is created by the
//! first login (docs/design.md, "Account creation"); nothing is read or written here.
//!
//! Relays with a self-signed certificate (or an IPv4 address as domain) also get a
//! `dclogin_url`: Delta Chat's `dclogin:` scheme with `ic=3&sc=3`, telling the client to
//! accept the invalid certificate (Delta Chat core's `EnteredCertificateChecks`: 0
//! automatic, 1 strict, 2 and its alias 3 accept invalid certificates; current cores read
//! `ic` for both protocols, `sc` is kept for older ones).

use std::io;

use chatmail_config::{Config, TlsCertMode};
use serde::Serialize;

/// The JSON body, keys in chatmaild's order.
#[derive(Serialize)]
struct NewEmail<'a> {
    email: &'a str,
    password: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dclogin_url: Option<String>,
}

/// Python's `json.dumps` separators (`", "` and `": "`), so the body is byte-for-byte what
/// chatmaild prints.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters, as Python's
/// `urllib.parse.quote(s, safe="")`.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `dclogin:<addr>?p=<password>&v=1&ic=3&sc=3`, both values percent-encoded.
pub fn dclogin_url(email: &str, password: &str) -> String {
    format!(
        "dclogin:{}?p={}&v=1&ic=3&sc=3",
        percent_encode(email),
        percent_encode(password)
    )
}

/// Whether clients must be told to accept an invalid certificate: the caller says the
/// certificate is self-signed, the config implies it (a `mail_domain` starting with `_`),
/// or the relay is addressed by IPv4 address.
pub fn needs_dclogin(config: &Config, tls_self_signed: bool) -> bool {
    tls_self_signed
        || config.tls_cert().mode == TlsCertMode::SelfSigned
        || config.ipv4_relay().is_some()
}

/// The complete CGI response: `Content-Type: application/json`, a blank line, and
/// `{"email": ..., "password": ...}` (plus `"dclogin_url"` when [`needs_dclogin`]), with
/// credentials from [`chatmail_accounts::fresh_credentials`].
///
/// # Errors
///
/// When the system's random source fails.
pub fn newemail_cgi(config: &Config, tls_self_signed: bool) -> io::Result<String> {
    let (email, password) = chatmail_accounts::fresh_credentials(config)?;
    let body = NewEmail {
        email: &email,
        password: &password,
        dclogin_url: needs_dclogin(config, tls_self_signed).then(|| dclogin_url(&email, &password)),
    };
    let mut json = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut json, PythonFormatter);
    body.serialize(&mut ser).map_err(io::Error::other)?;
    let json = String::from_utf8(json).map_err(io::Error::other)?;
    Ok(format!("Content-Type: application/json\r\n\r\n{json}\n"))
}

/// The CGI response to a browser's GET on a relay whose certificate clients cannot verify
/// ([`needs_dclogin`]): a redirect to a fresh `dclogin:` URL, which opens Delta Chat with a
/// new profile that accepts the certificate. (A relay with a CA's certificate sends browsers
/// to its `dcaccount:` invite from nginx instead.)
///
/// # Errors
///
/// When the system's random source fails.
pub fn newemail_redirect_cgi(config: &Config) -> io::Result<String> {
    let (email, password) = chatmail_accounts::fresh_credentials(config)?;
    Ok(format!(
        "Status: 302 Found\r\nLocation: {}\r\nContent-Type: text/plain\r\n\r\n",
        dclogin_url(&email, &password)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_python() {
        assert_eq!(percent_encode("a-b.c_d~e"), "a-b.c_d~e");
        assert_eq!(percent_encode("x@[1.2.3.4]"), "x%40%5B1.2.3.4%5D");
        assert_eq!(percent_encode("a b/&=?%+"), "a%20b%2F%26%3D%3F%25%2B");
    }

    #[test]
    fn browsers_get_a_dclogin_redirect() {
        let config = Config::for_tests("_test.example.org", std::path::Path::new("/m"));
        let out = newemail_redirect_cgi(&config).unwrap();
        let location = out
            .strip_prefix("Status: 302 Found\r\nLocation: dclogin:")
            .unwrap();
        let (addr, rest) = location.split_once('?').unwrap();
        assert!(addr.ends_with("%40_test.example.org"), "{addr}");
        assert!(rest.ends_with("&v=1&ic=3&sc=3\r\nContent-Type: text/plain\r\n\r\n"));
    }

    #[test]
    fn url_shape() {
        assert_eq!(
            dclogin_url("abc@example.org", "p&w"),
            "dclogin:abc%40example.org?p=p%26w&v=1&ic=3&sc=3"
        );
    }
}
