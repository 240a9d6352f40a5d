//! JUnit XML for the lab's CI, generated from the journal and run.json.
//!
//! One `<testsuite>` per suite, the first segment of the case name (`prefetch`, `eviction`),
//! so the CI shows a count per migration path; each `<testcase>` carries the full instance name
//! (what `svmconf NAME --exact` takes) and, as classname, the case without its kind and size
//! (`prefetch::to_vram`), what CI interfaces group instances under.
//!
//! Status mapping: fail, dmesg_warn and dmesg_fail are `<failure>` (the case ran and the kernel
//! or the data was wrong); timeout, crash and incomplete are `<error>` (the case did not
//! finish); skip and notrun are `<skipped>`. Every testcase's `<system-out>` holds the repro
//! command, the metrics and the evidence, so the CI page alone is enough to start debugging.

use std::path::Path;

use junit_report::{Duration, OffsetDateTime, ReportBuilder, TestCase, TestSuite};

use super::{parse_rfc3339, write_atomically, CaseRecord, ResultsError, RunInfo, Status};

/// Writes `path` as JUnit XML for `records` of `run`.
pub fn write_junit(records: &[CaseRecord], run: &RunInfo, path: &Path) -> Result<(), ResultsError> {
    let mut suites: Vec<(String, Vec<&CaseRecord>)> = Vec::new();
    for r in records {
        match suites.iter_mut().find(|(name, _)| name == r.suite()) {
            Some((_, list)) => list.push(r),
            None => suites.push((r.suite().to_string(), vec![r])),
        }
    }
    let header = run_header(run);
    let mut report = ReportBuilder::new();
    for (name, list) in suites {
        let mut suite = TestSuite::new(&xml_text(&name));
        suite.package = "svmconf".to_string();
        suite.hostname = xml_text(&run.host);
        suite.set_timestamp(suite_start(&list, run));
        suite.set_system_out(&cdata(&header));
        suite.add_testcases(list.into_iter().map(test_case));
        report.add_testsuite(suite);
    }
    let mut xml = Vec::new();
    report
        .build()
        .write_xml(&mut xml)
        .map_err(|e| ResultsError::Encode {
            path: path.to_path_buf(),
            what: "the JUnit report",
            message: e.to_string(),
        })?;
    xml.push(b'\n');
    write_atomically(path, &xml)
}

fn test_case(r: &CaseRecord) -> TestCase {
    let name = xml_text(&r.case);
    let time = Duration::saturating_seconds_f64(if r.duration_s.is_finite() {
        r.duration_s.max(0.0)
    } else {
        0.0
    });
    let headline = xml_text(r.headline());
    let full = cdata(r.reason.as_deref().unwrap_or(""));
    let mut tc = match r.status {
        Status::Pass | Status::Flake | Status::ExpectedFail => TestCase::success(&name, time),
        Status::Fail | Status::DmesgWarn | Status::DmesgFail | Status::UnexpectedPass => {
            let mut tc = TestCase::failure(&name, time, r.status.name(), &headline);
            set_cause(&mut tc, full);
            tc
        }
        Status::Timeout | Status::Crash | Status::Incomplete => {
            let mut tc = TestCase::error(&name, time, r.status.name(), &headline);
            set_cause(&mut tc, full);
            tc
        }
        Status::Skip => TestCase::skipped_with_cause(&name, "skip", &headline),
        Status::Notrun => {
            let why = if headline.is_empty() {
                "not run".to_string()
            } else {
                format!("not run: {headline}")
            };
            TestCase::skipped_with_cause(&name, "notrun", &why)
        }
    };
    tc.time = time;
    tc.set_classname(&xml_text(r.group()));
    tc.set_system_out(&cdata(&system_out(r)));
    tc
}

/// The full failure text goes in the element body; the attribute holds the first line.
fn set_cause(tc: &mut TestCase, full: String) {
    if full.is_empty() {
        return;
    }
    if let junit_report::TestResult::Failure { cause, .. }
    | junit_report::TestResult::Error { cause, .. } = &mut tc.result
    {
        *cause = Some(full);
    }
}

