//! Listening sockets for the chatmail helper daemons.
//!
//! Postfix and Dovecot reach our daemons either over a Unix socket or over
//! TCP. This crate parses the listen address as it appears in our config
//! (`unix:/run/x.sock`, `inet:127.0.0.1:10025`, `inet:[::1]:25`), binds it
//! (replacing a stale Unix socket left behind by a crashed daemon, but never
//! a live one or a non-socket file), accepts connections as one [`Stream`]
//! type, and offers [`shutdown_signal`] for a clean SIGTERM/SIGINT exit.
//!
//! A Unix socket is never connectable by others, whatever the umask: it is
//! bound inside a fresh directory of mode 0700, set to mode 0660 there, and
//! only then renamed to its path. The number of connections served at once
//! is kept below the process's file descriptor limit (see [`FD_RESERVE`]),
//! so running out of descriptors never decides an answer. [`lines`] holds
//! the line framing shared by the line-based protocol servers.
//!
//! This crate speaks no protocol: it must not depend on any protocol or
//! daemon crate.

pub mod lines;

use std::fmt;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

mod open;
pub use open::{Counted, OpenConnection, open_connections};

/// Where a daemon listens, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// `unix:<path>`: a Unix stream socket at that path.
    Unix(PathBuf),
    /// `inet:<host>:<port>`: a TCP socket; the `host:port` part exactly as given.
    Inet(String),
}

/// A listen address that is neither `unix:<path>` nor `inet:<host>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid listen address {value:?}: {reason}; expected \"unix:/path/to.sock\" \
     or \"inet:host:port\" (e.g. \"inet:127.0.0.1:10025\" or \"inet:[::1]:25\")"
)]
pub struct ParseListenAddrError {
    /// The address as given.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for ListenAddr {
    type Err = ParseListenAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseListenAddrError {
            value: s.to_owned(),
            reason,
        };
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(err("empty socket path"));
            }
            if path.contains('\0') {
                return Err(err("NUL byte in socket path"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if let Some(hostport) = s.strip_prefix("inet:") {
            let Some((host, port)) = hostport.rsplit_once(':') else {
                return Err(err("missing \":port\""));
            };
            if host.is_empty() {
                return Err(err("empty host"));
            }
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err("port is not a number"));
            }
            if port.parse::<u16>().is_err() {
                return Err(err("port out of range 0-65535"));
            }
            if let Some(inner) = host.strip_prefix('[') {
                match inner.strip_suffix(']') {
                    Some(ip6) if ip6.parse::<std::net::Ipv6Addr>().is_ok() => {}
                    _ => return Err(err("bad bracketed IPv6 address")),
                }
            } else if host.contains(':') {
                // Without brackets we cannot tell where the address ends.
                return Err(err("IPv6 address must be in brackets"));
            } else if host.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(err("bad host name"));
            }
            return Ok(ListenAddr::Inet(hostport.to_owned()));
        }
        Err(err("unknown scheme"))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Inet(hp) => write!(f, "inet:{hp}"),
        }
    }
}

/// A bound listening socket.
#[derive(Debug)]
pub enum Listener {
    /// A Unix listener and its path (empty when unknown). The path is not
    /// removed on drop: a restarted daemon replaces the stale socket, while
    /// removing it here could delete a socket a newer instance already owns.
    Unix(UnixListener, PathBuf),
    /// A TCP listener.
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `addr`.
    ///
    /// For a Unix socket: an existing socket that nobody accepts on (connect
    /// is refused) is stale and removed; the new socket gets mode 0660 so
    /// only the owner and group (Postfix/Dovecot) can connect.
    ///
    /// # Errors
    ///
    /// `AddrInUse` when another process accepts on the Unix socket path,
    /// `AlreadyExists` when the path exists and is not a socket (it is never
    /// deleted), and any error from `bind`, `chmod` or name resolution.
    pub async fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Unix(path) => {
                remove_stale_socket(path).await?;
                let listener = bind_private(path)?;
                Ok(Listener::Unix(listener, path.clone()))
            }
            ListenAddr::Inet(hostport) => Ok(Listener::Tcp(TcpListener::bind(hostport).await?)),
        }
    }

    /// Wraps an already bound Unix listener (tests, socket activation).
    pub fn from_unix(l: UnixListener) -> Listener {
        let path = l
            .local_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(Path::to_path_buf))
            .unwrap_or_default();
        Listener::Unix(l, path)
    }

    /// Accepts the next connection.
    ///
    /// # Errors
    ///
    /// Whatever `accept(2)` reports (e.g. `EMFILE`); the listener stays usable.
    pub async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l, _) => Ok(Stream::Unix(l.accept().await?.0)),
            Listener::Tcp(l) => {
                let stream = l.accept().await?.0;
                // Replies are small and answered at once: Nagle plus delayed
                // ACK would add tens of milliseconds to every exchange.
                stream.set_nodelay(true)?;
                Ok(Stream::Tcp(stream))
            }
        }
    }

    /// The bound address in [`ListenAddr`] syntax, for logs.
    pub fn local_addr_string(&self) -> String {
        match self {
            Listener::Unix(_, p) => format!("unix:{}", p.display()),
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("inet:{a}"),
                Err(e) => format!("inet:<unknown: {e}>"),
            },
        }
    }
}

