//! svmconf's reports read by what reads them in CI and at a kernel developer's desk: junit.xml
//! validated against the Jenkins JUnit schema (junit-4.xsd, as junit-report ships it) with
//! xmllint and read by junitparser, ktap.txt parsed by the kernel's own kunit.py. Each on a
//! passing run (passes and skips) and a failing one (a broken sim), the counts each consumer
//! finds equal to the journal's.
//!
//! Tools: xmllint (libxml2-utils), python3 with junitparser (python3-junitparser), kunit.py
//! from a kernel source tree (`SVMCONF_KUNIT`, else /usr/src: linux-source-6.12). Without them
//! these tests skip, and under `CI=true` they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{journal, run_dir, svmconf, text, tools};
use rstest::rstest;

/// The cases of both runs: every suite has a 2 MiB case; multi_gpu's skip on the sim.
const FILTER: &str = "2MiB";

/// A run of [`FILTER`] with `extra`, its folder and its journal.
fn run(root: &Path, extra: &[&str]) -> (PathBuf, Vec<serde_json::Value>) {
    let results = root.join("results");
    let mut args = vec![
        "--results",
        results.to_str().unwrap_or_default(),
        "--allow-destructive",
        FILTER,
    ];
    args.extend_from_slice(extra);
    let out = svmconf(&args);
    assert!(matches!(out.status.code(), Some(0 | 101)), "{}", text(&out));
    let dir = run_dir(&results);
    let records = journal(&dir);
    (dir, records)
}

/// What the journal says a JUnit consumer must count: (tests, failures, errors, skipped).
fn junit_counts(records: &[serde_json::Value]) -> [usize; 4] {
    let status = |r: &serde_json::Value| r["status"].as_str().unwrap_or_default().to_string();
    let of = |set: &[&str]| {
        records
            .iter()
            .filter(|r| set.contains(&status(r).as_str()))
            .count()
    };
    [
        records.len(),
        of(&["fail", "dmesg_warn", "dmesg_fail", "unexpected_pass"]),
        of(&["timeout", "crash", "incomplete"]),
        of(&["skip", "notrun"]),
    ]
}

fn healthy() -> Vec<&'static str> {
    Vec::new()
}

fn broken() -> Vec<&'static str> {
    vec!["--sim-break", "corrupt-migrate-to-ram"]
}

/// junitparser's view of a junit.xml: per-case counts, the totals its suites and the root
/// claim, and how many result texts carry the repro command.
const JUNITPARSER: &str = r#"
import json, sys
from junitparser import JUnitXml, Failure, Error, Skipped
xml = JUnitXml.fromfile(sys.argv[1])
cases = failures = errors = skipped = with_repro = results = 0
claimed = [0, 0, 0, 0]
for suite in xml:
    claimed[0] += int(suite.tests); claimed[1] += int(suite.failures)
    claimed[2] += int(suite.errors); claimed[3] += int(suite.skipped)
    for case in suite:
        cases += 1
        for r in case.result:
            results += 1
            failures += isinstance(r, Failure)
            errors += isinstance(r, Error)
            skipped += isinstance(r, Skipped)
            with_repro += "repeat with: " in (r.text or "")
root = xml._elem
print(json.dumps({
    "cases": [cases, failures, errors, skipped],
    "suites": claimed,
    "root": [int(root.get(k, -1)) for k in ("tests", "failures", "errors")],
    "results": results,
    "with_repro": with_repro,
}))
"#;

