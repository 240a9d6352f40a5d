//! The runner against the lab's bad nights: cases that crash, hang, flood their output or warn
//! in the kernel log, and a runner killed at any moment. Driven through the runner's own test
//! cases (`--runner-selftest`), which misbehave on purpose.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{entries, journal, run_dir, text};

/// The runner with the self-test cases, writing to `results`; `env` is the folder the
/// kernel-playing cases write to (its `kmsg` and `tainted` files).
fn selftest(results: &Path, env: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_svmconf"));
    c.args(["--runner-selftest", "--results"])
        .arg(results)
        .args(args)
        .env("SVMCONF_SELFTEST_DIR", env)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// A temporary folder, and in it the folder the kernel-playing self-test cases write to.
fn scratch() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("a temporary folder");
    let env = root.path().join("env");
    std::fs::create_dir_all(&env).expect("the self-test folder");
    (root, env)
}

/// The self-test's `tick` cases, each repeated `repeat` times, one at a time in processes of
/// their own, into `results`; or, once the run has a folder `dir`, `--resume` of it.
fn ticks_or_resume(results: &Path, env: &Path, dir: Option<&Path>, repeat: usize) -> Command {
    match dir {
        None => selftest(
            results,
            env,
            &[
                "--isolate",
                "process",
                "--repeat",
                &repeat.to_string(),
                "--test-threads",
                "1",
                "tick",
            ],
        ),
        Some(d) => {
            let mut c = Command::new(env!("CARGO_BIN_EXE_svmconf"));
            c.arg("--resume").arg(d).env("SVMCONF_SELFTEST_DIR", env);
            c
        }
    }
}

