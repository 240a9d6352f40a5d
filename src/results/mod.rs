//! The record of a run and what is derived from it.
//!
//! The journal ([`journal`]) is the one record: a line per finished case, written and synced
//! before the next case starts. `run.json` ([`run_info`]) says what ran where. JUnit
//! ([`junit`]), KTAP ([`ktap`]) and the morning summary ([`summary`]) are generated from those
//! two alone, so a shard from another machine, or a run cut short by a crash, can be exported
//! later, and the shards of one suite merged into one run ([`merge()`]).

pub mod baseline;
pub mod journal;
pub mod junit;
pub mod ktap;
pub mod merge;
pub mod run_info;
pub mod summary;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::timing::Metric;
use crate::observe::kmsg::LogLine;
use crate::observe::taint::TaintChange;
use crate::util::text::io_reason;

pub use crate::model::status::Status;

pub use journal::{Journal, JOURNAL_FILE};
pub use run_info::RUN_INFO_FILE;

/// The JUnit report in a run folder.
pub const JUNIT_FILE: &str = "junit.xml";
/// The report a person reads, in a run folder.
pub const SUMMARY_FILE: &str = "summary.md";
pub use junit::write_junit;
pub use ktap::{render_ktap, write_ktap, KTAP_FILE};
pub use merge::{merge, MergeError, MergeReport};
pub use run_info::{FixtureDigest, Observer, RunInfo, ShardSpec};
pub use summary::{render_summary, write_summary};

/// One finished case: a line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseRecord {
    /// The instance name, `prefetch::to_vram::2MiB`.
    pub case: String,
    pub status: Status,
    /// The skip reason, or the failure message with its evidence and diagnosis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the case started, RFC 3339 UTC.
    pub started: String,
    pub duration_s: f64,
    /// The case's own seed (the run's seed mixed with the case name).
    pub seed: u64,
    /// Allocation kind name: `managed`, `malloc`, ...
    pub kind: String,
    /// Allocation size in bytes.
    pub size: u64,
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub evidence: Vec<String>,
    /// The one command line that repeats this case.
    pub repro: String,
    /// Which run of the case this is under `--repeat N` (1..=N); 0 when not repeated.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repetition: u32,
    /// Earlier attempts of this case that did not pass, before the one recorded (`--retries`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<Attempt>,
    /// Kernel log records attributed to the case (between its start and end markers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kernel_log: Vec<LogLine>,
    /// Taint flags the kernel gained while the case ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taint: Option<TaintChange>,
    /// The case process's output, where the case ran in a child process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<CaseOutput>,
    /// What the expectations file said of the case, where it said anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expectation: Option<ExpectationNote>,
    /// Each timing against the same case of the `--baseline` run, where one was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline: Vec<crate::results::baseline::MetricComparison>,
    /// Per rule of the fault plan in force (`--sim-faults`), how often it matched and fired
    /// while the case ran; empty without a plan.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injected: Vec<crate::device::Injected>,
    /// Where the case's allocations landed, in the order it made them, where the device knows
    /// addresses: what `--place-at` repeats and what kernel log lines are matched against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<Allocation>,
}

pub use crate::model::memory::Allocation;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One earlier attempt of a retried case.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub status: Status,
    /// The first line of its reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub started: String,
    pub duration_s: f64,
}

/// Where a child process's output went, and its last lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseOutput {
    /// Relative to the run folder: `output/<case>.stdout`.
    pub stdout_file: String,
    pub stderr_file: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// The last few KiB of each, for reports.
    pub stdout_tail: String,
    pub stderr_tail: String,
}

/// The expectations file's entry that matched a case, and what the case did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectationNote {
    /// `fail`, `flake` or `skip`.
    pub expected: String,
    /// The reason or link the file gives.
    pub reason: String,
    /// The status the case had before the expectation was applied.
    pub observed: Status,
}

