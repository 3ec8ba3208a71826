//! `chatmail setup` against a temp copy of a Debian `/etc`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use chatmail_setup::{Change, SetupError};
use common::{DOMAIN, debian_etc, run_setup, setup_as, snapshot};

#[test]
fn applies_the_snippets() {
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    fs::set_permissions(
        etc.join("postfix/main.cf"),
        fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    let (report, out) = run_setup(&etc, false);
    assert!(!report.unchanged(), "{out}");
    assert!(report.certificate_created);

    let main = fs::read_to_string(etc.join("postfix/main.cf")).unwrap();
    let cert_line = format!(
        "smtpd_tls_cert_file = {}/ssl/certs/chatmail.pem",
        etc.display()
    );
    for line in [
        "myhostname = chat.example.org",
        "mydomain = chat.example.org",
        "mydestination =",
        "smtpd_milters = unix:chatmail/milter.socket",
        "milter_default_action = tempfail",
        &cert_line,
        "message_size_limit = 31457280",
        "smtpd_recipient_restrictions = check_policy_service { unix:chatmail/policy.socket, \
         timeout=10s, default_action=DEFER_IF_PERMIT }",
    ] {
        assert_eq!(
            main.lines().filter(|l| *l == line).count(),
            1,
            "{line}\n{main}"
        );
    }
    assert!(!main.contains("snakeoil"));
    assert_eq!(
        fs::metadata(etc.join("postfix/main.cf"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640,
        "the original mode is kept"
    );

    let master = fs::read_to_string(etc.join("postfix/master.cf")).unwrap();
    let services: Vec<&str> = master
        .lines()
        .filter(|l| !l.starts_with([' ', '\t', '#']) && !l.is_empty())
        .collect();
    for name in [
        "smtp inet",
        "submission inet",
        "submissions inet",
        "chatmail-submission-cleanup unix",
    ] {
        let n = services
            .iter()
            .filter(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" ") == name)
            .count();
        assert_eq!(n, 1, "{name}\n{master}");
    }
    assert!(master.contains("  -o cleanup_service_name=chatmail-submission-cleanup\n"));
    assert!(master.contains("pickup"), "stock services stay");
    for f in ["chatmail-login-map", "chatmail-submission-header-cleanup"] {
        assert!(etc.join("postfix").join(f).exists(), "{f}");
    }

    let conf = fs::read_to_string(etc.join("dovecot/conf.d/90-chatmail.conf")).unwrap();
    assert!(conf.contains("  quota_rule = *:storage=500M\n"));
    assert!(conf.contains("quota_warning = storage=75%% quota-warning 350 %h"));
    assert!(conf.contains(&format!(
        "\nssl_cert = <{}/ssl/certs/chatmail.pem\n",
        etc.display()
    )));
    assert!(etc.join("dovecot/chatmail-auth.lua").exists());
    let auth = fs::read_to_string(etc.join("dovecot/conf.d/10-auth.conf")).unwrap();
    assert!(
        auth.contains("\n#!include auth-system.conf.ext\n"),
        "{auth}"
    );
    assert!(etc.join("dovecot/chatmail-push.lua").exists());

    let ini = fs::read_to_string(etc.join("chatmail/chatmail.ini")).unwrap();
    assert!(ini.contains("\nmail_domain = chat.example.org\n"), "{ini}");
    assert!(ini.contains("\n#max_mailbox_size = 500M\n"), "{ini}");

    let key = etc.join("ssl/private/chatmail.key");
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(etc.join("ssl/certs/chatmail.pem").exists());
    // --etc never touches systemd: the commands are printed.
    assert!(
        out.contains("to run: systemctl enable chatmail-auth.service"),
        "{out}"
    );
    assert!(out.contains("to run: systemctl restart dovecot"), "{out}");
    // The units that write mailboxes may write where chatmail.ini says.
    let dropin = fs::read_to_string(
        etc.join("systemd/system/chatmail-auth.service.d/chatmail-mailboxes.conf"),
    )
    .unwrap();
    assert!(
        dropin.ends_with("[Service]\nReadWritePaths=-/home/vmail/mail/chat.example.org\n"),
        "{dropin}"
    );
}

#[test]
fn second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    run_setup(&etc, false);
    let before = snapshot(&etc);
    let (report, out) = run_setup(&etc, false);
    assert!(report.unchanged(), "{out}");
    assert!(
        report.to_string().contains("configuration unchanged"),
        "{report}"
    );
    assert!(!out.contains("restart dovecot"), "{out}");
    assert_eq!(snapshot(&etc), before);
}

#[test]
fn dry_run_prints_diffs_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    let before = snapshot(&etc);
    let (report, out) = run_setup(&etc, true);
    assert_eq!(snapshot(&etc), before);
    assert!(!report.unchanged());
    assert!(report.to_string().contains("would be updated"), "{report}");
    assert!(out.contains("would update "), "{out}");
    assert!(
        out.contains("+smtpd_milters = unix:chatmail/milter.socket\n"),
        "{out}"
    );
    assert!(out.contains("-myhostname = debian\n"), "{out}");
    assert!(out.contains("--- /dev/null\n"), "{out}");
    assert!(
        out.contains("would create a self-signed certificate"),
        "{out}"
    );

    // After a real run, a dry run has nothing to show.
    run_setup(&etc, false);
    let (report, out) = run_setup(&etc, true);
    assert!(report.unchanged(), "{out}");
    assert!(!out.contains("\n@@ "), "{out}");
}

