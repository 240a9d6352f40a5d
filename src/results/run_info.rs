//! `run.json`: what ran, where, when and with which fixtures. Written when a run starts, so a
//! run that never finishes is still described, and written again with `finished` at the end.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{now_rfc3339, write_atomically, CaseRecord, ResultsError};
use crate::device::DeviceInfo;
pub use crate::fixtures::FixtureDigest;
/// Defined beside its parser and the hash that assigns cases to shards.
pub use crate::model::shard::ShardSpec;

/// The run description's file name inside a results folder.
pub const RUN_INFO_FILE: &str = "run.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub run_id: String,
    /// The svmconf version that ran (CARGO_PKG_VERSION).
    pub suite_version: String,
    /// RFC 3339 UTC.
    pub started: String,
    /// RFC 3339 UTC; absent while running and after a crash.
    #[serde(default)]
    pub finished: Option<String>,
    pub host: String,
    /// `uname -r`: the kernel under test.
    pub kernel_release: String,
    pub backend: String,
    /// The backend's DeviceInfo as it reported itself.
    pub device: serde_json::Value,
    /// The profile's name.
    pub profile: String,
    pub seed: u64,
    pub command_line: Vec<String>,
    pub fixtures: Vec<FixtureDigest>,
    /// `--shard K/N`: which part of the suite this run holds; absent for a whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardSpec>,
    /// What the runner could and could not observe (kernel log, taint, ...), each said once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub observers: Vec<Observer>,
    /// `--baseline`: the earlier run each case's timings were compared with, and the method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<crate::results::baseline::BaselineRef>,
    /// Every case of the plan, in plan order, before `--shard` chose its part: the order every
    /// report lists cases in, whatever order they finished in ([`RunInfo::in_plan_order`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
}

/// One source of evidence beside the cases themselves, and whether this run had it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observer {
    /// `kernel_log`, `taint`, ...
    pub name: String,
    pub available: bool,
    /// Where it was read from, or why it could not be.
    pub detail: String,
}

impl RunInfo {
    /// A run starting now on this machine.
    pub fn start(
        run_id: impl Into<String>,
        device: &DeviceInfo,
        profile: impl Into<String>,
        seed: u64,
        command_line: Vec<String>,
        fixtures: Vec<FixtureDigest>,
    ) -> RunInfo {
        RunInfo {
            run_id: run_id.into(),
            suite_version: env!("CARGO_PKG_VERSION").to_string(),
            started: now_rfc3339(),
            finished: None,
            host: proc_line("/proc/sys/kernel/hostname"),
            kernel_release: proc_line("/proc/sys/kernel/osrelease"),
            backend: device.backend.clone(),
            // DeviceInfo holds only strings, numbers and booleans: it always converts.
            device: serde_json::to_value(device)
                .unwrap_or_else(|e| serde_json::json!({ "unencodable": e.to_string() })),
            profile: profile.into(),
            seed,
            command_line,
            fixtures,
            shard: None,
            observers: Vec::new(),
            baseline: None,
            plan: Vec::new(),
        }
    }

    /// `records` in the order of the plan ([`RunInfo::plan`]), repetitions in order within a
    /// case; a record of a case the plan does not hold (or every record, where run.json keeps
    /// no plan) stays where the journal has it, after the planned ones.
    pub fn in_plan_order(&self, records: &[CaseRecord]) -> Vec<CaseRecord> {
        let index: std::collections::HashMap<&str, usize> = self
            .plan
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let mut ordered = records.to_vec();
        ordered.sort_by_key(|r| {
            (
                index.get(r.case.as_str()).copied().unwrap_or(usize::MAX),
                if index.contains_key(r.case.as_str()) {
                    r.repetition
                } else {
                    0
                },
            )
        });
        ordered
    }

