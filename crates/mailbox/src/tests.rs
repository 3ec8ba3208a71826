use super::*;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};

const D: &str = "chat.example.org";
const HASH: &str = "{SHA512-CRYPT}$6$abcdefghijklmnop$xyz";

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("mail"), D);
    (dir, store)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn mtime(path: &Path) -> (i64, i64) {
    let m = fs::metadata(path).unwrap();
    (m.mtime(), m.mtime_nsec())
}

#[test]
fn address_validation() {
    let (_dir, store) = store();
    let long_local = "a".repeat(MAX_ADDRESS_LEN - D.len() - 1);
    let too_long = format!("{long_local}a@{D}");
    let ok_long = format!("{long_local}@{D}");
    let cases: Vec<(String, Result<(), AddressError>)> = vec![
        (format!("abcdefghi@{D}"), Ok(())),
        (format!("a.b-c_d@{D}"), Ok(())),
        (format!("x@{D}"), Ok(())),
        (ok_long, Ok(())),
        (format!("a/b@{D}"), Err(AddressError::ForbiddenChar('/'))),
        (format!("../x@{D}"), Err(AddressError::ForbiddenChar('/'))),
        (format!("..@{D}"), Err(AddressError::LeadingDot)),
        (format!(".x@{D}"), Err(AddressError::LeadingDot)),
        (".".into(), Err(AddressError::LeadingDot)),
        ("..".into(), Err(AddressError::LeadingDot)),
        (format!("a..b@{D}"), Err(AddressError::DotDot)),
        (
            "x@other.org".into(),
            Err(AddressError::OtherDomain { expected: D.into() }),
        ),
        (
            "x@CHAT.example.org".into(),
            Err(AddressError::OtherDomain { expected: D.into() }),
        ),
        (
            format!("x@sub.{D}"),
            Err(AddressError::OtherDomain { expected: D.into() }),
        ),
        (format!("x@{D}@{D}"), Err(AddressError::SeveralAt)),
        ("".into(), Err(AddressError::Empty)),
        (format!("@{D}"), Err(AddressError::EmptyLocalpart)),
        ("noat".into(), Err(AddressError::NoAt)),
        (format!("a\0b@{D}"), Err(AddressError::ForbiddenChar('\0'))),
        (format!("a\nb@{D}"), Err(AddressError::ForbiddenChar('\n'))),
        (format!("a\tb@{D}"), Err(AddressError::ForbiddenChar('\t'))),
        (too_long, Err(AddressError::TooLong)),
    ];
    for (addr, expected) in cases {
        let got = store.mailbox(&addr).map(|_| ());
        assert_eq!(got, expected, "{addr:?}");
    }
    let mb = store.mailbox(&format!("abc@{D}")).unwrap();
    assert_eq!(mb.addr(), format!("abc@{D}"));
    assert_eq!(mb.dir(), store.mailboxes_dir().join(format!("abc@{D}")));
    assert_eq!(mb.password_path(), mb.dir().join("password"));
    assert_eq!(mb.enforce_e2ee_path(), mb.dir().join("enforceE2EEincoming"));
    assert_eq!(mb.metadata_path(), mb.dir().join("metadata.json"));
    assert!(
        !store.mailboxes_dir().exists(),
        "validation touched the disk"
    );
}

#[test]
fn ipv4_store_from_config() {
    let config = chatmail_config::Config::for_tests("1.2.3.4", Path::new("/x"));
    let store = Store::from_config(&config);
    assert_eq!(store.domain(), "[1.2.3.4]");
    assert_eq!(store.mailboxes_dir(), Path::new("/x"));
    assert!(store.mailbox("abc@[1.2.3.4]").is_ok());
    assert!(store.mailbox("abc@1.2.3.4").is_err());
}

