//! The binary as its users drive it: a whole run and its results folder, --list, --exact, and
//! bad input, each checked from the outside (exit status, files, messages).

mod common;

use common::{journal, record, run_dir, svmconf, text};
use rstest::rstest;

/// One whole run on the reference device; the results folder is complete, JUnit parses back and
/// agrees with the journal case by case, and every case passed or skipped with a reason.
#[test]
fn a_whole_run_leaves_a_complete_results_folder_and_junit_that_agrees_with_the_journal() {
    let results = tempfile::tempdir().expect("a temporary folder");
    let out = svmconf(&["--results", results.path().to_str().unwrap_or_default()]);
    assert!(out.status.success(), "{}", text(&out));
    let dir = run_dir(results.path());
    for file in [
        "run.json",
        "journal.jsonl",
        "junit.xml",
        "summary.md",
        "ktap.txt",
    ] {
        assert!(dir.join(file).is_file(), "{file} in {}", dir.display());
    }

    let records = journal(&dir);
    assert!(records.len() >= 60, "{} cases", records.len());
    for r in &records {
        let status = r["status"].as_str().unwrap_or_default();
        assert!(
            status == "pass" || status == "skip",
            "{}: {status}: {}",
            r["case"],
            r["reason"]
        );
        if status == "skip" {
            assert!(
                !r["reason"].as_str().unwrap_or_default().is_empty(),
                "{} skipped without a reason",
                r["case"]
            );
        }
    }

    let xml = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml is readable");
    let doc = roxmltree::Document::parse(&xml).expect("junit.xml is well-formed XML");
    let cases: Vec<roxmltree::Node> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(
        cases.len(),
        records.len(),
        "one testcase per journal record"
    );
    for case in cases {
        let name = case.attribute("name").expect("a testcase has a name");
        let r = record(&records, name);
        let skipped = case.children().find(|n| n.has_tag_name("skipped"));
        assert_eq!(
            skipped.is_some(),
            r["status"] == "skip",
            "{name}: skipped element vs journal"
        );
        if let Some(s) = skipped {
            // The reason is the element's text, what GitLab and Jenkins show, with the repro.
            let shown = s.text().unwrap_or_default();
            assert_eq!(
                shown.lines().next(),
                r["reason"].as_str(),
                "{name}: skip reason"
            );
            assert!(
                shown.contains(&format!(
                    "repeat with: {}",
                    r["repro"].as_str().unwrap_or("?")
                )),
                "{name}: {shown}"
            );
        }
        assert!(
            case.children()
                .all(|n| !n.has_tag_name("failure") && !n.has_tag_name("error")),
            "{name}"
        );
        let time: f64 = case
            .attribute("time")
            .and_then(|t| t.parse().ok())
            .expect("a numeric time");
        let journal_time = r["duration_s"].as_f64().unwrap_or(-1.0);
        assert!(
            (time - journal_time).abs() < 1e-3,
            "{name}: time {time} vs journal {journal_time}"
        );
        let out = case
            .children()
            .find(|n| n.has_tag_name("system-out"))
            .and_then(|n| n.text())
            .unwrap_or_default();
        assert!(
            out.contains(r["repro"].as_str().unwrap_or("?")),
            "{name}: system-out holds the repro command: {out}"
        );
    }
    let passed_with_metrics = records
        .iter()
        .filter(|r| r["metrics"].as_array().is_some_and(|m| !m.is_empty()))
        .count();
    assert!(passed_with_metrics > 10, "timed cases record metrics");

    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap_or_default())
            .expect("run.json is JSON");
    for field in [
        "host",
        "kernel_release",
        "backend",
        "device",
        "profile",
        "seed",
        "command_line",
        "suite_version",
        "finished",
    ] {
        assert!(!run[field].is_null(), "run.json has {field}");
    }
    let digests = run["fixtures"].as_array().expect("fixture digests");
    assert_eq!(digests.len(), 3, "profile, case matrix and expectations");
    assert!(digests
        .iter()
        .all(|d| d["sha256"].as_str().is_some_and(|h| h.len() == 64)));
}

