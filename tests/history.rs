//! The nightly lab's tools, driven as the lab drives them: `svmconf history` over a made-up
//! history (`history-demo`), read back by what reads it (Apache Otava on its CSV, kcidb-io's
//! schema validator on its KCIDB JSON, headless Chromium on report.html); `--bisect`'s exit
//! statuses and a real `git bisect run` over commits where a fault plan appears; the engine
//! files (GitLab CI, LAVA, systemd) checked by their engines' own schemas; and the LAVA
//! definition's reading of ktap.txt against the journal.
//!
//! Tools: apache-otava, kcidb-io and check-jsonschema from PyPI (`.ci/run` puts them in the
//! venv `target/pytools`), chromium, git, lava-common and systemd from Debian. Without them
//! these tests skip, and under `CI=true` they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{journal, needs, run_dir, svmconf, text, tools};

/// A made-up history under `root/nights` and its analysis under `root/history`.
fn demo(root: &Path, extra: &[&str]) -> (PathBuf, PathBuf, String) {
    let nights = root.join("nights");
    let mut args = vec!["history-demo"];
    args.extend_from_slice(extra);
    args.push(nights.to_str().unwrap_or_default());
    let out = svmconf(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let history = root.join("history");
    let out = svmconf(&[
        "history",
        "--out",
        history.to_str().unwrap_or_default(),
        nights.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    (nights, history, text(&out))
}

#[test]
fn history_over_the_command_line_names_what_changed_and_writes_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, history, said) = demo(
        tmp.path(),
        &["--nights", "40", "--step-at", "21", "--broken-at", "31"],
    );
    assert!(
        said.contains("first_touch::gpu_written::managed::64KiB         broken since 2026-01-31 02:00 (kernel 7.3.0-nightly031)"),
        "{said}"
    );
    assert!(
        said.contains("prefetch::round_trip::managed::2MiB"),
        "{said}"
    );
    assert!(
        said.contains("2026-01-21 02:00"),
        "the step's first night: {said}"
    );
    for f in ["report.html", "kcidb.json", "otava/otava.yaml"] {
        assert!(history.join(f).is_file(), "{f}");
    }
}

#[test]
fn bad_input_to_history_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    for args in [
        vec![
            "history",
            "--out",
            out.to_str().unwrap(),
            "/nonexistent/night",
        ],
        vec!["history", "--out", out.to_str().unwrap()],
        vec!["history", "--alpha", "2", tmp.path().to_str().unwrap()],
        vec!["history", "--frobnicate"],
        vec!["history-demo", "--nights", "0", out.to_str().unwrap()],
    ] {
        let o = svmconf(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("history"), "{}", text(&o));
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}

/// Apache Otava, on the CSV the history wrote, finds the planted step at the night svmconf
/// found it on every size of the stepped path, and nothing on the 4 series without one.
#[test]
fn otava_finds_the_change_point_svmconf_finds() {
    let Some(otava) = tools::pytool("otava") else {
        return needs::missing(
            "otava",
            "pip install apache-otava (.ci/run: target/pytools)",
        );
    };
    let tmp = tempfile::tempdir().unwrap();
    // The step at night 41; the made-up history's outlier night (31, every sample 3x slower)
    // is in both series and is no change point for either tool.
    let (_, history, said) = demo(
        tmp.path(),
        &["--nights", "60", "--step-at", "41", "--paths", "2"],
    );
    assert!(
        said.contains("prefetch::round_trip::managed::16MiB         migrate_gbps                   2026-02-10 02:00"),
        "svmconf's change point: {said}"
    );
    assert!(said.contains("4 change points"), "{said}");
    // Every series of the export, as otava.yaml names them.
    let config = std::fs::read_to_string(history.join("otava/otava.yaml")).unwrap();
    let names: Vec<&str> = config
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .collect();
    assert_eq!(names.len(), 8, "{config}");
    let out = Command::new(&otava)
        .args(["analyze", "--output", "json"])
        .args(&names)
        .env("OTAVA_CONFIG", history.join("otava/otava.yaml"))
        .current_dir(history.join("otava"))
        .output()
        .expect("otava runs");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // One JSON object per test, on a line each.
    let found: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("otava's JSON"))
        .collect();
    let changes = |name: &str| -> Vec<u64> {
        found
            .iter()
            .filter_map(|v| v.get(name))
            .flat_map(|v| v.as_array().cloned().unwrap_or_default())
            .flat_map(|cp| cp["changes"].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["index"].as_u64())
            .collect()
    };
    for name in &names {
        let got = changes(name);
        if name.contains("prefetch-round_trip") {
            // The step, where svmconf found it, on every size of the stepped path. Otava may
            // also split off the outlier night (index 30) as a segment of its own, where
            // svmconf's statistic cancels it: that and nothing else may come beside the step.
            assert!(got.contains(&40), "{name}: otava {got:?}: {stdout}");
            assert!(
                got.iter().all(|i| [30, 31, 40].contains(i)),
                "{name}: otava {got:?}"
            );
        } else {
            assert!(got.is_empty(), "{name}: otava on a flat series {got:?}");
        }
    }
}

