//! The DKIM key file: loading the PEM files `opendkim-genkey` writes
//! (PKCS#1 `RSA PRIVATE KEY`, or PKCS#8 `PRIVATE KEY` with newer OpenSSL),
//! creating a new 2048-bit key without ever replacing one, and the DNS TXT
//! record value (`v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo, base64>`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::DkimError;

/// Size of keys we create: RFC 8301 recommends 2048 bits, and a 2048-bit
/// key's record fits the DNS providers operators use.
pub const KEY_BITS: usize = 2048;

/// The smallest key we sign with (RFC 8301: verifiers reject smaller).
pub const MIN_KEY_BITS: usize = 1024;

/// Parses a PEM private key, PKCS#1 or PKCS#8.
///
/// # Errors
/// When the text is neither, or the key is under [`MIN_KEY_BITS`].
pub fn parse_key(pem: &str) -> Result<RsaPrivateKey, DkimError> {
    let key = if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| DkimError::Key(e.to_string()))?
    } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| DkimError::Key(e.to_string()))?
    } else {
        return Err(DkimError::Key(
            "no PEM \"RSA PRIVATE KEY\" or \"PRIVATE KEY\" block".into(),
        ));
    };
    let bits = key.size() * 8;
    if bits < MIN_KEY_BITS {
        return Err(DkimError::Key(format!(
            "{bits}-bit key: at least {MIN_KEY_BITS} bits needed"
        )));
    }
    Ok(key)
}

/// Reads and parses the key at `path`.
///
/// # Errors
/// When the file cannot be read or holds no usable key; the error names
/// the path.
pub fn load_key(path: &Path) -> Result<RsaPrivateKey, DkimError> {
    let text = fs::read_to_string(path).map_err(|e| DkimError::KeyFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    parse_key(&text).map_err(|e| DkimError::KeyFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// What [`create_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// A new key was written.
    New,
    /// A key file was already there; it was left alone.
    Kept,
}

/// Creates a [`KEY_BITS`] RSA key at `path` (PKCS#1 PEM, mode 0640, group
/// `gid` when given) unless a file is already there: an existing key is
/// never replaced, since its public half is in DNS.
///
/// The key is written to a temporary file next to `path` and linked into
/// place, so a crash leaves no half-written key, and two concurrent runs
/// cannot both win.
///
/// # Errors
/// When the directory is not writable or the key cannot be generated.
pub fn create_key(path: &Path, gid: Option<u32>) -> Result<Created, DkimError> {
    let err = |e: std::io::Error| DkimError::KeyFile {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    if path.symlink_metadata().is_ok() {
        return Ok(Created::Kept);
    }
    let mut rng = rsa::rand_core::OsRng;
    let key = RsaPrivateKey::new(&mut rng, KEY_BITS).map_err(|e| DkimError::Key(e.to_string()))?;
    let pem = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| DkimError::Key(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    let written = (|| {
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
        if let Some(gid) = gid {
            std::os::unix::fs::fchown(&f, None, Some(gid))?;
        }
        f.set_permissions(fs::Permissions::from_mode(0o640))?;
        // hard_link fails if `path` appeared meanwhile: never overwrite.
        fs::hard_link(&tmp, path)
    })();
    let _ = fs::remove_file(&tmp);
    match written {
        Ok(()) => Ok(Created::New),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Created::Kept),
        Err(e) => Err(err(e)),
    }
}

/// The group the signing milter runs with: the only one that may read the
/// relay's key.
pub const KEY_GROUP: &str = "postfix";

/// Creates the relay's key at `path` unless a file is already there, as
/// [`create_key`] does, readable by the group [`KEY_GROUP`] when it exists.
/// A missing key directory is created with mode 0750 and that group, so the
/// milter reaches the key and nobody else does; an existing one is left as
/// it is. `chatmail setup` and `chatmail sandbox` both make their key here.
///
/// # Errors
/// When the directory cannot be created, or as [`create_key`].
pub fn create_relay_key(path: &Path) -> Result<Created, DkimError> {
    let gid = nix::unistd::Group::from_name(KEY_GROUP)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw());
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir.filter(|d| !d.exists()) {
        let err = |e: std::io::Error| DkimError::KeyFile {
            path: dir.to_owned(),
            reason: e.to_string(),
        };
        fs::create_dir_all(dir).map_err(err)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o750)).map_err(err)?;
        if let Some(gid) = gid {
            // Not fatal here: without the right to change it, `create_key`
            // fails on the key file's group and says why.
            let _ = std::os::unix::fs::chown(dir, None, Some(gid));
        }
    }
    create_key(path, gid)
}

/// The value of the `<selector>._domainkey.<domain>` TXT record for `key`.
pub fn txt_record(key: &RsaPrivateKey) -> String {
    let der = RsaPublicKey::from(key)
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .unwrap_or_default();
    format!("v=DKIM1; k=rsa; p={}", BASE64.encode(der))
}

/// `value` as the character-strings of a TXT record in zone-file syntax:
/// quoted pieces of at most 255 bytes (RFC 1035 3.3.14), space-separated.
pub fn zone_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opendkim.private");
        assert_eq!(create_key(&path, None).unwrap(), Created::New);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        let first = fs::read(&path).unwrap();
        assert!(first.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
        let key = load_key(&path).unwrap();
        assert_eq!(key.size() * 8, KEY_BITS);
        assert_eq!(create_key(&path, None).unwrap(), Created::Kept);
        assert_eq!(fs::read(&path).unwrap(), first);
        // Nothing left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        // The PKCS#8 form of the same key loads to the same key.
        let pkcs8 = rsa::pkcs8::EncodePrivateKey::to_pkcs8_pem(&key, LineEnding::LF).unwrap();
        assert_eq!(parse_key(&pkcs8).unwrap(), key);

        let txt = txt_record(&key);
        assert!(txt.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"), "{txt}");
        let zone = zone_strings(&txt);
        assert!(zone.split("\" \"").all(|s| s.len() <= 257), "{zone}");
        assert_eq!(zone.replace("\" \"", "").trim_matches('"'), txt);
    }

    #[test]
    fn the_relay_key_gets_a_private_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dkimkeys/opendkim.private");
        // The group is only set where it exists and may be given.
        if nix::unistd::Group::from_name(KEY_GROUP)
            .ok()
            .flatten()
            .is_none()
        {
            assert_eq!(create_relay_key(&path).unwrap(), Created::New);
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(path.parent().unwrap()), 0o750);
            assert_eq!(mode(&path), 0o640);
            assert_eq!(create_relay_key(&path).unwrap(), Created::Kept);
        }
    }

    #[test]
    fn bad_keys() {
        for (pem, want) in [
            ("", "no PEM"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                "",
            ),
            (
                "-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
                "",
            ),
        ] {
            let e = parse_key(pem).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        let e = load_key(Path::new("/nonexistent/key"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/key"), "{e}");
    }
}
