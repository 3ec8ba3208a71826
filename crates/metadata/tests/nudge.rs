//! The post-delivery nudge: a `messagenew` or `nudge` write makes the
//! daemon create and remove a dotfile in the user's `new/`, which is what
//! Dovecot's inotify watches (and `imap-hibernate`'s) react to.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

const ADDR: &str = "abcdefghi@example.org";

fn new_dir(world: &World) -> PathBuf {
    let dir = world.store().mailbox(ADDR).unwrap().dir().join("new");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Collects the (event, name) pairs on `dir` until both the creation and
/// the removal of the nudge file were seen; fails after [`PATIENCE`].
struct Watch(Inotify);

impl Watch {
    fn new(dir: &Path) -> Watch {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
        inotify
            .add_watch(dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE)
            .unwrap();
        Watch(inotify)
    }

    fn events(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        match self.0.read_events() {
            Ok(events) => {
                for e in events {
                    let what = if e.mask.contains(AddWatchFlags::IN_CREATE) {
                        "create"
                    } else {
                        "delete"
                    };
                    let name = e.name.map(|n| n.to_string_lossy().into_owned());
                    out.push((what, name.unwrap_or_default()));
                }
            }
            Err(nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("inotify: {e}"),
        }
        out
    }

    async fn nudge_seen(&self) -> Vec<(&'static str, String)> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while seen.len() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no nudge within {PATIENCE:?}; saw {seen:?}"
            );
            seen.extend(self.events());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    }
}

fn nudge_events() -> Vec<(&'static str, String)> {
    let name = chatmail_metadata::nudge::NUDGE_FILE.to_owned();
    vec![("create", name.clone()), ("delete", name)]
}

async fn start(world: &World, gateway: &Gateway) -> Server {
    let mut options = world.options(gateway);
    options.nudge_delay = Some(Duration::from_millis(20));
    world.start(options).await
}

/// A daemon with a short nudge delay, an account whose `new/` exists and a
/// watch on it.
struct Inbox {
    _world: World,
    dir: PathBuf,
    watch: Watch,
    gateway: Gateway,
    server: Server,
}

async fn inbox() -> Inbox {
    let world = World::new();
    world.account(ADDR);
    let dir = new_dir(&world);
    let watch = Watch::new(&dir);
    let gateway = Gateway::start().await;
    let server = start(&world, &gateway).await;
    Inbox {
        _world: world,
        dir,
        watch,
        gateway,
        server,
    }
}

#[tokio::test]
async fn messagenew_nudges_the_inbox_and_leaves_it_empty() {
    let Inbox {
        _world,
        dir,
        watch,
        gateway: _gateway,
        server,
    } = inbox().await;
    let mut c = server.client().await;

    assert_eq!(c.set(ADDR, &messagenew_key(), "").await, "O#\n");
    assert_eq!(watch.nudge_seen().await, nudge_events());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn nudge_wakes_without_a_push() {
    let Inbox {
        _world,
        watch,
        gateway,
        server,
        ..
    } = inbox().await;
    let mut c = server.client().await;
    assert_eq!(c.set(ADDR, &devicetoken_key(), "tok1").await, "O#\n");

    assert_eq!(c.set(ADDR, &format!("priv/{GUID}/nudge"), "").await, "O#\n");
    assert_eq!(watch.nudge_seen().await, nudge_events());
    // Mail a user sent to themselves is not pushed to their phone.
    assert!(server.queued().is_empty());
    assert_eq!(gateway.count("tok1"), 0);
    // A real delivery is, and nudges too.
    assert_eq!(c.set(ADDR, &messagenew_key(), "").await, "O#\n");
    assert_eq!(watch.nudge_seen().await, nudge_events());
    gateway.wait_count("tok1", 1).await;
    server.shutdown().await;
}

#[tokio::test]
async fn nudges_for_bad_users_fail_and_touch_nothing() {
    let world = World::new();
    let gateway = Gateway::start().await;
    let server = start(&world, &gateway).await;
    let mut c = server.client().await;
    let key = format!("priv/{GUID}/nudge");
    for user in ["../abcdefghi@example.org", "a/b@example.org", "x@other.org"] {
        let reply = c.set(user, &key, "").await;
        assert!(reply.starts_with("F#"), "{user}: {reply:?}");
    }
    // No user at all (a transaction Dovecot would never send).
    assert!(
        c.request(&format!("B9\t\nS9\t{key}\t\nC9\n"))
            .await
            .starts_with("F9")
    );
    // An account whose maildir Dovecot has not created yet: nothing to
    // wake, nothing created, the delivery's write still succeeds.
    world.account(ADDR);
    assert_eq!(c.set(ADDR, &key, "").await, "O#\n");
    let home = world.store().mailbox(ADDR).unwrap().dir().to_owned();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!home.join("new").exists());
    server.shutdown().await;
}
