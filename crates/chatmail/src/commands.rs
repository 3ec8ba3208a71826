//! The subcommands that are not daemons: expiry and quota expiry (logic in the
//! `chatmail-expire` crate), report (`chatmail-report`), newemail (`chatmail-web`),
//! setup, doctor and the sandbox. This maps their arguments to the library calls.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;

use crate::cli::{
    AddressArgs, DoctorArgs, ExpireArgs, NewemailArgs, ReportArgs, SandboxArgs, SetupArgs,
};
use crate::serve::load_config;

pub fn expire(args: &ExpireArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let options = chatmail_expire::ExpireOptions {
        remove: args.remove,
        verbose: args.verbose,
        days_offset: args.days,
        max_mailboxes: args.max_mailboxes,
        now: SystemTime::now(),
    };
    let summary = chatmail_expire::expire(&config, &options, &mut std::io::stdout().lock())?;
    println!("{summary}");
    anyhow::ensure!(
        summary.errors == 0,
        "{} file(s) could not be removed",
        summary.errors
    );
    Ok(())
}

pub fn quota_expire(target_mb: u64, mailbox_dir: &Path) -> anyhow::Result<()> {
    let target = target_mb
        .checked_mul(1024 * 1024)
        .context("TARGET_MB is too large")?;
    let summary = chatmail_expire::quota_expire(mailbox_dir, target, SystemTime::now())?;
    // Dovecot's script service logs our stderr; one line per run.
    tracing::info!("{summary}");
    anyhow::ensure!(
        summary.errors.is_empty(),
        "{} file(s) could not be removed",
        summary.errors.len()
    );
    Ok(())
}

/// `chatmail disable ADDR` / `chatmail enable ADDR`.
pub fn set_disabled(args: &AddressArgs, disabled: bool) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let store = chatmail_mailbox::Store::from_config(&config);
    let mailbox = store
        .mailbox(&args.address)
        .with_context(|| format!("{:?} is not an address of this relay", args.address))?;
    let changed = mailbox.set_disabled(disabled).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow::anyhow!("{} has no mailbox directory", mailbox.addr())
        } else {
            anyhow::Error::new(e).context(format!("{}", mailbox.disabled_path().display()))
        }
    })?;
    let addr = mailbox.addr();
    match (disabled, changed) {
        (true, true) => println!("{addr} disabled: logins, and mail to and from it, are refused"),
        (true, false) => println!("{addr} was already disabled"),
        (false, true) => println!("{addr} enabled"),
        (false, false) => println!("{addr} was not disabled"),
    }
    Ok(())
}

pub fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let report = chatmail_report::report(&config, SystemTime::now())?;
    print!("{report}");
    if let Some(dir) = &args.textfile {
        chatmail_report::write_textfile(dir, &report)
            .with_context(|| format!("writing the textfile into {}", dir.display()))?;
    }
    Ok(())
}

pub fn newemail(args: &NewemailArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    // A browser's GET (nginx forwards it only on a self-signed relay).
    let get = std::env::var("REQUEST_METHOD").is_ok_and(|m| m == "GET");
    if get && chatmail_web::needs_dclogin(&config, args.self_signed) {
        print!("{}", chatmail_web::newemail_redirect_cgi(&config)?);
        return Ok(());
    }
    print!("{}", chatmail_web::newemail_cgi(&config, args.self_signed)?);
    Ok(())
}

pub fn setup(args: SetupArgs) -> anyhow::Result<()> {
    let options = chatmail_setup::SetupOptions {
        domain: args.domain,
        etc: args.etc,
        dry_run: args.dry_run,
        acme: args.acme.then(|| {
            args.acme_server
                .unwrap_or_else(|| chatmail_setup::acme::LETS_ENCRYPT.into())
        }),
    };
    let report = chatmail_setup::install::run(&options, &mut std::io::stdout().lock())?;
    print!("{report}");
    anyhow::ensure!(
        report.failures.is_empty(),
        "the relay is not complete; fix the causes above and run setup again"
    );
    Ok(())
}

/// Prints the report, and nothing else; exits 1 when a check failed (the
/// report's last line says how many).
pub async fn doctor(args: DoctorArgs) -> std::process::ExitCode {
    let mut options = chatmail_setup::DoctorOptions::new(args.config, args.etc);
    options.postfix_config_dir = args.postfix_config_dir;
    options.dovecot_config = args.dovecot_config;
    options.web.address = args.https_address;
    options.web.ca_file = args.ca_file;
    options.web.certbot_dir = args.certbot_dir;
    for (daemon, path) in args.sockets {
        options.set_socket(daemon, path);
    }
    options.metrics = args.metrics;
    let report = chatmail_setup::doctor(&options).await;
    print!("{report}");
    if report.ok() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

pub fn dns(args: &crate::cli::DnsArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let ipv4 = args
        .ipv4
        .or_else(|| match chatmail_setup::dns::machine_address(false) {
            Some(std::net::IpAddr::V4(ip)) => Some(ip),
            _ => None,
        });
    let ipv6 = args
        .ipv6
        .or_else(|| match chatmail_setup::dns::machine_address(true) {
            Some(std::net::IpAddr::V6(ip)) => Some(ip),
            _ => None,
        });
    let roots = chatmail_setup::Roots::default();
    print!(
        "{}",
        chatmail_setup::dns::zone_fragment(&config, &roots, ipv4, ipv6)
    );
    Ok(())
}

pub async fn sandbox(
    args: SandboxArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let options = chatmail_sandbox::Options {
        state_dir: args.state_dir,
        domain: args.domain,
        port_base: args.port_base,
        root: args.root,
        exe: std::env::current_exe()?,
        acme_directory: args.acme_directory,
        dns_resolver: args.dns_resolver,
        peers: args.peers,
    };
    Ok(chatmail_sandbox::run(options, shutdown).await?)
}
