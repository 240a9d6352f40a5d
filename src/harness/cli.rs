//! The command line: svmconf's own options with libtest-mimic's (`--list`, `--exact`, `--skip`,
//! `--ignored`, `--include-ignored`, `--test-threads`, `--format`, a filter) flattened in, all
//! parsed by one clap command, so the binary drives like any Rust test binary, and `--help`,
//! errors and suggestions know every option.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

use crate::device::memory::PLACEABLE;
use crate::device::{registry, PAGE_SIZE};

/// Where a case runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Each case in a child process of its own (the same binary, `NAME --exact`), in its own
    /// process group, under a timeout: a crash or a hang costs one case, not the run.
    Process,
    /// Each case on a thread of the runner: fastest; a crash ends the run (`--resume` goes on).
    None,
}

impl Isolation {
    pub const NAMES: &'static str = "process, none";

    fn parse(s: &str) -> Option<Isolation> {
        match s {
            "process" => Some(Isolation::Process),
            "none" => Some(Isolation::None),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isolation::Process => "process",
            Isolation::None => "none",
        }
    }
}

/// svmconf's own options.
#[derive(Clone, Debug)]
pub struct Options {
    /// `--backend`: `auto` or the name of a backend of [`crate::device::registry::KINDS`].
    pub backend: String,
    /// `--device`: a HIP device index or PCI bus id, as written; checked where the backend
    /// opens. `None`: the first device.
    pub device: Option<String>,
    /// Profile name (fixtures/profiles/NAME.yaml) or file; `None`: the backend's default.
    pub profile: Option<String>,
    pub seed: u64,
    /// `--host FILE`: a lab machine's description, whose settings are the defaults.
    pub host: Option<PathBuf>,
    /// Whether `--results` was given (a host file's `results` is the default otherwise).
    pub results_given: bool,
    /// Whether a timed-out case may get a kernel task dump (a host file can forbid it).
    pub sysrq: bool,
    /// Where run folders are made.
    pub results: PathBuf,
    /// An extra copy of the JUnit report.
    pub junit: Option<PathBuf>,
    pub allow_destructive: bool,
    /// Sim switches that break a migration path on purpose (`--sim-break a,b`).
    pub sim_break: Option<String>,
    /// A fault plan for the sim (`--sim-faults FILE`, `fixtures/faults/*.yaml`).
    pub sim_faults: Option<PathBuf>,
    /// The fixtures folder; `None`: `./fixtures`, else the one the binary was built with.
    pub fixtures: Option<PathBuf>,
    /// `None`: the backend's default (process on hardware, none on sim).
    pub isolate: Option<Isolation>,
    /// Overrides every case's timeout from the fixtures, in seconds.
    pub timeout_s: Option<f64>,
    /// Seconds between SIGTERM and SIGKILL for a case past its timeout.
    pub kill_grace_s: f64,
    /// The kernel log to read: a file of kmsg records (tests, replays); `None`: /dev/kmsg on
    /// GPUs, nothing on sim, whose migrations do not happen in the kernel.
    pub kmsg: Option<PathBuf>,
    /// `--place-at ADDR`: where each case's first host allocation goes, the rest after it, so
    /// that a failure that depends on where memory lands repeats.
    pub place_at: Option<u64>,
    /// Where the kernel's taint is read (tests); `None`: /proc/sys/kernel/tainted on GPUs,
    /// nothing on sim.
    pub tainted: Option<PathBuf>,
    pub continue_on_taint: bool,
    /// Turn on the series' dynamic-debug trace and read it as migration evidence (GPUs).
    pub amdgpu_trace: bool,
    /// A run folder to continue.
    pub resume: Option<PathBuf>,
    /// An extra copy of the KTAP report.
    pub ktap: Option<PathBuf>,
    /// `--shard K/N` as written; checked where the shard is chosen.
    pub shard: Option<String>,
    /// Extra attempts for a case that does not pass.
    pub retries: u32,
    /// Runs of each case.
    pub repeat: u32,
    /// `--reps N`: timed repetitions of every timed step, in place of the fixtures' `reps`.
    pub reps: Option<u32>,
    /// `--baseline DIR`: an earlier run whose timings each case is compared with.
    pub baseline: Option<PathBuf>,
    /// `--tolerance` and `--alpha`: what counts as a regression against the baseline.
    pub method: crate::model::regress::Method,
    pub preflight: bool,
    /// `--bisect`: exit statuses `git bisect run` reads ([`crate::harness::bisect_code`]).
    pub bisect: bool,
    /// `--decide-budget SECS`: with a baseline, the time a case may spend on more runs while
    /// its timings are undecided ([`DEFAULT_DECIDE_BUDGET`]; zero: never).
    pub decide_budget: std::time::Duration,
    /// The runner's own test cases instead of the suite (crash, hang, output, kernel log).
    pub runner_selftest: bool,
    /// Set on a case's child process: run the one case here and write its record to this file.
    pub child_verdict: Option<PathBuf>,
    /// Set on a second process of a case (`Device::spawn_process` on hip): open the device and
    /// serve it over stdin and stdout (`device::remote`), nothing else.
    pub device_server: bool,
    /// libtest's options and filter, as libtest-mimic runs them.
    pub libtest: libtest_mimic::Arguments,
}

pub const DEFAULT_SEED: u64 = 1;
pub const DEFAULT_KILL_GRACE_S: f64 = 10.0;
pub const DEFAULT_RESULTS: &str = "results";
pub const DEV_KMSG: &str = "/dev/kmsg";
pub const PROC_TAINTED: &str = "/proc/sys/kernel/tainted";

const SVMCONF: &str = "Svmconf options";
const RUNNER: &str = "Runner options";
const TIMINGS: &str = "Timings";
const LIBTEST: &str = "Libtest options (as any Rust test binary)";

/// The subcommands, which take their own arguments (`svmconf sensitivity --help`, ...).
const SUBCOMMANDS: &str = "\
Subcommands:
  svmconf merge OUT RUN_DIR...  join the runs of shards into OUT and write its reports
  svmconf kill-matrix [--faults DIR] [--keep DIR] [-- RUN OPTIONS]
                                run the suite on the reference device once per fault plan
                                (fixtures/faults) and fail if a plan is caught by none of
                                the cases it names
  svmconf planted-matrix [--plan FILE] [--out DIR] [-- RUN OPTIONS]
                                in the VM lab (lab/vm/run --vsvm): turn on each bug planted
                                in the virtual SVM GPU (fixtures/planted/vsvm.yaml) and fail
                                unless its cases catch it with their diagnosis
  svmconf sensitivity [--help]  how often the baseline comparison catches a slowdown
  svmconf scaling [--help]      each path's time against size: the exponent of a power law
  svmconf seeds [--help]        the whole suite on many seeds: failures must be 0

Exit status: 0 when every result was foreseen, 101 when one was not, 2 for bad input.";

