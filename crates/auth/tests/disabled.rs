//! The DISABLED marker in a mailbox directory, over the auth socket.

mod common;

use common::{AuthServer, DOMAIN};

#[tokio::test]
async fn a_disabled_address_cannot_log_in_nor_be_created() {
    let server = AuthServer::start().await;
    let mut c = server.client().await;
    let addr = format!("abcdefghi@{DOMAIN}");
    assert!(c.passdb("password1", &addr).await.starts_with("O{"));
    let dir = server.mailbox_dir(&addr);
    std::fs::write(dir.join("DISABLED"), "").unwrap();
    assert_eq!(c.passdb("password1", &addr).await, "N\n");
    // Mail already queued for it is still delivered: the userdb answers.
    assert!(
        c.request(&format!("Lshared/userdb/{addr}\t{addr}\n"))
            .await
            .starts_with("O{")
    );
    std::fs::remove_file(dir.join("DISABLED")).unwrap();
    assert!(c.passdb("password1", &addr).await.starts_with("O{"));

    // A marker in a directory without an account keeps the name free.
    let blocked = format!("blockedxx@{DOMAIN}");
    let dir = server.mailbox_dir(&blocked);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("DISABLED"), "").unwrap();
    assert_eq!(c.passdb("password1", &blocked).await, "N\n");
    assert!(!dir.join("password").exists());
    server.shutdown().await;
}
