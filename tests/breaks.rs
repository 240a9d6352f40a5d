//! Every migration path's cases catch a sim that breaks that path, with the right diagnosis.
//!
//! Each row runs one case twice: on the healthy reference device, where it passes, and with one
//! `--sim-break` switch, where it must fail and say why. A check that passes both ways would be
//! a check that cannot fail.

mod common;

use common::{journal, run_dir, svmconf, text};
use rstest::rstest;

#[rstest]
// first touch: a GPU-fault migration that copies nothing shows as zero pages.
#[case(
    "zero-on-first-touch",
    "first_touch::cpu_written::managed::2MiB+4KiB",
    "513 zero"
)]
#[case(
    "zero-on-first-touch",
    "first_touch::cpu_written::managed::2MiB+4KiB",
    "page 0: zero (never copied)"
)]
#[case(
    "ignore-preferred-system",
    "first_touch::preferred_system::managed::2MiB",
    "preferred location system maps the pages in place: 512 of 512 pages"
)]
#[case(
    "shared-migrates",
    "first_touch::in_place::shared::64KiB",
    "shared memory is mapped in place, never migrated: 16 of 16 pages"
)]
// prefetch: a page copied from its neighbour, a migrate-back that leaves the old data, a clock
// faster than the link.
#[case(
    "misplace-prefetch",
    "prefetch::round_trip::managed::2MiB",
    "page 0: misplaced (holds page 1's words)"
)]
#[case(
    "stale-migrate-to-ram",
    "prefetch::rounds::16MiB",
    "page 0: stale (generation 1, expected 2)"
)]
#[case(
    "ignore-prefetch",
    "prefetch::partial::2MiB",
    "the prefetched span: 256 of 256 pages"
)]
#[case(
    "fast-clock",
    "prefetch::round_trip::managed::64MiB",
    "measurement error: prefetch_to_vram_gbps"
)]
// CPU fault: a bit flipped on the way back to system memory.
#[case(
    "corrupt-migrate-to-ram",
    "cpu_fault::read::managed::2MiB",
    "corrupt (1 word, expected ^ actual = 0x"
)]
// fault storm: a fault never serviced, an increment lost in a migration.
#[case("storm-hang", "fault_storm::scattered::managed::64MiB", "timed out")]
#[case(
    "lost-atomic-update",
    "fault_storm::ping_pong::2MiB",
    "increments lost; first at word 0"
)]
// TTM eviction: a page lost on the way out, the wrong allocation evicted.
#[case(
    "lose-page-on-eviction",
    "ttm_eviction::oversubscribe::8MiB",
    "zero (never copied)"
)]
#[case(
    "lose-page-on-eviction",
    "ttm_eviction::device_buffers::2MiB",
    "zero (never copied)"
)]
#[case(
    "evict-mru",
    "ttm_eviction::lru_order::2MiB",
    "allocation 0 (migrated first, then used again last): 512 of 512 pages are not in vram"
)]
// GPU reset: the holder survives; or nothing migrates afterwards.
#[case(
    "reset-keeps-processes",
    "gpu_reset::holder_ends::2MiB",
    "the process holding VRAM was still running"
)]
#[case(
    "no-vram-after-reset",
    "gpu_reset::holder_ends::2MiB",
    "a process after the reset migrates to VRAM: 512 of 512 pages"
)]
// VMA changes: copy-on-write shared, a read-only mapping written, a partially unmapped range
// that loses the rest, shared memory migrated.
#[case(
    "cow-shares-pages",
    "vma::fork_cow::managed::2MiB",
    "in the forked child: CPU verify"
)]
#[case(
    "cow-shares-pages",
    "vma::fork_cow::managed::2MiB",
    "page 0: newer (generation 2, expected 1)"
)]
#[case(
    "readonly-gpu-write-allowed",
    "vma::readonly_gpu_write::mmap::64KiB",
    "a GPU write to a read-only mapping completed"
)]
#[case(
    "partial-unmap-keeps-range",
    "vma::partial_unmap::managed::2MiB",
    "zero (never copied)"
)]
#[case(
    "shared-migrates",
    "vma::in_place::file::64KiB",
    "GPU writes to file memory stay in place: 16 of 16 pages"
)]
fn a_broken_path_fails_its_case_with_the_right_diagnosis(
    #[case] brk: &str,
    #[case] case: &str,
    #[case] diagnosis: &str,
) {
    let run = |extra: &[&str]| {
        let results = tempfile::tempdir().expect("a temporary folder");
        let mut args = vec![
            "--results",
            results.path().to_str().unwrap_or_default(),
            "--allow-destructive",
            case,
            "--exact",
        ];
        args.extend_from_slice(extra);
        let out = svmconf(&args);
        let records = journal(&run_dir(results.path()));
        assert_eq!(records.len(), 1, "{case} ran alone: {}", text(&out));
        (out, records.into_iter().next().unwrap_or_default())
    };

    let (healthy_out, healthy) = run(&[]);
    assert!(
        healthy_out.status.success(),
        "{case} passes on the healthy sim: {}",
        text(&healthy_out)
    );
    assert_eq!(healthy["status"], "pass");

    let (broken_out, broken) = run(&["--sim-break", brk]);
    assert_eq!(
        broken_out.status.code(),
        Some(101),
        "{case} fails with {brk}: {}",
        text(&broken_out)
    );
    assert_eq!(broken["status"], "fail", "{case} with {brk}");
    // Pages are named by index and, where the device knows it, address: `page 0 (0x7f...)`.
    let reason = regex::Regex::new(r"(page \d+) \(0x[0-9a-f]+\)")
        .unwrap()
        .replace_all(broken["reason"].as_str().unwrap_or_default(), "$1")
        .into_owned();
    assert!(
        reason.contains(diagnosis),
        "{case} with {brk}: expected `{diagnosis}` in:\n{reason}"
    );
    let repro = broken["repro"].as_str().unwrap_or_default();
    assert!(
        repro.contains(&format!("--sim-break {brk}")) && repro.contains(case),
        "the repro command repeats the break: {repro}"
    );
    assert!(
        text(&broken_out).contains(repro),
        "the failure prints its repro command"
    );
}

