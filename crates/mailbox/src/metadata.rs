//! `metadata.json`, the per-address store of IMAP METADATA values.
//!
//! chatmaild's `Metadata` class keeps `{"devicetoken": {"<token>": <unix seconds>, ...}}` in
//! `<mailboxes_dir>/<addr>/metadata.json` (see docs/design.md, "Compatibility contract"); very old
//! versions stored `devicetoken` as a plain list of tokens. Keys this crate does not know are
//! kept and written back unchanged.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// The contents of `metadata.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Push notification tokens and when each was last registered (unix seconds).
    ///
    /// A legacy list of tokens is read as if every token had been registered now, which
    /// is what chatmaild does the next time it modifies the file.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "device_tokens"
    )]
    pub devicetoken: BTreeMap<String, i64>,
    /// Every other top-level key, preserved as read.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

fn device_tokens<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, i64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .into_iter()
            .map(|(token, ts)| {
                // Python writes int(time.time()), but accept a float rather than lose tokens.
                let ts = ts
                    .as_i64()
                    .or_else(|| ts.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                    .ok_or_else(|| D::Error::custom(format!("timestamp of {token:?} is {ts}")))?;
                Ok((token, ts))
            })
            .collect(),
        Value::Array(list) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            list.into_iter()
                .map(|token| match token {
                    Value::String(t) => Ok((t, now)),
                    other => Err(D::Error::custom(format!("token {other} is not a string"))),
                })
                .collect()
        }
        other => Err(D::Error::custom(format!(
            "devicetoken is neither an object nor a list: {other}"
        ))),
    }
}
