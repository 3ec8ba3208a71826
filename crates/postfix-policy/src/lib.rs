//! Server side of the Postfix SMTP access policy delegation protocol
//! (`check_policy_service`), as spoken by the Postfix 3.7 SMTP server.
//!
//! The specification is Postfix's `SMTPD_POLICY_README` ("Policy protocol
//! description"; <https://www.postfix.org/SMTPD_POLICY_README.html>) for the
//! framing and attributes, and `access(5)` for the actions a reply may carry.
//! [`proto`] documents the format and holds the parser and the reply
//! encoder; [`server`] runs connections and hands complete requests to a
//! [`server::Handler`] that holds the policy; [`proto`] does not depend on
//! [`server`]. The crate speaks only the policy protocol: it must not
//! depend on the config or on any daemon crate.

pub mod proto;
pub mod server;

pub use proto::{
    Action, Limits, ParseError, ProtocolState, ReplyCode, Request, RequestParser, parse_request,
};
pub use server::{Handler, ServerOptions, serve};