impl CaseRecord {
    /// A record with nothing in it yet, to be filled in: `..CaseRecord::blank()`.
    pub fn blank() -> CaseRecord {
        CaseRecord {
            case: String::new(),
            status: Status::Notrun,
            reason: None,
            started: String::new(),
            duration_s: 0.0,
            seed: 0,
            kind: String::new(),
            size: 0,
            metrics: Vec::new(),
            evidence: Vec::new(),
            repro: String::new(),
            repetition: 0,
            retries: Vec::new(),
            kernel_log: Vec::new(),
            taint: None,
            output: None,
            expectation: None,
            baseline: Vec::new(),
            injected: Vec::new(),
            allocations: Vec::new(),
        }
    }

    /// The first line of the reason, for one-line displays; empty when there is none.
    pub fn headline(&self) -> &str {
        self.reason
            .as_deref()
            .and_then(|r| r.lines().next())
            .unwrap_or("")
    }

    /// The first `::` segment of the case name: the migration path, `prefetch`.
    pub fn suite(&self) -> &str {
        self.case.split("::").next().unwrap_or(&self.case)
    }

    /// The case without the variant segments (`::SIZE` and `::KIND` where they are the
    /// record's), what a CI interface groups instances under: `prefetch::to_vram`.
    pub fn group(&self) -> &str {
        let mut name = self.case.as_str();
        // The size is always the last segment of an instance name.
        if let Some((head, _size)) = name.rsplit_once("::") {
            name = head;
        }
        if let Some((head, kind)) = name.rsplit_once("::") {
            if kind == self.kind && head.contains("::") {
                name = head;
            }
        }
        name
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("cannot create results folder `{}`: {}", path.display(), io_reason(source))]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot open `{}` for appending: {}", path.display(), io_reason(source))]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot write `{}`: {}", path.display(), io_reason(source))]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read `{}`: {}", path.display(), io_reason(source))]
    Read { path: PathBuf, source: io::Error },
    #[error("`{}` line {line}: not a journal entry ({source}); expected one JSON object per line", path.display())]
    CorruptLine {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("`{}`: not a run description ({source}); expected the run.json svmconf writes", path.display())]
    BadRunInfo {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot encode {what} for `{}`: {message}", path.display())]
    Encode {
        path: PathBuf,
        what: &'static str,
        message: String,
    },
}

/// Now, RFC 3339 UTC to the millisecond: `2025-01-31T02:14:07.123Z`.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// `t` in RFC 3339 UTC to the millisecond.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_millisecond(t.millisecond()).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| format!("{}", t.unix_timestamp()))
}

/// Parses an RFC 3339 timestamp as written in records and run.json.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// Writes `bytes` to `path` through a synced temporary file and a rename, so that a reader
/// (the lab's CI picking up JUnit, say) never sees half a file, and a crash leaves the old one.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ResultsError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let write_err = |source| ResultsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::create(&tmp).map_err(write_err)?;
    file.write_all(bytes).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    std::fs::rename(&tmp, path).map_err(write_err)?;
    sync_dir(path.parent().unwrap_or(Path::new("."))).map_err(write_err)
}

