//! Defects that once escaped the suite, each planted with a fault plan written here, and the
//! check that now catches it: the case passes on the healthy reference device and fails under
//! the plan with the words that name the defect.

mod common;

use common::{journal, run_dir, svmconf, text};
use rstest::rstest;

/// The record of `case` run alone under fault plan `rules` (none: healthy), with `extra` options,
/// and its run folder.
fn run(
    dir: &std::path::Path,
    case: &str,
    rules: Option<&str>,
    extra: &[&str],
) -> (serde_json::Value, std::path::PathBuf) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let results = dir.join(format!("results-{n}"));
    let plan = dir.join(format!("plan-{n}.yaml"));
    let mut args = vec![
        "--results",
        results.to_str().unwrap_or_default(),
        "--allow-destructive",
        case,
        "--exact",
    ];
    if let Some(rules) = rules {
        std::fs::write(
            &plan,
            format!("description: planted by a test\ncatches: ['{case}']\nrules:\n{rules}"),
        )
        .expect("writing the plan");
        args.extend(["--sim-faults", plan.to_str().unwrap_or_default()]);
    }
    args.extend_from_slice(extra);
    let out = svmconf(&args);
    let records = journal(&run_dir(&results));
    assert_eq!(records.len(), 1, "{case} ran alone: {}", text(&out));
    (
        records.into_iter().next().unwrap_or_default(),
        run_dir(&results),
    )
}

#[rstest]
// A prefetch that does nothing once, inside the timed loop: every timed run is checked.
#[case::ignored_prefetch_in_a_timed_loop(
    "prefetch::round_trip::managed::2MiB",
    "  - kind: ignore_prefetch\n    nth: 4\n",
    "prefetch to VRAM, timed run 1: 512 of 512 pages of [0x0, 0x200000) are not in vram"
)]
// ... and one that does nothing in the untimed step between timed runs.
#[case::ignored_prefetch_between_timed_runs(
    "prefetch::round_trip::managed::2MiB",
    "  - kind: ignore_prefetch\n    nth: 5\n",
    "left 512 pages of [0x0, 0x200000) in vram already (residency): it migrated nothing"
)]
// A path 10^6 times slower passes no baseline: the profile's slowest plausible figure fails it.
#[case::implausibly_slow_prefetch(
    "prefetch::round_trip::managed::2MiB",
    "  - kind: slow\n    trigger: prefetch\n    factor: 1000000\n",
    "too slow: prefetch_to_vram_gbps"
)]
// A leak of 256 KiB per free, in a case that never looked at VRAM in use.
#[case::leak_per_free(
    "prefetch::partial::2MiB",
    "  - kind: vram_leak\n    bytes: 262144\n",
    "leak: after the case freed everything it allocated, VRAM in use is"
)]
// A leak of 16 MiB on the third free.
#[case::leak_on_the_third_free(
    "ttm_eviction::lru_order::2MiB",
    "  - kind: vram_leak\n    nth: 3\n    bytes: 16777216\n",
    "16777216 more than before the case's first allocation"
)]
// Every 61st page flips a bit on its way back to RAM: the storm's counters are right, the
// other words of the page are not.
#[case::storm_words_beyond_the_counter(
    "fault_storm::cpu_threads::2MiB",
    "  - kind: corrupt\n    direction: to_ram\n    pages: every 61\n",
    "corrupt (1 word"
)]
#[case::crowd_words_beyond_the_counter(
    "fault_storm::cpu_crowd::16MiB",
    "  - kind: corrupt\n    direction: to_ram\n    pages: every 61\n",
    "corrupt (1 word"
)]
// The verify kernel's own result page comes back corrupt: the suite's machinery, said as such.
#[case::a_broken_result_buffer(
    "prefetch::round_trip::managed::2MiB",
    "  - kind: corrupt\n    trigger: gpu_fault\n    helpers: true\n    words: 1024\n    nth: 1\n",
    "the check's own result buffer (allocation"
)]
// Eviction 10^6 times slower: timed on the device's clock, below the slowest plausible figure.
#[case::implausibly_slow_eviction(
    "ttm_eviction::device_buffers::2MiB",
    "  - kind: slow\n    trigger: eviction\n    factor: 1000000\n",
    "too slow: eviction_gbps"
)]
fn an_escaped_defect_is_caught(#[case] case: &str, #[case] rules: &str, #[case] words: &str) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (healthy, _) = run(dir.path(), case, None, &[]);
    assert_eq!(healthy["status"], "pass", "{case} healthy: {healthy}");
    let (broken, _) = run(dir.path(), case, Some(rules), &[]);
    let reason = broken["reason"].as_str().unwrap_or_default();
    assert_eq!(broken["status"], "fail", "{case} under\n{rules}: {reason}");
    assert!(
        reason.contains(words),
        "{case} under\n{rules}: expected `{words}` in:\n{reason}"
    );
}

