//! JUnit XML for the lab's CI, generated from the journal and run.json, with the junit-report
//! crate.
//!
//! One `<testsuite>` per suite, the first segment of the case name (`prefetch`, `eviction`),
//! so the CI shows a count per migration path; each `<testcase>` carries the full instance name
//! (what `svmconf NAME --exact` takes) and, as classname, the case without its kind and size
//! (`prefetch::to_vram`), what CI interfaces group instances under.
//!
//! Status mapping:
//!
//! | status          | testcase                                                          |
//! |-----------------|-------------------------------------------------------------------|
//! | pass            | passed                                                            |
//! | fail            | `<failure type="fail">`                                           |
//! | dmesg_warn      | `<failure type="dmesg_warn">`: the kernel warned, a kernel bug    |
//! | dmesg_fail      | `<failure type="dmesg_fail">`                                     |
//! | unexpected_pass | `<failure type="unexpected_pass" message="unexpected pass: the expectations file lists it as failing (REASON)">` |
//! | timeout         | `<error type="timeout">`: the case did not finish                 |
//! | crash           | `<error type="crash">`                                            |
//! | incomplete      | `<error type="incomplete">`                                       |
//! | skip            | `<skipped>` with the reason and the repro command as its text     |
//! | notrun          | `<skipped>` with `not run: REASON` and the repro command          |
//! | flake           | passed, with `flaky: failed N times before passing: ...`          |
//! | expected_fail   | passed, with `expected failure: ...`                              |
//!
//! The text of every `<failure>`, `<error>` and `<skipped>` is what GitLab shows of a case (it
//! shows nothing else): the whole reason, `repeat with: COMMAND`, the first evidence lines and
//! each metric. The file is valid by the Jenkins JUnit schema (junit-4.xsd, which junit-report
//! ships in its `tests/`), and `tests/consumers.rs` reads it with xmllint and junitparser.
//!
//! Written by hand, after junit-report (`complete`), because junit-report 0.9 cannot write it:
//! the totals on `<testsuites>`, the `skipped` count of each `<testsuite>`, and the reason of a
//! skip as the text of `<skipped>` (junit-report writes it as attributes, which the schema
//! forbids and GitLab does not show). The rest is junit-report's.
//!
//! What junit-report 0.9 can write, and what it cannot: a testcase has only `name`, `time`,
//! `classname` and `file` attributes, one result element, `<system-out>` and `<system-err>`;
//! there is no `<properties>` (on a testcase or a testsuite), no testcase `timestamp`, and no
//! Surefire `<flakyFailure>`/`<rerunFailure>`. So each testcase's `<system-out>` opens with the
//! repro command and a `properties:` block of `key: value` lines (timestamp, status, seed,
//! backend, device, profile, kind, size, repetition, retries, expectation, and each metric's
//! median with its unit), one per line so that a CI log grep finds them; a flake is a passing
//! testcase whose system-out says `flaky: failed N times before passing: REASONS`, and an
//! expected failure is a passing testcase whose system-out says what failed and why it was
//! expected. After that come the metrics with every sample, the evidence, the kernel log
//! (flagged lines first, capped), the taint change, and the tail of the case process's stdout;
//! `<system-err>` holds the tail of its stderr. The CI page alone is enough to start debugging.

use std::fmt::Write as _;
use std::path::Path;

use junit_report::{Duration, OffsetDateTime, ReportBuilder, TestCase, TestSuite};

use super::{parse_rfc3339, write_atomically, CaseRecord, ResultsError, RunInfo, Status};

/// Kernel log lines shown per case: flagged ones first, then the others.
const KERNEL_LINES: usize = 40;

