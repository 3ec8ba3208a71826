//! The subcommands that are not daemons: expiry, quota expiry, report and
//! newemail (logic in the `chatmail-expire` crate), the sandbox and the
//! benchmarks. This maps their arguments to the library calls.

use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;

use crate::cli::{
    BenchArgs, BenchTarget, DoctorArgs, ExpireArgs, NewemailArgs, ReportArgs, SandboxArgs,
    SetupArgs,
};
use crate::daemon::load_config;

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

pub fn report(args: &ReportArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let report = chatmail_expire::report(&config, SystemTime::now())?;
    print!("{report}");
    if let Some(dir) = &args.textfile {
        chatmail_expire::write_textfile(dir, &report)
            .with_context(|| format!("writing the textfile into {}", dir.display()))?;
    }
    Ok(())
}

pub fn newemail(args: &NewemailArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    print!(
        "{}",
        chatmail_expire::newemail_cgi(&config, args.self_signed)?
    );
    Ok(())
}

pub fn setup(args: SetupArgs) -> anyhow::Result<()> {
    let options = chatmail_setup::SetupOptions {
        domain: args.domain,
        etc: args.etc,
        dry_run: args.dry_run,
    };
    let report = chatmail_setup::setup(&options, &mut std::io::stdout().lock())?;
    print!("{report}");
    Ok(())
}

pub async fn doctor(args: DoctorArgs) -> anyhow::Result<()> {
    let mut options = chatmail_setup::DoctorOptions::new(args.config, args.etc);
    options.postfix_config_dir = args.postfix_config_dir;
    options.dovecot_config = args.dovecot_config;
    for (daemon, path) in args.sockets {
        options.set_socket(daemon, path);
    }
    let report = chatmail_setup::doctor(&options).await;
    print!("{report}");
    anyhow::ensure!(report.exit_code() == 0, "some checks failed");
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
        exe: std::env::current_exe()?,
    };
    Ok(chatmail_sandbox::run(options, shutdown).await?)
}

pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    match args.target {
        BenchTarget::Dict => {
            let options = chatmail_bench::Options {
                seconds: args.seconds,
                users: args.users,
                exe: std::env::current_exe()?,
            };
            chatmail_bench::run(options).await?;
        }
        BenchTarget::Expire => chatmail_bench::expire::run(args.mailboxes, args.messages)?,
        BenchTarget::Rules => chatmail_bench::rules::run(args.seconds)?,
        BenchTarget::Metadata => {
            let mut options = chatmail_bench::metadata::Options::new(std::env::current_exe()?);
            options.seconds = args.seconds;
            chatmail_bench::metadata::run(options).await?;
        }
    }
    Ok(())
}
