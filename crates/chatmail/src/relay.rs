//! Starting the two daemons of the HTTPS transport (docs/design.md, "HTTPS
//! transport"): `chatmail mxdeliv` and `chatmail transport`.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use chatmail_config::Config;
use chatmail_mxdeliv::postfix::SmtpTarget;
use chatmail_mxdeliv::{incoming, routes, transport};
use chatmail_net::{ListenAddr, Listener};
use chatmail_snippets::daemons;

use crate::cli::{MxdelivArgs, TransportArgs};

/// How many messages from `/mxdeliv` may be on their way to Postfix at once
/// (the shipped master.cf gives its smtpd as many processes).
const MXDELIV_CONCURRENCY: usize = 50;

/// Runs `chatmail mxdeliv` on `listener`.
///
/// # Errors
/// None beyond [`incoming::run`]'s.
pub async fn mxdeliv(
    listener: Listener,
    config: &Config,
    args: &MxdelivArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let opts = incoming::Options {
        postfix: target(&args.postfix),
        max_message_size: config.max_message_size,
        max_concurrent: MXDELIV_CONCURRENCY,
        max_recipients: 1000,
        helo: config.mail_domain.clone(),
    };
    incoming::run(listener, opts, shutdown).await?;
    Ok(())
}

/// Where an smtpd of our Postfix listens.
fn target(addr: &ListenAddr) -> SmtpTarget {
    match addr {
        ListenAddr::Unix(p) => SmtpTarget::Unix(p.clone()),
        ListenAddr::Inet(hp) => SmtpTarget::Tcp(hp.clone()),
    }
}

/// Runs `chatmail transport`: the LMTP agent on `listener` and the
/// socketmap on `--map-listen`.
///
/// # Errors
/// A map socket that cannot be bound, a resolver that cannot be set up.
pub async fn transport(
    listener: Listener,
    config: &Config,
    args: TransportArgs,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let map_addr = args
        .map_listen
        .clone()
        .unwrap_or_else(|| ListenAddr::Unix(daemons::TRANSPORT_MAP_SOCKET.into()));
    let map = Listener::bind(&map_addr)
        .await
        .with_context(|| format!("listening on {map_addr}"))?;
    tracing::info!("socketmap listening on {map_addr}");
    let resolver = chatmail_mxdeliv::resolver(config).context("DNS resolver")?;
    let memory = Arc::new(routes::Memory::new(routes::Settings {
        own_domain: config.address_domain().to_ascii_lowercase(),
        https_first: config.deliver_over_https,
        peers: args.peers,
        peers_only: args.peers_only,
    }));
    let opts = transport::Options {
        max_message_size: config.max_message_size,
        name: config.mail_domain.clone(),
        reinject: target(&args.reinject),
        resolver,
    };
    // Either server ending ends both; dropping them at shutdown cuts any
    // LMTP session in progress, which Postfix retries.
    tokio::select! {
        r = transport::run(listener, Arc::clone(&memory), opts, std::future::pending()) => r?,
        r = routes::serve_map(map, memory, std::future::pending()) => r?,
        () = shutdown => {}
    }
    Ok(())
}
