use super::synthetic::{self, Plan};
use super::*;
use crate::results::RunInfo;
use std::path::Path;

fn history_of(dir: &Path) -> Vec<History> {
    let nights = load_nights(&[dir.to_path_buf()]).unwrap();
    group(nights)
        .into_iter()
        .map(|(k, n)| analyse(k, n, &Detect::default()))
        .collect()
}

fn made_up(plan: &Plan) -> (tempfile::TempDir, Vec<History>) {
    let dir = tempfile::tempdir().unwrap();
    synthetic::write(plan, dir.path()).unwrap();
    let h = history_of(dir.path());
    (dir, h)
}

#[test]
fn trends_name_the_night_a_case_broke_mended_or_flaked() {
    use Status::{Fail, Pass, Skip};
    let v = |s: &[Option<Status>]| trend(s);
    assert_eq!(v(&[Some(Pass), Some(Pass)]), Trend::Steady(Pass));
    assert_eq!(
        v(&[
            Some(Pass),
            None,
            Some(Pass),
            Some(Fail),
            Some(Skip),
            Some(Fail)
        ]),
        Trend::Broken {
            since: 3,
            last_good: 2
        }
    );
    assert_eq!(
        v(&[Some(Fail), Some(Fail), Some(Pass)]),
        Trend::Mended { since: 2 }
    );
    assert_eq!(
        v(&[Some(Pass), Some(Fail), Some(Pass), Some(Pass)]),
        Trend::Flaky {
            failed: 1,
            ran: 4,
            flips: 2,
            first: 1
        }
    );
    // Skips are no verdict: a skip between passes changes nothing.
    assert_eq!(
        v(&[Some(Pass), Some(Skip), Some(Pass)]),
        Trend::Steady(Pass)
    );
    assert_eq!(v(&[]), Trend::Steady(Status::Notrun));
}

#[test]
fn a_planted_step_breakage_and_flake_are_found_where_planted() {
    let (_dir, hs) = made_up(&Plan::default());
    assert_eq!(hs.len(), 1);
    let h = &hs[0];
    assert_eq!(h.nights.len(), 100);
    // The step: night 61 (index 60) on every size of the first path, for the worse.
    for s in h
        .series
        .iter()
        .filter(|s| s.path() == "prefetch::round_trip::managed")
    {
        let c = s
            .changes
            .iter()
            .find(|c| (58..=62).contains(&s.points[c.index].night))
            .unwrap_or_else(|| panic!("{}: no change near night 61: {:?}", s.case, s.changes));
        assert!(s.worse(c), "{}: {c:?}", s.case);
        assert!((-0.16..=-0.05).contains(&c.relative), "{c:?}");
    }
    // The other paths: at most one false alarm among their 28 series (alpha 0.01 each).
    let false_alarms: usize = h
        .series
        .iter()
        .filter(|s| s.path() != "prefetch::round_trip::managed")
        .map(|s| s.changes.len())
        .sum();
    assert!(false_alarms <= 1, "{false_alarms} false alarms");
    // The outlier night (31, every sample 3x slower) is no change point.
    assert!(h
        .series
        .iter()
        .all(|s| s.changes.iter().all(|c| s.points[c.index].night != 30)));
    let broken = &h.cases[synthetic::BROKEN];
    assert_eq!(
        broken.trend,
        Trend::Broken {
            since: 75,
            last_good: 74
        },
        "{}",
        broken.case
    );
    let flaky = &h.cases[synthetic::FLAKY];
    assert!(
        matches!(flaky.trend, Trend::Flaky { ran: 100, failed, .. } if (1..=12).contains(&failed)),
        "{:?}",
        flaky.trend
    );
    // The noise is estimated from the history, near what was planted (5% within, 2% between).
    let within = median(
        &h.series
            .iter()
            .filter_map(|s| s.within_cv)
            .collect::<Vec<_>>(),
    );
    let between = median(
        &h.series
            .iter()
            .filter_map(|s| s.between_cv)
            .collect::<Vec<_>>(),
    );
    assert!((0.04..0.06).contains(&within), "{within}");
    assert!((0.01..0.04).contains(&between), "{between}");
    let table = render(h);
    assert!(table.contains("broken since 2026-03-17 02:00 (kernel 7.3.0-nightly076); last good night 2026-03-16 02:00 (kernel 7.3.0-nightly075)"), "{table}");
    assert!(table.contains("flaky: failed"), "{table}");
    assert!(
        table
            .contains("what change points catch at this noise: svmconf sensitivity --night-cv 0.0"),
        "{table}"
    );
}