#[test]
fn kcidb_io_validates_the_export() {
    let Some(python) = tools::python_with("kcidb_io") else {
        return needs::missing("kcidb-io", "pip install kcidb-io (.ci/run: target/pytools)");
    };
    let tmp = tempfile::tempdir().unwrap();
    let (_, history, _) = demo(tmp.path(), &["--nights", "5", "--broken-at", "3"]);
    let check = |file: &Path| {
        Command::new(&python)
            .args([
                "-c",
                "import json, sys, kcidb_io\n\
                 data = json.load(open(sys.argv[1]))\n\
                 kcidb_io.schema.LATEST.validate(data)\n\
                 print(len(data['tests']), 'tests valid against', kcidb_io.schema.LATEST)",
            ])
            .arg(file)
            .output()
            .expect("python runs")
    };
    let out = check(&history.join("kcidb.json"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("tests valid"), "{}", text(&out));
    // The validator is shown to refuse a test without an origin.
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(history.join("kcidb.json")).unwrap())
            .unwrap();
    v["tests"][0].as_object_mut().unwrap().remove("origin");
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, v.to_string()).unwrap();
    assert!(
        !check(&bad).status.success(),
        "kcidb-io accepted a test without origin"
    );
}

/// report.html in headless Chromium: a screenshot, and the page as Chromium built it, with a
/// plot per series, the change points and the verdict strips.
#[test]
fn chromium_renders_the_report() {
    let Some(chromium) = tools::chromium() else {
        return needs::missing("chromium", "Debian package chromium");
    };
    let tmp = tempfile::tempdir().unwrap();
    let (_, history, _) = demo(
        tmp.path(),
        &["--nights", "60", "--step-at", "31", "--broken-at", "41"],
    );
    let page = history.join("report.html");
    let url = format!("file://{}", page.display());
    let headless = |extra: &[&str]| {
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--window-size=1280,2400",
            ])
            .args(extra)
            .arg(&url)
            .output()
            .expect("chromium runs")
    };
    let png = tmp.path().join("report.png");
    let out = headless(&[&format!("--screenshot={}", png.display())]);
    assert!(out.status.success(), "{}", text(&out));
    let bytes = std::fs::read(&png).expect("a screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("SVMCONF_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&png, keep);
    }
    let out = headless(&["--dump-dom"]);
    assert!(out.status.success(), "{}", text(&out));
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<h1>svmconf history</h1>"), "{dom:.400}");
    assert_eq!(
        dom.matches("<svg class=\"series\"").count(),
        32,
        "a plot per series"
    );
    assert_eq!(
        dom.matches("<svg class=\"sweep\"").count(),
        8,
        "a sweep per path"
    );
    assert!(dom.matches("class=\"changepoint\"").count() >= 4);
    assert!(
        dom.contains("id=\"verdict-summary\">32 cases; "),
        "{dom:.2000}"
    );
    assert!(dom.contains("broken since 2026-02-10 02:00"));
    assert!(dom.contains("<rect class=\"fail\""));
}