/// Binds a Unix socket at `path` with mode 0660 such that nobody but the
/// owner can connect before the mode is set: the socket is created in a new
/// directory of mode 0700 next to `path` (mkdir's mode can only be narrowed
/// by the umask), chmodded there, and renamed into place.
fn bind_private(path: &Path) -> io::Result<UnixListener> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = parent.join(format!(".bind.{}.{n}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
    let temp = dir.join("s");
    let bound = (|| {
        let listener = UnixListener::bind(&temp)?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o660))?;
        std::fs::rename(&temp, path)?;
        Ok(listener)
    })();
    if bound.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    let _ = std::fs::remove_dir(&dir);
    bound
}

/// File descriptors kept free for everything but connections: the
/// listener, standard streams, the journal, files the handlers open and
/// their outgoing connections. Each systemd unit's `LimitNOFILE` is its
/// daemon's connection cap plus this.
pub const FD_RESERVE: usize = 256;

/// `wanted` connections, lowered so that they and [`FD_RESERVE`] fit in a
/// soft descriptor limit of `nofile` (at least one connection).
pub fn connection_cap(wanted: usize, nofile: u64) -> usize {
    let room = usize::try_from(nofile)
        .unwrap_or(usize::MAX)
        .saturating_sub(FD_RESERVE);
    wanted.min(room).max(1)
}

fn nofile_limit() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket; not removing it",
                path.display()
            ),
        ));
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is already in use by a running process", path.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing stale socket");
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot check existing socket {}: {e}", path.display()),
        )),
    }
}

/// An accepted connection.
#[derive(Debug)]
pub enum Stream {
    /// From a Unix listener.
    Unix(UnixStream),
    /// From a TCP listener.
    Tcp(TcpStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Tcp(s) => s.is_write_vectored(),
        }
    }
}