    /// A run id that sorts by time and says where it ran: `20250131T021400Z-lab7`.
    pub fn make_run_id(started: time::OffsetDateTime, host: &str) -> String {
        let t = started.to_offset(time::UtcOffset::UTC);
        let host: String = host
            .split('.')
            .next()
            .unwrap_or("")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            if host.is_empty() { "unknown" } else { &host }
        )
    }

    /// Marks the run finished now.
    pub fn finish(&mut self) {
        self.finished = Some(now_rfc3339());
    }

    /// Writes `dir/run.json`, replacing it whole; returns its path.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, ResultsError> {
        let path = dir.join(RUN_INFO_FILE);
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| ResultsError::Encode {
            path: path.clone(),
            what: "the run description",
            message: e.to_string(),
        })?;
        text.push(b'\n');
        write_atomically(&path, &text)?;
        Ok(path)
    }

    pub fn read(path: &Path) -> Result<RunInfo, ResultsError> {
        let bytes = std::fs::read(path).map_err(|source| ResultsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| ResultsError::BadRunInfo {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The device's human name, from the recorded DeviceInfo.
    pub fn device_name(&self) -> &str {
        self.device
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or(&self.backend)
    }
}

/// The first line of a /proc file, or "unknown" where there is none (not Linux, a sandbox).
fn proc_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Makes the run folder `<time>-<host>-<backend>-<profile>-s<seed>` under `root`, with a numeric
/// suffix when a run of the same second already has that name. Nothing is left on failure.
pub fn create_run_dir(
    root: &Path,
    backend: &str,
    profile: &str,
    seed: u64,
) -> Result<(String, PathBuf), ResultsError> {
    let create_err = |path: &Path, source| ResultsError::CreateDir {
        path: path.to_path_buf(),
        source,
    };
    let made_root = !root.exists();
    std::fs::create_dir_all(root).map_err(|e| create_err(root, e))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let base = format!(
        "{}-{}-{}-s{seed}",
        RunInfo::make_run_id(time::OffsetDateTime::now_utc(), host.trim()),
        backend,
        profile
    );
    for n in 0..100 {
        let id = if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let dir = root.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                if made_root {
                    let _ = std::fs::remove_dir(root);
                }
                return Err(create_err(&dir, e));
            }
        }
    }
    Err(create_err(
        &root.join(base),
        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Capabilities;
    use crate::results::test_support::run;

    #[test]
    fn written_then_rewritten_with_finished() {
        let dir = tempfile::tempdir().unwrap();
        let info = DeviceInfo {
            backend: "sim".into(),
            name: "Reference device (profile sim)".into(),
            arch: "sim".into(),
            vram_bytes: 256 << 20,
            gpus: 1,
            caps: Capabilities::default(),
        };
        let mut r = RunInfo::start("r1", &info, "sim", 7, vec!["svmconf".into()], vec![]);
        assert_eq!(r.suite_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(r.device["arch"], "sim");
        assert_eq!(r.device_name(), "Reference device (profile sim)");
        assert!(!r.host.is_empty() && !r.kernel_release.is_empty());
        let path = r.write(dir.path()).unwrap();
        assert_eq!(RunInfo::read(&path).unwrap().finished, None);
        r.finish();
        r.write(dir.path()).unwrap();
        let back = RunInfo::read(&path).unwrap();
        assert!(back.finished.is_some());
        assert_eq!(back, r);
    }

    #[test]
    fn round_trips_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let r = run();
        let path = r.write(dir.path()).unwrap();
        assert_eq!(RunInfo::read(&path).unwrap(), r);
    }

    #[test]
    fn run_id_sorts_by_time_and_names_the_host() {
        let t = crate::results::parse_rfc3339("2025-01-31T02:14:00.5Z").unwrap();
        assert_eq!(
            RunInfo::make_run_id(t, "lab7.example.org"),
            "20250131T021400Z-lab7"
        );
        assert_eq!(RunInfo::make_run_id(t, ""), "20250131T021400Z-unknown");
    }

    #[test]
    fn bad_run_json_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(RUN_INFO_FILE);
        std::fs::write(&path, "{}").unwrap();
        let e = RunInfo::read(&path).unwrap_err().to_string();
        assert!(e.contains("run.json`: not a run description"), "{e}");
    }
    #[test]
    fn records_come_in_plan_order_whatever_order_they_finished_in() {
        use crate::results::test_support::record;
        use crate::results::Status;
        let info = crate::device::sim::SimDevice::new(
            &crate::device::sim::testutil::profile(),
            1,
            Default::default(),
        )
        .map(|d| crate::device::Device::info(&d).clone())
        .unwrap();
        let mut r = RunInfo::start("r1", &info, "sim", 7, vec![], vec![]);
        r.plan = ["a::x::4KiB", "b::x::4KiB", "c::x::4KiB"]
            .map(String::from)
            .to_vec();
        let rep = |case: &str, n: u32| CaseRecord {
            repetition: n,
            ..record(case, Status::Pass, None)
        };
        let finished = [
            rep("c::x::4KiB", 0),
            rep("z::not::planned", 0),
            rep("b::x::4KiB", 2),
            rep("a::x::4KiB", 0),
            rep("b::x::4KiB", 1),
        ];
        let order: Vec<(String, u32)> = r
            .in_plan_order(&finished)
            .into_iter()
            .map(|c| (c.case, c.repetition))
            .collect();
        let want = [
            ("a::x::4KiB", 0),
            ("b::x::4KiB", 1),
            ("b::x::4KiB", 2),
            ("c::x::4KiB", 0),
            ("z::not::planned", 0),
        ]
        .map(|(c, n)| (c.to_string(), n));
        assert_eq!(order, want);
        // No plan recorded: the journal's order.
        r.plan.clear();
        assert_eq!(r.in_plan_order(&finished)[0].case, "c::x::4KiB");
    }
}
