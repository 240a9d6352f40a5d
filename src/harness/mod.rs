//! Running the suite: plan the cases from the fixtures, run each on a fresh device, record it in
//! the journal as it finishes, and derive every report from the journal at the end.

/// Where svmconf's own lines go: standard output beside libtest's, except where libtest writes
/// a machine-read stream there (`--format json`), which must hold nothing else: then standard
/// error.
static OWN_LINES_TO_STDERR: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// A line of svmconf's own ([`OWN_LINES_TO_STDERR`]), as `println!` writes one.
macro_rules! say {
    ($($arg:tt)*) => {
        if $crate::harness::own_lines_to_stderr() {
            eprintln!($($arg)*)
        } else {
            println!($($arg)*)
        }
    };
}

/// Whether svmconf's own lines go to standard error ([`OWN_LINES_TO_STDERR`]).
pub(crate) fn own_lines_to_stderr() -> bool {
    OWN_LINES_TO_STDERR.load(std::sync::atomic::Ordering::Relaxed)
}

mod child;
pub mod cli;
mod executor;
pub mod expectations;
mod interrupt;
pub mod lab;
mod merge;
mod plan;
pub mod preflight;
mod progress;
mod resume;
pub mod selftest;
mod server;
mod verdict;
mod watch;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Trial};

use crate::device::backend::{self, Backend};
use crate::device::registry;
use crate::device::remote;
use crate::device::Destructive;
use crate::harness::expectations::Expectations;
use crate::model::shard::ShardSpec;
use crate::model::status::Status;
use crate::results::{self, CaseRecord};
use cli::Options;
use executor::Runner;
pub use plan::Plan;
use progress::Progress;

/// Exit status for bad input: flags, fixtures, the results folder.
pub const EXIT_USAGE: u8 = 2;

