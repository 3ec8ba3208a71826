//! The DNS records a chatmail relay needs, as a zone fragment an operator
//! pastes (`chatmail dns`) and as the list `chatmail doctor` compares the
//! live DNS against: address, MX, SPF, DMARC, DKIM, MTA-STS, the `www.`
//! alias and the SRV records Delta Chat's autoconfiguration tries.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::key::zone_strings;

/// The record types we publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Mail exchanger.
    Mx,
    /// Text (SPF, DMARC, DKIM, MTA-STS).
    Txt,
    /// Alias.
    Cname,
    /// Service location.
    Srv,
}

impl fmt::Display for RType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RType::A => "A",
            RType::Aaaa => "AAAA",
            RType::Mx => "MX",
            RType::Txt => "TXT",
            RType::Cname => "CNAME",
            RType::Srv => "SRV",
        })
    }
}

/// One record: owner name (absolute, with the final dot), type and value
/// (for TXT: the unquoted text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Owner name, e.g. `opendkim._domainkey.chat.example.`.
    pub name: String,
    /// Record type.
    pub rtype: RType,
    /// Value in presentation form; TXT values unquoted and unsplit.
    pub value: String,
}

impl Record {
    /// The record as a zone-file line (TTL 3600; TXT split into quoted
    /// strings of at most 255 bytes).
    pub fn zone_line(&self) -> String {
        let value = match self.rtype {
            RType::Txt => zone_strings(&self.value),
            _ => self.value.clone(),
        };
        format!(
            "{:<40} 3600 IN {:<5} {}",
            self.name,
            self.rtype.to_string(),
            value
        )
    }
}

/// What the records are computed from.
#[derive(Debug, Clone)]
pub struct ZoneInput<'a> {
    /// The relay's `mail_domain`.
    pub domain: &'a str,
    /// Its IPv4 address, if it has one.
    pub ipv4: Option<Ipv4Addr>,
    /// Its IPv6 address, if it has one.
    pub ipv6: Option<Ipv6Addr>,
    /// `dkim_selector`.
    pub selector: &'a str,
    /// The DKIM TXT value (`v=DKIM1; k=rsa; p=...`), if the key exists.
    pub dkim_txt: Option<&'a str>,
    /// The MTA-STS policy id (any token that changes with the policy).
    pub mta_sts_id: &'a str,
}

/// The records for `input`, required ones first.
pub fn records(input: &ZoneInput<'_>) -> Vec<Record> {
    let d = format!("{}.", input.domain.trim_end_matches('.'));
    let rec = |name: String, rtype, value: String| Record { name, rtype, value };
    let mut out = Vec::new();
    if let Some(ip) = input.ipv4 {
        out.push(rec(d.clone(), RType::A, ip.to_string()));
    }
    if let Some(ip) = input.ipv6 {
        out.push(rec(d.clone(), RType::Aaaa, ip.to_string()));
    }
    out.push(rec(d.clone(), RType::Mx, format!("10 {d}")));
    if let Some(txt) = input.dkim_txt {
        out.push(rec(
            format!("{}._domainkey.{d}", input.selector),
            RType::Txt,
            txt.to_owned(),
        ));
    }
    out.push(rec(d.clone(), RType::Txt, "v=spf1 a ~all".to_owned()));
    out.push(rec(
        format!("_dmarc.{d}"),
        RType::Txt,
        "v=DMARC1;p=reject;adkim=s;aspf=s".to_owned(),
    ));
    out.push(rec(
        format!("_mta-sts.{d}"),
        RType::Txt,
        format!("v=STSv1; id={}", input.mta_sts_id),
    ));
    out.push(rec(format!("mta-sts.{d}"), RType::Cname, d.clone()));
    // nginx serves www. (a redirect) and `setup --acme` asks the CA for it:
    // without it, HTTP-01 fails for the whole certificate.
    out.push(rec(format!("www.{d}"), RType::Cname, d.clone()));
    for (service, port) in [
        ("_submission._tcp", 587),
        ("_submissions._tcp", 465),
        ("_imap._tcp", 143),
        ("_imaps._tcp", 993),
    ] {
        out.push(rec(
            format!("{service}.{d}"),
            RType::Srv,
            format!("0 1 {port} {d}"),
        ));
    }
    out
}

/// The zone fragment for `input`, one record per line.
pub fn fragment(input: &ZoneInput<'_>) -> String {
    let mut s = format!("; DNS records for {}\n", input.domain);
    if input.dkim_txt.is_none() {
        s.push_str("; (no DKIM key yet: run `chatmail setup` to create it)\n");
    }
    for r in records(input) {
        s.push_str(&r.zone_line());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_lines() {
        let long = format!("v=DKIM1; k=rsa; p={}", "A".repeat(392));
        let input = ZoneInput {
            domain: "chat.example",
            ipv4: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6: None,
            selector: "opendkim",
            dkim_txt: Some(&long),
            mta_sts_id: "1",
        };
        let f = fragment(&input);
        let lines: Vec<&str> = f.lines().collect();
        assert_eq!(
            lines[1],
            "chat.example.                            3600 IN A     192.0.2.1"
        );
        assert!(
            f.contains("chat.example.                            3600 IN MX    10 chat.example.\n")
        );
        let dkim = lines
            .iter()
            .find(|l| l.starts_with("opendkim._domainkey.chat.example. "))
            .unwrap();
        let first = format!("\"{}\"", &long[..255]);
        assert!(
            dkim.ends_with(&format!("TXT   {first} \"{}\"", &long[255..])),
            "{dkim}"
        );
        assert!(f.contains("\"v=DMARC1;p=reject;adkim=s;aspf=s\""));
        assert!(f.contains("\"v=spf1 a ~all\""));
        assert!(f.contains(&format!(
            "{:<40} 3600 IN SRV   0 1 465 chat.example.\n",
            "_submissions._tcp.chat.example."
        )));
        assert!(f.contains("mta-sts.chat.example."));
        assert!(!f.contains("IN AAAA"));
    }

    /// Every name `setup --acme` asks the CA for resolves through the
    /// printed zone: `mta-sts.` and `www.` alias the domain.
    #[test]
    fn every_certificate_name_is_in_the_zone() {
        let input = ZoneInput {
            domain: "chat.example",
            ipv4: Some(Ipv4Addr::new(192, 0, 2, 1)),
            ipv6: Some("2001:db8::1".parse().unwrap()),
            selector: "opendkim",
            dkim_txt: None,
            mta_sts_id: "1",
        };
        let f = fragment(&input);
        for prefix in ["mta-sts", "www"] {
            let line = format!(
                "{:<40} 3600 IN CNAME chat.example.\n",
                format!("{prefix}.chat.example.")
            );
            assert!(f.contains(&line), "{f}");
        }
        let aliases: Vec<String> = records(&input)
            .into_iter()
            .filter(|r| r.rtype == RType::Cname)
            .map(|r| r.name)
            .collect();
        assert_eq!(aliases, ["mta-sts.chat.example.", "www.chat.example."]);
        assert!(f.contains("chat.example.                            3600 IN AAAA  2001:db8::1\n"));
    }
}
