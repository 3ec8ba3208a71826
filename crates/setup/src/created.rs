//! What `chatmail setup` creates rather than renders: the self-signed
//! certificate, the DKIM key and the mailboxes directory. Each is made once
//! and never replaced.

use std::io::{self, Write};
use std::path::Path;
use std::process::Command;

use crate::error::{SetupError, io_err, wln};
use crate::services;

/// The same kind of certificate the sandbox makes (and chatmaild's
/// self-signed mode): P-256, ten years, the domain as CN and SAN.
pub(crate) fn self_signed_certificate(
    domain: &str,
    cert: &Path,
    key: &Path,
) -> Result<(), SetupError> {
    use std::os::unix::fs::DirBuilderExt;
    // A missing key directory is made private, like Debian's /etc/ssl/private.
    for (dir, mode) in [(cert.parent(), 0o755), (key.parent(), 0o700)] {
        if let Some(dir) = dir.filter(|d| !d.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(io_err("creating", dir))?;
        }
    }
    // openssl writes the key with the umask; make it private from the start
    // by writing into a private temp name, then renaming.
    let key_tmp = key.with_extension("key.chatmail-setup.tmp");
    let cert_tmp = cert.with_extension("pem.chatmail-setup.tmp");
    let mut cmd =
        chatmail_snippets::render::self_signed_cert_command(domain, None, &key_tmp, &cert_tmp);
    let result = run_command(&mut cmd, "openssl req -x509 ...");
    if let Err(e) = result {
        let _ = std::fs::remove_file(&key_tmp);
        let _ = std::fs::remove_file(&cert_tmp);
        return Err(e);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err("chmod", &key_tmp))?;
    std::fs::set_permissions(&cert_tmp, std::fs::Permissions::from_mode(0o644))
        .map_err(io_err("chmod", &cert_tmp))?;
    std::fs::rename(&key_tmp, key).map_err(io_err("writing", key))?;
    std::fs::rename(&cert_tmp, cert).map_err(io_err("writing", cert))
}

/// Creates the DKIM key when there is none (`chatmail_dkim::create_relay_key`:
/// 2048-bit RSA, readable by the group the signing milter runs with). An existing key
/// is never touched: its public half is in DNS. Returns the service to
/// restart when a key was created.
pub(crate) fn ensure_dkim_key(
    key: &Path,
    dry_run: bool,
    out: &mut dyn Write,
) -> Result<Option<&'static str>, SetupError> {
    if key.symlink_metadata().is_ok() {
        wln(out, format_args!("unchanged DKIM key {}", key.display()))?;
        return Ok(None);
    }
    if dry_run {
        wln(out, format_args!("would create DKIM key {}", key.display()))?;
        return Ok(Some("chatmail-milter"));
    }
    chatmail_dkim::create_relay_key(key).map_err(|e| SetupError::Io {
        what: "creating the DKIM key",
        path: key.to_owned(),
        source: io::Error::other(e.to_string()),
    })?;
    wln(
        out,
        format_args!(
            "created DKIM key {} (publish its record: chatmail dns)",
            key.display()
        ),
    )?;
    Ok(Some("chatmail-milter"))
}

pub(crate) fn ensure_mailboxes_dir(dir: &Path, out: &mut dyn Write) -> Result<(), SetupError> {
    if dir.exists() {
        return Ok(());
    }
    let Some(vmail) = nix::unistd::User::from_name("vmail").ok().flatten() else {
        return wln(
            out,
            format_args!(
                "warning: no vmail user, so {} was not created (the package's postinst makes it)",
                dir.display()
            ),
        );
    };
    std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    nix::unistd::chown(dir, Some(vmail.uid), Some(vmail.gid)).map_err(|e| SetupError::Io {
        what: "chown",
        path: dir.to_owned(),
        source: e.into(),
    })?;
    wln(out, format_args!("created {} (owner vmail)", dir.display()))
}

fn run_command(cmd: &mut Command, shown: &str) -> Result<(), SetupError> {
    services::command_status(cmd).map_err(|detail| SetupError::Command {
        command: shown.to_owned(),
        detail,
    })
}
