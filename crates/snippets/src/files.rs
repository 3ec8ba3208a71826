//! Every file the package installs beside the `chatmail` binary, embedded
//! from the repository's top-level folders (`postfix/`, `dovecot/`,
//! `nginx/`, `systemd/`, `packaging/`). This module is the only place that
//! embeds them: `chatmail setup` installs these texts, `chatmail sandbox`
//! runs them relocated, and the tests read them from here.

/// The shipped Postfix `main.cf` settings.
pub const POSTFIX_MAIN_CF: &str = include_str!("../../../postfix/main.cf");
/// The shipped Postfix `master.cf` services.
pub const POSTFIX_MASTER_CF: &str = include_str!("../../../postfix/master.cf");
/// The shipped sender login map.
pub const POSTFIX_LOGIN_MAP: &str = include_str!("../../../postfix/chatmail-login-map");
/// The shipped submission header cleanup.
pub const POSTFIX_HEADER_CLEANUP: &str =
    include_str!("../../../postfix/chatmail-submission-header-cleanup");
/// The shipped header cleanup for delivery into mailboxes.
pub const POSTFIX_LMTP_HEADER_CLEANUP: &str =
    include_str!("../../../postfix/chatmail-lmtp-header-cleanup");
/// The shipped Dovecot settings.
pub const DOVECOT_CONF: &str = include_str!("../../../dovecot/chatmail.conf");
/// The shipped push notification script.
pub const DOVECOT_PUSH_LUA: &str = include_str!("../../../dovecot/chatmail-push.lua");
/// The appversions list the package installs.
pub const APPVERSIONS_JSON: &str = include_str!("../../../packaging/appversions.json");
/// The shipped Lua passdb/userdb (Dovecot 2.3 and 2.4), a client of
/// `chatmail auth`.
pub const DOVECOT_AUTH_LUA: &str = include_str!("../../../dovecot/chatmail-auth.lua");

/// The shipped Dovecot 2.4 settings (docs/dovecot-2.4.md).
pub const DOVECOT_24_CONF: &str = include_str!("../../../dovecot/2.4/chatmail.conf");

/// The shipped `/new` CGI wrapper (run by fcgiwrap).
pub const NEWEMAIL_CGI: &str = include_str!("../../../nginx/newemail.cgi");
/// The shipped certbot deploy hook: installs a renewed certificate and
/// reloads the services that read it.
pub const CERTBOT_DEPLOY_HOOK: &str = include_str!("../../../nginx/certbot-deploy.hook");
/// The shipped nginx server block; `@NAME@` marks each value
/// [`crate::nginx::nginx_conf`] fills in.
pub const NGINX_TEMPLATE: &str = include_str!("../../../nginx/chatmail.conf");
/// The shipped port-443 stream (ALPN routing to IMAP, submission and the
/// server block); `@NAME@` marks each value
/// [`crate::nginx::stream_conf`] fills in.
pub const NGINX_STREAM_TEMPLATE: &str = include_str!("../../../nginx/chatmail-stream.conf");

/// The shipped systemd units by file name: one service per daemon of
/// [`crate::daemons::DAEMONS`], and the timers of the periodic jobs.
pub const UNITS: &[(&str, &str)] = &[
    (
        "chatmail-auth.service",
        include_str!("../../../systemd/chatmail-auth.service"),
    ),
    (
        "chatmail-lastlogin.service",
        include_str!("../../../systemd/chatmail-lastlogin.service"),
    ),
    (
        "chatmail-metadata.service",
        include_str!("../../../systemd/chatmail-metadata.service"),
    ),
    (
        "chatmail-milter.service",
        include_str!("../../../systemd/chatmail-milter.service"),
    ),
    (
        "chatmail-policy.service",
        include_str!("../../../systemd/chatmail-policy.service"),
    ),
    (
        "chatmail-transport.service",
        include_str!("../../../systemd/chatmail-transport.service"),
    ),
    (
        "chatmail-mxdeliv.service",
        include_str!("../../../systemd/chatmail-mxdeliv.service"),
    ),
    (
        "chatmail-expire.service",
        include_str!("../../../systemd/chatmail-expire.service"),
    ),
    (
        "chatmail-expire.timer",
        include_str!("../../../systemd/chatmail-expire.timer"),
    ),
    (
        "chatmail-report.service",
        include_str!("../../../systemd/chatmail-report.service"),
    ),
    (
        "chatmail-report.timer",
        include_str!("../../../systemd/chatmail-report.timer"),
    ),
];

/// The shipped unit named `name`.
pub fn unit(name: &str) -> Option<&'static str> {
    UNITS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}
