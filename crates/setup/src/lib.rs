//! `chatmail setup` and `chatmail doctor`: turning a machine with stock
//! Debian Postfix and Dovecot into a chatmail relay with the snippets this
//! project ships, and checking that it is one.
//!
//! [`setup()`] merges the snippets into `/etc/postfix` and `/etc/dovecot` (or
//! a copy, `--etc`), idempotently and atomically; [`doctor()`] checks the
//! config, every daemon's socket, the wiring of Postfix and Dovecot, the
//! certificate, the mailbox directory, and free disk and memory.

#![forbid(unsafe_code)]

pub mod doctor;
pub mod files;
pub mod render;
pub mod setup;

pub use crate::doctor::{Check, DoctorOptions, DoctorReport, Status, doctor};
pub use crate::files::Roots;
pub use crate::setup::{Change, SetupError, SetupOptions, SetupReport, setup};