/// The command line as clap reads it, as svmconf has always read it: a value is the next word
/// whatever it looks like (`--seed -3` is a bad seed, not two flags), and an option of
/// svmconf's given twice keeps its last value (libtest's refuse a second one, as they did).
/// libtest-mimic's own help template and note are replaced by this command's.
#[derive(clap::Parser, Debug)]
#[command(
    name = "svmconf",
    about = "svmconf: conformance suite for GPU shared virtual memory migration",
    help_template = "{about-with-newline}\n{usage-heading} {usage}\n\n{all-args}{after-help}",
    after_help = SUBCOMMANDS,
    disable_version_flag = true
)]
struct Cli {
    #[arg(
        long,
        value_name = "auto|sim|hip|dmirror|vsvm",
        value_parser = parse_backend,
        allow_hyphen_values = true,
        overrides_with = "backend",
        help_heading = SVMCONF,
        help = "device to run on (default auto)",
        long_help = "device to run on (default auto: a GPU when one is found, else the vsvm \
                     render node where\nthere is one, else sim; hip needs a binary built with \
                     --features hip; dmirror is the\nkernel's device-private test driver, \
                     CONFIG_TEST_HMM; vsvm, the kernel's virtual SVM GPU,\nCONFIG_DRM_VSVM)"
    )]
    backend: Option<String>,
    #[arg(
        long,
        value_name = "N|PCI|PATH",
        allow_hyphen_values = true,
        overrides_with = "device",
        help_heading = SVMCONF,
        help = "which GPU: a HIP device index or a PCI bus id (default the first)",
        long_help = "which GPU: a HIP device index or a PCI bus id (0000:c1:00.0); default the \
                     first.\ndmirror: N or the node (default /dev/hmm_dmirror0)\nvsvm: renderD<N> \
                     or the node (default the render node whose device is vsvm)"
    )]
    device: Option<String>,
    #[arg(
        long,
        value_name = "NAME|FILE",
        allow_hyphen_values = true,
        overrides_with = "profile",
        help_heading = SVMCONF,
        help = "device profile (fixtures/profiles/NAME.yaml; default: sim on sim)"
    )]
    profile: Option<String>,
    #[arg(
        long,
        value_name = "N",
        value_parser = parse_seed,
        allow_hyphen_values = true,
        overrides_with = "seed",
        help_heading = SVMCONF,
        help = "seed of every data pattern and of the sim (default 1)",
        long_help = "seed of every data pattern and of the sim, decimal or 0x hex (default 1)"
    )]
    seed: Option<u64>,
    #[arg(
        long,
        value_name = "ADDR",
        value_parser = parse_place_at,
        allow_hyphen_values = true,
        overrides_with = "place_at",
        help_heading = SVMCONF,
        help = "map each case's host allocations from this address (repro lines carry it)",
        long_help = "map each case's host allocations from this address, 0x hex, page aligned, \
                     in user space:\nthe first allocation starts there, each later one after \
                     the one before (its guard\npages and a page of gap), mapped with \
                     MAP_FIXED_NOREPLACE; a case whose range is taken fails\nnaming it. \
                     Repro lines carry the address a case's first allocation got, so a\nfailure \
                     that depends on where memory lands repeats. For --backend hip (system\n\
                     allocations: malloc, mmap, shared, file; managed memory and VRAM are the \
                     HIP runtime's\nto place), dmirror and vsvm (every host allocation). The \
                     reference device refuses it:\nits simulated addresses are the same in every \
                     run for a seed."
    )]
    place_at: Option<u64>,
    #[arg(
        long,
        value_name = "DIR",
        allow_hyphen_values = true,
        overrides_with = "results",
        help_heading = SVMCONF,
        help = "where the run folder is written (default results)"
    )]
    results: Option<PathBuf>,
    #[arg(
        long,
        value_name = "FILE",
        allow_hyphen_values = true,
        overrides_with = "junit",
        help_heading = SVMCONF,
        help = "also write the JUnit report to FILE"
    )]
    junit: Option<PathBuf>,
    #[arg(
        long,
        overrides_with = "allow_destructive",
        help_heading = SVMCONF,
        help = "allow cases that reset the GPU"
    )]
    allow_destructive: bool,
    #[arg(
        long,
        overrides_with = "amdgpu_trace",
        help_heading = SVMCONF,
        help = "read the series' pr_debug trace as migration evidence (GPUs; root)",
        long_help = "turn on the series' pr_debug trace (fixtures/amdgpu-trace.yaml) and read \
                     it as migration\nevidence where KFD SMI events are absent (GPUs; root)"
    )]
    amdgpu_trace: bool,
    #[arg(
        long,
        value_name = "A,B",
        allow_hyphen_values = true,
        overrides_with = "sim_break",
        help_heading = SVMCONF,
        help = "break migration paths of the sim on purpose (see --sim-break help)"
    )]
    sim_break: Option<String>,
    #[arg(
        long,
        value_name = "FILE",
        allow_hyphen_values = true,
        overrides_with = "sim_faults",
        help_heading = SVMCONF,
        help = "a fault plan for the sim (fixtures/faults/*.yaml; see svmconf kill-matrix)"
    )]
    sim_faults: Option<PathBuf>,
    #[arg(
        long,
        value_name = "DIR",
        allow_hyphen_values = true,
        overrides_with = "fixtures",
        help_heading = SVMCONF,
        help = "fixtures folder (default ./fixtures, else the one built in)"
    )]
    fixtures: Option<PathBuf>,
    #[arg(
        long,
        value_name = "FILE",
        allow_hyphen_values = true,
        overrides_with = "host",
        help_heading = SVMCONF,
        help = "a lab machine (lab/hosts/NAME.yaml) whose settings are the defaults",
        long_help = "a lab machine (lab/hosts/NAME.yaml): its backend, profile, device, results \
                     folder and\npermissions are the defaults, its needs checked"
    )]
    host: Option<PathBuf>,

    #[arg(
        long,
        value_name = "process|none",
        value_parser = parse_isolation,
        allow_hyphen_values = true,
        overrides_with = "isolate",
        help_heading = RUNNER,
        help = "each case in a child process (default on GPUs) or on a thread (default on sim)",
        long_help = "each case in a child process with a timeout (default on GPUs), or on a \
                     thread of the\nrunner (default on sim)"
    )]
    isolate: Option<Isolation>,
    #[arg(
        long,
        value_name = "SECS",
        value_parser = |s: &str| seconds("--timeout", s),
        allow_hyphen_values = true,
        overrides_with = "timeout",
        help_heading = RUNNER,
        help = "every case's limit under process isolation (default: the fixtures')"
    )]
    timeout: Option<f64>,
    #[arg(
        long,
        value_name = "SECS",
        value_parser = |s: &str| seconds("--kill-grace", s),
        allow_hyphen_values = true,
        overrides_with = "kill_grace",
        help_heading = RUNNER,
        help = "between SIGTERM and SIGKILL of a case past its limit (default 10)"
    )]
    kill_grace: Option<f64>,
    #[arg(
        long,
        value_name = "N",
        value_parser = |s: &str| count("--retries", s, 0),
        allow_hyphen_values = true,
        overrides_with = "retries",
        help_heading = RUNNER,
        help = "run a case that does not pass up to N more times; a later pass is a flake"
    )]
    retries: Option<u32>,
    #[arg(
        long,
        value_name = "N",
        value_parser = |s: &str| count("--repeat", s, 1),
        allow_hyphen_values = true,
        overrides_with = "repeat",
        help_heading = RUNNER,
        help = "run every case N times (stress)"
    )]
    repeat: Option<u32>,
    #[arg(
        long,
        value_name = "K/N",
        allow_hyphen_values = true,
        overrides_with = "shard",
        help_heading = RUNNER,
        help = "run the K-th of N parts of the suite (svmconf merge joins them)"
    )]
    shard: Option<String>,
    #[arg(
        long,
        value_name = "DIR",
        allow_hyphen_values = true,
        overrides_with = "resume",
        help_heading = RUNNER,
        help = "continue the run in DIR after its last finished case"
    )]
    resume: Option<PathBuf>,
    #[arg(
        long,
        value_name = "FILE",
        allow_hyphen_values = true,
        overrides_with = "ktap",
        help_heading = RUNNER,
        help = "also write the KTAP report to FILE"
    )]
    ktap: Option<PathBuf>,
    #[arg(
        long,
        overrides_with = "continue_on_taint",
        help_heading = RUNNER,
        help = "go on after a case taints the kernel (default: stop, the rest notrun)"
    )]
    continue_on_taint: bool,
    #[arg(
        long,
        overrides_with = "no_preflight",
        help_heading = RUNNER,
        help = "run even where the device differs from the profile"
    )]
    no_preflight: bool,
    #[arg(
        long,
        value_name = "SECS",
        value_parser = |s: &str| if s.trim() == "0" { Ok(0.0) } else { seconds("--decide-budget", s) },
        help_heading = RUNNER,
        help = "with --baseline: time a case may spend on up to 2 more runs while its timings \
                are undecided against the baseline (default 120; 0: never)"
    )]
    decide_budget: Option<f64>,
    #[arg(
        long,
        help_heading = RUNNER,
        help = "exit status for `git bisect run`: 0 good, 101 bad, 125 cannot test (no device, \
                a preflight mismatch, every case skipped), 255 bad input (ends the bisect)"
    )]
    bisect: bool,
    #[arg(
        long,
        value_name = "FILE",
        allow_hyphen_values = true,
        overrides_with = "kmsg",
        help_heading = RUNNER,
        help = "kernel log to read (default /dev/kmsg on GPUs, none on sim)",
        long_help = "kernel log to read (default /dev/kmsg on GPUs, none on sim; a file of kmsg \
                     records for\ntests and replays)"
    )]
    kmsg: Option<PathBuf>,
    #[arg(
        long,
        value_name = "FILE",
        allow_hyphen_values = true,
        overrides_with = "tainted",
        help_heading = RUNNER,
        help = "kernel taint to read (default /proc/sys/kernel/tainted on GPUs, none on sim)"
    )]
    tainted: Option<PathBuf>,
    #[arg(
        long,
        overrides_with = "runner_selftest",
        help_heading = RUNNER,
        help = "run the runner's own test cases (crash, hang, output) instead"
    )]
    runner_selftest: bool,

    #[arg(
        long,
        value_name = "N",
        value_parser = |s: &str| count("--reps", s, 1),
        allow_hyphen_values = true,
        overrides_with = "reps",
        help_heading = TIMINGS,
        help = "timed repetitions of every timed step (default: the fixtures', 3 or 5; 10 with \
                --baseline)"
    )]
    reps: Option<u32>,
    #[arg(
        long,
        value_name = "DIR",
        allow_hyphen_values = true,
        overrides_with = "baseline",
        help_heading = TIMINGS,
        help = "compare each case's timings with the same case in the run folder DIR",
        long_help = "compare each case's timings with the same case in the run folder DIR; a \
                     significant\nregression fails the case (record DIR with --reps 10)"
    )]
    baseline: Option<PathBuf>,
    #[arg(
        long,
        value_name = "X",
        value_parser = |s: &str| fraction("--tolerance", s),
        allow_hyphen_values = true,
        overrides_with = "tolerance",
        help_heading = TIMINGS,
        help = "smallest slowdown of the median that counts: 0.1 or 10% (default 10%)"
    )]
    tolerance: Option<f64>,
    #[arg(
        long,
        value_name = "P",
        value_parser = |s: &str| fraction("--alpha", s),
        allow_hyphen_values = true,
        overrides_with = "alpha",
        help_heading = TIMINGS,
        help = "significance of the one-sided Mann-Whitney test (default 0.01)"
    )]
    alpha: Option<f64>,

    /// Internal: a case's child process writes its record to this file.
    #[arg(
        long,
        value_name = "FILE",
        allow_hyphen_values = true,
        overrides_with = "child_verdict",
        hide = true
    )]
    child_verdict: Option<PathBuf>,
    /// Internal: serve the device over stdin and stdout (`device::remote::SERVER_FLAG`).
    #[arg(long, overrides_with = "device_server", hide = true)]
    device_server: bool,

    #[command(flatten, next_help_heading = LIBTEST)]
    libtest: libtest_mimic::Arguments,
}

