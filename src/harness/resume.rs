//! `--resume DIR`: continue a run that was cut short, with the settings it was started with.
//!
//! The journal says what finished (an end line) and what was running (a start line without its
//! end): the cases running when the runner died are recorded as incomplete, those running when
//! it was interrupted (an `interrupted` line after their start) run again, the finished ones
//! are not run again, and the rest run as the first run would have run them.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::cli::Options;
use super::SetupError;
use crate::results::journal::{self, Entry, Start};
use crate::results::{self, RunInfo, RUN_INFO_FILE};

/// A run folder being continued.
pub struct Resumed {
    pub dir: PathBuf,
    pub info: RunInfo,
    /// `(case, repetition)` with an end line.
    pub finished: HashSet<(String, u32)>,
    /// Attempts that started and never ended: the runner died during them.
    pub in_flight: Vec<Start>,
    /// Attempts that were running when the run was interrupted: they run again.
    pub interrupted: Vec<Start>,
    /// The records already in the journal, by `(case, repetition)`: what libtest is told of
    /// the cases not run again, so that its closing line counts the whole run.
    pub previous: std::collections::HashMap<(String, u32), results::CaseRecord>,
}

/// The options of this run: from the command line, or for `--resume DIR` from the run's own
/// run.json; with the command line to record, and the run being resumed.
pub fn options(args: Vec<String>) -> Result<(Options, Vec<String>, Option<Resumed>), SetupError> {
    let options = Options::parse(args.clone())?;
    let Some(dir) = options.resume.clone() else {
        return Ok((options, args, None));
    };
    let others: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with("--resume") && Path::new(a.as_str()) != dir)
        .collect();
    if !others.is_empty() {
        return Err(SetupError::Plan(format!(
            "--resume {}: a resumed run keeps the settings it was started with; drop {}",
            dir.display(),
            others
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(" ")
        )));
    }
    let resumed = Resumed::read(&dir)?;
    let mut original = resumed.info.command_line.clone();
    if original.is_empty() {
        return Err(not_a_run(&dir, "its run.json has no command line"));
    }
    original[0] = args.first().cloned().unwrap_or_else(|| "svmconf".into());
    let mut options = Options::parse(original.clone())?;
    if options.resume.is_some() {
        return Err(not_a_run(&dir, "its run.json records a --resume"));
    }
    options.resume = Some(dir);
    Ok((options, original, Some(resumed)))
}

fn not_a_run(dir: &Path, why: &str) -> SetupError {
    SetupError::Plan(format!(
        "--resume {}: not a run folder svmconf can continue: {why}",
        dir.display()
    ))
}

impl Resumed {
    /// Reads a run folder without changing it.
    pub fn read(dir: &Path) -> Result<Resumed, SetupError> {
        if !dir.is_dir() {
            let why = match std::fs::metadata(dir) {
                Ok(_) => "it is a file; give the run folder that holds run.json and journal.jsonl"
                    .to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such folder".to_string(),
                Err(e) => crate::util::text::io_reason(&e),
            };
            return Err(not_a_run(dir, &why));
        }
        let info =
            RunInfo::read(&dir.join(RUN_INFO_FILE)).map_err(|e| not_a_run(dir, &e.to_string()))?;
        let entries = journal::read_entries(&dir.join(results::JOURNAL_FILE))
            .map_err(|e| not_a_run(dir, &e.to_string()))?;
        let mut finished = HashSet::new();
        for e in &entries {
            if let Entry::End(r) = e {
                finished.insert((r.case.clone(), r.repetition));
            }
        }
        let mut in_flight: Vec<Start> = Vec::new();
        let mut interrupted: Vec<Start> = Vec::new();
        for e in &entries {
            match e {
                Entry::Start(s) if !finished.contains(&(s.case.clone(), s.repetition)) => {
                    in_flight.retain(|o| (&o.case, o.repetition) != (&s.case, s.repetition));
                    in_flight.push(s.clone());
                }
                // What was running when the run was interrupted runs again: an interrupt is
                // not a crash.
                Entry::Interrupted(_) => interrupted.append(&mut in_flight),
                _ => {}
            }
        }
        interrupted.retain(|s| {
            !in_flight
                .iter()
                .any(|o| (&o.case, o.repetition) == (&s.case, s.repetition))
        });
        let previous = entries
            .into_iter()
            .filter_map(|e| match e {
                Entry::End(r) => Some(((r.case.clone(), r.repetition), *r)),
                _ => None,
            })
            .collect();
        for s in &in_flight {
            finished.insert((s.case.clone(), s.repetition));
        }
        Ok(Resumed {
            dir: dir.to_path_buf(),
            info,
            finished,
            in_flight,
            interrupted,
            previous,
        })
    }

