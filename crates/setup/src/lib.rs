//! `chatmail setup` and `chatmail doctor`: turning a machine with stock
//! Debian Postfix and Dovecot into a chatmail relay with the snippets this
//! project ships, and checking that it is one.
//!
//! [`install::run`] merges the snippets into `/etc/postfix` and
//! `/etc/dovecot` (or a copy, `--etc`), idempotently and atomically;
//! [`doctor()`] checks the config, every daemon's socket, the wiring of
//! Postfix and Dovecot, the certificate, the web front, DNS, the mailbox
//! directory, and free disk and memory.
//!
//! The steps of `setup` ([`install`], `created`, [`site`], [`acme`],
//! [`services`]) and the checks of `doctor` ([`doctor`](mod@doctor) and its modules)
//! share what sits below both: [`roots`], [`machine_conf`], [`error`],
//! [`diff`] and [`dns`]. The checks may read what a step installs (the
//! deploy hook's path in [`acme`]); no step imports `doctor`, so the modules
//! form no import circle.
//!
//! Builds on `snippets` (the shipped files and the table of daemons), `web`,
//! `dkim`, `accounts`, `mailbox` (atomic writes), `config`; must not depend
//! on `sandbox` or on a daemon crate (docs/design.md, "Crates").

pub mod acme;
mod created;
pub mod diff;
pub mod dns;
pub mod doctor;
pub mod error;
pub mod install;
pub mod machine_conf;
pub mod roots;
pub mod services;
pub mod site;

/// The metrics endpoint check of `chatmail doctor`, also at `doctor::metrics`.
pub use crate::doctor::metrics as doctor_metrics;

pub use crate::doctor::{Check, DoctorOptions, DoctorReport, Status, doctor};
pub use crate::error::SetupError;
pub use crate::install::{Change, SetupOptions, SetupReport};
pub use crate::roots::Roots;
