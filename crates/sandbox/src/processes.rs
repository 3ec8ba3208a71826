//! The sandbox's processes: our daemons as children (one per entry of the
//! table of daemons, with its socket, group and metrics port), Postfix and
//! Dovecot started and stopped through their own tools, and waiting for
//! each to be ready.

use std::fs;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chatmail_snippets::daemons::{DAEMONS, Daemon, TRANSPORT_MAP_SOCKET};
use nix::unistd::Group;

use crate::layout::{chown_path, relocate, set_mode};
use crate::ports::{Ports, metrics_port};
use crate::state::Ids;
use crate::{Context, Sandbox, SandboxError};

/// How one of our daemons is started.
#[derive(Debug, Clone)]
pub(crate) struct DaemonStart {
    exe: PathBuf,
    daemon: &'static Daemon,
    uid: u32,
    gid: u32,
    metrics_port: Option<u16>,
    extra: Vec<String>,
}

impl Sandbox {
    /// Starts daemon `name` again after it was killed; an error when it is
    /// none of ours.
    pub(crate) async fn restart_daemon(&mut self, name: &str) -> Result<(), SandboxError> {
        let Some(start) = self.daemons.iter().find(|d| d.daemon.name == name).cloned() else {
            return Err(SandboxError::Startup(format!("{name} was killed")));
        };
        self.children.retain(|(n, _)| *n != name);
        eprintln!("chatmail {name} was killed; starting it again");
        self.spawn_daemon(&start).await
    }

    /// Starts each of our daemons of the table, as vmail, in the group of
    /// its socket's clients.
    pub(crate) async fn spawn_daemons(
        &mut self,
        exe: &Path,
        vmail: Ids,
        metrics_base: u16,
        peers: &[chatmail_mxdeliv::routes::Peer],
    ) -> Result<(), SandboxError> {
        for daemon in DAEMONS {
            let gid = Group::from_name(daemon.group)
                .ok()
                .flatten()
                .map_or(vmail.gid, |g| g.gid.as_raw());
            let st = self.layout.state.display();
            // The HTTPS transport's own socketmap and Postfix's services in
            // public/; mail only to the peers.
            let extra: Vec<String> = match daemon.name {
                "transport" => {
                    let map = relocate(TRANSPORT_MAP_SOCKET, &self.layout.state, Path::new("/"));
                    let mut args = vec![
                        format!("--map-listen=unix:{map}"),
                        format!("--reinject=unix:{st}/postfix/queue/public/chatmail-reinject"),
                        "--peers-only".to_owned(),
                    ];
                    args.extend(peers.iter().map(|p| format!("--peer={p}")));
                    args
                }
                "mxdeliv" => vec![format!("--postfix=unix:{st}/postfix/queue/public/mxdeliv")],
                _ => Vec::new(),
            };
            let start = DaemonStart {
                exe: exe.to_owned(),
                daemon,
                uid: vmail.uid,
                gid,
                metrics_port: metrics_port(metrics_base, daemon),
                extra,
            };
            self.spawn_daemon(&start).await?;
            self.daemons.push(start);
        }

        Ok(())
    }

    /// Starts Dovecot, then Postfix, and waits until both listen.
    pub(crate) async fn start_mail_servers(&mut self, ports: &Ports) -> Result<(), SandboxError> {
        let l = &self.layout;
        self.dovecot_started = true;
        run_logged(
            self.tool("/usr/sbin/dovecot")
                .arg("-c")
                .arg(l.dovecot_conf()),
            &l.log("dovecot-start"),
        )?;
        self.postfix_started = true;
        run_logged(
            self.tool("/usr/sbin/postfix")
                .arg("-c")
                .arg(l.postfix_etc())
                .arg("start"),
            &l.log("postfix-start"),
        )?;
        for (what, port) in [
            ("Dovecot IMAP", ports.imaps),
            ("Dovecot IMAP", ports.imap),
            ("Postfix SMTP", ports.smtp),
            ("Postfix submission", ports.submission),
            ("Postfix submissions", ports.submissions),
        ] {
            wait_for(&format!("{what} on port {port}"), || {
                TcpStream::connect(("127.0.0.1", port)).is_ok()
            })
            .await?;
        }

        Ok(())
    }