/// A command line that clap refused (an unknown flag, a stray word, a bad value of one of
/// libtest's options), with clap's own message, suggestion and usage line.
#[derive(Clone, Debug)]
pub struct Syntax(Arc<clap::Error>);

impl Syntax {
    /// Writes clap's message to standard error, in colour on a terminal.
    pub fn print(&self) {
        let _ = self.0.print();
    }

    pub fn kind(&self) -> ErrorKind {
        self.0.kind()
    }

    /// The flag clap suggests in place of an unknown one (`--isolate`), if any.
    pub fn suggested(&self) -> Option<&str> {
        match self.0.get(ContextKind::SuggestedArg) {
            Some(ContextValue::String(s)) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for Syntax {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0.to_string().trim_end())
    }
}

impl PartialEq for Syntax {
    fn eq(&self, other: &Syntax) -> bool {
        self.0.kind() == other.0.kind() && self.0.to_string() == other.0.to_string()
    }
}

impl Eq for Syntax {}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("{0}")]
    Syntax(Syntax),
    #[error("argument {0:?} is not valid UTF-8")]
    NotUtf8(OsString),
    #[error("{flag}: expected a value")]
    Missing { flag: String },
    #[error(
        "--backend: unknown backend `{0}` (known: {names})",
        names = registry::names().join(", ")
    )]
    Backend(String),
    #[error(
        "--backend hip: this svmconf was built without `--features hip`; rebuild it with \
         `cargo build --release --features hip` on a machine with ROCm (libamdhip64) and \
         clang-19 or hipcc, or run on the reference device with --backend sim"
    )]
    HipNotBuilt,
    #[error(
        "--device: expected a HIP device index (0, 1, ...) or a PCI bus id (0000:c1:00.0), got \
         `{0}`"
    )]
    Device(String),
    #[error(
        "--device {0}: only --backend hip (or auto finding a GPU), dmirror and vsvm have devices \
         to choose"
    )]
    DeviceOnSim(String),
    #[error("--seed: expected a non-negative integer, got `{0}`")]
    Seed(String),
    #[error(
        "--place-at: expected a page-aligned user-space address in 0x hex (from {lo:#x} to \
         {hi:#x}), got `{0}`{1}",
        lo = PLACEABLE.start,
        hi = PLACEABLE.end
    )]
    PlaceAt(String, &'static str),
    #[error("--isolate: unknown isolation `{0}` (known: {names})", names = Isolation::NAMES)]
    Isolate(String),
    #[error("{flag}: expected a positive number of seconds, got `{value}`")]
    Seconds { flag: &'static str, value: String },
    #[error("{flag}: expected a count, got `{value}`")]
    Count { flag: &'static str, value: String },
    #[error("{flag}: expected a fraction in (0, 1) such as 0.1 or 10%, got `{value}`")]
    Fraction { flag: &'static str, value: String },
}

/// The command line's words as text, program name first: an argument that is not UTF-8 is bad
/// input, named (a program name that is not is shown as near as it can be).
pub fn utf8_args<I>(args: I) -> Result<Vec<String>, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut words = Vec::new();
    for (i, arg) in args.into_iter().enumerate() {
        match arg.into().into_string() {
            Ok(s) => words.push(s),
            Err(program) if i == 0 => words.push(program.to_string_lossy().into_owned()),
            Err(arg) => return Err(UsageError::NotUtf8(arg)),
        }
    }
    Ok(words)
}

/// The whole command line as clap knows it: svmconf's options, libtest's, the filter.
pub fn command() -> clap::Command {
    Cli::command()
}

/// `--help` (everything each option says) or `-h` (a line an option), as clap writes them.
pub fn help(long: bool) -> String {
    let mut cmd = command();
    if long {
        cmd.render_long_help().to_string()
    } else {
        cmd.render_help().to_string()
    }
}

/// libtest's options and filter in `a`, as words of a command line (filter first): what a
/// command that picks its own cases refuses.
pub fn libtest_words(a: &libtest_mimic::Arguments) -> Vec<String> {
    use clap::ValueEnum;
    let value = |v: &dyn Fn() -> Option<clap::builder::PossibleValue>| {
        v().map_or_else(String::new, |p| p.get_name().to_string())
    };
    let mut w: Vec<String> = a.filter.iter().cloned().collect();
    let switches = [
        (a.include_ignored, "--include-ignored"),
        (a.ignored, "--ignored"),
        (a.test, "--test"),
        (a.bench, "--bench"),
        (a.list, "--list"),
        (a.nocapture, "--nocapture"),
        (a.show_output, "--show-output"),
        (a.exact, "--exact"),
        (a.quiet, "--quiet"),
    ];
    w.extend(switches.iter().filter(|s| s.0).map(|s| s.1.to_string()));
    if let Some(z) = a.unstable_flags {
        w.extend(["-Z".into(), value(&|| z.to_possible_value())]);
    }
    if let Some(n) = a.test_threads {
        w.extend(["--test-threads".into(), n.to_string()]);
    }
    if let Some(f) = &a.logfile {
        w.extend(["--logfile".into(), f.clone()]);
    }
    for s in &a.skip {
        w.extend(["--skip".into(), s.clone()]);
    }
    if let Some(c) = a.color {
        w.extend(["--color".into(), value(&|| c.to_possible_value())]);
    }
    if let Some(f) = a.format {
        w.extend(["--format".into(), value(&|| f.to_possible_value())]);
    }
    w
}

impl Options {
    /// Reads `args` (program name first): svmconf's options and libtest's.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, UsageError> {
        let mut args: Vec<String> = args.into_iter().collect();
        if args.is_empty() {
            args.push("svmconf".into());
        }
        let mut cmd = command();
        let matches = cmd
            .try_get_matches_from_mut(args)
            .map_err(|e| usage_error(e, &cmd))?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| usage_error(e, &cmd))?;
        // libtest-mimic takes 0 threads and then never starts a case: refused here instead.
        if cli.libtest.test_threads == Some(0) {
            return Err(UsageError::Count {
                flag: "--test-threads",
                value: "0".into(),
            });
        }
        Ok(cli.into())
    }
}

