//! File plumbing shared by `setup` and `doctor`: where a configured path lives
//! on this machine (`--etc`), atomic writes that keep a file's mode and owner,
//! and the line diff `--dry-run` prints.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Maps the absolute paths written in configuration files to the places they
/// are read from or written to on this machine.
///
/// With `--etc DIR`, `setup` writes a self-contained tree: every path under
/// `/etc` that it writes into a file names DIR's copy ([`Roots::relocate`]),
/// so Postfix and Dovecot started from DIR read DIR's certificate, maps and
/// scripts, never the machine's. Paths read back from a config go through
/// [`Roots::host`], which leaves paths already inside DIR alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// What `/etc` is (`/etc` itself unless `--etc DIR`).
    pub etc: PathBuf,
    /// What `/` is for every other absolute path (sockets, mailboxes).
    pub root: PathBuf,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            etc: "/etc".into(),
            root: "/".into(),
        }
    }
}

impl Roots {
    /// Where the configured absolute path `p` is on this machine; relative
    /// paths, and paths already inside the etc directory, are returned
    /// unchanged.
    pub fn host(&self, p: &Path) -> PathBuf {
        if self.etc != Path::new("/etc") && p.starts_with(&self.etc) {
            p.to_owned()
        } else if let Ok(rest) = p.strip_prefix("/etc") {
            self.etc.join(rest)
        } else if let Ok(rest) = p.strip_prefix("/") {
            self.root.join(rest)
        } else {
            p.to_owned()
        }
    }

    /// `text` (a config file or a setting's value) with every absolute path
    /// under `/etc/` rewritten into the etc directory, for files written
    /// with `--etc`. A path starts at the beginning of the text or after a
    /// blank, `=`, `:`, `<`, `,` or a quote, as in `regexp:/etc/...`,
    /// `ssl_cert = </etc/...` and `lua:file=/etc/...`.
    pub fn relocate(&self, text: &str) -> String {
        if self.etc == Path::new("/etc") {
            return text.to_owned();
        }
        let etc = self.etc.display().to_string();
        let etc = etc.trim_end_matches('/');
        let mut out = String::with_capacity(text.len() + 64);
        let mut rest = text;
        let mut prev: Option<char> = None;
        while let Some(i) = rest.find("/etc/") {
            let before = rest[..i].chars().next_back().or(prev);
            let boundary = before.is_none_or(|c| {
                c.is_whitespace() || matches!(c, '=' | ':' | '<' | ',' | '"' | '\'')
            });
            out.push_str(&rest[..i]);
            if boundary {
                out.push_str(etc);
                out.push('/');
            } else {
                out.push_str("/etc/");
            }
            prev = Some('/');
            rest = &rest[i + "/etc/".len()..];
        }
        out.push_str(rest);
        out
    }
}

/// Replaces `path` with `text` atomically: a temp file in the same directory,
/// fsynced, then renamed over the original, so a crash leaves either the old
/// or the new file and Postfix/Dovecot never read half a config.
///
/// An existing file's mode and owner are kept (operators tighten them, and
/// key files must stay private); a new file gets `new_mode` and the owner of
/// whoever runs us. Missing parent directories are created (mode 0755).
///
/// # Errors
/// Any I/O error, including not being allowed to change the owner.
pub fn write_atomic(path: &Path, text: &[u8], new_mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = temp_path(dir);
    let written = fill_temp(&tmp, path, text, new_mode).and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is only durable once the directory is synced too.
    fs::File::open(dir)?.sync_all()
}

/// A dot-file next to the target, unique within this process (setup runs
/// once at a time; `create_new` refuses any name that exists anyway).
fn temp_path(dir: &Path) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(".chatmail-setup.{}.{n}.tmp", std::process::id()))
}

/// Writes `text` into the new file `tmp` (mode 0600 until its final mode
/// and owner, those of `path` if it exists, are set) and syncs it.
fn fill_temp(tmp: &Path, path: &Path, text: &[u8], new_mode: u32) -> io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    file.write_all(text)?;
    match fs::metadata(path) {
        Ok(meta) => {
            file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            let (uid, gid) = (meta.uid(), meta.gid());
            let cur = file.metadata()?;
            if (cur.uid(), cur.gid()) != (uid, gid) {
                std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            file.set_permissions(fs::Permissions::from_mode(new_mode))?;
        }
        Err(e) => return Err(e),
    }
    file.sync_all()
}

/// Reads a text file; `None` when it does not exist.
///
/// # Errors
/// Any I/O error other than the file being absent, and invalid UTF-8.
pub fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Same,
    Del,
    Add,
}