#[test]
fn values_come_from_an_existing_chatmail_ini() {
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    fs::create_dir_all(etc.join("chatmail")).unwrap();
    let ini = "[params]\nmail_domain = chat.example.org\nmax_mailbox_size = 1G\n\
               max_message_size = 10485760\n";
    fs::write(etc.join("chatmail/chatmail.ini"), ini).unwrap();
    run_setup(&etc, false);
    assert_eq!(
        fs::read_to_string(etc.join("chatmail/chatmail.ini")).unwrap(),
        ini
    );
    let conf = fs::read_to_string(etc.join("dovecot/conf.d/90-chatmail.conf")).unwrap();
    assert!(conf.contains("quota_rule = *:storage=1024M\n"), "{conf}");
    assert!(conf.contains("quota_max_mail_size = 10M\n"), "{conf}");
    assert!(conf.contains("quota-warning 716 %h\n"), "{conf}");
    let main = fs::read_to_string(etc.join("postfix/main.cf")).unwrap();
    assert!(main.contains("\nmessage_size_limit = 10485760\n"));
}

/// What the Debian package installs as /etc/chatmail/chatmail.ini.
const SHIPPED_INI: &str = chatmail_config::DEFAULT_INI;

#[test]
fn the_packages_commented_chatmail_ini_gets_the_domain() {
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    fs::create_dir_all(etc.join("chatmail")).unwrap();
    let path = etc.join("chatmail/chatmail.ini");
    fs::write(&path, SHIPPED_INI).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();

    let (report, out) = run_setup(&etc, false);
    assert!(!report.unchanged(), "{out}");
    assert!(report.to_string().contains("updated"), "{report}");
    let ini = fs::read_to_string(&path).unwrap();
    let expected = SHIPPED_INI.replacen(
        "\n#mail_domain = chat.example.org\n",
        "\nmail_domain = chat.example.org\n",
        1,
    );
    assert_ne!(expected, SHIPPED_INI, "no #mail_domain line to replace");
    assert_eq!(ini, expected, "only the mail_domain line changes");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o640,
        "the installed file's mode is kept"
    );

    let before = snapshot(&etc);
    let (report, out) = run_setup(&etc, false);
    assert!(report.unchanged(), "{out}");
    assert_eq!(snapshot(&etc), before);

    // A second relay's domain is refused once one is set.
    let err = setup_as("other.org", &etc, false).0.unwrap_err();
    assert!(matches!(err, SetupError::DomainMismatch { .. }), "{err}");
}

#[test]
fn the_commented_chatmail_ini_in_a_dry_run_stays() {
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    fs::create_dir_all(etc.join("chatmail")).unwrap();
    let path = etc.join("chatmail/chatmail.ini");
    fs::write(&path, SHIPPED_INI).unwrap();
    let (report, out) = run_setup(&etc, true);
    assert!(!report.unchanged());
    assert!(out.contains("-#mail_domain = chat.example.org\n"), "{out}");
    assert!(out.contains("+mail_domain = chat.example.org\n"), "{out}");
    assert_eq!(fs::read_to_string(&path).unwrap(), SHIPPED_INI);
}

#[test]
fn bad_domains_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    let before = snapshot(&etc);
    for domain in [
        "",
        "chat example.org",
        "localhost",
        "-bad.example.org",
        "a..b",
        "x.org\nmax_message_size = 1",
    ] {
        let err = setup_as(domain, &etc, false).0.unwrap_err();
        assert!(
            matches!(err, SetupError::BadDomain { .. }),
            "{domain:?}: {err}"
        );
        assert!(
            err.to_string().contains("is not a usable mail domain"),
            "{err}"
        );
    }
    assert_eq!(snapshot(&etc), before);
}

#[test]
fn another_domain_in_chatmail_ini_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    fs::create_dir_all(etc.join("chatmail")).unwrap();
    fs::write(
        etc.join("chatmail/chatmail.ini"),
        "[params]\nmail_domain = other.org\n",
    )
    .unwrap();
    let err = setup_as(DOMAIN, &etc, false).0.unwrap_err();
    assert!(
        err.to_string()
            .contains("mail_domain = other.org, not chat.example.org"),
        "{err}"
    );
}

