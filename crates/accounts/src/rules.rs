//! The account-creation rules of docs/design.md ("The rules" → "Account creation"),
//! as plain functions over plain values: no I/O, so every rule is unit-tested
//! with a case table.

use std::fmt;

use chatmail_config::Config;

/// Longest password accepted at any login, in bytes. SHA512-crypt's cost
/// grows with the password's length (a 64 KiB one costs seconds of CPU), so
/// longer ones are refused before anything hashes them. chatmaild sets no
/// maximum; the passwords Delta Chat generates are a few dozen characters.
pub const MAX_PASSWORD_BYTES: usize = 256;

/// What the machine has left, as measured by a [`crate::meter::ResourceMeter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resources {
    /// The 1-minute load average.
    pub load_1m: f64,
    /// Memory available to new processes, in bytes (`MemAvailable`).
    pub available_memory: u64,
    /// Free disk space for unprivileged users where the mailboxes live, in bytes.
    pub free_disk: u64,
}

/// Why a new account was not created. Displayed in the log line of the refusal;
/// never carries the password.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The operator's nocreate file exists.
    NoCreate,
    /// The localpart is shorter or longer than the configured bounds.
    LocalpartLength { len: usize, min: usize, max: usize },
    /// The localpart has characters outside `[a-z0-9._-]`.
    LocalpartChars,
    /// The password is shorter than `password_min_length`.
    PasswordTooShort { len: usize, min: usize },
    /// The password is longer than [`MAX_PASSWORD_BYTES`].
    PasswordTooLong { len: usize, max: usize },
    /// The 1-minute load average is above `max_load_1m`.
    Load { load: f64, max: f64 },
    /// Available memory is below `min_available_memory`.
    Memory { available: u64, min: u64 },
    /// Free disk space is below `min_free_disk_space`.
    Disk { free: u64, min: u64 },
    /// The machine could not be measured: no answer either way, the login
    /// fails temporarily.
    Unmeasured,
    /// Whether the nocreate file exists could not be determined.
    Undecided,
}

impl Refusal {
    /// Whether the refusal is only that we cannot decide now (a temporary
    /// failure, `F`) rather than a rule that says no (`N`).
    pub fn is_temporary(&self) -> bool {
        matches!(self, Refusal::Unmeasured | Refusal::Undecided)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoCreate => write!(f, "account creation is disabled (nocreate file)"),
            Refusal::LocalpartLength { len, min, max } => {
                write!(f, "localpart has {len} characters, allowed {min} to {max}")
            }
            Refusal::LocalpartChars => {
                write!(f, "localpart has characters outside [a-z0-9._-]")
            }
            Refusal::PasswordTooShort { len, min } => {
                write!(f, "password has {len} characters, at least {min} needed")
            }
            Refusal::PasswordTooLong { len, max } => {
                write!(f, "password has {len} bytes, at most {max} allowed")
            }
            Refusal::Load { load, max } => write!(f, "load average {load:.2} above {max}"),
            Refusal::Memory { available, min } => {
                write!(f, "available memory {available} bytes below {min}")
            }
            Refusal::Disk { free, min } => write!(f, "free disk {free} bytes below {min}"),
            Refusal::Unmeasured => write!(f, "cannot measure load, memory or disk"),
            Refusal::Undecided => write!(f, "cannot check the nocreate file"),
        }
    }
}

/// Checks the password's length before any login, new account or not.
///
/// # Errors
/// [`Refusal::PasswordTooLong`] beyond [`MAX_PASSWORD_BYTES`].
pub fn check_password_length(password: &str) -> Result<(), Refusal> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Refusal::PasswordTooLong {
            len: password.len(),
            max: MAX_PASSWORD_BYTES,
        });
    }
    Ok(())
}

impl Refusal {
    /// The rule's name in metrics (`chatmail_auth_refusals_total{rule}`).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::NoCreate => "nocreate",
            Refusal::LocalpartLength { .. } => "localpart_length",
            Refusal::LocalpartChars => "localpart_chars",
            Refusal::PasswordTooShort { .. } => "password_too_short",
            Refusal::PasswordTooLong { .. } => "password_too_long",
            Refusal::Load { .. } => "load",
            Refusal::Memory { .. } => "memory",
            Refusal::Disk { .. } => "disk",
            Refusal::Unmeasured => "unmeasured",
            Refusal::Undecided => "undecided",
        }
    }
}

/// Checks what can be checked without measuring the machine: the nocreate
/// switch, the localpart and the password length.
///
/// # Errors
/// The first rule the request breaks.
pub fn check_request(
    config: &Config,
    nocreate: bool,
    localpart: &str,
    password: &str,
) -> Result<(), Refusal> {
    if nocreate {
        return Err(Refusal::NoCreate);
    }
    let len = localpart.chars().count();
    let (min, max) = (config.username_min_length, config.username_max_length);
    if len < min || len > max {
        return Err(Refusal::LocalpartLength { len, min, max });
    }
    if !localpart
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Refusal::LocalpartChars);
    }
    let len = password.chars().count();
    if len < config.password_min_length {
        return Err(Refusal::PasswordTooShort {
            len,
            min: config.password_min_length,
        });
    }
    Ok(())
}

/// Checks that the machine can take another account.
///
/// # Errors
/// The first limit the machine is past.
pub fn check_resources(config: &Config, res: &Resources) -> Result<(), Refusal> {
    check_load(config, res.load_1m)?;
    check_memory(config, res.available_memory)?;
    check_disk(config, res.free_disk)
}