/// An error before any case ran: nothing was recorded, nothing is left behind.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Usage(#[from] cli::UsageError),
    #[error(transparent)]
    Fixtures(#[from] crate::fixtures::FixtureError),
    #[error("{0}")]
    Plan(String),
    #[error(transparent)]
    Results(#[from] results::ResultsError),
    #[error(transparent)]
    Baseline(#[from] crate::results::baseline::BaselineError),
    #[error(transparent)]
    Backend(#[from] backend::BackendError),
    /// The device or the machine is not what the profile or the host file says: not bad
    /// input, but nothing to test here (`--bisect` exits 125 on it).
    #[error("{0}")]
    Preflight(String),
}

/// `--bisect`: the kernel cannot be tested here (no device, a preflight mismatch, every case
/// skipped): `git bisect run` skips the commit.
pub const EXIT_BISECT_SKIP: u8 = 125;
/// `--bisect`: bad input (flags, fixtures, an unwritable folder): above 127, so that
/// `git bisect run` stops rather than take the commit for bad.
pub const EXIT_BISECT_ABORT: u8 = 255;

/// Whether `args` ask for `git bisect run`'s exit statuses, read before they are parsed (a
/// command line that does not parse must still end the bisect).
pub fn asks_bisect(args: &[String]) -> bool {
    args.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--bisect")
}

/// The exit status of a setup error: 2, or under `--bisect` 125 where the machine cannot test
/// (a preflight mismatch) and 255 for bad input.
pub fn setup_exit_code(e: &SetupError, bisect: bool) -> u8 {
    match (bisect, e) {
        (false, _) => EXIT_USAGE,
        (true, SetupError::Preflight(_)) => EXIT_BISECT_SKIP,
        (true, _) => EXIT_BISECT_ABORT,
    }
}

/// A run's exit status under `--bisect`: 101 (bad) when a case failed, 125 (cannot test) when
/// no case gave a verdict on the kernel (every case skipped or never ran), else 0 (good).
pub fn bisect_code(records: &[CaseRecord]) -> u8 {
    if records.iter().any(|r| r.status.is_failure()) {
        101
    } else if records
        .iter()
        .all(|r| matches!(r.status, Status::Skip | Status::Notrun))
    {
        EXIT_BISECT_SKIP
    } else {
        0
    }
}

/// Runs the suite, or `merge`, with `args` (program name first); the exit code follows libtest
/// (0 all passed or skipped, 101 a failure). The tools around the suite are dispatched by
/// [`crate::tools::main_with`] before this.
///
/// A run is a sequence of named stages, as IGT's runner reads: `parse` the command line,
/// `open` the backend (the plan needs the profile it chose), `plan` the cases, `begin` the run
/// folder, `execute` the cases, `report` from the journal. Everything that can be
/// refused is refused before `begin` writes anything.
pub fn run(args: Vec<String>) -> Result<ExitCode, SetupError> {
    if args.iter().skip(1).any(|a| a == "-h" || a == "--help") {
        print!("{}", cli::help(args.iter().skip(1).any(|a| a == "--help")));
        return Ok(ExitCode::SUCCESS);
    }
    if asks_for_break_help(&args) {
        print!("{}", break_help());
        return Ok(ExitCode::SUCCESS);
    }
    if args.get(1).map(String::as_str) == Some("merge") {
        return merge::run(&args[2..]);
    }
    if args.iter().any(|a| a == remote::SERVER_FLAG) {
        return server::serve(&Options::parse(args)?);
    }
    let mut invocation = parse(args)?;
    OWN_LINES_TO_STDERR.store(
        invocation.libtest.format == Some(libtest_mimic::FormatSetting::Json),
        std::sync::atomic::Ordering::Relaxed,
    );
    let opened = open(&mut invocation)?;
    let cases = if invocation.options.runner_selftest {
        Plan::selftest()
    } else {
        Plan::new(&invocation.options, opened.profile())?
    };
    // Every case of the plan is a candidate owner of a foreign page; a case's child process
    // plans the same cases, and so traces a page as the runner would.
    crate::model::owners::set_run_cases(cases.instances.iter().map(|i| {
        let seed = case_seed(invocation.options.seed, &i.name);
        (i.name.clone(), seed)
    }));
    if let Some(verdict) = &invocation.options.child_verdict {
        return verdict::run_case(&invocation, &opened, cases, verdict);
    }
    let planned = plan(&invocation, opened.as_ref(), cases)?;
    if invocation.libtest.list {
        return Ok(list(&invocation.libtest, &planned.plan));
    }
    backend::check_capabilities(opened.as_ref(), invocation.options.seed)?;
    let begun = begin(&invocation, &opened, planned)?;
    let begun = execute(&invocation.libtest, begun);
    report(&invocation.options, begun)
}

/// Whether the command line is asking what `--sim-break` takes (`--sim-break help`).
fn asks_for_break_help(args: &[String]) -> bool {
    args.iter().skip(1).enumerate().any(|(i, a)| {
        a == "--sim-break=help"
            || (a == "--sim-break" && args.get(i + 2).is_some_and(|v| v == "help"))
    })
}

/// The sim's breaks, one per line with what each does: `--sim-break help`.
fn break_help() -> String {
    let names = crate::device::sim::Breaks::NAMES;
    let width = names.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    let mut s = String::from(
        "The sim's breaks: --sim-break A,B turns them on, each breaking one path of the reference\n\
         device on purpose so that the suite can be seen to catch it (fault plans, --sim-faults,\n\
         break paths more finely).\n\n",
    );
    for (name, what) in names {
        s += &format!("  {name:width$}  {what}\n");
    }
    s
}

/// What the command line asked for, once read.
struct Invocation {
    options: Options,
    /// The command line to record in run.json (a resumed run's own).
    args: Vec<String>,
    resumed: Option<resume::Resumed>,
    host: Option<crate::harness::lab::Host>,
    /// libtest's options, with the backend's number of cases at a time once opened.
    libtest: Arguments,
}

/// Stage parse: the command line, or a resumed run's own, with a lab host's defaults.
fn parse(args: Vec<String>) -> Result<Invocation, SetupError> {
    let (options, args, resumed) = resume::options(args)?;
    let (options, host) = lab::with_host(options)?;
    // Said of the flag that names it, before the profile or the cases are looked for in it.
    if let Some(dir) = &options.fixtures {
        if !dir.is_dir() {
            return Err(SetupError::Plan(format!(
                "--fixtures {}: {}",
                dir.display(),
                if dir.exists() {
                    "a file, not a folder; give the folder that holds cases.yaml and profiles/"
                } else {
                    "no such folder"
                }
            )));
        }
    }
    Ok(Invocation {
        libtest: options.libtest.clone(),
        options,
        args,
        resumed,
        host,
    })
}

/// Stage open: the backend, and from it how many cases run at a time.
fn open(invocation: &mut Invocation) -> Result<Arc<dyn Backend>, SetupError> {
    let opened = open_backend(&invocation.options)?;
    if let Some(line) = opened.describe() {
        say!("svmconf: {line}");
    }
    // Hardware is one device that every case shares: a case beside another would see its VRAM
    // in use, its evictions and its migrations; the backend says how many at a time.
    if invocation.libtest.test_threads.is_none() {
        invocation.libtest.test_threads = opened.default_threads();
    }
    Ok(opened)
}

/// The cases of this run and everything they are judged with, read before anything is written.
struct Planned {
    plan: Plan,
    /// Every case of the plan, in order, before `--shard` ([`results::RunInfo::plan`]).
    order: Vec<String>,
    shard: Option<ShardSpec>,
    expectations: Option<Expectations>,
    baseline: Option<crate::results::baseline::Baseline>,
    /// The cases the libtest filters select.
    selected: usize,
}

/// Stage plan: this shard's cases, the machine checked against the profile, the expectations
/// and the baseline loaded, the filters checked to select something.
fn plan(
    invocation: &Invocation,
    opened: &dyn Backend,
    mut plan: Plan,
) -> Result<Planned, SetupError> {
    let options = &invocation.options;
    let libtest = &invocation.libtest;
    let shard = options
        .shard
        .as_deref()
        .map(ShardSpec::parse)
        .transpose()
        .map_err(|e| SetupError::Plan(e.to_string()))?;
    // The whole plan's order, before the shard keeps its part: the order of every report.
    let order: Vec<String> = plan.instances.iter().map(|i| i.name.clone()).collect();
    if let Some(shard) = shard {
        plan.keep(|i| shard.holds(&i.name));
    }
    // Without a GPU there is nothing to compare with the profile; every case skips.
    if options.preflight && !libtest.list && opened.unavailable().is_none() {
        preflight::stop_unless_ready(opened, invocation.host.as_ref())?;
    }
    let expectations = if options.runner_selftest {
        None
    } else {
        let root = fixtures_root(options);
        let loaded = Expectations::load(&root, &opened.profile().value.name)?;
        if let Some(l) = &loaded {
            plan.fixtures.push(l.digest());
        }
        loaded.map(|l| l.value)
    };
    let selected = plan
        .instances
        .iter()
        .filter(|i| !libtest.is_filtered_out(&Trial::test(i.name.clone(), || Ok(()))))
        .count();
    if !libtest.list && selected == 0 && (libtest.filter.is_some() || !libtest.skip.is_empty()) {
        return Err(SetupError::Plan(format!(
            "the filter {} matches no case of {} (see `svmconf --list`)",
            describe_filter(libtest),
            plan.instances.len()
        )));
    }
    // The copies of the reports asked for go where they can be written, or nothing starts: a
    // path found unwritable after the run would leave its reports half made.
    if !libtest.list {
        for (flag, path) in [("--junit", &options.junit), ("--ktap", &options.ktap)] {
            if let Some(path) = path {
                results::check_writable(path)
                    .map_err(|e| SetupError::Plan(format!("{flag}: {e}")))?;
            }
        }
    }
    // Read before the run folder is made: a baseline that cannot be used leaves nothing behind.
    let baseline = match (&options.baseline, libtest.list) {
        (Some(dir), false) => Some(crate::results::baseline::Baseline::load(
            dir,
            opened.name(),
            &opened.profile().value.name,
            options.method,
        )?),
        _ => None,
    };
    Ok(Planned {
        plan,
        order,
        shard,
        expectations,
        baseline,
        selected,
    })
}

/// `--list`: every planned case, one per line, as libtest lists. A reader that stops reading
/// (`svmconf --list | head`) has what it wanted: libtest's printer panics on the closed pipe,
/// and that one panic is taken as the end of the listing, not as a crash.
fn list(libtest: &Arguments, plan: &Plan) -> ExitCode {
    let trials = plan
        .instances
        .iter()
        .map(|i| Trial::test(i.name.clone(), || Ok(())))
        .collect();
    fn broken_pipe(text: &str) -> bool {
        text.contains("BrokenPipe")
    }
    let hook = std::sync::Arc::new(std::panic::take_hook());
    let default = std::sync::Arc::clone(&hook);
    std::panic::set_hook(Box::new(move |info| {
        if !broken_pipe(&info.to_string()) {
            default(info)
        }
    }));
    let listed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        libtest_mimic::run(libtest, trials)
    }));
    drop(std::panic::take_hook());
    std::panic::set_hook(Box::new(move |info| hook(info)));
    match listed {
        Ok(_) => ExitCode::SUCCESS,
        Err(panic) if broken_pipe(&executor::panic_text(&panic)) => ExitCode::SUCCESS,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// A run under way: its folder, its description and the runner that records into it.
struct Begun {
    dir: PathBuf,
    info: results::RunInfo,
    runner: Arc<Runner>,
    plan: Plan,
}

/// Stage begin: the run folder with its journal and run.json (or the resumed run's), the
/// banner, the kernel log and taint opened, and the runner that every case goes through.
fn begin(
    invocation: &Invocation,
    opened: &Arc<dyn Backend>,
    planned: Planned,
) -> Result<Begun, SetupError> {
    let Invocation {
        options,
        args,
        resumed,
        libtest,
        ..
    } = invocation;
    let Planned {
        mut plan,
        order,
        shard,
        expectations,
        baseline,
        selected,
    } = planned;
    let (dir, mut info, journal, finished) = match resumed {
        Some(r) => (
            r.dir.clone(),
            r.info.clone(),
            r.journal()?,
            r.finished.clone(),
        ),
        None => {
            let (run_id, dir) = results::run_info::create_run_dir(
                &options.results,
                opened.name(),
                &opened.profile().value.name,
                options.seed,
            )?;
            let mut info = results::RunInfo::start(
                run_id,
                opened.info(),
                &opened.profile().value.name,
                options.seed,
                args.clone(),
                plan.fixtures.clone(),
            );
            info.shard = shard;
            info.baseline = baseline.as_ref().map(|b| b.reference());
            info.plan = order;
            let journal =
                match results::Journal::create(&dir).and_then(|j| info.write(&dir).map(|_| j)) {
                    Ok(j) => j,
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(&dir);
                        return Err(e.into());
                    }
                };
            (dir, info, journal, Default::default())
        }
    };
    let isolation = options.isolate.unwrap_or(if opened.isolates_by_default() {
        cli::Isolation::Process
    } else {
        cli::Isolation::None
    });
    // The sim's device name already says its profile.
    let device = &opened.info().name;
    let profile = &opened.profile().value.name;
    let device = if device.contains(&format!("(profile {profile})")) {
        device.clone()
    } else {
        format!("{device} (profile {profile})")
    };
    say!(
        "svmconf: {} {selected} of {} cases on {device}: seed {}, isolation {}, {} at a time; \
         results in {}",
        if resumed.is_some() {
            "resuming"
        } else {
            "running"
        },
        plan.instances.len(),
        options.seed,
        isolation.name(),
        libtest.test_threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n.max(1)
        ),
        dir.display()
    );
    if let Some(why) = opened.unavailable() {
        say!(
            "svmconf: --backend {}: {why}; every case is skipped",
            opened.name()
        );
    }
    let hardware = opened.hardware() && opened.unavailable().is_none();
    let (watched, mut notes) = watch::open(options, hardware, &mut plan)?;
    let one_at_a_time = watched.kernel_log.is_some()
        && isolation == cli::Isolation::None
        && libtest.test_threads != Some(1);
    if one_at_a_time {
        let detail = watch::ONE_AT_A_TIME.to_string();
        eprintln!("svmconf: kernel log: {detail}");
        notes.push(results::Observer {
            name: "kernel_log".into(),
            available: true,
            detail,
        });
    }
    notes.extend(opened.notes().into_iter().map(|n| results::Observer {
        name: n.name,
        available: n.available,
        detail: n.detail,
    }));
    for n in &notes {
        if !info.observers.contains(n) {
            info.observers.push(n.clone());
        }
    }
    info.write(&dir)?;
    let mut runner = Runner {
        dir: Some(dir.clone()),
        journal: Some(Mutex::new(journal)),
        observers: watch::Observers {
            expectations,
            ..watched
        },
        finished,
        progress: Some(Progress::start(
            selected,
            libtest.format.is_none() && !libtest.quiet,
        )),
        baseline,
        one_at_a_time: one_at_a_time.then(|| Mutex::new(())),
        show_evidence: libtest.nocapture || selected == 1,
        ..Runner::new(options, Arc::clone(opened), isolation)
    };
    if let Some(r) = resumed {
        let incomplete = runner.record_incomplete(&r.in_flight, &plan.instances)?;
        runner.previous = r.previous.clone();
        runner.previous.extend(
            incomplete
                .into_iter()
                .map(|i| ((i.case.clone(), i.repetition), i)),
        );
        if !r.interrupted.is_empty() {
            say!(
                "svmconf: {} cases were running when the run was interrupted; they run again",
                r.interrupted.len()
            );
        }
    }
    let runner = Arc::new(runner);
    Ok(Begun {
        dir,
        info,
        runner,
        plan,
    })
}