/// What nextest asks of a test binary: a terse list (and the ignored ones, none here), then
/// one case by name, in a process of its own, with its verdict in the exit status.
#[test]
fn nextest_can_list_and_run_one_case() {
    let out = svmconf(&["--list", "--format", "terse"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.lines().all(|l| l.ends_with(": test")), "{listed}");
    let out = svmconf(&["--list", "--format", "terse", "--ignored"]);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );

    let results = tempfile::tempdir().expect("a temporary folder");
    let one = listed
        .lines()
        .next()
        .and_then(|l| l.strip_suffix(": test"))
        .unwrap_or_default();
    let out = svmconf(&[
        "--results",
        results.path().to_str().unwrap_or_default(),
        one,
        "--exact",
        "--nocapture",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(journal(&run_dir(results.path())).len(), 1);
}

#[test]
fn list_names_at_least_sixty_cases_covering_every_path() {
    let out = svmconf(&["--list"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .collect();
    assert!(names.len() >= 60, "{} cases listed", names.len());
    for path in [
        "first_touch",
        "prefetch",
        "cpu_fault",
        "fault_storm",
        "ttm_eviction",
        "gpu_reset",
        "vma",
        "multi_gpu",
    ] {
        assert!(
            names.iter().any(|n| n.starts_with(&format!("{path}::"))),
            "no {path} case in --list"
        );
    }
    for size in ["4KiB", "64KiB", "2MiB", "2MiB+4KiB", "64MiB", "vram/4"] {
        assert!(
            names.iter().any(|n| n.ends_with(&format!("::{size}"))),
            "no case of size {size}"
        );
    }
}

/// A case run alone with --exact gets the verdict, evidence and figures it got in a whole run.
#[rstest]
#[case::timed_pass("prefetch::round_trip::managed::2MiB+4KiB", &[])]
#[case::skip("gpu_reset::holder_ends::2MiB", &[])]
#[case::failure("cpu_fault::read::managed::2MiB", &["--sim-break", "corrupt-migrate-to-ram"])]
fn exact_repeats_a_case_with_the_same_verdict(#[case] name: &str, #[case] extra: &[&str]) {
    let run = |filter: Option<&str>| {
        let results = tempfile::tempdir().expect("a temporary folder");
        let mut args = vec!["--results", results.path().to_str().unwrap_or_default()];
        args.extend_from_slice(extra);
        match filter {
            Some(f) => args.extend([f, "--exact"]),
            None => args.push(name.split("::").next().unwrap_or_default()),
        }
        let out = svmconf(&args);
        let records = journal(&run_dir(results.path()));
        (out.status.code(), records)
    };
    let (_, whole) = run(None);
    let (code, alone) = run(Some(name));
    assert_eq!(alone.len(), 1, "--exact runs only {name}");
    let (a, b) = (record(&whole, name), &alone[0]);
    for field in ["status", "reason", "seed", "metrics", "evidence", "repro"] {
        assert_eq!(a[field], b[field], "{name}: {field}");
    }
    assert_eq!(code, Some(if b["status"] == "fail" { 101 } else { 0 }));
}

/// Each bad input: exit status 2, a message naming what and where, no results folder left.
#[rstest]
#[case::unknown_backend(&["--backend", "cuda"], "--backend: unknown backend `cuda` (known: auto, sim, hip, dmirror, vsvm)")]
#[case::unknown_profile(&["--profile", "mi250"], "--profile mi250: no profile named `mi250` in `fixtures/profiles` (available: dmirror, dmirror-6.12, mi300x, mi60, sim, vsvm)")]
#[case::profile_without_sim_model(&["--profile", "mi300x"], "profile `mi300x` has no `sim:` cost model")]
#[case::bad_seed(&["--seed", "many"], "--seed: expected a non-negative integer, got `many`")]
#[case::unknown_break(&["--sim-break", "melt"], "melt")]
#[case::filter_matches_nothing(&["no_such_case"], "the filter `no_such_case` matches no case")]
#[case::exact_matches_nothing(&["prefetch::round_trip", "--exact"], "matches no case")]
#[case::shard_past_the_count(&["--shard", "4/3"], "--shard: ")]
#[case::shard_not_a_fraction(&["--shard", "two"], "--shard: ")]
#[case::unknown_isolation(&["--isolate", "vm"], "--isolate: unknown isolation `vm` (known: process, none)")]
#[case::zero_repeat(&["--repeat", "0"], "--repeat: expected a count, got `0`")]
#[case::missing_value(&["--seed"], "--seed: expected a value")]
#[case::unknown_flag(&["--bogus"], "unexpected argument '--bogus' found")]
#[case::two_filters(&["prefetch", "cpu_fault"], "unexpected argument 'cpu_fault' found")]
#[case::missing_fixtures(
    &["--fixtures", "/nonexistent/fixtures"],
    "error: --fixtures /nonexistent/fixtures: no such folder"
)]
fn bad_input_is_named_and_leaves_nothing(#[case] args: &[&str], #[case] message: &str) {
    let results = tempfile::tempdir().expect("a temporary folder");
    let folder = results.path().join("results");
    let mut all = vec!["--results", folder.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    let out = svmconf(&all);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(message),
        "expected `{message}` in: {}",
        text(&out)
    );
    assert!(!folder.exists(), "nothing is created on bad input");
}

/// `--sim-break help`, which `--help` points to, lists every break with what it does.
#[test]
fn sim_break_help_lists_the_breaks() {
    for args in [&["--sim-break", "help"][..], &["--sim-break=help"]] {
        let out = svmconf(args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        for name in ["corrupt-migrate-to-ram", "storm-hang", "silent-events"] {
            assert!(
                said.lines()
                    .any(|l| l.trim_start().starts_with(name) && l.len() > name.len() + 10),
                "{name} with its description in: {said}"
            );
        }
    }
    let help = text(&svmconf(&["--help"]));
    assert!(help.contains("(see --sim-break help)"), "{help}");
}

/// `--help` is clap's: svmconf's options (each in the README's tables), libtest's, the
/// subcommands; `-h` too, a line an option.
#[test]
fn help_is_generated_and_lists_every_option() {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README.md is readable");
    // `| `--backend auto\|sim...` | ... |` and `| `--kmsg FILE`, `--tainted FILE` | ... |`
    let documented: Vec<String> = readme
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .flat_map(|l| l.split('|').nth(1).unwrap_or_default().split(", "))
        .filter_map(|cell| {
            let flag = cell.trim().trim_start_matches('`');
            let flag = flag.split([' ', '`', '\\']).next().unwrap_or_default();
            flag.starts_with("--").then(|| flag.to_string())
        })
        .collect();
    assert!(documented.len() >= 25, "{documented:?}");
    for help in ["--help", "-h"] {
        let out = svmconf(&[help]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(said.starts_with("svmconf: conformance suite"), "{said}");
        assert!(said.contains("Usage: svmconf [OPTIONS] [FILTER]"), "{said}");
        for flag in &documented {
            // The flag itself, not a longer one it begins.
            let whole = said.match_indices(flag.as_str()).any(|(at, _)| {
                !said[at + flag.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '-')
            });
            assert!(whole, "{help}: {flag} in {said}");
        }
        for other in [
            "--sim-faults <FILE>",
            "--amdgpu-trace",
            "--runner-selftest",
            "--list",
            "--exact",
            "--skip <FILTER>",
            "--ignored",
            "--include-ignored",
            "--format <pretty|terse|json>",
            "-q, --quiet",
            "[FILTER]",
            "svmconf merge OUT RUN_DIR...",
            "svmconf kill-matrix [--faults DIR] [--keep DIR] [-- RUN OPTIONS]",
            "svmconf sensitivity",
            "svmconf scaling",
            "svmconf seeds",
        ] {
            assert!(said.contains(other), "{help}: {other} in {said}");
        }
        for internal in ["--child-verdict", "--device-server"] {
            assert!(!said.contains(internal), "{help}: {internal} in {said}");
        }
    }
    // --help says everything: defaults and where values come from.
    let long = String::from_utf8_lossy(&svmconf(&["--help"]).stdout).to_string();
    for detail in [
        "default auto: a GPU when one is found, else the vsvm render node",
        "CONFIG_TEST_HMM",
        "CONFIG_DRM_VSVM",
        "(default 1)",
        "(default 10)",
        "(default 10%)",
        "(default 0.01)",
        "10 with --baseline",
    ] {
        assert!(long.contains(detail), "{detail} in {long}");
    }
}

/// A mistyped flag is bad input that names the flag meant: one of svmconf's, not the libtest
/// flag nearest in spelling, never an internal one.
#[rstest]
#[case::svmconf_flag(&["--isolat", "process"], "--isolate")]
#[case::inline_value(&["--backnd=sim"], "--backend")]
#[case::libtest_flag(&["--exct"], "--exact")]
#[case::not_the_device_server(&["--device-serve"], "--device")]
fn a_misspelled_flag_suggests_the_flag_meant(#[case] args: &[&str], #[case] meant: &str) {
    let results = tempfile::tempdir().expect("a temporary folder");
    let folder = results.path().join("results");
    let mut all = vec!["--results", folder.to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    let out = svmconf(&all);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!(
            "unexpected argument '{}' found",
            args[0].split('=').next().unwrap_or_default()
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("tip: a similar argument exists: '{meant}'")),
        "{said}"
    );
    assert!(!said.contains("--device-server"), "{said}");
    assert!(!folder.exists(), "nothing is created on bad input");
}

/// An argument that is not UTF-8 is bad input named as it is, not a panic (101).
#[test]
fn an_argument_that_is_not_utf8_is_named_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let results = tempfile::tempdir().expect("a temporary folder");
    for bad in [&b"caf\xe9"[..], &b"--results=caf\xe9"[..]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_svmconf"))
            .arg("--list")
            .arg(std::ffi::OsStr::from_bytes(bad))
            .current_dir(results.path())
            .output()
            .expect("the svmconf binary runs");
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{said}");
        let shown = String::from_utf8_lossy(bad).replace('\u{fffd}', "\\xE9");
        assert!(
            said.contains(&format!(
                "svmconf: error: argument \"{shown}\" is not valid UTF-8"
            )),
            "{said}"
        );
        assert!(!said.contains("panicked"), "{said}");
        assert!(out.stdout.is_empty(), "nothing listed: {said}");
    }
    assert_eq!(
        std::fs::read_dir(results.path())
            .map(|d| d.count())
            .unwrap_or(1),
        0,
        "nothing is created on bad input"
    );
}

/// `svmconf --list | head`: the reader stops reading, and the listing ends there, exit 0, with no
/// panic on standard error.
#[test]
fn a_listing_whose_reader_goes_away_ends_quietly() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_svmconf"))
        .arg("--list")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("svmconf starts");
    // Closed before svmconf has loaded its fixtures: its first line meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("svmconf ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
}

/// A developer repeating a passing case sees what it checked: its evidence and metrics, on
/// standard output, when the run is that one case or with --nocapture; a run of many cases
/// without --nocapture keeps to libtest's lines.
#[rstest]
#[case::one_case(&["prefetch::round_trip::managed::2MiB", "--exact"], true)]
#[case::nocapture(&["prefetch::round_trip::managed", "--nocapture"], true)]
#[case::many_cases(&["prefetch::round_trip::managed"], false)]
fn a_passing_case_shows_its_evidence_to_a_developer(#[case] args: &[&str], #[case] shown: bool) {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let mut all = vec!["--results", tmp.path().to_str().unwrap_or_default()];
    all.extend_from_slice(args);
    let out = svmconf(&all);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let block = stdout.contains("---- prefetch::round_trip::managed::2MiB ----\npass\n")
        && stdout.contains("  evidence: prefetch to system: all 512 pages in system")
        && stdout.contains("  metric: prefetch_to_vram_gbps = ")
        && stdout.contains("  repeat with: ");
    assert_eq!(block, shown, "{stdout}");
}

/// `--format json` is a stream a machine reads on standard output: every line of it is one JSON
/// event, svmconf's own lines (the banner, the repro commands, the results folder) go to
/// standard error, failures included.
#[test]
fn format_json_leaves_standard_output_to_json_alone() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let out = svmconf(&[
        "--results",
        tmp.path().to_str().unwrap_or_default(),
        "--format",
        "json",
        "--sim-break",
        "corrupt-migrate-to-ram",
        "cpu_fault::read::managed",
    ]);
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut events = 0;
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON event ({e}): {line}\nin:\n{stdout}"));
        assert!(event.get("type").is_some(), "{line}");
        events += 1;
    }
    assert!(events >= 4, "a suite and its tests: {stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for own in [
        "svmconf: running",
        "each repeats with:",
        "svmconf: results in",
    ] {
        assert!(stderr.contains(own), "`{own}` on standard error: {stderr}");
    }
}