/// multi_gpu has no behaviour to break on a one-GPU policy: its cases skip, and the reason comes
/// from the device and the profile rather than from the case.
#[test]
fn multi_gpu_cases_skip_because_the_policy_has_one_gpu() {
    let results = tempfile::tempdir().expect("a temporary folder");
    let out = svmconf(&[
        "--results",
        results.path().to_str().unwrap_or_default(),
        "multi_gpu::",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let records = journal(&run_dir(results.path()));
    assert_eq!(records.len(), 2);
    for r in records {
        assert_eq!(r["status"], "skip");
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("device has 1 GPU(s), policy.max_gpus = 1"),
            "{reason}"
        );
    }
}

/// A device that says it reports migration events but answers none would skip nothing and leave
/// every event check blind: the run is refused before anything is written, naming the
/// disagreement.
#[test]
fn a_device_that_does_not_answer_what_it_claims_is_refused_before_the_run() {
    let results = tempfile::tempdir().expect("a temporary folder");
    let out = svmconf(&[
        "--results",
        results.path().to_str().unwrap_or_default(),
        "--sim-break",
        "silent-events",
        "prefetch::",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("--backend sim: what the device says it can observe is not what it answers")
            && said.contains("capabilities say events is there, but the device does not answer"),
        "{said}"
    );
    let left = std::fs::read_dir(results.path())
        .expect("the folder is there")
        .count();
    assert_eq!(left, 0, "nothing is written: {said}");
}

/// `fixtures/profiles/sim.yaml` with each `(from, to)` replaced once, written as `sim.yaml` (its
/// name must match the file's) in `dir`.
fn sim_profile(dir: &std::path::Path, edits: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/profiles/sim.yaml"),
    )
    .expect("fixtures/profiles/sim.yaml");
    for (from, to) in edits {
        assert!(text.contains(from), "sim.yaml has `{from}`");
        text = text.replacen(from, to, 1);
    }
    let profile = dir.join("sim.yaml");
    std::fs::write(&profile, text).expect("writing the profile");
    profile
}

/// The record of `case` run alone on the sim under `profile`, with `extra` options.
fn alone(
    dir: &std::path::Path,
    profile: &std::path::Path,
    case: &str,
    extra: &[&str],
) -> serde_json::Value {
    // A folder of its own per run, under the test's.
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let results = dir.join(format!("results-{run}"));
    let mut args = vec![
        "--results",
        results.to_str().unwrap_or_default(),
        "--profile",
        profile.to_str().unwrap_or_default(),
        case,
        "--exact",
    ];
    args.extend_from_slice(extra);
    let out = svmconf(&args);
    let records = journal(&run_dir(&results));
    assert_eq!(records.len(), 1, "{}", text(&out));
    records.into_iter().next().unwrap_or_default()
}

/// A profile whose TTM evicts in migration order (the drm_pagemap design: a GPU access never
/// reaches the LRU): lru_order expects the allocation migrated first to go, passes on a sim that
/// does so, and fails with the allocation it kept when the sim evicts the most recent instead.
#[test]
fn lru_order_follows_the_profiles_eviction_order_and_catches_the_wrong_victim() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let line = "  evict_lru_whole: true\n";
    let with = format!("{line}  eviction_order: migration\n");
    let profile = sim_profile(dir.path(), &[(line, &with)]);
    let case = "ttm_eviction::lru_order::2MiB";
    let healthy = alone(dir.path(), &profile, case, &[]);
    assert_eq!(healthy["status"], "pass", "{healthy}");
    let broken = alone(dir.path(), &profile, case, &["--sim-break", "evict-mru"]);
    assert_eq!(broken["status"], "fail", "{broken}");
    let reason = broken["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(
            "allocation 0 (migrated first, then used again last): 512 of 512 pages are not in \
             system (eviction_order migration: the least recently migrated, allocation 0"
        ),
        "{reason}"
    );
}