#[test]
fn create_writes_chatmaild_layout() {
    let (_dir, store) = store();
    let mb = store.mailbox(&format!("abcdefghi@{D}")).unwrap();
    assert_eq!(mb.password_hash().unwrap(), None);
    assert!(!mb.enforce_e2ee_incoming());
    assert_eq!(mb.create(HASH).unwrap(), Created::New);
    // chatmaild writes the hash without a newline.
    assert_eq!(fs::read(mb.password_path()).unwrap(), HASH.as_bytes());
    assert_eq!(mb.password_hash().unwrap().as_deref(), Some(HASH));
    assert!(mb.enforce_e2ee_incoming());
    assert_eq!(fs::read(mb.enforce_e2ee_path()).unwrap(), b"");
    let dir_mode = fs::metadata(mb.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let pw_mode = fs::metadata(mb.password_path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(pw_mode, 0o600);
    assert_eq!(names_in(mb.dir()), ["enforceE2EEincoming", "password"]);

    // A second creation never overwrites and does not undo an opt-out.
    fs::remove_file(mb.enforce_e2ee_path()).unwrap();
    assert_eq!(
        mb.create("{SHA512-CRYPT}$6$other").unwrap(),
        Created::Existing(HASH.into())
    );
    assert_eq!(fs::read(mb.password_path()).unwrap(), HASH.as_bytes());
    assert!(!mb.enforce_e2ee_incoming());
    assert_eq!(names_in(mb.dir()), ["password"]);
}

#[test]
fn create_rejects_bad_hashes() {
    let (_dir, store) = store();
    let mb = store.mailbox(&format!("abc@{D}")).unwrap();
    for bad in ["", "a\nb", "a\rb", "a\0b"] {
        let err = mb.create(bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
    }
    assert!(!mb.dir().exists());
}

#[test]
fn password_hash_is_trimmed_and_empty_is_no_account() {
    let (_dir, store) = store();
    let mb = store.mailbox(&format!("abc@{D}")).unwrap();
    fs::create_dir_all(mb.dir()).unwrap();
    fs::write(mb.password_path(), format!("{HASH}\n")).unwrap();
    assert_eq!(mb.password_hash().unwrap().as_deref(), Some(HASH));
    fs::write(mb.password_path(), "").unwrap();
    assert_eq!(mb.password_hash().unwrap(), None);
    // An empty password file blocks the address: it is not replaced.
    assert_eq!(mb.create(HASH).unwrap(), Created::Existing(String::new()));
    assert_eq!(fs::read(mb.password_path()).unwrap(), b"");
}

#[test]
fn concurrent_creation_has_one_winner() {
    let (_dir, store) = store();
    let addr = format!("racer1234@{D}");
    let threads = 20;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let mb = store.mailbox(&addr).unwrap();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let hash = format!("{{SHA512-CRYPT}}$6$thread{i:02}");
                barrier.wait();
                (hash.clone(), mb.create(&hash).unwrap())
            })
        })
        .collect();
    let results: Vec<(String, Created)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mb = store.mailbox(&addr).unwrap();
    let stored = String::from_utf8(fs::read(mb.password_path()).unwrap()).unwrap();
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, c)| *c == Created::New)
        .map(|(h, _)| h)
        .collect();
    assert_eq!(
        winners,
        [&stored],
        "exactly one New, and it is the stored hash"
    );
    for (hash, created) in &results {
        if *created != Created::New {
            assert_eq!(*created, Created::Existing(stored.clone()), "{hash}");
        }
    }
    assert_eq!(names_in(mb.dir()), ["enforceE2EEincoming", "password"]);
}

#[test]
fn last_login_is_the_password_mtime_day() {
    let (_dir, store) = store();
    let mb = store.mailbox(&format!("abc@{D}")).unwrap();
    assert_eq!(mb.last_login().unwrap(), None);
    assert!(!mb.set_last_login(1_700_000_000).unwrap());
    assert!(!mb.dir().exists(), "set_last_login created the account");

    mb.create(HASH).unwrap();
    let day = 1_700_000_000 / 86_400 * 86_400;
    assert!(mb.set_last_login(1_700_000_000).unwrap());
    assert_eq!(mb.last_login().unwrap(), Some(day));
    assert_eq!(mtime(&mb.password_path()), (day as i64, 0));
    assert_eq!(
        fs::metadata(mb.password_path()).unwrap().atime(),
        day as i64
    );

    // Same day, later: nothing is touched.
    assert!(!mb.set_last_login(day + 86_399).unwrap());
    assert_eq!(mtime(&mb.password_path()), (day as i64, 0));

    // Next day: moved forward; also works backwards (clock corrections).
    assert!(mb.set_last_login(day + 86_400).unwrap());
    assert_eq!(mb.last_login().unwrap(), Some(day + 86_400));
    assert!(mb.set_last_login(day).unwrap());
    assert_eq!(mb.last_login().unwrap(), Some(day));

    // An mtime inside a day (set by someone else) is reported truncated.
    let inside = UNIX_EPOCH + Duration::from_secs(day + 3_600);
    File::open(mb.password_path())
        .unwrap()
        .set_modified(inside)
        .unwrap();
    assert_eq!(mb.last_login().unwrap(), Some(day));
    assert!(mb.set_last_login(day + 10).unwrap());
    assert_eq!(mtime(&mb.password_path()), (day as i64, 0));
    assert_eq!(mb.password_hash().unwrap().as_deref(), Some(HASH));

    // A time the system cannot hold is an error, not a panic, and changes nothing.
    let err = mb.set_last_login(u64::MAX).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(mtime(&mb.password_path()), (day as i64, 0));
}

