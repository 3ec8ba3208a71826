//! Debian's certbot as `chatmail setup --acme` and `chatmail sandbox
//! --acme-directory` run it: the command line for the relay's certificate and
//! the deploy hook that installs it (docs/web.md).

/// The line of the shipped deploy hook ([`crate::files::CERTBOT_DEPLOY_HOOK`])
/// that reloads the system's services; a sandbox's hook reloads its own
/// instances instead.
pub const HOOK_RELOAD_LINE: &str = "systemctl reload postfix dovecot nginx";

/// certbot's arguments for the relay's certificate: one lineage named
/// `chatmail` covering `domain`, `mta-sts.` and `www.`, HTTP-01 through
/// nginx's challenge webroot, the deploy hook that installs it, and no
/// prompts. Kept until it is due for renewal, so a rerun is a no-op.
pub fn certbot_args(domain: &str, webroot: &str, deploy_hook: &str, email: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--non-interactive",
        "--agree-tos",
        "--keep-until-expiring",
        "--cert-name",
        "chatmail",
        "--webroot",
        "-w",
        webroot,
        "--deploy-hook",
        deploy_hook,
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for name in [
        domain.to_owned(),
        format!("mta-sts.{domain}"),
        format!("www.{domain}"),
    ] {
        args.push("-d".into());
        args.push(name);
    }
    if email.trim().is_empty() {
        args.push("--register-unsafely-without-email".into());
    } else {
        args.push("-m".into());
        args.push(email.trim().to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{CERTBOT_DEPLOY_HOOK, NEWEMAIL_CGI};

    #[test]
    fn certbot_covers_the_three_names_without_prompts() {
        let args = certbot_args("chat.example.org", "/w", "/h", "");
        assert_eq!(
            args.join(" "),
            "--non-interactive --agree-tos --keep-until-expiring --cert-name chatmail \
             --webroot -w /w --deploy-hook /h -d chat.example.org \
             -d mta-sts.chat.example.org -d www.chat.example.org \
             --register-unsafely-without-email"
        );
        let args = certbot_args("x.org", "/w", "/h", " a@x.org ");
        assert_eq!(args[args.len() - 2..], ["-m", "a@x.org"]);
    }

    #[test]
    fn the_hook_reloads_through_one_replaceable_line() {
        assert_eq!(CERTBOT_DEPLOY_HOOK.matches(HOOK_RELOAD_LINE).count(), 1);
        assert!(NEWEMAIL_CGI.ends_with("--config /etc/chatmail/chatmail.ini\n"));
    }
}
