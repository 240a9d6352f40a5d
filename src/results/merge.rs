//! Merging the shards of one suite (`--shard K/N` runs, perhaps on several machines) into one
//! run folder, with every report regenerated from the merged journal.
//!
//! Shards merge only when they are parts of the same run of the same suite: the same svmconf
//! version, profile, backend, seed and fixture files (by digest), and the same shard count, each
//! shard index once, each case in one shard only. Anything else is refused with both runs named,
//! because a merged report that mixes two seeds or two fixture sets would state a result no run
//! produced. A run without `--shard` counts as shard 1/1. A missing shard is allowed (a lab
//! machine died) and is said in the [`MergeReport`] and in the merged summary.
//!
//! The merged folder holds `run.json`, `journal.jsonl` (the shards' records in shard order),
//! `junit.xml`, `ktap.txt` and `summary.md`. Its `run.json` has a run id made from the earliest
//! start (`20250131T021400Z-merged`), the earliest start and the latest finish (none if a shard
//! never finished), no shard, the observers of every shard once each, the hosts and kernels of
//! every shard (comma-separated where they differ), and the first shard's command line without
//! its `--shard`: the command that runs what the merged folder holds.
//!
//! The output folder must not exist or be empty: a merge never overwrites a run. Everything is
//! written into a hidden folder beside it and renamed into place at the end, so on any error
//! nothing is left behind, and a reader never sees half a merge.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{
    io_reason, journal, parse_rfc3339, render_summary, sync_dir, write_atomically, write_junit,
    write_ktap, CaseRecord, Journal, ResultsError, RunInfo, ShardSpec, JOURNAL_FILE, JUNIT_FILE,
    KTAP_FILE, RUN_INFO_FILE, SUMMARY_FILE,
};

/// A run folder as messages name it: its path and its run id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRef {
    pub dir: PathBuf,
    pub run_id: String,
}

