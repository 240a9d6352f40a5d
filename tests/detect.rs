//! Regression detection from the outside: `--baseline` against a run made slower on purpose,
//! bad baselines refused before anything is written, and the subcommands that measure the
//! checks themselves (`sensitivity`, `scaling`, `seeds`).

mod common;

use common::{journal, record, run_dir, svmconf, text};

const CASE: &str = "prefetch::round_trip::managed::2MiB";

/// One case into `results`, with `extra` options; the run folder.
fn one_case(
    results: &std::path::Path,
    extra: &[&str],
) -> (std::process::Output, std::path::PathBuf) {
    let mut args = vec![
        "--backend",
        "sim",
        "--results",
        results.to_str().unwrap_or_default(),
        CASE,
        "--exact",
    ];
    args.extend_from_slice(extra);
    let out = svmconf(&args);
    let dir = run_dir(results);
    (out, dir)
}

/// The current run's profile copies `sim` with a slower migration copy (4 GB/s, not 6): a 2 MiB
/// prefetch takes 41% longer, a regression of the three prefetch figures (each way, and the
/// cold one), named with its numbers.
/// The same device twice is not one.
#[test]
fn a_slower_run_fails_against_its_baseline_and_the_same_run_passes() {
    let base = tempfile::tempdir().unwrap();
    let (out, base_dir) = one_case(base.path(), &["--reps", "5"]);
    assert!(out.status.success(), "{}", text(&out));
    let base_arg = base_dir.to_str().unwrap_or_default();

    let slow = tempfile::tempdir().unwrap();
    let sim = std::fs::read_to_string("fixtures/profiles/sim.yaml").unwrap();
    let profile = slow.path().join("sim.yaml");
    std::fs::write(
        &profile,
        sim.replace("migrate_gbps: 6.0", "migrate_gbps: 4.0"),
    )
    .unwrap();
    let now = tempfile::tempdir().unwrap();
    let (out, dir) = one_case(
        now.path(),
        &[
            "--profile",
            profile.to_str().unwrap(),
            "--baseline",
            base_arg,
        ],
    );
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
    let records = journal(&dir);
    let r = record(&records, CASE);
    assert_eq!(r["status"], "fail");
    let reason = r["reason"].as_str().unwrap_or_default();
    for part in [
        "prefetch_to_vram_gbps regressed",
        "worse (tolerance 5.0%)",
        "p(worse) = 0.0003",
        "5 baseline and 10 current samples",
    ] {
        assert!(reason.contains(part), "{part:?} missing from {reason}");
    }
    assert!(r["repro"]
        .as_str()
        .unwrap_or_default()
        .contains("--baseline"));
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["baseline"]["alpha"], 0.01);
    assert!(info["baseline"]["method"]
        .as_str()
        .unwrap_or_default()
        .contains("Mann-Whitney"));
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("## Baseline") && summary.contains("| regressed | 3 |"),
        "{summary}"
    );
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("baseline.prefetch_to_vram_gbps:"), "{junit}");

    let same = tempfile::tempdir().unwrap();
    let (out, dir) = one_case(same.path(), &["--baseline", base_arg]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(summary.contains("| unchanged | 3 |"), "{summary}");
}

/// A profile that copies `sim` with the migration copy at `gbps` (sim: 6), in `dir/sim.yaml`
/// (`dir` made here).
fn sim_at(dir: &std::path::Path, gbps: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let sim = std::fs::read_to_string("fixtures/profiles/sim.yaml").unwrap();
    let profile = dir.join("sim.yaml");
    std::fs::write(
        &profile,
        sim.replace("migrate_gbps: 6.0", &format!("migrate_gbps: {gbps}")),
    )
    .unwrap();
    profile
}