/// A fault plan for the sim: a corrupt word on every prefetch to VRAM.
const CORRUPT_PREFETCH: &str = "\
description: a corrupt word on every prefetch to VRAM
catches: [prefetch::round_trip::managed::2MiB]
rules:
  - kind: corrupt
    trigger: prefetch
    direction: to_vram
    pages: first
    words: 1
";

/// `--bisect`: 0 good, 101 bad, 125 when nothing can be tested (every case skipped, a
/// preflight mismatch), 255 for bad input, which ends a bisect instead of marking a commit.
#[test]
fn bisect_exit_statuses_are_what_git_bisect_run_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("r");
    let r = results.to_str().unwrap();
    let case = ["prefetch::round_trip::managed::2MiB", "--exact"];
    let code = |extra: &[&str]| {
        let mut args = vec!["--bisect", "--results", r];
        args.extend_from_slice(extra);
        let o = svmconf(&args);
        (o.status.code(), text(&o))
    };
    assert_eq!(code(&case).0, Some(0));
    let plan = tmp.path().join("faults.yaml");
    std::fs::write(&plan, CORRUPT_PREFETCH).unwrap();
    let mut broken = case.to_vec();
    broken.extend(["--sim-faults", plan.to_str().unwrap()]);
    let (c, said) = code(&broken);
    assert_eq!(c, Some(101), "{said}");
    // dmirror without its driver: every case skips.
    let mut absent = case.to_vec();
    absent.extend([
        "--backend",
        "dmirror",
        "--device",
        "/nonexistent/hmm_dmirror9",
    ]);
    let (c, said) = code(&absent);
    assert_eq!(c, Some(125), "{said}");
    assert!(
        said.contains("cannot test this kernel here, exit 125"),
        "{said}"
    );
    let (c, said) = code(&["--no-such-flag"]);
    assert_eq!(c, Some(255), "{said}");
    let (c, _) = code(&["--profile", "/nonexistent.yaml"]);
    assert_eq!(c, Some(255));
    // Without --bisect, the same stay as they were: 0 on all-skip, 2 on bad input.
    let o = svmconf(&[&["--results", r][..], &absent[..]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(svmconf(&["--no-such-flag"]).status.code(), Some(2));
}

#[test]
fn bisect_on_a_preflight_mismatch_skips_the_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let wrong = common::profile_for_another_kernel(tmp.path());
    let o = svmconf(&[
        "--bisect",
        "--profile",
        wrong.to_str().unwrap(),
        "--results",
        tmp.path().join("r").to_str().unwrap(),
        "prefetch::partial::2MiB",
    ]);
    assert_eq!(o.status.code(), Some(125), "{}", text(&o));
    assert!(text(&o).contains("preflight:"), "{}", text(&o));
}