/// A first touch over CPU-written memory is a verify, whose result page migrates after the
/// allocation: on a device whose VRAM the allocation fills exactly, that page evicts part of
/// it, so the case skips and says why instead of failing every such device.
#[test]
fn a_first_touch_that_fills_vram_exactly_skips_with_the_result_page_as_its_reason() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let profile = sim_profile(
        dir.path(),
        &[
            ("vram_bytes: 268435456", "vram_bytes: 67108864"),
            ("vram_gib: 0.25", "vram_gib: 0.0625"),
        ],
    );
    let record = alone(
        dir.path(),
        &profile,
        "first_touch::cpu_written::managed::64MiB",
        &[],
    );
    assert_eq!(record["status"], "skip", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("67108864 bytes and the verify kernel's result page do not fit in 67108864 bytes of VRAM"),
        "{record}"
    );
    // With room for the page, the same case runs and passes.
    let record = alone(
        dir.path(),
        &sim_profile(dir.path(), &[]),
        "first_touch::cpu_written::managed::64MiB",
        &[],
    );
    assert_eq!(record["status"], "pass", "{record}");
}

/// A profile whose reset keeps the holders and their VRAM data (the virtual SVM GPU's):
/// gpu_reset::data_kept passes on a sim that does so, fails when the GPU cannot migrate after
/// the reset, and fails when the reset loses system memory.
#[test]
fn data_kept_passes_a_reset_that_keeps_everything_and_catches_one_that_does_not() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let profile = sim_profile(
        dir.path(),
        &[
            ("  reset_loses_vram: true", "  reset_loses_vram: false"),
            (
                "  reset_ends_processes: true",
                "  reset_ends_processes: false",
            ),
        ],
    );
    let case = "gpu_reset::data_kept::2MiB";
    let healthy = alone(dir.path(), &profile, case, &["--allow-destructive"]);
    assert_eq!(healthy["status"], "pass", "{healthy}");
    let no_vram = alone(
        dir.path(),
        &profile,
        case,
        &["--allow-destructive", "--sim-break", "no-vram-after-reset"],
    );
    assert_eq!(no_vram["status"], "fail", "{no_vram}");
    assert!(
        no_vram["reason"].as_str().unwrap_or_default().contains(
            "prefetch to VRAM after the reset: 512 of 512 pages of [0x0, 0x200000) are not in vram"
        ),
        "{no_vram}"
    );
    let plan = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/faults/reset-loses-system.yaml");
    let lost = alone(
        dir.path(),
        &profile,
        case,
        &[
            "--allow-destructive",
            "--sim-faults",
            plan.to_str().unwrap_or_default(),
        ],
    );
    assert_eq!(lost["status"], "fail", "{lost}");
    assert!(
        lost["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("512 zero"),
        "{lost}"
    );
    // On the series' policy a reset ends the holders: holder_ends is the case, this one skips.
    let series = alone(
        dir.path(),
        &sim_profile(dir.path(), &[]),
        case,
        &["--allow-destructive"],
    );
    assert_eq!(series["status"], "skip", "{series}");
}
