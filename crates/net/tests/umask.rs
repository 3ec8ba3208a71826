//! A Unix socket is never connectable by other users, not even for a moment
//! between its creation and its chmod, whatever the umask of the caller.
//! Alone in its own test binary: the umask is per process.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chatmail_net::{ListenAddr, Listener};

/// Connects to argv[1] in a loop until argv[2] exists; prints successes and attempts.
const PROBE: &str = r#"
import os, socket, sys
path, stop = sys.argv[1], sys.argv[2]
ok = tries = 0
print("ready", flush=True)
while not os.path.exists(stop):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        ok += 1
    except OSError:
        pass
    s.close()
    tries += 1
print(ok, tries, flush=True)
"#;

const NOBODY: u32 = 65534;

/// Kills the probe however the test ends.
struct ChildGuard(std::process::Child);

impl ChildGuard {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_are_never_open_to_others_under_umask_000() {
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let dir = tempfile::tempdir().unwrap();
    // Only the socket's own mode may keep others out.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("d.sock");
    let stop = dir.path().join("stop");

    // Watches the path as fast as it can and remembers any mode but 0660.
    let done = Arc::new(AtomicBool::new(false));
    let started = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (path, done, started) = (path.clone(), Arc::clone(&done), Arc::clone(&started));
        std::thread::spawn(move || {
            started.store(true, Ordering::Release);
            let mut bad = Vec::new();
            let mut seen = 0u64;
            while !done.load(Ordering::Relaxed) {
                if let Ok(m) = std::fs::symlink_metadata(&path) {
                    seen += 1;
                    let mode = m.permissions().mode() & 0o777;
                    if m.file_type().is_socket() && mode != 0o660 {
                        bad.push(mode);
                    }
                }
            }
            (bad, seen)
        })
    };

    // Another user trying to connect all the while (needs root to switch user).
    let root = nix::unistd::geteuid().is_root();
    let mut probe = if root {
        let mut child = Command::new("python3")
            .args(["-c", PROBE])
            .arg(&path)
            .arg(&stop)
            .uid(NOBODY)
            .gid(NOBODY)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        Some((ChildGuard(child), out))
    } else {
        eprintln!("not root: skipping the connect attempts of another user");
        None
    };

    while !started.load(Ordering::Acquire) {
        std::thread::yield_now();
    }
    let addr = ListenAddr::Unix(path.clone());
    for _ in 0..500 {
        let listener = Listener::bind(&addr).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        drop(listener);
        std::fs::remove_file(&path).unwrap();
    }

    done.store(true, Ordering::Relaxed);
    let (bad, seen) = watcher.join().unwrap();
    let probed = probe.take().map(|(mut child, mut out)| {
        std::fs::write(&stop, b"").unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        line
    });
    assert!(seen > 0, "the watcher never saw the socket");
    assert!(
        bad.is_empty(),
        "socket seen {} times with a mode other than 0660, e.g. {:o}",
        bad.len(),
        bad[0]
    );
    if let Some(line) = probed {
        let (ok, tries) = line.trim().split_once(' ').unwrap();
        assert!(tries.parse::<u64>().unwrap() > 0, "{line}");
        assert_eq!(ok, "0", "another user connected: {line}");
    }
    // Nothing but the socket's own directory entry was ever left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["stop"]);
}