/// Stage execute: every case through the runner, as libtest trials; each is in the journal
/// once it ends.
fn execute(libtest: &Arguments, mut begun: Begun) -> Begun {
    let runner = Arc::clone(&begun.runner);
    let dir = begun.dir.clone();
    if let Err(e) = interrupt::on_interrupt(move |signal| interrupted(&runner, &dir, signal)) {
        say!("svmconf: note: {e}; an interrupt ends the run without a word in the journal");
    }
    let trials = begun
        .plan
        .instances
        .drain(..)
        .zip(begun.plan.bodies.drain(..))
        .map(|(instance, body)| {
            let runner = Arc::clone(&begun.runner);
            Trial::ignorable_test(instance.name.clone(), move || {
                runner.run_case(&instance, body)
            })
        })
        .collect();
    let _conclusion = libtest_mimic::run(libtest, trials);
    if let Some(p) = &begun.runner.progress {
        p.finish();
    }
    for note in begun.runner.observers.late_notes() {
        if !begun.info.observers.contains(&note) {
            begun.info.observers.push(note);
        }
    }
    begun
}

/// What an interrupt leaves: an `interrupted` line in the journal after the starts of the
/// cases that were running (a resumed run runs them again), and the command that goes on.
fn interrupted(runner: &Runner, dir: &Path, signal: nix::sys::signal::Signal) {
    if let Some(p) = &runner.progress {
        p.finish();
    }
    let mark = results::journal::Interrupted {
        at: results::now_rfc3339(),
        signal: signal.as_str().to_string(),
    };
    // The journal stays locked until the process exits: a case ended by the interrupt is not
    // recorded as a crash after the mark.
    let written = runner.journal.as_ref().map(|j| match j.lock() {
        Ok(mut j) => {
            let done = j.append_interrupted(&mark).map_err(|e| e.to_string());
            std::mem::forget(j);
            done
        }
        Err(_) => Err("the journal lock is poisoned".to_string()),
    });
    let entries =
        results::journal::read_entries(&dir.join(results::JOURNAL_FILE)).unwrap_or_default();
    let ended: std::collections::HashSet<(String, u32)> = entries
        .iter()
        .filter_map(|e| match e {
            results::journal::Entry::End(r) => Some((r.case.clone(), r.repetition)),
            _ => None,
        })
        .collect();
    let running = entries
        .iter()
        .filter_map(|e| match e {
            results::journal::Entry::Start(s)
                if !ended.contains(&(s.case.clone(), s.repetition)) =>
            {
                Some(s.case.as_str())
            }
            _ => None,
        })
        .collect::<std::collections::BTreeSet<_>>();
    let resume = cli::repro_line(
        runner.repro_prefix.as_deref(),
        &format!("--resume {}", cli::shell_word(&dir.to_string_lossy())),
        None,
    );
    eprintln!(
        "\nsvmconf: interrupted by {}; {} finished, {} running ({}) will run again, the rest have \
         not started; the run folder is {}.\nsvmconf: go on with: {resume}",
        signal.as_str(),
        ended.len(),
        running.len(),
        running.iter().copied().collect::<Vec<_>>().join(", "),
        dir.display()
    );
    if let Some(Err(e)) = written {
        eprintln!(
            "svmconf: error: the journal could not record the interrupt ({e}): a resumed run \
             will record the cases that were running as incomplete"
        );
    }
}