#[test]
fn without_a_plant_nothing_changes() {
    let plan = Plan {
        step_at: None,
        broken_at: None,
        flaky: 0.0,
        outlier_night: None,
        ..Plan::default()
    };
    let (_dir, hs) = made_up(&plan);
    let h = &hs[0];
    assert!(h
        .cases
        .iter()
        .all(|c| c.trend == Trend::Steady(Status::Pass)));
    let changes: usize = h.series.iter().map(|s| s.changes.len()).sum();
    assert!(changes <= 1, "{changes} change points in a flat history");
    assert!(h.failures.is_empty());
}

#[test]
fn devices_and_versions_are_grouped_and_said() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan {
        nights: 6,
        paths: 1,
        ..Plan::default()
    };
    let dirs = synthetic::write(&plan, dir.path()).unwrap();
    // Night 4 by another svmconf, night 6 on another profile.
    let edit = |d: &Path, f: &dyn Fn(&mut RunInfo)| {
        let p = d.join(crate::results::RUN_INFO_FILE);
        let mut info = RunInfo::read(&p).unwrap();
        f(&mut info);
        info.write(d).unwrap();
    };
    edit(&dirs[3], &|i| i.suite_version = "9.9.9".into());
    edit(&dirs[5], &|i| i.profile = "mi300x".into());
    let hs = history_of(dir.path());
    assert_eq!(hs.len(), 2, "one history per device");
    let sim = hs.iter().find(|h| h.key.profile == "sim").unwrap();
    assert_eq!(sim.nights.len(), 5);
    assert!(
        sim.notes.iter().any(|n| n.contains("-> 9.9.9 at night")),
        "{:?}",
        sim.notes
    );
}

#[test]
fn torn_empty_and_unfinished_nights_are_said_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan {
        nights: 3,
        paths: 1,
        ..Plan::default()
    };
    let dirs = synthetic::write(&plan, dir.path()).unwrap();
    let journal = |d: &Path| d.join(crate::results::JOURNAL_FILE);
    // Night 1: the last record torn in half.
    let text = std::fs::read_to_string(journal(&dirs[0])).unwrap();
    let cut = text.trim_end().rfind('\n').unwrap() + 30;
    std::fs::write(journal(&dirs[0]), &text[..cut]).unwrap();
    // Night 2: no case at all.
    std::fs::write(journal(&dirs[1]), "").unwrap();
    // Night 3: a case started and never ended.
    let mut t = std::fs::read_to_string(journal(&dirs[2])).unwrap();
    t.push_str(
        "{\"event\":\"start\",\"case\":\"vma::munmap::2MiB\",\"started\":\"2026-01-03T02:00:00Z\",\"attempt\":1}\n",
    );
    std::fs::write(journal(&dirs[2]), t).unwrap();
    let hs = history_of(dir.path());
    let h = &hs[0];
    assert_eq!(h.nights.len(), 3);
    assert_eq!(
        h.nights[0].seen.len(),
        3,
        "the torn record is left out, the rest kept"
    );
    let notes = h.notes.join("\n");
    assert!(notes.contains("torn line"), "{notes}");
    assert!(notes.contains("no case ended this night"), "{notes}");
    assert!(
        notes.contains("1 case(s) started and never ended (first: vma::munmap::2MiB)"),
        "{notes}"
    );
}

#[test]
fn bad_folders_are_named_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let e = load_nights(&[dir.path().join("nope")]).unwrap_err();
    assert!(e.contains("nope") && e.contains("no such folder"), "{e}");
    let e = load_nights(&[dir.path().to_path_buf()]).unwrap_err();
    assert!(e.contains("is not a run folder"), "{e}");
    let plan = Plan {
        nights: 1,
        paths: 1,
        ..Plan::default()
    };
    let dirs = synthetic::write(&plan, &dir.path().join("a")).unwrap();
    let e = load_nights(&[dirs[0].clone(), dirs[0].clone()]).unwrap_err();
    assert!(e.contains("are the same run"), "{e}");
    std::fs::write(dirs[0].join(crate::results::RUN_INFO_FILE), "{").unwrap();
    let e = load_nights(&[dirs[0].clone()]).unwrap_err();
    assert!(
        e.contains("run.json") && e.contains("not a run description"),
        "{e}"
    );
    std::fs::write(dirs[0].join(crate::results::JOURNAL_FILE), "garbage\n{}\n").unwrap();
}

#[test]
fn an_unwritable_out_folder_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let e = export::write_all(&file.join("out"), "", &[], &serde_json::json!({})).unwrap_err();
    assert!(e.contains("a-file"), "{e}");
}

