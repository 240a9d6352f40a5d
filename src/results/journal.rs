//! `journal.jsonl`: the one record of a run, one JSON object per line.
//!
//! A case writes two lines: `{"event": "start", ...}` ([`Start`]) before it runs and its
//! [`CaseRecord`] (`{"event": "end", ...}`) when it has finished. Each is written whole and synced
//! to disk before the runner moves on, so a kernel panic, a power cut or a SIGKILL of the runner
//! loses no finished case, and a start without an end names the case that was running: a resumed
//! run records it as incomplete, unless an `{"event": "interrupted", ...}` line ([`Interrupted`])
//! follows it, written when the run was interrupted: then it runs again. A crash in the middle of a
//! write leaves a torn last line; reading tolerates it, and reopening the journal cuts it off so
//! that the lines after it stay readable. A bad line anywhere else is corruption and is named.
//!
//! The journal is not synchronised itself: callers that run cases in parallel hold it in a
//! `Mutex<Journal>`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{sync_dir, CaseRecord, ResultsError};

/// A case about to run: the journal line written before it starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub case: String,
    /// RFC 3339 UTC.
    pub started: String,
    /// Which run under `--repeat` (1..=N); 0 when not repeated.
    #[serde(default)]
    pub repetition: u32,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
}

/// The run was interrupted (SIGINT, SIGTERM): the line the runner writes before it exits, so
/// that a resumed run runs again the cases that were running, where after a crash it records
/// them as incomplete.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    /// RFC 3339 UTC.
    pub at: String,
    /// The signal's name: `SIGINT`.
    pub signal: String,
}

/// One line of the journal.
#[derive(Clone, Debug, PartialEq)]
pub enum Entry {
    Start(Start),
    End(Box<CaseRecord>),
    Interrupted(Interrupted),
}

impl Entry {
    fn encode(&self) -> serde_json::Result<Vec<u8>> {
        let (event, mut value) = match self {
            Entry::Start(s) => ("start", serde_json::to_value(s)?),
            Entry::End(r) => ("end", serde_json::to_value(r)?),
            Entry::Interrupted(i) => ("interrupted", serde_json::to_value(i)?),
        };
        if let serde_json::Value::Object(map) = &mut value {
            // `event` first, so a person reading the file sees what each line is.
            let mut tagged = serde_json::Map::new();
            tagged.insert("event".into(), event.into());
            tagged.append(map);
            value = serde_json::Value::Object(tagged);
        }
        serde_json::to_vec(&value)
    }

    /// A line without `event` is a case record, as journals were first written.
    fn decode(line: &[u8]) -> serde_json::Result<Entry> {
        let mut value: serde_json::Value = serde_json::from_slice(line)?;
        let event = value
            .as_object_mut()
            .and_then(|m| m.remove("event"))
            .and_then(|e| e.as_str().map(str::to_string));
        match event.as_deref() {
            Some("start") => Ok(Entry::Start(serde_json::from_value(value)?)),
            None | Some("end") => Ok(Entry::End(Box::new(serde_json::from_value(value)?))),
            Some("interrupted") => Ok(Entry::Interrupted(serde_json::from_value(value)?)),
            Some(other) => Err(serde::de::Error::custom(format!(
                "unknown event `{other}`, expected `start`, `end` or `interrupted`"
            ))),
        }
    }
}

/// The journal's file name inside a results folder.
pub const JOURNAL_FILE: &str = "journal.jsonl";

pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// Creates `dir` and `dir/journal.jsonl`, or continues the journal already there (a resumed
    /// run), first cutting off a torn last line left by a crash.
    pub fn create(dir: &Path) -> Result<Journal, ResultsError> {
        std::fs::create_dir_all(dir).map_err(|source| ResultsError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(JOURNAL_FILE);
        let open_err = |source| ResultsError::Open {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(open_err)?;
        sync_dir(dir).map_err(open_err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(open_err)?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            file.set_len(whole as u64).map_err(open_err)?;
            file.seek(SeekFrom::End(0)).map_err(open_err)?;
            file.sync_data().map_err(open_err)?;
        }
        Ok(Journal { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends a finished case's record as one line and syncs it before returning.
    pub fn append(&mut self, record: &CaseRecord) -> Result<(), ResultsError> {
        self.write(&Entry::End(Box::new(record.clone())))
    }

    /// Appends the line saying a case is about to run, and syncs it before returning.
    pub fn append_start(&mut self, start: &Start) -> Result<(), ResultsError> {
        self.write(&Entry::Start(start.clone()))
    }

    /// Appends the line saying the run was interrupted, and syncs it before returning.
    pub fn append_interrupted(&mut self, interrupted: &Interrupted) -> Result<(), ResultsError> {
        self.write(&Entry::Interrupted(interrupted.clone()))
    }

    fn write(&mut self, entry: &Entry) -> Result<(), ResultsError> {
        let mut line = entry.encode().map_err(|e| ResultsError::Encode {
            path: self.path.clone(),
            what: "a journal entry",
            message: e.to_string(),
        })?;
        line.push(b'\n');
        let write_err = |source| ResultsError::Write {
            path: self.path.clone(),
            source,
        };
        // One write of the whole line: O_APPEND keeps it contiguous even with another writer.
        self.file.write_all(&line).map_err(write_err)?;
        self.file.sync_data().map_err(write_err)
    }
}

/// Reads the finished cases' records of a journal, in the order they finished.
pub fn read(path: &Path) -> Result<Vec<CaseRecord>, ResultsError> {
    Ok(read_entries(path)?
        .into_iter()
        .filter_map(|e| match e {
            Entry::End(r) => Some(*r),
            Entry::Start(_) | Entry::Interrupted(_) => None,
        })
        .collect())
}

/// Reads every line of a journal. A torn last line (no newline after it) is a crash during a
/// write and is dropped; any other line that is not an entry is an error naming its number.
pub fn read_entries(path: &Path) -> Result<Vec<Entry>, ResultsError> {
    let bytes = std::fs::read(path).map_err(|source| ResultsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let ends_whole = bytes.last().map_or(true, |&b| b == b'\n');
    let lines: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    // `split` yields an empty piece after a final newline; it is not a line.
    let count = if ends_whole {
        lines.len().saturating_sub(1)
    } else {
        lines.len()
    };
    let mut records = Vec::with_capacity(count);
    for (i, line) in lines[..count].iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match Entry::decode(line) {
            Ok(r) => records.push(r),
            Err(_) if i + 1 == count && !ends_whole => break,
            Err(source) => {
                return Err(ResultsError::CorruptLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    source,
                })
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::test_support::{record, with_metric};
    use crate::results::Status;

    fn three() -> Vec<CaseRecord> {
        vec![
            with_metric(record("prefetch::to_vram::2MiB", Status::Pass, None)),
            record(
                "first_touch::untouched::malloc::4KiB",
                Status::Fail,
                Some("CPU verify of [0x0, 0x1000) in allocation 1 (generation 1):\nstale page"),
            ),
            record(
                "multi_gpu::peer::2MiB",
                Status::Skip,
                Some("needs 2 GPUs, the device has 1"),
            ),
        ]
    }

    #[test]
    fn append_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(&dir.path().join("run1")).unwrap();
        for r in three() {
            j.append(&r).unwrap();
        }
        assert_eq!(read(j.path()).unwrap(), three());
    }

    #[test]
    fn truncated_last_line_is_tolerated_and_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path()).unwrap();
        for r in three() {
            j.append(&r).unwrap();
        }
        let path = j.path().to_path_buf();
        drop(j);
        let mut bytes = std::fs::read(&path).unwrap();
        let torn =
            serde_json::to_vec(&record("crash::mid_write::4KiB", Status::Pass, None)).unwrap();
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read(&path).unwrap(), three());

        // A resumed run continues after the last whole record.
        let mut j = Journal::create(dir.path()).unwrap();
        let next = record("resume::after_crash::4KiB", Status::Pass, None);
        j.append(&next).unwrap();
        let mut want = three();
        want.push(next);
        assert_eq!(read(&path).unwrap(), want);
    }

    #[test]
    fn corrupt_middle_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let good = serde_json::to_string(&three()[0]).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"case\": 12\n{good}\n")).unwrap();
        let e = read(&path).unwrap_err();
        let shown = e.to_string();
        assert!(
            matches!(e, ResultsError::CorruptLine { line: 2, .. }),
            "{shown}"
        );
        assert!(
            shown.contains("journal.jsonl` line 2: not a journal entry"),
            "{shown}"
        );
    }

    #[test]
    fn starts_and_ends_interleave_and_read_keeps_the_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path()).unwrap();
        let start = |case: &str| Start {
            case: case.into(),
            started: "2025-01-31T02:14:07.123Z".into(),
            repetition: 0,
            attempt: 1,
        };
        let [a, b, _] = three().try_into().unwrap();
        j.append_start(&start(&a.case)).unwrap();
        j.append_start(&start(&b.case)).unwrap();
        j.append(&b).unwrap();
        j.append(&a).unwrap();
        j.append_start(&start("crash::in_flight::4KiB")).unwrap();
        let entries = read_entries(j.path()).unwrap();
        assert_eq!(entries.len(), 5);
        assert_eq!(entries[4], Entry::Start(start("crash::in_flight::4KiB")));
        assert_eq!(read(j.path()).unwrap(), vec![b, a]);
        let text = std::fs::read_to_string(j.path()).unwrap();
        assert!(text.lines().all(|l| l.starts_with("{\"event\":")), "{text}");
    }

    #[test]
    fn a_line_without_event_is_a_record_and_an_unknown_event_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let plain = serde_json::to_string(&three()[0]).unwrap();
        std::fs::write(&path, format!("{plain}\n")).unwrap();
        assert_eq!(read(&path).unwrap(), vec![three()[0].clone()]);
        std::fs::write(&path, format!("{plain}\n{{\"event\": \"pause\"}}\n")).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("unknown event `pause`"),
            "{e}"
        );
    }

    #[test]
    fn empty_journal_has_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path()).unwrap();
        assert!(read(j.path()).unwrap().is_empty());
    }

    #[test]
    fn unreadable_journal_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(&dir.path().join("missing.jsonl")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read `"), "{e}");
        assert!(
            e.to_string()
                .ends_with("missing.jsonl`: no such file or directory"),
            "{e}"
        );
    }

    #[test]
    fn results_folder_that_cannot_be_created_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"").unwrap();
        let e = Journal::create(&blocker.join("run")).err().unwrap();
        let shown = e.to_string();
        assert!(
            shown.starts_with("cannot create results folder `"),
            "{shown}"
        );
        assert!(shown.ends_with("run`: not a directory"), "{shown}");
    }
}
