//! The files a relay installs beside the `chatmail` binary and what fits
//! them to one relay.
//!
//! Owns: the shipped Postfix, Dovecot (2.3 and 2.4 dialects), nginx and
//! systemd files ([`files`], the only place that embeds them), the one table
//! of daemons and periodic jobs with their sockets, groups, units, metrics
//! ports and whether they write mailboxes ([`daemons`]), the Dovecot dialect
//! of an installed Dovecot ([`dialect`]), the nginx server block
//! ([`nginx`]), certbot's command line ([`certbot`]), and the edits both
//! `chatmail setup` and `chatmail sandbox` make to the snippets ([`render`]).
//! Only what is shipped or shared by both installers belongs here; what
//! only a sandbox renders is in the sandbox crate.
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
