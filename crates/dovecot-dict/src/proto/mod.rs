//! Wire format of the Dovecot dict protocol as the `proxy:` dict client
//! speaks it: major version 3 (Dovecot 2.3.19 sends 3.2) and major version 4
//! (Dovecot 2.4 sends 4.0; its differences are listed at
//! [`PROTOCOL_MAJOR_24`]).
//!
//! Accepted: a HELLO with at least five fields whose major version is 3 or
//! 4; its minor version and value type must be numbers but are otherwise
//! not checked, and fields after the fifth are ignored. A HELLO with any
//! other major version makes [`crate::server`] close the connection, a
//! repeated HELLO is ignored, and requests before a HELLO are answered
//! like any other. Both majors share one set of request lines; a BEGIN may
//! carry the third field of major 4 (a number, ignored) under either.
//!
//! Sources (Dovecot 2.3.19): `src/lib-dict/dict-client.h` (command and reply
//! characters, version 3.2, 64 KiB line limit), `src/lib-dict/dict-client.c`
//! (exact request lines, reply parsing), `src/dict/dict-commands.c` and
//! `src/dict/dict-connection.c` (stock server replies, handshake checks),
//! `src/lib/strescape.c` (`str_tabescape`/`str_tabunescape`).
//!
//! Every line ends in `\n`; fields are separated by `\t`; each field is
//! tab-escaped (below). The command/reply character is glued to the first
//! field. `<user>` is empty when the client has no user; priv/ keys always
//! come with a user (lib-dict asserts it), shared/ keys may not. The client
//! passes keys verbatim, including their `shared/` or `priv/` prefix.
//!
//! | client sends | meaning | server answers |
//! |---|---|---|
//! | `H<major>\t<minor>\t<value_type>\t<user>\t<dict_name>` | hello, first line; 2.3 sends `H3\t2`, value_type 0 (string) or 1 (uint32), user always empty; 2.4 sends `H4\t0`, value_type 0; dict_name = the part after `proxy:<socket>:` | nothing (stock server closes on a bad hello) |
//! | `L<key>\t<user>` | lookup | `O<value>`, `M<esc(v1\tv2..)>` (minor >= 2, several values), `N`, or `F<error>` |
//! | `I<flags>\t<max_rows>\t<path>\t<user>` | iterate (max_rows 0 = unlimited) | rows `O<key>\t<value>` (value empty with flag 0x08 NO_VALUE), then an empty line; or `F<error>` |
//! | `B<id>\t<user>[\t<expire_secs>]` | begin transaction (the third field from 2.4 only) | nothing |
//! | `S<id>\t<key>\t<value>` | set | nothing |
//! | `U<id>\t<key>` | unset | nothing |
//! | `A<id>\t<key>\t<diff>` | atomic increment (signed) | nothing |
//! | `T<id>\t<secs>\t<nsecs>` | transaction timestamp | nothing |
//! | `C<id>` | commit (the only commit 2.3's client sends) | `O<id>`, `N<id>`, `F<id>\t<error>`, `W<id>\t<error>` (write uncertain) |
//! | `D<id>` | async commit (server still parses it) | as `C`, prefixed with `A`: `AO<id>` ... |
//! | `R<id>` | rollback | nothing |
//!
//! Not in 2.3.19 but parsed for later clients: `V<id>\t<yes|no>`
//! (hide log values; no reply; format not verified against a source).
//!
//! The stock server appends four timing fields to replies and announces
//! out-of-order replies with `*<n>` / `+<n>\t` for clients with minor >= 1;
//! both are optional for the client (it matches replies to commands in order
//! when there is no `+` prefix and only reads timings when 4 extra fields are
//! present), so this implementation sends neither and answers in order.
//!
//! Escaping (`strescape.c`): `\001`→`\0011`, `\t`→`\001t`, `\r`→`\001r`,
//! `\n`→`\001n`, NUL→`\0010`. Unescaping maps `\001<c>` back, an unknown `<c>`
//! to itself, and drops a trailing lone `\001`.
//!
//! This module only parses and encodes, in three parts: `parse` reads
//! request lines, `encode` writes reply lines, and `escape` holds the field
//! escaping both use. It builds on [`crate::types`] and must not depend on
//! [`crate::server`] (connections, transactions); its items are re-exported
//! here, so their paths are `crate::proto::*`.

mod encode;
mod escape;
mod parse;

pub use encode::Reply;
pub use escape::{tab_escape, tab_escape_into, tab_unescape};
pub use parse::{
    ParseError, Request, command_expects_reply, command_is_write, parse_request,
    transaction_id_prefix,
};

/// Protocol major version sent in HELLO by Dovecot 2.3.
pub const PROTOCOL_MAJOR: u32 = 3;
/// Protocol major version Dovecot 2.4 sends (`src/lib-dict-extra/dict-client.h`,
/// 2.4.1). Its lines are those of 3.2 except that the hello carries minor 0,
/// value type 0 and no user, and `BEGIN` may carry a third field, the
/// transaction's expiry in seconds (only used by drivers with
/// `DICT_DRIVER_FLAG_SUPPORT_EXPIRE_SECS`; our dicts never expire keys, and
/// Dovecot sends 0 unless a plugin asks for expiry).
pub const PROTOCOL_MAJOR_24: u32 = 4;
/// Minor version Dovecot 2.3.19 sends; from 2 on the client accepts `M` replies.
pub const PROTOCOL_MINOR: u32 = 2;
/// `DICT_CLIENT_MAX_LINE_LENGTH`: the longest line either side accepts.
pub const MAX_LINE_LENGTH: usize = 64 * 1024;
/// Iterate flag `DICT_ITERATE_FLAG_RECURSE`.
pub const ITERATE_FLAG_RECURSE: u32 = 0x01;
/// Iterate flag `DICT_ITERATE_FLAG_NO_VALUE`: rows carry an empty value.
pub const ITERATE_FLAG_NO_VALUE: u32 = 0x08;
/// Iterate flag `DICT_ITERATE_FLAG_EXACT_KEY`.
pub const ITERATE_FLAG_EXACT_KEY: u32 = 0x10;