/// Stage report: run.json finished, and every report generated from the journal.
fn report(options: &Options, begun: Begun) -> Result<ExitCode, SetupError> {
    let Begun { dir, mut info, .. } = begun;
    let records = results::journal::read(&dir.join(results::JOURNAL_FILE))?;
    info.finish();
    info.write(&dir)?;
    results::write_junit(&records, &info, &dir.join(results::JUNIT_FILE))?;
    results::write_summary(&records, &info, &dir.join(results::SUMMARY_FILE))?;
    results::write_ktap(&records, &info, &dir.join(results::KTAP_FILE))?;
    // The run folder is whole before the copies asked for: a copy that cannot be written now
    // (the disk filled during the run) is said, and the run's own verdict is not lost to it.
    let mut copies = Vec::new();
    if let Some(extra) = &options.junit {
        copies.push(("--junit", results::write_junit(&records, &info, extra)));
    }
    if let Some(extra) = &options.ktap {
        copies.push(("--ktap", results::write_ktap(&records, &info, extra)));
    }
    print_failures(&records);
    say!("svmconf: results in {}", dir.display());
    let mut code = exit_code(&records);
    if options.bisect {
        let b = bisect_code(&records);
        if b == EXIT_BISECT_SKIP {
            say!(
                "svmconf: --bisect: no case gave a verdict ({} recorded, every one skipped or \
                 not run): cannot test this kernel here, exit {b}",
                records.len()
            );
        }
        code = ExitCode::from(b);
    }
    for (flag, written) in copies {
        if let Err(e) = written {
            eprintln!(
                "svmconf: error: {flag}: {e}; the reports are whole in {}",
                dir.display()
            );
            if options.bisect {
                code = ExitCode::from(EXIT_BISECT_ABORT);
            } else if code == ExitCode::SUCCESS {
                code = ExitCode::from(2);
            }
        }
    }
    Ok(code)
}

