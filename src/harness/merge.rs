//! `svmconf merge OUT RUN_DIR...`: the runs of a sharded night joined into one run folder, with
//! its reports and the run's exit status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{exit_code, print_failures, SetupError};
use crate::results;

/// `svmconf merge OUT RUN_DIR...`: the runs of shards joined into one, with its reports.
pub(super) fn run(args: &[String]) -> Result<ExitCode, SetupError> {
    let [out, runs @ ..] = args else {
        return Err(SetupError::Plan(
            "merge: expected `svmconf merge OUT RUN_DIR...`: a new folder, then the shards' run \
             folders"
                .into(),
        ));
    };
    let runs: Vec<PathBuf> = runs.iter().map(PathBuf::from).collect();
    let report = results::merge::merge(Path::new(out), &runs)
        .map_err(|e| SetupError::Plan(format!("merge: {e}")))?;
    println!(
        "svmconf: merged {} runs, {} cases, into {}",
        report.shards.len(),
        report.records,
        report.out_dir.display()
    );
    if !report.missing_shards.is_empty() {
        println!(
            "svmconf: shards missing: {}",
            report
                .missing_shards
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for note in &report.notes {
        println!("svmconf: note: {note}");
    }
    let records = results::journal::read(&report.out_dir.join(results::JOURNAL_FILE))?;
    print_failures(&records);
    Ok(exit_code(&records))
}
