//! `summary.md`: the page a person reads in the morning. What ran, how many of each outcome,
//! every failure with its diagnosis and the command that repeats it, every figure measured, and
//! the skips grouped by why, so that a missing capability shows up once, not per case.
//!
//! Then, each only when the run has any, so that a quiet night stays a short page: flakes with
//! their failed attempts, expected failures and unexpected passes with the expectation's reason,
//! the kernel log lines that were flagged, taint the kernel gained, and each crash, timeout and
//! incomplete case with the tail of its output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::{write_atomically, CaseRecord, ResultsError, RunInfo, Status};

/// Writes `path` with [`render_summary`].
pub fn write_summary(
    records: &[CaseRecord],
    run: &RunInfo,
    path: &Path,
) -> Result<(), ResultsError> {
    write_atomically(path, render_summary(records, run).as_bytes())
}

/// The summary as Markdown.
pub fn render_summary(records: &[CaseRecord], run: &RunInfo) -> String {
    let records = &run.in_plan_order(records);
    let mut s = String::new();
    // `write!` to a String cannot fail; the results are discarded for that reason.
    let _ = writeln!(s, "# svmconf run {}\n", run.run_id);
    let _ = writeln!(
        s,
        "- device: {} ({} backend, {})",
        run.device_name(),
        run.backend,
        run.device
            .get("arch")
            .and_then(|a| a.as_str())
            .unwrap_or("arch unknown")
    );
    let _ = writeln!(s, "- profile: {}", run.profile);
    let _ = writeln!(s, "- seed: {:#x}", run.seed);
    let _ = writeln!(s, "- host: {}, kernel {}", run.host, run.kernel_release);
    let _ = writeln!(
        s,
        "- started {}, finished {}",
        run.started,
        run.finished.as_deref().unwrap_or("never (interrupted)")
    );
    let _ = writeln!(
        s,
        "- svmconf {}: `{}`",
        run.suite_version,
        run.command_line.join(" ")
    );

    let _ = writeln!(s, "\n## Outcomes\n");
    let _ = writeln!(s, "| status | cases |\n| --- | ---: |");
    for status in Status::ALL {
        let n = records.iter().filter(|r| r.status == status).count();
        if n > 0 {
            let _ = writeln!(s, "| {status} | {n} |");
        }
    }
    let _ = writeln!(s, "| **total** | {} |", records.len());

    let failures: Vec<&CaseRecord> = records.iter().filter(|r| r.status.is_failure()).collect();
    let _ = writeln!(s, "\n## Failures\n");
    if failures.is_empty() {
        let _ = writeln!(s, "None.");
    } else {
        defects(&mut s, &failures);
        let _ = writeln!(
            s,
            "| case | status | diagnosis | repro |\n| --- | --- | --- | --- |"
        );
        for r in failures {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                code(&r.case),
                r.status,
                cell(r.headline()),
                code(&r.repro)
            );
        }
    }

    let _ = writeln!(s, "\n## Metrics\n");
    let measured: Vec<_> = records
        .iter()
        .flat_map(|r| r.metrics.iter().map(move |m| (r, m)))
        .collect();
    if measured.is_empty() {
        let _ = writeln!(s, "None.");
    } else {
        let _ = writeln!(
            s,
            "| case | metric | median | unit | spread |\n| --- | --- | ---: | --- | --- |"
        );
        for (r, m) in measured {
            let (median, spread) = match m.stats {
                Some(st) if st.n > 1 => (
                    format!("{:.3}", st.median),
                    format!(
                        "IQR {:.3}, min {:.3}, max {:.3}, n = {}",
                        st.iqr, st.min, st.max, st.n
                    ),
                ),
                Some(st) => (format!("{}", st.median), "single value".to_string()),
                None => ("-".to_string(), "no valid samples".to_string()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {median} | {} | {spread} |",
                code(&r.case),
                cell(&m.name),
                m.unit.symbol()
            );
        }
    }

    let mut skipped: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.status == Status::Skip) {
        let reason = match r.headline() {
            "" => "no reason given",
            reason => reason,
        };
        skipped.entry(reason).or_default().push(&r.case);
    }
    let _ = writeln!(s, "\n## Skipped\n");
    if skipped.is_empty() {
        let _ = writeln!(s, "None.");
    }
    for (reason, cases) in skipped {
        let _ = writeln!(s, "### {} ({})\n", reason.replace('\n', " "), cases.len());
        for case in cases {
            let _ = writeln!(s, "- {}", code(case));
        }
        s.push('\n');
    }

    flakes(&mut s, records);
    expected(&mut s, records);
    kernel_findings(&mut s, records);
    taint(&mut s, records);
    crashes(&mut s, records);
    baseline(&mut s, records, run);
    fault_plan(&mut s, records);
    s
}

