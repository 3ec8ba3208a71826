//! Verification with the key records given instead of looked up: the same
//! mail-auth verification and [`crate::verify::classify`] decision as
//! [`crate::Verifier`], for tests and benchmarks that must not depend on a
//! DNS server.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, MessageAuthenticator, Parameters, ResolverCache, Txt};

use crate::verify::{Outcome, classify, message_from_domain, results};

/// A TXT "cache" holding the published key records: lookups never reach
/// the network.
pub struct Keys(Mutex<HashMap<Box<str>, Txt>>);

impl Keys {
    /// The records; a panic while another thread held them left the map
    /// itself whole (each use is one map call).
    fn records(&self) -> MutexGuard<'_, HashMap<Box<str>, Txt>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResolverCache<Box<str>, Txt> for Keys {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.records().get(name).cloned()
    }
    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.records().remove(name)
    }
    fn insert(&self, key: Box<str>, value: Txt, _: std::time::Instant) {
        self.records().insert(key, value);
    }
}

/// A verifier with fixed key records (see the module documentation).
pub struct OfflineVerifier {
    keys: Keys,
    auth: Option<MessageAuthenticator>,
    rt: Option<tokio::runtime::Runtime>,
}

impl OfflineVerifier {
    /// `records`: (`<selector>._domainkey.<domain>.`, TXT value). A name not
    /// listed is a lookup that fails for now (the resolver it would ask is
    /// a closed loopback port).
    pub fn new(records: &[(String, String)]) -> OfflineVerifier {
        let keys = Keys(Mutex::new(HashMap::new()));
        for (name, txt) in records {
            if let Ok(record) = DomainKey::parse(txt.as_bytes()) {
                keys.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(name.as_str().into(), Txt::from(record));
            }
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok();
        let auth = rt.as_ref().and_then(|rt| {
            let _guard = rt.enter();
            let (c, o) = crate::verify::resolver_config(Some(([127, 0, 0, 1], 9).into())).ok()?;
            MessageAuthenticator::new(c, o).ok()
        });
        OfflineVerifier { keys, auth, rt }
    }

    /// The decision for `raw`.
    pub fn check(&self, raw: &[u8]) -> Outcome {
        let from = message_from_domain(raw);
        let (Some(rt), Some(auth)) = (&self.rt, &self.auth) else {
            return Outcome::Refuse(crate::verify::DNS_TEMPFAIL);
        };
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return classify(from.as_deref(), &[]);
        };
        let outputs =
            rt.block_on(auth.verify_dkim(Parameters::new(&message).with_txt_cache(&self.keys)));
        classify(from.as_deref(), &results(&outputs))
    }
}

/// [`OfflineVerifier::check`] once.
pub fn verify_with_keys(raw: &[u8], records: &[(String, String)]) -> Outcome {
    OfflineVerifier::new(records).check(raw)
}