    /// A command of the relay's Postfix or Dovecot: the machine's, or the
    /// Debian root's through its wrapper.
    pub(crate) fn tool(&self, program: &str) -> Command {
        match &self.root_exec {
            Some(exec) => {
                let mut cmd = Command::new(exec);
                cmd.arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// The first line a tool prints, e.g. a version.
    pub(crate) fn tool_output(&self, program: &str, args: &[&str]) -> Result<String, SandboxError> {
        let out = self
            .tool(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ctx(|| format!("running {program}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().next().map(str::trim) {
            Some(line) if out.status.success() && !line.is_empty() => Ok(line.to_owned()),
            _ => Err(SandboxError::Startup(format!(
                "{program} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
        }
    }

    pub(crate) async fn spawn_daemon(&mut self, start: &DaemonStart) -> Result<(), SandboxError> {
        let DaemonStart {
            exe,
            daemon,
            uid,
            gid,
            metrics_port,
            extra,
        } = start;
        let (uid, gid) = (*uid, *gid);
        let name = daemon.name;
        let socket = self.layout.socket(daemon);
        let dir = socket.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
        chown_path(dir, uid, gid)?;
        set_mode(dir, 0o750)?;
        let log = open_log(&self.layout.log(name))?;
        // mxdeliv and transport also need Postfix's postdrop group (their
        // smtpd services are in public/): setpriv sets supplementary groups.
        let postdrop = Group::from_name("postdrop")
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw());
        let mut cmd = match postdrop.filter(|_| name == "mxdeliv" || name == "transport") {
            Some(postdrop) => {
                let mut c = tokio::process::Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg(format!("--groups={postdrop}"))
                    .arg("--")
                    .arg(exe);
                c
            }
            None => {
                let mut c = tokio::process::Command::new(exe);
                c.uid(uid).gid(gid);
                c
            }
        };
        let child = cmd
            .arg(name)
            .arg("--config")
            .arg(self.layout.ini())
            .arg("--listen")
            .arg(format!("unix:{}", socket.display()))
            .args(metrics_port.map(|p| format!("--metrics-listen=inet:127.0.0.1:{p}")))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .ctx(|| format!("starting chatmail {name}"))?;
        self.children.push((name, child));
        let child = &mut self.children.last_mut().expect("just pushed").1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(SandboxError::Startup(format!(
                    "chatmail {name} exited ({status}); see {}",
                    self.layout.log(name).display()
                )));
            }
            if Instant::now() > deadline {
                return Err(SandboxError::Startup(format!(
                    "chatmail {name} did not create {}",
                    socket.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    pub(crate) async fn any_child_exit(&mut self) -> (&'static str, std::process::ExitStatus) {
        loop {
            for (name, child) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    return (*name, status);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Stops Postfix, Dovecot and our daemons; tolerant of parts that never
    /// started.
    pub async fn stop(&mut self) {
        let l = &self.layout;
        if self.postfix_started && l.p("postfix/queue/pid/master.pid").exists() {
            let _ = run_logged(
                self.tool("/usr/sbin/postfix")
                    .arg("-c")
                    .arg(l.postfix_etc())
                    .arg("stop"),
                &l.log("postfix-stop"),
            );
        }
        let dovecot_pid = fs::read_to_string(l.dovecot_pid())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|_| self.dovecot_started);
        if let Some(pid) = dovecot_pid {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while nix::sys::signal::kill(pid, None).is_ok() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        for (_, child) in &mut self.children {
            if let Some(pid) = child.id() {
                let pid = nix::unistd::Pid::from_raw(pid as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        self.children.clear();
        self.postfix_started = false;
        self.dovecot_started = false;
    }
}

pub(crate) fn open_log(path: &Path) -> Result<fs::File, SandboxError> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ctx(|| format!("opening {}", path.display()))
}

/// Runs a command to completion with its output in a log file: Postfix and
/// Dovecot daemonize, and their children would hold a pipe open forever.
pub(crate) fn run_logged(cmd: &mut Command, log: &Path) -> Result<(), SandboxError> {
    let out = open_log(log)?;
    let err = out.try_clone().ctx(|| "log file".into())?;
    let command = format!("{cmd:?}").replace('"', "");
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .ctx(|| format!("running {command}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(SandboxError::Command {
            command,
            status: status.to_string(),
            log: log.display().to_string(),
        })
    }
}

pub(crate) async fn wait_for(
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), SandboxError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if Instant::now() > deadline {
            return Err(SandboxError::Startup(format!(
                "timed out waiting for {what}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