/// The sequential rule: a case whose timings come out undecided against the baseline (a copy
/// 5% slower: its median near the 5% tolerance, not significant) runs twice more and is judged
/// on 30 samples, said in its evidence; a 10% slower copy fails on the first 10; with
/// `--decide-budget 0` nothing runs again.
#[test]
fn undecided_timings_take_more_runs_and_a_ten_percent_slowdown_fails() {
    let base = tempfile::tempdir().unwrap();
    let (out, base_dir) = one_case(base.path(), &["--reps", "20"]);
    assert!(out.status.success(), "{}", text(&out));
    let base_arg = base_dir.to_str().unwrap_or_default();
    let profiles = tempfile::tempdir().unwrap();

    let near = sim_at(&profiles.path().join("near"), "5.70");
    let now = tempfile::tempdir().unwrap();
    let (out, dir) = one_case(
        now.path(),
        &["--profile", near.to_str().unwrap(), "--baseline", base_arg],
    );
    let records = journal(&dir);
    let r = record(&records, CASE);
    let evidence = r["evidence"].to_string();
    assert!(
        evidence.contains(
            "baseline: undecided after 10 samples: 2 more run(s) of the case, 30 samples"
        ),
        "{evidence}"
    );
    assert!(
        evidence.contains("30 current samples"),
        "judged on all 30: {evidence}"
    );
    assert!(out.status.success(), "{}", text(&out));
    let starts = common::entries(&dir)
        .iter()
        .filter(|e| e["event"] == "start")
        .count();
    assert_eq!(
        starts, 3,
        "the case and its two deciding runs each start in the journal"
    );

    let never = tempfile::tempdir().unwrap();
    let (_, dir) = one_case(
        never.path(),
        &[
            "--profile",
            near.to_str().unwrap(),
            "--baseline",
            base_arg,
            "--decide-budget",
            "0",
        ],
    );
    let records = journal(&dir);
    let r = record(&records, CASE);
    assert!(
        !r["evidence"].to_string().contains("undecided after"),
        "{}",
        r["evidence"]
    );
    assert!(r["repro"].as_str().unwrap().contains("--decide-budget 0"));

    let slow = sim_at(&profiles.path().join("slow"), "5.4545");
    let later = tempfile::tempdir().unwrap();
    let (out, dir) = one_case(
        later.path(),
        &["--profile", slow.to_str().unwrap(), "--baseline", base_arg],
    );
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
    let records = journal(&dir);
    let r = record(&records, CASE);
    assert!(
        r["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("regressed"),
        "{r}"
    );
}

/// A baseline that cannot be the reference stops the run before any case, exit 2, naming the
/// path, and leaves no run folder.
#[test]
fn bad_baselines_are_refused_before_anything_runs() {
    let base = tempfile::tempdir().unwrap();
    let (out, base_dir) = one_case(base.path(), &[]);
    assert!(out.status.success(), "{}", text(&out));
    let corrupt = tempfile::tempdir().unwrap();
    std::fs::copy(base_dir.join("run.json"), corrupt.path().join("run.json")).unwrap();
    std::fs::write(corrupt.path().join("journal.jsonl"), "{not json\n").unwrap();
    let other = corrupt.path().join("other.yaml");
    let sim = std::fs::read_to_string("fixtures/profiles/sim.yaml").unwrap();
    std::fs::write(&other, sim.replace("name: sim", "name: other")).unwrap();
    let cases: [(&str, Vec<&str>, &str); 3] = [
        (
            "/nonexistent/run",
            vec![],
            "--baseline /nonexistent/run: not a run folder: no such folder",
        ),
        (
            base_dir.to_str().unwrap(),
            vec!["--profile", other.to_str().unwrap()],
            "a run on profile `sim`, and this run is on `other`",
        ),
        (
            corrupt.path().to_str().unwrap(),
            vec![],
            "journal.jsonl` line 1: not a journal entry",
        ),
    ];
    for (dir, extra, message) in cases {
        let results = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--backend",
            "sim",
            "--results",
            results.path().to_str().unwrap(),
            "--baseline",
            dir,
        ];
        args.extend(extra);
        let out = svmconf(&args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains(message),
            "{message:?} in {}",
            text(&out)
        );
        assert_eq!(
            std::fs::read_dir(results.path()).unwrap().count(),
            0,
            "nothing left"
        );
    }
}

#[test]
fn sensitivity_prints_the_table_and_meets_the_goal_at_the_recommended_repetitions() {
    let out = svmconf(&["sensitivity", "--trials", "200"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    for row in [
        "|       0% |    200 |",
        "|      20% |    200 |",
        "goal",
        ": met",
    ] {
        assert!(t.contains(row), "{row:?} in {t}");
    }
    // Five samples a side miss the goal: the check says so rather than pass.
    let out = svmconf(&["sensitivity", "--trials", "200", "--reps", "5"]);
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
}

/// A profile whose per-migration fixed cost dwarfs the copy: every migration path grows far
/// slower than its size; reported with its exponent, not flagged.
#[test]
fn scaling_reports_a_fixed_cost_profile_below_one_and_does_not_flag_it() {
    let dir = tempfile::tempdir().unwrap();
    let sim = std::fs::read_to_string("fixtures/profiles/sim.yaml").unwrap();
    let costly = sim
        .replace("name: sim", "name: costly")
        .replace("migration_fixed_us: 70.0", "migration_fixed_us: 20000.0")
        // A device that slow says so: its slowest plausible migration is slower still.
        .replace("    migration_us: 1000", "    migration_us: 50000");
    let profile = dir.path().join("costly.yaml");
    std::fs::write(&profile, costly).unwrap();
    let out = svmconf(&[
        "scaling",
        "--reps",
        "2",
        "--backend",
        "sim",
        "--profile",
        profile.to_str().unwrap(),
        "--no-preflight",
    ]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let row = t
        .lines()
        .find(|l| l.starts_with("| prefetch to VRAM |"))
        .unwrap_or_else(|| panic!("no prefetch row in {t}"));
    let k: f64 = row.split('|').nth(4).unwrap().trim().parse().unwrap();
    assert!(k < 0.5, "{row}");
    assert!(row.ends_with("| ok |"), "{row}");
}

/// The fault plan that makes the CPU fault path quadratic is flagged, on that path only, and
/// the command fails; the clean sweep flags nothing.
#[test]
fn scaling_flags_the_path_a_plan_made_quadratic() {
    let out = svmconf(&[
        "scaling",
        "--reps",
        "2",
        "--sim-faults",
        "fixtures/faults/quadratic-cpu-fault.yaml",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(101), "{t}");
    let flagged: Vec<&str> = t.lines().filter(|l| l.contains("FLAGGED")).collect();
    assert_eq!(flagged.len(), 1, "{t}");
    assert!(flagged[0].starts_with("| CPU fault |"), "{t}");
    let k: f64 = flagged[0]
        .split('|')
        .nth(6)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(k > 1.5, "{}", flagged[0]);
}

#[test]
fn seeds_counts_failures_and_a_broken_path_is_counted() {
    let out = svmconf(&[
        "seeds",
        "--count",
        "1",
        "--backend",
        "sim",
        "cpu_fault::read::managed",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("0 failing of 3 case runs over 1 seeds"),
        "{}",
        text(&out)
    );
    let out = svmconf(&[
        "seeds",
        "--count",
        "2",
        "--backend",
        "sim",
        "--sim-break",
        "corrupt-migrate-to-ram",
        "cpu_fault::read::managed",
    ]);
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
    assert!(
        text(&out).contains("failing of 6 case runs over 2 seeds"),
        "{}",
        text(&out)
    );
}