#[test]
fn an_unwritable_results_folder_is_named_and_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a folder").expect("write a file");
    let under_file = file.join("results");
    let out = svmconf(&[
        "--results",
        under_file.to_str().unwrap_or_default(),
        "prefetch::partial",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    assert!(
        msg.contains("cannot create results folder") && msg.contains("a-file"),
        "{msg}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap_or_default(),
        "not a folder"
    );
    assert_eq!(
        std::fs::read_dir(tmp.path())
            .map(|d| d.count())
            .unwrap_or(0),
        1,
        "nothing else was created"
    );
}

/// A --junit or --ktap copy that cannot be written is refused before the run: no run folder
/// left without its summary and KTAP, no verdict hidden behind a late error.
#[rstest]
#[case::junit_under_a_file("--junit", "a-file/junit.xml", "not a directory")]
#[case::junit_in_a_missing_folder("--junit", "missing/junit.xml", "no such file or directory")]
#[case::ktap_onto_a_folder("--ktap", "a-folder", "a folder is there, a file is to be written")]
fn an_unwritable_report_copy_is_refused_before_the_run(
    #[case] flag: &str,
    #[case] target: &str,
    #[case] why: &str,
) {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(tmp.path().join("a-file"), "not a folder").expect("write a file");
    std::fs::create_dir(tmp.path().join("a-folder")).expect("make a folder");
    let results = tmp.path().join("results");
    let target = tmp.path().join(target);
    let out = svmconf(&[
        "--results",
        results.to_str().unwrap_or_default(),
        flag,
        target.to_str().unwrap_or_default(),
        "prefetch::partial",
    ]);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(2), "{msg}");
    assert!(
        msg.contains(&format!(
            "{flag}: cannot write `{}`: {why}",
            target.display()
        )),
        "{msg}"
    );
    assert!(!results.exists(), "no run folder: {msg}");
    let mut left: Vec<_> = std::fs::read_dir(tmp.path())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    left.sort();
    assert_eq!(left, ["a-file", "a-folder"], "nothing else was created");
}

