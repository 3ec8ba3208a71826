//! The web front's checks of `chatmail doctor` (docs/web.md): the pages
//! answer over HTTPS on every name with a certificate a client elsewhere
//! trusts, and certbot, when it manages the certificate, keeps it current.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chatmail_config::Config;
use chatmail_snippets::nginx::NGINX_CONF;

use super::check::{Check, Status};
use crate::acme::DEPLOY_HOOK;
use crate::machine_conf::TlsFiles;
use crate::roots::Roots;

/// Where `chatmail doctor` reaches the web front, and what it trusts.
#[derive(Debug, Clone, Default)]
pub struct WebTarget {
    /// nginx's HTTPS address; `127.0.0.1:443` when unset and the server
    /// block is installed (no check otherwise).
    pub address: Option<SocketAddr>,
    /// Certificates to trust besides the system's CAs (a test CA, or a
    /// self-signed relay's own certificate), PEM.
    pub ca_file: Option<PathBuf>,
    /// certbot's configuration directory (`/etc/letsencrypt` unless set).
    pub certbot_dir: Option<PathBuf>,
}

/// Debian's bundle of the CAs the system trusts (package ca-certificates),
/// the file curl and openssl read.
pub const DEBIAN_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The CA bundle a client on this machine reads: `SSL_CERT_FILE` when set
/// (as for curl and openssl), else [`DEBIAN_CA_BUNDLE`].
pub fn system_ca_bundle() -> PathBuf {
    std::env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .map_or_else(|| DEBIAN_CA_BUNDLE.into(), PathBuf::from)
}

/// The DER bytes of each `CERTIFICATE` block of a PEM text, in order;
/// other blocks (keys) and text around the blocks are skipped, as is a
/// block that is not base64.
pub fn pem_certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = &text[..];
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let Some(end) = body.find(END) else { break };
        let b64: String = body[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &body[end + END.len()..];
    }
    out
}

/// The roots `chatmail doctor` verifies the relay's certificate against:
/// what a client elsewhere trusts, never the relay's own certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustRoots {
    /// Each root, DER.
    pub certs: Vec<Vec<u8>>,
    /// Certificates of the system's bundle left out because they are in
    /// one of the relay's own certificate files (a relay's certificate in
    /// this machine's trust store is trusted by no client elsewhere).
    pub excluded: usize,
}

/// Why [`trust_roots`] could not read a file.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The system's bundle is missing or unreadable.
    #[error("cannot read the system's CA bundle {path}: {error}")]
    Bundle {
        path: PathBuf,
        error: std::io::Error,
    },
    /// `--ca-file` is unreadable or holds no certificate.
    #[error("{path}: {error}")]
    CaFile { path: PathBuf, error: String },
}

/// The certificates of the system's CA `bundle` (Debian's
/// `ca-certificates.crt`) minus every certificate that also appears in one
/// of the relay's `own` certificate files (unreadable ones are skipped:
/// the `tls` checks report them), plus those of `ca_file`, which the
/// operator names explicitly and which may be the relay's own.
///
/// # Errors
/// An unreadable bundle, or a `ca_file` that is unreadable or holds no
/// certificate.
pub fn trust_roots(
    bundle: &Path,
    own: &[PathBuf],
    ca_file: Option<&Path>,
) -> Result<TrustRoots, TrustError> {
    let system = std::fs::read(bundle).map_err(|error| TrustError::Bundle {
        path: bundle.to_owned(),
        error,
    })?;
    let own: Vec<Vec<u8>> = own
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .flat_map(|pem| pem_certificates(&pem))
        .collect();
    let mut roots = TrustRoots::default();
    for der in pem_certificates(&system) {
        if own.contains(&der) {
            roots.excluded += 1;
        } else if !roots.certs.contains(&der) {
            roots.certs.push(der);
        }
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| TrustError::CaFile {
            path: path.to_owned(),
            error: e.to_string(),
        })?;
        let extra = pem_certificates(&pem);
        if extra.is_empty() {
            return Err(TrustError::CaFile {
                path: path.to_owned(),
                error: "no PEM certificate in it".into(),
            });
        }
        roots.certs.extend(extra);
    }
    Ok(roots)
}

/// A client that trusts exactly `roots`. A root the TLS library cannot use
/// (an odd certificate in the bundle) is left out rather than failing
/// every check, as other clients skip it.
fn client_trusting(
    builder: impl Fn() -> reqwest::ClientBuilder,
    roots: &[Vec<u8>],
) -> reqwest::Result<reqwest::Client> {
    let certs = |ders: &mut dyn Iterator<Item = &Vec<u8>>| -> Vec<reqwest::Certificate> {
        ders.filter_map(|d| reqwest::Certificate::from_der(d).ok())
            .collect()
    };
    match builder().tls_certs_only(certs(&mut roots.iter())).build() {
        Ok(client) => Ok(client),
        Err(_) => {
            let usable = |der: &&Vec<u8>| {
                reqwest::Client::builder()
                    .tls_certs_only(certs(&mut std::iter::once(*der)))
                    .build()
                    .is_ok()
            };
            builder()
                .tls_certs_only(certs(&mut roots.iter().filter(usable)))
                .build()
        }
    }
}

