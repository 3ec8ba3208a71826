//! Measuring the machine before creating an account: load average and
//! available memory from Linux `/proc`, free disk space by `statvfs(2)`.
//! Behind a trait so tests can pretend the machine is loaded.

use std::io;
use std::path::{Path, PathBuf};

use crate::rules::Resources;

/// Something that can tell how loaded the machine is.
pub trait ResourceMeter: Send + Sync + 'static {
    /// Measures the machine; `mailboxes_dir` is where new accounts go.
    ///
    /// # Errors
    /// Any I/O or parse failure; the caller refuses creation then.
    fn measure(&self, mailboxes_dir: &Path) -> io::Result<Resources>;
}

/// The real machine, read from `proc_dir` (normally `/proc`).
#[derive(Debug, Clone)]
pub struct SystemMeter {
    proc_dir: PathBuf,
}

impl Default for SystemMeter {
    fn default() -> Self {
        SystemMeter {
            proc_dir: PathBuf::from("/proc"),
        }
    }
}

impl ResourceMeter for SystemMeter {
    fn measure(&self, mailboxes_dir: &Path) -> io::Result<Resources> {
        let loadavg = std::fs::read_to_string(self.proc_dir.join("loadavg"))?;
        let meminfo = std::fs::read_to_string(self.proc_dir.join("meminfo"))?;
        // The mailboxes directory may not exist yet on a fresh relay; its
        // nearest existing ancestor is on the same file system in practice.
        let mut dir = mailboxes_dir;
        while !dir.exists() {
            dir = dir.parent().unwrap_or(Path::new("/"));
        }
        let vfs = nix::sys::statvfs::statvfs(dir)?;
        Ok(Resources {
            load_1m: parse_loadavg(&loadavg).ok_or_else(|| bad("/proc/loadavg"))?,
            available_memory: parse_mem_available(&meminfo)
                .ok_or_else(|| bad("MemAvailable in /proc/meminfo"))?,
            free_disk: vfs.blocks_available() * vfs.fragment_size(),
        })
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {what}"))
}

fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

fn parse_mem_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        assert_eq!(parse_loadavg("0.42 0.30 0.20 1/234 5678\n"), Some(0.42));
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(parse_loadavg("x 1 2"), None);
        let meminfo = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(parse_mem_available(meminfo), Some(2048 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn measures_a_fake_proc() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("loadavg"), "7.50 1 1 1/1 1\n").unwrap();
        std::fs::write(tmp.path().join("meminfo"), "MemAvailable: 10 kB\n").unwrap();
        let meter = SystemMeter {
            proc_dir: tmp.path().to_path_buf(),
        };
        let res = meter.measure(&tmp.path().join("not/yet/there")).unwrap();
        assert_eq!(res.load_1m, 7.5);
        assert_eq!(res.available_memory, 10240);
        assert!(res.free_disk > 0);
    }

    #[test]
    fn measures_this_machine() {
        let res = SystemMeter::default().measure(Path::new("/")).unwrap();
        assert!(res.load_1m >= 0.0);
        assert!(res.available_memory > 0);
    }
}