    /// The journal, opened to go on (a torn last line cut off).
    pub fn journal(&self) -> Result<results::Journal, SetupError> {
        Ok(results::Journal::create(&self.dir)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{CaseRecord, Journal, Status};

    fn start(case: &str, attempt: u32) -> Start {
        Start {
            case: case.into(),
            started: "2025-01-31T02:14:07.123Z".into(),
            repetition: 0,
            attempt,
        }
    }

    fn end(case: &str) -> CaseRecord {
        CaseRecord {
            case: case.into(),
            status: Status::Pass,
            ..CaseRecord::blank()
        }
    }

    fn run_dir(lines: impl FnOnce(&mut Journal)) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path()).unwrap();
        lines(&mut j);
        let mut info = crate::results::test_support::run();
        info.command_line = vec!["svmconf".into(), "--seed".into(), "9".into()];
        info.write(dir.path()).unwrap();
        dir
    }

    #[test]
    fn finished_and_in_flight_are_told_apart() {
        let dir = run_dir(|j| {
            j.append_start(&start("a::x::4KiB", 1)).unwrap();
            j.append(&end("a::x::4KiB")).unwrap();
            j.append_start(&start("b::x::4KiB", 1)).unwrap();
            j.append_start(&start("b::x::4KiB", 2)).unwrap();
        });
        let r = Resumed::read(dir.path()).unwrap();
        assert_eq!(r.in_flight, vec![start("b::x::4KiB", 2)]);
        assert!(r.finished.contains(&("a::x::4KiB".into(), 0)));
        assert!(r.finished.contains(&("b::x::4KiB".into(), 0)));
    }

    /// What was running at an interrupt runs again; what was running at a crash after it is
    /// incomplete; an interrupt does not reach back past what had ended.
    #[test]
    fn an_interrupt_is_not_a_crash() {
        let mark = crate::results::journal::Interrupted {
            at: "2025-01-31T02:15:00.000Z".into(),
            signal: "SIGINT".into(),
        };
        let dir = run_dir(|j| {
            j.append_start(&start("a::x::4KiB", 1)).unwrap();
            j.append(&end("a::x::4KiB")).unwrap();
            j.append_start(&start("b::x::4KiB", 1)).unwrap();
            j.append_interrupted(&mark).unwrap();
            j.append_start(&start("c::x::4KiB", 1)).unwrap();
        });
        let r = Resumed::read(dir.path()).unwrap();
        assert_eq!(r.interrupted, vec![start("b::x::4KiB", 1)]);
        assert_eq!(r.in_flight, vec![start("c::x::4KiB", 1)]);
        assert!(
            !r.finished.contains(&("b::x::4KiB".into(), 0)),
            "b runs again"
        );
        assert!(
            r.finished.contains(&("c::x::4KiB".into(), 0)),
            "c is recorded"
        );
        assert_eq!(r.previous.len(), 1);
        assert!(r.previous.contains_key(&("a::x::4KiB".into(), 0)));
    }

    #[test]
    fn the_settings_come_from_run_json() {
        let dir = run_dir(|_| {});
        let d = dir.path().to_str().unwrap().to_string();
        let (o, line, r) = options(vec!["svmconf".into(), "--resume".into(), d]).unwrap();
        assert_eq!(o.seed, 9);
        assert_eq!(line, ["svmconf", "--seed", "9"]);
        assert!(r.is_some() && o.resume.is_some());
    }

    #[test]
    fn other_options_with_resume_are_refused() {
        let dir = run_dir(|_| {});
        let d = dir.path().to_str().unwrap().to_string();
        let e = options(vec![
            "svmconf".into(),
            "--resume".into(),
            d,
            "--seed".into(),
            "3".into(),
        ])
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("keeps the settings it was started with; drop `--seed` `3`"),
            "{e}"
        );
    }

    #[test]
    fn a_folder_that_is_not_a_run_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = Resumed::read(dir.path()).err().unwrap().to_string();
        assert!(e.contains("not a run folder svmconf can continue"), "{e}");
        assert!(e.contains("run.json"), "{e}");
        let e = Resumed::read(&dir.path().join("nope"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.ends_with("no such folder"), "{e}");
        // Nothing was created by looking.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // A file is named as one, not as missing.
        let file = dir.path().join("journal.jsonl");
        std::fs::write(&file, "").unwrap();
        let e = Resumed::read(&file).err().unwrap().to_string();
        assert!(
            e.ends_with("it is a file; give the run folder that holds run.json and journal.jsonl"),
            "{e}"
        );
    }
}
