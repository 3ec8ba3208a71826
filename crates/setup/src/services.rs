//! The last step of `chatmail setup`: every service brought to the state the
//! files describe (docs/design.md, "Setup converges").
//!
//! Each service's configuration is reduced to a fingerprint: the SHA-256 of
//! the files it reads, as `setup` planned them. Under systemd, a service is
//! restarted or reloaded when its fingerprint differs from the one recorded
//! after its last successful restart or reload (in [`APPLIED_DIR`]), and
//! started when it does not run; whether this run wrote a file does not
//! matter. So a run that failed half-way is finished by the next one, even
//! though that one finds every file already written.
//!
//! Every step runs, whatever failed before it: a failure is reported with
//! its cause (the command's error and the unit's last journal lines) and
//! makes the run incomplete, but the steps after it still run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// Where the fingerprint of each service's configuration is recorded once
/// the service runs with it.
pub const APPLIED_DIR: &str = "/var/lib/chatmail-helpers/applied";

/// Who reads a file: the chatmail daemons, Postfix, Dovecot or nginx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reader {
    /// Every `chatmail-*` daemon (`chatmail.ini`, their unit drop-ins).
    Daemons,
    /// `chatmail milter` alone (the DKIM key).
    Milter,
    /// Postfix.
    Postfix,
    /// Dovecot.
    Dovecot,
    /// nginx.
    Nginx,
}

impl Reader {
    /// The reader of a planned file, from the service named in the plan.
    pub fn of_owner(owner: &str) -> Option<Reader> {
        match owner {
            "postfix" => Some(Reader::Postfix),
            "dovecot" => Some(Reader::Dovecot),
            "nginx" => Some(Reader::Nginx),
            "chatmail-milter" => Some(Reader::Milter),
            "chatmail" => Some(Reader::Daemons),
            _ => None,
        }
    }
}

/// The fingerprints of the configuration each reader has on disk.
#[derive(Debug, Default, Clone)]
pub struct Fingerprints {
    hashers: BTreeMap<Reader, Sha256>,
}

impl Fingerprints {
    /// Counts `text`, the contents of `path`, into `reader`'s fingerprint.
    pub fn add(&mut self, reader: Reader, path: &Path, text: &[u8]) {
        let h = self.hashers.entry(reader).or_default();
        // Lengths first, so that no two different file lists hash alike.
        let path = path.as_os_str().as_encoded_bytes();
        h.update((path.len() as u64).to_le_bytes());
        h.update(path);
        h.update((text.len() as u64).to_le_bytes());
        h.update(text);
    }

    /// Counts the file at `path`, when it can be read (a certificate, a
    /// key), into the fingerprint of each of `readers`.
    pub fn add_file(&mut self, readers: &[Reader], path: &Path) {
        let text = std::fs::read(path).unwrap_or_default();
        for r in readers {
            self.add(*r, path, &text);
        }
    }

    /// The fingerprint of what `unit` reads.
    pub fn of(&self, unit: &str) -> String {
        let mut h = Sha256::new();
        for r in readers_of(unit) {
            if let Some(part) = self.hashers.get(r) {
                h.update(part.clone().finalize());
            }
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// True when `reader`'s configuration is managed at all.
    pub fn has(&self, reader: Reader) -> bool {
        self.hashers.contains_key(&reader)
    }
}

const DOVECOT: &str = "dovecot.service";
const POSTFIX: &str = "postfix.service";
const NGINX: &str = "nginx.service";

/// What `unit` reads.
pub fn readers_of(unit: &str) -> &'static [Reader] {
    match unit {
        DOVECOT => &[Reader::Dovecot],
        POSTFIX => &[Reader::Postfix],
        NGINX => &[Reader::Nginx],
        u if u == chatmail_snippets::daemons::MILTER.unit => &[Reader::Daemons, Reader::Milter],
        _ => &[Reader::Daemons],
    }
}

/// One `systemctl` call, and what it makes true when it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The command line.
    pub command: String,
    /// The unit whose journal explains a failure.
    pub unit: Option<String>,
    /// The service and fingerprint to record after success.
    pub applied: Option<(String, String)>,
}

impl Step {
    fn new(command: String) -> Step {
        Step {
            command,
            unit: None,
            applied: None,
        }
    }
}

/// What to do with a service whose configuration may have changed.
fn bring_up(service: &str, changed: bool, reload: bool) -> String {
    match (changed, reload) {
        (false, _) => format!("systemctl start {service}"),
        // Postfix re-reads main.cf and master.cf on reload, nginx its
        // server blocks; a stopped one is started.
        (true, true) => format!("systemctl reload-or-restart {service}"),
        // Dovecot re-creates its listeners only on a restart, and the
        // daemons read their config once.
        (true, false) => format!("systemctl restart {service}"),
    }
}

