//! Server side of the Dovecot dict protocol (`proxy:` dict), so our daemons
//! can answer Dovecot's passdb/userdb/metadata lookups and writes. It
//! accepts a HELLO of protocol major version 3 (Dovecot 2.3, which sends
//! 3.2) or 4 (Dovecot 2.4, which sends 4.0), whatever minor version number
//! it carries, and closes a connection whose HELLO names any other major
//! version; both majors are served with the same request lines ([`proto`]
//! lists them and the few differences of 4).
//!
//! The wire format was taken from Dovecot 2.3.19's own sources:
//! `src/lib-dict/dict-client.h` and `dict-client.c` (what the client sends
//! and how it parses replies), `src/dict/dict-commands.c` and
//! `dict-connection.c` (what the stock dict server answers), and
//! `src/lib/strescape.c` (the `\001` escaping).
//!
//! Three layers, each depending only on those below it:
//! [`types`] (lookup and commit results, transactions, keys in logs),
//! [`proto`] (documents the format; parses requests and encodes replies
//! in modules of their own),
//! [`server`] (connections, HELLO state, transactions; hands complete
//! requests to a [`server::Handler`] that holds the policy). The crate
//! speaks only the dict protocol: it must not depend on the config or on
//! any daemon crate.

pub mod proto;
pub mod server;
pub mod types;

pub use proto::{ParseError, Reply, Request, parse_request, tab_escape, tab_unescape};
pub use server::{Handler, ServerOptions, cannot_iterate, serve};
pub use types::{CommitResult, LookupResult, Op, Transaction, key_log_prefix};