/// `--sim-faults`: each rule of the plan, in how many cases it fired and how often in all. A
/// rule that fired nowhere planted nothing: what passed says nothing about it.
/// One line per distinct defect before the rows: failures grouped by their signature
/// ([`signature`]), the largest group first, each with how many cases and paths show it and
/// the first cases. A morning reader sees three defects, not sixty-eight rows.
fn defects(s: &mut String, failures: &[&CaseRecord]) {
    let mut groups: Vec<(String, Vec<&CaseRecord>)> = Vec::new();
    for r in failures {
        let sig = signature(r);
        match groups.iter_mut().find(|(g, _)| *g == sig) {
            Some((_, list)) => list.push(r),
            None => groups.push((sig, vec![r])),
        }
    }
    // Stable: groups of one size keep the plan order of their first case.
    groups.sort_by_key(|(_, list)| std::cmp::Reverse(list.len()));
    let _ = writeln!(
        s,
        "{} failures, {} distinct by their signature:\n",
        failures.len(),
        groups.len()
    );
    for (sig, list) in &groups {
        let mut paths: Vec<&str> = list.iter().map(|r| r.suite()).collect();
        paths.sort_unstable();
        paths.dedup();
        let shown: Vec<String> = list.iter().take(3).map(|r| code(&r.case)).collect();
        let _ = writeln!(
            s,
            "- **{} case{}, {} path{}** ({}): {}; {}{}",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            paths.len(),
            if paths.len() == 1 { "" } else { "s" },
            paths.join(", "),
            sig.replace('|', "\\|"),
            shown.join(", "),
            if list.len() > 3 { ", ..." } else { "" }
        );
    }
    let _ = writeln!(s);
}

/// What a failure says of its defect, with what differs between cases that show the same one
/// taken out: where every bad word the diagnosis traces differs from its expected value by the
/// same bits (`expected ^ actual`), the status, those bits (the defect's fingerprint, whichever
/// check found it) and what the bad pages are; else the status and the diagnosis's first line
/// with spans, addresses and counts made generic.
pub fn signature(r: &CaseRecord) -> String {
    let reason = r.reason.as_deref().unwrap_or("");
    let first = reason.lines().next().unwrap_or("");
    // Compiled once for the run's failures, not once per failure.
    static GENERIC: std::sync::OnceLock<Vec<(regex::Regex, &str)>> = std::sync::OnceLock::new();
    let generic = GENERIC
        .get_or_init(|| {
            [
                (r"\[0x[0-9a-f]+, 0x[0-9a-f]+\)", "[span]"),
                (r"\(0x[0-9a-f]+\)", ""),
                (r"0x[0-9a-f]+", "0x…"),
                (r"\b\d+(\.\d+)?\b", "N"),
                (
                    r"\b(word|page|case|run|migration|allocation|fault|byte)s\b",
                    "$1",
                ),
            ]
            .into_iter()
            .filter_map(|(pattern, with)| Some((regex::Regex::new(pattern).ok()?, with)))
            .collect()
        })
        .iter()
        .fold(first.to_string(), |t, (re, with)| {
            re.replace_all(&t, *with).into_owned()
        });
    let xors: std::collections::BTreeSet<&str> = reason
        .match_indices("expected ^ actual = ")
        .filter_map(|(i, m)| {
            let rest = &reason[i + m.len()..];
            rest.split(|c: char| !c.is_ascii_alphanumeric()).next()
        })
        .collect();
    match (xors.len(), xors.iter().next()) {
        // One fingerprint: the defect, whichever check found it (CPU or GPU verify, a storm's
        // counters), named by it and by what the bad pages are (`corrupt`, `zero, stale`).
        (1, Some(x)) => {
            let classes = generic.rsplit(": ").next().unwrap_or("").replace("N ", "");
            format!(
                "{}: bad pages {classes}, every traced bad word with expected ^ actual = {x}",
                r.status
            )
        }
        _ if !generic.trim().is_empty() => format!("{}: {}", r.status, generic.trim()),
        _ if r.status == Status::UnexpectedPass => {
            "unexpected_pass: the expectations file lists it as failing".to_string()
        }
        _ => format!("{}: no diagnosis", r.status),
    }
}