/// The steps that bring every service to `fingerprints`: `units` (the
/// daemons' and the timers') enabled and running, then Dovecot, Postfix and
/// nginx. `applied` says which fingerprint a service last ran with (`None`:
/// unknown, so it must be restarted).
pub fn plan(
    units: &[&str],
    fingerprints: &Fingerprints,
    fcgiwrap: bool,
    applied: &dyn Fn(&str) -> Option<String>,
) -> Vec<Step> {
    let mut steps = vec![Step::new("systemctl daemon-reload".into())];
    let service = |steps: &mut Vec<Step>, unit: &str, reload: bool| {
        let fp = fingerprints.of(unit);
        let changed = applied(unit).as_deref() != Some(&fp);
        steps.push(Step {
            command: bring_up(unit, changed, reload),
            unit: Some(unit.to_owned()),
            applied: Some((unit.to_owned(), fp)),
        });
    };
    for unit in units {
        if unit.ends_with(".timer") {
            steps.push(Step {
                command: format!("systemctl enable --now {unit}"),
                unit: Some((*unit).to_owned()),
                applied: None,
            });
            continue;
        }
        steps.push(Step {
            command: format!("systemctl enable {unit}"),
            unit: None,
            applied: None,
        });
        service(&mut steps, unit, false);
    }
    service(&mut steps, DOVECOT, false);
    service(&mut steps, POSTFIX, true);
    if fingerprints.has(Reader::Nginx) {
        if fcgiwrap {
            steps.push(Step {
                command: "systemctl enable --now fcgiwrap.socket".into(),
                unit: Some("fcgiwrap.socket".into()),
                applied: None,
            });
        }
        service(&mut steps, NGINX, true);
    }
    steps
}

/// The fingerprint `service` last ran with, from [`APPLIED_DIR`] under
/// `root`.
pub fn applied_in(root: &Path) -> impl Fn(&str) -> Option<String> {
    let dir = root.join(APPLIED_DIR.trim_start_matches('/'));
    move |service| {
        let text = std::fs::read_to_string(dir.join(service)).ok()?;
        Some(text.trim().to_owned())
    }
}

/// Runs every step, printing each; returns the failures, each with its
/// cause. A service's fingerprint is recorded only when its step succeeded.
pub fn run(steps: &[Step], root: &Path, out: &mut dyn Write) -> Vec<String> {
    let dir: PathBuf = root.join(APPLIED_DIR.trim_start_matches('/'));
    let mut failures = Vec::new();
    for step in steps {
        let _ = writeln!(out, "running {}", step.command);
        match run_command(&step.command) {
            Ok(()) => {
                if let Some((service, fp)) = &step.applied
                    && let Err(e) = chatmail_mailbox::write_atomic_keeping_mode(
                        &dir.join(service),
                        format!("{fp}\n").as_bytes(),
                        0o644,
                    )
                {
                    // Only costs a restart on the next run.
                    let _ = writeln!(
                        out,
                        "warning: cannot record {service}'s state in {}: {e}",
                        dir.display()
                    );
                }
            }
            Err(detail) => {
                let mut why = format!("`{}` failed: {detail}", step.command);
                if let Some(unit) = &step.unit {
                    for line in journal_tail(unit) {
                        why.push_str(&format!("\n    {line}"));
                    }
                }
                let _ = writeln!(out, "error: {why}");
                failures.push(why);
            }
        }
    }
    failures
}

fn run_command(command_line: &str) -> Result<(), String> {
    let mut words = command_line.split_whitespace();
    let mut cmd = Command::new(words.next().unwrap_or_default());
    cmd.args(words);
    command_status(&mut cmd)
}

