//! `chatmail`: one binary, one subcommand per daemon. Each daemon's logic
//! lives in its own library crate; this file only parses arguments, sets up
//! logging and hands a bound listener to the daemon's `run`.

#![forbid(unsafe_code)]

mod cli;
mod daemon;
mod tools;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    daemon::init_logging();
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
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("chatmail: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    // Installed before any socket exists, so a SIGTERM during start-up is
    // a clean stop too.
    let signal = chatmail_net::shutdown_signal();
    let shutdown = move || signal;
    match command {
        Command::Auth(args) => {
            let (listener, config) = daemon::prepare(&args, "auth").await?;
            chatmail_auth::run(listener, config, shutdown()).await?;
        }
        Command::Lastlogin(args) => {
            let (listener, config) = daemon::prepare(&args, "lastlogin").await?;
            chatmail_lastlogin::run(listener, config, shutdown()).await?;
        }
        Command::Metadata(args) => {
            let (listener, config) = daemon::prepare(&args, "metadata").await?;
            let options = chatmail_metadata::MetadataOptions::from_config(&config);
            chatmail_metadata::run(listener, config, options, shutdown()).await?;
        }
        Command::Milter(args) => {
            let (listener, config) = daemon::prepare(&args, "milter").await?;
            chatmail_milter::run(listener, config, shutdown()).await?;
        }
        Command::Policy(args) => {
            let (listener, config) = daemon::prepare(&args, "policy").await?;
            chatmail_policy::run(listener, config, shutdown()).await?;
        }
        Command::Expire(args) => tools::expire(&args)?,
        Command::QuotaExpire {
            target_mb,
            mailbox_dir,
        } => tools::quota_expire(target_mb, &mailbox_dir)?,
        Command::Report(args) => tools::report(&args)?,
        Command::Newemail(args) => tools::newemail(&args)?,
        Command::Setup(args) => tools::setup(args)?,
        Command::Doctor(args) => tools::doctor(args).await?,
        Command::Sandbox(args) => tools::sandbox(args, shutdown()).await?,
        Command::Bench(args) => tools::bench(args).await?,
        Command::BenchEchoServer { listen } => chatmail_bench::echo_server(&listen).await?,
    }
    Ok(())
}
