//! Byte-exact assertions on Unix stream sockets, shared by the socket tests
//! of the line protocols (Dovecot dict, Postfix policy) and their daemons.
//!
//! Every read has a deadline: a reply that never comes fails the test
//! instead of hanging it. Bytes are compared in their escaped form so a
//! failure shows tabs and newlines. [`LineClient`] reads replies a line at a
//! time, `\n` included, for tests that compare whole reply lines.
//! [`Spawned`] runs a server under test on the runtime and stops it;
//! [`Served`] does so for a protocol server with a [`Scripted`] handler.
//!
//! A development dependency only: no shipped crate may depend on this one.
//! It depends on no crate of the workspace, so the tests of any crate can
//! use it; servers under test get a plain Unix listener and wrap it in
//! their own listener type.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest wait for bytes a test expects.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// Reads exactly `want.len()` bytes ([`PATIENCE`] at most) and compares them.
///
/// # Panics
/// When the bytes differ, the read fails or times out.
pub async fn expect(c: &mut UnixStream, want: &[u8]) {
    let mut got = vec![0u8; want.len()];
    tokio::time::timeout(PATIENCE, c.read_exact(&mut got))
        .await
        .unwrap_or_else(|_| panic!("timeout waiting for {:?}", want.escape_ascii().to_string()))
        .unwrap();
    assert_eq!(
        got.escape_ascii().to_string(),
        want.escape_ascii().to_string()
    );
}

/// Sends `req` and expects exactly `want` back.
///
/// # Panics
/// As [`expect`], or when the write fails.
pub async fn roundtrip(c: &mut UnixStream, req: &[u8], want: &[u8]) {
    c.write_all(req).await.unwrap();
    expect(c, want).await;
}

/// Asserts nothing arrives within `ms` milliseconds.
///
/// # Panics
/// When anything (bytes, end of stream, an error) arrives in time.
pub async fn expect_silence(c: &mut UnixStream, ms: u64) {
    let mut b = [0u8; 1];
    if let Ok(r) = tokio::time::timeout(Duration::from_millis(ms), c.read(&mut b)).await {
        panic!(
            "expected silence, got {r:?} {:?}",
            b.escape_ascii().to_string()
        );
    }
}

/// Asserts the server closes the connection ([`PATIENCE`] at most), sending
/// nothing more.
///
/// # Panics
/// When bytes arrive first, or the connection stays open.
pub async fn expect_eof(c: &mut UnixStream) {
    let mut rest = Vec::new();
    let r = tokio::time::timeout(PATIENCE, c.read_to_end(&mut rest))
        .await
        .expect("connection not closed");
    // A reset also means closed: the kernel sends one when the server
    // closes with input it did not read.
    if let Err(e) = r {
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    }
    assert_eq!(rest.escape_ascii().to_string(), "");
}

/// A client of a line protocol that sends text and reads the reply one
/// line at a time, `\n` included, so that tests compare exact reply lines.
#[derive(Debug)]
pub struct LineClient {
    r: BufReader<OwnedReadHalf>,
    w: OwnedWriteHalf,
    patience: Duration,
}

impl LineClient {
    /// Connects to `path`; a reply line is awaited [`PATIENCE`] at most.
    ///
    /// # Panics
    /// When connecting fails.
    pub async fn connect(path: &Path) -> LineClient {
        let (r, w) = UnixStream::connect(path).await.unwrap().into_split();
        LineClient {
            r: BufReader::new(r),
            w,
            patience: PATIENCE,
        }
    }

    /// Awaits each reply line `patience` at most, for a server whose replies
    /// wait on more than its own work.
    #[must_use]
    pub fn with_patience(mut self, patience: Duration) -> LineClient {
        self.patience = patience;
        self
    }

    /// Sends `text` as it is.
    ///
    /// # Panics
    /// When the write fails.
    pub async fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).await.unwrap();
    }

    /// The next line, with its `\n`; empty at the end of the stream.
    ///
    /// # Panics
    /// When no line comes in time, the read fails or the line is not UTF-8.
    pub async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(self.patience, self.r.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("no reply line within {:?}", self.patience))
            .unwrap();
        line
    }

    /// Sends `text` and returns the next line.
    ///
    /// # Panics
    /// As [`LineClient::send`] and [`LineClient::line`].
    pub async fn request(&mut self, text: &str) -> String {
        self.send(text).await;
        self.line().await
    }
}