fn fault_plan(s: &mut String, records: &[CaseRecord]) {
    // rule -> (kind, cases it fired in, firings, matches)
    let mut rules: std::collections::BTreeMap<usize, (&str, usize, u64, u64)> =
        std::collections::BTreeMap::new();
    for r in records {
        for i in &r.injected {
            let e = rules.entry(i.rule).or_insert((&i.kind, 0, 0, 0));
            e.1 += usize::from(i.fired > 0);
            e.2 += i.fired;
            e.3 += i.matched;
        }
    }
    if rules.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## Fault plan

| rule | kind | cases it fired in | firings | matches |\n\
         | ---: | --- | ---: | ---: | ---: |"
    );
    for (rule, (kind, cases, fired, matched)) in &rules {
        let _ = writeln!(s, "| {rule} | {kind} | {cases} | {fired} | {matched} |");
    }
    if rules.values().all(|r| r.2 == 0) {
        let _ = writeln!(
            s,
            "\nNo rule fired in any case: the plan planted nothing in this run."
        );
    }
    s.push('\n');
}

/// `--baseline`: the method, how many metrics came out each way, and every comparison that is
/// not "unchanged".
fn baseline(s: &mut String, records: &[CaseRecord], run: &RunInfo) {
    use crate::results::baseline::Outcome;
    let Some(b) = &run.baseline else {
        return;
    };
    let _ = writeln!(
        s,
        "## Baseline

Compared with run `{}` ({}): {}.
",
        b.run_id,
        code(&b.run_dir),
        b.method
    );
    let compared: Vec<_> = records
        .iter()
        .flat_map(|r| r.baseline.iter().map(move |c| (r, c)))
        .collect();
    let _ = writeln!(s, "| outcome | metrics |\n| --- | ---: |");
    for outcome in Outcome::ALL {
        let n = compared
            .iter()
            .filter(|(_, c)| c.outcome == outcome)
            .count();
        if n > 0 {
            let _ = writeln!(s, "| {} | {n} |", outcome.name());
        }
    }
    let _ = writeln!(s, "| **total** | {} |\n", compared.len());
    let method = crate::model::regress::Method {
        tolerance: b.tolerance,
        alpha: b.alpha,
    };
    let notable: Vec<_> = compared
        .iter()
        .filter(|(_, c)| c.outcome != Outcome::Unchanged)
        .collect();
    if notable.is_empty() {
        return;
    }
    let _ = writeln!(s, "| case | comparison |\n| --- | --- |");
    for (r, c) in notable {
        let line = crate::results::baseline::describe(c, method, &b.run_id);
        let _ = writeln!(s, "| {} | {} |", code(&r.case), cell(&line));
    }
    s.push('\n');
}

/// Kernel log rows in the findings table; the journal holds the rest.
const KERNEL_ROWS: usize = 50;
/// Lines of a case's output shown under a crash or timeout.
const TAIL_LINES: usize = 20;

fn flakes(s: &mut String, records: &[CaseRecord]) {
    let flaky: Vec<&CaseRecord> = records
        .iter()
        .filter(|r| r.status == Status::Flake)
        .collect();
    if flaky.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Flakes\n");
    for r in flaky {
        if r.retries.is_empty() {
            let why = r.expectation.as_ref().map_or("", |e| e.reason.as_str());
            let observed = r.expectation.as_ref().map_or(r.status, |e| e.observed);
            let _ = writeln!(
                s,
                "- {}: a known flake ({}); this run: {observed}: {}",
                code(&r.case),
                cell(why),
                cell(r.headline())
            );
            continue;
        }
        let n = r.retries.len();
        let _ = writeln!(
            s,
            "- {}: failed {n} time{} before passing",
            code(&r.case),
            if n == 1 { "" } else { "s" }
        );
        for a in &r.retries {
            let _ = writeln!(
                s,
                "  - {} at {}: {}",
                a.status,
                a.started,
                cell(a.reason.as_deref().unwrap_or("no reason recorded"))
            );
        }
    }
    s.push('\n');
}

