//! `svmconf kill-matrix`: the suite run once per fault plan (`fixtures/faults/*.yaml`), and for
//! each plan which cases caught it, on which path, with what status and diagnosis, and how
//! often its rules fired. A plan that fired and that no case catches has escaped, and one that
//! a case it names does not catch is a hole: either is a hole in the suite and fails the
//! command. A plan none of whose rules fired in any case did not fire: a defect of the plan,
//! not of the suite, which fails the command too, under that name. A clean run comes first;
//! if it fails anywhere, nothing after it means anything.
//!
//! Each run is this binary in a child process on the reference device, with the whole suite
//! (destructive cases included), one case at a time, and a kernel log file the plan's
//! `kernel_log` rules write to and the runner reads. The clean run takes 10 timed repetitions,
//! so that plans that slow a path (`slow` rules) run with it as their `--baseline`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use crate::device::reference::{self, FaultPlan as Plan};
use crate::harness::SetupError;
use crate::results::{self, CaseRecord, Status};

/// What one run left.
pub(super) struct Outcome {
    pub(super) records: Vec<CaseRecord>,
    /// The run folder.
    pub(super) run: PathBuf,
}

/// Options of the command.
struct Args {
    faults: PathBuf,
    keep: Option<PathBuf>,
    /// Passed to every run (a profile, a seed, a filter).
    extra: Vec<String>,
}

const USAGE: &str = "svmconf kill-matrix [--faults DIR] [--keep DIR] [-- RUN OPTIONS...]";

fn parse(args: &[String]) -> Result<Args, SetupError> {
    let mut a = Args {
        faults: PathBuf::new(),
        keep: None,
        extra: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next().cloned().ok_or_else(|| {
                SetupError::Plan(format!("kill-matrix: {flag} needs a value; usage: {USAGE}"))
            })
        };
        match arg.as_str() {
            "--faults" => a.faults = value("--faults")?.into(),
            "--keep" => a.keep = Some(value("--keep")?.into()),
            "--" => {
                a.extra = it.cloned().collect();
                break;
            }
            other => {
                return Err(SetupError::Plan(format!(
                    "kill-matrix: unknown argument `{other}`; usage: {USAGE}"
                )))
            }
        }
    }
    if a.faults.as_os_str().is_empty() {
        a.faults = super::default_fixture("kill-matrix", "faults")?;
    }
    Ok(a)
}

/// The plans in `dir`, by file name; any that does not parse stops the command.
fn plans(dir: &Path) -> Result<Vec<Plan>, SetupError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        SetupError::Plan(format!(
            "kill-matrix: cannot read `{}`: {}",
            dir.display(),
            crate::util::text::io_reason(&e)
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(SetupError::Plan(format!(
            "kill-matrix: no plan (*.yaml) in `{}`",
            dir.display()
        )));
    }
    files
        .iter()
        .map(|f| Plan::load(f).map_err(|e| SetupError::Plan(format!("kill-matrix: {e}"))))
        .collect()
}

