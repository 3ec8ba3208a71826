//! The relay's certificate from an ACME CA in `chatmail setup --acme`
//! (docs/web.md): Debian's certbot, HTTP-01 through nginx, and the refusal
//! for relays no public CA would issue a certificate for.

use std::io::Write;
use std::path::Path;
use std::process::Command;

use chatmail_config::Config;
use chatmail_snippets::nginx::{ACME_ROOT, NGINX_CONF};

use crate::error::SetupError;
use crate::machine_conf::TlsFiles;

/// Let's Encrypt's production directory, certbot's default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The deploy hook the package installs (shipped as `nginx/certbot-deploy.hook`).
pub const DEPLOY_HOOK: &str = "/usr/lib/chatmail-helpers/certbot-deploy.hook";

/// The certbot command that gets (or keeps) the relay's certificate.
pub fn certbot_command(config: &Config, directory: &str) -> Vec<String> {
    let mut args = vec!["certbot".to_owned(), "certonly".to_owned()];
    args.extend(chatmail_snippets::certbot::certbot_args(
        &config.mail_domain,
        ACME_ROOT,
        DEPLOY_HOOK,
        &config.acme_email,
    ));
    args.push("--server".into());
    args.push(directory.to_owned());
    args
}

/// Why a relay cannot get its certificate from an ACME CA, if it cannot.
pub fn acme_refusal(config: &Config, tls: &TlsFiles) -> Option<String> {
    if tls.external {
        Some(format!(
            "tls_external_cert_and_key names {}: that certificate is managed elsewhere; \
             remove the key from chatmail.ini to use --acme",
            tls.cert.display()
        ))
    } else if config.mail_domain.starts_with('_') || config.ipv4_relay().is_some() {
        Some(format!(
            "{} cannot get a certificate from a public CA (test domain or IP address); \
             it keeps its self-signed one",
            config.mail_domain
        ))
    } else {
        None
    }
}

/// Gets the certificate from the ACME CA at `directory` with certbot
/// (HTTP-01 through nginx, which must already serve the challenge webroot)
/// and makes sure certbot's renewal timer runs. With `run` false the
/// commands are only printed.
///
/// # Errors
/// certbot missing, or certbot or systemctl failing.
pub fn acme(
    config: &Config,
    directory: &str,
    run: bool,
    out: &mut dyn Write,
) -> Result<Vec<String>, SetupError> {
    let certbot = certbot_command(config, directory);
    let commands = vec![
        certbot.join(" "),
        "systemctl enable --now certbot.timer".to_owned(),
    ];
    if !run {
        for c in &commands {
            let _ = writeln!(out, "to run: {c}");
        }
        return Ok(commands);
    }
    // HTTP-01 is answered by nginx from the challenge webroot.
    for (path, package) in [("/usr/bin/certbot", "certbot"), (NGINX_CONF, "nginx")] {
        if !Path::new(path).exists() {
            return Err(SetupError::NotInstalled {
                path: path.into(),
                package,
            });
        }
    }
    let _ = writeln!(out, "running {} (HTTP-01 through nginx)", commands[0]);
    let output = Command::new(&certbot[0])
        .args(&certbot[1..])
        .output()
        .map_err(|e| SetupError::Command {
            command: commands[0].clone(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(SetupError::Command {
            command: commands[0].clone(),
            detail: format!(
                "{}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let _ = out.write_all(&output.stdout);
    let _ = writeln!(out, "running {}", commands[1]);
    let status = Command::new("systemctl")
        .args(["enable", "--now", "certbot.timer"])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        let _ = writeln!(
            out,
            "warning: could not enable certbot.timer; renewals need it (or cron)"
        );
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acme_is_refused_where_no_ca_would_issue() {
        let ok = chatmail_config::Config::for_tests("chat.example.org", Path::new("/m"));
        assert_eq!(acme_refusal(&ok, &TlsFiles::for_config(&ok)), None);
        for domain in ["_test.example.org", "192.0.2.1"] {
            let c = chatmail_config::Config::for_tests(domain, Path::new("/m"));
            assert!(
                acme_refusal(&c, &TlsFiles::for_config(&c)).is_some(),
                "{domain}"
            );
        }
        let ext = TlsFiles {
            cert: "/c".into(),
            key: "/k".into(),
            external: true,
        };
        assert!(
            acme_refusal(&ok, &ext)
                .unwrap()
                .contains("tls_external_cert_and_key")
        );
        assert_eq!(
            certbot_command(&ok, LETS_ENCRYPT)[..2],
            ["certbot", "certonly"]
        );
        assert!(
            certbot_command(&ok, LETS_ENCRYPT)
                .join(" ")
                .ends_with(&format!("--server {LETS_ENCRYPT}"))
        );
    }
}