/// Whether the reports' atomic write could write `path`, asked before anything is written: a folder
/// in its place, a parent that is missing or not a folder, and a parent where no file can be
/// made are refused, each as the write would have failed. Nothing is left behind.
pub fn check_writable(path: &Path) -> Result<(), ResultsError> {
    let refused = |source| ResultsError::Write {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(refused(io::Error::other(
            "a folder is there, a file is to be written",
        )));
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
    {
        Ok(file) => {
            drop(file);
            std::fs::remove_file(&tmp).map_err(refused)
        }
        // A temporary file left by a write that crashed: the write replaces it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => std::fs::File::options()
            .write(true)
            .open(&tmp)
            .map(drop)
            .map_err(refused),
        Err(e) => Err(refused(e)),
    }
}

/// Makes a new or renamed directory entry durable: syncing a file's data does not sync the
/// name it is reached by.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Records and run descriptions for the tests of the exports.

    use super::*;
    use crate::model::timing::Unit;

    pub fn record(case: &str, status: Status, reason: Option<&str>) -> CaseRecord {
        let kind = if case.contains("::malloc::") {
            "malloc"
        } else {
            "managed"
        };
        CaseRecord {
            case: case.to_string(),
            status,
            reason: reason.map(str::to_string),
            started: "2025-01-31T02:14:07.123Z".to_string(),
            duration_s: 0.25,
            seed: 0x5eed,
            kind: kind.to_string(),
            size: 2 << 20,
            metrics: Vec::new(),
            evidence: vec![format!(
                "{case}: all 512 pages in vram (verified by residency)"
            )],
            repro: format!("svmconf {case} --exact --seed 0x5eed --profile sim"),
            ..CaseRecord::blank()
        }
    }

    pub fn with_metric(mut r: CaseRecord) -> CaseRecord {
        r.metrics.push(Metric::new(
            "prefetch_to_vram",
            Unit::GBps,
            vec![5.9, 6.0, 6.1, 6.0, 5.8],
        ));
        r
    }

    pub fn run() -> RunInfo {
        RunInfo {
            run_id: "20250131T021400Z-lab7".to_string(),
            suite_version: "0.1.0".to_string(),
            started: "2025-01-31T02:14:00Z".to_string(),
            finished: Some("2025-01-31T02:20:00Z".to_string()),
            host: "lab7".to_string(),
            kernel_release: "6.14.0-svm-v4".to_string(),
            backend: "sim".to_string(),
            device: serde_json::json!({
                "backend": "sim",
                "name": "Reference device (profile sim)",
                "arch": "sim",
                "vram_bytes": 268435456u64,
                "gpus": 1,
            }),
            profile: "sim".to_string(),
            seed: 0x5eed,
            command_line: vec![
                "svmconf".to_string(),
                "--profile".to_string(),
                "sim".to_string(),
            ],
            fixtures: vec![FixtureDigest {
                path: "fixtures/profiles/sim.yaml".to_string(),
                sha256: "00".repeat(32),
            }],
            shard: None,
            observers: Vec::new(),
            baseline: None,
            plan: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::record;
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Status::Pass, false)]
    #[case(Status::Fail, true)]
    #[case(Status::Skip, false)]
    #[case(Status::Timeout, true)]
    #[case(Status::Crash, true)]
    #[case(Status::DmesgWarn, true)]
    #[case(Status::DmesgFail, true)]
    #[case(Status::Incomplete, true)]
    #[case(Status::Notrun, false)]
    #[case(Status::Flake, false)]
    #[case(Status::ExpectedFail, false)]
    #[case(Status::UnexpectedPass, true)]
    fn failures(#[case] status: Status, #[case] failure: bool) {
        assert_eq!(status.is_failure(), failure);
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(json, format!("\"{}\"", status.name()));
    }

    #[rstest]
    #[case("prefetch::to_vram::2MiB", "managed", "prefetch::to_vram")]
    #[case(
        "first_touch::untouched::malloc::4KiB",
        "malloc",
        "first_touch::untouched"
    )]
    #[case("eviction::device::2MiB", "managed", "eviction::device")]
    #[case("odd::4KiB", "managed", "odd")]
    fn group_drops_kind_and_size(#[case] case: &str, #[case] kind: &str, #[case] group: &str) {
        let mut r = record(case, Status::Pass, None);
        r.kind = kind.to_string();
        assert_eq!(r.group(), group);
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_rfc3339("2025-01-31T02:14:07.123456Z").unwrap();
        assert_eq!(rfc3339(t), "2025-01-31T02:14:07.123Z");
        assert!(parse_rfc3339(&now_rfc3339()).is_some());
    }
}
