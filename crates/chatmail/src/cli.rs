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
    /// Relay-to-relay mail arriving over HTTPS: nginx passes each
    /// `POST /mxdeliv` here, and the message goes to Postfix as one SMTP
    /// transaction with the client's address, through every check of
    /// port 25.
    Mxdeliv(MxdelivArgs),
    /// Relay-to-relay mail leaving over HTTPS: Postfix's LMTP transport for
    /// remote recipients (tries `https://<MX>/mxdeliv`) and the socketmap
    /// that routes each recipient to it or to Postfix's own SMTP client.
    Transport(TransportArgs),
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
    /// Disables an address (a DISABLED file in its mailbox directory): it
    /// can no longer log in, mail to it and from it is refused, and nothing
    /// of it is deleted. Sessions already logged in keep running.
    Disable(AddressArgs),
    /// Enables a disabled address again (removes its DISABLED file).
    Enable(AddressArgs),
    /// CGI program for https://DOMAIN/new: prints fresh credentials as JSON.
    Newemail(NewemailArgs),
    /// Applies the shipped Postfix and Dovecot snippets to this machine,
    /// writes the config, makes a self-signed certificate when none is
    /// configured and enables the units. Idempotent.
    Setup(SetupArgs),
    /// Checks a live installation: config, every daemon's socket, the
    /// Postfix and Dovecot wiring, the certificate, the mailboxes.
    Doctor(DoctorArgs),
    /// Prints the DNS records the relay needs as a zone fragment: address,
    /// MX, SPF, DMARC, DKIM (from the key), MTA-STS and SRV.
    Dns(DnsArgs),
    /// Runs a complete chatmail relay on 127.0.0.1 from the machine's stock
    /// Postfix and Dovecot, in the foreground, until Ctrl-C. Needs root;
    /// never touches /etc/postfix or /etc/dovecot.
    Sandbox(SandboxArgs),
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
    /// Serve Prometheus metrics on GET /metrics at inet:HOST:PORT (default:
    /// the metrics_listen of the config plus this daemon's offset; off when
    /// neither is set). Never a mail socket; keep it on loopback.
    #[arg(long, value_name = "inet:HOST:PORT")]
    pub metrics_listen: Option<ListenAddr>,
}

#[derive(Debug, Args)]
pub struct MxdelivArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Postfix's smtpd that trusts this service with XCLIENT (the
    /// `mxdeliv` service of the shipped master.cf).
    #[arg(
        long,
        value_name = "unix:PATH|inet:HOST:PORT",
        default_value = "unix:/var/spool/postfix/public/mxdeliv"
    )]
    pub postfix: ListenAddr,
}