/// Malformed or unknown YAML in the fixtures: the message names file, line, column and field.
#[rstest]
#[case::unknown_key(
    "cases.yaml",
    "  - name: prefetch::partial\n",
    "  - name: prefetch::partial\n    sizez: [2MiB]\n",
    "cases.yaml:",
    "unknown field `sizez`"
)]
#[case::not_yaml("cases.yaml", "cases:\n", "cases: [unclosed\n", "cases.yaml:", "")]
#[case::unknown_size(
    "cases.yaml",
    "    sizes: [2MiB, 64MiB]\n    with: {threads: 4}",
    "    sizes: [2MiB, 3MiB]\n    with: {threads: 4}",
    "cases.yaml:",
    "unknown size `3MiB`"
)]
#[case::expectation_without_reason(
    "expectations/sim.yaml",
    "fail: []",
    "fail:\n  - case: prefetch::partial::2MiB\n",
    "expectations/sim.yaml:",
    "reason"
)]
#[case::expectation_bad_pattern(
    "expectations/sim.yaml",
    "fail: []",
    "fail:\n  - pattern: \"prefetch::(\"\n    reason: a broken regex\n",
    "expectations/sim.yaml:",
    "prefetch::("
)]
#[case::unknown_body(
    "cases.yaml",
    "  - name: prefetch::partial\n",
    "  - name: prefetch::partial\n    body: prefetch::partal\n",
    "cases.yaml:",
    "case `prefetch::partial` names body `prefetch::partal`, which no suite registers"
)]
#[case::parameter_a_word(
    "cases.yaml",
    "with: {rounds: 8}",
    "with: {rounds: eight}",
    "cases.yaml:",
    "`rounds` is a whole number from 1 to 10000, not `eight`; in case `prefetch::rounds`"
)]
#[case::parameter_unknown(
    "cases.yaml",
    "with: {rounds: 8}",
    "with: {rounds: 8, round: 8}",
    "cases.yaml:",
    "unknown parameter `round`; the body takes `rounds`"
)]
#[case::parameter_to_a_body_without_any(
    "cases.yaml",
    "  - name: prefetch::racing_kernel\n",
    "  - name: prefetch::racing_kernel\n    with: {threads: 2}\n",
    "cases.yaml:",
    "unknown parameter `threads`: this case's body takes no parameters"
)]
#[case::no_threads(
    "cases.yaml",
    "with: {threads: 4}",
    "with: {threads: 0}",
    "cases.yaml:",
    "`threads` is a whole number from 1 to 1024, not `0`"
)]
#[case::negative_fraction(
    "cases.yaml",
    "with: {evict_fraction: 0.5}",
    "with: {evict_fraction: -1.0}",
    "cases.yaml:",
    "`evict_fraction` is a number above 0 and at most 1, not `-1.0`"
)]
#[case::page_past_the_allocation(
    "cases.yaml",
    "with: {first_page: 1, pages: 510}",
    "with: {first_page: 1, pages: 513}",
    "cases.yaml:",
    "a span of 513 pages from page 1 ends past the allocation's 513 pages"
)]
#[case::no_oversubscription(
    "cases.yaml",
    "with: {fraction: 1.125}",
    "with: {fraction: 0.5}",
    "cases.yaml:",
    "do not oversubscribe it"
)]
#[case::profile_typo(
    "profiles/sim.yaml",
    "vram_bytes:",
    "vram_byts:",
    "profiles/sim.yaml:",
    "unknown field `vram_byts`"
)]
fn malformed_fixtures_are_named_by_file_line_and_field(
    #[case] file: &str,
    #[case] from: &str,
    #[case] to: &str,
    #[case] place: &str,
    #[case] what: &str,
) {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let fixtures = tmp.path().join("fixtures");
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        &fixtures,
    );
    let path = fixtures.join(file);
    let original = std::fs::read_to_string(&path).expect("the fixture exists");
    assert!(original.contains(from), "{file} holds `{from}`");
    std::fs::write(&path, original.replacen(from, to, 1)).expect("write the broken fixture");

    let folder = tmp.path().join("results");
    let out = svmconf(&[
        "--fixtures",
        fixtures.to_str().unwrap_or_default(),
        "--results",
        folder.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let msg = text(&out);
    let located = msg.lines().any(|l| {
        l.contains(place)
            && l.split(place)
                .nth(1)
                .is_some_and(|rest| rest.chars().next().is_some_and(|c| c.is_ascii_digit()))
    });
    assert!(located, "file:line in: {msg}");
    assert!(msg.contains(what), "`{what}` in: {msg}");
    assert!(!folder.exists(), "nothing is created on bad input");
}

/// A body that no case runs is a case nobody can run: the plan refuses it, naming the body and
/// the file where a case for it belongs.
#[test]
fn a_body_no_case_runs_is_refused() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let fixtures = tmp.path().join("fixtures");
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        &fixtures,
    );
    let path = fixtures.join("cases.yaml");
    let original = std::fs::read_to_string(&path).expect("the fixture exists");
    let from = "  - name: prefetch::already_resident\n";
    assert!(original.contains(from));
    let to = "  - name: prefetch::already_resident\n    body: prefetch::round_trip\n";
    std::fs::write(&path, original.replacen(from, to, 1)).expect("write the fixture");
    let folder = tmp.path().join("results");
    let out = svmconf(&[
        "--fixtures",
        fixtures.to_str().unwrap_or_default(),
        "--results",
        folder.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("cases.yaml: no case runs the bodies prefetch::already_resident"),
        "{}",
        text(&out)
    );
    assert!(!folder.exists(), "nothing is created on bad input");
}