#[rstest]
#[case::passing(healthy())]
#[case::failing(broken())]
fn junit_validates_against_the_jenkins_schema_and_junitparser_reads_it_whole(
    #[case] extra: Vec<&str>,
) {
    let (Some(xmllint), Some(schemas), Some(python)) = (
        tools::xmllint(),
        tools::junit_report_tests(),
        tools::junitparser(),
    ) else {
        common::needs::missing(
            "xmllint, junit-report's JUnit.xsd or python3 with junitparser",
            "Debian packages libxml2-utils and python3-junitparser; cargo fetch",
        );
        return;
    };
    let root = tempfile::tempdir().expect("a temporary folder");
    let (dir, records) = run(root.path(), &extra);
    let junit = dir.join("junit.xml");
    let out = Command::new(&xmllint)
        .args(["--noout", "--schema"])
        .arg(schemas.join("JUnit.xsd"))
        .arg(&junit)
        .output()
        .expect("xmllint runs");
    assert!(
        out.status.success(),
        "junit.xml is not valid by junit-4.xsd:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&python)
        .args(["-c", JUNITPARSER])
        .arg(&junit)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", text(&out));
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let want = junit_counts(&records);
    assert_eq!(
        seen["cases"],
        serde_json::json!(want),
        "junitparser's cases"
    );
    assert_eq!(
        seen["suites"],
        serde_json::json!(want),
        "the suites' totals"
    );
    assert_eq!(
        seen["root"],
        serde_json::json!(&want[..3]),
        "the totals on <testsuites>"
    );
    // GitLab shows a case's failure, error or skip text and nothing else: each carries the
    // command that repeats it.
    assert_eq!(seen["results"], seen["with_repro"], "{seen}");
    if extra.is_empty() {
        assert!(
            want[1] + want[2] == 0 && want[3] > 0,
            "passes and skips: {want:?}"
        );
    } else {
        assert!(want[1] > 0, "failures: {want:?}");
    }
}

#[rstest]
#[case::passing(healthy())]
#[case::failing(broken())]
fn kunit_py_names_every_suite_and_counts_every_case(#[case] extra: Vec<&str>) {
    let Some(kunit) = tools::kunit_py() else {
        common::needs::missing(
            "the kernel's tools/testing/kunit/kunit.py",
            "Debian package linux-source-6.12 (its tarball under /usr/src), or SVMCONF_KUNIT",
        );
        return;
    };
    let root = tempfile::tempdir().expect("a temporary folder");
    let (dir, records) = run(root.path(), &extra);
    let out = Command::new("python3")
        .arg(&kunit)
        .arg("parse")
        .arg(dir.join("ktap.txt"))
        .current_dir(root.path())
        .output()
        .expect("kunit.py runs");
    let said = String::from_utf8_lossy(&out.stdout);
    let mut suites: Vec<&str> = records
        .iter()
        .filter_map(|r| r["case"].as_str()?.split("::").next())
        .collect();
    suites.dedup();
    for suite in &suites {
        let cases = records
            .iter()
            .filter(|r| {
                r["case"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&format!("{suite}::")))
            })
            .count();
        let header = format!(
            " {suite} ({cases} subtest{}) ",
            if cases == 1 { "" } else { "s" }
        );
        assert!(said.contains(&header), "`{header}` in:\n{said}");
    }
    // Named within their suite: no case line repeats its suite's name.
    for line in said
        .lines()
        .filter(|l| l.contains("] [PASSED] ") || l.contains("] [FAILED] "))
    {
        let name = line.rsplit("] ").next().unwrap_or_default();
        assert!(
            !suites.iter().any(|s| name.starts_with(&format!("{s}::"))),
            "a doubled prefix: {line}"
        );
    }
    let [tests, failures, errors, skipped] = junit_counts(&records);
    let failed = failures + errors;
    let total = format!(
        "Ran {tests} tests: passed: {}, failed: {failed}, skipped: {skipped}",
        tests - failed - skipped
    );
    let total = total.replace(", failed: 0", "");
    assert!(said.contains(&total), "`{total}` in:\n{said}");
    assert_eq!(out.status.success(), failed == 0, "{said}");
}

/// `text` with what differs between two healthy runs of the same plan taken out: the results
/// folder, run ids, timestamps and every figure with a decimal point (times, bandwidths).
fn masked(text: &str, root: &Path) -> String {
    let text = text.replace(&root.to_string_lossy().into_owned(), "ROOT");
    let rules = [
        (r"\d{8}T\d{6}Z[\w.-]*", "RUN"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "TIME"),
        (r"\d+\.\d+(e[-+]?\d+)?", "X"),
    ];
    rules.iter().fold(text, |t, (pattern, with)| {
        regex::Regex::new(pattern)
            .expect("a pattern")
            .replace_all(&t, *with)
            .into_owned()
    })
}

/// Two healthy runs of the same cases, their cases finishing in different orders on two
/// threads: every report lists them in plan order, so the files differ only in times and
/// figures.
#[test]
fn two_healthy_runs_give_the_same_reports_but_for_times_and_figures() {
    let root = tempfile::tempdir().expect("a temporary folder");
    let runs: Vec<(PathBuf, PathBuf)> = ["a", "b"]
        .iter()
        .map(|name| {
            let at = root.path().join(name);
            let (dir, _) = run(&at, &["--test-threads", "2"]);
            (at, dir)
        })
        .collect();
    for file in ["summary.md", "junit.xml", "ktap.txt"] {
        let [a, b] = [&runs[0], &runs[1]].map(|(at, dir)| {
            masked(
                &std::fs::read_to_string(dir.join(file)).expect("a report"),
                at,
            )
        });
        let first = a.lines().zip(b.lines()).position(|(x, y)| x != y);
        assert!(
            a == b,
            "{file} differs at line {}:\n  {}\n  {}",
            first.map_or(0, |i| i + 1),
            first.and_then(|i| a.lines().nth(i)).unwrap_or("(end)"),
            first.and_then(|i| b.lines().nth(i)).unwrap_or("(end)")
        );
    }
}

/// A run with one planted defect (every copy to RAM flips bit 8): summary.md says it as one
/// line, its fingerprint, with the cases and paths that show it, before the rows.
#[test]
fn one_planted_defect_is_one_line_of_the_summary() {
    let root = tempfile::tempdir().expect("a temporary folder");
    let (dir, records) = run(root.path(), &broken());
    let failures = records.iter().filter(|r| r["status"] == "fail").count();
    assert!(failures > 10, "the break fails many cases: {failures}");
    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    assert!(
        summary.contains(&format!(
            "{failures} failures, 1 distinct by their signature:"
        )),
        "{summary}"
    );
    let line = summary
        .lines()
        .find(|l| l.starts_with(&format!("- **{failures} cases, ")))
        .unwrap_or_else(|| panic!("the defect's line in:\n{summary}"));
    assert!(
        line.contains(
            "fail: bad pages corrupt, every traced bad word with expected ^ actual = 0x00000100"
        ),
        "{line}"
    );
}