#[derive(Debug, Args)]
pub struct TransportArgs {
    #[command(flatten)]
    pub daemon: DaemonArgs,
    /// Where the socketmap for Postfix's transport_maps,
    /// smtp_tls_policy_maps and smtp_delivery_status_filter listens.
    #[arg(long, value_name = "unix:PATH|inet:HOST:PORT")]
    pub map_listen: Option<ListenAddr>,
    /// Postfix's smtpd that queues mail for its SMTP client (the
    /// `chatmail-reinject` service of the shipped master.cf).
    #[arg(
        long,
        value_name = "unix:PATH|inet:HOST:PORT",
        default_value = "unix:/var/spool/postfix/public/chatmail-reinject"
    )]
    pub reinject: ListenAddr,
    /// A relay reached at fixed addresses instead of through DNS (test
    /// relays on one machine): DOMAIN=SMTP_IP:PORT[,https=HOST:PORT].
    /// Repeatable.
    #[arg(long = "peer", value_name = "DOMAIN=SMTP_IP:PORT[,https=HOST:PORT]")]
    pub peers: Vec<chatmail_mxdeliv::routes::Peer>,
    /// Deliver only to the --peer relays; mail to any other domain is
    /// refused.
    #[arg(long)]
    pub peers_only: bool,
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
pub struct AddressArgs {
    #[arg(long, default_value = "/etc/chatmail/chatmail.ini")]
    pub config: PathBuf,
    /// The address, e.g. abcdefghi@chat.example.org.
    pub address: String,
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
    /// can be started from DIR; systemd is left alone. The rendered web
    /// pages go to DIR/../var/lib/chatmail/www.
    #[arg(long)]
    pub etc: Option<PathBuf>,
    /// Print the changes as diffs and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Get the relay's certificate (mail_domain, mta-sts. and www.) from
    /// Let's Encrypt with certbot through nginx (HTTP-01); certbot's timer
    /// renews it and its deploy hook reloads Postfix, Dovecot and nginx.
    #[arg(long)]
    pub acme: bool,
    /// The ACME directory URL for --acme (default: Let's Encrypt).
    #[arg(long, value_name = "URL", requires = "acme")]
    pub acme_server: Option<String>,
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
    /// Check the web front at this HTTPS address (default 127.0.0.1:443
    /// when the nginx server block is installed).
    #[arg(long, value_name = "IP:PORT")]
    pub https_address: Option<std::net::SocketAddr>,
    /// Trust the certificates of this PEM file too when checking the web
    /// front (a test CA, or a self-signed relay's own certificate); the
    /// others are the system's CA bundle (SSL_CERT_FILE, else
    /// /etc/ssl/certs/ca-certificates.crt) minus the relay's own files.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// certbot's configuration directory (default /etc/letsencrypt), for
    /// the check that the certificate in use is certbot's current one.
    #[arg(long, value_name = "DIR")]
    pub certbot_dir: Option<PathBuf>,
    /// A daemon that listens elsewhere than the shipped units say, e.g.
    /// `milter=/run/x/milter.socket`; Postfix and Dovecot must then name
    /// that path too. Repeatable.
    #[arg(
        long = "socket",
        value_name = "DAEMON=PATH",
        value_parser = chatmail_setup::doctor::parse_socket_arg
    )]
    pub sockets: Vec<(&'static str, PathBuf)>,
    /// A daemon's metrics endpoint to check, e.g.
    /// `milter=inet:127.0.0.1:9543`, besides those metrics_listen enables.
    /// Repeatable.
    #[arg(
        long = "metrics",
        value_name = "DAEMON=inet:IP:PORT",
        value_parser = chatmail_setup::doctor_metrics::parse_metrics_arg
    )]
    pub metrics: Vec<(&'static str, std::net::SocketAddr)>,
}

#[derive(Debug, Args)]
pub struct DnsArgs {
    #[arg(long, default_value = "/etc/chatmail/chatmail.ini")]
    pub config: PathBuf,
    /// The relay's IPv4 address (default: the one this machine uses).
    #[arg(long)]
    pub ipv4: Option<std::net::Ipv4Addr>,
    /// The relay's IPv6 address (default: the one this machine uses).
    #[arg(long)]
    pub ipv6: Option<std::net::Ipv6Addr>,
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
    /// IMAP, IMAPS) instead of free ones picked at random, the two after
    /// them for HTTP and HTTPS, and the five after those for the daemons'
    /// metrics endpoints.
    #[arg(long)]
    pub port_base: Option<u16>,
    /// Run Postfix and Dovecot from this Debian root (built by
    /// scripts/debian13-root) instead of the machine's.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Get the certificate from this ACME server's directory URL (with
    /// Debian's certbot, HTTP-01 on the sandbox's http port) instead of
    /// making a self-signed one. HTTP and HTTPS use the two ports after the
    /// five mail ports.
    #[arg(long, value_name = "URL")]
    pub acme_directory: Option<String>,
    /// The DNS resolver for DKIM lookups, IP:PORT (only for a new state
    /// directory; written into its chatmail.ini as dns_resolver).
    #[arg(long, value_name = "IP:PORT")]
    pub dns_resolver: Option<std::net::SocketAddr>,
    /// Another relay: mail for DOMAIN goes over HTTPS to HOST:PORT's
    /// /mxdeliv when given, else (or when that fails) to SMTP_IP:PORT with
    /// STARTTLS. Repeatable.
    #[arg(long = "peer", value_name = "DOMAIN=SMTP_IP:PORT[,https=HOST:PORT]")]
    pub peers: Vec<chatmail_mxdeliv::routes::Peer>,
}