/// When certbot manages the relay's certificate (its `chatmail` lineage
/// exists): whether the certificate Postfix uses is the lineage's current
/// one (else the deploy hook failed after a renewal), and, under systemd,
/// whether `certbot.timer` runs (else nothing renews it).
pub fn certbot_checks(roots: &Roots, target: &WebTarget, installed: &Path) -> Vec<Check> {
    let dir = target
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
    if target.certbot_dir.is_none()
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
/// redirect, the `www.` redirect and the MTA-STS policy answer over HTTPS
/// on their names, each with a certificate a client elsewhere trusts for
/// that name: one that chains to a CA of the system's bundle (never to one
/// of the relay's `own_certs`, the files Postfix, Dovecot and nginx serve)
/// or to `--ca-file`. Relays that are self-signed by design (`_` domains,
/// IP addresses), whose clients accept any certificate, are checked
/// without verification.
pub async fn web_checks(
    config: &Config,
    roots: &Roots,
    target: &WebTarget,
    own_certs: &[PathBuf],
) -> Vec<Check> {
    let installed = roots.host(Path::new(NGINX_CONF)).exists();
    let Some(address) = target
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
    let builder = || {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5));
        for name in [
            domain.clone(),
            format!("mta-sts.{domain}"),
            format!("www.{domain}"),
        ] {
            builder = builder.resolve(&name, address);
        }
        builder
    };
    let mut out = Vec::new();
    let client = if self_signed {
        builder().tls_danger_accept_invalid_certs(true).build()
    } else {
        let mut own = own_certs.to_vec();
        let nginx_cert = roots.host(&TlsFiles::for_config(config).cert);
        if !own.contains(&nginx_cert) {
            own.push(nginx_cert);
        }
        let bundle = system_ca_bundle();
        let trusted = match trust_roots(&bundle, &own, target.ca_file.as_deref()) {
            Ok(t) => t,
            Err(e @ TrustError::Bundle { .. }) => {
                return vec![fail(
                    "web",
                    e.to_string(),
                    "apt-get install ca-certificates (or point SSL_CERT_FILE at a CA bundle)",
                )];
            }
            Err(e) => return vec![fail("web", e.to_string(), "pass a PEM certificate")],
        };
        if trusted.excluded > 0 {
            out.push(Check {
                status: Status::Info,
                name: "web trust".into(),
                detail: format!(
                    "{} holds {} of the relay's own certificates; not trusted here, as no \
                     client elsewhere trusts them",
                    bundle.display(),
                    trusted.excluded
                ),
                fix: None,
            });
        }
        client_trusting(builder, &trusted.certs)
    };
    let client = match client {
        Ok(c) => c,
        Err(e) => return vec![fail("web", error_chain(&e), "")],
    };
    let fix = format!(
        "see journalctl -u nginx and `nginx -t`; `chatmail setup --domain {domain}` renders \
         the pages and {NGINX_CONF}; a certificate error: `chatmail setup --domain {domain} \
         --acme` (and journalctl -u certbot for failed renewals)"
    );
    // Browsers are sent to the app: with the invite, or on a self-signed
    // relay with a fresh dclogin: profile (nginx's choice on a relay
    // self-signed by design; the sandbox's without an ACME server).
    let invite: &[&str] = if self_signed {
        &["dclogin:"]
    } else {
        &["dcaccount:", "dclogin:"]
    };
    let home = format!("https://{domain}{port}/");
    // nginx names the port it knows, which --https-address may not be.
    let (bare, with_port) = (format!("https://{domain}/"), format!("https://{domain}:"));
    let www = [bare.as_str(), with_port.as_str()];
    let mut checks: Vec<(&str, String, u16, &[&str])> = vec![
        ("web home", home, 200, &[]),
        (
            "web autoconfig",
            format!("https://{domain}{port}/.well-known/autoconfig/mail/config-v1.1.xml"),
            200,
            &[],
        ),
        (
            "web new",
            format!("https://{domain}{port}/new"),
            302,
            invite,
        ),
        ("web www", format!("https://www.{domain}{port}/"), 301, &www),
        (
            "web mta-sts",
            format!("https://mta-sts.{domain}{port}/.well-known/mta-sts.txt"),
            200,
            &[],
        ),
    ];
    // Other relays POST here; `chatmail mxdeliv` answers anything else with
    // 405, so 405 shows nginx reaches the running service.
    if config.accept_over_https {
        checks.push((
            "web mxdeliv",
            format!("https://{domain}{port}/mxdeliv"),
            405,
            &[],
        ));
    }
    for (name, url, want, locations) in checks {
        let check = match client.get(&url).send().await {
            Ok(r) if r.status().as_u16() == want => {
                let got = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let redirected = got
                    .as_deref()
                    .is_some_and(|g| locations.iter().any(|l| g.starts_with(l)));
                if locations.is_empty() || redirected {
                    Check {
                        status: Status::Ok,
                        name: name.into(),
                        detail: format!("{url} answers {want}"),
                        fix: None,
                    }
                } else {
                    fail(
                        name,
                        format!(
                            "{url}: redirects to {got:?}, not to {}",
                            locations.join(" or ")
                        ),
                        fix.clone(),
                    )
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

    /// A fresh self-signed certificate for `domain` (PEM), as setup makes.
    fn certificate(dir: &Path, domain: &str) -> Vec<u8> {
        let (cert, key) = (dir.join(format!("{domain}.pem")), dir.join("key.pem"));
        let out = chatmail_snippets::render::self_signed_cert_command(domain, None, &key, &cert)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        std::fs::read(cert).unwrap()
    }

    #[test]
    fn pem_blocks_are_read_in_order_and_keys_skipped() {
        let pem = b"junk\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n\
            # comment\n-----BEGIN CERTIFICATE-----\nAQID\nBA==\n-----END CERTIFICATE-----\n\
            -----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n\
            -----BEGIN CERTIFICATE-----\r\nBQY=\r\n-----END CERTIFICATE-----\r\n\
            -----BEGIN CERTIFICATE-----\nBwg=\n";
        assert_eq!(pem_certificates(pem), vec![vec![1, 2, 3, 4], vec![5, 6]]);
        assert!(pem_certificates(b"").is_empty());
    }

    #[test]
    fn the_relays_own_certificates_are_never_roots() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, relay, other) = (
            certificate(dir.path(), "ca.example"),
            certificate(dir.path(), "chat.example.org"),
            certificate(dir.path(), "other.example"),
        );
        let der = |pem: &[u8]| pem_certificates(pem).remove(0);
        // The system's bundle, which holds the relay's certificate (as
        // every PEM in /etc/ssl/certs would for a platform verifier).
        let bundle = dir.path().join("bundle.crt");
        std::fs::write(&bundle, [&ca[..], &relay[..], &ca[..]].concat()).unwrap();
        // The relay's file: its certificate, then a chain certificate
        // that is in no bundle.
        let own = dir.path().join("chatmail.pem");
        std::fs::write(&own, [&relay[..], &other[..]].concat()).unwrap();
        let missing = dir.path().join("missing.pem");

        let roots = trust_roots(&bundle, &[own.clone(), missing.clone()], None).unwrap();
        assert_eq!(
            roots,
            TrustRoots {
                certs: vec![der(&ca)],
                excluded: 1
            }
        );
        // Without the relay's files named, the bundle is taken whole.
        let all = trust_roots(&bundle, &[], None).unwrap();
        assert_eq!((all.certs, all.excluded), (vec![der(&ca), der(&relay)], 0));
        // --ca-file is trusted even when it is the relay's own certificate.
        let given = trust_roots(&bundle, std::slice::from_ref(&own), Some(&own)).unwrap();
        assert_eq!(given.certs, vec![der(&ca), der(&relay), der(&other)]);
        assert_eq!(given.excluded, 1);

        assert!(matches!(
            trust_roots(&missing, &[], None),
            Err(TrustError::Bundle { .. })
        ));
        assert!(matches!(
            trust_roots(&bundle, &[], Some(&missing)),
            Err(TrustError::CaFile { .. })
        ));
        std::fs::write(&missing, "not a certificate\n").unwrap();
        let e = trust_roots(&bundle, &[], Some(&missing)).unwrap_err();
        assert!(e.to_string().ends_with("no PEM certificate in it"), "{e}");

        // A root the TLS library cannot parse is left out, not fatal.
        let roots = [der(&ca), b"not DER".to_vec()];
        assert!(client_trusting(reqwest::Client::builder, &roots).is_ok());
    }

    #[test]
    fn the_system_bundle_is_usable_whole() {
        let bundle = Path::new(DEBIAN_CA_BUNDLE);
        let Ok(pem) = std::fs::read(bundle) else {
            return; // no ca-certificates here
        };
        let roots = pem_certificates(&pem);
        assert!(roots.len() > 50, "{}", roots.len());
        let certs = roots
            .iter()
            .map(|d| reqwest::Certificate::from_der(d).unwrap());
        reqwest::Client::builder()
            .tls_certs_only(certs)
            .build()
            .expect("every CA of the bundle parses");
    }
}
