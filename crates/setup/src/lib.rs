//! `chatmail setup` and `chatmail doctor`: turning a machine with stock
//! Debian Postfix and Dovecot into a chatmail relay with the snippets this
//! project ships, and checking that it is one.
//!
//! [`setup()`] merges the snippets into `/etc/postfix` and `/etc/dovecot` (or
//! a copy, `--etc`), idempotently and atomically; [`doctor()`] checks the
//! config, every daemon's socket, the wiring of Postfix and Dovecot, the
//! certificate, the mailbox directory, and free disk and memory.
//!
//! Builds on `snippets` (the shipped files and the table of daemons), `web`,
//! `dkim`, `accounts`, `config`; must not depend on `sandbox` or on a daemon
//! crate (docs/design.md, "Crates").

mod created;
pub mod dns;
pub mod doctor;
pub mod files;
pub mod render;
pub mod services;
pub mod setup;
pub mod web;

/// The metrics endpoint check of `chatmail doctor`, also at `doctor::metrics`.
pub use crate::doctor::metrics as doctor_metrics;

pub use crate::doctor::{Check, DoctorOptions, DoctorReport, Status, doctor};
pub use crate::files::Roots;
pub use crate::setup::{Change, SetupError, SetupOptions, SetupReport, setup};
