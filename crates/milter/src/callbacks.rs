//! The glue between indymilter (the Sendmail milter protocol v6, as
//! documented by libmilter's `smfi_*` API and Postfix's MILTER_README) and
//! the per-connection [`Session`].
//!
//! Negotiation asks Postfix for the macros we read (`{auth_authen}` at MAIL
//! FROM, `i` at end of message) so a site's `milter_mail_macros` cannot
//! silently turn submission into "incoming", and for header values with
//! their leading space (`SMFIP_HDR_LEADSPC`) so the message is rebuilt as
//! sent. Every decision is made at end of message; errors of our own end in
//! a temporary failure, never in an accept. While the end-of-message
//! callback works, it watches its connection ([`crate::peer`]): when
//! Postfix closes it, the check stops and the message counts as abandoned.

use std::ffi::{CStr, CString};
use std::sync::Arc;

use chatmail_e2ee::{Reply, Verdict};
use indymilter::{
    Actions, Callbacks, Context, EomContext, MacroStage, NegotiateContext, ProtoOpts,
    SetErrorReply, SmtpReply, Status,
};

use crate::dkim::{Dkim, Origin};
use crate::session::{Filter, Finished, Session};
use crate::{Peer, TEMPFAIL};

/// Macros we request at MAIL FROM: the SASL login decides the direction.
const MAIL_MACROS: &CStr = c"i {auth_type} {auth_authen}";
/// Macros we request at end of message: the queue id for the log line.
const EOM_MACROS: &CStr = c"i";

/// Per-connection data: the session, plus whether header values arrive
/// with their leading space.
#[derive(Debug, Default)]
pub struct Conn {
    session: Session,
    leading_space: bool,
    /// Postfix's emulated connection for mail it generated (see `dkim`).
    local: bool,
}

/// The callbacks for [`indymilter::run`].
///
/// The header, end-of-header and body callbacks may wait for memory budget
/// (see [`crate::budget`]): indymilter reads the next packet only after a
/// callback returns, so a waiting message is back-pressure on its Postfix
/// process, not a growing buffer here. While they wait they watch the
/// connection too: a message whose Postfix went away stops waiting and
/// returns its budget at once.
pub fn callbacks(filter: Arc<Filter>, dkim: Arc<Dkim>, peer: Peer) -> Callbacks<Conn> {
    let header_filter = Arc::clone(&filter);
    let eoh_filter = Arc::clone(&filter);
    let body_filter = Arc::clone(&filter);
    let header_peer = peer.clone();
    let eoh_peer = peer.clone();
    let body_peer = peer.clone();
    Callbacks::new()
        .on_negotiate(|cx, actions, opts| Box::pin(negotiate(cx, actions, opts)))
        .on_connect(|cx, _host, socket| {
            let addr = match socket {
                indymilter::SocketInfo::Inet(a) => Some(a),
                _ => None,
            };
            conn(&mut cx.data).local = crate::dkim::is_local_submission(addr);
            Box::pin(async { Status::Continue })
        })
        .on_mail(|cx, args| Box::pin(mail(cx, args)))
        .on_rcpt(|cx, args| Box::pin(rcpt(cx, args)))
        .on_header(move |cx, name, value| {
            let filter = Arc::clone(&header_filter);
            let peer = header_peer.clone();
            Box::pin(async move {
                let conn = conn(&mut cx.data);
                let ls = conn.leading_space;
                let r = unless_gone(
                    &peer,
                    conn.session
                        .header(&filter, name.as_bytes(), value.as_bytes(), ls),
                )
                .await;
                status_of(cx, r)
            })
        })
        .on_eoh(move |cx| {
            let filter = Arc::clone(&eoh_filter);
            let peer = eoh_peer.clone();
            Box::pin(async move {
                let session = &mut conn(&mut cx.data).session;
                let r = unless_gone(&peer, session.end_of_headers(&filter)).await;
                status_of(cx, r)
            })
        })
        .on_body(move |cx, chunk| {
            let filter = Arc::clone(&body_filter);
            let peer = body_peer.clone();
            Box::pin(async move {
                let session = &mut conn(&mut cx.data).session;
                let r = unless_gone(&peer, session.body(&filter, &chunk)).await;
                // The chunk goes now, not when the next one arrives.
                drop(chunk);
                status_of(cx, r)
            })
        })
        .on_eom(move |cx| {
            Box::pin(eom(
                cx,
                Arc::clone(&filter),
                Arc::clone(&dkim),
                peer.clone(),
            ))
        })
        .on_abort(|cx| {
            Box::pin(async move {
                conn(&mut cx.data).session.abort();
                Status::Continue
            })
        })
}

