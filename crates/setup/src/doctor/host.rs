//! The machine the relay runs on: the certificates Postfix and Dovecot
//! serve, the mailbox directory and its owner (docs/design.md, "On disk"),
//! the free disk and memory that account creation needs (docs/design.md,
//! "Account creation"), the inotify instances IMAP IDLE holds
//! (docs/latency.md), and the nocreate file.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use chatmail_accounts::meter::{ResourceMeter, SystemMeter};
use chatmail_accounts::rules::{self, Resources};
use chatmail_config::Config;

use crate::roots::Roots;

use super::check::{Check, Status};
use super::options::DoctorOptions;

/// The `tls PATH` line: `cert` (as the configs name it) is a certificate
/// that stays valid for `margin_days` more days.
pub(super) async fn check_certificate(roots: &Roots, cert: &Path, margin_days: u32) -> Check {
    let name = format!("tls {}", cert.display());
    let host = roots.host(cert);
    let fix = format!(
        "renew it (a self-signed one: remove {} and its key, then run `chatmail setup --domain \
         YOUR.DOMAIN`; one from `--acme`: see journalctl -u certbot.service, then `certbot \
         renew`), then `systemctl reload postfix dovecot`",
        cert.display()
    );
    let openssl = |args: &[&str]| {
        tokio::process::Command::new("openssl")
            .args(["x509", "-noout", "-in"])
            .arg(&host)
            .args(args)
            .output()
    };
    let end = match openssl(&["-enddate"]).await {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .trim()
            .trim_start_matches("notAfter=")
            .to_owned(),
        Ok(o) => {
            return Check::fail(
                name,
                format!(
                    "{}: not a readable certificate ({})",
                    host.display(),
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .next()
                        .unwrap_or("")
                ),
                fix,
            );
        }
        Err(e) => {
            return Check::fail(
                name,
                format!("cannot run openssl: {e}"),
                "apt-get install openssl",
            );
        }
    };
    let seconds = (u64::from(margin_days) * 86_400).to_string();
    match openssl(&["-checkend", &seconds]).await {
        Ok(o) if o.status.success() => Check::ok(name, format!("valid until {end}")),
        Ok(_) => Check::fail(
            name,
            format!("expires {end}, within {margin_days} days"),
            fix,
        ),
        Err(e) => Check::fail(
            name,
            format!("cannot run openssl: {e}"),
            "apt-get install openssl",
        ),
    }
}

/// The `mailboxes` line: `dir` (as the config names it) is a directory
/// owned by the vmail user.
pub(super) fn check_mailboxes(opts: &DoctorOptions, dir: &Path) -> Check {
    let host = opts.roots.host(dir);
    let name = "mailboxes";
    let user = &opts.vmail_user;
    let fix = format!(
        "mkdir -p {d} && chown {user}:{user} {d} && chmod 0750 {d}",
        d = host.display()
    );
    let Some(vmail) = nix::unistd::User::from_name(user).ok().flatten() else {
        return Check::fail(
            name,
            format!("there is no {user} user"),
            "reinstall chatmail-helpers (its postinst creates vmail), or: \
             adduser --system --group --home /home/vmail vmail",
        );
    };
    match std::fs::metadata(&host) {
        Ok(m) if !m.is_dir() => {
            Check::fail(name, format!("{} is not a directory", host.display()), fix)
        }
        Ok(m) if m.uid() != vmail.uid.as_raw() => Check::fail(
            name,
            format!(
                "{} is owned by uid {}, not {user} ({})",
                host.display(),
                m.uid(),
                vmail.uid
            ),
            format!("chown -R {user}:{user} {}", host.display()),
        ),
        Ok(_) => Check::ok(name, format!("{} exists, owned by {user}", host.display())),
        Err(e) => Check::fail(name, format!("{}: {e}", host.display()), fix),
    }
}

/// The kernel's per-user limit of inotify instances, under `/proc`.
pub const INOTIFY_LIMIT_IN_PROC: &str = "sys/fs/inotify/max_user_instances";
/// What the package's `/usr/lib/sysctl.d/60-chatmail-helpers.conf` sets.
pub const INOTIFY_PACKAGE_LIMIT: u64 = 65536;

