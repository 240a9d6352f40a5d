//! How a case ended, in the vocabulary of igt_runner and deqp-runner: the centre every report,
//! expectation and exit code is derived from.

use serde::{Deserialize, Serialize};

/// How a case ended, in the vocabulary of igt_runner and deqp-runner.
/// Written and read by [`Status::name`], the one table of its names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Status {
    Pass,
    Fail,
    /// Could not run here: a capability, permission or device is missing; the reason says which.
    Skip,
    Timeout,
    /// The case's process died from a signal.
    Crash,
    /// Passed, but the kernel logged a warning while it ran.
    DmesgWarn,
    /// Failed, and the kernel logged an error while it ran.
    DmesgFail,
    /// The machine or the runner died during the case.
    Incomplete,
    /// Planned but never started (the run was stopped first).
    Notrun,
    /// Failed, then passed on a retry (`--retries`); or failed as a known flake of the
    /// expectations file.
    Flake,
    /// Failed as the expectations file says it does.
    ExpectedFail,
    /// The expectations file says it fails, and it passed: the list is out of date.
    UnexpectedPass,
}

impl Status {
    pub const ALL: [Status; 12] = [
        Status::Pass,
        Status::Fail,
        Status::Skip,
        Status::Timeout,
        Status::Crash,
        Status::DmesgWarn,
        Status::DmesgFail,
        Status::Incomplete,
        Status::Notrun,
        Status::Flake,
        Status::ExpectedFail,
        Status::UnexpectedPass,
    ];

    /// Whether the run should be red. A kernel warning during a migration is a kernel bug even
    /// when the data came back right, so dmesg-warn counts; skip and notrun do not, nor does a
    /// result the expectations file foresaw (expected failure, flake). An unexpected pass does:
    /// the expectations are wrong and must be updated.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Status::Pass | Status::Skip | Status::Notrun | Status::Flake | Status::ExpectedFail
        )
    }

    /// Whether the case ran and did not pass: what a retry is for, and what an expected failure
    /// must be.
    pub fn is_bad_outcome(self) -> bool {
        matches!(
            self,
            Status::Fail
                | Status::Timeout
                | Status::Crash
                | Status::DmesgWarn
                | Status::DmesgFail
                | Status::Incomplete
        )
    }

    /// The status once the kernel is found to have complained while the case ran (a flagged
    /// log line, a bad taint): pass becomes dmesg-warn and fail dmesg-fail, as igt_runner does;
    /// other statuses already say more.
    pub fn with_kernel_finding(self) -> Status {
        match self {
            Status::Pass => Status::DmesgWarn,
            Status::Fail => Status::DmesgFail,
            other => other,
        }
    }

    /// The name as written in the journal: `dmesg_warn`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Timeout => "timeout",
            Status::Crash => "crash",
            Status::DmesgWarn => "dmesg_warn",
            Status::DmesgFail => "dmesg_fail",
            Status::Incomplete => "incomplete",
            Status::Notrun => "notrun",
            Status::Flake => "flake",
            Status::ExpectedFail => "expected_fail",
            Status::UnexpectedPass => "unexpected_pass",
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<Status> for &'static str {
    fn from(s: Status) -> &'static str {
        s.name()
    }
}

impl TryFrom<String> for Status {
    type Error = String;

    fn try_from(name: String) -> Result<Status, String> {
        Status::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Status::ALL.iter().map(|s| s.name()).collect();
                format!(
                    "unknown status `{name}`, expected one of {}",
                    known.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_written_and_read_by_its_one_name() {
        for s in Status::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.name()));
            assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), s);
        }
        let e = serde_json::from_str::<Status>("\"passed\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("unknown status `passed`, expected one of pass, fail"),
            "{e}"
        );
    }
}
