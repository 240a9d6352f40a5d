//! Helpers for the tests that drive the `svmconf` binary as a user would.

#![allow(dead_code)] // each test file uses a different part

/// A tool or device this machine lacks: a failure under `CI=true`, a skip line elsewhere.
pub mod needs;
/// The report consumers the tests check with: xmllint, junitparser, kunit.py.
pub mod tools;

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

/// The case results of a KTAP report: (name, ok, directive) of each subtest line, the suites'
/// own lines left out. Checks the version lines and that each plan matches its results.
pub fn ktap_cases(text: &str) -> Vec<(String, bool, String)> {
    let mut cases = Vec::new();
    let mut plans: Vec<(usize, usize)> = Vec::new(); // (indent, planned)
    let mut counts: std::collections::BTreeMap<usize, usize> = Default::default();
    assert!(
        text.starts_with("KTAP version 1\n"),
        "KTAP starts with its version"
    );
    // The suite a block names (`# Subtest: NAME`); its cases are named within it.
    let mut suite = String::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let line = line.trim_start();
        if let Some(name) = line.strip_prefix("# Subtest: ") {
            suite = name.to_string();
            continue;
        }
        if let Some(plan) = line.strip_prefix("1..") {
            // A new plan at this depth starts a new count.
            counts.insert(indent, 0);
            plans.push((indent, plan.parse().expect("a plan is 1..N")));
            continue;
        }
        let (ok, rest) = match (line.strip_prefix("ok "), line.strip_prefix("not ok ")) {
            (Some(r), _) => (true, r),
            (_, Some(r)) => (false, r),
            _ => continue,
        };
        *counts.entry(indent).or_default() += 1;
        let (_, rest) = rest.split_once(' ').expect("ok N NAME");
        let (name, directive) = match rest.split_once(" # ") {
            Some((n, d)) => (n.to_string(), d.to_string()),
            None => (rest.to_string(), String::new()),
        };
        if indent > 0 {
            assert!(
                !suite.is_empty(),
                "a case before its block's `# Subtest:`: {line}"
            );
            cases.push((format!("{suite}::{name}"), ok, directive));
        }
        // The subtests of a suite end with its own result line.
        if let Some(&(sub, planned)) = plans.last() {
            if sub > indent {
                assert_eq!(
                    counts.get(&sub).copied().unwrap_or(0),
                    planned,
                    "plan of {name}"
                );
                plans.pop();
            }
        }
    }
    cases
}

/// The sim profile, written to `dir/sim.yaml`, expecting a kernel release no machine has
/// (`^0\.0\.`): preflight refuses every run with it.
pub fn profile_for_another_kernel(dir: &Path) -> PathBuf {
    let sim = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/profiles/sim.yaml"),
    )
    .expect("the sim profile");
    assert!(sim.contains("  arch: sim\n") && sim.contains("  xnack: true\n"));
    let wrong = dir.join("sim.yaml");
    std::fs::write(
        &wrong,
        sim.replacen(
            "expect:\n  arch: sim\n",
            "expect:\n  arch: sim\n  kernel_release: '^0\\.0\\.'\n",
            1,
        ),
    )
    .expect("write the profile");
    wrong
}