/// The `inotify` line. Every IMAP connection in IDLE, and every one Dovecot
/// has hibernated, holds one inotify instance created as vmail, the user
/// all mailboxes run as (docs/latency.md); past the limit Dovecot polls new
/// IDLE connections every 30 s and cannot hibernate them. `used` counts
/// those instances when they could be counted (root can). Less than half
/// the limit left fails; a limit below the package's value is reported as
/// information only: a small relay may never need more.
pub fn inotify_check(limit: Result<u64, String>, used: Option<u64>) -> Check {
    let limit = match limit {
        Ok(limit) => limit,
        Err(e) => {
            return Check {
                status: Status::Info,
                name: "inotify".into(),
                detail: format!("cannot read fs.inotify.max_user_instances: {e}"),
                fix: None,
            };
        }
    };
    let in_use = used.map_or_else(String::new, |u| format!("{u} in use by IMAP connections, "));
    let detail = format!("{in_use}fs.inotify.max_user_instances = {limit}");
    let fix = format!(
        "sysctl -w fs.inotify.max_user_instances={INOTIFY_PACKAGE_LIMIT} and keep it in \
         /etc/sysctl.d/ (the package installs /usr/lib/sysctl.d/60-chatmail-helpers.conf)"
    );
    if used.is_some_and(|u| u.saturating_mul(2) > limit) {
        return Check::fail(
            "inotify",
            format!(
                "{detail}: less than half left; past it IDLE connections are polled every 30 s"
            ),
            fix,
        );
    }
    if limit < INOTIFY_PACKAGE_LIMIT {
        return Check {
            status: Status::Info,
            name: "inotify".into(),
            detail: format!(
                "{detail}: each connected device needs one; raise it before {limit} devices \
                 connect ({fix})"
            ),
            fix: None,
        };
    }
    Check::ok("inotify", detail)
}

/// The `inotify` line from the limit and the processes under `proc`.
pub(super) fn inotify(proc: &Path) -> Check {
    inotify_check(
        read_inotify_limit(&proc.join(INOTIFY_LIMIT_IN_PROC)),
        count_imap_inotify(proc),
    )
}

fn read_inotify_limit(path: &Path) -> Result<u64, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    text.trim()
        .parse()
        .map_err(|e| format!("{:?}: {e}", text.trim()))
}

/// The inotify instances held by Dovecot's `imap` and `imap-hibernate`
/// processes under `proc`; `None` when any of them cannot be read (not
/// root), rather than a count that is too low.
fn count_imap_inotify(proc: &Path) -> Option<u64> {
    let mut count = 0;
    for entry in std::fs::read_dir(proc).ok()?.flatten() {
        let pid_dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(pid_dir.join("comm")) else {
            continue; // not a process, or it just exited
        };
        if !matches!(comm.trim_end(), "imap" | "imap-hibernate") {
            continue;
        }
        let fds = match std::fs::read_dir(pid_dir.join("fd")) {
            Ok(fds) => fds,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|t| t == Path::new("anon_inode:inotify")) {
                count += 1;
            }
        }
    }
    Some(count)
}

/// The free disk and memory lines for the mailboxes directory of `config`,
/// measured as `chatmail auth` measures them.
pub(super) fn measured_resource_checks(opts: &DoctorOptions, config: &Config) -> [Check; 2] {
    let dir = opts.roots.host(&config.mailboxes_dir);
    let measured = SystemMeter::default()
        .measure(&dir)
        .map_err(|e| e.to_string());
    resource_checks(config, &opts.config, &dir, &measured)
}

