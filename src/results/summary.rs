//! `summary.md`: the page a person reads in the morning. What ran, how many of each outcome,
//! every failure with its diagnosis and the command that repeats it, every figure measured, and
//! the skips grouped by why, so that a missing capability shows up once, not per case.

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
    s
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
    fn empty_run_says_none() {
        let s = render_summary(&[], &run());
        assert!(s.contains("## Failures\n\nNone."), "{s}");
        assert!(s.contains("| **total** | 0 |"), "{s}");
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
