//! The relay's public face, as files: the home page with the invite QR code,
//! the info and privacy pages, Thunderbird-style autoconfig, the MTA-STS
//! policy and `robots.txt` (docs/web.md). The nginx server block that
//! serves them is a shipped file (`chatmail_snippets::nginx`).
//!
//! Everything here is a pure function of `chatmail.ini` (a [`Config`]) and
//! of where the relay is reached (a [`Site`]): `chatmail setup` renders the
//! files for the real relay, `chatmail sandbox` the same files naming its
//! loopback ports. Nothing is read or written here.
//!
//! The `/new` CGI ([`newemail_cgi`]) is here too: it is the front door's one
//! dynamic page, served by nginx through fcgiwrap, and answers
//! with credentials the accounts rules admit (the `chatmail-accounts` crate),
//! so it needs the web crate's view of the site (self-signed or not) rather
//! than any daemon. This crate must not depend on a daemon crate.

mod escape;
mod html;
mod newemail;
mod qr;

use chatmail_config::Config;

pub use crate::newemail::{
    dclogin_url, needs_dclogin, newemail_cgi, newemail_redirect_cgi, percent_encode,
};
pub use crate::qr::qr_svg;

/// Where the relay is reached: the web origin the invite link names and the
/// mail endpoints autoconfig announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// `https://chat.example.org` (a port only when not 443).
    pub web_base: String,
    /// The host name mail clients connect to.
    pub mail_host: String,
    /// IMAP with implicit TLS (993 on a relay).
    pub imaps_port: u16,
    /// IMAP with STARTTLS (143).
    pub imap_port: u16,
    /// SMTP submission with implicit TLS (465).
    pub submissions_port: u16,
    /// SMTP submission with STARTTLS (587).
    pub submission_port: u16,
    /// Clients cannot verify the relay's certificate (an IP address or `_`
    /// domain): the invite is then the `/new` page itself, which hands a
    /// browser a fresh `dclogin:` profile that accepts the certificate.
    pub self_signed: bool,
}

impl Site {
    /// A relay on the standard ports of its `mail_domain`.
    pub fn relay(config: &Config) -> Site {
        Site {
            web_base: format!("https://{}", config.mail_domain),
            mail_host: config.mail_domain.clone(),
            imaps_port: 993,
            imap_port: 143,
            submissions_port: 465,
            submission_port: 587,
            self_signed: config.tls_cert().mode == chatmail_config::TlsCertMode::SelfSigned,
        }
    }

    /// The account invite Delta Chat scans: `DCACCOUNT:https://DOMAIN/new`.
    /// The app POSTs to the URL and gets fresh credentials. On a
    /// self-signed relay, `https://DOMAIN/new`: opened in a browser (from
    /// the camera, or from Delta Chat's scanner) it redirects to a fresh
    /// `dclogin:` profile.
    pub fn invite(&self) -> String {
        if self.self_signed {
            format!("{}/new", self.web_base)
        } else {
            format!("DCACCOUNT:{}/new", self.web_base)
        }
    }
}

/// One rendered file: its path below the web root and its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebFile {
    /// Relative path, e.g. `index.html`, `.well-known/mta-sts.txt`.
    pub path: &'static str,
    /// The contents.
    pub text: String,
}

/// Every file of the web root, in a fixed order.
pub fn render(config: &Config, site: &Site) -> Vec<WebFile> {
    vec![
        WebFile {
            path: "index.html",
            text: html::index(config, site),
        },
        WebFile {
            path: "info.html",
            text: html::info(config),
        },
        WebFile {
            path: "privacy.html",
            text: html::privacy(config),
        },
        WebFile {
            path: "robots.txt",
            text: ROBOTS_TXT.to_owned(),
        },
        WebFile {
            path: ".well-known/autoconfig/mail/config-v1.1.xml",
            text: autoconfig(config, site),
        },
        WebFile {
            path: ".well-known/mta-sts.txt",
            text: mta_sts(config),
        },
    ]
}

/// Crawlers have nothing to index on a relay.
pub const ROBOTS_TXT: &str = "User-agent: *\nDisallow: /\n";

/// The MTA-STS policy (RFC 8461): senders must reach this relay's MX over
/// verified TLS. A relay is its own MX; `max_age` is four weeks.
pub fn mta_sts(config: &Config) -> String {
    format!(
        "version: STSv1\nmode: enforce\nmx: {}\nmax_age: 2419200\n",
        config.mail_domain
    )
}

/// Thunderbird's autoconfig format (`config-v1.1.xml`), which Delta Chat
/// reads too: IMAP and SMTP with implicit TLS first, then STARTTLS.
pub fn autoconfig(config: &Config, site: &Site) -> String {
    let domain = escape::escape(config.address_domain());
    let host = escape::escape(&site.mail_host);
    let server = |kind: &str, tag: &str, port: u16, socket: &str| {
        format!(
            "    <{tag} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      \
             <port>{port}</port>\n      <socketType>{socket}</socketType>\n      \
             <authentication>password-cleartext</authentication>\n      \
             <username>%EMAILADDRESS%</username>\n    </{tag}>\n"
        )
    };
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  \
         <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    \
         <displayName>{domain} chatmail</displayName>\n    \
         <displayShortName>{domain}</displayShortName>\n"
    );
    out.push_str(&server("imap", "incomingServer", site.imaps_port, "SSL"));
    out.push_str(&server(
        "imap",
        "incomingServer",
        site.imap_port,
        "STARTTLS",
    ));
    out.push_str(&server(
        "smtp",
        "outgoingServer",
        site.submissions_port,
        "SSL",
    ));
    out.push_str(&server(
        "smtp",
        "outgoingServer",
        site.submission_port,
        "STARTTLS",
    ));
    out.push_str("  </emailProvider>\n</clientConfig>\n");
    out
}

/// A size for people: whole GiB or MiB when exact, else MiB with one
/// decimal.
pub fn human_size(bytes: u64) -> String {
    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else {
        let tenths = (bytes * 10).div_ceil(MIB);
        format!("{}.{} MiB", tenths / 10, tenths % 10)
    }
}

#[cfg(test)]
mod tests;
