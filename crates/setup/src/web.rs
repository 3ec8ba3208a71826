//! The relay's web front in `chatmail setup` and `chatmail doctor`
//! (docs/web.md): the pages rendered into [`WWW_ROOT`], the nginx server
//! block, the certificate from an ACME CA through Debian's certbot, and the
//! checks that the pages answer with a certificate valid for every name.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chatmail_config::Config;
use chatmail_snippets::nginx::{ACME_ROOT, NGINX_CONF, NginxSite, WWW_OVERRIDE, WWW_ROOT};

use crate::doctor::{Check, Status};
use crate::files::Roots;
use crate::render::TlsFiles;
use crate::setup::SetupError;

/// Let's Encrypt's production directory, certbot's default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// The deploy hook the package installs (shipped as `nginx/certbot-deploy.hook`).
pub const DEPLOY_HOOK: &str = "/usr/lib/chatmail-helpers/certbot-deploy.hook";

/// Where the machine-wide directories of the web front are. With `--etc
/// DIR`, setup must not write outside DIR's parent: the rendered pages
/// then go to `DIR/../var/lib/chatmail/www`.
fn var_path(roots: &Roots, etc_given: bool, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    match (etc_given, roots.etc.parent()) {
        (true, Some(parent)) => parent.join(rel),
        _ => roots.root.join(rel),
    }
}

/// The files of the web front `setup` manages: each rendered page (always
/// rewritten: the operator's copies live in [`WWW_OVERRIDE`], which nginx
/// serves first), and, when nginx is installed, its server block. The
/// second value is the service to reload when the file changed.
pub fn planned_files(
    config: &Config,
    tls: &TlsFiles,
    roots: &Roots,
    etc_given: bool,
) -> Vec<(PathBuf, String, Option<&'static str>)> {
    let mut out = Vec::new();
    let www = var_path(roots, etc_given, WWW_ROOT);
    for file in chatmail_web::render(config, &chatmail_web::Site::relay(config)) {
        out.push((www.join(file.path), file.text, None));
    }
    if roots.host(Path::new("/etc/nginx")).is_dir() {
        let site = NginxSite::relay(
            config,
            &tls.cert.display().to_string(),
            &tls.key.display().to_string(),
        );
        out.push((
            roots.host(Path::new(NGINX_CONF)),
            roots.relocate(&chatmail_snippets::nginx::nginx_conf(&site)),
            Some("nginx"),
        ));
    }
    out
}

/// Makes the operator's page directory and the ACME webroot (empty; never
/// touched again). Returns what was created.
pub fn ensure_dirs(roots: &Roots, etc_given: bool) -> std::io::Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    for dir in [
        roots.host(Path::new(WWW_OVERRIDE)),
        var_path(roots, etc_given, ACME_ROOT),
    ] {
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            made.push(dir);
        }
    }
    Ok(made)
}

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

/// Where `chatmail doctor` reaches the web front, and what it trusts.
#[derive(Debug, Clone, Default)]
pub struct WebProbe {
    /// nginx's HTTPS address; `127.0.0.1:443` when unset and the server
    /// block is installed (no check otherwise).
    pub address: Option<SocketAddr>,
    /// A CA to trust besides the system's (a test CA).
    pub ca_file: Option<PathBuf>,
    /// certbot's configuration directory (`/etc/letsencrypt` unless set).
    pub certbot_dir: Option<PathBuf>,
}

/// When certbot manages the relay's certificate (its `chatmail` lineage
/// exists): whether the certificate Postfix uses is the lineage's current
/// one (else the deploy hook failed after a renewal), and, under systemd,
/// whether `certbot.timer` runs (else nothing renews it).
pub fn certbot_checks(roots: &Roots, probe: &WebProbe, installed: &Path) -> Vec<Check> {
    let dir = probe
        .certbot_dir
        .clone()
        .unwrap_or_else(|| roots.host(Path::new("/etc/letsencrypt")));
    let lineage = dir.join("live/chatmail/fullchain.pem");
    if !dir.join("renewal/chatmail.conf").exists() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let installed_host = roots.host(installed);
    let same = match (std::fs::read(&lineage), std::fs::read(&installed_host)) {
        (Ok(a), Ok(b)) => Ok(a == b),
        (Err(e), _) => Err(format!("{}: {e}", lineage.display())),
        (_, Err(e)) => Err(format!("{}: {e}", installed_host.display())),
    };
    out.push(match same {
        Ok(true) => Check {
            status: Status::Ok,
            name: "certbot".into(),
            detail: format!(
                "{} is certbot's current certificate ({})",
                installed.display(),
                lineage.display()
            ),
            fix: None,
        },
        Ok(false) => fail(
            "certbot",
            format!(
                "{} is not certbot's current certificate {}: the deploy hook did not run                  or failed after the last renewal",
                installed.display(),
                lineage.display()
            ),
            format!(
                "RENEWED_LINEAGE={} {DEPLOY_HOOK}; see journalctl -u certbot.service",
                lineage.parent().unwrap_or(&dir).display()
            ),
        ),
        Err(e) => fail("certbot", e, "see journalctl -u certbot.service"),
    });
    if probe.certbot_dir.is_none()
        && roots.etc == Path::new("/etc")
        && Path::new("/run/systemd/system").exists()
    {
        let active = Command::new("systemctl")
            .args(["is-active", "--quiet", "certbot.timer"])
            .status()
            .is_ok_and(|s| s.success());
        out.push(if active {
            Check {
                status: Status::Ok,
                name: "certbot timer".into(),
                detail: "certbot.timer is active: renewals run twice a day".into(),
                fix: None,
            }
        } else {
            fail(
                "certbot timer",
                "certbot.timer is not active: nothing renews the certificate".into(),
                "systemctl enable --now certbot.timer",
            )
        });
    }
    out
}

