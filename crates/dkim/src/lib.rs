//! DKIM for a chatmail relay (RFC 6376): signing everything that leaves
//! ([`sign`]), strictly aligned verification of everything that arrives
//! ([`verify`]), the key file ([`key`]) and the DNS records a relay needs
//! ([`zone`]). The design, what is signed and the failure classes are in
//! `docs/dkim.md`. With the feature `offline`, `offline` verifies against
//! key records given in place of DNS, for tests and benchmarks only.
//!
//! Builds on `e2ee` (its reply type) only; must not depend on the milter or any
//! daemon crate (docs/design.md, "Crates").

pub mod key;
#[cfg(feature = "offline")]
pub mod offline;
pub mod sign;
pub mod verify;
pub mod zone;

use std::path::PathBuf;

pub use key::{Created, KEY_GROUP, create_key, create_relay_key, load_key, txt_record};
pub use sign::Signer;
pub use verify::{Outcome, Verifier};

/// What can go wrong outside of a verdict.
#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    /// The key text is unusable.
    #[error("DKIM key: {0}")]
    Key(String),
    /// The key file cannot be read, parsed or written.
    #[error("DKIM key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The RSA signing operation failed.
    #[error("DKIM signing failed: {0}")]
    Sign(String),
    /// The DNS resolver cannot be set up.
    #[error("DNS resolver: {0}")]
    Resolver(String),
}

#[cfg(test)]
mod tests;