/// Known failures are data: a listed failure keeps the run green, a listed case that passes
/// turns it red, a skip-listed case is not run; the exit status follows only the unexpected.
#[test]
fn expectations_decide_what_is_unexpected() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let fixtures = tmp.path().join("fixtures");
    copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        &fixtures,
    );
    let broken = "cpu_fault::read::managed::2MiB";
    let healthy = "prefetch::partial::2MiB";
    let skipped = "prefetch::partial::64MiB";
    let write = |fail: &str| {
        std::fs::write(
            fixtures.join("expectations/sim.yaml"),
            format!(
                "fail:\n  - case: {fail}\n    reason: LAB-1\nskip:\n  - case: {skipped}\n    \
                 reason: LAB-2\n"
            ),
        )
        .expect("write the expectations");
    };
    let run = |results: &str, args: &[&str]| {
        let folder = tmp.path().join(results);
        let mut all = vec![
            "--fixtures",
            fixtures.to_str().unwrap_or_default(),
            "--results",
            folder.to_str().unwrap_or_default(),
        ];
        all.extend_from_slice(args);
        let out = svmconf(&all);
        (out, journal(&run_dir(&folder)))
    };
    // A migrate-to-ram that corrupts a word fails the CPU-fault case: listed, it is expected.
    write(broken);
    let (out, records) = run(
        "r1",
        &["--sim-break", "corrupt-migrate-to-ram", broken, "--exact"],
    );
    assert_eq!(records[0]["status"], "expected_fail", "{}", text(&out));
    assert_eq!(records[0]["expectation"]["observed"], "fail");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // A listed case that passes is an unexpected pass, and the run is red.
    write(healthy);
    let (out, records) = run("r2", &["prefetch::partial::"]);
    assert_eq!(
        common::record(&records, healthy)["status"],
        "unexpected_pass"
    );
    assert_eq!(common::record(&records, skipped)["status"], "skip");
    assert!(common::record(&records, skipped)["reason"]
        .as_str()
        .unwrap_or_default()
        .contains("LAB-2"));
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
}

