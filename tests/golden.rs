//! Golden reports, as IGT's runner keeps reference results: each folder of `tests/golden/` is a
//! scenario, a run's `journal.jsonl` and `run.json` trimmed from real runs of svmconf, with
//! fixed times and host. The test reads them through the library's public API
//! (`results::journal::read`, `RunInfo::read`), writes every report the runner writes
//! (`junit.xml`, `ktap.txt`, `summary.md`, and `run.json` written back) and compares each with
//! the file of that name in the folder, byte for byte. A difference fails the test with the
//! first lines that differ. `run.json` is input and reference at once: written back, it must
//! come out as it went in.
//!
//! After a change to a report that is meant, update the references with
//!
//! ```sh
//! SVMCONF_BLESS=1 cargo test --test golden
//! ```
//!
//! and read `git diff tests/golden` before committing them: the diff is the change every user
//! of the reports will see.
//!
//! The golden `junit.xml` files are also validated against the JUnit schema that the
//! junit-report crate ships in its `tests/` folder, with xmllint (Debian package
//! libxml2-utils): without it that test skips, and under `CI=true` it fails.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use svmconf::results::journal::{self, Entry};
use svmconf::results::{self, RunInfo, Status};

/// Set to `1` to write what the library renders now over the reference files.
const BLESS_ENV: &str = "SVMCONF_BLESS";
const BLESS_COMMAND: &str = "SVMCONF_BLESS=1 cargo test --test golden";

/// The scenarios, each a folder of `tests/golden/`.
const SCENARIOS: &[&str] = &[
    "nightly",
    "lab-runner",
    "baseline",
    "shard-resumed",
    "interrupted",
];

/// The reports compared, in the order the runner writes them.
const REPORTS: &[&str] = &[
    results::RUN_INFO_FILE,
    results::JUNIT_FILE,
    results::SUMMARY_FILE,
    results::KTAP_FILE,
];

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn bless() -> bool {
    std::env::var(BLESS_ENV).is_ok_and(|v| v == "1")
}

/// Reads a scenario's journal and run description as `svmconf` and `svmconf merge` do.
fn inputs(dir: &Path) -> (Vec<results::CaseRecord>, RunInfo) {
    let records = journal::read(&dir.join(results::JOURNAL_FILE)).unwrap_or_else(|e| panic!("{e}"));
    let run = RunInfo::read(&dir.join(results::RUN_INFO_FILE)).unwrap_or_else(|e| panic!("{e}"));
    (records, run)
}

