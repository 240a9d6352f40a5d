//! Running the suite: plan the cases from the fixtures, run each on a fresh device, record it in
//! the journal as it finishes, and derive every report from the journal at the end.

pub mod cli;
mod plan;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::case::{Ctx, Stop};
use crate::device::sim::{Breaks, SimDevice};
use crate::device::{Destructive, Device, DeviceInfo};
use crate::fixtures::CaseInstance;
use crate::profile::Profile;
use crate::results::{self, CaseRecord, Status};
use crate::suites::Body;
use cli::{Backend, Options};
pub use plan::Plan;

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
}

/// Runs svmconf with `args` (program name first); the exit code follows libtest (0 all passed
/// or skipped, 101 a failure) and 2 for bad input.
pub fn main_with(args: impl IntoIterator<Item = String>) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("svmconf: error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(args: impl IntoIterator<Item = String>) -> Result<ExitCode, SetupError> {
    let args: Vec<String> = args.into_iter().collect();
    if args.iter().skip(1).any(|a| a == "-h" || a == "--help") {
        print!("{}", cli::USAGE);
        return Ok(ExitCode::SUCCESS);
    }
    let options = Options::parse(args.clone())?;
    let libtest = Arguments::from_iter(options.libtest.clone());
    let opened = open_backend(&options)?;
    let plan = Plan::new(&options, &opened.profile)?;

    // The cases the libtest filters select, known before anything is created.
    let selected = plan
        .instances
        .iter()
        .filter(|i| !libtest.is_filtered_out(&Trial::test(i.name.clone(), || Ok(()))))
        .count();
    if !libtest.list && selected == 0 && (libtest.filter.is_some() || !libtest.skip.is_empty()) {
        return Err(SetupError::Plan(format!(
            "the filter {} matches no case of {} (see `svmconf --list`)",
            describe_filter(&libtest),
            plan.instances.len()
        )));
    }
    if libtest.list {
        let trials = plan
            .instances
            .iter()
            .map(|i| Trial::test(i.name.clone(), || Ok(())))
            .collect();
        let _listed = libtest_mimic::run(&libtest, trials);
        return Ok(ExitCode::SUCCESS);
    }

    let (run_id, dir) = create_run_dir(&options.results, &opened, options.seed)?;
    let mut info = results::RunInfo::start(
        run_id,
        &opened.info,
        &opened.profile.value.name,
        options.seed,
        args,
        plan.fixtures.clone(),
    );
    let journal = match results::Journal::create(&dir).and_then(|j| info.write(&dir).map(|_| j)) {
        Ok(j) => j,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
    };
    println!(
        "svmconf: {selected} of {} cases on {} (profile {}, seed {}); results in {}",
        plan.instances.len(),
        opened.info.name,
        opened.profile.value.name,
        options.seed,
        dir.display()
    );

    let shared = Arc::new(Shared {
        options: options.clone(),
        profile: opened.profile.value.clone(),
        info: opened.info.clone(),
        backend: opened.backend.clone(),
        breaks: opened.breaks,
        journal: Mutex::new(journal),
        destructive: options.allow_destructive.then_some(Destructive(())),
    });
    let trials = plan
        .instances
        .into_iter()
        .zip(plan.bodies)
        .map(|(instance, body)| {
            let shared = Arc::clone(&shared);
            Trial::ignorable_test(instance.name.clone(), move || {
                shared.run_case(&instance, body)
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&libtest, trials);

    let records = results::journal::read(&dir.join(results::JOURNAL_FILE))?;
    info.finish();
    info.write(&dir)?;
    results::write_junit(&records, &info, &dir.join(results::JUNIT_FILE))?;
    if let Some(extra) = &options.junit {
        results::write_junit(&records, &info, extra)?;
    }
    results::write_summary(&records, &info, &dir.join(results::SUMMARY_FILE))?;
    print_failures(&records);
    println!("svmconf: results in {}", dir.display());
    Ok(conclusion.exit_code())
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
    println!("\nsvmconf: {} failed; each repeats with:", failed.len());
    for r in failed {
        println!("  {}", r.repro);
    }
}

/// Makes the run folder `<time>-<host>-<backend>-<profile>-s<seed>` under `root`, with a numeric
/// suffix when a run of the same second already has that name. Nothing is left on failure.
fn create_run_dir(
    root: &Path,
    opened: &Opened,
    seed: u64,
) -> Result<(String, PathBuf), results::ResultsError> {
    let create_err = |path: &Path, source| results::ResultsError::CreateDir {
        path: path.to_path_buf(),
        source,
    };
    let made_root = !root.exists();
    std::fs::create_dir_all(root).map_err(|e| create_err(root, e))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let base = format!(
        "{}-{}-{}-s{seed}",
        results::RunInfo::make_run_id(time::OffsetDateTime::now_utc(), host.trim()),
        opened.backend,
        opened.profile.value.name
    );
    for n in 0..100 {
        let id = if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let dir = root.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                if made_root {
                    let _ = std::fs::remove_dir(root);
                }
                return Err(create_err(&dir, e));
            }
        }
    }
    Err(create_err(
        &root.join(base),
        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
    ))
}

/// A backend chosen and its profile loaded, before any case runs.
struct Opened {
    backend: String,
    profile: crate::fixtures::Loaded<Profile>,
    info: DeviceInfo,
    breaks: Breaks,
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

fn open_backend(options: &Options) -> Result<Opened, SetupError> {
    let root = fixtures_root(options);
    match options.backend {
        // No GPU backend is built into this binary yet: auto means the reference device.
        Backend::Auto | Backend::Sim => {
            let name = options.profile.as_deref().unwrap_or("sim");
            let profile = crate::fixtures::load_profile(&root, name)
                .map_err(|e| SetupError::Plan(format!("--profile {name}: {e}")))?;
            let breaks = Breaks::parse(options.sim_break.as_deref().unwrap_or(""))
                .map_err(|e| SetupError::Plan(format!("--sim-break: {e}")))?;
            let dev = SimDevice::new(&profile.value, options.seed, breaks)
                .map_err(|e| SetupError::Plan(format!("--profile {}: {e}", profile.value.name)))?;
            let info = dev.info().clone();
            Ok(Opened {
                backend: "sim".into(),
                profile,
                info,
                breaks,
            })
        }
    }
}

/// What every case of a run shares.
struct Shared {
    options: Options,
    profile: Profile,
    info: DeviceInfo,
    backend: String,
    breaks: Breaks,
    journal: Mutex<results::Journal>,
    destructive: Option<Destructive>,
}

impl Shared {
    fn run_case(&self, instance: &CaseInstance, body: Body) -> Result<Completion, Failed> {
        let started = results::now_rfc3339();
        let clock = Instant::now();
        let seed = case_seed(self.options.seed, &instance.name);
        let repro = format!(
            "svmconf '{}' --exact {}",
            instance.name,
            self.options.repro_flags(&self.backend, &self.profile.name)
        );
        let mut record = CaseRecord {
            case: instance.name.clone(),
            status: Status::Pass,
            reason: None,
            started,
            duration_s: 0.0,
            seed,
            kind: instance.kind.name().to_string(),
            size: instance.size,
            metrics: Vec::new(),
            evidence: Vec::new(),
            repro,
            ..CaseRecord::blank()
        };

        let unmet = plan::needs(body, instance)
            .find_map(|need| need.unmet(&self.info, &self.profile, self.destructive.is_some()));
        let outcome = match unmet {
            Some(reason) => Err(Stop::Skip(reason)),
            None => self.run_body(instance, body, seed, &mut record),
        };
        record.duration_s = clock.elapsed().as_secs_f64();
        match outcome {
            Ok(()) => record.status = Status::Pass,
            Err(Stop::Skip(reason)) => {
                record.status = Status::Skip;
                record.reason = Some(reason);
            }
            Err(Stop::Fail(message)) => {
                record.status = Status::Fail;
                record.reason = Some(message);
            }
        }
        let appended = self
            .journal
            .lock()
            .map_err(|_| Failed::from("journal lock poisoned"))?
            .append(&record);
        if let Err(e) = appended {
            return Err(Failed::from(format!(
                "{}: the result could not be recorded: {e}",
                record.case
            )));
        }
        match record.status {
            Status::Skip => Ok(Completion::ignored_with(record.reason.unwrap_or_default())),
            Status::Pass => Ok(Completion::Completed),
            _ => Err(Failed::from(failure_text(&record))),
        }
    }

    fn run_body(
        &self,
        instance: &CaseInstance,
        body: Body,
        seed: u64,
        record: &mut CaseRecord,
    ) -> Result<(), Stop> {
        let mut dev = self.open_device(seed)?;
        let mut ctx = Ctx::new(
            dev.as_mut(),
            &self.profile,
            seed,
            instance.size,
            instance.kind,
            &instance.params,
            instance.repeat,
            self.destructive.as_ref(),
        );
        let result =
            catch_unwind(AssertUnwindSafe(|| (body.run)(&mut ctx))).unwrap_or_else(|panic| {
                Err(Stop::Fail(format!(
                    "the case panicked: {}",
                    panic_text(&panic)
                )))
            });
        let (metrics, evidence) = ctx.take_record();
        record.metrics = metrics;
        record.evidence = evidence;
        result
    }

    fn open_device(&self, seed: u64) -> Result<Box<dyn Device>, Stop> {
        match self.backend.as_str() {
            "sim" => SimDevice::new(&self.profile, seed, self.breaks)
                .map(|d| Box::new(d) as Box<dyn Device>)
                .map_err(|e| Stop::Fail(format!("cannot open the reference device: {e}"))),
            other => Err(Stop::Fail(format!("backend {other} cannot open a device"))),
        }
    }
}

/// What libtest prints for a failed case: the message with its evidence, then the repro line.
fn failure_text(r: &CaseRecord) -> String {
    let mut s = r.reason.clone().unwrap_or_default();
    for e in &r.evidence {
        s += &format!("\n  evidence: {e}");
    }
    for m in &r.metrics {
        s += &format!("\n  metric: {m}");
    }
    s += &format!("\n  repeat with: {}", r.repro);
    s
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
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