/// A small deterministic generator for the kill moments, so a failure repeats.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn a_runner_killed_at_random_moments_resumes_and_loses_nothing() {
    const KILLS: usize = 20;
    const REPEAT: usize = 3;
    let (root, env) = scratch();
    let mut rng = Lcg(0x5eed);
    let mut kills = 0;
    let mut runs = 0;
    let mut total_incomplete = 0;
    while kills < KILLS {
        runs += 1;
        let results = root.path().join(format!("results{runs}"));
        let mut dir: Option<PathBuf> = None;
        let mut kills_this_run = 0;
        loop {
            let mut cmd = ticks_or_resume(&results, &env, dir.as_deref(), REPEAT);
            let mut child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("svmconf starts");
            // Anywhere from before the first case to after the exports.
            std::thread::sleep(Duration::from_millis(5 + rng.below(400)));
            let killed = kills < KILLS && child.kill().is_ok();
            let status = child.wait().expect("svmconf ends");
            if dir.is_none() {
                match std::fs::read_dir(&results) {
                    Ok(mut d) => dir = d.next().map(|e| e.expect("an entry").path()),
                    Err(_) => continue, // killed before it made the run folder: start again
                }
            }
            let Some(d) = &dir else { continue };
            if killed && status.code().is_none() {
                kills += 1;
                kills_this_run += 1;
                // What is on disk after a SIGKILL is always a readable journal.
                if d.join("journal.jsonl").exists() {
                    let _ = journal(d);
                }
                continue;
            }
            assert!(
                matches!(status.code(), Some(0 | 101)),
                "a run of passing cases ends 0, or 101 with an incomplete case: {status:?}"
            );
            let incomplete = journal(d).iter().any(|r| r["status"] == "incomplete");
            assert_eq!(status.code() == Some(101), incomplete, "{status:?}");
            break;
        }
        let d = dir.expect("a run folder");
        let records = journal(&d);
        let mut names: Vec<(String, u64)> = records
            .iter()
            .map(|r| {
                (
                    r["case"].as_str().unwrap_or_default().to_string(),
                    r["repetition"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(
            before,
            names.len(),
            "a case recorded twice in {}",
            d.display()
        );
        assert_eq!(
            names.len(),
            24 * REPEAT,
            "every repetition of every tick recorded once"
        );
        let incomplete = records
            .iter()
            .filter(|r| r["status"] == "incomplete")
            .count();
        total_incomplete += incomplete;
        assert!(
            incomplete <= kills_this_run,
            "{incomplete} incomplete after {kills_this_run} kills"
        );
        assert!(records
            .iter()
            .all(|r| r["status"] == "pass" || r["status"] == "incomplete"));
        // Each incomplete case had started and never ended before a resume.
        for r in records.iter().filter(|r| r["status"] == "incomplete") {
            let reason = r["reason"].as_str().unwrap_or_default();
            assert!(
                reason.contains(
                    "the run ended while attempt 1 of this case was running (the \
                                 runner was killed, or the machine crashed or rebooted)"
                ),
                "{reason}"
            );
            assert!(!reason.contains("  "), "no run of spaces in {reason:?}");
        }
        let junit = std::fs::read_to_string(d.join("junit.xml")).expect("junit.xml");
        let doc = roxmltree::Document::parse(&junit).expect("junit.xml is XML");
        let cases = doc
            .descendants()
            .filter(|n| n.has_tag_name("testcase"))
            .count();
        assert_eq!(cases, 24 * REPEAT);
        assert!(d.join("summary.md").is_file());
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("run.json")).expect("run.json"))
                .expect("run.json is JSON");
        assert!(info["finished"].is_string());
    }
    assert!(kills >= KILLS);
    assert!(total_incomplete > 0, "no kill landed during a case");
    eprintln!("{kills} kills over {runs} runs; {total_incomplete} cases were in flight");
}

/// Ctrl-C (SIGINT) at random moments: each interrupt ends the run with 130 and the command
/// that goes on, and the resumed runs run again what was running, so that no case is ever
/// recorded incomplete; libtest's closing line at the end counts the whole run.
#[test]
fn an_interrupted_run_says_how_to_go_on_and_runs_again_what_was_running() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    const REPEAT: usize = 2;
    let (root, env) = scratch();
    let results = root.path().join("results");
    let mut rng = Lcg(0xc0de);
    let mut dir: Option<PathBuf> = None;
    let mut interrupts = 0;
    let last = loop {
        let mut cmd = ticks_or_resume(&results, &env, dir.as_deref(), REPEAT);
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("svmconf starts");
        let pid = Pid::from_raw(child.id() as i32);
        let interrupt = interrupts < 6;
        if interrupt {
            std::thread::sleep(Duration::from_millis(150 + rng.below(250)));
            let _ = kill(pid, Signal::SIGINT);
        }
        let out = child.wait_with_output().expect("svmconf ends");
        if dir.is_none() {
            dir = std::fs::read_dir(&results)
                .ok()
                .and_then(|mut d| d.next())
                .map(|e| e.expect("an entry").path());
        }
        let said = text(&out);
        if interrupt && out.status.code() == Some(130) {
            interrupts += 1;
            let d = dir
                .as_ref()
                .expect("a run folder before the interrupt was handled");
            assert!(
                said.contains("svmconf: interrupted by SIGINT")
                    && said.contains(&format!(
                        "go on with: {} --resume {}",
                        // The binary as the shell finds it from the repository, where the
                        // test runs it: its path there, whichever profile built it.
                        Path::new(env!("CARGO_BIN_EXE_svmconf"))
                            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                            .unwrap_or(Path::new(env!("CARGO_BIN_EXE_svmconf")))
                            .display(),
                        d.display()
                    )),
                "{said}"
            );
            continue;
        }
        if interrupt && out.status.code().is_none() {
            continue; // before the handler was installed: no case had started
        }
        break out;
    };
    let d = dir.expect("a run folder");
    assert!(
        interrupts >= 3,
        "only {interrupts} interrupts landed during the run"
    );
    assert_eq!(last.status.code(), Some(0), "{}", text(&last));
    let records = journal(&d);
    assert_eq!(records.len(), 24 * REPEAT, "every repetition recorded once");
    assert!(
        records.iter().all(|r| r["status"] == "pass"),
        "an interrupted case runs again, never incomplete"
    );
    let interrupted = entries(&d)
        .iter()
        .filter(|e| e["event"] == "interrupted")
        .count();
    assert_eq!(interrupted, interrupts, "each interrupt is in the journal");
    let stdout = String::from_utf8_lossy(&last.stdout);
    assert!(
        stdout.contains("test result: ok. 24 passed; 0 failed"),
        "libtest counts the whole run: {stdout}"
    );
}