#[test]
fn missing_postfix_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let err = setup_as(DOMAIN, dir.path(), true).0.unwrap_err();
    assert!(err.to_string().contains("apt-get install postfix"), "{err}");
}

/// Every absolute path in a non-comment line of `text` that names a file
/// under `/etc`, with or without a prefix such as `regexp:` or `<`.
fn etc_paths(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || matches!(c, '=' | ':' | '<' | ',')))
        .filter(|w| w.starts_with("/etc/"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn with_etc_the_tree_names_only_its_own_files() {
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    run_setup(&etc, false);
    let e = etc.display();
    for (file, expected) in [
        (
            "postfix/main.cf",
            vec![
                format!("smtpd_sender_login_maps = regexp:{e}/postfix/chatmail-login-map"),
                format!("smtpd_tls_cert_file = {e}/ssl/certs/chatmail.pem"),
                format!("smtpd_tls_key_file = {e}/ssl/private/chatmail.key"),
            ],
        ),
        (
            "postfix/master.cf",
            vec![format!(
                "  -o header_checks=regexp:{e}/postfix/chatmail-submission-header-cleanup"
            )],
        ),
        (
            "dovecot/conf.d/90-chatmail.conf",
            vec![
                format!("  args = file={e}/dovecot/chatmail-auth.lua blocking=yes"),
                format!("  push_notification_driver = lua:file={e}/dovecot/chatmail-push.lua"),
                format!("ssl_cert = <{e}/ssl/certs/chatmail.pem"),
                format!("ssl_key = <{e}/ssl/private/chatmail.key"),
            ],
        ),
    ] {
        let text = fs::read_to_string(etc.join(file)).unwrap();
        for line in expected {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} in {file}:\n{text}"
            );
        }
    }
    // Nothing setup wrote points back into the machine's /etc (the stock
    // lines Debian ships are the operator's and stay as they are).
    for file in [
        "postfix/main.cf",
        "postfix/master.cf",
        "postfix/chatmail-login-map",
        "postfix/chatmail-submission-header-cleanup",
        "dovecot/conf.d/90-chatmail.conf",
        "dovecot/chatmail-auth.lua",
        "dovecot/chatmail-push.lua",
        "chatmail/chatmail.ini",
    ] {
        let text = fs::read_to_string(etc.join(file)).unwrap();
        let stock: Vec<String> = if file.starts_with("postfix/ma") {
            let name = if file.ends_with("main.cf") {
                "/usr/share/postfix/main.cf.debian"
            } else {
                "/usr/share/postfix/master.cf.dist"
            };
            etc_paths(&fs::read_to_string(name).unwrap_or_default())
        } else {
            Vec::new()
        };
        let foreign: Vec<String> = etc_paths(&text)
            .into_iter()
            .filter(|p| !stock.contains(p))
            .collect();
        assert!(foreign.is_empty(), "{file} names {foreign:?}");
    }
    // Every file named there exists in the tree.
    for f in [
        "postfix/chatmail-login-map",
        "postfix/chatmail-submission-header-cleanup",
        "dovecot/chatmail-auth.lua",
        "dovecot/chatmail-push.lua",
        "ssl/certs/chatmail.pem",
        "ssl/private/chatmail.key",
    ] {
        assert!(etc.join(f).is_file(), "{f}");
    }
    // The private key's directory was made for it: private.
    assert_eq!(
        fs::metadata(etc.join("ssl/private"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn a_missing_main_cf_starts_from_debians() {
    // Debian's postfix with "No configuration" ships master.cf but no main.cf.
    let dir = tempfile::tempdir().unwrap();
    let etc = debian_etc(dir.path());
    fs::remove_file(etc.join("postfix/main.cf")).unwrap();
    let (report, out) = run_setup(&etc, false);
    assert!(
        report
            .files
            .iter()
            .any(|(p, c)| p.ends_with("postfix/main.cf") && *c == Change::Created),
        "{out}"
    );
    let main = fs::read_to_string(etc.join("postfix/main.cf")).unwrap();
    assert!(
        main.lines()
            .any(|l| l == "smtpd_milters = unix:chatmail/milter.socket"),
        "{main}"
    );
    assert!(main.contains("\nmyhostname = chat.example.org\n"), "{main}");
    if Path::new("/usr/share/postfix/main.cf.debian").exists() {
        // Debian's own settings come along (Postfix's built-in
        // compatibility level would be the legacy one).
        assert!(
            main.starts_with("# See /usr/share/postfix/main.cf.dist"),
            "{main}"
        );
        assert!(main.contains("\ncompatibility_level = 3.6\n"), "{main}");
        assert!(main.contains("\nreadme_directory = no\n"), "{main}");
    }
    let before = snapshot(&etc);
    let (report, out) = run_setup(&etc, false);
    assert!(report.unchanged(), "{out}");
    assert_eq!(snapshot(&etc), before);
}
