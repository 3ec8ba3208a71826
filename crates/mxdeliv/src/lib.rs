//! Relay-to-relay mail over HTTPS, as current chatmail relays exchange it
//! (`POST https://<MX>/mxdeliv`, the envelope in `X-MAIL-FROM`/`X-MAIL-TO`,
//! the message as the body; docs/design.md, "HTTPS transport"):
//!
//! - [`incoming`]: `chatmail mxdeliv`, behind nginx, hands each request to
//!   Postfix as an SMTP transaction, so that port 25's checks all apply;
//! - [`transport`]: `chatmail transport`, the LMTP agent Postfix hands
//!   remote mail to, which tries HTTPS and leaves SMTP to Postfix;
//! - [`routes`]: the socketmap through which Postfix asks that agent where
//!   each recipient goes, and what it remembers;
//! - [`wire`]: the bytes of SMTP, LMTP and socketmap.

pub mod incoming;
pub mod postfix;
pub mod routes;
pub mod transport;
pub mod wire;

use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::runtime::TokioRuntimeProvider;

/// A resolver for MX lookups: the system's, or `chatmail.ini`'s
/// `dns_resolver`.
///
/// # Errors
///
/// When the system's resolver configuration cannot be read.
pub fn resolver(
    config: &chatmail_config::Config,
) -> Result<Arc<TokioResolver>, chatmail_dkim::DkimError> {
    let (c, o) = chatmail_dkim::verify::resolver_config(config.dns_resolver)?;
    let r = TokioResolver::builder_with_config(c, TokioRuntimeProvider::default())
        .with_options(o)
        .build()
        .map_err(|e| chatmail_dkim::DkimError::Resolver(e.to_string()))?;
    Ok(Arc::new(r))
}