#[test]
fn every_misbehaving_case_gets_its_status_and_the_run_goes_on() {
    let (root, env) = scratch();
    let results = root.path().join("results");
    let (kmsg, tainted) = fake_kernel(&env);
    let out = selftest(
        &results,
        &env,
        &[
            "--isolate",
            "process",
            "--kill-grace",
            "0.5",
            "--retries",
            "1",
            "--kmsg",
            &kmsg,
            "--tainted",
            &tainted,
            "--continue-on-taint",
            // One case at a time: kernel log lines go to every case running when they come.
            "--test-threads",
            "1",
            "--skip",
            "tick",
        ],
    )
    .output()
    .expect("svmconf runs");
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
    let dir = run_dir(&results);
    let records = journal(&dir);
    let status = |case: &str| {
        common::record(&records, &format!("runner_selftest::{case}"))["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    for (case, want) in [
        ("pass", "pass"),
        ("fail", "fail"),
        ("segfault", "crash"),
        ("abort", "crash"),
        ("hang", "timeout"),
        ("exit_early", "crash"),
        ("chatty", "pass"),
        ("flaky", "flake"),
        ("kernel_warning", "dmesg_warn"),
        ("taint", "dmesg_warn"),
    ] {
        assert_eq!(status(case), want, "{case}");
    }
    let reason = |case: &str| {
        common::record(&records, &format!("runner_selftest::{case}"))["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert!(reason("segfault").contains("killed by SIGSEGV (signal 11)"));
    assert!(reason("abort").contains("killed by SIGABRT (signal 6)"));
    assert!(reason("hang").contains("timed out after 1.0 s"));
    assert!(
        reason("hang").contains("ended with SIGKILL"),
        "{}",
        reason("hang")
    );
    assert!(reason("exit_early").contains("exited with status 3 without a verdict"));
    assert!(reason("kernel_warning").contains("the kernel logged a WARNING"));
    let warned = common::record(&records, "runner_selftest::kernel_warning");
    let flags: Vec<&str> = warned["kernel_log"]
        .as_array()
        .map(|l| l.iter().filter_map(|l| l["flag"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(flags, ["WARNING", "call trace"]);
    let tainted_case = common::record(&records, "runner_selftest::taint");
    assert_eq!(tainted_case["taint"]["gained"][0], "W (warn)");
    assert_eq!(tainted_case["taint"]["bad"], true);
    // The markers bracket the case in the kernel log, as a person reading dmesg sees it.
    let log = std::fs::read_to_string(env.join("kmsg")).expect("the fake kernel log");
    assert!(
        log.contains("svmconf: begin runner_selftest::kernel_warning"),
        "{log}"
    );
    // Nothing else was charged with the warning.
    for r in &records {
        if r["case"] != "runner_selftest::kernel_warning" {
            assert!(r.get("kernel_log").is_none(), "{}", r["case"]);
        }
    }

    // Megabytes of output stay in their files; records and reports keep a tail.
    let chatty = common::record(&records, "runner_selftest::chatty");
    let stdout_bytes = chatty["output"]["stdout_bytes"].as_u64().unwrap_or(0);
    assert!(stdout_bytes > 4 << 20, "{stdout_bytes}");
    assert_eq!(chatty["output"]["stderr_bytes"], 1 << 20);
    let tail = chatty["output"]["stdout_tail"].as_str().unwrap_or_default();
    assert!(
        tail.len() <= 4096 && tail.contains("chatty: done\n"),
        "{tail}"
    );
    let file = dir.join(chatty["output"]["stdout_file"].as_str().unwrap_or_default());
    assert_eq!(
        std::fs::metadata(file).map(|m| m.len()).ok(),
        Some(stdout_bytes)
    );

    // A retry has a start line of its own, and the flake keeps the failure it had.
    let starts = entries(&dir)
        .into_iter()
        .filter(|e| e["event"] == "start" && e["case"] == "runner_selftest::flaky")
        .count();
    assert_eq!(starts, 2);
    let flaky = common::record(&records, "runner_selftest::flaky");
    assert_eq!(flaky["retries"][0]["status"], "fail");

    // The reports say the same as the journal.
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    let doc = roxmltree::Document::parse(&junit).expect("junit.xml is XML");
    for r in &records {
        let name = r["case"].as_str().unwrap_or_default();
        let tc = doc
            .descendants()
            .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some(name))
            .unwrap_or_else(|| panic!("{name} in junit.xml"));
        let failed = tc
            .children()
            .any(|c| c.has_tag_name("failure") || c.has_tag_name("error"));
        let is_failure = !matches!(
            r["status"].as_str(),
            Some("pass" | "skip" | "notrun" | "flake" | "expected_fail")
        );
        assert_eq!(failed, is_failure, "{name}: {}", r["status"]);
    }
    let ktap = common::ktap_cases(&std::fs::read_to_string(dir.join("ktap.txt")).expect("ktap"));
    assert_eq!(ktap.len(), records.len(), "every case once in ktap.txt");
    for r in &records {
        let name = r["case"].as_str().unwrap_or_default();
        let (_, ok, directive) = ktap
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} in ktap.txt"));
        let is_failure = !matches!(
            r["status"].as_str(),
            Some("pass" | "skip" | "notrun" | "flake" | "expected_fail")
        );
        assert_eq!(!ok, is_failure, "{name}: {} {directive}", r["status"]);
        if r["status"] == "timeout" {
            assert!(directive.starts_with("TIMEOUT"), "{name}: {directive}");
        }
    }
    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    for case in ["segfault", "abort", "hang", "exit_early", "fail"] {
        assert!(
            summary.contains(&format!("runner_selftest::{case}")),
            "summary names {case}"
        );
    }
}

/// A fake kernel for the runner: an empty kmsg file and a clean taint, in `env`.
fn fake_kernel(env: &Path) -> (String, String) {
    let kmsg = env.join("kmsg");
    let tainted = env.join("tainted");
    std::fs::write(&kmsg, "").expect("the fake kernel log");
    std::fs::write(&tainted, "0\n").expect("the fake taint");
    (
        kmsg.to_string_lossy().into_owned(),
        tainted.to_string_lossy().into_owned(),
    )
}

#[test]
fn a_case_that_taints_the_kernel_stops_the_run_and_the_rest_are_notrun() {
    let (root, env) = scratch();
    let (kmsg, tainted) = fake_kernel(&env);
    let results = root.path().join("results");
    let out = selftest(
        &results,
        &env,
        &[
            "--isolate",
            "process",
            "--kmsg",
            &kmsg,
            "--tainted",
            &tainted,
            "--test-threads",
            "1",
            "runner_selftest::t",
        ],
    )
    .output()
    .expect("svmconf runs");
    assert_eq!(out.status.code(), Some(101), "{}", text(&out));
    let records = journal(&run_dir(&results));
    assert_eq!(records[0]["case"], "runner_selftest::taint");
    assert_eq!(records[0]["status"], "dmesg_warn");
    assert_eq!(
        records.len(),
        25,
        "the taint case and every tick are accounted for"
    );
    for r in &records[1..] {
        assert_eq!(r["status"], "notrun", "{}", r["case"]);
        let why = r["reason"].as_str().unwrap_or_default();
        assert!(
            why.contains("the kernel gained taint W (warn)")
                && why.contains("during runner_selftest::taint")
                && why.contains("--continue-on-taint"),
            "{why}"
        );
    }
}

#[test]
fn an_unreadable_kernel_log_is_said_once_and_the_run_goes_on() {
    let (root, env) = scratch();
    let results = root.path().join("results");
    let missing = root.path().join("no-such-kmsg");
    let out = selftest(
        &results,
        &env,
        &[
            "--isolate",
            "process",
            "--kmsg",
            missing.to_str().unwrap_or_default(),
            "runner_selftest::pass",
            "--exact",
        ],
    )
    .output()
    .expect("svmconf runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dir = run_dir(&results);
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap_or_default())
            .expect("run.json");
    let notes: Vec<&serde_json::Value> = info["observers"]
        .as_array()
        .map(|o| o.iter().filter(|n| n["name"] == "kernel_log").collect())
        .unwrap_or_default();
    assert_eq!(notes.len(), 1, "{info}");
    assert_eq!(notes[0]["available"], false);
    assert!(notes[0]["detail"]
        .as_str()
        .unwrap_or_default()
        .contains("no-such-kmsg"));
    assert_eq!(journal(&dir)[0]["status"], "pass");
}

#[test]
fn the_same_cases_run_on_a_thread_give_the_same_verdicts_where_a_thread_can() {
    let (root, env) = scratch();
    let results = root.path().join("results");
    let out = selftest(
        &results,
        &env,
        &["--isolate", "none", "runner_selftest::pass", "--exact"],
    )
    .output()
    .expect("svmconf runs");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let records = journal(&run_dir(&results));
    assert_eq!(records.len(), 1);
    assert!(
        records[0].get("output").is_none(),
        "no child, no output files"
    );
}

#[test]
fn resume_refuses_what_is_not_a_run_and_changes_nothing() {
    let root = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(root.path().join("notes.txt"), "mine").expect("a file");
    let out = common::svmconf(&["--resume", root.path().to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("not a run folder svmconf can continue") && said.contains("run.json"),
        "{said}"
    );
    let left: Vec<_> = std::fs::read_dir(root.path())
        .expect("readable")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(left, ["notes.txt"]);
}

/// The verdicts of a run, by case, from its journal.
fn verdicts(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = journal(dir)
        .iter()
        .map(|r| {
            (
                r["case"].as_str().unwrap_or_default().to_string(),
                r["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn three_shards_merged_are_the_whole_run() {
    let root = tempfile::tempdir().expect("a temporary folder");
    let whole = root.path().join("whole");
    let out = common::svmconf(&["--results", whole.to_str().unwrap_or_default(), "-q"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let mut shard_dirs = Vec::new();
    let mut sizes = Vec::new();
    for k in 1..=3 {
        let results = root.path().join(format!("shard{k}"));
        let out = common::svmconf(&[
            "--results",
            results.to_str().unwrap_or_default(),
            "--shard",
            &format!("{k}/3"),
            "-q",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let dir = run_dir(&results);
        sizes.push(journal(&dir).len());
        shard_dirs.push(dir);
    }
    assert!(
        sizes.iter().all(|&n| n > 10),
        "each shard holds a share: {sizes:?}"
    );

    let merged = root.path().join("merged");
    let mut args = vec!["merge".to_string(), merged.to_string_lossy().into_owned()];
    args.extend(shard_dirs.iter().map(|d| d.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = common::svmconf(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(verdicts(&merged), verdicts(&run_dir(&whole)));
    for file in [
        "run.json",
        "journal.jsonl",
        "junit.xml",
        "ktap.txt",
        "summary.md",
    ] {
        assert!(merged.join(file).is_file(), "{file} in the merged run");
    }
    let ktap =
        common::ktap_cases(&std::fs::read_to_string(merged.join("ktap.txt")).unwrap_or_default());
    assert_eq!(ktap.len(), verdicts(&merged).len());

    // A run from another seed is not a shard of the same run: refused, nothing written.
    let other = root.path().join("other");
    let out = common::svmconf(&[
        "--results",
        other.to_str().unwrap_or_default(),
        "--shard",
        "3/3",
        "--seed",
        "2",
        "-q",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let refused = root.path().join("refused");
    let out = common::svmconf(&[
        "merge",
        refused.to_str().unwrap_or_default(),
        shard_dirs[0].to_str().unwrap_or_default(),
        shard_dirs[1].to_str().unwrap_or_default(),
        run_dir(&other).to_str().unwrap_or_default(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("seed"), "{}", text(&out));
    assert!(!refused.exists(), "a refused merge leaves nothing");
    // And the shards it read are as they were.
    assert_eq!(journal(&shard_dirs[0]).len(), sizes[0]);
}

/// The sim's eviction WARNINGs with cases side by side in one process: each line is charged to
/// the one case that logged it (the run watches one case at a time, and says so), the same
/// cases as with one thread.
#[test]
fn a_kernel_warning_is_charged_only_to_the_case_that_logged_it_with_four_threads() {
    let run = |threads: &str| {
        let (root, env) = scratch();
        let (kmsg, _) = fake_kernel(&env);
        let results = root.path().join("results");
        let out = Command::new(env!("CARGO_BIN_EXE_svmconf"))
            .args(["--backend", "sim", "--results"])
            .arg(&results)
            .args([
                "--sim-faults",
                "fixtures/faults/warning-on-eviction.yaml",
                "--kmsg",
                &kmsg,
                "--test-threads",
                threads,
                // One timed repetition, and not the case that evicts most (64 MiB in 4 KiB
                // ranges): no case logs more lines than a record keeps.
                "--reps",
                "1",
                "--skip",
                "evict_all::malloc::64MiB",
                "ttm_eviction::",
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("svmconf runs");
        let logged = std::fs::read_to_string(&kmsg)
            .unwrap()
            .lines()
            .filter(|l| l.contains(";WARNING:"))
            .count();
        let dir = run_dir(&results);
        let records = journal(&dir);
        let charged: usize = records
            .iter()
            .map(|r| {
                r["kernel_log"].as_array().map_or(0, |lines| {
                    lines.iter().filter(|l| l["flag"].is_string()).count()
                })
            })
            .sum();
        let mut warned: Vec<String> = records
            .iter()
            .filter(|r| r["status"].as_str().unwrap_or("").starts_with("dmesg"))
            .map(|r| r["case"].as_str().unwrap().to_string())
            .collect();
        warned.sort();
        let info = std::fs::read_to_string(dir.join("run.json")).unwrap();
        (out, logged, charged, warned, info, root)
    };
    let (out, logged, charged, warned, info, _root) = run("4");
    assert!(logged > 0, "the plan logged: {}", text(&out));
    assert_eq!(
        charged,
        logged,
        "each line charged once: {warned:?}\n{}",
        text(&out)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said.matches("cases run one at a time").count(), 1, "{said}");
    assert!(info.contains("cases run one at a time"), "{info}");
    let (_, _, _, alone, info1, _root1) = run("1");
    assert_eq!(warned, alone, "the same cases warned as with one thread");
    assert!(
        !info1.contains("cases run one at a time"),
        "one thread needs no lock"
    );
}