/// `git bisect run` over 12 made-up commits of a "kernel" whose fault plan appears at commit
/// 8 (1-based) and one commit, 5, that cannot be tested (its backend has no device): svmconf
/// `--bisect` steers it to commit 8.
#[test]
fn git_bisect_run_finds_the_commit_where_the_fault_appears() {
    if Command::new("git").arg("--version").output().is_err() {
        return needs::missing("git", "Debian package git");
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("tree");
    std::fs::create_dir_all(&repo).unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git")
            .args([
                "-c",
                "user.name=svmconf",
                "-c",
                "user.email=svmconf@example.org",
            ])
            .args(args)
            .current_dir(&repo)
            .output()
            .expect("git runs");
        assert!(o.status.success(), "git {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    git(&["init", "-q"]);
    let plan = CORRUPT_PREFETCH;
    for i in 1..=12 {
        std::fs::write(repo.join("version"), format!("{i}\n")).unwrap();
        std::fs::write(
            repo.join("backend"),
            if i == 5 { "dmirror\n" } else { "sim\n" },
        )
        .unwrap();
        if i >= 8 {
            std::fs::write(repo.join("faults.yaml"), plan).unwrap();
            git(&["add", "faults.yaml"]);
        }
        git(&["add", "version", "backend"]);
        git(&["commit", "-q", "-m", &format!("commit {i}")]);
    }
    let first = git(&["rev-list", "--max-parents=0", "HEAD"]);
    git(&["bisect", "start", "HEAD", first.trim()]);
    // What a lab's script does: test the kernel this commit built, here the sim with the
    // commit's fault plan (the "defect") and backend.
    let script = format!(
        "cd {root} && exec {bin} --bisect --results {repo}/../results --backend \"$(cat {repo}/backend)\" \
         $(grep -q dmirror {repo}/backend && echo --device /nonexistent/hmm_dmirror9) \
         $(test -f {repo}/faults.yaml && echo --sim-faults {repo}/faults.yaml) \
         prefetch::round_trip::managed::2MiB --exact",
        root = env!("CARGO_MANIFEST_DIR"),
        bin = env!("CARGO_BIN_EXE_svmconf"),
        repo = repo.display()
    );
    let out = git(&["bisect", "run", "sh", "-c", &script]);
    assert!(
        out.contains("is the first bad commit") && out.contains("commit 8"),
        "{out}"
    );
    git(&["bisect", "reset"]);
}

/// The LAVA definition's reading of ktap.txt (lab/engines/lava/ktap-cases) gives each case of
/// the journal once, with its verdict.
#[test]
fn lava_test_cases_from_ktap_match_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let results = tmp.path().join("r");
    let o = svmconf(&[
        "--results",
        results.to_str().unwrap(),
        "--sim-break",
        "corrupt-migrate-to-ram",
        "2MiB",
    ]);
    assert_eq!(o.status.code(), Some(101), "{}", text(&o));
    let dir = run_dir(&results);
    let awk = Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/engines/lava/ktap-cases");
    let o = Command::new(&awk)
        .arg(dir.join("ktap.txt"))
        .output()
        .expect("awk runs");
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let records = journal(&dir);
    assert_eq!(lines.len(), records.len(), "{lines:?}");
    let name_ok = regex_lite(&lines);
    assert!(name_ok, "names LAVA takes: {lines:?}");
    for r in &records {
        let name = r["case"]
            .as_str()
            .unwrap()
            .replace("::", ".")
            .replace(['+', '/'], "_");
        let want = match r["status"].as_str().unwrap() {
            "skip" => "skip",
            "pass" => "pass",
            _ => "fail",
        };
        assert!(
            lines.contains(&format!("{name} {want}")),
            "{name} {want} not in {lines:?}"
        );
    }
}

fn regex_lite(lines: &[String]) -> bool {
    lines.iter().all(|l| {
        let mut parts = l.split(' ');
        let (Some(name), Some(result), None) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && ["pass", "fail", "skip"].contains(&result)
    })
}

/// The engine files, checked by lab/engines/check (GitLab's schema, LAVA's schemas, systemd).
#[test]
fn engine_files_pass_their_engines_checks() {
    let Some(cj) = tools::pytool("check-jsonschema") else {
        return needs::missing(
            "check-jsonschema",
            "pip install check-jsonschema (.ci/run: target/pytools)",
        );
    };
    let lava = Command::new("/usr/bin/python3")
        .args(["-c", "import lava_common.schemas, yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !lava {
        return needs::missing("lava_common", "Debian package lava-common");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        return needs::missing("systemd-analyze", "Debian package systemd");
    }
    let bin = cj.parent().map(Path::to_path_buf).unwrap_or_default();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/engines/check"))
        .env("PATH", path)
        .output()
        .expect("the check runs");
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    for line in [
        "each checker refuses a broken copy",
        "gitlab-ci.yml: valid",
        "lava/svmconf.yaml: valid",
        "lava/job.yaml: valid",
        "valid (systemd-analyze verify)",
    ] {
        assert!(said.contains(line), "{said}");
    }
}

/// The across-nights rows of `svmconf sensitivity` at the noise a history measured.
#[test]
fn sensitivity_reads_across_nights_at_a_given_noise() {
    let o = svmconf(&["sensitivity", "--trials", "40", "--night-cv", "0.03"]);
    let said = text(&o);
    assert!(
        said.contains("| 3% | 3 |") && said.contains("| 3% | 10 |"),
        "{said}"
    );
    assert!(!said.contains("| 2% |"), "{said}");
    let o = svmconf(&["sensitivity", "--night-cv", "1.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--night-cv"));
}
