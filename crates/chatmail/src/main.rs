//! `chatmail`: one binary, one subcommand per daemon. Each daemon's logic
//! lives in its own library crate; this file only parses arguments, sets up
//! logging and hands a bound listener to the daemon's `run`.

mod cli;
mod commands;
mod metrics_wiring;
mod relay;
mod serve;

use std::process::ExitCode;

use chatmail_snippets::daemons;
use clap::Parser;

use crate::cli::{Cli, Command};

/// jemalloc rather than glibc's malloc: glibc keeps freed multi-megabyte
/// message buffers in per-thread arenas unless an environment variable
/// fixes its mmap threshold, so the milter's peak memory would depend on
/// how it was started; jemalloc gives them back whatever the environment
/// (docs/milter-memory.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    serve::init_logging(log_filter(&cli.command));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chatmail: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            // One line: under systemd stderr is the journal, so a log line
            // as well would print the reason twice.
            eprintln!("chatmail: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter when `RUST_LOG` is unset. `doctor` and `dns` print a
/// report and nothing else: what their libraries would log (rustls's
/// "failed to verify TLS certificate" for a check the report already names
/// as FAIL) shows only under an explicit `RUST_LOG`; `dns` still warns
/// about the config it reads.
fn log_filter(command: &Command) -> &'static str {
    match command {
        Command::Doctor(_) => "off",
        Command::Dns(_) => "chatmail=warn",
        _ => "info",
    }
}

/// Runs the subcommand; its exit code (doctor's says whether a check
/// failed, with the report as the only output).
async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    // Installed before any socket exists, so a SIGTERM during start-up is
    // a clean stop too.
    let signal = chatmail_net::shutdown_signal();
    let shutdown = move || signal;
    match command {
        Command::Auth(args) => {
            let (listener, config) = serve::prepare(&args, &daemons::AUTH).await?;
            chatmail_auth::run(listener, config, shutdown()).await?;
        }
        Command::Lastlogin(args) => {
            let (listener, config) = serve::prepare(&args, &daemons::LASTLOGIN).await?;
            chatmail_lastlogin::run(listener, config, shutdown()).await?;
        }
        Command::Metadata(args) => {
            let (listener, config) = serve::prepare(&args, &daemons::METADATA).await?;
            let options = chatmail_metadata::MetadataOptions::from_config(&config);
            chatmail_metadata::run(listener, config, options, shutdown()).await?;
        }
        Command::Milter(args) => {
            let (listener, config) = serve::prepare(&args, &daemons::MILTER).await?;
            chatmail_milter::run(listener, config, shutdown()).await?;
        }
        Command::Policy(args) => {
            let (listener, config) = serve::prepare(&args, &daemons::POLICY).await?;
            chatmail_policy::run(listener, config, shutdown()).await?;
        }
        Command::Mxdeliv(args) => {
            let (listener, config) = serve::prepare(&args.daemon, &daemons::MXDELIV).await?;
            relay::mxdeliv(listener, &config, &args, shutdown()).await?;
        }
        Command::Transport(args) => {
            let (listener, config) = serve::prepare(&args.daemon, &daemons::TRANSPORT).await?;
            relay::transport(listener, &config, args, shutdown()).await?;
        }
        Command::Expire(args) => commands::expire(&args)?,
        Command::QuotaExpire {
            target_mb,
            mailbox_dir,
        } => commands::quota_expire(target_mb, &mailbox_dir)?,
        Command::Report(args) => commands::report(&args)?,
        Command::Disable(args) => commands::set_disabled(&args, true)?,
        Command::Enable(args) => commands::set_disabled(&args, false)?,
        Command::Newemail(args) => commands::newemail(&args)?,
        Command::Setup(args) => commands::setup(args)?,
        Command::Doctor(args) => return Ok(commands::doctor(args).await),
        Command::Dns(args) => commands::dns(&args)?,
        Command::Sandbox(args) => commands::sandbox(args, shutdown()).await?,
    }
    Ok(ExitCode::SUCCESS)
}