#[test]
fn otava_csv_holds_each_nightly_median_with_its_direction() {
    let (_dir, hs) = made_up(&Plan {
        nights: 10,
        paths: 1,
        ..Plan::default()
    });
    let files = export::otava(&hs);
    let series = &hs[0].series;
    assert_eq!(files.len(), series.len() + 1);
    let (path, csv) = &files[0];
    assert!(
        path.starts_with("otava/sim-sim-made-up_nightly_device"),
        "{path:?}"
    );
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "time,run,kernel,svmconf,value");
    assert_eq!(lines.len(), series[0].points.len() + 1);
    let first: f64 = lines[1].rsplit(',').next().unwrap().parse().unwrap();
    assert_eq!(first, series[0].points[0].median);
    let (_, config) = files.last().unwrap();
    assert!(config.contains("direction: 1"), "GB/s: higher is better");
    assert_eq!(config.matches("type: csv").count(), series.len());
}

#[test]
fn kcidb_ids_paths_and_statuses_follow_the_schema_patterns() {
    let (_dir, hs) = made_up(&Plan {
        nights: 3,
        paths: 2,
        broken_at: Some(1),
        ..Plan::default()
    });
    let v = export::kcidb(&hs, "svmconf");
    assert_eq!(v["version"]["major"], 5);
    let id = regex::Regex::new(r"^[a-z0-9_]+:[^\x00]*$").unwrap();
    let path = regex::Regex::new(r"^([a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*)?$").unwrap();
    let tests = v["tests"].as_array().unwrap();
    assert_eq!(tests.len(), 3 * 8 * 2, "a test per case and one per figure");
    for t in tests {
        assert!(id.is_match(t["id"].as_str().unwrap()), "{t}");
        assert!(path.is_match(t["path"].as_str().unwrap()), "{t}");
        assert!(["FAIL", "PASS", "DONE"].contains(&t["status"].as_str().unwrap()));
    }
    assert!(tests.iter().any(|t| t["status"] == "FAIL"
        && t["log_excerpt"]
            .as_str()
            .unwrap()
            .contains("expected ^ actual")));
    assert_eq!(
        v["checkouts"].as_array().unwrap().len(),
        3,
        "one per kernel"
    );
    assert_eq!(v["builds"].as_array().unwrap().len(), 3, "one per night");
    for s in Status::ALL {
        assert!(
            ["FAIL", "ERROR", "MISS", "PASS", "DONE", "SKIP"].contains(&export::kcidb_status(s))
        );
    }
}

#[test]
fn the_report_is_one_page_with_a_plot_per_series_and_no_outside_reference() {
    let (_dir, hs) = made_up(&Plan {
        nights: 40,
        step_at: Some(20),
        broken_at: Some(30),
        ..Plan::default()
    });
    let page = html::report(&hs, &Detect::default());
    assert!(page.starts_with("<!DOCTYPE html>"));
    for outside in ["<script", "http://", "https://", "<link", "src="] {
        assert!(!page.contains(outside), "report.html holds `{outside}`");
    }
    let h = &hs[0];
    assert_eq!(
        page.matches("<svg class=\"series\"").count(),
        h.series.len()
    );
    let changes: usize = h.series.iter().map(|s| s.changes.len()).sum();
    assert!(changes >= 4);
    assert_eq!(page.matches("class=\"changepoint\"").count(), changes);
    assert_eq!(
        page.matches("<svg class=\"sweep\"").count(),
        8,
        "8 paths at 4 sizes"
    );
    assert!(page.contains("k = "));
    assert!(
        page.contains("Repro: <code>svmconf &#39;first_touch::gpu_written::managed::64KiB&#39;")
    );
    // Text from the runs is escaped.
    assert_eq!(
        html::esc("<a href=\"x\">&'"),
        "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
    );
}

#[test]
fn a_night_with_thousands_of_cases_loads() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan {
        nights: 2,
        paths: 1,
        ..Plan::default()
    };
    let dirs = synthetic::write(&plan, dir.path()).unwrap();
    let j = dirs[1].join(crate::results::JOURNAL_FILE);
    let line = std::fs::read_to_string(&j).unwrap();
    let one = line.lines().next().unwrap();
    let many: String = (0..5000)
        .map(|i| {
            one.replacen(
                "prefetch::round_trip::managed::64KiB",
                &format!("c{i}::64KiB"),
                1,
            ) + "\n"
        })
        .collect();
    std::fs::write(&j, many).unwrap();
    let hs = history_of(dir.path());
    assert_eq!(hs[0].nights[1].seen.len(), 5000);
    assert!(hs[0].cases.len() >= 5000);
}
