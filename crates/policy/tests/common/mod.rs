//! Test harness for `chatmail policy`: runs it with a fake clock on a Unix
//! socket in a temp directory, over a temp mailbox tree, and gives
//! byte-exact client helpers.

#![allow(dead_code)]

use std::sync::Arc;

use chatmail_config::Config;
use chatmail_mailbox::Store;
use chatmail_net::Listener;
use chatmail_policy::FakeRelativeClock;
use chatmail_wire_test::{Spawned, bind_unix};
use tokio::net::UnixStream;

pub const DOMAIN: &str = "example.org";

/// A running policy service; dropping it (or [`Policy::shutdown`]) stops it.
pub struct Policy {
    pub clock: FakeRelativeClock,
    pub store: Store,
    path: std::path::PathBuf,
    server: Spawned,
    _dir: tempfile::TempDir,
}

impl Policy {
    pub async fn start() -> Policy {
        let dir = tempfile::tempdir().unwrap();
        let mailboxes = dir.path().join("mailboxes");
        std::fs::create_dir(&mailboxes).unwrap();
        let config = Arc::new(Config::for_tests(DOMAIN, &mailboxes));
        let store = Store::from_config(&config);
        let (path, listener) = bind_unix(dir.path(), "policy.sock");
        let clock = FakeRelativeClock::default();
        let server = Spawned::spawn(|stop| {
            chatmail_policy::run_with_clock(
                Listener::from_unix(listener),
                config,
                clock.clone(),
                stop,
            )
        });
        Policy {
            clock,
            store,
            path,
            server,
            _dir: dir,
        }
    }

    pub async fn connect(&self) -> UnixStream {
        UnixStream::connect(&self.path).await.unwrap()
    }

    /// Creates an account for `addr`.
    pub fn create(&self, addr: &str) {
        self.store
            .mailbox(addr)
            .unwrap()
            .create("{SHA512-CRYPT}$6$saltsaltsaltsalt$hash")
            .unwrap();
    }

    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// The RCPT request Postfix sends for one recipient of a message.
pub fn rcpt(sasl: &str, recipient: &str, instance: &str) -> Vec<u8> {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
         client_address=192.0.2.7\nclient_name=unknown\nreverse_client_name=unknown\n\
         helo_name=client.example\nsender={sasl}\nrecipient={recipient}\nrecipient_count=0\n\
         queue_id=\ninstance={instance}\nsize=0\netrn_domain=\nstress=\nsasl_method={method}\n\
         sasl_username={sasl}\nsasl_sender=\nccert_subject=\nccert_issuer=\n\
         ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=TLSv1.3\n\
         encryption_cipher=TLS_AES_256_GCM_SHA384\nencryption_keysize=256\n\
         policy_context=\nserver_address=192.0.2.1\nserver_port=465\n\
         compatibility_level=3.6\nmail_version=3.7.11\n\n",
        method = if sasl.is_empty() { "" } else { "PLAIN" },
    )
    .into_bytes()
}

/// The DATA request Postfix sends once per message.
pub fn data(sasl: &str, recipients: usize, instance: &str) -> Vec<u8> {
    format!(
        "request=smtpd_access_policy\nprotocol_state=DATA\nprotocol_name=ESMTP\n\
         client_address=192.0.2.7\nsender={sasl}\nrecipient=\nrecipient_count={recipients}\n\
         queue_id=\ninstance={instance}\nsize=0\nsasl_method=PLAIN\nsasl_username={sasl}\n\n"
    )
    .into_bytes()
}

pub use chatmail_wire_test::*;