/// A unified diff (3 lines of context) from `old` to `new`, labelled with
/// `name`; empty when the texts are equal. A missing old file diffs against
/// `/dev/null` so the output reads like `diff -u`'s.
pub fn unified_diff(name: &str, old: Option<&str>, new: &str) -> String {
    let a: Vec<&str> = old.unwrap_or("").lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if old == Some(new) {
        return String::new();
    }
    // Plain LCS table: config files are a few hundred lines, so O(n·m) is
    // instant and the output is minimal.
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if a[i] == b[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    let mut ops = Vec::with_capacity(n + m);
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((Op::Same, i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            // Deletions first on a tie, as diff -u prints them.
            ops.push((Op::Del, i, j));
            i += 1;
        } else {
            ops.push((Op::Add, i, j));
            j += 1;
        }
    }
    let mut out = match old {
        Some(_) => format!("--- {name}\n+++ {name} (new)\n"),
        None => format!("--- /dev/null\n+++ {name}\n"),
    };
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != Op::Same).collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let a_len = hunk.iter().filter(|o| o.0 != Op::Add).count();
        let b_len = hunk.iter().filter(|o| o.0 != Op::Del).count();
        let (a0, b0) = (hunk[0].1, hunk[0].2);
        let first = |start: usize, len: usize| if len == 0 { start } else { start + 1 };
        out.push_str(&format!(
            "@@ -{},{a_len} +{},{b_len} @@\n",
            first(a0, a_len),
            first(b0, b_len)
        ));
        for &(op, i, j) in hunk {
            match op {
                Op::Same => out.push_str(&format!(" {}\n", a[i])),
                Op::Del => out.push_str(&format!("-{}\n", a[i])),
                Op::Add => out.push_str(&format!("+{}\n", b[j])),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_map_etc_and_the_rest() {
        let r = Roots {
            etc: "/tmp/e".into(),
            root: "/tmp/r".into(),
        };
        assert_eq!(
            r.host(Path::new("/etc/postfix/main.cf")),
            Path::new("/tmp/e/postfix/main.cf")
        );
        assert_eq!(
            r.host(Path::new("/run/x.sock")),
            Path::new("/tmp/r/run/x.sock")
        );
        assert_eq!(r.host(Path::new("/etcetera")), Path::new("/tmp/r/etcetera"));
        assert_eq!(r.host(Path::new("rel")), Path::new("rel"));
        assert_eq!(
            r.host(Path::new("/tmp/e/ssl/x.pem")),
            Path::new("/tmp/e/ssl/x.pem"),
            "already inside the etc directory"
        );
    }

    #[test]
    fn relocate_rewrites_etc_paths_only() {
        let r = Roots {
            etc: "/tmp/e/".into(),
            root: "/".into(),
        };
        assert_eq!(
            r.relocate(
                "a = regexp:/etc/postfix/m\nssl_cert = </etc/ssl/c.pem\n\
                 d = lua:file=/etc/dovecot/p.lua\n/etc/x /etc/y,/etc/z\n"
            ),
            "a = regexp:/tmp/e/postfix/m\nssl_cert = </tmp/e/ssl/c.pem\n\
             d = lua:file=/tmp/e/dovecot/p.lua\n/tmp/e/x /tmp/e/y,/tmp/e/z\n"
        );
        for unchanged in [
            "/run/chatmail-auth/auth.socket",
            "/usr/etc/x",
            "/etcetera/x",
            "unix:private/auth",
            "x/etc/y",
        ] {
            assert_eq!(r.relocate(unchanged), unchanged);
        }
        assert_eq!(Roots::default().relocate("a = /etc/x\n"), "a = /etc/x\n");
    }

    #[test]
    fn diff_shows_changed_lines_with_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n";
        let new = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n";
        let d = unified_diff("f", Some(old), new);
        assert_eq!(
            d,
            "--- f\n+++ f (new)\n@@ -2,9 +2,10 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n 9\n 10\n+11\n"
        );
        assert_eq!(unified_diff("f", Some(old), old), "");
    }

    #[test]
    fn diff_of_a_new_file_adds_everything() {
        assert_eq!(
            unified_diff("f", None, "a\nb\n"),
            "--- /dev/null\n+++ f\n@@ -0,0 +1,2 @@\n+a\n+b\n"
        );
    }

    #[test]
    fn atomic_write_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        fs::write(&p, "old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"new", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        let q = dir.path().join("sub/y");
        write_atomic(&q, b"y", 0o600).unwrap();
        assert_eq!(fs::metadata(&q).unwrap().mode() & 0o777, 0o600);
    }
}
