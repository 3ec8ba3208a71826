//! One line of `chatmail doctor`'s report: a check's verdict, what was
//! seen and how to fix it, and the report that holds them all.

use std::fmt;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Fine.
    Ok,
    /// Broken: mail is refused, deferred or insecure until fixed.
    Fail,
    /// Neither: a state the operator should know about.
    Info,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The verdict.
    pub status: Status,
    /// What was checked, e.g. `socket auth`.
    pub name: String,
    /// What was found.
    pub detail: String,
    /// How to fix it (for [`Status::Fail`]).
    pub fix: Option<String>,
}

impl Check {
    /// A passed check.
    pub(super) fn ok(name: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            status: Status::Ok,
            name: name.into(),
            detail: detail.into(),
            fix: None,
        }
    }

    /// A failed check with its fix.
    pub(super) fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Check {
        Check {
            status: Status::Fail,
            name: name.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Every check's result, in the order they ran.
#[derive(Debug, Clone, Default)]
pub struct DoctorReport {
    /// The checks.
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// True when no check failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The process exit code: 0 when everything is fine, 1 when a check
    /// failed.
    pub fn exit_code(&self) -> i32 {
        if self.ok() { 0 } else { 1 }
    }
}

impl fmt::Display for DoctorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let status = match c.status {
                Status::Ok => "OK",
                Status::Fail => "FAIL",
                Status::Info => "INFO",
            };
            writeln!(f, "{status} {}: {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(f, "     fix: {fix}")?;
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        if failed == 0 {
            writeln!(f, "all {} checks passed", self.checks.len())
        } else {
            writeln!(f, "{failed} of {} checks failed", self.checks.len())
        }
    }
}
