//! Helpers for the tests that drive the `svmconf` binary as a user would.

#![allow(dead_code)] // each test file uses a different part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs svmconf from the repository root (where `fixtures/` is) with `args`.
pub fn svmconf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_svmconf"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the svmconf binary runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The one run folder svmconf made under `results`.
pub fn run_dir(results: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(results)
        .expect("the results folder exists")
        .map(|e| e.expect("a readable entry").path())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "one run folder in {}: {dirs:?}",
        results.display()
    );
    dirs.into_iter().next().unwrap_or_default()
}

/// Every finished case's record in a run folder's journal, as JSON.
pub fn journal(dir: &Path) -> Vec<serde_json::Value> {
    entries(dir)
        .into_iter()
        .filter(|e| e["event"] == "end")
        .collect()
}

/// Every line of a run folder's journal, starts and ends, as JSON.
pub fn entries(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .expect("journal.jsonl is readable")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each journal line is JSON"))
        .collect()
}

pub fn record<'a>(records: &'a [serde_json::Value], case: &str) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["case"] == case)
        .unwrap_or_else(|| panic!("no record of {case}"))
}