#[test]
fn write_atomic_replaces_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file.json");
    write_atomic(&path, b"one").unwrap();
    write_atomic(&path, b"two, longer").unwrap();
    write_atomic(&path, b"3").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"3");
    assert_eq!(names_in(dir.path()), ["file.json"]);

    // Renaming over a non-empty directory fails after the temp file was written.
    let blocker = dir.path().join("blocked");
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("x"), "x").unwrap();
    assert!(write_atomic(&blocker, b"data").is_err());
    assert_eq!(names_in(dir.path()), ["blocked", "file.json"]);

    let missing = dir.path().join("nope").join("file");
    assert_eq!(
        write_atomic(&missing, b"x").unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert!(!dir.path().join("nope").exists());
}

#[test]
fn concurrent_atomic_writes_never_tear() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("m.json"));
    let handles: Vec<_> = (0..8u8)
        .map(|i| {
            let path = Arc::clone(&path);
            std::thread::spawn(move || {
                let body = vec![b'a' + i; 4096];
                for _ in 0..50 {
                    write_atomic(&path, &body).unwrap();
                    let read = fs::read(&*path).unwrap();
                    assert_eq!(read.len(), 4096);
                    assert!(read.iter().all(|&b| b == read[0]));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(names_in(dir.path()), ["m.json"]);
}

#[test]
fn metadata_round_trip_keeps_unknown_fields() {
    let (_dir, store) = store();
    let mb = store.mailbox(&format!("abc@{D}")).unwrap();
    assert_eq!(mb.read_metadata().unwrap(), Metadata::default());
    // No directory, no account: writing does not create one.
    assert_eq!(
        mb.write_metadata(&Metadata::default()).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert!(!mb.dir().exists());

    mb.create(HASH).unwrap();
    // As chatmaild's json.dump writes it.
    fs::write(
        mb.metadata_path(),
        r#"{"devicetoken": {"tok1": 1700000000, "tok2": 1700000500.5}, "future": {"x": [1, "y"]}}"#,
    )
    .unwrap();
    let mut m = mb.read_metadata().unwrap();
    assert_eq!(
        m.devicetoken,
        BTreeMap::from([
            ("tok1".into(), 1_700_000_000),
            ("tok2".into(), 1_700_000_500)
        ])
    );
    assert_eq!(m.extra["future"], serde_json::json!({"x": [1, "y"]}));
    m.devicetoken.insert("tok3".into(), 1_700_001_000);
    mb.write_metadata(&m).unwrap();
    let again = mb.read_metadata().unwrap();
    assert_eq!(again, m);
    let raw: serde_json::Value =
        serde_json::from_slice(&fs::read(mb.metadata_path()).unwrap()).unwrap();
    assert_eq!(
        raw,
        serde_json::json!({
            "devicetoken": {"tok1": 1700000000, "tok2": 1700000500, "tok3": 1700001000},
            "future": {"x": [1, "y"]}
        })
    );
    assert_eq!(
        names_in(mb.dir()),
        ["enforceE2EEincoming", "metadata.json", "password"]
    );
}

/// Numbers in unknown keys survive any number of rewrites unchanged
/// (found by fuzzing: without correctly rounded float parsing, a long
/// integer literal drifted by one unit in the last place per rewrite).
#[test]
fn metadata_numbers_survive_rewrites() {
    let (_dir, store) = store();
    let mb = store.mailbox(&format!("num@{D}")).unwrap();
    mb.create(HASH).unwrap();
    fs::write(
        mb.metadata_path(),
        r#"{"future": [1111111111111111111111, 1777777777777777777777777777777700000000, 1001111111111111111111111111111.5]}"#,
    )
    .unwrap();
    let first = mb.read_metadata().unwrap();
    mb.write_metadata(&first).unwrap();
    assert_eq!(mb.read_metadata().unwrap(), first);
}

#[test]
fn metadata_legacy_and_broken_files() {
    let (_dir, store) = store();
    let mb = store.mailbox(&format!("abc@{D}")).unwrap();
    mb.create(HASH).unwrap();

    fs::write(mb.metadata_path(), r#"{"devicetoken": ["a", "b"]}"#).unwrap();
    let m = mb.read_metadata().unwrap();
    assert_eq!(m.devicetoken.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert!(m.devicetoken.values().all(|&ts| ts > 1_700_000_000));

    fs::write(mb.metadata_path(), r#"{"devicetoken": null}"#).unwrap();
    assert!(mb.read_metadata().unwrap().devicetoken.is_empty());
    fs::write(mb.metadata_path(), r#"{}"#).unwrap();
    assert_eq!(mb.read_metadata().unwrap(), Metadata::default());
    mb.write_metadata(&Metadata::default()).unwrap();
    assert_eq!(fs::read(mb.metadata_path()).unwrap(), b"{}");

    for broken in [
        "",
        "{",
        "[]",
        "null",
        r#"{"devicetoken": 5}"#,
        r#"{"devicetoken": {"t": "soon"}}"#,
        r#"{"devicetoken": [1]}"#,
    ] {
        fs::write(mb.metadata_path(), broken).unwrap();
        let err = mb.read_metadata().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{broken:?}");
    }
}

#[test]
fn addresses_skip_junk() {
    let (_dir, store) = store();
    assert_eq!(
        store.addresses().unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    for addr in ["bbbbbbbbb", "aaaaaaaaa"] {
        store
            .mailbox(&format!("{addr}@{D}"))
            .unwrap()
            .create(HASH)
            .unwrap();
    }
    let root = store.mailboxes_dir();
    // A directory without a password is still a mailbox (Dovecot may have created it).
    fs::create_dir(root.join(format!("ccc@{D}"))).unwrap();
    for junk in [
        "pending_notifications".to_string(),
        format!(".hidden@{D}"),
        "x@other.org".into(),
        format!("a@{D}@{D}"),
        format!("@{D}"),
        "no-at-sign".into(),
    ] {
        fs::create_dir(root.join(junk)).unwrap();
    }
    fs::write(root.join(format!("file@{D}")), "").unwrap();
    fs::write(root.join(format!(".tmp.x@{D}")), "").unwrap();
    std::os::unix::fs::symlink(
        root.join(format!("aaaaaaaaa@{D}")),
        root.join(format!("link@{D}")),
    )
    .unwrap();
    assert_eq!(
        store.addresses().unwrap(),
        [
            format!("aaaaaaaaa@{D}"),
            format!("bbbbbbbbb@{D}"),
            format!("ccc@{D}")
        ]
    );
}

#[test]
fn metadata_json_that_is_no_plain_bounded_file_is_refused_at_once() {
    let (_dir, store) = store();
    let mb = store.mailbox(&format!("abc@{D}")).unwrap();
    mb.create(HASH).unwrap();
    let path = mb.metadata_path();
    // Reads in a thread, so a read that hangs fails the test instead of blocking it.
    let read = |mb: &Mailbox| {
        let mb = mb.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(mb.read_metadata()));
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("reading metadata.json hangs")
    };
    let refused = |mb: &Mailbox, what: &str| {
        let err = read(mb).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains(what), "{err}");
    };

    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    refused(&mb, "symlink");
    fs::remove_file(&path).unwrap();

    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    refused(&mb, "not a regular file");
    fs::remove_file(&path).unwrap();

    fs::create_dir(&path).unwrap();
    refused(&mb, "not a regular file");
    fs::remove_dir(&path).unwrap();

    let over = usize::try_from(MAX_METADATA_BYTES).unwrap() + 1;
    fs::write(&path, vec![b' '; over]).unwrap();
    refused(&mb, "more than the 1048576 allowed");

    // What a user can legitimately have is read: 16 tokens of 4 KiB.
    let mut m = Metadata::default();
    for i in 0..16 {
        m.devicetoken
            .insert(format!("{i:02}{}", "t".repeat(4094)), 1_800_000_000);
    }
    mb.write_metadata(&m).unwrap();
    assert_eq!(read(&mb).unwrap(), m);
}

#[test]
fn temp_file_names_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    for base in [PASSWORD_FILE, METADATA_FILE] {
        let made = atomic::unique_temp_path(dir.path(), base).unwrap();
        let name = made.file_name().unwrap().to_str().unwrap();
        assert!(is_temp_file_name(name), "{name}");
    }
    for name in [
        "password",
        "metadata.json",
        ".password",
        ".password.tmp.x",
        ".passwordx.1.tmp",
        ".enforceE2EEincoming.1.2.3.tmp",
        "password.1.2.3.tmp",
        "dovecot.index.tmp",
    ] {
        assert!(!is_temp_file_name(name), "{name}");
    }
}
