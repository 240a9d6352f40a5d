//! Running the suite: plan the cases from the fixtures, run each on a fresh device, record it in
//! the journal as it finishes, and derive every report from the journal at the end.

mod child;
pub mod cli;
mod executor;
mod killmatrix;
mod observe;
mod plan;
mod progress;
mod resume;
pub mod selftest;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use libtest_mimic::{Arguments, Trial};

use crate::device::dmirror;
use crate::device::hip::{self, pci::DeviceSelector, Probe, ProbeError};
use crate::device::observer::ObserverOptions;
use crate::device::remote;
use crate::device::sim::faults::Plan as SimFaults;
use crate::device::sim::{Breaks, SimDevice};
use crate::device::{Destructive, Device, DeviceInfo};
use crate::expectations::Expectations;
use crate::profile::Profile;
use crate::results::{self, CaseRecord};
use crate::shard::ShardSpec;
use cli::{Backend, Options};
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
    Baseline(#[from] crate::baseline::BaselineError),
}

/// Runs svmconf with `args` (program name first, as `std::env::args_os` gives them); the exit
/// code follows libtest (0 all passed or skipped, 101 a failure) and 2 for bad input, an
/// argument that is not UTF-8 included.
pub fn main_with<I>(args: I) -> ExitCode
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    match cli::utf8_args(args).map_err(SetupError::from).and_then(run) {
        Ok(code) => code,
        // clap's own message: what was wrong, a suggestion, the usage line.
        Err(SetupError::Usage(cli::UsageError::Syntax(e))) => {
            e.print();
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("svmconf: error: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(args: Vec<String>) -> Result<ExitCode, SetupError> {
    match args.get(1).map(String::as_str) {
        Some("sensitivity") => return tools::sensitivity(&args[2..]),
        Some("scaling") => return tools::scaling(&args[2..]),
        Some("seeds") => return tools::seeds(&args[2..]),
        _ => {}
    }
    if args.iter().skip(1).any(|a| a == "-h" || a == "--help") {
        print!("{}", cli::help(args.iter().skip(1).any(|a| a == "--help")));
        return Ok(ExitCode::SUCCESS);
    }
    if args.get(1).map(String::as_str) == Some("merge") {
        return merge(&args[2..]);
    }
    if args.get(1).map(String::as_str) == Some("kill-matrix") {
        return killmatrix::kill_matrix(&args[2..]);
    }
    if args.iter().any(|a| a == remote::SERVER_FLAG) {
        return device_server(&Options::parse(args)?);
    }
    let (options, args, resumed) = resume::options(args)?;
    let (options, host) = with_host(options)?;
    let mut libtest = options.libtest.clone();
    let opened = open_backend(&options)?;
    // A GPU or the kernel's test driver is one device that every case shares: a case beside
    // another would see its VRAM in use, its evictions and its migrations. One case at a time
    // there, unless `--test-threads` says otherwise; each sim case has a device of its own.
    if opened.backend != "sim" && libtest.test_threads.is_none() {
        libtest.test_threads = Some(1);
    }
    let mut plan = if options.runner_selftest {
        Plan::selftest()
    } else {
        Plan::new(&options, &opened.profile)?
    };
    if let Some(verdict) = &options.child_verdict {
        return child_case(&options, &opened, plan, &libtest, verdict);
    }
    let shard = options
        .shard
        .as_deref()
        .map(ShardSpec::parse)
        .transpose()
        .map_err(|e| SetupError::Plan(e.to_string()))?;
    if let Some(shard) = shard {
        plan.keep(|i| shard.holds(&i.name));
    }
    // Without a GPU there is nothing to compare with the profile; every case skips.
    if options.preflight && !libtest.list && opened.unavailable.is_none() {
        preflight(&opened, host.as_ref())?;
    }
    let expectations = if options.runner_selftest {
        None
    } else {
        let root = fixtures_root(&options);
        let loaded = Expectations::load(&root, &opened.profile.value.name)?;
        if let Some(l) = &loaded {
            plan.fixtures.push(l.digest());
        }
        loaded.map(|l| l.value)
    };

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
    // Read before the run folder is made: a baseline that cannot be used leaves nothing behind.
    let baseline = match (&options.baseline, libtest.list) {
        (Some(dir), false) => Some(crate::baseline::Baseline::load(
            dir,
            &opened.backend,
            &opened.profile.value.name,
            options.method,
        )?),
        _ => None,
    };
    if libtest.list {
        let trials = plan
            .instances
            .iter()
            .map(|i| Trial::test(i.name.clone(), || Ok(())))
            .collect();
        let _listed = libtest_mimic::run(&libtest, trials);
        return Ok(ExitCode::SUCCESS);
    }

    let (dir, mut info, journal, finished) = match &resumed {
        Some(r) => (
            r.dir.clone(),
            r.info.clone(),
            r.journal()?,
            r.finished.clone(),
        ),
        None => {
            let (run_id, dir) = create_run_dir(&options.results, &opened, options.seed)?;
            let mut info = results::RunInfo::start(
                run_id,
                &opened.info,
                &opened.profile.value.name,
                options.seed,
                args,
                plan.fixtures.clone(),
            );
            info.shard = shard;
            info.baseline = baseline.as_ref().map(|b| b.reference());
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
    let isolation = options.isolate.unwrap_or(if opened.backend == "sim" {
        cli::Isolation::None
    } else {
        cli::Isolation::Process
    });
    println!(
        "svmconf: {} {selected} of {} cases on {} (profile {}, seed {}, isolation {}, {} at a \
         time); results in {}",
        if resumed.is_some() {
            "resuming"
        } else {
            "running"
        },
        plan.instances.len(),
        opened.info.name,
        opened.profile.value.name,
        options.seed,
        isolation.name(),
        libtest.test_threads.map_or_else(
            || std::thread::available_parallelism().map_or(1, |n| n.get()),
            |n| n.max(1)
        ),
        dir.display()
    );
    if let Some(why) = &opened.unavailable {
        println!(
            "svmconf: --backend {}: {why}; every case is skipped",
            opened.backend
        );
    }
    let hardware = opened.backend != "sim" && opened.unavailable.is_none();
    let (watched, mut notes) = watch(&options, hardware, &mut plan)?;
    if let Some(gpu) = &opened.gpu {
        notes.extend(
            gpu.observer_states()
                .into_iter()
                .map(|s| results::Observer {
                    name: s.name.into(),
                    available: s.available,
                    detail: s.detail,
                }),
        );
    }
    for n in &notes {
        if !info.observers.contains(n) {
            info.observers.push(n.clone());
        }
    }
    info.write(&dir)?;
    let runner = Arc::new(Runner {
        dir: Some(dir.clone()),
        journal: Some(Mutex::new(journal)),
        observers: observe::Observers {
            expectations,
            ..watched
        },
        finished,
        progress: Some(Progress::start(
            selected,
            libtest.format.is_none() && !libtest.quiet,
        )),
        baseline,
        ..Runner::new(&options, &opened, isolation)
    });
    if let Some(r) = &resumed {
        runner.record_incomplete(&r.in_flight, &plan.instances)?;
    }
    let trials = plan
        .instances
        .drain(..)
        .zip(plan.bodies.drain(..))
        .map(|(instance, body)| {
            let runner = Arc::clone(&runner);
            Trial::ignorable_test(instance.name.clone(), move || {
                runner.run_case(&instance, body)
            })
        })
        .collect();
    let _conclusion = libtest_mimic::run(&libtest, trials);
    if let Some(p) = &runner.progress {
        p.finish();
    }
    for note in runner.observers.late_notes() {
        if !info.observers.contains(&note) {
            info.observers.push(note);
        }
    }

    let records = results::journal::read(&dir.join(results::JOURNAL_FILE))?;
    info.finish();
    info.write(&dir)?;
    results::write_junit(&records, &info, &dir.join(results::JUNIT_FILE))?;
    if let Some(extra) = &options.junit {
        results::write_junit(&records, &info, extra)?;
    }
    results::write_summary(&records, &info, &dir.join(results::SUMMARY_FILE))?;
    results::write_ktap(&records, &info, &dir.join(results::KTAP_FILE))?;
    if let Some(extra) = &options.ktap {
        results::write_ktap(&records, &info, extra)?;
    }
    print_failures(&records);
    println!("svmconf: results in {}", dir.display());
    Ok(exit_code(&records))
}

/// Takes the defaults of `--host FILE` where the command line leaves them open, and refuses
/// what the host does not allow.
fn with_host(mut options: Options) -> Result<(Options, Option<crate::lab::Host>), SetupError> {
    let Some(path) = options.host.clone() else {
        return Ok((options, None));
    };
    let host = crate::lab::Host::load(&path)
        .map_err(|e| SetupError::Plan(format!("--host {}: {e}", path.display())))?;
    if options.backend == Backend::Auto {
        if let Some(b) = host.backend.as_deref().and_then(Backend::parse) {
            options.backend = b;
        }
    }
    if options.profile.is_none() {
        options.profile = Some(host.profile.clone());
    }
    if options.device.is_none() {
        options.device = host.device.as_ref().and_then(|d| {
            d.pci_bus_id
                .clone()
                .or_else(|| d.index.map(|i| i.to_string()))
        });
    }
    if !options.results_given {
        if let Some(r) = &host.results {
            options.results = r.clone();
        }
    }
    if options.allow_destructive && !host.allows.destructive {
        return Err(SetupError::Plan(format!(
            "--allow-destructive: host `{}` ({}) does not allow destructive cases \
             (allows.destructive is false)",
            host.name,
            path.display()
        )));
    }
    options.sysrq = host.allows.sysrq;
    Ok((options, Some(host)))
}

/// Stops the run before anything is written where the device is not what the profile says,
/// or the machine not what its host file says.
fn preflight(opened: &Opened, lab_host: Option<&crate::lab::Host>) -> Result<(), SetupError> {
    let machine = crate::preflight::Host::this_machine();
    let mut list: Vec<String> =
        match crate::preflight::check(&opened.profile.value, &opened.info, &machine) {
            Ok(()) => Vec::new(),
            Err(differences) => differences.iter().map(|d| d.to_string()).collect(),
        };
    if let Some(h) = lab_host {
        let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
        list.extend(h.differences(&cmdline, &|name| std::env::var(name).ok()));
    }
    if list.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = list.iter().map(|d| format!("  - {d}")).collect();
    Err(SetupError::Plan(format!(
        "preflight: {} is not what profile `{}` expects:\n{}\nfix the machine, the profile \
         or the host file, or rerun with --no-preflight",
        opened.info.name,
        opened.profile.value.name,
        list.join("\n")
    )))
}

/// Opens what the runner watches beside the cases: the kernel log (with its allow-list) and
/// the taint, by default on GPUs only. Says what it could not open, and why, once.
fn watch(
    options: &Options,
    hardware: bool,
    plan: &mut Plan,
) -> Result<(observe::Observers, Vec<results::Observer>), SetupError> {
    let mut notes = Vec::new();
    let mut watched = observe::Observers::default();
    let kmsg = match &options.kmsg {
        Some(p) => Some(p.clone()),
        None if hardware => Some(PathBuf::from(cli::DEV_KMSG)),
        None => None,
    };
    match kmsg {
        None => notes.push(results::Observer {
            name: "kernel_log".into(),
            available: false,
            detail: "not watched: the reference device's migrations do not happen in the \
                     kernel (--kmsg FILE watches a file of kmsg records)"
                .into(),
        }),
        Some(path) => match crate::kmsg::open(Some(&path)) {
            Ok(log) => {
                let allow = crate::fixtures::load_kernel_log_allow_list(&fixtures_root(options))?;
                plan.fixtures.push(allow.digest());
                notes.push(results::Observer {
                    name: "kernel_log".into(),
                    available: true,
                    detail: log.describe(),
                });
                watched.allow = Some(allow.value);
                watched.kernel_log = Some(log);
            }
            Err(e) => {
                let detail = format!("{e}; no case has kernel log evidence");
                println!("svmconf: kernel log: {detail}");
                notes.push(results::Observer {
                    name: "kernel_log".into(),
                    available: false,
                    detail,
                })
            }
        },
    }
    if hardware {
        notes.push(amdgpu_module_params(Path::new(
            crate::device::amd::SYSFS_ROOT,
        )));
    }
    let tainted = match &options.tainted {
        Some(p) => Some(p.clone()),
        None if hardware => Some(PathBuf::from(cli::PROC_TAINTED)),
        None => None,
    };
    match tainted.map(|p| crate::taint::TaintSource::new(&p)) {
        None => notes.push(results::Observer {
            name: "taint".into(),
            available: false,
            detail: "not watched on the reference device (--tainted FILE watches a file)".into(),
        }),
        Some(source) => match source.read() {
            Ok(t) => {
                notes.push(results::Observer {
                    name: "taint".into(),
                    available: true,
                    detail: format!("{} was {t} at the start", source.path().display()),
                });
                watched.taint = Some(source);
            }
            Err(e) => {
                let detail = format!("{e}; no case is checked for taint");
                println!("svmconf: taint: {detail}");
                notes.push(results::Observer {
                    name: "taint".into(),
                    available: false,
                    detail,
                })
            }
        },
    }
    Ok((watched, notes))
}

/// The amdgpu module parameters, for run.json: the ones results depend on first, then the rest.
fn amdgpu_module_params(sys_root: &Path) -> results::Observer {
    use crate::device::amd::modparams::{read_module_params, ParamValue};
    match read_module_params(sys_root) {
        Ok(p) => {
            let shown = |v: &ParamValue| match v {
                ParamValue::Value(v) => v.clone(),
                ParamValue::Unreadable(why) => format!("({why})"),
            };
            let notable: Vec<String> = p
                .notable()
                .into_iter()
                .map(|(n, v)| format!("{}={}", n.name, v.map_or("(absent)".into(), shown)))
                .collect();
            let rest: Vec<String> = p
                .params
                .iter()
                .filter(|(k, _)| !notable.iter().any(|n| n.starts_with(&format!("{k}="))))
                .map(|(k, v)| format!("{k}={}", shown(v)))
                .collect();
            results::Observer {
                name: "amdgpu_module_params".into(),
                available: true,
                detail: format!("{}; others: {}", notable.join(" "), rest.join(" ")),
            }
        }
        Err(e) => results::Observer {
            name: "amdgpu_module_params".into(),
            available: false,
            detail: e.to_string(),
        },
    }
}

/// `svmconf merge OUT RUN_DIR...`: the runs of shards joined into one, with its reports.
fn merge(args: &[String]) -> Result<ExitCode, SetupError> {
    let [out, runs @ ..] = args else {
        return Err(SetupError::Plan(
            "merge: expected `svmconf merge OUT RUN_DIR...`: a new folder, then the shards' run \
             folders"
                .into(),
        ));
    };
    let runs: Vec<PathBuf> = runs.iter().map(PathBuf::from).collect();
    let report = results::merge::merge(Path::new(out), &runs)
        .map_err(|e| SetupError::Plan(format!("merge: {e}")))?;
    println!(
        "svmconf: merged {} runs, {} cases, into {}",
        report.shards.len(),
        report.records,
        report.out_dir.display()
    );
    if !report.missing_shards.is_empty() {
        println!(
            "svmconf: shards missing: {}",
            report
                .missing_shards
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for note in &report.notes {
        println!("svmconf: note: {note}");
    }
    let records = results::journal::read(&report.out_dir.join(results::JOURNAL_FILE))?;
    print_failures(&records);
    Ok(exit_code(&records))
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
    fn new(options: &Options, opened: &Opened, isolation: cli::Isolation) -> Runner {
        Runner {
            options: options.clone(),
            profile: opened.profile.value.clone(),
            profile_arg: options
                .profile
                .clone()
                .unwrap_or_else(|| opened.profile.value.name.clone()),
            info: opened.info.clone(),
            backend: opened.backend.clone(),
            breaks: opened.breaks,
            faults: opened.faults.clone(),
            gpu: opened.gpu.clone(),
            dmirror: opened.dmirror.clone(),
            unavailable: opened.unavailable.clone(),
            fixtures: fixtures_root(options),
            isolation,
            dir: None,
            journal: None,
            destructive: options.allow_destructive.then_some(Destructive(())),
            observers: observe::Observers::default(),
            finished: Default::default(),
            stop: Mutex::new(None),
            stopped: Default::default(),
            progress: None,
            baseline: None,
        }
    }
}

/// A case's child process: runs the one case here and writes its record for the runner.
fn child_case(
    options: &Options,
    opened: &Opened,
    plan: Plan,
    libtest: &Arguments,
    verdict: &Path,
) -> Result<ExitCode, SetupError> {
    // The runner waits for this process; if the runner dies, this case must not go on alone
    // with the GPU.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let wanted = libtest.filter.as_deref().unwrap_or("");
    let Some((instance, body)) = plan
        .instances
        .into_iter()
        .zip(plan.bodies)
        .find(|(i, _)| i.name == wanted)
    else {
        return Err(SetupError::Plan(format!(
            "--child-verdict: no case is named `{wanted}`"
        )));
    };
    let runner = Runner::new(options, opened, cli::Isolation::None);
    let base = runner.blank_record(&instance, 0);
    let record = runner.attempt_here(&instance, body, &base);
    println!("svmconf: {} {}", record.case, record.status);
    let bytes = serde_json::to_vec(&record)
        .map_err(|e| SetupError::Plan(format!("--child-verdict: cannot encode the record: {e}")))?;
    // No sync: the runner reads it as soon as this process exits, and if the machine dies
    // first the case is incomplete whatever this file holds.
    std::fs::write(verdict, &bytes).map_err(|source| results::ResultsError::Write {
        path: verdict.to_path_buf(),
        source,
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `--device-server`: a second process of a case. Opens the device the runner would open for
/// the same backend and selection, and serves it over stdin and stdout to the
/// `RemoteDevice` that started this process, until stdin ends.
fn device_server(options: &Options) -> Result<ExitCode, SetupError> {
    // A server whose parent died must not go on holding the GPU.
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // stdout carries the protocol alone: whatever else prints (discovery's line, a library's
    // message) goes to stderr, which is the parent's.
    let protocol = nix::unistd::dup(std::io::stdout())
        .and_then(|fd| nix::unistd::dup2_stdout(std::io::stderr()).map(|()| fd))
        .map_err(|e| {
            SetupError::Plan(format!(
                "{}: cannot set stdout aside for the protocol: {e}",
                remote::SERVER_FLAG
            ))
        })?;
    let mut dev = open_served(options)?;
    let output = std::io::BufWriter::new(std::fs::File::from(protocol));
    remote::serve(dev.as_mut(), std::io::stdin().lock(), output)
        .map_err(|e| SetupError::Plan(format!("{}: {e}", remote::SERVER_FLAG)))?;
    Ok(ExitCode::SUCCESS)
}

/// The device a `--device-server` serves: a reference device from the profile and seed, or
/// the GPU `--device` names.
fn open_served(options: &Options) -> Result<Box<dyn Device>, SetupError> {
    let flag = remote::SERVER_FLAG;
    match options.backend {
        Backend::Sim => {
            let opened = open_sim(options, &fixtures_root(options))?;
            let dev = SimDevice::new(&opened.profile.value, options.seed, opened.breaks)
                .map_err(|e| SetupError::Plan(format!("{flag}: {e}")))?;
            Ok(Box::new(dev))
        }
        Backend::Hip => match hip::probe(&selector(options)?) {
            Ok(Probe::Gpu(gpu)) => gpu.open().map_err(|e| {
                SetupError::Plan(format!("{flag}: cannot open {}: {e}", gpu.describe()))
            }),
            Ok(Probe::NoGpu(why)) => Err(SetupError::Plan(format!("{flag} --backend hip: {why}"))),
            Err(ProbeError::NotBuilt) => Err(cli::UsageError::HipNotBuilt.into()),
            Err(ProbeError::Unusable(why)) => {
                Err(SetupError::Plan(format!("{flag} --backend hip: {why}")))
            }
        },
        Backend::Dmirror => {
            let node = dmirror::node(options.device.as_deref()).map_err(SetupError::Plan)?;
            dmirror::DmirrorDevice::open(&node)
                .map(|d| Box::new(d) as Box<dyn Device>)
                .map_err(|e| SetupError::Plan(format!("{flag} --backend dmirror: {e}")))
        }
        Backend::Auto => Err(SetupError::Plan(format!(
            "{flag}: name the backend (--backend sim, hip or dmirror): a second process must open the \
             device its parent runs on, not look for one"
        ))),
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
    /// The sim's fault plan (`--sim-faults`).
    faults: Option<SimFaults>,
    /// The GPU each case opens a device on (hip).
    gpu: Option<hip::Gpu>,
    /// The test driver's node each case opens a device on (dmirror).
    dmirror: Option<dmirror::Node>,
    /// Why no case can run on this backend here: each skips with it.
    unavailable: Option<String>,
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

/// The GPU `--device` names, else the first.
fn selector(options: &Options) -> Result<DeviceSelector, SetupError> {
    Ok(match &options.device {
        None => DeviceSelector::First,
        Some(d) => DeviceSelector::parse(d).ok_or_else(|| cli::UsageError::Device(d.clone()))?,
    })
}

fn open_backend(options: &Options) -> Result<Opened, SetupError> {
    let root = fixtures_root(options);
    if options.backend == Backend::Dmirror {
        return open_dmirror(options, &root);
    }
    let selector = selector(options)?;
    let probe = match options.backend {
        Backend::Sim | Backend::Dmirror => None,
        Backend::Hip => match hip::probe(&selector) {
            Ok(p) => Some(p),
            Err(ProbeError::NotBuilt) => return Err(cli::UsageError::HipNotBuilt.into()),
            Err(ProbeError::Unusable(why)) => {
                return Err(SetupError::Plan(format!("--backend hip: {why}")))
            }
        },
        Backend::Auto => match hip::probe(&selector) {
            Ok(Probe::Gpu(gpu)) => Some(Probe::Gpu(gpu)),
            Ok(Probe::NoGpu(_)) | Err(ProbeError::NotBuilt) => None,
            // A GPU is there: running the reference device instead would hide that.
            Err(ProbeError::Unusable(why)) => {
                return Err(SetupError::Plan(format!(
                    "--backend auto found an AMD GPU it cannot use: {why}; run with --backend \
                     sim for the reference device"
                )))
            }
        },
    };
    match probe {
        None => {
            if let Some(d) = &options.device {
                return Err(cli::UsageError::DeviceOnSim(d.clone()).into());
            }
            open_sim(options, &root)
        }
        Some(probe) => open_hip(options, &root, probe),
    }
}

fn open_sim(options: &Options, root: &Path) -> Result<Opened, SetupError> {
    if options.amdgpu_trace {
        return Err(SetupError::Plan(
            "--amdgpu-trace: the reference device's migrations do not happen in the kernel, so \
             there is no trace to read; it is for --backend hip"
                .into(),
        ));
    }
    let name = options.profile.as_deref().unwrap_or("sim");
    let profile = crate::fixtures::load_profile(root, name)
        .map_err(|e| SetupError::Plan(format!("--profile {name}: {e}")))?;
    let breaks = Breaks::parse(options.sim_break.as_deref().unwrap_or(""))
        .map_err(|e| SetupError::Plan(format!("--sim-break: {e}")))?;
    let dev = SimDevice::new(&profile.value, options.seed, breaks)
        .map_err(|e| SetupError::Plan(format!("--profile {}: {e}", profile.value.name)))?;
    let faults = match &options.sim_faults {
        None => None,
        Some(file) => {
            let plan = SimFaults::load(file)
                .map_err(|e| SetupError::Plan(format!("--sim-faults: {e}")))?;
            if plan.logs() && options.kmsg.is_none() {
                return Err(SetupError::Plan(format!(
                    "--sim-faults {}: its kernel_log rules write kernel log lines; give the \
                     file they go to and the runner reads with --kmsg FILE",
                    file.display()
                )));
            }
            Some(plan)
        }
    };
    let info = dev.info().clone();
    Ok(Opened {
        backend: "sim".into(),
        profile,
        info,
        breaks,
        faults,
        gpu: None,
        dmirror: None,
        unavailable: None,
    })
}

/// The hip backend: the GPU found and the profile whose `arch` is its processor, or, without
/// a GPU, a run in which every case skips with what HIP said (planned with `--profile`, else
/// the reference profile, since no device says which).
fn open_hip(options: &Options, root: &Path, probe: Probe) -> Result<Opened, SetupError> {
    if options.sim_break.is_some() || options.sim_faults.is_some() {
        return Err(SetupError::Plan(
            "--sim-break, --sim-faults: only the reference device (--backend sim) can be \
             broken on purpose"
                .into(),
        ));
    }
    let load = |name: &str| {
        crate::fixtures::load_profile(root, name)
            .map_err(|e| SetupError::Plan(format!("--profile {name}: {e}")))
    };
    let (profile, info, gpu, unavailable) = match probe {
        Probe::Gpu(gpu) => {
            let profile = match &options.profile {
                Some(name) => load(name)?,
                None => profile_for(root, gpu.processor())?,
            };
            println!("svmconf: {}", gpu.describe());
            let mut gpu = *gpu;
            if options.amdgpu_trace {
                let trace = crate::fixtures::load_amdgpu_trace(root)?;
                gpu.set_observer_options(ObserverOptions {
                    amdgpu_trace: Some(trace.value),
                });
            }
            (profile, gpu.info(), Some(gpu), None)
        }
        Probe::NoGpu(why) => (
            load(options.profile.as_deref().unwrap_or("sim"))?,
            hip::no_gpu_info(),
            None,
            Some(why),
        ),
    };
    Ok(Opened {
        backend: "hip".into(),
        profile,
        info,
        breaks: Breaks::default(),
        faults: None,
        gpu,
        dmirror: None,
        unavailable,
    })
}

/// The dmirror backend: the test driver's node (`--device`, else /dev/hmm_dmirror0) and the
/// `dmirror` profile, or, without the node, a run in which every case skips saying which
/// module is missing.
fn open_dmirror(options: &Options, root: &Path) -> Result<Opened, SetupError> {
    if options.sim_break.is_some() || options.sim_faults.is_some() || options.amdgpu_trace {
        return Err(SetupError::Plan(
            "--sim-break, --sim-faults, --amdgpu-trace: not for --backend dmirror (the first two \
             break only the reference device, the last reads amdgpu's trace)"
                .into(),
        ));
    }
    let node = dmirror::node(options.device.as_deref()).map_err(SetupError::Plan)?;
    let name = options.profile.as_deref().unwrap_or("dmirror");
    let profile = crate::fixtures::load_profile(root, name)
        .map_err(|e| SetupError::Plan(format!("--profile {name}: {e}")))?;
    let probe = dmirror::probe(&node)
        .map_err(|why| SetupError::Plan(format!("--backend dmirror: {why}")))?;
    let (info, found, unavailable) = match probe {
        dmirror::Probe::Node(n) => {
            println!("svmconf: {}", n.describe());
            (n.info(), Some(n), None)
        }
        dmirror::Probe::Missing(why) => (dmirror::missing_info(&node), None, Some(why)),
    };
    Ok(Opened {
        backend: "dmirror".into(),
        profile,
        info,
        breaks: Breaks::default(),
        faults: None,
        gpu: None,
        dmirror: found,
        unavailable,
    })
}

/// The profile under `root` whose `arch` is `processor` (`gfx942`: mi300x).
fn profile_for(
    root: &Path,
    processor: &str,
) -> Result<crate::fixtures::Loaded<Profile>, SetupError> {
    let names = crate::fixtures::profile_names(root)?;
    for name in &names {
        let p = crate::fixtures::load_profile(root, name)?;
        if p.value.arch == processor {
            return Ok(p);
        }
    }
    Err(SetupError::Plan(format!(
        "--backend hip: no profile in {} has `arch: {processor}` (profiles: {}); pass --profile \
         NAME|FILE",
        root.join(crate::fixtures::PROFILES_DIR).display(),
        names.join(", ")
    )))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_json_gets_the_notable_module_parameters_first_and_says_when_there_are_none() {
        let sys = tempfile::tempdir().expect("a temporary folder");
        let params = sys.path().join("module/amdgpu/parameters");
        std::fs::create_dir_all(&params).expect("the parameters folder");
        std::fs::write(params.join("noretry"), "0\n").expect("a parameter");
        std::fs::write(params.join("lockup_timeout"), "10000\n").expect("a parameter");
        let note = amdgpu_module_params(sys.path());
        assert!(note.available);
        assert!(note.detail.starts_with("noretry=0 "), "{}", note.detail);
        assert!(
            note.detail.ends_with("others: lockup_timeout=10000"),
            "{}",
            note.detail
        );
        let none = amdgpu_module_params(&sys.path().join("elsewhere"));
        assert!(
            !none.available && none.detail.contains("elsewhere"),
            "{}",
            none.detail
        );
    }
}
