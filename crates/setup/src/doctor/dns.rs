//! The DNS checks of `chatmail doctor`: the records a relay needs (as
//! `chatmail dns` prints them) compared with the live DNS through the
//! configured resolver (`dns_resolver`, else /etc/resolv.conf).

use chatmail_config::Config;
use chatmail_dkim::zone::{RType, Record, ZoneInput, records};
use hickory_resolver::TokioResolver;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

use super::check::{Check, Status};
use crate::dns::dkim_txt;
use crate::roots::Roots;

fn rtype(t: RType) -> RecordType {
    match t {
        RType::A => RecordType::A,
        RType::Aaaa => RecordType::AAAA,
        RType::Mx => RecordType::MX,
        RType::Txt => RecordType::TXT,
        RType::Cname => RecordType::CNAME,
        RType::Srv => RecordType::SRV,
    }
}

/// One answer in the form [`Record::value`] uses.
fn presentation(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        other => other.to_string(),
    }
}

/// Compares the live DNS with the records the relay needs, one line per
/// record; a single "cannot check" line when no resolver answers.
pub async fn checks(config: &Config, roots: &Roots) -> Vec<Check> {
    if config.ipv4_relay().is_some() {
        return Vec::new();
    }
    let info = |detail: String| Check {
        status: Status::Info,
        name: "dns".into(),
        detail,
        fix: None,
    };
    let domain = config.mail_domain.to_ascii_lowercase();
    if domain == "localhost" || domain.ends_with(".localhost") {
        // RFC 6761: resolvers answer names under localhost. themselves.
        return vec![info(format!(
            "cannot check DNS for {domain}: names under localhost. never reach a DNS server"
        ))];
    }
    let resolver =
        chatmail_dkim::verify::resolver_config(config.dns_resolver).and_then(|(c, mut o)| {
            o.attempts = 1;
            o.timeout = std::time::Duration::from_secs(3);
            TokioResolver::builder_with_config(c, TokioRuntimeProvider::default())
                .with_options(o)
                .build()
                .map_err(|e| chatmail_dkim::DkimError::Resolver(e.to_string()))
        });
    let resolver = match resolver {
        Ok(r) => r,
        Err(e) => return vec![info(format!("cannot check DNS: {e}"))],
    };
    let txt = dkim_txt(config, roots);
    let input = ZoneInput {
        domain: &config.mail_domain,
        ipv4: None,
        ipv6: None,
        selector: &config.dkim_selector,
        dkim_txt: txt.as_deref(),
        mta_sts_id: "1",
    };
    let mut wanted = records(&input);
    // The addresses are the operator's; only their existence is checked.
    wanted.insert(
        0,
        Record {
            name: format!("{}.", config.mail_domain),
            rtype: RType::A,
            value: String::new(),
        },
    );
    let mut out = Vec::new();
    for want in wanted {
        let name = format!("dns {} {}", want.rtype, want.name);
        let found = resolver.lookup(want.name.as_str(), rtype(want.rtype)).await;
        let values: Vec<String> = match found {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter(|r| r.record_type() == rtype(want.rtype))
                .map(|r| presentation(&r.data))
                .collect(),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Vec::new(),
            Err(e) => {
                return vec![info(format!(
                    "cannot check DNS (no answer from the resolver: {e})"
                ))];
            }
        };
        let fix = || match want.rtype {
            RType::A => format!("publish an A record for {}", want.name),
            _ => format!("publish: {}", want.zone_line()),
        };
        // TXT at the domain itself holds SPF among others: any match counts.
        let matches = match want.rtype {
            RType::A => !values.is_empty(),
            RType::Txt if want.value.starts_with("v=STSv1") => {
                values.iter().any(|v| v.starts_with("v=STSv1"))
            }
            _ => values
                .iter()
                .any(|v| v.trim().eq_ignore_ascii_case(want.value.trim())),
        };
        out.push(if matches {
            Check {
                status: Status::Ok,
                name,
                detail: values.join(" | "),
                fix: None,
            }
        } else if values.is_empty() {
            Check {
                status: Status::Fail,
                name,
                detail: "missing".into(),
                fix: Some(fix()),
            }
        } else {
            Check {
                status: Status::Fail,
                name,
                detail: format!("found {}", values.join(" | ")),
                fix: Some(fix()),
            }
        });
    }
    if txt.is_none() {
        out.push(Check {
            status: Status::Fail,
            name: "dkim key".into(),
            detail: format!("{} cannot be read", config.dkim_key_file.display()),
            fix: Some("run `chatmail setup` to create it, then publish `chatmail dns`".into()),
        });
    }
    out
}