/// The free disk and memory lines: the account-creation rules of
/// `chatmail auth` ([`rules::check_disk`], [`rules::check_memory`]) applied
/// to what was measured (`dir` is the mailboxes directory on this machine,
/// `ini` the config file to name in the fix). Below a limit the relay keeps
/// working, but every first login of a new address is refused.
pub fn resource_checks(
    config: &Config,
    ini: &Path,
    dir: &Path,
    measured: &Result<Resources, String>,
) -> [Check; 2] {
    let res = match measured {
        Ok(res) => res,
        Err(e) => {
            let fail = |name: &str| {
                Check::fail(
                    name,
                    format!("cannot measure: {e}"),
                    format!(
                        "make /proc/meminfo and {} readable; chatmail auth refuses \
                         new accounts until it can measure them",
                        dir.display()
                    ),
                )
            };
            return [fail("disk"), fail("memory")];
        }
    };
    let disk_limit = format!("min_free_disk_space = {}", config.min_free_disk_space.text);
    let disk = match rules::check_disk(config, res.free_disk) {
        Ok(()) => Check::ok(
            "disk",
            format!(
                "{} free on the file system of {} (new accounts need {disk_limit})",
                bytes(res.free_disk),
                dir.display()
            ),
        ),
        Err(_) => Check::fail(
            "disk",
            format!(
                "{} free on the file system of {}, below {disk_limit}: no new accounts \
                 are created",
                bytes(res.free_disk),
                dir.display()
            ),
            format!(
                "free space there (`df -h {}`; `chatmail expire` removes old mail), \
                 or lower min_free_disk_space in {}",
                dir.display(),
                ini.display()
            ),
        ),
    };
    let memory_limit = format!(
        "min_available_memory = {}",
        config.min_available_memory.text
    );
    let memory = match rules::check_memory(config, res.available_memory) {
        Ok(()) => Check::ok(
            "memory",
            format!(
                "{} available (new accounts need {memory_limit})",
                bytes(res.available_memory)
            ),
        ),
        Err(_) => Check::fail(
            "memory",
            format!(
                "{} available, below {memory_limit}: no new accounts are created",
                bytes(res.available_memory)
            ),
            format!(
                "stop what uses the memory (`ps aux --sort=-rss | head`) or add RAM, \
                 or lower min_available_memory in {}",
                ini.display()
            ),
        ),
    };
    [disk, memory]
}