/// `step` of the message in progress, unless Postfix closes the
/// connection first: then `Err(GONE)`, and the session drops the message
/// (and its budget) when indymilter calls the abort callback on the closed
/// connection.
async fn unless_gone(
    peer: &Peer,
    step: impl std::future::Future<Output = Result<(), Reply>>,
) -> Result<(), Reply> {
    tokio::select! {
        r = step => r,
        () = peer.gone() => Err(GONE),
    }
}

/// The answer to a message whose Postfix has gone away; nobody reads it.
const GONE: Reply = Reply::new(451, "4.3.0", "Postfix closed the connection");

fn conn(data: &mut Option<Conn>) -> &mut Conn {
    data.get_or_insert_with(Conn::default)
}

async fn negotiate(cx: &mut NegotiateContext<Conn>, actions: Actions, opts: ProtoOpts) -> Status {
    let mut c = Conn::default();
    if opts.contains(ProtoOpts::LEADING_SPACE) {
        cx.requested_opts |= ProtoOpts::LEADING_SPACE;
        c.leading_space = true;
    }
    // The only change to messages is the DKIM-Signature header we add.
    cx.requested_actions = actions & (Actions::REQUEST_MACROS | Actions::ADD_HEADER);
    if actions.contains(Actions::REQUEST_MACROS) {
        cx.requested_macros
            .insert(MacroStage::Mail, MAIL_MACROS.to_owned());
        cx.requested_macros
            .insert(MacroStage::Eom, EOM_MACROS.to_owned());
    }
    cx.data = Some(c);
    Status::Continue
}

async fn mail(cx: &mut Context<Conn>, args: Vec<CString>) -> Status {
    let login = cx
        .macros
        .get(c"{auth_authen}")
        .map(|l| l.to_string_lossy().into_owned());
    let mut args = args.iter().map(|a| a.to_string_lossy().into_owned());
    let sender = args.next().unwrap_or_default();
    let esmtp_args: Vec<String> = args.collect();
    conn(&mut cx.data)
        .session
        .mail(&sender, login.as_deref(), &esmtp_args);
    Status::Continue
}

async fn rcpt(cx: &mut Context<Conn>, args: Vec<CString>) -> Status {
    if let Some(rcpt) = args.first() {
        conn(&mut cx.data).session.rcpt(&rcpt.to_string_lossy());
    }
    Status::Continue
}

async fn eom(
    cx: &mut EomContext<Conn>,
    filter: Arc<Filter>,
    dkim: Arc<Dkim>,
    peer: Peer,
) -> Status {
    let started = std::time::Instant::now();
    let queue_id = cx
        .macros
        .get(c"i")
        .map_or_else(|| "-".to_owned(), |i| i.to_string_lossy().into_owned());
    let (local, leading_space) = cx
        .data
        .as_ref()
        .map_or((false, false), |c| (c.local, c.leading_space));
    let finished = conn(&mut cx.data).session.finish();
    let Finished { msg, reservation } = match finished {
        Ok(f) => f,
        Err(reply) => {
            tracing::warn!(queue_id, "refused without a decision: {reply}");
            chatmail_metrics::milter().refused_early(reply);
            return set_reply(&mut cx.reply, reply);
        }
    };
    let sender = msg.sender.clone();
    let direction = msg.direction;
    let recipients = msg.recipients.len();
    let size = msg.raw.len();
    let origin = match (direction, local) {
        (chatmail_e2ee::Direction::Outgoing, _) => Origin::Submission,
        (_, true) => Origin::Local,
        _ => Origin::Peer,
    };
    let judging = judge(
        msg,
        reservation,
        origin,
        &filter,
        &dkim,
        &queue_id,
        &cx.actions,
        leading_space,
    );
    // Postfix sends nothing while it waits for the answer: anything but
    // silence on the connection is Postfix giving up (its timeout, a
    // stopped smtpd). The work stops there, and what is counted is what
    // Postfix did.
    let verdict = tokio::select! {
        v = judging => v,
        () = peer.gone() => {
            tracing::info!(
                queue_id,
                sender,
                ?direction,
                "abandoned: Postfix closed the connection before the answer"
            );
            chatmail_metrics::milter().abandoned(direction, started);
            return Status::Tempfail;
        }
    };
    chatmail_metrics::milter().decided(direction, verdict.as_ref().ok(), started);
    let (outcome, reply) = match verdict {
        Ok(Verdict::Accept(reason)) => (format!("accepted: {reason}"), None),
        Ok(Verdict::Reject(reply)) => (format!("rejected: {reply}"), Some(reply)),
        Err(e) => {
            tracing::error!(queue_id, sender, "the check failed: {e}");
            return set_reply(&mut cx.reply, TEMPFAIL);
        }
    };
    tracing::info!(queue_id, sender, ?direction, recipients, size, "{outcome}");
    reply.map_or(Status::Accept, |reply| set_reply(&mut cx.reply, reply))
}