/// Writes `path` as JUnit XML for `records` of `run`.
pub fn write_junit(records: &[CaseRecord], run: &RunInfo, path: &Path) -> Result<(), ResultsError> {
    let records = &run.in_plan_order(records);
    let mut suites: Vec<(String, Vec<&CaseRecord>)> = Vec::new();
    for r in records {
        match suites.iter_mut().find(|(name, _)| name == r.suite()) {
            Some((_, list)) => list.push(r),
            None => suites.push((r.suite().to_string(), vec![r])),
        }
    }
    let header = run_header(run);
    let mut report = ReportBuilder::new();
    // What junit-report cannot write, added by `complete` after it: per suite, its skipped
    // count; per skipped case, in order, its reason.
    let mut skipped_per_suite = Vec::new();
    let mut skip_reasons = Vec::new();
    let mut totals = Totals::default();
    for (name, list) in suites {
        skipped_per_suite.push(list.iter().filter(|r| is_skipped(r.status)).count());
        for r in &list {
            totals.add(r);
            if is_skipped(r.status) {
                skip_reasons.push(skip_text(r));
            }
        }
        let mut suite = TestSuite::new(&xml_text(&name));
        suite.package = "svmconf".to_string();
        suite.hostname = xml_text(&run.host);
        suite.set_timestamp(suite_start(&list, run));
        suite.set_system_out(&cdata(&header));
        suite.add_testcases(list.into_iter().map(|r| test_case(r, run)));
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
    let xml = String::from_utf8(xml).map_err(|e| ResultsError::Encode {
        path: path.to_path_buf(),
        what: "the JUnit report",
        message: e.to_string(),
    })?;
    let mut xml = complete(&xml, &totals, &skipped_per_suite, &skip_reasons);
    xml.push('\n');
    write_atomically(path, xml.as_bytes())
}

fn is_skipped(s: Status) -> bool {
    matches!(s, Status::Skip | Status::Notrun)
}

/// What `<testsuites>` totals: every case, the failures and errors as its suites count them,
/// the time of them all.
#[derive(Default)]
struct Totals {
    tests: usize,
    failures: usize,
    errors: usize,
    time_s: f64,
}

impl Totals {
    fn add(&mut self, r: &CaseRecord) {
        self.tests += 1;
        match r.status {
            Status::Fail | Status::DmesgWarn | Status::DmesgFail | Status::UnexpectedPass => {
                self.failures += 1
            }
            Status::Timeout | Status::Crash | Status::Incomplete => self.errors += 1,
            _ => {}
        }
        if r.duration_s.is_finite() && r.duration_s > 0.0 {
            self.time_s += r.duration_s;
        }
    }
}

/// A skipped case's text, what GitLab and Jenkins show of it: the reason, and the command that
/// runs it.
fn skip_text(r: &CaseRecord) -> String {
    let why = one_line(r.headline());
    let why = match (r.status, why.is_empty()) {
        (Status::Notrun, true) => "not run".to_string(),
        (Status::Notrun, false) => format!("not run: {why}"),
        (_, true) => "skipped".to_string(),
        (_, false) => why,
    };
    format!("{why}\nrepeat with: {}", r.repro)
}

/// The part of the report written by hand, after junit-report 0.9, which cannot write it:
/// totals on `<testsuites>` (`name`, `tests`, `failures`, `errors`, `time`), the `skipped`
/// count on each `<testsuite>`, and each `<skipped/>` (junit-report writes the reason as
/// `type` and `message` attributes, which the Jenkins schema does not allow and GitLab does not
/// show) as `<skipped>` with the reason and repro command as its text. Markup inside CDATA
/// sections (a case's own output) is never touched.
fn complete(
    xml: &str,
    totals: &Totals,
    skipped_per_suite: &[usize],
    skip_reasons: &[String],
) -> String {
    let mut out = String::with_capacity(xml.len() + 64 * skip_reasons.len());
    let mut suites = skipped_per_suite.iter();
    let mut reasons = skip_reasons.iter();
    let mut rest = xml;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after.find("]]>").map_or(after.len(), |i| i + 3);
            out.push_str("<![CDATA[");
            out.push_str(&after[..end]);
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("<testsuites>") {
            let _ = write!(
                out,
                "<testsuites name=\"svmconf\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.6}\">",
                totals.tests, totals.failures, totals.errors, totals.time_s
            );
            rest = after;
        } else if let Some(after) = rest.strip_prefix("<testsuite ") {
            let _ = write!(
                out,
                "<testsuite skipped=\"{}\" ",
                suites.next().copied().unwrap_or(0)
            );
            rest = after;
        } else if rest.starts_with("<skipped") {
            let end = rest.find("/>").map_or(rest.len(), |i| i + 2);
            let text = reasons.next().map_or(String::new(), |r| xml_escape(r));
            let _ = write!(out, "<skipped>{text}</skipped>");
            rest = &rest[end..];
        } else {
            let next = rest[1..].find('<').map_or(rest.len(), |i| i + 1);
            out.push_str(&rest[..next]);
            rest = &rest[next..];
        }
    }
    out
}