/// The web front's checks: the home page, the autoconfig file, the `/new`
/// redirect and the MTA-STS policy answer over HTTPS on their names, each
/// with a certificate the client trusts for that name.
pub async fn web_checks(config: &Config, roots: &Roots, probe: &WebProbe) -> Vec<Check> {
    let installed = roots.host(Path::new(NGINX_CONF)).exists();
    let Some(address) = probe
        .address
        .or_else(|| installed.then(|| SocketAddr::from(([127, 0, 0, 1], 443))))
    else {
        return Vec::new();
    };
    let domain = config.mail_domain.clone();
    let port = match address.port() {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let self_signed = config.tls_cert().mode == chatmail_config::TlsCertMode::SelfSigned;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .danger_accept_invalid_certs(self_signed);
    for name in [
        domain.clone(),
        format!("mta-sts.{domain}"),
        format!("www.{domain}"),
    ] {
        builder = builder.resolve(&name, address);
    }
    if let Some(ca) = &probe.ca_file {
        let pem = std::fs::read(ca).unwrap_or_default();
        match reqwest::Certificate::from_pem(&pem) {
            Ok(c) => builder = builder.tls_certs_merge([c]),
            Err(e) => {
                return vec![fail(
                    "web",
                    format!("{}: {e}", ca.display()),
                    "pass a PEM CA certificate",
                )];
            }
        }
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => return vec![fail("web", e.to_string(), "")],
    };
    let fix = format!(
        "see journalctl -u nginx and `nginx -t`; `chatmail setup --domain {domain}` renders \
         the pages and {NGINX_CONF}; a certificate error: `chatmail setup --domain {domain} \
         --acme` (and journalctl -u certbot for failed renewals)"
    );
    // Browsers are sent to the app: with the invite, or on a self-signed
    // relay with a fresh dclogin: profile.
    let invite = if self_signed {
        "dclogin:"
    } else {
        "dcaccount:"
    };
    let checks: [(&str, String, u16, Option<&str>); 4] = [
        ("web home", format!("https://{domain}{port}/"), 200, None),
        (
            "web autoconfig",
            format!("https://{domain}{port}/.well-known/autoconfig/mail/config-v1.1.xml"),
            200,
            None,
        ),
        (
            "web new",
            format!("https://{domain}{port}/new"),
            302,
            Some(invite),
        ),
        (
            "web mta-sts",
            format!("https://mta-sts.{domain}{port}/.well-known/mta-sts.txt"),
            200,
            None,
        ),
    ];
    let mut out = Vec::new();
    for (name, url, want, location) in checks {
        let check = match client.get(&url).send().await {
            Ok(r) if r.status().as_u16() == want => {
                let got = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                match location {
                    Some(l) if got.as_deref().is_none_or(|g| !g.starts_with(l)) => fail(
                        name,
                        format!("{url}: redirects to {got:?}, not to a {l} URL"),
                        fix.clone(),
                    ),
                    _ => Check {
                        status: Status::Ok,
                        name: name.into(),
                        detail: format!("{url} answers {want}"),
                        fix: None,
                    },
                }
            }
            Ok(r) => fail(
                name,
                format!("{url}: {} instead of {want}", r.status()),
                fix.clone(),
            ),
            Err(e) => fail(name, format!("{url}: {}", error_chain(&e)), fix.clone()),
        };
        out.push(check);
    }
    out
}

fn fail(name: &str, detail: String, fix: impl Into<String>) -> Check {
    Check {
        status: Status::Fail,
        name: name.into(),
        detail,
        fix: Some(fix.into()),
    }
}

/// An error with its causes: reqwest's own message alone hides whether the
/// connection or the certificate failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_etc_the_pages_stay_next_to_it() {
        let roots = Roots {
            etc: "/tmp/t/etc".into(),
            root: "/".into(),
        };
        let config = chatmail_config::Config::for_tests("chat.example.org", Path::new("/m"));
        let tls = TlsFiles::for_config(&config);
        let files = planned_files(&config, &tls, &roots, true);
        assert_eq!(
            files[0].0,
            Path::new("/tmp/t/var/lib/chatmail/www/index.html")
        );
        assert!(files.iter().all(|(p, _, _)| p.starts_with("/tmp/t/")));
        let relay = planned_files(&config, &tls, &Roots::default(), false);
        assert_eq!(relay[0].0, Path::new("/var/lib/chatmail/www/index.html"));
    }

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