fn expected(s: &mut String, records: &[CaseRecord]) {
    let noted = |status: Status| {
        records.iter().filter(move |r| r.status == status).map(|r| {
            let note = r.expectation.as_ref();
            (
                r,
                note.map_or("", |e| e.reason.as_str()),
                note.map(|e| e.observed),
            )
        })
    };
    let mut xfail = noted(Status::ExpectedFail).peekable();
    if xfail.peek().is_some() {
        let _ = writeln!(
            s,
            "## Expected failures\n\n| case | observed | diagnosis | listed because |\n\
             | --- | --- | --- | --- |"
        );
        for (r, why, observed) in xfail {
            let observed = observed.map_or("-".to_string(), |o| o.to_string());
            let _ = writeln!(
                s,
                "| {} | {observed} | {} | {} |",
                code(&r.case),
                cell(r.headline()),
                cell(why)
            );
        }
        s.push('\n');
    }
    let mut xpass = noted(Status::UnexpectedPass).peekable();
    if xpass.peek().is_some() {
        let _ = writeln!(
            s,
            "## Unexpected passes\n\nThe expectations file lists these as failing, and they \
             passed: take them off the list.\n\n| case | listed because |\n| --- | --- |"
        );
        for (r, why, _) in xpass {
            let _ = writeln!(s, "| {} | {} |", code(&r.case), cell(why));
        }
        s.push('\n');
    }
}

fn kernel_findings(s: &mut String, records: &[CaseRecord]) {
    let flagged: Vec<_> = records
        .iter()
        .flat_map(|r| {
            r.kernel_log
                .iter()
                .filter_map(move |l| l.flag.as_deref().map(|f| (r, f, l)))
        })
        .collect();
    if flagged.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## Kernel log findings\n\n| case | flag | line |\n| --- | --- | --- |"
    );
    for (r, flag, line) in flagged.iter().take(KERNEL_ROWS) {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            code(&r.case),
            cell(flag),
            code(&line.text)
        );
    }
    if flagged.len() > KERNEL_ROWS {
        let _ = writeln!(
            s,
            "\n{} more flagged lines are in the journal.",
            flagged.len() - KERNEL_ROWS
        );
    }
    s.push('\n');
}

fn taint(s: &mut String, records: &[CaseRecord]) {
    let tainted: Vec<_> = records
        .iter()
        .filter_map(|r| r.taint.as_ref().map(|t| (r, t)))
        .collect();
    if tainted.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## Taint changes\n\n| case | before | after | gained | stops the run |\n\
         | --- | --- | --- | --- | --- |"
    );
    for (r, t) in tainted {
        let _ = writeln!(
            s,
            "| {} | {:#x} | {:#x} | {} | {} |",
            code(&r.case),
            t.before,
            t.after,
            cell(&t.gained.join(", ")),
            if t.bad { "**yes**" } else { "no" }
        );
    }
    s.push('\n');
}

fn crashes(s: &mut String, records: &[CaseRecord]) {
    let died: Vec<&CaseRecord> = records
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                Status::Crash | Status::Timeout | Status::Incomplete
            )
        })
        .collect();
    if died.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Crashes and timeouts\n");
    for r in died {
        let _ = writeln!(
            s,
            "### {}: {}{}\n",
            code(&r.case),
            r.status,
            match r.headline() {
                "" => String::new(),
                h => format!(", {}", cell(h)),
            }
        );
        let _ = writeln!(s, "Repeat with {}\n", code(&r.repro));
        let Some(o) = &r.output else {
            let _ = writeln!(s, "No output was captured.\n");
            continue;
        };
        for (what, text, file) in [
            ("stdout", &o.stdout_tail, &o.stdout_file),
            ("stderr", &o.stderr_tail, &o.stderr_file),
        ] {
            if text.is_empty() {
                continue;
            }
            let lines: Vec<&str> = text.lines().collect();
            let shown = &lines[lines.len().saturating_sub(TAIL_LINES)..];
            let _ = writeln!(
                s,
                "{what}, the last {} lines ({}):\n",
                shown.len(),
                code(file)
            );
            let _ = writeln!(s, "{}\n", fenced(&shown.join("\n")));
        }
    }
}

/// A fenced code block with a fence longer than any run of backticks inside.
fn fenced(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat((longest + 1).max(3));
    format!("{fence}\n{text}\n{fence}")
}