impl From<Cli> for Options {
    fn from(c: Cli) -> Options {
        let mut method = crate::model::regress::Method::default();
        if let Some(t) = c.tolerance {
            method.tolerance = t;
        }
        if let Some(a) = c.alpha {
            method.alpha = a;
        }
        let decide_budget = c
            .decide_budget
            .map_or(DEFAULT_DECIDE_BUDGET, std::time::Duration::from_secs_f64);
        // A comparison needs samples: the count that meets the goal of `svmconf sensitivity`.
        let reps = match (c.reps, &c.baseline) {
            (None, Some(_)) => Some(crate::results::baseline::RECOMMENDED_REPS),
            (reps, _) => reps,
        };
        Options {
            backend: c.backend.unwrap_or_else(|| registry::AUTO.into()),
            device: c.device,
            profile: c.profile,
            seed: c.seed.unwrap_or(DEFAULT_SEED),
            place_at: c.place_at,
            host: c.host,
            results_given: c.results.is_some(),
            sysrq: true,
            results: c.results.unwrap_or_else(|| PathBuf::from(DEFAULT_RESULTS)),
            junit: c.junit,
            allow_destructive: c.allow_destructive,
            sim_break: c.sim_break,
            sim_faults: c.sim_faults,
            fixtures: c.fixtures,
            isolate: c.isolate,
            timeout_s: c.timeout,
            kill_grace_s: c.kill_grace.unwrap_or(DEFAULT_KILL_GRACE_S),
            kmsg: c.kmsg,
            tainted: c.tainted,
            continue_on_taint: c.continue_on_taint,
            amdgpu_trace: c.amdgpu_trace,
            resume: c.resume,
            ktap: c.ktap,
            shard: c.shard,
            retries: c.retries.unwrap_or(0),
            repeat: c.repeat.unwrap_or(1),
            reps,
            baseline: c.baseline,
            method,
            preflight: !c.no_preflight,
            bisect: c.bisect,
            decide_budget,
            runner_selftest: c.runner_selftest,
            child_verdict: c.child_verdict,
            device_server: c.device_server,
            libtest: c.libtest,
        }
    }
}

/// svmconf's message where a value of its own options is wrong or missing (as it has always
/// said it), clap's for the rest, with a suggestion only of an option `--help` shows.
fn usage_error(mut e: clap::Error, cmd: &clap::Command) -> UsageError {
    if let Some(own) = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<UsageError>()) {
        return own.clone();
    }
    let invalid_arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(a)) => a.clone(),
        _ => String::new(),
    };
    let no_value = matches!(
        e.get(ContextKind::InvalidValue),
        Some(ContextValue::String(v)) if v.is_empty()
    );
    if e.kind() == ErrorKind::InvalidValue && no_value {
        // `--seed <N>`: the flag as written.
        let flag = invalid_arg.split([' ', '=']).next().unwrap_or_default();
        if own_flag(cmd, flag) {
            return UsageError::Missing { flag: flag.into() };
        }
    }
    if e.kind() == ErrorKind::UnknownArgument {
        suggest_visible(&mut e, cmd, &invalid_arg);
    }
    UsageError::Syntax(Syntax(Arc::new(e)))
}

/// Whether `flag` (`--seed`) is one of svmconf's options rather than libtest's.
fn own_flag(cmd: &clap::Command, flag: &str) -> bool {
    let Some(long) = flag.strip_prefix("--") else {
        return false;
    };
    let libtest = libtest_mimic::Arguments::command();
    cmd.get_arguments().any(|a| a.get_long() == Some(long))
        && !libtest.get_arguments().any(|a| a.get_long() == Some(long))
}