/// A migration 15% slower reads as 15% slower, not diluted by the faults or the CPU reads
/// around it, and is caught against a baseline on every path that migrates: the timed figure
/// is the migration alone.
#[rstest]
#[case::cpu_fault(
    "cpu_fault::read::managed::2MiB",
    "cpu_fault",
    "cpu_fault_migrate_gbps"
)]
#[case::first_touch(
    "first_touch::untouched::managed::2MiB",
    "gpu_fault",
    "first_touch_migrate_gbps"
)]
#[case::prefetch(
    "prefetch::round_trip::managed::2MiB",
    "prefetch",
    "prefetch_to_vram_gbps"
)]
#[case::eviction("ttm_eviction::device_buffers::2MiB", "eviction", "eviction_gbps")]
fn a_migration_15_percent_slower_is_caught_against_a_baseline(
    #[case] case: &str,
    #[case] trigger: &str,
    #[case] metric: &str,
) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (baseline, base_dir) = run(dir.path(), case, None, &["--reps", "10"]);
    assert_eq!(baseline["status"], "pass", "{baseline}");
    let base = base_dir.to_str().unwrap_or_default();
    let (healthy, _) = run(dir.path(), case, None, &["--baseline", base]);
    assert_eq!(
        healthy["status"], "pass",
        "the same device again: {healthy}"
    );
    let rules = format!("  - kind: slow\n    trigger: {trigger}\n    factor: 1.15\n");
    let (slow, _) = run(dir.path(), case, Some(&rules), &["--baseline", base]);
    let reason = slow["reason"].as_str().unwrap_or_default();
    assert_eq!(slow["status"], "fail", "{case}: {reason}");
    assert!(
        reason.contains(metric) && reason.contains("15.0% worse"),
        "{case}: expected {metric} 15.0% worse in:\n{reason}"
    );
}

/// A defect that corrupts every migration to VRAM breaks the data and the verify kernel's own
/// result page at once: the diagnosis leads with the data's signature (what a planted-bug
/// matrix and a morning reader match on) and says what became of the helper after it.
#[test]
fn data_broken_with_the_helper_leads_with_the_data() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let case = "prefetch::round_trip::managed::2MiB";
    let rules = "  - kind: corrupt\n    direction: to_vram\n    helpers: true\n    words: 1024\n";
    let (broken, _) = run(dir.path(), case, Some(rules), &[]);
    let reason = broken["reason"].as_str().unwrap_or_default();
    assert_eq!(broken["status"], "fail", "{case} under\n{rules}: {reason}");
    let first = reason.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("GPU verify of [0x0, 0x200000) in allocation 1 (generation 1): ")
            && first.contains("bad words in")
            && !first.contains("result buffer"),
        "the data's signature first: {reason}"
    );
    assert!(
        reason.contains("And the check's own result buffer (allocation"),
        "the helper said after it: {reason}"
    );
}
