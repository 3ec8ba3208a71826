//! Accounts of the relay, without any socket: how a password is hashed
//! ([`credentials`]), when a new account may be created ([`rules`]), how
//! loaded the machine is ([`meter`]) and which Unix user owns the mailboxes
//! ([`VMAIL`]).
//!
//! The `auth` daemon answers Dovecot with these; `setup`, `doctor`, the `/new`
//! CGI and the sandbox use them without linking the daemon. This crate must not
//! depend on any daemon or protocol crate.

pub mod credentials;
pub mod meter;
pub mod rules;

pub use crate::credentials::{fresh_credentials, hash_password};

/// The Unix user and group that own every mailbox (Dovecot's `mail_uid`).
pub const VMAIL: &str = "vmail";