/// 101 when any case's result was not foreseen (libtest's code for a failed test), else 0.
fn exit_code(records: &[CaseRecord]) -> ExitCode {
    if records.iter().any(|r| r.status.is_failure()) {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    }
}

impl Runner {
    /// A runner for `opened` that records nothing and watches nothing: what a case's child
    /// process needs; the parent adds its run folder, journal, observers and progress.
    fn new(options: &Options, opened: Arc<dyn Backend>, isolation: cli::Isolation) -> Runner {
        Runner {
            options: options.clone(),
            profile_arg: options
                .profile
                .clone()
                .unwrap_or_else(|| opened.profile().value.name.clone()),
            backend: opened,
            fixtures: fixtures_root(options),
            isolation,
            dir: None,
            journal: None,
            destructive: options.allow_destructive.then_some(Destructive(())),
            observers: watch::Observers::default(),
            finished: Default::default(),
            previous: Default::default(),
            show_evidence: false,
            stop: Mutex::new(None),
            stopped: Default::default(),
            progress: None,
            baseline: None,
            one_at_a_time: None,
            repro_prefix: std::env::var(cli::REPRO_PREFIX_ENV)
                .ok()
                .filter(|p| !p.trim().is_empty()),
        }
    }
}

fn describe_filter(args: &Arguments) -> String {
    let mut parts = Vec::new();
    if let Some(f) = &args.filter {
        parts.push(format!("`{f}`{}", if args.exact { " (exact)" } else { "" }));
    }
    for s in &args.skip {
        parts.push(format!("--skip `{s}`"));
    }
    parts.join(" ")
}