/// The encryption verdict on a finished message and, when it accepts, the
/// DKIM step.
///
/// # Errors
/// When the blocking task of the encryption check failed.
#[allow(clippy::too_many_arguments)]
async fn judge(
    msg: crate::session::MessageData,
    reservation: Option<crate::budget::Reservation>,
    origin: Origin,
    filter: &Arc<Filter>,
    dkim: &Arc<Dkim>,
    queue_id: &str,
    actions: &indymilter::EomActions,
    leading_space: bool,
) -> Result<Verdict, tokio::task::JoinError> {
    // Parsing a large message takes a while: keep it off the reactor. The
    // reservation goes along: the decision's memory is part of it. It stays
    // held through the DKIM step, which reads the raw message, and is
    // returned when that is done, even if this future is not polled to the
    // end.
    let filter = Arc::clone(filter);
    let (verdict, raw, reservation) = tokio::task::spawn_blocking(move || {
        let v = match origin {
            Origin::Local => crate::dkim::decide_local(&msg),
            _ => filter.decide(&msg),
        };
        (v, msg.raw, reservation)
    })
    .await?;
    let Verdict::Accept(reason) = verdict else {
        return Ok(verdict);
    };
    let dkim_step = crate::dkim::finish(dkim, origin, raw, queue_id, actions, leading_space).await;
    drop(reservation);
    Ok(match dkim_step {
        Ok(()) => Verdict::Accept(reason),
        Err(reply) => Verdict::Reject(reply),
    })
}

/// Continue on `Ok`, else log and answer with the reply (the message is
/// over: Postfix sends nothing more of it, so this is its only log line).
fn status_of(cx: &mut Context<Conn>, r: Result<(), Reply>) -> Status {
    match r {
        Ok(()) => Status::Continue,
        Err(rep) => {
            let queue_id = cx
                .macros
                .get(c"i")
                .map_or_else(|| "-".to_owned(), |i| i.to_string_lossy().into_owned());
            if rep == GONE {
                tracing::info!(
                    queue_id,
                    "abandoned before the end of the message: Postfix closed the connection"
                );
                conn(&mut cx.data).session.abort();
                return Status::Tempfail;
            }
            tracing::info!(queue_id, "rejected before the end of the message: {rep}");
            set_reply(&mut cx.reply, rep)
        }
    }
}

/// Sets `rep` as the SMTP reply and returns the matching status. If the
/// reply cannot be set, the MTA's generic temporary failure is the answer.
fn set_reply(reply: &mut SmtpReply, rep: Reply) -> Status {
    let code = rep.code.to_string();
    match reply.set_error_reply(&code, Some(rep.enhanced), [rep.text]) {
        Ok(()) if rep.is_transient() => Status::Tempfail,
        Ok(()) => Status::Reject,
        Err(e) => {
            tracing::error!("cannot set the SMTP reply {rep}: {e}");
            Status::Tempfail
        }
    }
}