/// clap suggests the nearest long flag, hidden ones included (`--device-serve`: the device
/// server's internal flag); put the nearest one `--help` shows in its place, or none.
fn suggest_visible(e: &mut clap::Error, cmd: &clap::Command, typed: &str) {
    let hidden = |flag: &str| {
        cmd.get_arguments()
            .any(|a| a.is_hide_set() && a.get_long().is_some_and(|l| flag == format!("--{l}")))
    };
    match e.get(ContextKind::SuggestedArg) {
        Some(ContextValue::String(s)) if hidden(s) => {}
        _ => return,
    }
    let typed_long = typed.trim_start_matches('-');
    let nearest = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long())
        .map(|l| (strsim::jaro(typed_long, l), l))
        // clap's threshold for a suggestion.
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match nearest {
        Some((_, long)) => {
            e.insert(
                ContextKind::SuggestedArg,
                ContextValue::String(format!("--{long}")),
            );
        }
        None => {
            e.remove(ContextKind::SuggestedArg);
            e.insert(
                ContextKind::Suggested,
                ContextValue::StyledStrs(vec![format!(
                    "to pass '{typed}' as a value, use '-- {typed}'"
                )
                .into()]),
            );
        }
    }
}

impl Options {
    /// The svmconf options that change what a case does, as a command line repeats them.
    pub fn repro_flags(&self, backend: &str, profile: &str) -> String {
        let mut s = format!(
            "--backend {backend} --profile {profile} --seed {}",
            self.seed
        );
        if let Some(d) = &self.device {
            s += &format!(" --device {}", shell_word(d));
        }
        if let Some(at) = self.place_at {
            s += &format!(" --place-at {at:#x}");
        }
        if let Some(b) = &self.sim_break {
            s += &format!(" --sim-break {b}");
        }
        if let Some(f) = &self.sim_faults {
            s += &format!(" --sim-faults {}", shell_word(&f.to_string_lossy()));
        }
        if self.allow_destructive {
            s += " --allow-destructive";
        }
        if self.amdgpu_trace {
            s += " --amdgpu-trace";
        }
        if let Some(f) = &self.fixtures {
            s += &format!(" --fixtures {}", shell_word(&f.to_string_lossy()));
        }
        if self.runner_selftest {
            s += " --runner-selftest";
        }
        if let Some(n) = self.reps {
            s += &format!(" --reps {n}");
        }
        if let Some(b) = &self.baseline {
            s += &format!(" --baseline {}", shell_word(&b.to_string_lossy()));
            let default = crate::model::regress::Method::default();
            if self.method.tolerance != default.tolerance {
                s += &format!(" --tolerance {}", self.method.tolerance);
            }
            if self.method.alpha != default.alpha {
                s += &format!(" --alpha {}", self.method.alpha);
            }
            if self.decide_budget != DEFAULT_DECIDE_BUDGET {
                s += &format!(" --decide-budget {}", self.decide_budget.as_secs_f64());
            }
        }
        s
    }

    /// The arguments a case's child process gets: everything that changes what the case does,
    /// then the one case, run here.
    pub fn child_args(
        &self,
        backend: &str,
        profile: &str,
        fixtures: &std::path::Path,
        case: &str,
        verdict: &std::path::Path,
    ) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--backend".into(),
            backend.into(),
            "--profile".into(),
            profile.into(),
            "--seed".into(),
            self.seed.to_string(),
            "--fixtures".into(),
            fixtures.to_string_lossy().into_owned(),
            "--isolate".into(),
            "none".into(),
            "--no-preflight".into(),
            "--child-verdict".into(),
            verdict.to_string_lossy().into_owned(),
        ];
        if let Some(d) = &self.device {
            a.extend(["--device".into(), d.clone()]);
        }
        if let Some(at) = self.place_at {
            a.extend(["--place-at".into(), format!("{at:#x}")]);
        }
        if let Some(b) = &self.sim_break {
            a.extend(["--sim-break".into(), b.clone()]);
        }
        if let Some(f) = &self.sim_faults {
            a.extend(["--sim-faults".into(), f.to_string_lossy().into_owned()]);
            // Where the plan's kernel_log rules write.
            if let Some(k) = &self.kmsg {
                a.extend(["--kmsg".into(), k.to_string_lossy().into_owned()]);
            }
        }
        if self.allow_destructive {
            a.push("--allow-destructive".into());
        }
        if self.amdgpu_trace {
            a.push("--amdgpu-trace".into());
        }
        if self.runner_selftest {
            a.push("--runner-selftest".into());
        }
        // The baseline is judged by the runner; the child only needs the repetitions.
        if let Some(n) = self.reps {
            a.extend(["--reps".into(), n.to_string()]);
        }
        a.extend([
            case.into(),
            "--exact".into(),
            "--test-threads".into(),
            "1".into(),
        ]);
        a
    }
}

/// The environment variable that says what runs svmconf where its repro lines are used: in
/// the VM lab, `lab/vm/run [its options] --`, so that a repro line printed in the guest is a
/// command for the host (lab/vm/README.md).
pub const REPRO_PREFIX_ENV: &str = "SVMCONF_REPRO_PREFIX";

/// How a command line printed for the user names this program: `svmconf` where that is what
/// PATH finds (an installed binary, the VM lab's guest), else the program's own path, relative
/// to the current folder where it lies under it (`target/release/svmconf` after the README's
/// `cargo run --release`), so that the line runs as printed from where the run was started.
pub fn program() -> &'static str {
    static PROGRAM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROGRAM.get_or_init(|| {
        let Ok(exe) = std::env::current_exe().and_then(|e| e.canonicalize()) else {
            return "svmconf".to_string();
        };
        program_word(&exe, std::env::var_os("PATH"), std::env::current_dir().ok())
    })
}

/// [`program`] for the program at `exe` (canonical), with `path` as PATH and `cwd` as the
/// current folder.
fn program_word(
    exe: &std::path::Path,
    path: Option<std::ffi::OsString>,
    cwd: Option<std::path::PathBuf>,
) -> String {
    let on_path = path.iter().flat_map(std::env::split_paths).any(|dir| {
        dir.join("svmconf")
            .canonicalize()
            .is_ok_and(|found| found == exe)
    });
    if on_path {
        return "svmconf".to_string();
    }
    let relative = cwd
        .and_then(|d| d.canonicalize().ok())
        .and_then(|d| exe.strip_prefix(d).ok().map(std::path::Path::to_path_buf))
        .filter(|r| !r.as_os_str().is_empty());
    shell_word(&relative.as_deref().unwrap_or(exe).to_string_lossy())
}

/// A repro line: this program ([`program`]) and `words`; or `svmconf` and `words` behind
/// `prefix` (the command that runs svmconf elsewhere, where `svmconf` is on PATH), then keeping
/// the results folder where it was given so that the results come back where the first run's
/// did.
pub fn repro_line(prefix: Option<&str>, words: &str, results: Option<&std::path::Path>) -> String {
    match prefix.map(str::trim).filter(|p| !p.is_empty()) {
        None => format!("{} {words}", program()),
        Some(prefix) => {
            let line = format!("svmconf {words}");
            match results {
                Some(r) => format!(
                    "{prefix} {line} --results {}",
                    shell_word(&r.to_string_lossy())
                ),
                None => format!("{prefix} {line}"),
            }
        }
    }
}

/// `s` as one word of a POSIX shell command line.
pub fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=+,@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `auto` or a backend the device layer knows, known even where it is not built in so that
/// opening it says how to get it.
fn parse_backend(s: &str) -> Result<String, UsageError> {
    if registry::names().contains(&s) {
        Ok(s.to_string())
    } else {
        Err(UsageError::Backend(s.into()))
    }
}

fn parse_isolation(s: &str) -> Result<Isolation, UsageError> {
    Isolation::parse(s).ok_or_else(|| UsageError::Isolate(s.into()))
}