/// The load rule alone: `load_1m` may reach `max_load_1m`, not exceed it.
///
/// # Errors
/// [`Refusal::Load`] when the load is above the limit.
pub fn check_load(config: &Config, load_1m: f64) -> Result<(), Refusal> {
    if load_1m > config.max_load_1m {
        return Err(Refusal::Load {
            load: load_1m,
            max: config.max_load_1m,
        });
    }
    Ok(())
}

/// The memory rule alone (`chatmail doctor` reports it on its own line).
///
/// # Errors
/// [`Refusal::Memory`] when less than `min_available_memory` is available.
pub fn check_memory(config: &Config, available: u64) -> Result<(), Refusal> {
    if available < config.min_available_memory.bytes {
        return Err(Refusal::Memory {
            available,
            min: config.min_available_memory.bytes,
        });
    }
    Ok(())
}

/// The disk rule alone (`chatmail doctor` reports it on its own line).
///
/// # Errors
/// [`Refusal::Disk`] when less than `min_free_disk_space` is free.
pub fn check_disk(config: &Config, free: u64) -> Result<(), Refusal> {
    if free < config.min_free_disk_space.bytes {
        return Err(Refusal::Disk {
            free,
            min: config.min_free_disk_space.bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        Config::for_tests("example.org", Path::new("/nonexistent"))
    }

    #[test]
    fn request_rules() {
        let c = config();
        let ok = "abcdefghi";
        let pw = "123456789";
        let cases: &[(bool, &str, &str, Result<(), Refusal>)] = &[
            (false, ok, pw, Ok(())),
            (false, "a1b2c3d4e", pw, Ok(())),
            (false, "a.b_c-d9z", pw, Ok(())),
            (true, ok, pw, Err(Refusal::NoCreate)),
            (
                false,
                "abcdefgh",
                pw,
                Err(Refusal::LocalpartLength {
                    len: 8,
                    min: 9,
                    max: 9,
                }),
            ),
            (
                false,
                "abcdefghij",
                pw,
                Err(Refusal::LocalpartLength {
                    len: 10,
                    min: 9,
                    max: 9,
                }),
            ),
            (false, "abcdEfghi", pw, Err(Refusal::LocalpartChars)),
            (false, "abcd+fghi", pw, Err(Refusal::LocalpartChars)),
            (false, "abcd fghi", pw, Err(Refusal::LocalpartChars)),
            (false, "abcd\"fghi", pw, Err(Refusal::LocalpartChars)),
            (
                false,
                ok,
                "12345678",
                Err(Refusal::PasswordTooShort { len: 8, min: 9 }),
            ),
            (
                false,
                ok,
                "",
                Err(Refusal::PasswordTooShort { len: 0, min: 9 }),
            ),
            // nocreate wins over every other reason
            (true, "x", "", Err(Refusal::NoCreate)),
        ];
        for (nocreate, local, pw, want) in cases {
            assert_eq!(
                check_request(&c, *nocreate, local, pw),
                *want,
                "{local:?} {pw:?}"
            );
        }
    }

    #[test]
    fn password_length_cap_counts_bytes() {
        let cases = [
            (String::new(), Ok(())),
            ("x".repeat(256), Ok(())),
            // 128 two-byte characters are 256 bytes.
            ("\u{e9}".repeat(128), Ok(())),
            (
                "\u{e9}".repeat(129),
                Err(Refusal::PasswordTooLong { len: 258, max: 256 }),
            ),
            (
                "x".repeat(257),
                Err(Refusal::PasswordTooLong { len: 257, max: 256 }),
            ),
            (
                "x".repeat(65_000),
                Err(Refusal::PasswordTooLong {
                    len: 65_000,
                    max: 256,
                }),
            ),
        ];
        for (pw, want) in cases {
            assert_eq!(check_password_length(&pw), want, "{}", pw.len());
        }
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        // 9 characters, 18 bytes: still refused, but for the charset.
        let c = config();
        assert_eq!(
            check_request(&c, false, "ääääääääää", "123456789"),
            Err(Refusal::LocalpartLength {
                len: 10,
                min: 9,
                max: 9
            })
        );
        assert_eq!(
            check_request(&c, false, "äääääääää", "123456789"),
            Err(Refusal::LocalpartChars)
        );
    }

    #[test]
    fn resource_rules() {
        let c = config();
        let good = Resources {
            load_1m: 0.5,
            available_memory: 8 << 30,
            free_disk: 100 << 30,
        };
        let cases = [
            (good, Ok(())),
            (
                Resources {
                    load_1m: 5.0,
                    ..good
                },
                Ok(()),
            ),
            (
                Resources {
                    load_1m: 5.01,
                    ..good
                },
                Err(Refusal::Load {
                    load: 5.01,
                    max: 5.0,
                }),
            ),
            (
                Resources {
                    available_memory: 200 << 20,
                    ..good
                },
                Ok(()),
            ),
            (
                Resources {
                    available_memory: (200 << 20) - 1,
                    ..good
                },
                Err(Refusal::Memory {
                    available: (200 << 20) - 1,
                    min: 200 << 20,
                }),
            ),
            (
                Resources {
                    free_disk: (1 << 30) - 1,
                    ..good
                },
                Err(Refusal::Disk {
                    free: (1 << 30) - 1,
                    min: 1 << 30,
                }),
            ),
        ];
        for (res, want) in cases {
            assert_eq!(check_resources(&c, &res), want, "{res:?}");
        }
    }

    #[test]
    fn refusals_never_show_the_password() {
        let r = Refusal::PasswordTooShort { len: 3, min: 9 };
        assert_eq!(
            r.to_string(),
            "password has 3 characters, at least 9 needed"
        );
    }
}
