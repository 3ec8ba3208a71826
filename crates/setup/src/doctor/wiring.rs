//! Whether Postfix's and Dovecot's configuration agrees with the daemons:
//! `main.cf` names the milter socket (with `milter_default_action =
//! tempfail`, docs/design.md, "Failure behaviour") and the policy socket,
//! Dovecot's passdb/userdb, METADATA and last-login dicts name the auth,
//! metadata and lastlogin sockets (docs/design.md, "Architecture"), in
//! either Dovecot dialect (docs/design.md, "Two Dovecot generations";
//! docs/dovecot-2.4.md). Also which certificates the two serve.

use std::path::{Path, PathBuf};

use crate::machine_conf::{self, DEFAULT_QUEUE_DIRECTORY};

use super::check::Check;
use super::options::DoctorOptions;

/// The `unix:` sockets a Postfix restriction list or milter list names,
/// resolved against the queue directory as Postfix does.
fn postfix_sockets(value: &str, after: Option<&str>, queue_dir: &Path) -> Vec<PathBuf> {
    let words: Vec<&str> = value
        .split(|c: char| c.is_whitespace() || c == ',' || c == '{' || c == '}')
        .filter(|w| !w.is_empty())
        .collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let Some(path) = w.strip_prefix("unix:") else {
            continue;
        };
        if after.is_some_and(|a| i == 0 || words[i - 1] != a) {
            continue;
        }
        out.push(queue_dir.join(path));
    }
    out
}

/// The `postfix milter` and `postfix policy` lines (one `postfix` line when
/// `main.cf` cannot be read).
pub(super) fn postfix_wiring(opts: &DoctorOptions) -> Vec<Check> {
    let main_cf_path = opts.main_cf();
    let fix = "run `chatmail setup --domain YOUR.DOMAIN` (it merges the shipped main.cf settings)";
    let text = match std::fs::read_to_string(&main_cf_path) {
        Ok(t) => t,
        Err(e) => {
            return vec![Check::fail(
                "postfix",
                format!("{}: {e}", main_cf_path.display()),
                "apt-get install postfix, then run `chatmail setup --domain YOUR.DOMAIN`",
            )];
        }
    };
    let queue_dir = machine_conf::main_cf_value(&text, "queue_directory")
        .unwrap_or_else(|| DEFAULT_QUEUE_DIRECTORY.into());
    let queue_dir = Path::new(&queue_dir);
    let mut checks = Vec::new();

    let milter = &opts.socket("milter");
    let milters = machine_conf::main_cf_value(&text, "smtpd_milters").unwrap_or_default();
    let action = machine_conf::main_cf_value(&text, "milter_default_action").unwrap_or_default();
    checks.push(
        if !postfix_sockets(&milters, None, queue_dir)
            .iter()
            .any(|p| p == milter)
        {
            Check::fail(
                "postfix milter",
                format!(
                    "smtpd_milters = {milters:?} does not name {}",
                    milter.display()
                ),
                fix,
            )
        } else if action != "tempfail" {
            Check::fail(
                "postfix milter",
                format!(
                    "milter_default_action = {action:?}: mail would pass unchecked while \
                     chatmail-milter is down"
                ),
                "postconf -e milter_default_action=tempfail && postfix reload",
            )
        } else {
            Check::ok(
                "postfix milter",
                format!(
                    "smtpd_milters uses {}, milter_default_action = tempfail",
                    milter.display()
                ),
            )
        },
    );

    let policy = &opts.socket("policy");
    let mut missing = Vec::new();
    for key in ["smtpd_recipient_restrictions", "smtpd_data_restrictions"] {
        let value = machine_conf::main_cf_value(&text, key).unwrap_or_default();
        if !postfix_sockets(&value, Some("check_policy_service"), queue_dir)
            .iter()
            .any(|p| p == policy)
        {
            missing.push(key);
        }
    }
    checks.push(transport_wiring(
        &text,
        queue_dir,
        &opts.socket("transport"),
        fix,
    ));
    checks.push(if missing.is_empty() {
        Check::ok(
            "postfix policy",
            format!(
                "smtpd_recipient_restrictions and smtpd_data_restrictions use {}",
                policy.display()
            ),
        )
    } else {
        Check::fail(
            "postfix policy",
            format!(
                "{} lack(s) check_policy_service unix:{}",
                missing.join(" and "),
                policy.display()
            ),
            fix,
        )
    });
    checks
}