/// Runs `cmd`; on failure, its exit status and stderr (or why it could not
/// start).
pub(crate) fn command_status(cmd: &mut Command) -> Result<(), String> {
    let output = cmd.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The unit's last few journal lines: systemctl's own message only says
/// where to look.
fn journal_tail(unit: &str) -> Vec<String> {
    let Ok(output) = Command::new("journalctl")
        .args(["--no-pager", "-o", "cat", "-n", "6", "-u", unit])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("{unit}: {l}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprints() -> Fingerprints {
        let mut f = Fingerprints::default();
        f.add(
            Reader::Daemons,
            Path::new("/etc/chatmail/chatmail.ini"),
            b"a",
        );
        f.add(Reader::Postfix, Path::new("/etc/postfix/main.cf"), b"b");
        f.add(
            Reader::Dovecot,
            Path::new("/etc/dovecot/dovecot.conf"),
            b"c",
        );
        f.add(Reader::Nginx, Path::new("/etc/nginx/sites-enabled/x"), b"d");
        f.add(Reader::Milter, Path::new("/etc/dkimkeys/k"), b"e");
        f
    }

    fn commands(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.command.as_str()).collect()
    }

    const UNITS: &[&str] = &[
        "chatmail-auth.service",
        "chatmail-milter.service",
        "chatmail-expire.timer",
    ];

    #[test]
    fn nothing_applied_yet_restarts_everything() {
        let steps = plan(UNITS, &fingerprints(), true, &|_| None);
        assert_eq!(
            commands(&steps),
            [
                "systemctl daemon-reload",
                "systemctl enable chatmail-auth.service",
                "systemctl restart chatmail-auth.service",
                "systemctl enable chatmail-milter.service",
                "systemctl restart chatmail-milter.service",
                "systemctl enable --now chatmail-expire.timer",
                "systemctl restart dovecot.service",
                "systemctl reload-or-restart postfix.service",
                "systemctl enable --now fcgiwrap.socket",
                "systemctl reload-or-restart nginx.service",
            ]
        );
    }

    #[test]
    fn applied_fingerprints_only_start_what_is_stopped() {
        let f = fingerprints();
        let first = plan(UNITS, &f, true, &|_| None);
        let recorded: BTreeMap<String, String> =
            first.iter().filter_map(|s| s.applied.clone()).collect();
        let steps = plan(UNITS, &f, true, &|s| recorded.get(s).cloned());
        assert_eq!(
            commands(&steps),
            [
                "systemctl daemon-reload",
                "systemctl enable chatmail-auth.service",
                "systemctl start chatmail-auth.service",
                "systemctl enable chatmail-milter.service",
                "systemctl start chatmail-milter.service",
                "systemctl enable --now chatmail-expire.timer",
                "systemctl start dovecot.service",
                "systemctl start postfix.service",
                "systemctl enable --now fcgiwrap.socket",
                "systemctl start nginx.service",
            ]
        );
    }

    #[test]
    fn a_change_reaches_exactly_its_readers() {
        let f = fingerprints();
        let recorded: BTreeMap<String, String> = plan(UNITS, &f, false, &|_| None)
            .into_iter()
            .filter_map(|s| s.applied)
            .collect();
        let cases: &[(Reader, &[&str])] = &[
            (
                Reader::Daemons,
                &[
                    "systemctl restart chatmail-auth.service",
                    "systemctl restart chatmail-milter.service",
                ],
            ),
            (
                Reader::Milter,
                &["systemctl restart chatmail-milter.service"],
            ),
            (
                Reader::Postfix,
                &["systemctl reload-or-restart postfix.service"],
            ),
            (Reader::Dovecot, &["systemctl restart dovecot.service"]),
            (
                Reader::Nginx,
                &["systemctl reload-or-restart nginx.service"],
            ),
        ];
        for (reader, expected) in cases {
            let mut g = f.clone();
            g.add(*reader, Path::new("/changed"), b"x");
            let steps = plan(UNITS, &g, false, &|s| recorded.get(s).cloned());
            let acting: Vec<&str> = commands(&steps)
                .into_iter()
                .filter(|c| c.contains("restart"))
                .collect();
            assert_eq!(acting, *expected, "{reader:?}");
        }
    }

    #[test]
    fn no_nginx_no_web_steps() {
        let mut f = Fingerprints::default();
        f.add(Reader::Postfix, Path::new("/etc/postfix/main.cf"), b"b");
        let steps = plan(&[], &f, true, &|_| None);
        assert!(
            !commands(&steps)
                .iter()
                .any(|c| c.contains("nginx") || c.contains("fcgiwrap"))
        );
    }

    #[test]
    fn a_failing_step_does_not_stop_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let steps = vec![
            Step {
                command: "false".into(),
                unit: None,
                applied: Some(("a.service".into(), "1".into())),
            },
            Step {
                command: "true".into(),
                unit: None,
                applied: Some(("b.service".into(), "2".into())),
            },
        ];
        let mut out = Vec::new();
        let failures = run(&steps, dir.path(), &mut out);
        assert_eq!(failures, ["`false` failed: exit status: 1: "]);
        let applied = applied_in(dir.path());
        assert_eq!(applied("a.service"), None);
        assert_eq!(applied("b.service").as_deref(), Some("2"));
        let out = String::from_utf8(out).unwrap();
        assert!(out.contains("running true"), "{out}");
    }
}