/// The profile's bound on system memory holds: eviction cases that would need more skip and
/// say how much they needed; under a generous bound they run.
#[test]
fn eviction_cases_skip_rather_than_exceed_the_profiles_system_memory() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let sim = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/profiles/sim.yaml");
    let text_of = std::fs::read_to_string(&sim).expect("the sim profile");
    let run = |name: &str, bound: u64| {
        // The profile's name must match its file's.
        let profile = tmp.path().join(name).join("sim.yaml");
        std::fs::create_dir_all(tmp.path().join(name)).expect("a folder for the profile");
        let bounded = text_of.replacen(
            "limits:\n",
            &format!("limits:\n  system_memory_bytes: {bound}\n"),
            1,
        );
        assert_ne!(bounded, text_of, "the sim profile has a limits section");
        std::fs::write(&profile, bounded).expect("write the profile");
        let folder = tmp.path().join(name).join("results");
        let out = svmconf(&[
            "--profile",
            profile.to_str().unwrap_or_default(),
            "--results",
            folder.to_str().unwrap_or_default(),
            "ttm_eviction::",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        journal(&run_dir(&folder))
    };
    let tight = run("tight", 64 << 20);
    let oversubscribe = record(&tight, "ttm_eviction::oversubscribe::8MiB");
    assert_eq!(oversubscribe["status"], "skip");
    let reason = oversubscribe["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("allows 67108864 (limits.system_memory_bytes)"),
        "{reason}"
    );
    // 2 MiB and its evicted half fit in 64 MiB: that one still runs.
    assert_eq!(
        record(&tight, "ttm_eviction::device_buffers::2MiB")["status"],
        "pass"
    );
    let roomy = run("roomy", 8 << 30);
    for r in &roomy {
        assert_eq!(r["status"], "pass", "{}: {}", r["case"], r["reason"]);
    }
}

/// A device that is not what its profile expects is stopped before anything runs, with every
/// difference named; `--no-preflight` runs it anyway.
#[test]
fn preflight_stops_a_run_on_the_wrong_device() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let wrong = common::profile_for_another_kernel(tmp.path());
    let folder = tmp.path().join("results");
    let args = [
        "--profile",
        wrong.to_str().unwrap_or_default(),
        "--results",
        folder.to_str().unwrap_or_default(),
        "prefetch::partial::2MiB",
        "--exact",
    ];
    let out = svmconf(&args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("preflight:")
            && said.contains("expect.kernel_release")
            && said.contains("--no-preflight"),
        "{said}"
    );
    assert!(!folder.exists(), "nothing is created when preflight fails");

    let mut anyway = args.to_vec();
    anyway.push("--no-preflight");
    let out = svmconf(&anyway);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// A lab host file gives the defaults and is checked: a reset the host forbids is refused, a
/// boot word it needs and the machine lacks stops the run before any case.
#[test]
fn a_host_file_gives_defaults_and_is_checked() {
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let results = tmp.path().join("night");
    let host = tmp.path().join("lab-sim.yaml");
    std::fs::write(
        &host,
        format!(
            "name: lab-sim\nbackend: sim\nprofile: sim\nresults: {}\n\
             kernel:\n  cmdline: [svmconf.no_such_boot_word=1]\n",
            results.display()
        ),
    )
    .expect("write the host file");
    let h = host.to_str().unwrap_or_default();

    let out = svmconf(&["--host", h, "--allow-destructive"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("host `lab-sim`") && text(&out).contains("does not allow destructive"),
        "{}",
        text(&out)
    );

    let out = svmconf(&["--host", h, "prefetch::partial::2MiB", "--exact"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("`svmconf.no_such_boot_word=1` is not on the kernel command line"),
        "{}",
        text(&out)
    );
    assert!(
        !results.exists(),
        "nothing is written when preflight stops the run"
    );

    let out = svmconf(&[
        "--host",
        h,
        "--no-preflight",
        "prefetch::partial::2MiB",
        "--exact",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        journal(&run_dir(&results)).len(),
        1,
        "results go where the host says"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("create a folder");
    for entry in std::fs::read_dir(from).expect("read a folder").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}

/// Without `--features hip`, asking for the HIP backend is bad input that says how to get it.
#[cfg(not(feature = "hip"))]
#[test]
fn hip_needs_a_binary_built_with_the_feature() {
    let results = tempfile::tempdir().expect("a temporary folder");
    let folder = results.path().join("results");
    let out = svmconf(&[
        "--backend",
        "hip",
        "--results",
        folder.to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("built without `--features hip`")
            && text(&out).contains("cargo build --release --features hip"),
        "{}",
        text(&out)
    );
    assert!(!folder.exists(), "nothing is created on bad input");
}

/// `--device` says what it expects, and the reference device has none to choose.
#[test]
fn hip_device_selection_is_checked_before_anything_runs() {
    let results = tempfile::tempdir().expect("a temporary folder");
    let folder = results.path().join("results");
    let dir = folder.to_str().unwrap_or_default();
    let out = svmconf(&["--device", "gpu0", "--results", dir]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--device: expected a HIP device index"),
        "{}",
        text(&out)
    );
    let out = svmconf(&["--backend", "sim", "--device", "1", "--results", dir]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("--device 1: only --backend hip"),
        "{}",
        text(&out)
    );
    assert!(!folder.exists());
}

/// Without the kernel driver's node (this machine, CI), for each backend on a kernel driver:
/// the run does not fail at setup; every case of the whole suite skips saying which driver is
/// missing, one case at a time in a child each, with the backend's own profile, and the run
/// exits 0. A node that is not there is named with `--device`, so the test is the same on a
/// machine that has the driver; a `--device` that is no node of the backend's is refused.
#[rstest::rstest]
#[case::dmirror(
    "dmirror",
    "hmm_dmirror0",
    "the kernel's test_hmm module (CONFIG_TEST_HMM) is not loaded",
    "expected a test driver number"
)]
#[case::vsvm(
    "vsvm",
    "renderD128",
    "the kernel's virtual SVM GPU (CONFIG_DRM_VSVM, lab/vm/run --vsvm) is not loaded",
    "expected a render node for --backend vsvm"
)]
fn a_kernel_driver_backend_without_its_driver_skips_every_case_saying_which_is_missing(
    #[case] backend: &str,
    #[case] node_name: &str,
    #[case] missing: &str,
    #[case] refused: &str,
) {
    let results = tempfile::tempdir().expect("a temporary folder");
    let node = results.path().join(node_name);
    let node = node.to_str().unwrap_or_default();
    let out = svmconf(&[
        "--backend",
        backend,
        "--device",
        node,
        "--results",
        results.path().join("results").to_str().unwrap_or_default(),
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("(profile {backend}")),
        "the {backend} profile by default: {said}"
    );
    assert!(said.contains("every case is skipped"), "{said}");
    assert!(
        said.contains("isolation process, 1 at a time;"),
        "a device every case shares runs one case at a time: {said}"
    );
    let records = journal(&run_dir(&results.path().join("results")));
    assert!(
        records.len() > 60,
        "the whole suite is planned: {}",
        records.len()
    );
    let want = format!("no {node}: {missing}");
    for r in &records {
        assert_eq!(r["status"], "skip", "{r}");
        assert_eq!(r["reason"].as_str().unwrap_or_default(), want, "{r}");
    }
    let out = svmconf(&["--backend", backend, "--device", "gpu0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(refused), "{}", text(&out));
}

/// Without `--device`, where sysfs shows no vsvm node, every case skips with the reason every
/// lab run without the driver gives; `--device 0` is no render node.
#[test]
fn vsvm_finds_no_node_without_the_driver_and_refuses_a_number() {
    let roots = svmconf::device::vsvm::Roots::this_machine();
    if svmconf::device::vsvm::find(&roots).is_none() {
        let found = tempfile::tempdir().expect("a temporary folder");
        let out = svmconf(&[
            "--backend",
            "vsvm",
            "--results",
            found.path().to_str().unwrap_or_default(),
            "prefetch::",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let records = journal(&run_dir(found.path()));
        assert!(!records.is_empty());
        for r in &records {
            assert_eq!(r["status"], "skip", "{r}");
            assert_eq!(
                r["reason"].as_str().unwrap_or_default(),
                svmconf::device::vsvm::MISSING,
                "{r}"
            );
        }
    }

    let out = svmconf(&["--backend", "vsvm", "--device", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("expected a render node for --backend vsvm"),
        "{}",
        text(&out)
    );
}

/// With the feature and no GPU (this machine, CI): the run does not fail at setup; every
/// selected case skips with what hipInit and hipGetDeviceCount said, and the run exits 0.
#[cfg(feature = "hip")]
#[test]
fn hip_without_a_gpu_skips_every_case_with_what_hip_said() {
    let results = tempfile::tempdir().expect("a temporary folder");
    let out = svmconf(&[
        "--backend",
        "hip",
        "--results",
        results.path().to_str().unwrap_or_default(),
        "fault_storm::",
    ]);
    let said = text(&out);
    if said.contains("svmconf: --backend hip") && !said.contains("no AMD GPU found") {
        eprintln!("a GPU is present: the no-GPU path is not tested here");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("every case is skipped"), "{said}");
    let records = journal(&run_dir(results.path()));
    assert!(!records.is_empty());
    for r in &records {
        assert_eq!(r["status"], "skip", "{r}");
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(
            reason.starts_with("no AMD GPU found: hipInit") && reason.contains("hipGetDeviceCount"),
            "{reason}"
        );
    }
}