/// Every report of the scenario in `dir` as the library writes it now: (file name, bytes).
fn render(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let (records, run) = inputs(dir);
    let out = tempfile::tempdir().expect("a temporary folder");
    let at = |file: &str| out.path().join(file);
    run.write(out.path()).unwrap_or_else(|e| panic!("{e}"));
    results::write_junit(&records, &run, &at(results::JUNIT_FILE))
        .unwrap_or_else(|e| panic!("{e}"));
    results::write_summary(&records, &run, &at(results::SUMMARY_FILE))
        .unwrap_or_else(|e| panic!("{e}"));
    results::write_ktap(&records, &run, &at(results::KTAP_FILE)).unwrap_or_else(|e| panic!("{e}"));
    REPORTS
        .iter()
        .map(|&file| {
            let bytes = std::fs::read(at(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            (file, bytes)
        })
        .collect()
}

/// Lines of context shown before a change, changed lines shown in all, and characters shown of
/// a long line (JUnit puts most of a test case on one line) around the first that differs.
const CONTEXT: usize = 3;
const SHOWN: usize = 24;
const WIDTH: usize = 160;

/// Where `rendered` differs from `expected`, for a person: the line and column of the first
/// difference, then each changed line, expected (`-`) and rendered (`+`), with the lines before
/// it, as `diff -u` shows them, until [`SHOWN`] changed lines are out. `None` when they are the
/// same bytes.
fn difference(expected: &[u8], rendered: &[u8]) -> Option<String> {
    if expected == rendered {
        return None;
    }
    let expected = String::from_utf8_lossy(expected);
    let rendered = String::from_utf8_lossy(rendered);
    // Lines with their endings, so that a missing final newline is a difference too.
    let old: Vec<&str> = expected.split_inclusive('\n').collect();
    let new: Vec<&str> = rendered.split_inclusive('\n').collect();
    let head = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
    // The first character that differs between the first lines that differ.
    let column = match (old.get(head), new.get(head)) {
        (Some(a), Some(b)) => a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count(),
        _ => 0,
    };
    let mut out = format!(
        "first difference at line {}, column {} ({} lines expected, {} rendered):\n",
        head + 1,
        column + 1,
        old.len(),
        new.len()
    );
    let mut shown = 0;
    let mut kept: Vec<(usize, &str)> = Vec::new(); // unchanged lines since the last change
    for edit in edits(&old, &new) {
        let (mark, n, line) = match edit {
            Edit::Same(n, line) => {
                kept.push((n, line));
                continue;
            }
            Edit::Old(n, line) => ('-', n, line),
            Edit::New(n, line) => ('+', n, line),
        };
        if shown == SHOWN {
            let _ = writeln!(out, "   ... and more differences");
            break;
        }
        for (n, line) in kept
            .drain(..)
            .rev()
            .take(CONTEXT)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            show_line(&mut out, ' ', n, line, 0);
        }
        show_line(&mut out, mark, n, line, column);
        shown += 1;
    }
    Some(out)
}

/// One step from the expected lines to the rendered ones, with its line number (from 0) on
/// its side.
enum Edit<'a> {
    Same(usize, &'a str),
    Old(usize, &'a str),
    New(usize, &'a str),
}

/// The steps from `old` to `new` that keep the most lines: a longest common subsequence over
/// the part between their common first and last lines (the reports are small).
fn edits<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Edit<'a>> {
    let head = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let tail = old[head..]
        .iter()
        .rev()
        .zip(new[head..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (a, b) = (&old[head..old.len() - tail], &new[head..new.len() - tail]);
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut steps: Vec<Edit<'a>> = (0..head).map(|n| Edit::Same(n, old[n])).collect();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            steps.push(Edit::Same(head + i, a[i]));
            (i, j) = (i + 1, j + 1);
        } else if j == b.len() || (i < a.len() && lcs[i + 1][j] >= lcs[i][j + 1]) {
            steps.push(Edit::Old(head + i, a[i]));
            i += 1;
        } else {
            steps.push(Edit::New(head + j, b[j]));
            j += 1;
        }
    }
    steps
}

/// One line of a difference, `mark` and its number first; a line longer than [`WIDTH`] is cut
/// to the part around character `column`, with `...` where it was cut.
fn show_line(out: &mut String, mark: char, n: usize, line: &str, column: usize) {
    let (text, end) = match line.strip_suffix('\n') {
        Some(text) => (text, ""),
        None => (line, " (no newline at the end)"),
    };
    let chars: Vec<char> = text.chars().collect();
    let from = column
        .saturating_sub(WIDTH / 2)
        .min(chars.len().saturating_sub(WIDTH));
    let to = (from + WIDTH).min(chars.len());
    let cut: String = chars[from..to].iter().collect();
    let before = if from > 0 { "..." } else { "" };
    let after = if to < chars.len() { "..." } else { "" };
    let _ = writeln!(out, "{mark}{:>5} | {before}{cut}{after}{end}", n + 1);
}

/// Every way the reports rendered from `dir` differ from the reference files in it, each with
/// its diff; `label` names the folder in the messages.
fn compare(dir: &Path, label: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, rendered) in render(dir) {
        let shown = format!("{label}/{file}");
        match std::fs::read(dir.join(file)) {
            Err(e) => problems.push(format!("{shown}: {e}")),
            Ok(expected) => {
                if let Some(diff) = difference(&expected, &rendered) {
                    problems.push(format!(
                        "{shown} is not what the library writes now; {diff}"
                    ));
                }
            }
        }
    }
    problems
}

/// Compares every report of `scenario` with its reference, or under `SVMCONF_BLESS=1` writes
/// what the library renders now over the references.
fn check(scenario: &str) {
    let dir = golden_root().join(scenario);
    let label = format!("tests/golden/{scenario}");
    if bless() {
        for (file, rendered) in render(&dir) {
            let path = dir.join(file);
            if std::fs::read(&path).ok().as_deref() != Some(&rendered[..]) {
                std::fs::write(&path, &rendered).unwrap_or_else(|e| panic!("{label}/{file}: {e}"));
                eprintln!("{BLESS_ENV}=1: wrote {label}/{file}");
            }
        }
        return;
    }
    let problems = compare(&dir, &label);
    assert!(
        problems.is_empty(),
        "{}\nIf the change is meant, update the references with `{BLESS_COMMAND}` and review \
         `git diff tests/golden`.",
        problems.join("\n")
    );
}

#[test]
fn nightly() {
    check("nightly");
}

#[test]
fn lab_runner() {
    check("lab-runner");
}

#[test]
fn baseline() {
    check("baseline");
}

#[test]
fn shard_resumed() {
    check("shard-resumed");
}

#[test]
fn interrupted() {
    check("interrupted");
}

/// A scenario folder without its test would never be compared.
#[test]
fn every_scenario_folder_is_checked() {
    let mut found: Vec<String> = std::fs::read_dir(golden_root())
        .expect("tests/golden")
        .map(|e| e.expect("an entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "tests/golden's folders and SCENARIOS");
}

/// What the scenarios must hold between them, so that trimming a journal cannot quietly drop
/// what the golden files were made to cover.
#[test]
fn the_scenarios_cover_every_status_and_every_part_of_a_record() {
    let mut records = Vec::new();
    let mut runs = Vec::new();
    let mut resumed = false;
    for scenario in SCENARIOS {
        let dir = golden_root().join(scenario);
        let (r, run) = inputs(&dir);
        let entries = journal::read_entries(&dir.join(results::JOURNAL_FILE)).expect("journal");
        // A resumed run: the case in flight when the runner died is recorded as incomplete.
        resumed |= r.iter().any(|r| {
            r.status == Status::Incomplete
                && r.headline().starts_with("the run ended while attempt 1")
                && entries
                    .iter()
                    .any(|e| matches!(e, Entry::Start(s) if s.case == r.case))
        });
        records.extend(r);
        runs.push(run);
    }
    for status in Status::ALL {
        assert!(
            records.iter().any(|r| r.status == status),
            "no scenario has a case with status {status}"
        );
    }
    let has = |what: &str, found: bool| assert!(found, "no scenario has {what}");
    has(
        "a failure with the pattern's evidence",
        records
            .iter()
            .any(|r| r.status == Status::Fail && r.headline().starts_with("CPU verify of")),
    );
    has(
        "a skip with a reason",
        records
            .iter()
            .any(|r| r.status == Status::Skip && r.reason.is_some()),
    );
    has("metrics", records.iter().any(|r| !r.metrics.is_empty()));
    has(
        "a flagged kernel log line",
        records
            .iter()
            .any(|r| r.kernel_log.iter().any(|l| l.flag.is_some())),
    );
    has(
        "a retried case",
        records.iter().any(|r| !r.retries.is_empty()),
    );
    has("a taint change", records.iter().any(|r| r.taint.is_some()));
    has(
        "a case's output",
        records.iter().any(|r| r.output.is_some()),
    );
    has(
        "an expectation",
        records.iter().any(|r| r.expectation.is_some()),
    );
    has("a repeated case", records.iter().any(|r| r.repetition > 0));
    has(
        "baseline comparisons",
        records.iter().any(|r| !r.baseline.is_empty()) && runs.iter().any(|r| r.baseline.is_some()),
    );
    has("a shard", runs.iter().any(|r| r.shard.is_some()));
    has(
        "an unfinished run",
        runs.iter().any(|r| r.finished.is_none()),
    );
    has("observers", runs.iter().any(|r| !r.observers.is_empty()));
    has("a resumed run", resumed);
}

#[test]
fn a_difference_shows_the_first_lines_that_differ() {
    assert_eq!(difference(b"a\nb\n", b"a\nb\n"), None);
    let shown = difference(b"1\n2\n3\n4\n5\n6\n", b"1\n2\n3\n4\nfive\n6\n").expect("a difference");
    assert_eq!(
        shown,
        "first difference at line 5, column 1 (6 lines expected, 6 rendered):\n     \
         2 | 2\n     3 | 3\n     4 | 4\n-    5 | 5\n+    5 | five\n"
    );
    let shown = difference(b"ok 1 a\n", b"ok 1 a").expect("a difference");
    assert!(
        shown.ends_with("-    1 | ok 1 a\n+    1 | ok 1 a (no newline at the end)\n"),
        "{shown}"
    );
    let shown = difference(b"a\n", b"a\nb\nc\n").expect("a difference");
    assert!(shown.ends_with("+    2 | b\n+    3 | c\n"), "{shown}");

    // A long line (a JUnit test case) is shown around its first difference.
    let line = |c: char| format!("{}{c}{}\n", "x".repeat(700), "y".repeat(300));
    let shown = difference(line('a').as_bytes(), line('b').as_bytes()).expect("a difference");
    let near = format!("{}a{}", "x".repeat(WIDTH / 2), "y".repeat(WIDTH / 2 - 1));
    assert!(
        shown.starts_with("first difference at line 1, column 701 ")
            && shown.contains(&format!("\n-    1 | ...{near}...\n")),
        "{shown}"
    );
}

/// A reference that differs from what the library writes (here a KTAP result line turned from
/// `not ok` to `ok`) is found, named, and shown with its line.
#[test]
fn a_changed_reference_is_named_with_its_diff() {
    if bless() {
        return; // the references are being written, maybe this very moment
    }
    let copy = tempfile::tempdir().expect("a temporary folder");
    let from = golden_root().join("nightly");
    for entry in std::fs::read_dir(&from).expect("tests/golden/nightly") {
        let entry = entry.expect("an entry");
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).expect("a copy");
    }
    assert_eq!(compare(copy.path(), "copy"), Vec::<String>::new());
    let ktap = copy.path().join(results::KTAP_FILE);
    let text = std::fs::read_to_string(&ktap).expect("ktap.txt");
    let at = text
        .find("  not ok ")
        .expect("a failed case in the nightly scenario");
    let line = 1 + text[..at].matches('\n').count();
    std::fs::write(&ktap, text.replacen("  not ok ", "  ok ", 1)).expect("ktap.txt");
    let problems = compare(copy.path(), "copy");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        problems[0].starts_with(&format!(
            "copy/ktap.txt is not what the library writes now; first difference at line {line}, \
             column 3 "
        )),
        "{}",
        problems[0]
    );
    assert!(
        problems[0].contains(&format!("\n+{line:>5} |   not ok ")),
        "{}",
        problems[0]
    );
}

// --- the JUnit schemas -------------------------------------------------------------------------

/// Every golden junit.xml is valid by the JUnit schema junit-report validates its own output
/// against (`tests/JUnit.xsd`, Jenkins' junit-4.xsd), as written, skips included. The crate's
/// other schema, `JUnit-alternative.xsd`, is not used: it requires `<properties>` in every
/// testsuite and a timestamp without a time zone, and its own `tests/reference.xml` fails it.
#[test]
fn golden_junit_is_valid_by_the_junit_schema() {
    if bless() {
        return; // the references are being written; validate them on the next run
    }
    let Some(xmllint) = common::tools::xmllint() else {
        common::needs::missing(
            "xmllint (SVMCONF_XMLLINT, else xmllint)",
            "Debian package libxml2-utils",
        );
        return;
    };
    let Some(schemas) = common::tools::junit_report_tests() else {
        common::needs::missing(
            "the JUnit schema of the junit-report crate (its tests/JUnit.xsd)",
            "cargo fetch puts the crate's sources under $CARGO_HOME/registry/src",
        );
        return;
    };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut problems = Vec::new();
    for scenario in SCENARIOS {
        let golden = golden_root().join(scenario).join(results::JUNIT_FILE);
        let text = std::fs::read_to_string(&golden).expect("a golden junit.xml");
        let file = dir.path().join(format!("{scenario}.xml"));
        std::fs::write(&file, text).expect("a copy to validate");
        let out = Command::new(&xmllint)
            .args(["--noout", "--schema"])
            .arg(schemas.join("JUnit.xsd"))
            .arg(&file)
            .output()
            .unwrap_or_else(|e| panic!("{xmllint}: {e}"));
        if !out.status.success() {
            problems.push(format!(
                "tests/golden/{scenario}/junit.xml is not valid by junit-report's JUnit.xsd:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