/// Accepts connections on `listener` until `shutdown` resolves, serving
/// each with `serve(stream, stop)` in its own task, at most
/// `max_connections` at once.
///
/// A permit is taken before accepting, so excess clients wait in the
/// kernel's listen queue rather than holding a file descriptor here. Accept
/// errors (such as running out of descriptors) are logged and retried after
/// a short pause: a helper that exits takes Postfix's or Dovecot's requests
/// with it. On shutdown it stops accepting, turns `stop` to `true` so
/// connections can finish the request at hand and close, and waits for them.
/// `what` names the server in its log lines.
pub async fn serve_connections<F, Fut>(
    listener: Listener,
    what: &str,
    max_connections: usize,
    shutdown: impl Future<Output = ()>,
    serve: F,
) where
    F: Fn(Stream, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let addr = listener.local_addr_string();
    let max_connections = match nofile_limit() {
        Some(nofile) => {
            let cap = connection_cap(max_connections, nofile);
            if cap < max_connections {
                tracing::warn!(
                    %addr,
                    nofile,
                    "{what}: file descriptor limit allows {cap} connections, not {max_connections}"
                );
            }
            cap
        }
        None => max_connections,
    };
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    // The daemon logs once that it listens; a lowered cap is warned above.
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = std::sync::Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            s = listener.accept() => s,
        };
        while conns.try_join_next().is_some() {}
        match stream {
            Ok(stream) => {
                let conn = serve(stream, stop_rx.clone());
                let open = OpenConnection::new();
                conns.spawn(async move {
                    let _permit = permit;
                    let _open = open;
                    conn.await;
                });
            }
            Err(e) => {
                tracing::warn!(%addr, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while conns.join_next().await.is_some() {}
    tracing::info!(%addr, "{what} stopped");
}

/// A future that resolves on the first SIGTERM or SIGINT and logs which
/// one arrived.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: a daemon that does slow start-up work (opening a queue)
/// before it waits must not die of a SIGTERM that arrives meanwhile. Call
/// it inside the Tokio runtime.
///
/// If a handler cannot be installed (logged as an error) only the other
/// signal ends the wait; if neither can be, the future never resolves.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{Signal, SignalKind, signal};

    fn install(kind: SignalKind, name: &'static str) -> Option<Signal> {
        signal(kind)
            .inspect_err(|e| {
                tracing::error!(signal = name, error = %e, "cannot install signal handler");
            })
            .ok()
    }
    async fn wait_for(signal: Option<Signal>, name: &'static str) -> &'static str {
        match signal {
            Some(mut s) => {
                s.recv().await;
                name
            }
            None => std::future::pending().await,
        }
    }

    let term = install(SignalKind::terminate(), "SIGTERM");
    let int = install(SignalKind::interrupt(), "SIGINT");
    async move {
        let name = tokio::select! {
            n = wait_for(term, "SIGTERM") => n,
            n = wait_for(int, "SIGINT") => n,
        };
        tracing::info!(signal = name, "shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let good: &[(&str, ListenAddr)] = &[
            ("unix:/run/x.sock", ListenAddr::Unix("/run/x.sock".into())),
            ("unix:rel/x.sock", ListenAddr::Unix("rel/x.sock".into())),
            (
                "inet:127.0.0.1:10025",
                ListenAddr::Inet("127.0.0.1:10025".into()),
            ),
            ("inet:[::1]:25", ListenAddr::Inet("[::1]:25".into())),
            ("inet:localhost:0", ListenAddr::Inet("localhost:0".into())),
        ];
        for (s, want) in good {
            let got: ListenAddr = s.parse().unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(&got, want, "{s}");
            assert_eq!(got.to_string(), *s, "round trip");
        }
        let bad = [
            "",
            "/run/x.sock",
            "unix:",
            "tcp:127.0.0.1:25",
            "inet:",
            "inet:127.0.0.1",
            "inet::25",
            "inet:127.0.0.1:",
            "inet:127.0.0.1:65536",
            "inet:127.0.0.1:-1",
            "inet:127.0.0.1:+25",
            "inet:::1:25",
            "inet:[::1:25",
            "inet:[nonsense]:25",
            "inet:a b:25",
        ];
        for s in bad {
            let err = s.parse::<ListenAddr>().expect_err(s);
            let msg = err.to_string();
            assert!(msg.contains(&format!("{s:?}")), "names value: {msg}");
            assert!(msg.contains("unix:/path/to.sock"), "names forms: {msg}");
        }
    }

    fn sock_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("t.sock")
    }

    #[tokio::test]
    async fn stale_socket_is_replaced_and_mode_is_0660() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock_path(&dir);
        // A socket nobody accepts on: bind with std, then drop the listener.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let l = Listener::bind(&ListenAddr::Unix(path.clone()))
            .await
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o660);
        assert_eq!(l.local_addr_string(), format!("unix:{}", path.display()));
        let accept = tokio::spawn(async move { l.accept().await.map(|_| ()) });
        UnixStream::connect(&path).await.unwrap();
        accept.await.unwrap().unwrap();
        // Dropping the listener leaves the path for the next start to replace.
        assert!(path.exists());
    }

    #[test]
    fn connection_cap_leaves_the_reserve() {
        let cases: &[(usize, u64, usize)] = &[
            (1024, 1024, 1024 - FD_RESERVE),
            (1024, 1024 + FD_RESERVE as u64, 1024),
            (1024, 65536, 1024),
            (16384, 16384, 16384 - FD_RESERVE),
            (16384, 16384 + FD_RESERVE as u64, 16384),
            (10, 100, 1),
            (10, 0, 1),
            (10, u64::MAX, 10),
        ];
        for &(wanted, nofile, want) in cases {
            assert_eq!(connection_cap(wanted, nofile), want, "{wanted} {nofile}");
        }
    }

    #[tokio::test]
    async fn bind_leaves_no_temp_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock_path(&dir);
        let _l = Listener::bind(&ListenAddr::Unix(path.clone()))
            .await
            .unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("t.sock")]);
    }

    #[tokio::test]
    async fn live_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock_path(&dir);
        let _live = Listener::bind(&ListenAddr::Unix(path.clone()))
            .await
            .unwrap();
        let err = Listener::bind(&ListenAddr::Unix(path.clone()))
            .await
            .expect_err("live socket must not be replaced");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(err.to_string().contains("already in use"), "{err}");
        assert!(path.exists());
    }

    #[tokio::test]
    async fn regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock_path(&dir);
        std::fs::write(&path, b"precious").unwrap();
        let err = Listener::bind(&ListenAddr::Unix(path.clone()))
            .await
            .expect_err("regular file must not be replaced");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn tcp_bind_accept_roundtrip() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = Listener::bind(&"inet:127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let addr = l.local_addr_string();
        let hostport = addr.strip_prefix("inet:").unwrap().to_owned();
        let server = tokio::spawn(async move {
            let mut s = l.accept().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            s.flush().await.unwrap();
        });
        let mut c = TcpStream::connect(hostport).await.unwrap();
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn from_unix_keeps_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = sock_path(&dir);
        let l = Listener::from_unix(UnixListener::bind(&path).unwrap());
        assert_eq!(l.local_addr_string(), format!("unix:{}", path.display()));
    }
}