/// A byte count for people, rounded down so a figure just below a limit
/// never prints as the limit itself.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = n;
    while scaled >= 1024 && unit < UNITS.len() - 1 {
        scaled /= 1024;
        unit += 1;
    }
    if unit == 0 {
        return format!("{n} bytes");
    }
    // One decimal, rounded down: tenths of the unit.
    let tenths = u128::from(n) * 10 / (1u128 << (10 * unit));
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// The `nocreate` line: whether the file that stops account creation is
/// there.
pub(super) fn nocreate_check(opts: &DoctorOptions, config: &Config) -> Check {
    let nocreate = opts.roots.host(&config.nocreate_file);
    Check {
        status: Status::Info,
        name: "nocreate".into(),
        detail: if nocreate.exists() {
            format!(
                "{} exists: no new accounts are created (remove it to allow them)",
                nocreate.display()
            )
        } else {
            format!(
                "{} absent: new accounts are created on first login",
                nocreate.display()
            )
        },
        fix: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_and_memory_against_the_account_creation_limits() {
        // Defaults: min_free_disk_space = 1G, min_available_memory = 200M.
        let config = Config::for_tests("example.org", Path::new("/m"));
        let (ini, dir) = (Path::new("/etc/chatmail/chatmail.ini"), Path::new("/m"));
        const G: u64 = 1 << 30;
        const M: u64 = 1 << 20;
        let cases: &[(u64, u64, Status, Status, &str, &str)] = &[
            (
                100 * G,
                8 * G,
                Status::Ok,
                Status::Ok,
                "100.0 GiB free on the file system of /m (new accounts need \
                 min_free_disk_space = 1G)",
                "8.0 GiB available (new accounts need min_available_memory = 200M)",
            ),
            // Exactly at a limit is enough, as for chatmail auth.
            (
                G,
                200 * M,
                Status::Ok,
                Status::Ok,
                "1.0 GiB free",
                "200.0 MiB available",
            ),
            (
                G - 1,
                200 * M - 1,
                Status::Fail,
                Status::Fail,
                "1023.9 MiB free on the file system of /m, below min_free_disk_space = 1G: \
                 no new accounts are created",
                "199.9 MiB available, below min_available_memory = 200M",
            ),
            (
                0,
                8 * G,
                Status::Fail,
                Status::Ok,
                "0 bytes free",
                "8.0 GiB available",
            ),
            (
                5 * G,
                3 * M / 2,
                Status::Ok,
                Status::Fail,
                "5.0 GiB free",
                "1.5 MiB available",
            ),
        ];
        for &(free_disk, available_memory, disk_status, memory_status, disk, memory) in cases {
            let res = Resources {
                load_1m: 0.0,
                available_memory,
                free_disk,
            };
            let [d, m] = resource_checks(&config, ini, dir, &Ok(res));
            assert_eq!((d.name.as_str(), m.name.as_str()), ("disk", "memory"));
            assert_eq!(d.status, disk_status, "{d:?}");
            assert_eq!(m.status, memory_status, "{m:?}");
            assert!(d.detail.starts_with(disk), "{d:?}");
            assert!(m.detail.starts_with(memory), "{m:?}");
            // The same decision as the account-creation rules.
            assert_eq!(
                d.status == Status::Ok,
                rules::check_disk(&config, free_disk).is_ok()
            );
            assert_eq!(
                m.status == Status::Ok,
                rules::check_memory(&config, available_memory).is_ok()
            );
            for c in [&d, &m] {
                assert_eq!(c.fix.is_some(), c.status == Status::Fail, "{c:?}");
            }
        }
        let [d, _] = resource_checks(
            &config,
            ini,
            dir,
            &Ok(Resources {
                load_1m: 0.0,
                available_memory: 0,
                free_disk: 0,
            }),
        );
        assert!(
            d.fix
                .unwrap()
                .contains("lower min_free_disk_space in /etc/chatmail/chatmail.ini")
        );
        let [d, m] = resource_checks(&config, ini, dir, &Err("no /proc".into()));
        assert_eq!((d.status, m.status), (Status::Fail, Status::Fail));
        assert_eq!(m.detail, "cannot measure: no /proc");
    }

    #[test]
    fn inotify_lines() {
        // (limit, instances in use, verdict, start of the detail)
        type Case = (Result<u64, String>, Option<u64>, Status, &'static str);
        let cases: &[Case] = &[
            (
                Ok(65536),
                Some(10),
                Status::Ok,
                "10 in use by IMAP connections, fs.inotify.max_user_instances = 65536",
            ),
            (
                Ok(65536),
                None,
                Status::Ok,
                "fs.inotify.max_user_instances = 65536",
            ),
            (
                Ok(128),
                Some(3),
                Status::Info,
                "3 in use by IMAP connections, fs.inotify.max_user_instances = 128: each",
            ),
            (Ok(128), Some(64), Status::Info, "64 in use"),
            (
                Ok(128),
                Some(65),
                Status::Fail,
                "65 in use by IMAP connections, fs.inotify.max_user_instances = 128: less than half left",
            ),
            (Ok(65536), Some(40000), Status::Fail, "40000 in use"),
            (
                Ok(128),
                None,
                Status::Info,
                "fs.inotify.max_user_instances = 128: each",
            ),
            (
                Err("denied".into()),
                Some(1),
                Status::Info,
                "cannot read fs.inotify.max_user_instances: denied",
            ),
        ];
        for (limit, used, status, detail) in cases {
            let c = inotify_check(limit.clone(), *used);
            assert_eq!(c.name, "inotify");
            assert_eq!(c.status, *status, "{c:?}");
            assert!(c.detail.starts_with(detail), "{c:?}");
            assert_eq!(c.fix.is_some(), c.status == Status::Fail, "{c:?}");
        }
    }

    #[test]
    fn inotify_instances_are_counted_per_imap_process() {
        let proc = tempfile::tempdir().unwrap();
        let p = proc.path();
        for (pid, comm, fds) in [
            ("10", "imap\n", &["anon_inode:inotify", "socket:[1]"][..]),
            (
                "11",
                "imap-hibernate\n",
                &["anon_inode:inotify", "anon_inode:inotify"][..],
            ),
            ("12", "dovecot\n", &["anon_inode:inotify"][..]),
        ] {
            std::fs::create_dir_all(p.join(pid).join("fd")).unwrap();
            std::fs::write(p.join(pid).join("comm"), comm).unwrap();
            for (i, target) in fds.iter().enumerate() {
                std::os::unix::fs::symlink(target, p.join(pid).join("fd").join(i.to_string()))
                    .unwrap();
            }
        }
        std::fs::write(p.join("uptime"), "1 2\n").unwrap();
        assert_eq!(count_imap_inotify(p), Some(3));
        assert_eq!(count_imap_inotify(&p.join("missing")), None);
        let limit = p.join("max_user_instances");
        std::fs::write(&limit, "128\n").unwrap();
        assert_eq!(read_inotify_limit(&limit), Ok(128));
        std::fs::write(&limit, "x").unwrap();
        assert!(read_inotify_limit(&limit).is_err());
    }
}