fn print_failures(records: &[CaseRecord]) {
    let failed: Vec<&CaseRecord> = records.iter().filter(|r| r.status.is_failure()).collect();
    if failed.is_empty() {
        return;
    }
    say!("\nsvmconf: {} failed; each repeats with:", failed.len());
    for r in failed {
        say!("  {}", r.repro);
    }
}

/// The fixtures folder: `--fixtures`, else `./fixtures`, else the one the binary was built from.
pub fn fixtures_root(options: &Options) -> PathBuf {
    if let Some(dir) = &options.fixtures {
        return dir.clone();
    }
    let here = Path::new("fixtures");
    if here.join("cases.yaml").is_file() {
        return here.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Opens the backend the options name, for the whole run: what the harness hands the device
/// layer of the command line.
fn open_backend(options: &Options) -> Result<Arc<dyn Backend>, SetupError> {
    let settings = backend::Settings {
        backend: Some(options.backend.clone()),
        fixtures: fixtures_root(options),
        profile: options.profile.clone(),
        device: options.device.clone(),
        seed: options.seed,
        sim_break: options.sim_break.clone(),
        sim_faults: options.sim_faults.clone(),
        amdgpu_trace: options.amdgpu_trace,
        kmsg: options.kmsg.clone(),
        place_at: options.place_at,
    };
    Ok(Arc::from(registry::open(&settings)?))
}

/// Each case's own seed: the run's seed mixed with the case name (FNV-1a, then splitmix64), so
/// a case gets the same seed alone (`--exact`) as in the whole run.
pub fn case_seed(run_seed: u64, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = run_seed ^ h;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