/// Binds a Unix listener at `dir/name` with plain `bind(2)` (the daemons'
/// own way of binding is tested on its own); the caller hands it to its
/// server in whatever listener type that server takes.
///
/// # Panics
/// When binding fails.
pub fn bind_unix(dir: &Path, name: &str) -> (PathBuf, UnixListener) {
    let path = dir.join(name);
    let listener = UnixListener::bind(&path).unwrap();
    (path, listener)
}

/// The shutdown future handed to a server under test: resolves when the
/// test asks it to stop or drops its [`Spawned`].
#[derive(Debug)]
pub struct Stop(oneshot::Receiver<()>);

impl Future for Stop {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// A server under test running as a task; dropping it asks it to stop.
#[derive(Debug)]
pub struct Spawned {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Spawned {
    /// Spawns `serve(stop)`, where `serve` is a daemon's or protocol
    /// server's entry point with its listener and handler already bound.
    pub fn spawn<F, Fut>(serve: F) -> Spawned
    where
        F: FnOnce(Stop) -> Fut,
        Fut: Future<Output = io::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(Stop(stopped)));
        Spawned {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the server to stop without waiting.
    pub fn begin_shutdown(&mut self) {
        drop(self.stop.take());
    }

    /// Asks the server to stop and waits ([`PATIENCE`] at most) until it has.
    ///
    /// # Panics
    /// When the server does not stop in time, panics, or returns an error.
    pub async fn shutdown(self) {
        self.shutdown_within(PATIENCE).await;
    }

    /// Asks the server to stop and waits (`patience` at most) until it has,
    /// for a server whose shutdown has more to finish than a reply.
    ///
    /// # Panics
    /// When the server does not stop in time, panics, or returns an error.
    pub async fn shutdown_within(mut self, patience: Duration) {
        self.begin_shutdown();
        let task = self.task.take().unwrap();
        tokio::time::timeout(patience, task)
            .await
            .expect("server did not stop")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// A scripted handler for a protocol server, so that [`Served`] can start
/// that server with it.
pub trait Scripted: Default + Send + Sync + 'static {
    /// The server's options.
    type Options: Default;
    /// The socket's file name in the temp directory.
    const SOCKET: &'static str;
    /// What a client sends first on a connection from [`Served::hello`].
    const HELLO: &'static [u8];

    /// The server's entry point, serving with `handler` until `stop`.
    fn serve(
        listener: UnixListener,
        handler: Arc<Self>,
        options: Self::Options,
        stop: Stop,
    ) -> Serving;
}

/// A running server's future, as [`Scripted::serve`] returns it.
pub type Serving = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

/// A protocol server under test with a scripted handler, on a Unix socket
/// in a temp directory of its own; dropping it stops the server.
#[derive(Debug)]
pub struct Served<H> {
    /// The socket.
    pub path: PathBuf,
    /// The handler the server was given, for what it recorded.
    pub handler: Arc<H>,
    server: Spawned,
    _dir: tempfile::TempDir,
}

impl<H: Scripted> Served<H> {
    /// Starts the server with default options.
    ///
    /// # Panics
    /// When the directory or the socket cannot be created.
    pub async fn start() -> Served<H> {
        Served::start_with(H::Options::default()).await
    }

    /// Starts the server with `options`.
    ///
    /// # Panics
    /// When the directory or the socket cannot be created.
    pub async fn start_with(options: H::Options) -> Served<H> {
        let dir = tempfile::tempdir().unwrap();
        let (path, listener) = bind_unix(dir.path(), H::SOCKET);
        let handler = Arc::new(H::default());
        let server = Spawned::spawn(|stop| H::serve(listener, Arc::clone(&handler), options, stop));
        Served {
            path,
            handler,
            server,
            _dir: dir,
        }
    }

    /// A new client connection.
    ///
    /// # Panics
    /// When connecting fails.
    pub async fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.path).await.unwrap()
    }

    /// A new client connection that has sent [`Scripted::HELLO`].
    ///
    /// # Panics
    /// When connecting or sending fails.
    pub async fn hello(&self) -> UnixStream {
        let mut c = self.connect().await;
        c.write_all(H::HELLO).await.unwrap();
        c
    }

    /// Asks the server to stop without waiting.
    pub fn begin_shutdown(&mut self) {
        self.server.begin_shutdown();
    }

    /// Asks the server to stop and waits ([`PATIENCE`] at most) until it has.
    ///
    /// # Panics
    /// As [`Spawned::shutdown`].
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}
