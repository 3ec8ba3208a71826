//! Verification with the key records given instead of looked up: the same
//! pipeline as [`crate::Verifier`] (selection, rules, mail-auth,
//! [`crate::verify::classify`]), for tests and benchmarks that must not
//! depend on a DNS server.

use std::collections::HashMap;
use std::sync::Arc;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{DnsError, MessageAuthenticator};

use crate::verify::{Checked, DNS_TEMPFAIL, KeySource, Outcome, evaluate};

/// The published key records, by name.
struct Records(HashMap<String, Arc<DomainKey>>);

impl KeySource for Records {
    async fn key(&self, name: &str) -> mail_auth::Result<Arc<DomainKey>> {
        // A name not listed is a lookup that fails for now, as with a
        // resolver that cannot be reached.
        self.0.get(name).cloned().ok_or_else(|| {
            mail_auth::Error::Dns(DnsError::Resolver(format!("{name} is not published")))
        })
    }
}

/// A verifier with fixed key records (see the module documentation).
pub struct OfflineVerifier {
    records: Records,
    auth: Option<MessageAuthenticator>,
    rt: Option<tokio::runtime::Runtime>,
}

impl OfflineVerifier {
    /// `records`: (`<selector>._domainkey.<domain>.`, TXT value). A record
    /// mail-auth cannot parse is left out.
    pub fn new(records: &[(String, String)]) -> OfflineVerifier {
        let records = Records(
            records
                .iter()
                .filter_map(|(name, txt)| {
                    let key = DomainKey::parse(txt.as_bytes()).ok()?;
                    Some((name.clone(), Arc::new(key)))
                })
                .collect(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
        // Never asked: every key comes from `records`.
        let auth = rt.as_ref().and_then(|rt| {
            let _guard = rt.enter();
            let (c, o) = crate::verify::resolver_config(Some(([127, 0, 0, 1], 9).into())).ok()?;
            MessageAuthenticator::new(c, o).ok()
        });
        OfflineVerifier { records, auth, rt }
    }

    /// The decision for `raw`.
    pub fn check(&self, raw: &[u8]) -> Outcome {
        self.check_at(raw, now()).outcome
    }

    /// The decision for `raw` at time `now` (Unix seconds), explained.
    pub fn check_at(&self, raw: &[u8], now: u64) -> Checked {
        let (Some(rt), Some(auth)) = (&self.rt, &self.auth) else {
            return Checked {
                outcome: Outcome::Refuse(DNS_TEMPFAIL),
                notes: "no runtime".to_owned(),
            };
        };
        rt.block_on(evaluate(auth, &self.records, raw, now))
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`OfflineVerifier::check`] once.
pub fn verify_with_keys(raw: &[u8], records: &[(String, String)]) -> Outcome {
    OfflineVerifier::new(records).check(raw)
}