/// One run of the whole suite under `plan` (none: clean), its results in `dir`; `baseline`:
/// a run whose timings it is compared with.
fn run_suite(
    plan: Option<&Plan>,
    dir: &Path,
    extra: &[String],
    baseline: Option<&Path>,
) -> Result<Outcome, SetupError> {
    let io = |what: &str, e: std::io::Error| {
        SetupError::Plan(format!(
            "kill-matrix: {what}: {}",
            crate::util::text::io_reason(&e)
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
    let kmsg = dir.join("kmsg");
    std::fs::write(&kmsg, "").map_err(|e| io(&kmsg.display().to_string(), e))?;
    let exe = std::env::current_exe().map_err(|e| io("finding this binary", e))?;
    let results_dir = dir.join("results");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--backend",
        reference::name(),
        "--allow-destructive",
        "--test-threads",
        "1",
        "-q",
    ])
    .arg("--kmsg")
    .arg(&kmsg)
    .arg("--results")
    .arg(&results_dir)
    .args(extra)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if let Some(p) = plan {
        cmd.arg("--sim-faults").arg(&p.file);
    }
    match baseline {
        Some(b) => {
            cmd.arg("--baseline").arg(b);
        }
        // Enough timed repetitions to be a baseline (see `svmconf sensitivity`).
        None if plan.is_none() => {
            cmd.args(["--reps", "10"]);
        }
        None => {}
    }
    let what = plan.map_or(String::new(), |p| format!(" under `{}`", p.file.display()));
    run_self(cmd, &results_dir, &what)
}

/// This binary run as `cmd` says (its arguments set, stdout discarded, stderr piped), writing
/// one run folder into `results_dir`: the records of that run. `what` says which run it was in
/// an error. Exit 0 (all as expected) and 101 (some case did not pass) are runs; anything else
/// is a setup error of the run.
pub(super) fn run_self(
    mut cmd: Command,
    results_dir: &Path,
    what: &str,
) -> Result<Outcome, SetupError> {
    let out = cmd.output().map_err(|e| {
        SetupError::Plan(format!(
            "running the suite{what}: {}",
            crate::util::text::io_reason(&e)
        ))
    })?;
    if !matches!(out.status.code(), Some(0) | Some(101)) {
        return Err(SetupError::Plan(format!(
            "the run{what} ended with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let run = std::fs::read_dir(results_dir)
        .ok()
        .and_then(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).next())
        .ok_or_else(|| SetupError::Plan(format!("no run folder in `{}`", results_dir.display())))?;
    let records = results::journal::read(&run.join(results::JOURNAL_FILE))
        .map_err(|e| SetupError::Plan(e.to_string()))?;
    Ok(Outcome { records, run })
}

/// Whether case `name` is one `pattern` names: the exact name, or a whole-name regex.
fn names(pattern: &str, name: &str) -> bool {
    pattern == name
        || regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|re| re.is_match(name))
}

/// The first line of a reason, cut to fit a table.
pub(super) fn short(reason: Option<&str>) -> String {
    let line = reason.unwrap_or("").lines().next().unwrap_or("");
    match line.char_indices().nth(110) {
        Some((i, _)) => format!("{}...", &line[..i]),
        None => line.to_string(),
    }
}

/// How a plan fared: the cases that caught it by path, how often its rules fired, and what is
/// wrong with that.
struct Verdict {
    by_path: BTreeMap<String, Vec<(String, Status, String)>>,
    /// Firings of all its rules in all cases.
    fired: u64,
    /// Cases in which a rule fired.
    fired_in: usize,
    problems: Vec<String>,
    outcome: PlanOutcome,
}

/// The one word a plan's line starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PlanOutcome {
    /// Every case it names caught it.
    Caught,
    /// It fired, and no case caught it.
    Escaped,
    /// Some case caught it, but not every case it names.
    Hole,
    /// No rule fired in any case: the plan planted nothing, so the run says nothing of the
    /// suite.
    DidNotFire,
}

impl PlanOutcome {
    fn word(self) -> &'static str {
        match self {
            PlanOutcome::Caught => "CAUGHT      ",
            PlanOutcome::Escaped => "ESCAPED     ",
            PlanOutcome::Hole => "HOLE        ",
            PlanOutcome::DidNotFire => "DID NOT FIRE",
        }
    }
}

fn judge(plan: &Plan, outcome: &Outcome) -> Verdict {
    let fired: u64 = outcome
        .records
        .iter()
        .flat_map(|r| &r.injected)
        .map(|i| i.fired)
        .sum();
    let fired_in = outcome
        .records
        .iter()
        .filter(|r| r.injected.iter().any(|i| i.fired > 0))
        .count();
    // A case process that crashed or timed out left no count: it may have fired there.
    let unaccounted = outcome
        .records
        .iter()
        .any(|r| r.status.is_bad_outcome() && r.injected.is_empty());
    let mut by_path: BTreeMap<String, Vec<(String, Status, String)>> = BTreeMap::new();
    for r in outcome.records.iter().filter(|r| r.status.is_bad_outcome()) {
        let path = r.case.split("::").next().unwrap_or("").to_string();
        by_path.entry(path).or_default().push((
            r.case.clone(),
            r.status,
            short(r.reason.as_deref()),
        ));
    }
    let mut problems = Vec::new();
    if fired == 0 && !unaccounted {
        problems.push(format!(
            "did not fire: none of its {} rules matched and fired in any case; the plan \
             planted nothing (check its direction, trigger, pages, nth and helpers)",
            plan.rules.len()
        ));
        return Verdict {
            by_path,
            fired,
            fired_in,
            problems,
            outcome: PlanOutcome::DidNotFire,
        };
    }
    let escaped = by_path.is_empty();
    if escaped {
        problems.push("escaped: it fired and no case caught it".to_string());
    }
    for want in &plan.catches {
        let named: Vec<&CaseRecord> = outcome
            .records
            .iter()
            .filter(|r| names(want, &r.case))
            .collect();
        if named.is_empty() {
            problems.push(format!("`{want}` names no case of the run"));
        } else if let Some(r) = named.iter().find(|r| !r.status.is_bad_outcome()) {
            problems.push(format!(
                "`{}` should catch it and ended {}{}",
                r.case,
                r.status,
                r.reason
                    .as_deref()
                    .map_or(String::new(), |why| format!(": {}", short(Some(why))))
            ));
        }
    }
    let outcome = match (escaped, problems.is_empty()) {
        (true, _) => PlanOutcome::Escaped,
        (false, true) => PlanOutcome::Caught,
        (false, false) => PlanOutcome::Hole,
    };
    Verdict {
        by_path,
        fired,
        fired_in,
        problems,
        outcome,
    }
}

fn stem(plan: &Plan) -> String {
    plan.file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Runs every plan, as many at a time as the machine has cores (each run is one case at a
/// time); the outcomes in plan order.
fn run_plans(
    plans: &[Plan],
    root: &Path,
    extra: &[String],
    clean: &Path,
) -> Vec<Result<Outcome, SetupError>> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(plans.len());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<Result<Outcome, SetupError>>>> =
        plans.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(plan) = plans.get(i) else { break };
                let dir = root.join(format!("{i:02}-{}", stem(plan)));
                // A plan that slows a path is caught by timing: against the clean run.
                let baseline = plan.slows().then_some(clean);
                let outcome = run_suite(Some(plan), &dir, extra, baseline);
                *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(outcome);
            });
        }
    });
    slots
        .into_iter()
        .map(|slot| {
            slot.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .unwrap_or_else(|| Err(SetupError::Plan("kill-matrix: a plan was not run".into())))
        })
        .collect()
}

