//! Credentials: the `{SHA512-CRYPT}` hashes stored in each mailbox's
//! `password` file (glibc `crypt()` format, which Dovecot verifies), and
//! fresh random credentials that the creation rules admit.

use std::io;

use chatmail_config::Config;
use sha_crypt::{PasswordHasher, ShaCrypt};

/// Hashes a password the way glibc `crypt()` does for `$6$` with a fresh
/// 16-character salt, prefixed with Dovecot's scheme name.
///
/// The salt is 12 random bytes, which is exactly 16 characters of crypt's
/// base64; longer salts are truncated differently by glibc and the
/// `sha-crypt` crate, so Dovecot would reject the hash.
///
/// # Errors
/// When the system's random source fails.
pub fn hash_password(password: &str) -> io::Result<String> {
    let mut salt = [0u8; 12];
    getrandom::fill(&mut salt).map_err(|e| io::Error::other(e.to_string()))?;
    let hash = ShaCrypt::SHA512
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map_err(|e| io::Error::other(e.to_string()))?
        .to_string();
    // glibc leaves out the default `rounds=5000$`, which changes nothing in
    // the computation; leave it out too so hashes look like chatmaild's.
    let hash = hash.replacen("$rounds=5000$", "$", 1);
    Ok(format!("{{SHA512-CRYPT}}{hash}"))
}

/// Fresh random credentials that the rules admit: a localpart of
/// `username_max_length` characters from `[a-z0-9]` and a password of
/// `password_min_length + 3` characters, both from the OS CSPRNG.
///
/// # Errors
/// When the system's random source fails.
pub fn fresh_credentials(config: &Config) -> io::Result<(String, String)> {
    const LOCAL: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    const PASSWORD: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
    let pick = |alphabet: &[u8], len: usize| -> io::Result<String> {
        let mut out = String::with_capacity(len);
        while out.len() < len {
            let mut byte = [0u8; 1];
            getrandom::fill(&mut byte).map_err(|e| io::Error::other(e.to_string()))?;
            // Rejection sampling keeps every character equally likely.
            let limit = 256 - 256 % alphabet.len();
            if usize::from(byte[0]) < limit {
                out.push(char::from(alphabet[usize::from(byte[0]) % alphabet.len()]));
            }
        }
        Ok(out)
    };
    let localpart = pick(LOCAL, config.username_max_length.max(1))?;
    let password = pick(PASSWORD, config.password_min_length + 3)?;
    Ok((format!("{localpart}@{}", config.address_domain()), password))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha_crypt::PasswordVerifier;
    use std::path::Path;

    #[test]
    fn hash_has_glibc_shape_and_verifies() {
        let h = hash_password("a password").unwrap();
        let crypt = h.strip_prefix("{SHA512-CRYPT}$6$").unwrap();
        let (salt, digest) = crypt.split_once('$').unwrap();
        assert_eq!(salt.len(), 16);
        assert_eq!(digest.len(), 86);
        let mcf = h.strip_prefix("{SHA512-CRYPT}").unwrap();
        ShaCrypt::SHA512
            .verify_password(b"a password", mcf)
            .unwrap();
        assert!(ShaCrypt::SHA512.verify_password(b"other", mcf).is_err());
        assert_ne!(
            h,
            hash_password("a password").unwrap(),
            "salt must be random"
        );
    }

    #[test]
    fn glibc_reference_vector() {
        // From glibc's crypt-sha512 test: salt "saltstring", 5000 rounds implied.
        let out = sha_crypt::ShaCrypt::SHA512
            .verify_password(
                b"Hello world!",
                "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            );
        assert!(out.is_ok());
    }

    #[test]
    fn fresh_credentials_are_admissible() {
        let config = Config::for_tests("example.org", Path::new("/nonexistent"));
        let (addr, password) = fresh_credentials(&config).unwrap();
        let (local, domain) = addr.split_once('@').unwrap();
        assert_eq!(domain, "example.org");
        assert_eq!(local.len(), config.username_max_length);
        assert_eq!(password.len(), config.password_min_length + 3);
        assert_eq!(
            crate::rules::check_request(&config, false, local, &password),
            Ok(())
        );
        assert_ne!(fresh_credentials(&config).unwrap().0, addr);
    }
}