/// `--decide-budget`'s default: two more runs of nearly any case fit in it.
pub const DEFAULT_DECIDE_BUDGET: std::time::Duration = std::time::Duration::from_secs(120);

fn seconds(flag: &'static str, value: &str) -> Result<f64, UsageError> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(UsageError::Seconds {
            flag,
            value: value.into(),
        }),
    }
}

fn count(flag: &'static str, value: &str, min: u32) -> Result<u32, UsageError> {
    match value.parse::<u32>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(UsageError::Count {
            flag,
            value: value.into(),
        }),
    }
}

/// A fraction written as `0.1` or `10%`, strictly between 0 and 1.
fn fraction(flag: &'static str, value: &str) -> Result<f64, UsageError> {
    let parsed = match value.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
        None => value.parse::<f64>(),
    };
    match parsed {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(UsageError::Fraction {
            flag,
            value: value.into(),
        }),
    }
}

/// An address for `--place-at`: `0x` hex, page aligned, in [`PLACEABLE`].
fn parse_place_at(s: &str) -> Result<u64, UsageError> {
    let bad = |why| UsageError::PlaceAt(s.into(), why);
    let hex = s
        .strip_prefix("0x")
        .ok_or_else(|| bad(" (write it as 0x...)"))?;
    let at = u64::from_str_radix(&hex.replace('_', ""), 16).map_err(|_| bad(""))?;
    if at % PAGE_SIZE != 0 {
        return Err(bad(" (not a multiple of 4096)"));
    }
    if !PLACEABLE.contains(&at) {
        return Err(bad(" (outside user space)"));
    }
    Ok(at)
}