impl fmt::Display for RunRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` (run {})", self.dir.display(), self.run_id)
    }
}

/// One shard as merged.
#[derive(Clone, Debug, PartialEq)]
pub struct MergedShard {
    pub run: RunRef,
    /// `1/1` for a run without `--shard`.
    pub shard: ShardSpec,
    pub records: usize,
}

/// What a merge did.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeReport {
    pub out_dir: PathBuf,
    /// The merged `run.json`.
    pub info: RunInfo,
    /// The shards, in shard order.
    pub shards: Vec<MergedShard>,
    /// Shard indices of the count that no run held: their cases are in no report.
    pub missing_shards: Vec<u32>,
    /// Records in the merged journal.
    pub records: usize,
    /// What differs between shards without stopping the merge (hosts, kernels, devices, a shard
    /// that never finished).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: expected at least one run folder")]
    NoRuns,
    /// A run's run.json or journal cannot be read; the error names the file.
    #[error(transparent)]
    Read(#[from] ResultsError),
    #[error(
        "cannot merge {a} with {b}: {field} differs ({a_value} against {b_value}); \
         expected shards of one run of the suite"
    )]
    Differs {
        field: String,
        a: Box<RunRef>,
        a_value: String,
        b: Box<RunRef>,
        b_value: String,
    },
    #[error(
        "cannot merge {a} with {b}: the suite is split into {a_count} shards in one and \
         {b_count} in the other; expected one `--shard K/N` count"
    )]
    ShardCount {
        a: Box<RunRef>,
        a_count: u32,
        b: Box<RunRef>,
        b_count: u32,
    },
    #[error("cannot merge {a} with {b}: both hold shard {shard}; expected each shard once")]
    SameShard {
        shard: ShardSpec,
        a: Box<RunRef>,
        b: Box<RunRef>,
    },
    #[error(
        "cannot merge {a} with {b}: case `{case}` is in both; expected each case in one shard"
    )]
    SameCase {
        case: String,
        a: Box<RunRef>,
        b: Box<RunRef>,
    },
    #[error(
        "`{}` already exists and is not an empty folder; a merge never overwrites a run, \
         expected a new or empty folder",
        path.display()
    )]
    OutNotEmpty { path: PathBuf },
    #[error("cannot write the merged run into `{}`: {}", path.display(), io_reason(source))]
    Write { path: PathBuf, source: io::Error },
}

/// One run folder as read.
struct Shard {
    run: RunRef,
    info: RunInfo,
    spec: ShardSpec,
    records: Vec<CaseRecord>,
}

/// Merges the runs in `run_dirs` into `out_dir` (new or empty) and writes every report there.
pub fn merge(out_dir: &Path, run_dirs: &[PathBuf]) -> Result<MergeReport, MergeError> {
    if run_dirs.is_empty() {
        return Err(MergeError::NoRuns);
    }
    check_out_dir(out_dir)?;
    let mut shards = Vec::with_capacity(run_dirs.len());
    for dir in run_dirs {
        let info = RunInfo::read(&dir.join(RUN_INFO_FILE))?;
        let records = journal::read(&dir.join(JOURNAL_FILE))?;
        shards.push(Shard {
            run: RunRef {
                dir: dir.clone(),
                run_id: info.run_id.clone(),
            },
            spec: info.shard.unwrap_or(ShardSpec::WHOLE),
            info,
            records,
        });
    }
    check_compatible(&shards)?;
    shards.sort_by_key(|s| s.spec.index);

    let count = shards[0].spec.count;
    let held: HashSet<u32> = shards.iter().map(|s| s.spec.index).collect();
    let missing_shards: Vec<u32> = (1..=count).filter(|i| !held.contains(i)).collect();
    let (info, notes) = merged_info(&shards);
    let records: Vec<CaseRecord> = shards.iter().flat_map(|s| s.records.clone()).collect();
    let report = MergeReport {
        out_dir: out_dir.to_path_buf(),
        info,
        shards: shards
            .iter()
            .map(|s| MergedShard {
                run: s.run.clone(),
                shard: s.spec,
                records: s.records.len(),
            })
            .collect(),
        missing_shards,
        records: records.len(),
        notes,
    };
    publish(out_dir, |dir| write_outputs(dir, &report, &records))?;
    Ok(report)
}

/// Refuses an output folder that holds anything.
fn check_out_dir(out_dir: &Path) -> Result<(), MergeError> {
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(MergeError::OutNotEmpty {
            path: out_dir.to_path_buf(),
        });
    }
    match std::fs::read_dir(out_dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(MergeError::OutNotEmpty {
                path: out_dir.to_path_buf(),
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(MergeError::Write {
            path: out_dir.to_path_buf(),
            source,
        }),
    }
}

/// Every reason two runs are not shards of one run, checked against the first run.
fn check_compatible(shards: &[Shard]) -> Result<(), MergeError> {
    let first = &shards[0];
    // Which run (by position) holds each shard index and each case.
    let mut by_index: HashMap<u32, usize> = HashMap::new();
    let mut by_case: HashMap<&str, usize> = HashMap::new();
    for (i, s) in shards.iter().enumerate() {
        if i > 0 {
            let differs = |field: &str, a_value: String, b_value: String| MergeError::Differs {
                field: field.to_string(),
                a: Box::new(first.run.clone()),
                a_value,
                b: Box::new(s.run.clone()),
                b_value,
            };
            let (a, b) = (&first.info, &s.info);
            if a.suite_version != b.suite_version {
                return Err(differs(
                    "the svmconf version",
                    a.suite_version.clone(),
                    b.suite_version.clone(),
                ));
            }
            if a.profile != b.profile {
                return Err(differs("the profile", a.profile.clone(), b.profile.clone()));
            }
            if a.backend != b.backend {
                return Err(differs("the backend", a.backend.clone(), b.backend.clone()));
            }
            if a.seed != b.seed {
                return Err(differs(
                    "the seed",
                    format!("{:#x}", a.seed),
                    format!("{:#x}", b.seed),
                ));
            }
            if let Some((path, a_value, b_value)) = fixture_difference(a, b) {
                return Err(differs(&format!("fixture `{path}`"), a_value, b_value));
            }
            if first.spec.count != s.spec.count {
                return Err(MergeError::ShardCount {
                    a: Box::new(first.run.clone()),
                    a_count: first.spec.count,
                    b: Box::new(s.run.clone()),
                    b_count: s.spec.count,
                });
            }
        }
        if let Some(other) = by_index.insert(s.spec.index, i) {
            return Err(MergeError::SameShard {
                shard: s.spec,
                a: Box::new(shards[other].run.clone()),
                b: Box::new(s.run.clone()),
            });
        }
        // A case repeated inside one run (`--repeat N`) is fine; across runs it is not.
        for r in &s.records {
            match by_case.insert(&r.case, i) {
                Some(other) if other != i => {
                    return Err(MergeError::SameCase {
                        case: r.case.clone(),
                        a: Box::new(shards[other].run.clone()),
                        b: Box::new(s.run.clone()),
                    })
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The first fixture file whose digest differs or that only one run used, with what each run
/// says of it.
fn fixture_difference(a: &RunInfo, b: &RunInfo) -> Option<(String, String, String)> {
    let digests = |info: &RunInfo| -> BTreeMap<String, String> {
        info.fixtures
            .iter()
            .map(|f| (f.path.clone(), f.sha256.clone()))
            .collect()
    };
    let (da, db) = (digests(a), digests(b));
    let shown = |d: Option<&String>| match d {
        Some(sha) => format!("sha256 {}", sha.get(..12).unwrap_or(sha)),
        None => "not used".to_string(),
    };
    da.keys()
        .chain(db.keys())
        .find(|path| da.get(*path) != db.get(*path))
        .map(|path| (path.clone(), shown(da.get(path)), shown(db.get(path))))
}

/// The merged run.json, and notes on what differs between the shards.
fn merged_info(shards: &[Shard]) -> (RunInfo, Vec<String>) {
    let first = &shards[0].info;
    let mut notes = Vec::new();
    let distinct = |field: fn(&RunInfo) -> &str| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for s in shards {
            let v = field(&s.info).to_string();
            if !out.contains(&v) {
                out.push(v);
            }
        }
        out
    };
    let hosts = distinct(|i| &i.host);
    let kernels = distinct(|i| &i.kernel_release);
    let devices = distinct(|i| i.device_name());
    if kernels.len() > 1 {
        notes.push(format!(
            "the shards ran on different kernels: {}",
            kernels.join(", ")
        ));
    }
    if devices.len() > 1 {
        notes.push(format!(
            "the shards ran on different devices: {}; run.json keeps the first's",
            devices.join(", ")
        ));
    }

    let earliest = shards
        .iter()
        .min_by_key(|s| parse_rfc3339(&s.info.started))
        .map_or(first, |s| &s.info);
    let unfinished: Vec<&Shard> = shards
        .iter()
        .filter(|s| s.info.finished.is_none())
        .collect();
    let finished = if unfinished.is_empty() {
        shards
            .iter()
            .filter_map(|s| s.info.finished.as_ref())
            .max_by_key(|f| parse_rfc3339(f))
            .cloned()
    } else {
        for s in unfinished {
            notes.push(format!(
                "shard {} {} never finished: the merged run is not finished either",
                s.spec, s.run
            ));
        }
        None
    };
    let run_id = match parse_rfc3339(&earliest.started) {
        Some(t) => RunInfo::make_run_id(t, "merged"),
        None => format!("{}-merged", earliest.run_id),
    };
    let mut observers = Vec::new();
    for o in shards.iter().flat_map(|s| &s.info.observers) {
        if !observers.contains(o) {
            observers.push(o.clone());
        }
    }
    let info = RunInfo {
        run_id,
        suite_version: first.suite_version.clone(),
        started: earliest.started.clone(),
        finished,
        host: hosts.join(", "),
        kernel_release: kernels.join(", "),
        backend: first.backend.clone(),
        device: first.device.clone(),
        profile: first.profile.clone(),
        seed: first.seed,
        command_line: without_shard(&first.command_line),
        fixtures: first.fixtures.clone(),
        shard: None,
        observers,
        baseline: first.baseline.clone(),
        // Shards of one plan hold the same whole plan.
        plan: first.plan.clone(),
    };
    (info, notes)
}

/// `args` without `--shard K/N` or `--shard=K/N`.
fn without_shard(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut skip_next = false;
    for a in args {
        if skip_next {
            skip_next = false;
        } else if a == "--shard" {
            skip_next = true;
        } else if !a.starts_with("--shard=") {
            out.push(a.clone());
        }
    }
    out
}

/// Writes every file of the merged run into `dir`.
fn write_outputs(
    dir: &Path,
    report: &MergeReport,
    records: &[CaseRecord],
) -> Result<(), MergeError> {
    fail_point(dir, JOURNAL_FILE)?;
    let mut journal = Journal::create(dir)?;
    for r in records {
        journal.append(r)?;
    }
    drop(journal);
    fail_point(dir, RUN_INFO_FILE)?;
    report.info.write(dir)?;
    fail_point(dir, JUNIT_FILE)?;
    write_junit(records, &report.info, &dir.join(JUNIT_FILE))?;
    fail_point(dir, KTAP_FILE)?;
    write_ktap(records, &report.info, &dir.join(KTAP_FILE))?;
    fail_point(dir, SUMMARY_FILE)?;
    let mut summary = render_summary(records, &report.info);
    summary.push_str(&merge_section(report));
    write_atomically(&dir.join(SUMMARY_FILE), summary.as_bytes())?;
    Ok(())
}

/// The summary's account of where the merged records came from.
fn merge_section(report: &MergeReport) -> String {
    let mut s = String::from("\n## Merged shards\n\n");
    for m in &report.shards {
        s.push_str(&format!(
            "- shard {}: `{}` (run {}), {} records\n",
            m.shard,
            m.run.dir.display(),
            m.run.run_id,
            m.records
        ));
    }
    if let Some(first) = report.shards.first() {
        for i in &report.missing_shards {
            s.push_str(&format!(
                "- shard {i}/{}: **missing**; its cases are in no report\n",
                first.shard.count
            ));
        }
    }
    for n in &report.notes {
        s.push_str(&format!("- note: {n}\n"));
    }
    s
}

/// Runs `write` on a hidden folder beside `out_dir`, then renames it to `out_dir` (replacing it
/// if it is an empty folder). On any error, removes the hidden folder and any parent folders it
/// had to create, so nothing is left behind.
fn publish(
    out_dir: &Path,
    write: impl FnOnce(&Path) -> Result<(), MergeError>,
) -> Result<(), MergeError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Write { path, source }
    };
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "merged".to_string());
    // The top-most parent that does not exist yet: what to remove if the merge fails.
    let created_parent = parent
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .last()
        .map(Path::to_path_buf);
    std::fs::create_dir_all(&parent).map_err(write_err(&parent))?;
    // Unique per process and per merge within it: two merges never share a hidden folder.
    static MERGES: AtomicU64 = AtomicU64::new(0);
    let staging = parent.join(format!(
        ".{name}.merging-{}-{}",
        std::process::id(),
        MERGES.fetch_add(1, Ordering::Relaxed)
    ));
    let cleanup = |staging: Option<&Path>| {
        // Best effort: the merge already failed, and the error to report is that one.
        if let Some(staging) = staging {
            let _ = std::fs::remove_dir_all(staging);
        }
        if let Some(p) = &created_parent {
            let _ = std::fs::remove_dir_all(p);
        }
    };
    // A left-over of a killed merge that had this name makes this fail, rather than the merge
    // removing a folder it cannot prove is its own.
    if let Err(source) = std::fs::create_dir(&staging) {
        cleanup(None);
        return Err(write_err(&staging)(source));
    }
    let result = write(&staging)
        .and_then(|()| fail_point(&staging, "rename"))
        // rename(2) replaces an empty folder with a folder; a non-empty one makes it fail, so a
        // run written there meanwhile is never overwritten either.
        .and_then(|()| std::fs::rename(&staging, out_dir).map_err(write_err(out_dir)));
    if result.is_err() {
        cleanup(Some(&staging));
        return result;
    }
    // The merged folder is whole and in place; a failed sync of its name only risks losing it
    // to a power cut, which running the merge again repairs.
    let _ = sync_dir(&parent);
    Ok(())
}

#[cfg(not(test))]
fn fail_point(_dir: &Path, _step: &str) -> Result<(), MergeError> {
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// The step at which the tests make the merge fail, to see that it leaves nothing behind.
    static FAIL_AT: std::cell::Cell<Option<&'static str>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn fail_point(dir: &Path, step: &str) -> Result<(), MergeError> {
    if FAIL_AT.with(|f| f.get()) == Some(step) {
        return Err(MergeError::Write {
            path: dir.join(step),
            source: io::Error::other("failure injected by the test"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::test_support::{record, run};
    use crate::results::{FixtureDigest, Observer, Status};
    use rstest::rstest;

    /// A run folder holding `cases` as shard `shard` of the test run.
    fn write_run(
        dir: &Path,
        shard: Option<(u32, u32)>,
        cases: &[&str],
        edit: impl FnOnce(&mut RunInfo),
    ) {
        let mut info = run();
        info.shard = shard.map(|(index, count)| ShardSpec { index, count });
        if let Some((index, count)) = shard {
            info.run_id = format!("run-{index}-of-{count}");
            info.started = format!("2025-01-31T02:1{index}:00Z");
            info.finished = Some(format!("2025-01-31T03:1{index}:00Z"));
            info.host = format!("lab{index}");
            info.command_line
                .extend(["--shard".to_string(), format!("{index}/{count}")]);
        }
        edit(&mut info);
        let mut j = Journal::create(dir).unwrap();
        for case in cases {
            let status = if case.contains("bad") {
                Status::Fail
            } else {
                Status::Pass
            };
            j.append(&record(case, status, None)).unwrap();
        }
        info.write(dir).unwrap();
    }

    struct Lab {
        _tmp: tempfile::TempDir,
        root: PathBuf,
    }

    impl Lab {
        fn new() -> Lab {
            let tmp = tempfile::tempdir().unwrap();
            let root = tmp.path().to_path_buf();
            Lab { _tmp: tmp, root }
        }

        fn shard(&self, name: &str, shard: Option<(u32, u32)>, cases: &[&str]) -> PathBuf {
            self.shard_with(name, shard, cases, |_| {})
        }

        fn shard_with(
            &self,
            name: &str,
            shard: Option<(u32, u32)>,
            cases: &[&str],
            edit: impl FnOnce(&mut RunInfo),
        ) -> PathBuf {
            let dir = self.root.join(name);
            write_run(&dir, shard, cases, edit);
            dir
        }

        /// Every path under the lab's root, relative, sorted: what a merge left behind.
        fn tree(&self) -> Vec<String> {
            fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
                for e in std::fs::read_dir(dir).unwrap() {
                    let p = e.unwrap().path();
                    out.push(p.strip_prefix(root).unwrap().display().to_string());
                    if p.is_dir() {
                        walk(&p, root, out);
                    }
                }
            }
            let mut out = Vec::new();
            walk(&self.root, &self.root, &mut out);
            out.sort();
            out
        }
    }

    #[test]
    fn merges_shards_in_shard_order_with_every_report() {
        let lab = Lab::new();
        // Given out of order, on purpose.
        let s3 = lab.shard("s3", Some((3, 3)), &["eviction::lru::2MiB"]);
        let s1 = lab.shard_with(
            "s1",
            Some((1, 3)),
            &["prefetch::to_vram::2MiB", "prefetch::bad::4KiB"],
            |i| {
                i.observers = vec![Observer {
                    name: "kernel_log".into(),
                    available: true,
                    detail: "/dev/kmsg".into(),
                }]
            },
        );
        let s2 = lab.shard_with("s2", Some((2, 3)), &["multi_gpu::peer::2MiB"], |i| {
            i.observers = vec![
                Observer {
                    name: "kernel_log".into(),
                    available: true,
                    detail: "/dev/kmsg".into(),
                },
                Observer {
                    name: "taint".into(),
                    available: false,
                    detail: "no /proc/sys/kernel/tainted".into(),
                },
            ]
        });
        let out = lab.root.join("merged");
        let report = merge(&out, &[s3, s1.clone(), s2]).unwrap();

        assert_eq!(report.records, 4);
        assert!(report.missing_shards.is_empty());
        assert_eq!(
            report
                .shards
                .iter()
                .map(|s| s.shard.index)
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert_eq!(report.shards[0].run.dir, s1);
        assert_eq!(report.shards[0].records, 2);

        let cases: Vec<String> = journal::read(&out.join(JOURNAL_FILE))
            .unwrap()
            .into_iter()
            .map(|r| r.case)
            .collect();
        assert_eq!(
            cases,
            [
                "prefetch::to_vram::2MiB",
                "prefetch::bad::4KiB",
                "multi_gpu::peer::2MiB",
                "eviction::lru::2MiB"
            ]
        );

        let info = RunInfo::read(&out.join(RUN_INFO_FILE)).unwrap();
        assert_eq!(info, report.info);
        assert_eq!(info.run_id, "20250131T021100Z-merged");
        assert_eq!(info.started, "2025-01-31T02:11:00Z");
        assert_eq!(info.finished.as_deref(), Some("2025-01-31T03:13:00Z"));
        assert_eq!(info.shard, None);
        assert_eq!(info.host, "lab1, lab2, lab3");
        assert_eq!(info.command_line, ["svmconf", "--profile", "sim"]);
        assert_eq!(
            info.observers
                .iter()
                .map(|o| o.name.as_str())
                .collect::<Vec<_>>(),
            ["kernel_log", "taint"]
        );
        assert_eq!(info.fixtures, run().fixtures);

        let ktap = std::fs::read_to_string(out.join(KTAP_FILE)).unwrap();
        assert!(ktap.starts_with("KTAP version 1\n1..3\n"), "{ktap}");
        let junit = std::fs::read_to_string(out.join(JUNIT_FILE)).unwrap();
        let doc = roxmltree::Document::parse(&junit).unwrap();
        assert_eq!(
            doc.descendants()
                .filter(|n| n.has_tag_name("testcase"))
                .count(),
            4
        );
        let summary = std::fs::read_to_string(out.join(SUMMARY_FILE)).unwrap();
        assert!(
            summary.contains("# svmconf run 20250131T021100Z-merged"),
            "{summary}"
        );
        assert!(summary.contains("| **total** | 4 |"), "{summary}");
        assert!(
            summary.contains(&format!(
                "- shard 1/3: `{}` (run run-1-of-3), 2 records",
                s1.display()
            )),
            "{summary}"
        );

        // Nothing but the merged folder was added beside the runs.
        assert_eq!(
            lab.tree()
                .iter()
                .filter(|p| !p.contains('/'))
                .collect::<Vec<_>>(),
            ["merged", "s1", "s2", "s3"]
        );
    }

    #[test]
    fn a_missing_shard_is_reported_not_refused() {
        let lab = Lab::new();
        let s1 = lab.shard("s1", Some((1, 4)), &["a::one::4KiB"]);
        let s4 = lab.shard_with("s4", Some((4, 4)), &["a::four::4KiB"], |i| {
            i.finished = None
        });
        let out = lab.root.join("merged");
        let report = merge(&out, &[s1, s4.clone()]).unwrap();
        assert_eq!(report.missing_shards, [2, 3]);
        assert_eq!(report.info.finished, None);
        assert_eq!(
            report.notes,
            [format!(
                "shard 4/4 `{}` (run run-4-of-4) never finished: the merged run is not finished either",
                s4.display()
            )]
        );
        let summary = std::fs::read_to_string(out.join(SUMMARY_FILE)).unwrap();
        assert!(
            summary.contains("- shard 2/4: **missing**; its cases are in no report\n"),
            "{summary}"
        );
        assert!(summary.contains("- shard 3/4: **missing**"), "{summary}");
    }

    #[test]
    fn one_whole_run_merges_alone_into_an_existing_empty_folder() {
        let lab = Lab::new();
        let whole = lab.shard("whole", None, &["a::b::4KiB"]);
        let out = lab.root.join("empty");
        std::fs::create_dir(&out).unwrap();
        let report = merge(&out, &[whole]).unwrap();
        assert_eq!(report.shards[0].shard, ShardSpec::WHOLE);
        assert!(report.missing_shards.is_empty());
        assert!(out.join(JOURNAL_FILE).is_file());
    }

    #[test]
    fn different_kernels_are_noted() {
        let lab = Lab::new();
        let s1 = lab.shard("s1", Some((1, 2)), &["a::one::4KiB"]);
        let s2 = lab.shard_with("s2", Some((2, 2)), &["a::two::4KiB"], |i| {
            i.kernel_release = "6.15.0-rc1".into()
        });
        let report = merge(&lab.root.join("m"), &[s1, s2]).unwrap();
        assert_eq!(report.info.kernel_release, "6.14.0-svm-v4, 6.15.0-rc1");
        assert_eq!(
            report.notes,
            ["the shards ran on different kernels: 6.14.0-svm-v4, 6.15.0-rc1"]
        );
    }

    type Edit = fn(&mut RunInfo);

    #[rstest]
    #[case::version(|i: &mut RunInfo| i.suite_version = "0.2.0".into(), "the svmconf version differs (0.1.0 against 0.2.0)")]
    #[case::profile(|i: &mut RunInfo| i.profile = "mi300x".into(), "the profile differs (sim against mi300x)")]
    #[case::backend(|i: &mut RunInfo| i.backend = "hip".into(), "the backend differs (sim against hip)")]
    #[case::seed(|i: &mut RunInfo| i.seed = 7, "the seed differs (0x5eed against 0x7)")]
    #[case::fixture_digest(
        |i: &mut RunInfo| i.fixtures[0].sha256 = "ab".repeat(32),
        "fixture `fixtures/profiles/sim.yaml` differs (sha256 000000000000 against sha256 abababababab)"
    )]
    #[case::fixture_only_in_one(
        |i: &mut RunInfo| i.fixtures.push(FixtureDigest { path: "fixtures/expectations/sim.yaml".into(), sha256: "cd".repeat(32) }),
        "fixture `fixtures/expectations/sim.yaml` differs (not used against sha256 cdcdcdcdcdcd)"
    )]
    #[case::shard_count(
        |i: &mut RunInfo| i.shard = Some(ShardSpec { index: 2, count: 3 }),
        "the suite is split into 2 shards in one and 3 in the other; expected one `--shard K/N` count"
    )]
    #[case::whole_run_with_a_shard(
        |i: &mut RunInfo| i.shard = None,
        "the suite is split into 2 shards in one and 1 in the other"
    )]
    #[case::same_shard(
        |i: &mut RunInfo| i.shard = Some(ShardSpec { index: 1, count: 2 }),
        "both hold shard 1/2; expected each shard once"
    )]
    fn refuses_runs_that_are_not_shards_of_one_run(#[case] edit: Edit, #[case] why: &str) {
        let lab = Lab::new();
        let s1 = lab.shard("s1", Some((1, 2)), &["a::one::4KiB"]);
        let s2 = lab.shard_with("s2", Some((2, 2)), &["a::two::4KiB"], edit);
        let out = lab.root.join("merged");
        let e = merge(&out, &[s1.clone(), s2.clone()])
            .unwrap_err()
            .to_string();
        assert!(e.contains(why), "{e}");
        assert!(
            e.starts_with(&format!(
                "cannot merge `{}` (run run-1-of-2) with `{}` (run ",
                s1.display(),
                s2.display()
            )),
            "{e}"
        );
        assert!(!out.exists());
        assert_eq!(lab.tree().iter().filter(|p| !p.contains('/')).count(), 2);
    }

    #[test]
    fn refuses_a_case_in_two_shards_but_not_a_repeated_one() {
        let lab = Lab::new();
        let s1 = lab.shard(
            "s1",
            Some((1, 2)),
            &["a::rep::4KiB", "a::rep::4KiB", "a::both::4KiB"],
        );
        let s2 = lab.shard("s2", Some((2, 2)), &["a::both::4KiB"]);
        let out = lab.root.join("merged");
        let e = merge(&out, &[s1.clone(), s2.clone()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "cannot merge `{}` (run run-1-of-2) with `{}` (run run-2-of-2): case \
                 `a::both::4KiB` is in both; expected each case in one shard",
                s1.display(),
                s2.display()
            )
        );
        assert!(!out.exists());
        // Without the shared case, the repeated one merges.
        let s3 = lab.shard("s3", Some((2, 2)), &["a::other::4KiB"]);
        assert_eq!(merge(&out, &[s1, s3]).unwrap().records, 4);
    }

    #[test]
    fn never_overwrites_a_run() {
        let lab = Lab::new();
        let s1 = lab.shard("s1", None, &["a::one::4KiB"]);
        let before = std::fs::read(s1.join(JOURNAL_FILE)).unwrap();
        let e = merge(&s1, std::slice::from_ref(&s1))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "`{}` already exists and is not an empty folder; a merge never overwrites a \
                 run, expected a new or empty folder",
                s1.display()
            )
        );
        assert_eq!(std::fs::read(s1.join(JOURNAL_FILE)).unwrap(), before);
        let file = lab.root.join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            merge(&file, &[s1]),
            Err(MergeError::OutNotEmpty { .. })
        ));
    }

    #[test]
    fn unreadable_runs_are_named() {
        let lab = Lab::new();
        let empty = lab.root.join("not-a-run");
        std::fs::create_dir(&empty).unwrap();
        let e = merge(&lab.root.join("m"), &[empty])
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot read `"), "{e}");
        assert!(e.contains("not-a-run/run.json`"), "{e}");
        assert!(matches!(
            merge(&lab.root.join("m"), &[]),
            Err(MergeError::NoRuns)
        ));
        assert!(!lab.root.join("m").exists());
    }

    /// Whatever step fails, nothing is left: not the output, not the hidden folder, not the
    /// parents the merge created.
    #[rstest]
    #[case(JOURNAL_FILE)]
    #[case(RUN_INFO_FILE)]
    #[case(JUNIT_FILE)]
    #[case(KTAP_FILE)]
    #[case(SUMMARY_FILE)]
    #[case("rename")]
    fn a_failed_write_leaves_nothing(#[case] step: &'static str) {
        let lab = Lab::new();
        let s1 = lab.shard("s1", Some((1, 2)), &["a::one::4KiB"]);
        let s2 = lab.shard("s2", Some((2, 2)), &["a::two::4KiB"]);
        let before = lab.tree();
        let out = lab.root.join("new").join("parents").join("merged");
        FAIL_AT.with(|f| f.set(Some(step)));
        let result = merge(&out, &[s1.clone(), s2.clone()]);
        FAIL_AT.with(|f| f.set(None));
        let e = result.unwrap_err().to_string();
        assert!(e.contains("failure injected by the test"), "{e}");
        assert_eq!(lab.tree(), before);

        // An existing empty output folder stays, empty.
        let out = lab.root.join("empty");
        std::fs::create_dir(&out).unwrap();
        FAIL_AT.with(|f| f.set(Some(step)));
        let result = merge(&out, &[s1, s2]);
        FAIL_AT.with(|f| f.set(None));
        assert!(result.is_err());
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
        let mut want = before;
        want.push("empty".into());
        want.sort();
        assert_eq!(lab.tree(), want);
    }

    #[rstest]
    #[case(&["svmconf", "--shard", "2/4", "--profile", "sim"], &["svmconf", "--profile", "sim"])]
    #[case(&["svmconf", "--shard=2/4"], &["svmconf"])]
    #[case(&["svmconf", "prefetch"], &["svmconf", "prefetch"])]
    fn command_line_drops_the_shard(#[case] args: &[&str], #[case] want: &[&str]) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        assert_eq!(without_shard(&args), want);
    }
}
