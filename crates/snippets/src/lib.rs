//! The files a relay installs beside the `chatmail` binary and what fits
//! them to one relay.
//!
//! Owns: the shipped Postfix, Dovecot (2.3 and 2.4 dialects), nginx and
//! systemd files ([`files`], the only place that embeds them), the table of
//! daemons with their sockets, groups and units ([`daemons`]), the Dovecot
//! dialect of an installed Dovecot ([`dialect`]), the nginx server block
//! ([`nginx`]), certbot's command line ([`certbot`]), and the edits both
//! `chatmail setup` and `chatmail sandbox` make to the snippets ([`render`]).
//!
//! Must not depend on: `setup`, `sandbox`, or any daemon crate; both
//! installers build on this crate, never on each other (docs/design.md,
//! "Crates").

pub mod certbot;
pub mod daemons;
pub mod dialect;
pub mod files;
pub mod nginx;
pub mod render;
