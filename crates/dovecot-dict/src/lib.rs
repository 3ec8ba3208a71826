//! Server side of the Dovecot 2.3 dict protocol (`proxy:` dict, protocol
//! version 3.2), so our daemons can answer Dovecot's passdb/userdb/metadata
//! lookups and writes.
//!
//! The wire format was taken from Dovecot 2.3.19's own sources:
//! `src/lib-dict/dict-client.h` and `dict-client.c` (what the client sends
//! and how it parses replies), `src/dict/dict-commands.c` and
//! `dict-connection.c` (what the stock dict server answers), and
//! `src/lib/strescape.c` (the `\001` escaping). [`proto`] documents the
//! format and holds the parser/encoder; [`server`] runs connections and hands
//! complete requests to a [`server::Handler`] that holds the policy.

pub mod proto;
pub mod server;

pub use proto::{ParseError, Reply, Request, parse_request, tab_escape, tab_unescape};
pub use server::{CommitResult, Handler, LookupResult, Op, ServerOptions, Transaction, serve};
