//! Where a configured path lives on this machine (`--etc`), for `setup` and
//! `doctor`, and reading a file there that may be absent.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Maps the absolute paths written in configuration files to the places they
/// are read from or written to on this machine.
///
/// With `--etc DIR`, `setup` writes a self-contained tree: every path under
/// `/etc` that it writes into a file names DIR's copy ([`Roots::rewrite_etc_paths`]),
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
    pub fn rewrite_etc_paths(&self, text: &str) -> String {
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
    fn only_etc_paths_are_rewritten() {
        let r = Roots {
            etc: "/tmp/e/".into(),
            root: "/".into(),
        };
        assert_eq!(
            r.rewrite_etc_paths(
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
            assert_eq!(r.rewrite_etc_paths(unchanged), unchanged);
        }
        assert_eq!(
            Roots::default().rewrite_etc_paths("a = /etc/x\n"),
            "a = /etc/x\n"
        );
    }
}
