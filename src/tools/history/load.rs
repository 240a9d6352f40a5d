//! Reading run folders for a history: each night slim, every problem named with its folder.

use std::path::{Path, PathBuf};

use super::{GroupKey, EVIDENCE_LINES};
use crate::model::status::Status;
use crate::model::timing::Metric;
use crate::results::journal::{self, Entry};
use crate::results::{summary, RunInfo, JOURNAL_FILE, RUN_INFO_FILE};

/// What a history keeps of one case record.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub case: String,
    pub status: Status,
    pub size: u64,
    pub duration_s: f64,
    pub metrics: Vec<Metric>,
    /// The reason's first lines and the evidence's first lines, for a failure.
    pub reason: Vec<String>,
    pub evidence: Vec<String>,
    pub repro: String,
    /// What the failure says of its defect ([`summary::signature`]); empty for a pass.
    pub signature: String,
}

/// One run folder: a night of the lab.
#[derive(Clone, Debug)]
pub struct Night {
    pub dir: PathBuf,
    pub info: RunInfo,
    /// Its case records, in plan order.
    pub seen: Vec<Seen>,
    /// What was odd about the folder: a torn journal, cases that never ended, no cases.
    pub notes: Vec<String>,
}

impl Night {
    pub fn key(&self) -> GroupKey {
        GroupKey {
            backend: self.info.backend.clone(),
            profile: self.info.profile.clone(),
            device: self.info.device_name().to_string(),
        }
    }

    /// The night's date and time, to the minute: `2026-11-12 02:14`.
    pub fn label(&self) -> String {
        let s = &self.info.started;
        match (s.get(..10), s.get(11..16)) {
            (Some(d), Some(t)) => format!("{d} {t}"),
            _ => s.clone(),
        }
    }

    /// The case's verdict this night: the worst of its repetitions.
    pub fn verdict(&self, case: &str) -> Option<Status> {
        let mut verdict = None;
        for s in self.seen.iter().filter(|s| s.case == case) {
            verdict = match verdict {
                Some(v) if !s.status.is_failure() || Status::is_failure(v) => Some(v),
                _ => Some(s.status),
            };
        }
        verdict
    }
}

/// Reads every run folder of `dirs`; a folder without run.json is searched one level down
/// for run folders (a lab's results folder of nights). Errors name the folder and what is
/// wrong; a history is all or nothing, so the first unreadable folder ends it.
pub fn load_nights(dirs: &[PathBuf]) -> Result<Vec<Night>, String> {
    let mut runs = Vec::new();
    for d in dirs {
        if d.join(RUN_INFO_FILE).is_file() {
            runs.push(d.clone());
            continue;
        }
        let entries = std::fs::read_dir(d).map_err(|e| {
            format!(
                "history: `{}`: {}",
                d.display(),
                if d.exists() {
                    format!("cannot be read ({e})")
                } else {
                    "no such folder".to_string()
                }
            )
        })?;
        let mut inner: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join(RUN_INFO_FILE).is_file())
            .collect();
        if inner.is_empty() {
            return Err(format!(
                "history: `{}` is not a run folder (no {RUN_INFO_FILE}) and holds none",
                d.display()
            ));
        }
        inner.sort();
        runs.extend(inner);
    }
    let mut nights: Vec<Night> = Vec::with_capacity(runs.len());
    for dir in runs {
        let night = load_night(&dir)?;
        if let Some(twin) = nights.iter().find(|n| n.info.run_id == night.info.run_id) {
            return Err(format!(
                "history: `{}` and `{}` are the same run ({}); give each night once",
                twin.dir.display(),
                dir.display(),
                night.info.run_id
            ));
        }
        nights.push(night);
    }
    Ok(nights)
}

/// One run folder, slim.
pub fn load_night(dir: &Path) -> Result<Night, String> {
    let info = RunInfo::read(&dir.join(RUN_INFO_FILE)).map_err(|e| format!("history: {e}"))?;
    let path = dir.join(JOURNAL_FILE);
    let mut notes = Vec::new();
    let entries = match std::fs::metadata(&path) {
        Err(_) => {
            notes.push(format!("no {JOURNAL_FILE}: the run recorded no case"));
            Vec::new()
        }
        Ok(_) => journal::read_entries(&path).map_err(|e| format!("history: {e}"))?,
    };
    if torn(&path) {
        notes.push(format!(
            "{JOURNAL_FILE} ends in a torn line (the run died writing it): that case is left out"
        ));
    }
    let mut started = std::collections::BTreeSet::new();
    let mut records = Vec::new();
    for e in entries {
        match e {
            Entry::Start(s) => {
                started.insert(s.case);
            }
            Entry::End(r) => {
                started.remove(&r.case);
                records.push(*r);
            }
            Entry::Interrupted(_) => {}
        }
    }
    if !started.is_empty() {
        notes.push(format!(
            "{} case(s) started and never ended (first: {}): the run was cut short",
            started.len(),
            started.iter().next().map_or("", String::as_str)
        ));
    }
    if records.is_empty() {
        notes.push("no case ended this night".to_string());
    }
    let seen = info
        .in_plan_order(&records)
        .into_iter()
        .map(|r| {
            let failure = r.status.is_failure();
            let signature = if failure {
                summary::signature(&r)
            } else {
                String::new()
            };
            Seen {
                reason: if failure {
                    first_lines(r.reason.as_deref().unwrap_or(""))
                } else {
                    Vec::new()
                },
                evidence: if failure {
                    r.evidence.iter().take(EVIDENCE_LINES).cloned().collect()
                } else {
                    Vec::new()
                },
                case: r.case,
                status: r.status,
                size: r.size,
                duration_s: r.duration_s,
                metrics: r.metrics,
                repro: r.repro,
                signature,
            }
        })
        .collect();
    Ok(Night {
        dir: dir.to_path_buf(),
        info,
        seen,
        notes,
    })
}

fn first_lines(text: &str) -> Vec<String> {
    text.lines()
        .take(EVIDENCE_LINES)
        .map(str::to_string)
        .collect()
}

/// Whether the journal's last line has no newline: a write the run did not finish.
fn torn(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut last = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut last).is_ok() && last[0] != b'\n'
}
