//! Command-line arguments (clap derive): one subcommand per daemon.

use std::path::PathBuf;

use chatmail_net::ListenAddr;
use clap::{Args, Parser, Subcommand};

/// Helper daemons that turn stock Debian Postfix and Dovecot into a chatmail
/// relay for Delta Chat. Each subcommand is one daemon, run as its own
/// systemd service; `sandbox` runs a whole relay on loopback.
#[derive(Debug, Parser)]
#[command(name = "chatmail", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Dovecot passdb/userdb over the dict protocol: looks up accounts and
    /// creates one on the first login of an unknown, admissible address.
    Auth(DaemonArgs),
    /// Dict server for Dovecot's last_login plugin: keeps each user's
    /// last-login day as their password file's mtime.
    Lastlogin(DaemonArgs),
    /// Dict server for Dovecot's IMAP METADATA: stores notify tokens, serves
    /// relay information to clients, and sends push notifications (from a
    /// durable queue) when new mail arrives.
    Metadata(DaemonArgs),
    /// Sendmail milter (v6) for Postfix's smtpd_milters: only end-to-end
    /// encrypted mail passes, outgoing (authenticated) and incoming (port 25).
    Milter(DaemonArgs),
    /// Postfix policy service (check_policy_service): per-user send rate
    /// limit at DATA, and unknown local recipients refused at RCPT.
    Policy(DaemonArgs),
    /// The daily expiry job: inactive accounts, old and large mail, and
    /// mailboxes above 70 % of max_mailbox_size. Dry run unless --remove.
    Expire(ExpireArgs),
    /// Dovecot quota_warning script: removes the oldest mail of one mailbox
    /// down to TARGET_MB, sparing mail younger than 24 hours.
    QuotaExpire {
        /// Target size in MiB.
        target_mb: u64,
        /// The mailbox (Dovecot home) directory.
        mailbox_dir: PathBuf,
    },
    /// Storage report: mailboxes by last login, messages by size.
    Report(ReportArgs),
    /// CGI program for https://DOMAIN/new: prints fresh credentials as JSON.
    Newemail(NewemailArgs),
    /// Applies the shipped Postfix and Dovecot snippets to this machine,
    /// writes the config, makes a self-signed certificate when none is
    /// configured and enables the units. Idempotent.
    Setup(SetupArgs),
    /// Checks a live installation: config, every daemon's socket, the
    /// Postfix and Dovecot wiring, the certificate, the mailboxes.
    Doctor(DoctorArgs),
    /// Runs a complete chatmail relay on 127.0.0.1 from the machine's stock
    /// Postfix and Dovecot, in the foreground, until Ctrl-C. Needs root;
    /// never touches /etc/postfix or /etc/dovecot.
    Sandbox(SandboxArgs),
    /// Measures daemon throughput and latency against a raw Unix-socket
    /// echo server in the same run.
    Bench(BenchArgs),
    /// The raw Unix-socket line echo server `bench` measures its ceiling with.
    #[command(hide = true)]
    BenchEchoServer {
        #[arg(long)]
        listen: ListenAddr,
    },
}

/// Options every daemon takes.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The chatmail.ini to read (chatmaild's format, section [params]).
    #[arg(long, default_value = "/etc/chatmail/chatmail.ini")]
    pub config: PathBuf,
    /// Where to listen: unix:PATH (created with mode 0660, a stale socket is
    /// replaced) or inet:HOST:PORT. Defaults to the path the shipped
    /// Dovecot/Postfix snippets use for this daemon.
    #[arg(long)]
    pub listen: Option<ListenAddr>,
}

#[derive(Debug, Args)]
pub struct ExpireArgs {
    #[arg(long, default_value = "/etc/chatmail/chatmail.ini")]
    pub config: PathBuf,
    /// Really delete; without it, only print what would go.
    #[arg(long)]
    pub remove: bool,
    /// Print every mailbox checked.
    #[arg(short, long)]
    pub verbose: bool,
    /// Pretend today is N days later (to try out a policy).
    #[arg(long, default_value_t = 0)]
    pub days: u32,
    /// Look at no more than N mailboxes.
    #[arg(long)]
    pub max_mailboxes: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long, default_value = "/etc/chatmail/chatmail.ini")]
    pub config: PathBuf,
    /// Also write chatmail.prom into this node-exporter textfile directory.
    #[arg(long)]
    pub textfile: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NewemailArgs {
    #[arg(long, default_value = "/etc/chatmail/chatmail.ini")]
    pub config: PathBuf,
    /// The relay's certificate is self-signed: add a dclogin_url that
    /// accepts it (implied for IPv4 and '_' domains).
    #[arg(long)]
    pub self_signed: bool,
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The relay's mail domain.
    #[arg(long)]
    pub domain: String,
    /// Apply everything under DIR instead of /etc (e.g. a copy, for tests):
    /// the files written there name DIR's own files, so Postfix and Dovecot
    /// can be started from DIR; systemd is left alone.
    #[arg(long)]
    pub etc: Option<PathBuf>,
    /// Print the changes as diffs and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The chatmail.ini to check (default: ETC/chatmail/chatmail.ini).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where the Postfix and Dovecot configuration lives (default /etc).
    #[arg(long)]
    pub etc: Option<PathBuf>,
    /// The directory with Postfix's main.cf, for an instance not in
    /// ETC/postfix (`postfix -c DIR`).
    #[arg(long, value_name = "DIR")]
    pub postfix_config_dir: Option<PathBuf>,
    /// Check Dovecot's whole configuration as `doveconf -c FILE -n` reads
    /// it, instead of the ETC/dovecot/conf.d/90-chatmail.conf that setup
    /// installs.
    #[arg(long, value_name = "FILE")]
    pub dovecot_config: Option<PathBuf>,
    /// A daemon that listens elsewhere than the shipped units say, e.g.
    /// `milter=/run/x/milter.socket`; Postfix and Dovecot must then name
    /// that path too. Repeatable.
    #[arg(
        long = "socket",
        value_name = "DAEMON=PATH",
        value_parser = chatmail_setup::doctor::parse_socket_arg
    )]
    pub sockets: Vec<(&'static str, PathBuf)>,
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Directory for all state (config, queue, mail, sockets, logs); reused
    /// when it exists. DIR/relay.json describes the running relay.
    #[arg(long)]
    pub state_dir: PathBuf,
    /// The relay's mail domain (only for a new state directory).
    #[arg(long, default_value = "chat.localhost")]
    pub domain: String,
    /// Use the five ports from this one on (SMTP, submission, submissions,
    /// IMAP, IMAPS) instead of free ones picked at random.
    #[arg(long)]
    pub port_base: Option<u16>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value = "dict")]
    pub target: BenchTarget,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Accounts to create before measuring lookups.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Mailboxes in the synthetic tree (expire).
    #[arg(long, default_value_t = 10_000)]
    pub mailboxes: usize,
    /// Messages per mailbox in the synthetic tree (expire).
    #[arg(long, default_value_t = 20)]
    pub messages: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BenchTarget {
    /// chatmail auth passdb lookups and account creations.
    Dict,
    /// The daily expiry over a large synthetic mailbox tree.
    Expire,
    /// The encryption rules on a 5 kB and a 1 MB message.
    Rules,
    /// chatmail metadata: token registrations, push throughput and latency,
    /// memory with many tokens.
    Metadata,
}
