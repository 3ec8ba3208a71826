//! `chatmail-bench`: the benchmarks of the chatmail daemons, a binary of its
//! own so the shipped `chatmail` links no benchmark or test-message code.
//! The daemons under test run as their own processes from the `chatmail`
//! binary (`--chatmail`, by default the one beside this binary).

use std::path::PathBuf;
use std::process::ExitCode;

use chatmail_net::ListenAddr;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "chatmail-bench",
    version,
    about = "Throughput and latency of the chatmail daemons against a limit measured in the same run"
)]
struct Cli {
    /// The `chatmail` binary whose daemons are measured; by default the one
    /// in the same directory as this program.
    #[arg(long, global = true)]
    chatmail: Option<PathBuf>,
    #[command(subcommand)]
    target: Target,
}

#[derive(Debug, Subcommand)]
enum Target {
    /// chatmail auth passdb lookups and account creations.
    Dict(Timing),
    /// The daily expiry over a large synthetic mailbox tree.
    Expire {
        /// Mailboxes in the synthetic tree.
        #[arg(long, default_value_t = 10_000)]
        mailboxes: usize,
        /// Messages per mailbox in the synthetic tree.
        #[arg(long, default_value_t = 20)]
        messages: usize,
    },
    /// The encryption rules on a 5 kB and a 1 MB message.
    Rules(Timing),
    /// chatmail metadata: token registrations, push throughput and latency,
    /// memory with many tokens.
    Metadata(Timing),
    /// chatmail auth lookups with metrics off and on, and every daemon's
    /// memory with and without its metrics endpoint.
    Metrics(Timing),
    /// chatmail milter: peak memory and wall time with many concurrent
    /// large messages.
    Milter {
        /// Concurrent connections per row, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [40, 200])]
        connections: Vec<usize>,
        /// Bytes per message.
        #[arg(long, default_value_t = 10_000_000)]
        size: usize,
    },
    /// The raw Unix-socket line echo server the dict and metadata
    /// benchmarks measure their ceiling with.
    #[command(hide = true)]
    EchoServer {
        #[arg(long)]
        listen: ListenAddr,
    },
}

#[derive(Debug, clap::Args)]
struct Timing {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Accounts to create before measuring lookups (dict).
    #[arg(long, default_value_t = 1000)]
    users: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("chatmail-bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chatmail-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> std::io::Result<()> {
    let bench = std::env::current_exe()?;
    let chatmail = match cli.chatmail {
        Some(path) => path,
        None => bench.with_file_name("chatmail"),
    };
    match cli.target {
        Target::Dict(t) => {
            chatmail_bench::run(chatmail_bench::Options {
                seconds: t.seconds,
                users: t.users,
                exe: chatmail,
                bench,
            })
            .await
        }
        Target::Expire {
            mailboxes,
            messages,
        } => chatmail_bench::expire::run(mailboxes, messages),
        Target::Rules(t) => chatmail_bench::rules::run(t.seconds),
        Target::Metadata(t) => {
            let mut options = chatmail_bench::metadata::Options::new(chatmail, bench);
            options.seconds = t.seconds;
            chatmail_bench::metadata::run(options).await
        }
        Target::Metrics(t) => {
            chatmail_bench::metrics::run(chatmail_bench::Options {
                seconds: t.seconds,
                users: t.users,
                exe: chatmail,
                bench,
            })
            .await
        }
        Target::Milter { connections, size } => {
            chatmail_bench::milter::run(chatmail_bench::milter::Options {
                exe: chatmail,
                connections,
                size,
            })
            .await
        }
        Target::EchoServer { listen } => chatmail_bench::echo_server(&listen).await,
    }
}