/// A seed, decimal or `0x` hex.
fn parse_seed(s: &str) -> Result<u64, UsageError> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
    .ok_or_else(|| UsageError::Seed(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::path::Path;

    fn parse(args: &[&str]) -> Result<Options, UsageError> {
        Options::parse(
            std::iter::once("svmconf")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[rstest]
    #[case(&["--backend", "sim"], "sim")]
    #[case(&["--backend=auto"], "auto")]
    #[case(&["--backend", "hip"], "hip")]
    #[case(&["--backend", "dmirror"], "dmirror")]
    #[case(&["--backend", "vsvm"], "vsvm")]
    #[case(&[], "auto")]
    fn backends(#[case] args: &[&str], #[case] want: &str) {
        assert_eq!(parse(args).unwrap().backend, want);
    }

    #[rstest]
    #[case(&["--backend", "cuda"], UsageError::Backend("cuda".into()))]
    #[case(&["--backend"], UsageError::Missing { flag: "--backend".into() })]
    #[case(&["--seed", "-3"], UsageError::Seed("-3".into()))]
    #[case(&["--seed=x"], UsageError::Seed("x".into()))]
    #[case(&["--profile"], UsageError::Missing { flag: "--profile".into() })]
    #[case(&["--isolate", "vm"], UsageError::Isolate("vm".into()))]
    #[case(&["--timeout", "0"], UsageError::Seconds { flag: "--timeout", value: "0".into() })]
    #[case(&["--timeout=inf"], UsageError::Seconds { flag: "--timeout", value: "inf".into() })]
    #[case(&["--kill-grace", "-1"], UsageError::Seconds { flag: "--kill-grace", value: "-1".into() })]
    #[case(&["--retries", "two"], UsageError::Count { flag: "--retries", value: "two".into() })]
    #[case(&["--repeat", "0"], UsageError::Count { flag: "--repeat", value: "0".into() })]
    #[case(&["--resume"], UsageError::Missing { flag: "--resume".into() })]
    #[case(&["--device"], UsageError::Missing { flag: "--device".into() })]
    #[case(&["--reps", "0"], UsageError::Count { flag: "--reps", value: "0".into() })]
    #[case(&["--test-threads", "0"], UsageError::Count { flag: "--test-threads", value: "0".into() })]
    #[case(&["--tolerance", "150%"], UsageError::Fraction { flag: "--tolerance", value: "150%".into() })]
    #[case(&["--alpha", "0"], UsageError::Fraction { flag: "--alpha", value: "0".into() })]
    #[case(&["--baseline"], UsageError::Missing { flag: "--baseline".into() })]
    #[case(&["--backend", "--list"], UsageError::Backend("--list".into()))]
    #[case(&["--backend="], UsageError::Backend("".into()))]
    #[case(&["--list", "--child-verdict"], UsageError::Missing { flag: "--child-verdict".into() })]
    fn usage_errors(#[case] args: &[&str], #[case] want: UsageError) {
        assert_eq!(parse(args).unwrap_err(), want);
    }

    #[test]
    fn own_options_are_taken_and_the_rest_goes_to_libtest() {
        let o = parse(&[
            "--seed",
            "0x10",
            "prefetch",
            "--exact",
            "--profile=mi60",
            "--test-threads",
            "1",
            "--allow-destructive",
        ])
        .unwrap();
        assert_eq!(o.seed, 16);
        assert_eq!(o.profile.as_deref(), Some("mi60"));
        assert!(o.allow_destructive);
        assert_eq!(
            libtest_words(&o.libtest),
            ["prefetch", "--exact", "--test-threads", "1"]
        );
        assert_eq!(o.libtest.filter.as_deref(), Some("prefetch"));
        assert!(o.libtest.exact && o.libtest.test_threads == Some(1));
    }

    #[test]
    fn runner_options_are_taken() {
        let o = parse(&[
            "--isolate=process",
            "--timeout",
            "2.5",
            "--retries",
            "2",
            "--repeat",
            "3",
            "--shard",
            "2/3",
            "--no-preflight",
            "--continue-on-taint",
            "--amdgpu-trace",
            "--kmsg",
            "k.txt",
        ])
        .unwrap();
        assert_eq!(o.isolate, Some(Isolation::Process));
        assert_eq!((o.timeout_s, o.retries, o.repeat), (Some(2.5), 2, 3));
        assert_eq!(o.shard.as_deref(), Some("2/3"));
        assert!(!o.preflight && o.continue_on_taint && o.amdgpu_trace);
        assert_eq!(o.kmsg, Some(PathBuf::from("k.txt")));
        assert!(libtest_words(&o.libtest).is_empty(), "{:?}", o.libtest);
    }

    #[test]
    fn a_child_gets_what_changes_the_case_and_the_one_case() {
        let o = parse(&["--seed", "7", "--sim-break", "fast-clock", "--retries", "3"]).unwrap();
        let a = o.child_args(
            "sim",
            "sim",
            std::path::Path::new("fx"),
            "prefetch::partial::2MiB",
            std::path::Path::new("v.json"),
        );
        let line = a.join(" ");
        assert!(
            line.starts_with("--backend sim --profile sim --seed 7 --fixtures fx"),
            "{line}"
        );
        assert!(line.contains("--isolate none") && line.contains("--child-verdict v.json"));
        assert!(line.contains("--sim-break fast-clock"), "{line}");
        assert!(!line.contains("--retries"), "{line}");
        assert!(
            line.ends_with("prefetch::partial::2MiB --exact --test-threads 1"),
            "{line}"
        );
    }

    #[test]
    fn timing_options_reach_children_and_repro_lines() {
        let o = parse(&[
            "--reps",
            "10",
            "--baseline",
            "results/old",
            "--tolerance",
            "20%",
            "--alpha",
            "0.05",
        ])
        .unwrap();
        assert_eq!(o.reps, Some(10));
        assert_eq!((o.method.tolerance, o.method.alpha), (0.2, 0.05));
        let repro = o.repro_flags("sim", "sim");
        assert!(
            repro.ends_with("--reps 10 --baseline results/old --tolerance 0.2 --alpha 0.05"),
            "{repro}"
        );
        let child = o
            .child_args(
                "sim",
                "sim",
                std::path::Path::new("fx"),
                "c",
                std::path::Path::new("v"),
            )
            .join(" ");
        assert!(
            child.contains("--reps 10") && !child.contains("--baseline"),
            "{child}"
        );
    }

    #[rstest]
    #[case("plain-word_1.2", "plain-word_1.2")]
    #[case("two words", "'two words'")]
    #[case("it's", "'it'\\''s'")]
    #[case("", "''")]
    fn shell_words(#[case] s: &str, #[case] want: &str) {
        assert_eq!(shell_word(s), want);
    }

    #[test]
    fn the_unknown_backend_message_lists_the_known_ones() {
        let e = parse(&["--backend", "cuda"]).unwrap_err().to_string();
        assert!(e.contains("`cuda`") && e.contains("auto, sim, hip"), "{e}");
    }

    #[test]
    fn the_device_goes_to_children_and_repro_lines() {
        let o = parse(&["--backend", "hip", "--device", "0000:c1:00.0"]).unwrap();
        assert_eq!(o.device.as_deref(), Some("0000:c1:00.0"));
        let line = o
            .child_args(
                "hip",
                "mi300x",
                std::path::Path::new("fx"),
                "c",
                std::path::Path::new("v"),
            )
            .join(" ");
        assert!(line.contains("--device 0000:c1:00.0"), "{line}");
        assert!(o
            .repro_flags("hip", "mi300x")
            .contains("--device 0000:c1:00.0"));
    }

    #[rstest]
    #[case::not_hex("4096", "(write it as 0x...)")]
    #[case::garbage("0xzz", "got `0xzz`")]
    #[case::unaligned("0x7f0000000010", "(not a multiple of 4096)")]
    #[case::null_page("0x0", "(outside user space)")]
    #[case::kernel_space("0xffff888000000000", "(outside user space)")]
    fn a_bad_place_at_is_refused_naming_the_flag(#[case] value: &str, #[case] why: &str) {
        let e = parse(&["--place-at", value]).expect_err("refused");
        let text = e.to_string();
        assert!(
            text.starts_with("--place-at: expected a page-aligned"),
            "{text}"
        );
        assert!(text.contains(why), "{text}");
    }

    #[test]
    fn place_at_reaches_children_and_repro_lines() {
        let o = parse(&["--place-at", "0x7f12_3456_7000"]).unwrap();
        assert_eq!(o.place_at, Some(0x7f12_3456_7000));
        assert!(o
            .repro_flags("hip", "mi300x")
            .contains(" --place-at 0x7f1234567000"));
        let child = o.child_args("hip", "mi300x", Path::new("f"), "c", Path::new("v"));
        let at = child
            .iter()
            .position(|w| w == "--place-at")
            .expect("passed on");
        assert_eq!(child[at + 1], "0x7f1234567000");
        // The child's own parser reads it back.
        let mut again = vec!["svmconf".to_string()];
        again.extend(child);
        assert_eq!(Options::parse(again).unwrap().place_at, o.place_at);
    }

    /// A repro line runs as printed: `svmconf` only where PATH finds this program by that
    /// name, else the program's path, relative where it lies under the current folder.
    #[test]
    fn a_repro_line_names_the_program_as_the_shell_will_find_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let release = root.join("repo/target/release");
        std::fs::create_dir_all(&release).unwrap();
        let exe = release.join("svmconf");
        std::fs::write(&exe, "").unwrap();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let other = bin.join("svmconf");
        std::fs::write(&other, "").unwrap();
        let path = |dirs: &[&Path]| Some(std::env::join_paths(dirs).unwrap());
        // After `cargo run --release` in the repository: the path from there.
        assert_eq!(
            program_word(&exe, path(&[&bin]), Some(root.join("repo"))),
            "target/release/svmconf"
        );
        // Another svmconf on PATH is not this one; from elsewhere, the whole path.
        assert_eq!(
            program_word(&exe, path(&[&bin]), Some(bin.clone())),
            exe.to_string_lossy()
        );
        // Installed where PATH finds it.
        assert_eq!(
            program_word(&exe, path(&[&bin, &release]), Some(bin.clone())),
            "svmconf"
        );
    }

    #[test]
    fn a_repro_line_behind_a_prefix_is_a_host_command_keeping_the_results_folder() {
        let words = "x::y --exact --backend dmirror --seed 1";
        let me = program();
        assert_eq!(repro_line(None, words, None), format!("{me} {words}"));
        assert_eq!(
            repro_line(None, words, Some(Path::new("/out/results"))),
            format!("{me} {words}"),
            "without a prefix the results folder is the run's own choice"
        );
        assert_eq!(
            repro_line(
                Some("lab/vm/run --kernel 7.3 --vsvm --"),
                words,
                Some(Path::new("/out/results"))
            ),
            format!("lab/vm/run --kernel 7.3 --vsvm -- svmconf {words} --results /out/results")
        );
        assert_eq!(
            repro_line(
                Some("lab/vm/run --"),
                words,
                Some(Path::new("/out/my results"))
            ),
            format!("lab/vm/run -- svmconf {words} --results '/out/my results'")
        );
        assert_eq!(repro_line(Some("  "), words, None), format!("{me} {words}"));
    }

    /// What every option was before the command line moved to clap, written out: an empty
    /// command line must still mean exactly this.
    #[test]
    fn an_empty_command_line_gets_the_defaults_it_always_had() {
        let old = Options {
            backend: "auto".into(),
            device: None,
            profile: None,
            seed: 1,
            place_at: None,
            results: PathBuf::from("results"),
            host: None,
            results_given: false,
            sysrq: true,
            junit: None,
            allow_destructive: false,
            sim_break: None,
            sim_faults: None,
            fixtures: None,
            isolate: None,
            timeout_s: None,
            kill_grace_s: 10.0,
            kmsg: None,
            tainted: None,
            continue_on_taint: false,
            amdgpu_trace: false,
            resume: None,
            ktap: None,
            shard: None,
            retries: 0,
            repeat: 1,
            reps: None,
            baseline: None,
            // 10% before the sequential rule of --baseline halved it (README, "Timings against
            // a baseline").
            method: crate::model::regress::Method {
                tolerance: 0.05,
                alpha: 0.01,
            },
            preflight: true,
            bisect: false,
            decide_budget: DEFAULT_DECIDE_BUDGET,
            runner_selftest: false,
            child_verdict: None,
            device_server: false,
            libtest: libtest_mimic::Arguments::default(),
        };
        assert_eq!(format!("{:#?}", parse(&[]).unwrap()), format!("{old:#?}"));
        // No program name at all reads the same.
        let none = Options::parse(std::iter::empty()).unwrap();
        assert_eq!(format!("{none:#?}"), format!("{old:#?}"));
        // A baseline needs samples: its default repetitions, unless --reps says.
        assert_eq!(parse(&["--baseline", "b"]).unwrap().reps, Some(10));
        assert_eq!(
            parse(&["--baseline", "b", "--reps", "4"]).unwrap().reps,
            Some(4)
        );
    }

    #[test]
    fn the_command_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn a_flag_given_twice_keeps_its_last_value_and_any_word_can_be_a_value() {
        let o = parse(&[
            "--seed",
            "1",
            "--seed=2",
            "--profile",
            "--exact",
            "--allow-destructive",
            "--allow-destructive",
        ])
        .unwrap();
        assert_eq!(o.seed, 2);
        assert_eq!(o.profile.as_deref(), Some("--exact"));
        assert!(o.allow_destructive && !o.libtest.exact);
        // libtest's own flags stay as libtest reads them.
        let e = parse(&["--list", "--list"]).unwrap_err();
        assert!(matches!(&e, UsageError::Syntax(s) if s.kind() == ErrorKind::ArgumentConflict));
    }

    #[test]
    fn a_missing_value_of_libtests_options_is_clap_s_message() {
        let e = parse(&["--test-threads"]).unwrap_err();
        assert!(matches!(&e, UsageError::Syntax(_)), "{e:?}");
        assert!(e.to_string().contains("--test-threads"), "{e}");
        let e = parse(&["--test-threads", "x"]).unwrap_err().to_string();
        assert!(e.contains("invalid value 'x' for '--test-threads"), "{e}");
    }

    /// A child process and a repro line are parsed back by this same parser.
    #[test]
    fn child_and_repro_lines_parse_back_to_the_same_case() {
        let o = parse(&[
            "--seed",
            "7",
            "--sim-break",
            "fast-clock",
            "--reps",
            "10",
            "--baseline",
            "old run",
            "--tolerance",
            "20%",
        ])
        .unwrap();
        let args = o.child_args(
            "sim",
            "sim",
            std::path::Path::new("fx"),
            "prefetch::partial::2MiB",
            std::path::Path::new("v.json"),
        );
        let child = Options::parse(std::iter::once("svmconf".to_string()).chain(args)).unwrap();
        assert_eq!((child.seed, child.reps), (7, Some(10)));
        assert_eq!(child.sim_break.as_deref(), Some("fast-clock"));
        assert_eq!(child.isolate, Some(Isolation::None));
        assert_eq!(child.child_verdict, Some(PathBuf::from("v.json")));
        assert!(!child.preflight);
        assert_eq!(
            child.libtest.filter.as_deref(),
            Some("prefetch::partial::2MiB")
        );
        assert!(child.libtest.exact && child.libtest.test_threads == Some(1));

        let repro = o.repro_flags("sim", "sim");
        let words: Vec<String> = repro
            .replace("'old run'", "old_run")
            .split(' ')
            .map(String::from)
            .collect();
        let again = Options::parse(std::iter::once("svmconf".to_string()).chain(words)).unwrap();
        assert_eq!((again.seed, again.reps), (7, Some(10)));
        assert_eq!(again.method, o.method);
        assert_eq!(again.baseline, Some(PathBuf::from("old_run")));
    }

    /// The options `--help` shows: every one of svmconf's with its text, libtest's, the
    /// subcommands; not the internal flags of child processes and device servers.
    #[test]
    fn help_lists_every_option_and_hides_the_internal_ones() {
        let long = help(true);
        let short = help(false);
        let cmd = command();
        let mut shown = 0;
        for arg in cmd.get_arguments() {
            let Some(flag) = arg.get_long().map(|l| format!("--{l}")) else {
                continue;
            };
            if arg.is_hide_set() {
                assert!(!long.contains(&flag) && !short.contains(&flag), "{flag}");
                continue;
            }
            shown += 1;
            assert!(
                long.contains(&flag) && short.contains(&flag),
                "{flag}: {long}"
            );
            // clap indents the lines after the first.
            let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
            let text = words(&arg.get_help().map(|h| h.to_string()).unwrap_or_default());
            assert!(!text.is_empty(), "{flag} has no help");
            assert!(words(&short).contains(&text), "{flag}: `{text}` in -h");
            if let Some(more) = arg.get_long_help() {
                let more = words(&more.to_string());
                assert!(words(&long).contains(&more), "{flag}: `{more}` in --help");
            }
        }
        assert!(shown > 40, "{shown} options shown");
        for word in [
            "--backend <auto|sim|hip|dmirror|vsvm>",
            "--isolate <process|none>",
            "--list",
            "--exact",
            "--skip <FILTER>",
            "--test-threads",
            "--format <pretty|terse|json>",
            "[FILTER]",
            "svmconf merge OUT RUN_DIR...",
            "svmconf kill-matrix",
            "svmconf sensitivity",
            "svmconf scaling",
            "svmconf seeds",
            "(default 1)",
            "(default 10)",
            "(default 10%)",
            "(default 0.01)",
        ] {
            assert!(long.contains(word), "`{word}` in {long}");
        }
        assert!(!long.contains("--device-server") && !long.contains("--child-verdict"));
    }

    fn suggestion(args: &[&str]) -> Option<String> {
        match parse(args) {
            Err(UsageError::Syntax(s)) => {
                assert_eq!(s.kind(), ErrorKind::UnknownArgument, "{s}");
                s.suggested().map(String::from)
            }
            other => panic!("{args:?}: {other:?}"),
        }
    }

    /// A flag one letter short suggests that flag, svmconf's or libtest's alike; the internal
    /// flags are never suggested.
    #[test]
    fn a_misspelled_flag_suggests_the_one_meant() {
        assert_eq!(
            suggestion(&["--isolat", "process"]).as_deref(),
            Some("--isolate")
        );
        assert_eq!(suggestion(&["--lis"]).as_deref(), Some("--list"));
        let cmd = command();
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            let Some(long) = arg.get_long() else {
                continue;
            };
            let typo = format!("--{}", &long[..long.len() - 1]);
            let got = suggestion(&[typo.as_str()]);
            assert_eq!(got, Some(format!("--{long}")), "{typo}");
        }
        for typo in ["--device-serve", "--device-servr", "--child-verdic"] {
            let got = suggestion(&[typo]);
            assert!(
                !matches!(
                    got.as_deref(),
                    Some("--device-server") | Some("--child-verdict")
                ),
                "{typo}: {got:?}"
            );
        }
        assert_eq!(suggestion(&["--device-serve"]).as_deref(), Some("--device"));
        let e = parse(&["--child-verdic", "x"]).unwrap_err().to_string();
        assert!(e.contains("to pass '--child-verdic' as a value"), "{e}");
    }

    #[test]
    fn an_argument_that_is_not_utf8_is_named() {
        use std::os::unix::ffi::OsStrExt;
        let bad = std::ffi::OsStr::from_bytes(b"caf\xe9");
        let e = utf8_args([
            std::ffi::OsStr::new("svmconf"),
            std::ffi::OsStr::new("--list"),
            bad,
        ])
        .unwrap_err();
        assert_eq!(e, UsageError::NotUtf8(bad.to_os_string()));
        assert_eq!(e.to_string(), r#"argument "caf\xE9" is not valid UTF-8"#);
        // The program's own name is not an argument: shown as near as it can be.
        let words = utf8_args([bad, std::ffi::OsStr::new("--list")]).unwrap();
        assert_eq!(words, ["caf\u{fffd}", "--list"]);
    }
}