/// Whether remote mail goes to `chatmail transport` (docs/design.md,
/// "HTTPS transport"): `default_transport` names the `chatmail-https` LMTP
/// client on its socket.
fn transport_wiring(main_cf: &str, queue_dir: &Path, socket: &Path, fix: &str) -> Check {
    let value = machine_conf::main_cf_value(main_cf, "default_transport").unwrap_or_default();
    let target = value
        .split_once(':')
        .filter(|(t, _)| *t == "chatmail-https")
        .and_then(|(_, nexthop)| nexthop.strip_prefix("unix:"))
        .map(|path| queue_dir.join(path));
    if target.as_deref() == Some(socket) {
        Check::ok(
            "postfix transport",
            format!(
                "default_transport hands remote mail to {}",
                socket.display()
            ),
        )
    } else {
        Check::fail(
            "postfix transport",
            format!(
                "default_transport = {value:?}: remote mail does not reach chatmail transport \
                 at {} (no HTTPS delivery to other relays)",
                socket.display()
            ),
            fix,
        )
    }
}

/// The Dovecot settings to check and where they come from: the output of
/// `doveconf -c FILE -n`, or the snippet file `setup` installs.
///
/// # Errors
/// The FAIL line when neither can be read.
async fn dovecot_settings(opts: &DoctorOptions, fix: &str) -> Result<(String, String), Check> {
    let Some(file) = &opts.dovecot_config else {
        let path = opts.roots.host(Path::new(machine_conf::DOVECOT_CONF_D));
        return match std::fs::read_to_string(&path) {
            Ok(text) => Ok((path.display().to_string(), text)),
            Err(e) => Err(Check::fail(
                "dovecot",
                format!("{}: {e}", path.display()),
                fix,
            )),
        };
    };
    let what = format!("doveconf -c {} -n", file.display());
    match tokio::process::Command::new("doveconf")
        .arg("-c")
        .arg(file)
        .arg("-n")
        .output()
        .await
    {
        Ok(out) if out.status.success() => {
            Ok((what, String::from_utf8_lossy(&out.stdout).into_owned()))
        }
        Ok(out) => Err(Check::fail(
            "dovecot",
            format!(
                "`{what}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            format!("fix what `{what}` reports"),
        )),
        Err(e) => Err(Check::fail(
            "dovecot",
            format!("cannot run doveconf: {e}"),
            "apt-get install dovecot-core",
        )),
    }
}

/// The Dovecot checks and the certificate Dovecot uses (if it says).
pub(super) async fn dovecot_wiring(opts: &DoctorOptions) -> (Vec<Check>, Option<PathBuf>) {
    let roots = &opts.roots;
    let fix = "run `chatmail setup --domain YOUR.DOMAIN` (it installs conf.d/90-chatmail.conf)";
    let (source, text) = match dovecot_settings(opts, fix).await {
        Ok(found) => found,
        Err(check) => return (vec![check], None),
    };
    let mut checks = Vec::new();
    let mut dict = |daemon: &str, key: &str, source: &str, text: &str| {
        let want = opts.socket(daemon);
        let name = format!("dovecot {daemon}");
        let value = machine_conf::dovecot_value(text, key);
        checks.push(match value.as_deref().and_then(machine_conf::dict_socket) {
            Some(p) if p == want => {
                Check::ok(name, format!("{key} in {source} uses {}", want.display()))
            }
            _ => Check::fail(
                name,
                format!(
                    "{key} in {source} is {value:?}, not proxy:{}:{daemon}",
                    want.display()
                ),
                fix,
            ),
        });
    };
    if machine_conf::dovecot_uses_lua_passdb(&text) {
        // Dovecot 2.4 (docs/dovecot-2.4.md): the sockets sit in named blocks.
        let sock = ["dict_proxy_socket_path", "socket_path"];
        for (daemon, anchor, keys) in [
            ("metadata", "mail_attribute", &sock[..]),
            ("lastlogin", "last_login", &sock[..]),
            ("auth", "passdb lua", &["socket"][..]),
        ] {
            let want = opts.socket(daemon);
            let name = format!("dovecot {daemon}");
            let value = machine_conf::dovecot_block_value(&text, anchor, keys);
            checks.push(match &value {
                Some(p) if Path::new(p) == want => Check::ok(
                    name,
                    format!("{anchor} in {source} uses {}", want.display()),
                ),
                _ => Check::fail(
                    name,
                    format!(
                        "{anchor} in {source} names {value:?}, not {}",
                        want.display()
                    ),
                    fix,
                ),
            });
        }
        let cert = machine_conf::dovecot_value(&text, "ssl_server_cert_file")
            .or_else(|| machine_conf::dovecot_block_value(&text, "ssl_server", &["cert_file"]))
            .map(PathBuf::from);
        return (checks, cert);
    }
    dict("metadata", "mail_attribute_dict", &source, &text);
    dict("lastlogin", "last_login_dict", &source, &text);
    // Dovecot 2.3 cannot pass the Lua passdb a socket: the script's own
    // default is the one it uses (docs/dovecot-2.4.md).
    let script = machine_conf::dovecot_value(&text, "args")
        .and_then(|args| machine_conf::lua_args_file(&args).map(str::to_owned))
        .unwrap_or_else(|| "/etc/dovecot/chatmail-auth.lua".into());
    let script_path = roots.host(Path::new(&script));
    let want = opts.socket("auth");
    checks.push(match std::fs::read_to_string(&script_path) {
        Ok(lua) => match machine_conf::lua_script_socket(&lua) {
            Some(p) if Path::new(p) == want => Check::ok(
                "dovecot auth",
                format!("{} uses {}", script_path.display(), want.display()),
            ),
            other => Check::fail(
                "dovecot auth",
                format!(
                    "{} names {other:?}, not {}",
                    script_path.display(),
                    want.display()
                ),
                fix,
            ),
        },
        Err(e) => Check::fail(
            "dovecot auth",
            format!("passdb/userdb script {}: {e}", script_path.display()),
            fix,
        ),
    });
    let cert = machine_conf::dovecot_value(&text, "ssl_cert")
        .map(|c| PathBuf::from(c.trim_start_matches('<').trim()));
    (checks, cert)
}

/// The certificates to check: the one Postfix's `main.cf` names (the
/// snippet's when it names none), then Dovecot's if it differs.
pub(super) fn certificates(opts: &DoctorOptions, dovecot_cert: Option<PathBuf>) -> Vec<PathBuf> {
    let main_cf = std::fs::read_to_string(opts.main_cf());
    let mut certs = vec![
        main_cf
            .ok()
            .and_then(|t| machine_conf::main_cf_value(&t, "smtpd_tls_cert_file"))
            .map_or_else(|| PathBuf::from(machine_conf::SNIPPET_CERT), PathBuf::from),
    ];
    if let Some(c) = dovecot_cert.filter(|c| !certs.contains(c)) {
        certs.push(c);
    }
    certs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_wiring_cases() {
        let q = Path::new("/var/spool/postfix");
        let socket = Path::new("/var/spool/postfix/chatmail/transport.socket");
        let cases = [
            (
                "default_transport = chatmail-https:unix:chatmail/transport.socket\n",
                true,
            ),
            ("default_transport = smtp\n", false),
            ("", false),
            (
                "default_transport = chatmail-https:unix:chatmail/other.socket\n",
                false,
            ),
            (
                "default_transport = lmtp:unix:chatmail/transport.socket\n",
                false,
            ),
        ];
        for (main_cf, ok) in cases {
            let check = transport_wiring(main_cf, q, socket, "fix");
            assert_eq!(
                check.status == super::super::check::Status::Ok,
                ok,
                "{main_cf:?}"
            );
        }
    }

    #[test]
    fn policy_sockets_are_found_after_check_policy_service() {
        let q = Path::new("/var/spool/postfix");
        let v = "check_policy_service { unix:chatmail/policy.socket, timeout=10s }";
        assert_eq!(
            postfix_sockets(v, Some("check_policy_service"), q),
            vec![PathBuf::from("/var/spool/postfix/chatmail/policy.socket")]
        );
        assert_eq!(
            postfix_sockets(
                "check_policy_service unix:/abs/p",
                Some("check_policy_service"),
                q
            ),
            vec![PathBuf::from("/abs/p")]
        );
        assert!(postfix_sockets("permit unix:x", Some("check_policy_service"), q).is_empty());
    }
}