/// `text` as XML character data.
fn xml_escape(text: &str) -> String {
    xml_text(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn test_case(r: &CaseRecord, run: &RunInfo) -> TestCase {
    let name = xml_text(&r.case);
    let time = Duration::saturating_seconds_f64(if r.duration_s.is_finite() {
        r.duration_s.max(0.0)
    } else {
        0.0
    });
    let headline = xml_text(r.headline());
    let full = cdata(&result_text(r));
    let mut tc = match r.status {
        Status::Pass | Status::Flake | Status::ExpectedFail => TestCase::success(&name, time),
        Status::UnexpectedPass => {
            let why = r.expectation.as_ref().map_or("", |e| e.reason.as_str());
            let message = xml_text(&format!(
                "unexpected pass: the expectations file lists it as failing ({})",
                one_line(why)
            ));
            let mut tc = TestCase::failure(&name, time, r.status.name(), &message);
            set_cause(&mut tc, full);
            tc
        }
        Status::Fail | Status::DmesgWarn | Status::DmesgFail => {
            let mut tc = TestCase::failure(&name, time, r.status.name(), &headline);
            set_cause(&mut tc, full);
            tc
        }
        Status::Timeout | Status::Crash | Status::Incomplete => {
            let mut tc = TestCase::error(&name, time, r.status.name(), &headline);
            set_cause(&mut tc, full);
            tc
        }
        // The reason goes in as the element's text, after junit-report (`complete`).
        Status::Skip | Status::Notrun => TestCase::skipped(&name),
    };
    tc.time = time;
    tc.set_classname(&xml_text(r.group()));
    tc.set_system_out(&cdata(&system_out(r, run)));
    if let Some(err) = r.output.as_ref().filter(|o| !o.stderr_tail.is_empty()) {
        tc.set_system_err(&cdata(&tail(
            &err.stderr_tail,
            err.stderr_bytes,
            &err.stderr_file,
        )));
    }
    tc
}

/// The text of a failure or an error, all that GitLab shows of a case: the whole reason, the
/// command that repeats it, the first lines of evidence and every metric's median.
fn result_text(r: &CaseRecord) -> String {
    let mut out = r.reason.clone().unwrap_or_default();
    if let (Status::UnexpectedPass, Some(e)) = (r.status, &r.expectation) {
        out = format!(
            "unexpected pass: the expectations file lists it as failing ({})",
            one_line(&e.reason)
        );
    }
    let _ = write!(out, "\n\nrepeat with: {}", r.repro);
    if !r.evidence.is_empty() {
        out.push_str("\nevidence:");
        for e in r.evidence.iter().take(EVIDENCE_LINES) {
            let _ = write!(out, "\n  {e}");
        }
        if r.evidence.len() > EVIDENCE_LINES {
            let _ = write!(
                out,
                "\n  ... {} more in system-out",
                r.evidence.len() - EVIDENCE_LINES
            );
        }
    }
    for m in &r.metrics {
        let _ = write!(out, "\nmetric: {m}");
    }
    out
}

/// Evidence lines in a failure's text; all of them are in system-out.
const EVIDENCE_LINES: usize = 8;

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

/// What a person needs to repeat and understand the case; see the module documentation.
fn system_out(r: &CaseRecord, run: &RunInfo) -> String {
    let mut out = String::new();
    // `write!` to a String cannot fail; the results are discarded for that reason.
    let _ = writeln!(out, "repro: {}", r.repro);
    out.push_str("properties:\n");
    let mut property = |key: &str, value: &str| {
        let _ = writeln!(out, "  {key}: {}", one_line(value));
    };
    property("timestamp", &r.started);
    property("status", r.status.name());
    property("seed", &format!("{:#x}", r.seed));
    property("backend", &run.backend);
    property("device", run.device_name());
    property("profile", &run.profile);
    property("kind", &r.kind);
    property("size", &format!("{} bytes", r.size));
    if r.repetition > 0 {
        property("repetition", &r.repetition.to_string());
    }
    property("retries", &r.retries.len().to_string());
    if let Some(e) = &r.expectation {
        property(
            "expectation",
            &format!("{} ({}); observed {}", e.expected, e.reason, e.observed),
        );
    }
    for m in &r.metrics {
        let median = match m.stats {
            Some(s) => format!("{:.3} {}", s.median, m.unit.symbol()),
            None => "no valid samples".to_string(),
        };
        property(&format!("metric.{}", m.name), median.trim_end());
    }
    if let Some(b) = &run.baseline {
        let method = crate::model::regress::Method {
            tolerance: b.tolerance,
            alpha: b.alpha,
        };
        for c in &r.baseline {
            property(
                &format!("baseline.{}", c.metric),
                &crate::results::baseline::describe(c, method, &b.run_id),
            );
        }
    }

    match r.status {
        Status::Flake if !r.retries.is_empty() => {
            let reasons: Vec<String> = r
                .retries
                .iter()
                .map(|a| match &a.reason {
                    Some(why) => format!("{}: {}", a.status, one_line(why)),
                    None => a.status.to_string(),
                })
                .collect();
            let n = r.retries.len();
            let _ = writeln!(
                out,
                "flaky: failed {n} time{} before passing: {}",
                if n == 1 { "" } else { "s" },
                reasons.join("; ")
            );
        }
        Status::Flake => {
            let (observed, why) = r
                .expectation
                .as_ref()
                .map_or((Status::Flake, ""), |e| (e.observed, e.reason.as_str()));
            let _ = writeln!(
                out,
                "flaky: a known flake ({}); this run: {observed}: {}",
                one_line(why),
                one_line(r.headline())
            );
        }
        Status::ExpectedFail => {
            let (observed, why) = r
                .expectation
                .as_ref()
                .map_or((Status::Fail, ""), |e| (e.observed, e.reason.as_str()));
            let _ = writeln!(
                out,
                "expected failure: {observed}: {} (the expectations file lists it: {})",
                one_line(r.headline()),
                one_line(why)
            );
            if let Some(reason) = r.reason.as_deref().filter(|t| t.lines().count() > 1) {
                out.push_str("reason:\n");
                for line in reason.lines() {
                    let _ = writeln!(out, "  {line}");
                }
            }
        }
        _ => {}
    }
    if !r.metrics.is_empty() {
        out.push_str("metrics:\n");
        for m in &r.metrics {
            let _ = writeln!(out, "  {m}");
            let samples: Vec<String> = m.samples.iter().map(|x| format!("{x}")).collect();
            let _ = writeln!(out, "    samples: {}", samples.join(" "));
        }
    }
    if !r.evidence.is_empty() {
        out.push_str("evidence:\n");
        for e in &r.evidence {
            let _ = writeln!(out, "  {e}");
        }
    }
    if !r.kernel_log.is_empty() {
        let flagged = r.kernel_log.iter().filter(|l| l.flag.is_some());
        let others = r.kernel_log.iter().filter(|l| l.flag.is_none());
        let _ = writeln!(
            out,
            "kernel log: {} lines, {} flagged{}",
            r.kernel_log.len(),
            flagged.clone().count(),
            if r.kernel_log.len() > KERNEL_LINES {
                format!("; the first {KERNEL_LINES} shown, flagged first")
            } else {
                String::new()
            }
        );
        for l in flagged.chain(others).take(KERNEL_LINES) {
            let flag = l
                .flag
                .as_deref()
                .map_or(String::new(), |f| format!("[{f}] "));
            let _ = writeln!(
                out,
                "  {flag}<{}> [{}.{:06}] {}",
                l.level,
                l.ts_us / 1_000_000,
                l.ts_us % 1_000_000,
                one_line(&l.text)
            );
        }
    }
    if let Some(t) = &r.taint {
        let _ = writeln!(
            out,
            "taint: {:#x} -> {:#x}, gained {}{}",
            t.before,
            t.after,
            t.gained.join(", "),
            if t.bad { " (stops the run)" } else { "" }
        );
    }
    if let Some(o) = r.output.as_ref().filter(|o| !o.stdout_tail.is_empty()) {
        out.push_str(&tail(&o.stdout_tail, o.stdout_bytes, &o.stdout_file));
    }
    out
}

/// A stream's tail with a line saying how much of it this is and where the rest is.
fn tail(text: &str, total: u64, file: &str) -> String {
    let shown = text.len() as u64;
    let mut out = if shown < total {
        format!("{file}: the last {shown} of {total} bytes:\n")
    } else {
        format!("{file}: all {total} bytes:\n")
    };
    out.push_str(text);
    if !text.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// A value for a one-line `key: value` entry.
fn one_line(text: &str) -> String {
    text.replace("\r\n", " ").replace(['\n', '\r'], " ")
}

fn run_header(run: &RunInfo) -> String {
    let mut s = format!(
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
    );
    if let Some(shard) = run.shard {
        let _ = writeln!(s, "shard: {shard}");
    }
    if let Some(b) = &run.baseline {
        let _ = writeln!(s, "baseline: {} ({}): {}", b.run_id, b.run_dir, b.method);
    }
    for o in &run.observers {
        let _ = writeln!(
            s,
            "observer {}: {} ({})",
            o.name,
            if o.available {
                "available"
            } else {
                "unavailable"
            },
            o.detail
        );
    }
    s
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
    use crate::results::{Attempt, CaseOutput, ExpectationNote, LogLine, TaintChange};

    fn attempt(status: Status, reason: &str) -> Attempt {
        Attempt {
            status,
            reason: Some(reason.to_string()),
            started: "2025-01-31T02:14:01.000Z".to_string(),
            duration_s: 0.1,
        }
    }

    fn log(seq: u64, text: &str, flag: Option<&str>) -> LogLine {
        LogLine {
            level: if flag.is_some() { 4 } else { 6 },
            seq,
            ts_us: 5_000_123 + seq,
            text: text.to_string(),
            flag: flag.map(str::to_string),
            attribution: None,
        }
    }

    /// What the lab runner records beyond the outcome: retries, expectations, kernel log,
    /// taint, the child's output.
    fn lab_records() -> Vec<CaseRecord> {
        let mut flake = with_metric(record("retry::flaky::2MiB", Status::Flake, None));
        flake.repetition = 2;
        flake.retries = vec![
            attempt(Status::Fail, "stale page at page 3"),
            attempt(Status::Timeout, "no result after 60 s"),
        ];
        let mut known_flake = record(
            "retry::known_flake::2MiB",
            Status::Flake,
            Some("no result after 60 s"),
        );
        known_flake.expectation = Some(ExpectationNote {
            expected: "flake".into(),
            reason: "LAB-31".into(),
            observed: Status::Timeout,
        });
        let mut xfail = record(
            "expect::known_bug::2MiB",
            Status::ExpectedFail,
            Some("lost 1 page\npage 7: zeros"),
        );
        xfail.expectation = Some(ExpectationNote {
            expected: "fail".into(),
            reason: "https://gitlab.freedesktop.org/drm/amd/-/issues/4242".into(),
            observed: Status::Fail,
        });
        let mut xpass = record("expect::fixed_bug::2MiB", Status::UnexpectedPass, None);
        xpass.expectation = Some(ExpectationNote {
            expected: "fail".into(),
            reason: "LAB-7".into(),
            observed: Status::Pass,
        });
        let mut noisy = record(
            "expect::noisy::4KiB",
            Status::DmesgWarn,
            Some("kernel warning during the case"),
        );
        noisy.kernel_log = (0..50)
            .map(|i| log(i, &format!("amdgpu: info {i}"), None))
            .collect();
        noisy.kernel_log.push(log(
            50,
            "WARNING: CPU: 3 PID: 77 at drm_pagemap.c:301",
            Some("WARNING"),
        ));
        noisy.taint = Some(TaintChange {
            before: 0,
            after: 0x200,
            gained: vec!["W (warn)".into()],
            bad: true,
        });
        noisy.output = Some(CaseOutput {
            stdout_file: "output/expect::noisy::4KiB.stdout".into(),
            stderr_file: "output/expect::noisy::4KiB.stderr".into(),
            stdout_bytes: 9000,
            stderr_bytes: 12,
            stdout_tail: "verify pass 3 of 3\n".into(),
            stderr_tail: "hipErr: 700\n".into(),
        });
        vec![flake, known_flake, xfail, xpass, noisy]
    }

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

        // What GitLab shows of a failure: the reason, the repro, the evidence.
        assert!(
            body.contains(&format!(
                "repeat with: svmconf prefetch::to_system::malloc::4KiB {}",
                "--exact --seed 0x5eed --profile sim"
            )),
            "{body}"
        );

        let skip = find("multi_gpu::peer::2MiB");
        let skipped = skip.children().find(|c| c.has_tag_name("skipped")).unwrap();
        assert_eq!(skipped.attributes().count(), 0, "junit-4.xsd allows none");
        let text = skipped.text().unwrap_or_default();
        assert!(
            text.starts_with("needs 2 GPUs; the device has 1\nrepeat with: "),
            "{text}"
        );

        let notrun = find("prefetch::partial::2MiB");
        let skipped = notrun
            .children()
            .find(|c| c.has_tag_name("skipped"))
            .unwrap();
        assert!(
            skipped.text().unwrap_or_default().starts_with("not run\n"),
            "{skipped:?}"
        );

        // The totals the root and each suite claim.
        let root = doc.root_element();
        assert_eq!(
            ["tests", "failures", "errors"].map(|a| attr(&root, a)),
            [recs.len().to_string().as_str(), "2", "1"]
        );
        assert_eq!(attr(&suites[1], "skipped"), "1");
        assert_eq!(attr(&suites[0], "skipped"), "1");

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

    fn system_out<'a>(tc: &roxmltree::Node<'a, 'a>) -> &'a str {
        tc.children()
            .find(|c| c.has_tag_name("system-out"))
            .and_then(|c| c.text())
            .unwrap_or_else(|| panic!("no system-out in {tc:?}"))
    }

    fn written(recs: &[CaseRecord]) -> String {
        written_for(recs, &run())
    }

    fn written_for(recs: &[CaseRecord], info: &RunInfo) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junit.xml");
        write_junit(recs, info, &path).unwrap();
        std::fs::read_to_string(&path).unwrap()
    }

    #[test]
    fn every_testcase_has_its_properties() {
        let mut recs = records();
        recs.extend(lab_records());
        // Every property a value of its own, so that one shown in the place of another fails.
        let mut info = run();
        info.profile = "lab_profile".into();
        info.device["name"] = "MI300X board 3".into();
        let xml = written_for(&recs, &info);
        let doc = roxmltree::Document::parse(&xml).unwrap();
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
            let out = system_out(tc);
            let props = format!(
                "repro: {}\nproperties:\n  timestamp: {}\n  status: {}\n  seed: 0x5eed\n  \
                 backend: sim\n  device: MI300X board 3\n  profile: lab_profile\n  \
                 kind: {}\n  size: 2097152 bytes\n",
                r.repro, r.started, r.status, r.kind
            );
            assert!(out.starts_with(&props), "{}:\n{out}", r.case);
            assert!(
                out.contains(&format!("\n  retries: {}\n", r.retries.len())),
                "{out}"
            );
        }
    }

    #[test]
    fn lab_evidence_round_trips() {
        let xml = written(&lab_records());
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let find = |name: &str| {
            doc.descendants()
                .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
                .unwrap_or_else(|| panic!("no testcase {name}"))
        };
        let verdicts = |tc: roxmltree::Node| -> Vec<String> {
            tc.children()
                .filter(|c| c.is_element())
                .map(|c| c.tag_name().name().to_string())
                .filter(|t| !t.starts_with("system-"))
                .collect()
        };

        // A flake passes, and says what failed before: junit-report has no flakyFailure.
        let flake = find("retry::flaky::2MiB");
        assert!(verdicts(flake).is_empty(), "{:?}", verdicts(flake));
        let out = system_out(&flake);
        for want in [
            "\n  repetition: 2\n  retries: 2\n  metric.prefetch_to_vram: 6.000 GB/s\n",
            "\nflaky: failed 2 times before passing: fail: stale page at page 3; \
             timeout: no result after 60 s\n",
            "\n  prefetch_to_vram = 6.000 GB/s (median of 5, min 5.800, max 6.100, IQR 0.100)\n    \
             samples: 5.9 6 6.1 6 5.8\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }
        let known = find("retry::known_flake::2MiB");
        assert!(verdicts(known).is_empty());
        assert!(
            system_out(&known).contains(
                "\nflaky: a known flake (LAB-31); this run: timeout: no result after 60 s\n"
            ),
            "{}",
            system_out(&known)
        );

        // An expected failure passes, and says what failed and why that was expected.
        let xfail = find("expect::known_bug::2MiB");
        assert!(verdicts(xfail).is_empty());
        let out = system_out(&xfail);
        for want in [
            "\n  expectation: fail (https://gitlab.freedesktop.org/drm/amd/-/issues/4242); observed fail\n",
            "\nexpected failure: fail: lost 1 page (the expectations file lists it: \
             https://gitlab.freedesktop.org/drm/amd/-/issues/4242)\nreason:\n  lost 1 page\n  page 7: zeros\n",
        ] {
            assert!(out.contains(want), "missing {want:?} in\n{out}");
        }

        // An unexpected pass fails the run.
        let xpass = find("expect::fixed_bug::2MiB");
        let failure = xpass
            .children()
            .find(|c| c.has_tag_name("failure"))
            .unwrap();
        assert_eq!(attr(&failure, "type"), "unexpected_pass");
        assert_eq!(
            attr(&failure, "message"),
            "unexpected pass: the expectations file lists it as failing (LAB-7)"
        );
        let suite = doc
            .descendants()
            .find(|n| n.has_tag_name("testsuite") && n.attribute("name") == Some("expect"))
            .unwrap();
        assert_eq!(attr(&suite, "failures"), "2");

        // Kernel log: the flagged line first though it came last, then the rest, capped.
        let noisy = find("expect::noisy::4KiB");
        let out = system_out(&noisy);
        let log_start = out.find("kernel log: ").unwrap();
        let log_lines: Vec<&str> = out[log_start..]
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .collect();
        assert!(
            out[log_start..].starts_with(
                "kernel log: 51 lines, 1 flagged; the first 40 shown, flagged first\n"
            ),
            "{out}"
        );
        assert_eq!(log_lines.len(), 40, "{out}");
        assert_eq!(
            log_lines[0],
            "  [WARNING] <4> [5.000173] WARNING: CPU: 3 PID: 77 at drm_pagemap.c:301"
        );
        assert_eq!(log_lines[1], "  <6> [5.000123] amdgpu: info 0");
        assert!(
            out.contains("\ntaint: 0x0 -> 0x200, gained W (warn) (stops the run)\n"),
            "{out}"
        );
        assert!(
            out.ends_with(
                "output/expect::noisy::4KiB.stdout: the last 19 of 9000 bytes:\nverify pass 3 of 3\n"
            ),
            "{out}"
        );
        let err = noisy
            .children()
            .find(|c| c.has_tag_name("system-err"))
            .and_then(|c| c.text())
            .unwrap();
        assert_eq!(
            err,
            "output/expect::noisy::4KiB.stderr: all 12 bytes:\nhipErr: 700\n"
        );
        // No stderr, no system-err.
        assert!(!flake.children().any(|c| c.has_tag_name("system-err")));
    }

    #[test]
    fn sharded_run_header_names_shard_and_observers() {
        let mut info = run();
        info.shard = Some(crate::model::shard::ShardSpec { index: 2, count: 4 });
        info.observers = vec![crate::results::Observer {
            name: "kernel_log".into(),
            available: false,
            detail: "/dev/kmsg: permission denied".into(),
        }];
        let header = run_header(&info);
        assert!(header.contains("\nshard: 2/4\n"), "{header}");
        assert!(
            header.contains("\nobserver kernel_log: unavailable (/dev/kmsg: permission denied)\n"),
            "{header}"
        );
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