/// What a person needs to repeat and understand the case.
fn system_out(r: &CaseRecord) -> String {
    let mut out = format!("repro: {}\n", r.repro);
    out.push_str(&format!(
        "status: {}, seed: {:#x}, kind: {}, size: {} bytes, started: {}\n",
        r.status, r.seed, r.kind, r.size, r.started
    ));
    if !r.metrics.is_empty() {
        out.push_str("metrics:\n");
        for m in &r.metrics {
            out.push_str(&format!("  {m}\n"));
        }
    }
    if !r.evidence.is_empty() {
        out.push_str("evidence:\n");
        for e in &r.evidence {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out
}

fn run_header(run: &RunInfo) -> String {
    format!(
        "run {} of svmconf {}\ndevice: {} ({} backend)\nprofile: {}, seed: {:#x}\n\
         host: {}, kernel: {}\nstarted: {}, finished: {}\ncommand: {}\n",
        run.run_id,
        run.suite_version,
        run.device_name(),
        run.backend,
        run.profile,
        run.seed,
        run.host,
        run.kernel_release,
        run.started,
        run.finished.as_deref().unwrap_or("(did not finish)"),
        run.command_line.join(" "),
    )
}

/// The earliest start among the suite's records, else the run's start.
fn suite_start(records: &[&CaseRecord], run: &RunInfo) -> OffsetDateTime {
    records
        .iter()
        .filter_map(|r| parse_rfc3339(&r.started))
        .min()
        .or_else(|| parse_rfc3339(&run.started))
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Text XML 1.0 can hold: control characters (kernel log lines carry ANSI escapes, say) are
/// written as `\u{1b}` instead of making the whole report unparseable.
fn xml_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Text for a CDATA section, which the report writer does not escape: `]]>` would end it
/// early, so it is split across two sections.
fn cdata(s: &str) -> String {
    xml_text(s).replace("]]>", "]]]]><![CDATA[>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::test_support::{record, run, with_metric};

    fn records() -> Vec<CaseRecord> {
        let mut crash = record(
            "eviction::lru_whole::vram_2x",
            Status::Crash,
            Some("killed by signal 11 (SIGSEGV)"),
        );
        crash.duration_s = 1.5;
        vec![
            with_metric(record("prefetch::to_vram::2MiB", Status::Pass, None)),
            record(
                "prefetch::to_system::malloc::4KiB",
                Status::Fail,
                Some("CPU verify of [0x0, 0x1000) in allocation 1 (generation 1):\nword 0 of page 0: expected 0x1, got 0x0 (zeros: page never copied)\n]]> \u{1b}[31m"),
            ),
            record("multi_gpu::peer::2MiB", Status::Skip, Some("needs 2 GPUs; the device has 1")),
            crash,
            record("prefetch::to_vram::4KiB", Status::DmesgWarn, Some("kernel warning during the case\nWARNING: CPU: 3 PID: 77 at drivers/gpu/drm/drm_pagemap.c")),
            record("prefetch::partial::2MiB", Status::Notrun, None),
        ]
    }

    fn attr<'a>(n: &roxmltree::Node<'a, 'a>, name: &str) -> &'a str {
        n.attribute(name)
            .unwrap_or_else(|| panic!("no {name} on {n:?}"))
    }

    #[test]
    fn round_trip_through_an_xml_parser() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        let recs = records();
        write_junit(&recs, &run(), &path).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();

        let suites: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testsuite"))
            .collect();
        let names: Vec<_> = suites.iter().map(|s| attr(s, "name")).collect();
        assert_eq!(names, ["prefetch", "multi_gpu", "eviction"]);
        let prefetch = &suites[0];
        assert_eq!(attr(prefetch, "tests"), "4");
        assert_eq!(attr(prefetch, "failures"), "2");
        assert_eq!(attr(prefetch, "errors"), "0");
        assert_eq!(attr(prefetch, "hostname"), "lab7");
        assert!(attr(prefetch, "timestamp").starts_with("2025-01-31T02:14:07"));
        assert_eq!(attr(&suites[2], "errors"), "1");

        let cases: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .collect();
        assert_eq!(cases.len(), recs.len());
        for r in &recs {
            let tc = cases
                .iter()
                .find(|c| attr(c, "name") == r.case)
                .unwrap_or_else(|| panic!("no testcase {}", r.case));
            assert_eq!(
                attr(tc, "time").parse::<f64>().unwrap(),
                r.duration_s,
                "{}",
                r.case
            );
            assert_eq!(attr(tc, "classname"), r.group());
            let out = tc
                .children()
                .find(|c| c.has_tag_name("system-out"))
                .and_then(|c| c.text())
                .unwrap_or_else(|| panic!("no system-out in {}", r.case));
            assert!(out.contains(&format!("repro: {}", r.repro)), "{out}");
            assert!(out.contains("evidence:"), "{out}");
        }

        let find = |name: &str| *cases.iter().find(|c| attr(c, "name") == name).unwrap();
        let fail = find("prefetch::to_system::malloc::4KiB");
        assert_eq!(attr(&fail, "classname"), "prefetch::to_system");
        let failure = fail.children().find(|c| c.has_tag_name("failure")).unwrap();
        assert_eq!(
            attr(&failure, "message"),
            "CPU verify of [0x0, 0x1000) in allocation 1 (generation 1):"
        );
        assert_eq!(attr(&failure, "type"), "fail");
        let body = failure.text().unwrap();
        assert!(body.contains("zeros: page never copied"), "{body}");
        assert!(body.contains("]]> \\u{1b}[31m"), "{body}");

        let warn = find("prefetch::to_vram::4KiB");
        let failure = warn.children().find(|c| c.has_tag_name("failure")).unwrap();
        assert_eq!(attr(&failure, "type"), "dmesg_warn");

        let skip = find("multi_gpu::peer::2MiB");
        let skipped = skip.children().find(|c| c.has_tag_name("skipped")).unwrap();
        assert_eq!(attr(&skipped, "message"), "needs 2 GPUs; the device has 1");

        let notrun = find("prefetch::partial::2MiB");
        let skipped = notrun
            .children()
            .find(|c| c.has_tag_name("skipped"))
            .unwrap();
        assert_eq!(attr(&skipped, "message"), "not run");

        let crash = find("eviction::lru_whole::vram_2x");
        let error = crash.children().find(|c| c.has_tag_name("error")).unwrap();
        assert_eq!(attr(&error, "type"), "crash");
        assert_eq!(attr(&error, "message"), "killed by signal 11 (SIGSEGV)");

        let pass = find("prefetch::to_vram::2MiB");
        let out = pass
            .children()
            .find(|c| c.has_tag_name("system-out"))
            .unwrap()
            .text()
            .unwrap();
        assert!(
            out.contains("prefetch_to_vram = 6.000 GB/s (median of 5"),
            "{out}"
        );
        assert!(!pass
            .children()
            .any(|c| c.has_tag_name("failure") || c.has_tag_name("error")));
    }

    #[test]
    fn no_records_is_still_a_valid_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        write_junit(&[], &run(), &path).unwrap();
        let xml = std::fs::read_to_string(&path).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert!(doc.root_element().has_tag_name("testsuites"));
    }

    #[test]
    fn unwritable_report_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("junit.xml");
        let e = write_junit(&records(), &run(), &path)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("cannot write `"), "{e}");
        assert!(e.contains("junit.xml`: no such file or directory"), "{e}");
    }
}