/// `svmconf kill-matrix ...`.
pub fn kill_matrix(args: &[String]) -> Result<ExitCode, SetupError> {
    let args = parse(args)?;
    let plans = plans(&args.faults)?;
    let root = match &args.keep {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir().join(format!("svmconf-kill-matrix-{}", std::process::id())),
    };
    let result = matrix(&args, &plans, &root);
    if args.keep.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

fn matrix(args: &Args, plans: &[Plan], root: &Path) -> Result<ExitCode, SetupError> {
    println!(
        "kill matrix: {} plans from {}, each a whole run on the reference device",
        plans.len(),
        args.faults.display()
    );
    let clean = run_suite(None, &root.join("clean"), &args.extra, None)?;
    let noisy: Vec<&CaseRecord> = clean
        .records
        .iter()
        .filter(|r| r.status.is_bad_outcome())
        .collect();
    if !noisy.is_empty() {
        for r in &noisy {
            println!(
                "  clean run: {} {}: {}",
                r.case,
                r.status,
                short(r.reason.as_deref())
            );
        }
        return Err(SetupError::Plan(format!(
            "kill-matrix: {} cases fail without any fault: nothing they catch would mean anything",
            noisy.len()
        )));
    }
    println!(
        "clean run: {} cases, none caught anything\n",
        clean.records.len()
    );
    let mut holes = 0;
    let mut silent = 0;
    let outcomes = run_plans(plans, root, &args.extra, &clean.run);
    for (plan, outcome) in plans.iter().zip(outcomes) {
        let name = stem(plan);
        let verdict = judge(plan, &outcome?);
        let total: usize = verdict.by_path.values().map(Vec::len).sum();
        println!(
            "{} {name}: {} ({total} cases caught it; fired {} times in {} cases)",
            verdict.outcome.word(),
            plan.description,
            verdict.fired,
            verdict.fired_in
        );
        for (path, cases) in &verdict.by_path {
            println!("    {path}: {} cases", cases.len());
            for (case, status, why) in cases.iter().take(3) {
                println!("      {case}  {status}  {why}");
            }
            if cases.len() > 3 {
                println!("      ... and {} more", cases.len() - 3);
            }
        }
        for p in &verdict.problems {
            println!("    problem: {p}");
        }
        match verdict.outcome {
            PlanOutcome::Caught => {}
            PlanOutcome::DidNotFire => silent += 1,
            PlanOutcome::Escaped | PlanOutcome::Hole => holes += 1,
        }
    }
    println!(
        "\nkill matrix: {} of {} plans caught as their files say; {holes} escaped or holes, \
         {silent} did not fire",
        plans.len() - holes - silent,
        plans.len()
    );
    Ok(if holes == 0 && silent == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(case: &str, status: Status) -> CaseRecord {
        CaseRecord {
            case: case.into(),
            status,
            reason: Some(format!("{status} because")),
            ..CaseRecord::blank()
        }
    }

    fn plan(catches: &[&str]) -> Plan {
        let text = format!(
            "description: d\ncatches: [{}]\nrules: [{{kind: hang}}]\n",
            catches.join(", ")
        );
        Plan::parse(&text, Path::new("p.yaml")).unwrap()
    }

    #[test]
    fn a_plan_is_caught_only_when_every_named_case_caught_it() {
        let outcome = Outcome {
            run: PathBuf::new(),
            records: vec![
                record("prefetch::round_trip::managed::2MiB", Status::Fail),
                record("prefetch::partial::2MiB", Status::Pass),
                record("cpu_fault::read::managed::2MiB", Status::DmesgWarn),
            ],
        };
        let v = judge(&plan(&["'prefetch::round_trip::.*'"]), &outcome);
        assert!(!plan(&["x"]).slows());
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.by_path["prefetch"].len(), 1);
        assert_eq!(v.by_path["cpu_fault"][0].1, Status::DmesgWarn);

        let v = judge(&plan(&["prefetch::partial::2MiB"]), &outcome);
        assert_eq!(v.outcome, PlanOutcome::Hole);
        assert_eq!(v.problems.len(), 1);
        assert!(v.problems[0].contains("ended pass"), "{:?}", v.problems);

        let v = judge(&plan(&["nosuch::case"]), &outcome);
        assert!(v.problems[0].contains("names no case"), "{:?}", v.problems);
    }

    /// `record` with the counts of a one-rule plan that fired `fired` times in it.
    fn counted(case: &str, status: Status, fired: u64) -> CaseRecord {
        CaseRecord {
            injected: vec![crate::device::Injected {
                rule: 0,
                kind: "hang".into(),
                matched: fired + 1,
                fired,
            }],
            ..record(case, status)
        }
    }

    #[test]
    fn a_plan_that_fired_and_nothing_caught_escaped_whatever_it_names() {
        let outcome = Outcome {
            run: PathBuf::new(),
            records: vec![
                counted("a::b", Status::Pass, 2),
                counted("a::c", Status::Skip, 0),
            ],
        };
        let v = judge(&plan(&["'a::.*'"]), &outcome);
        assert_eq!(v.outcome, PlanOutcome::Escaped);
        assert_eq!((v.fired, v.fired_in), (2, 1));
        assert!(v
            .problems
            .iter()
            .any(|p| p == "escaped: it fired and no case caught it"));
    }

    #[test]
    fn a_plan_none_of_whose_rules_fired_did_not_fire_and_is_no_escape() {
        let outcome = Outcome {
            run: PathBuf::new(),
            records: vec![
                counted("a::b", Status::Pass, 0),
                counted("a::c", Status::Pass, 0),
            ],
        };
        let v = judge(&plan(&["'a::.*'"]), &outcome);
        assert_eq!(v.outcome, PlanOutcome::DidNotFire);
        assert_eq!(v.outcome.word(), "DID NOT FIRE");
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
        assert!(
            v.problems[0].starts_with("did not fire"),
            "{:?}",
            v.problems
        );
        // One firing anywhere makes the same run an escape.
        let mut fired = outcome;
        fired.records[1] = counted("a::c", Status::Pass, 1);
        assert_eq!(
            judge(&plan(&["'a::.*'"]), &fired).outcome,
            PlanOutcome::Escaped
        );
    }

    #[test]
    fn a_crash_without_counts_may_have_fired_so_it_is_judged_as_caught() {
        let outcome = Outcome {
            run: PathBuf::new(),
            records: vec![
                counted("a::b", Status::Pass, 0),
                record("a::c", Status::Crash),
            ],
        };
        let v = judge(&plan(&["a::c"]), &outcome);
        assert_eq!(v.outcome, PlanOutcome::Caught, "{:?}", v.problems);
    }

    /// The engine and the judge together: a case on the reference device under a plan, its
    /// counts copied into its record as the runner does, then judged.
    #[test]
    fn a_rule_that_never_fires_on_a_real_device_is_reported_did_not_fire() {
        use crate::device::sim::testutil;
        use crate::device::{AllocKind, Device, Location};
        let case = |rules: &str| {
            let text = format!("description: d\ncatches: ['a::.*']\nrules:\n{rules}");
            let plan = Plan::parse(&text, Path::new("p.yaml")).unwrap();
            let mut dev = testutil::device();
            dev.set_faults(plan.clone(), testutil::SEED, None);
            let buf = dev.alloc(AllocKind::Managed, 2 * testutil::MIB).unwrap();
            testutil::cpu_fill(&mut dev, buf, buf.all(), 1);
            dev.prefetch(buf, buf.all(), Location::Vram).unwrap();
            testutil::cpu_check(&mut dev, buf, buf.all(), 1);
            let outcome = Outcome {
                run: PathBuf::new(),
                records: vec![CaseRecord {
                    injected: dev.injected(),
                    ..record("a::b", Status::Pass)
                }],
            };
            judge(&plan, &outcome)
        };
        // No eviction happens, and page 600 of the allocation does not exist in 2 MiB.
        let v = case(
            "  - kind: corrupt\n    trigger: eviction\n  - kind: corrupt\n    pages: page 600\n    of: allocation\n",
        );
        assert_eq!(v.outcome, PlanOutcome::DidNotFire, "{:?}", v.problems);
        assert_eq!(v.fired, 0);
        // A rule that fires, uncaught, is an escape.
        let v = case("  - kind: slow\n    trigger: prefetch\n");
        assert_eq!(v.outcome, PlanOutcome::Escaped, "{:?}", v.problems);
        assert_eq!((v.fired, v.fired_in), (1, 1));
    }

    #[test]
    fn bad_arguments_and_folders_are_named() {
        let e = parse(&["--bogus".into()]).err().unwrap().to_string();
        assert!(e.contains("unknown argument `--bogus`"), "{e}");
        let e = plans(Path::new("/nonexistent/faults"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("cannot read `/nonexistent/faults`"), "{e}");
    }

    #[test]
    fn every_plan_of_the_catalogue_parses_and_there_are_fifty() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/faults");
        let all = plans(&dir).unwrap_or_else(|e| panic!("{e}"));
        assert!(all.len() >= 50, "{} plans", all.len());
    }
}