/// Text for a table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.replace('\r', "")
        .replace('\n', " ")
        .replace('|', "\\|")
}

/// A code span for a table cell, with a fence longer than any run of backticks inside.
fn code(text: &str) -> String {
    let text = cell(text);
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::test_support::{record, run, with_metric};

    fn records() -> Vec<CaseRecord> {
        vec![
            with_metric(record("prefetch::to_vram::2MiB", Status::Pass, None)),
            record("prefetch::to_vram::4KiB", Status::Pass, None),
            record(
                "prefetch::to_system::malloc::4KiB",
                Status::Fail,
                Some("CPU verify found 1 bad word | stale page\nword 0 of page 0: expected 0x2, got 0x1"),
            ),
            record("multi_gpu::peer::2MiB", Status::Skip, Some("needs 2 GPUs; the device has 1")),
            record("multi_gpu::peer::4KiB", Status::Skip, Some("needs 2 GPUs; the device has 1")),
            record("reset::loses_vram::2MiB", Status::Skip, Some("needs --allow-destructive")),
            record("eviction::lru_whole::2MiB", Status::Timeout, Some("no result after 60 s")),
        ]
    }

    #[test]
    fn header_names_run_device_profile_and_seed() {
        let s = render_summary(&records(), &run());
        assert!(
            s.starts_with("# svmconf run 20250131T021400Z-lab7\n"),
            "{s}"
        );
        assert!(
            s.contains("- device: Reference device (profile sim) (sim backend, sim)"),
            "{s}"
        );
        assert!(s.contains("- profile: sim\n"), "{s}");
        assert!(s.contains("- seed: 0x5eed\n"), "{s}");
    }

    #[test]
    fn counts_every_status_present() {
        let s = render_summary(&records(), &run());
        for line in [
            "| pass | 2 |",
            "| fail | 1 |",
            "| skip | 3 |",
            "| timeout | 1 |",
            "| **total** | 7 |",
        ] {
            assert!(s.contains(line), "missing {line}\n{s}");
        }
        assert!(!s.contains("| crash |"), "{s}");
    }

    #[test]
    fn failures_list_diagnosis_and_repro() {
        let s = render_summary(&records(), &run());
        assert!(s.contains(
            "| `prefetch::to_system::malloc::4KiB` | fail | CPU verify found 1 bad word \\| stale page | \
             `svmconf prefetch::to_system::malloc::4KiB --exact --seed 0x5eed --profile sim` |"
        ), "{s}");
        assert!(
            s.contains("| `eviction::lru_whole::2MiB` | timeout | no result after 60 s |"),
            "{s}"
        );
        assert!(
            !s.contains("expected 0x2, got 0x1"),
            "only the first line belongs in the table\n{s}"
        );
    }

    #[test]
    fn metrics_table_has_median_unit_and_spread() {
        let s = render_summary(&records(), &run());
        assert!(s.contains(
            "| `prefetch::to_vram::2MiB` | prefetch_to_vram | 6.000 | GB/s | IQR 0.100, min 5.800, max 6.100, n = 5 |"
        ), "{s}");
    }

    #[test]
    fn skips_are_grouped_by_reason() {
        let s = render_summary(&records(), &run());
        let group = "### needs 2 GPUs; the device has 1 (2)\n\n- `multi_gpu::peer::2MiB`\n- `multi_gpu::peer::4KiB`\n";
        assert!(s.contains(group), "{s}");
        assert!(
            s.contains("### needs --allow-destructive (1)\n\n- `reset::loses_vram::2MiB`\n"),
            "{s}"
        );
    }

    #[test]
    fn the_fault_plan_section_counts_cases_and_firings_per_rule() {
        let counted = |case: &str, fired: [u64; 2]| CaseRecord {
            case: case.into(),
            status: Status::Pass,
            injected: (0..2)
                .map(|rule| crate::device::Injected {
                    rule,
                    kind: ["corrupt", "slow"][rule].into(),
                    matched: fired[rule] + 1,
                    fired: fired[rule],
                })
                .collect(),
            ..CaseRecord::blank()
        };
        let s = render_summary(&[counted("a", [2, 0]), counted("b", [3, 0])], &run());
        assert!(
            s.contains(
                "## Fault plan\n\n| rule | kind | cases it fired in | firings | matches |\n\
                 | ---: | --- | ---: | ---: | ---: |\n| 0 | corrupt | 2 | 5 | 7 |\n\
                 | 1 | slow | 0 | 0 | 2 |\n"
            ),
            "{s}"
        );
        assert!(!s.contains("No rule fired"), "{s}");
        let s = render_summary(&[counted("a", [0, 0])], &run());
        assert!(s.contains("No rule fired in any case"), "{s}");
        assert!(!render_summary(&records(), &run()).contains("## Fault plan"));
    }

    /// A defect seen by many cases is one line: its fingerprint, how many cases and paths.
    #[test]
    fn failures_are_grouped_by_signature_before_the_rows() {
        let bit8 = |case: &str, check: &str| {
            record(
                case,
                Status::Fail,
                Some(&format!(
                    "{check} of [0x0, 0x1000) in allocation 1 (generation 2): 1 bad word in 1 of \
                     1 pages: 1 corrupt\n  page 0: corrupt (1 word, expected ^ actual = \
                     0x00000100, 1 bit)"
                )),
            )
        };
        let records = vec![
            bit8("prefetch::a::4KiB", "CPU verify"),
            bit8("cpu_fault::b::2MiB", "GPU verify"),
            bit8("cpu_fault::c::2MiB", "CPU verify"),
            record(
                "vma::d::4KiB",
                Status::Fail,
                Some("3 increments lost; first at word 7 (page 0, offset 0x1c): expected 4, got 3"),
            ),
        ];
        let s = render_summary(&records, &run());
        assert!(
            s.contains("4 failures, 2 distinct by their signature:"),
            "{s}"
        );
        assert!(
            s.contains(
                "- **3 cases, 2 paths** (cpu_fault, prefetch): fail: bad pages corrupt, every \
                 traced bad word with expected ^ actual = 0x00000100; `prefetch::a::4KiB`, \
                 `cpu_fault::b::2MiB`, `cpu_fault::c::2MiB`"
            ),
            "{s}"
        );
        assert!(
            s.contains(
                "- **1 case, 1 path** (vma): fail: N increments lost; first at word N (page N, \
                 offset 0x…): expected N, got N; `vma::d::4KiB`"
            ),
            "{s}"
        );
        assert!(s.find("distinct by their signature") < s.find("| case | status |"));
    }

    #[test]
    fn empty_run_says_none() {
        let s = render_summary(&[], &run());
        assert!(s.contains("## Failures\n\nNone."), "{s}");
        assert!(s.contains("| **total** | 0 |"), "{s}");
    }

    fn lab_records() -> Vec<CaseRecord> {
        use crate::results::{Attempt, CaseOutput, ExpectationNote, LogLine, TaintChange};
        let mut flake = record("retry::flaky::2MiB", Status::Flake, None);
        flake.retries = vec![Attempt {
            status: Status::Fail,
            reason: Some("stale page at page 3".into()),
            started: "2025-01-31T02:14:01.000Z".into(),
            duration_s: 0.1,
        }];
        let mut known = record(
            "retry::known::2MiB",
            Status::Flake,
            Some("no result after 60 s"),
        );
        known.expectation = Some(ExpectationNote {
            expected: "flake".into(),
            reason: "LAB-31".into(),
            observed: Status::Timeout,
        });
        let mut xfail = record(
            "expect::bug::2MiB",
            Status::ExpectedFail,
            Some("lost 1 page"),
        );
        xfail.expectation = Some(ExpectationNote {
            expected: "fail".into(),
            reason: "LAB-9 | see the thread".into(),
            observed: Status::DmesgFail,
        });
        let mut xpass = record("expect::fixed::2MiB", Status::UnexpectedPass, None);
        xpass.expectation = Some(ExpectationNote {
            expected: "fail".into(),
            reason: "LAB-7".into(),
            observed: Status::Pass,
        });
        let mut warned = record(
            "expect::warned::4KiB",
            Status::DmesgWarn,
            Some("kernel warning"),
        );
        warned.kernel_log = vec![
            LogLine {
                level: 6,
                seq: 1,
                ts_us: 1,
                text: "informational".into(),
                flag: None,
                attribution: None,
            },
            LogLine {
                level: 4,
                seq: 2,
                ts_us: 2,
                text: "WARNING: CPU: 3 PID: 77 at drm_pagemap.c:301 | x".into(),
                flag: Some("WARNING".into()),
                attribution: None,
            },
        ];
        warned.taint = Some(TaintChange {
            before: 0,
            after: 0x200,
            gained: vec!["W (warn)".into()],
            bad: true,
        });
        let mut crash = record(
            "eviction::lru::2MiB",
            Status::Crash,
            Some("killed by signal 11 (SIGSEGV)"),
        );
        let stdout: String = (1..=25).map(|i| format!("line {i}\n")).collect();
        crash.output = Some(CaseOutput {
            stdout_file: "output/eviction::lru::2MiB.stdout".into(),
            stderr_file: "output/eviction::lru::2MiB.stderr".into(),
            stdout_bytes: stdout.len() as u64,
            stderr_bytes: 0,
            stdout_tail: stdout,
            stderr_tail: String::new(),
        });
        let cut = record("eviction::cut::2MiB", Status::Incomplete, None);
        vec![flake, known, xfail, xpass, warned, crash, cut]
    }

    #[test]
    fn lab_sections_show_what_the_runner_observed() {
        let s = render_summary(&lab_records(), &run());
        let sections = [
            "## Flakes\n\n\
             - `retry::flaky::2MiB`: failed 1 time before passing\n  \
             - fail at 2025-01-31T02:14:01.000Z: stale page at page 3\n\
             - `retry::known::2MiB`: a known flake (LAB-31); this run: timeout: no result after 60 s\n\n",
            "## Expected failures\n\n| case | observed | diagnosis | listed because |\n\
             | --- | --- | --- | --- |\n\
             | `expect::bug::2MiB` | dmesg_fail | lost 1 page | LAB-9 \\| see the thread |\n\n",
            "## Unexpected passes\n\nThe expectations file lists these as failing, and they \
             passed: take them off the list.\n\n| case | listed because |\n| --- | --- |\n\
             | `expect::fixed::2MiB` | LAB-7 |\n\n",
            "## Kernel log findings\n\n| case | flag | line |\n| --- | --- | --- |\n\
             | `expect::warned::4KiB` | WARNING | `WARNING: CPU: 3 PID: 77 at drm_pagemap.c:301 \\| x` |\n\n",
            "## Taint changes\n\n| case | before | after | gained | stops the run |\n\
             | --- | --- | --- | --- | --- |\n| `expect::warned::4KiB` | 0x0 | 0x200 | W (warn) | **yes** |\n\n",
            "## Crashes and timeouts\n\n\
             ### `eviction::lru::2MiB`: crash, killed by signal 11 (SIGSEGV)\n\n\
             Repeat with `svmconf eviction::lru::2MiB --exact --seed 0x5eed --profile sim`\n\n\
             stdout, the last 20 lines (`output/eviction::lru::2MiB.stdout`):\n\n```\nline 6\n",
            "line 25\n```\n\n\
             ### `eviction::cut::2MiB`: incomplete\n\n\
             Repeat with `svmconf eviction::cut::2MiB --exact --seed 0x5eed --profile sim`\n\n\
             No output was captured.\n",
        ];
        let mut at = 0;
        for want in sections {
            let found = s[at..]
                .find(want)
                .unwrap_or_else(|| panic!("missing, or out of order:\n{want}\n--- in ---\n{s}"));
            at += found + want.len();
        }
        assert!(!s.contains("line 5\n"), "only the last 20 lines\n{s}");
        assert!(
            !s.contains("stderr, the last"),
            "empty stderr is not shown\n{s}"
        );
        assert!(!s.contains("informational"), "only flagged lines\n{s}");
    }

    #[test]
    fn a_quiet_run_has_no_lab_sections() {
        let quiet = vec![record("prefetch::to_vram::2MiB", Status::Pass, None)];
        let s = render_summary(&quiet, &run());
        for heading in [
            "## Flakes",
            "## Expected failures",
            "## Unexpected passes",
            "## Kernel log findings",
            "## Taint changes",
            "## Crashes and timeouts",
        ] {
            assert!(!s.contains(heading), "{heading}\n{s}");
        }
    }

    #[test]
    fn output_fences_survive_backticks() {
        assert_eq!(fenced("a"), "```\na\n```");
        assert_eq!(fenced("x ```` y"), "`````\nx ```` y\n`````");
    }

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x`"), "`` `x` ``");
    }

    #[test]
    fn written_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("summary.md");
        write_summary(&records(), &run(), &path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            render_summary(&records(), &run())
        );
    }
}
