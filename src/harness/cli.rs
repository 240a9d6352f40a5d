//! The command line: svmconf's own options, split from the libtest options that libtest-mimic
//! parses (`--list`, `--exact`, `--skip`, `--ignored`, `--include-ignored`, `--test-threads`,
//! `--format`, a filter), so the binary drives like any Rust test binary.

use std::path::PathBuf;

/// Which device the cases run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The best device available: a GPU backend when one is built in and finds a GPU, else sim.
    Auto,
    Sim,
    /// An AMD GPU through HIP; needs a binary built with `--features hip`.
    Hip,
    /// The Linux kernel's device-private test driver (`/dev/hmm_dmirror0`, CONFIG_TEST_HMM).
    Dmirror,
}

impl Backend {
    pub const NAMES: &'static str = "auto, sim, hip, dmirror";

    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "auto" => Some(Backend::Auto),
            "sim" => Some(Backend::Sim),
            // Known even without the feature, so that the error says how to get it.
            "hip" => Some(Backend::Hip),
            "dmirror" => Some(Backend::Dmirror),
            _ => None,
        }
    }

    /// The backend's name for the device layer; `None` for auto.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Backend::Auto => None,
            Backend::Sim => Some("sim"),
            Backend::Hip => Some("hip"),
            Backend::Dmirror => Some("dmirror"),
        }
    }
}

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
    pub backend: Backend,
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
    /// The runner's own test cases instead of the suite (crash, hang, output, kernel log).
    pub runner_selftest: bool,
    /// Set on a case's child process: run the one case here and write its record to this file.
    pub child_verdict: Option<PathBuf>,
    /// Set on a second process of a case (`Device::spawn_process` on hip): open the device and
    /// serve it over stdin and stdout (`device::remote`), nothing else.
    pub device_server: bool,
    /// Everything else, for libtest-mimic, program name first.
    pub libtest: Vec<String>,
}

pub const DEFAULT_SEED: u64 = 1;
pub const DEFAULT_KILL_GRACE_S: f64 = 10.0;
pub const DEV_KMSG: &str = "/dev/kmsg";
pub const PROC_TAINTED: &str = "/proc/sys/kernel/tainted";

pub const USAGE: &str = "\
svmconf: conformance suite for GPU shared virtual memory migration

USAGE: svmconf [SVMCONF OPTIONS] [LIBTEST OPTIONS] [FILTER]

SVMCONF OPTIONS:
  --backend auto|sim|hip|dmirror
                        device to run on (default auto: a GPU when one is found, else
                        sim; hip needs a binary built with --features hip; dmirror is the
                        kernel's device-private test driver, CONFIG_TEST_HMM)
  --device N|PCI|PATH   which GPU: a HIP device index or a PCI bus id (0000:c1:00.0);
                        default the first. dmirror: N or the node (default /dev/hmm_dmirror0)
  --profile NAME|FILE   device profile (fixtures/profiles/NAME.yaml; default: sim on sim)
  --seed N              seed of every data pattern and of the sim (default 1)
  --results DIR         where the run folder is written (default results)
  --junit FILE          also write the JUnit report to FILE
  --allow-destructive   allow cases that reset the GPU
  --amdgpu-trace        turn on the series' pr_debug trace (fixtures/amdgpu-trace.yaml) and read
                        it as migration evidence where KFD SMI events are absent (GPUs; root)
  --sim-break A,B       break migration paths of the sim on purpose (see --sim-break help)
  --sim-faults FILE     a fault plan for the sim (fixtures/faults/*.yaml; see svmconf kill-matrix)
  --fixtures DIR        fixtures folder (default ./fixtures, else the one built in)
  --host FILE           a lab machine (lab/hosts/NAME.yaml): its backend, profile, device,
                        results folder and permissions are the defaults, its needs checked

RUNNER OPTIONS:
  --isolate process|none  each case in a child process with a timeout (default on GPUs), or
                        on a thread of the runner (default on sim)
  --timeout SECS        every case's limit under process isolation (default: the fixtures')
  --kill-grace SECS     between SIGTERM and SIGKILL of a case past its limit (default 10)
  --retries N           run a case that does not pass up to N more times; a later pass is a flake
  --repeat N            run every case N times (stress)
  --shard K/N           run the K-th of N parts of the suite (svmconf merge joins them)
  --resume DIR          continue the run in DIR after its last finished case
  --ktap FILE           also write the KTAP report to FILE
  --continue-on-taint   go on after a case taints the kernel (default: stop, the rest notrun)
  --no-preflight        run even where the device differs from the profile
  --kmsg FILE           kernel log to read (default /dev/kmsg on GPUs, none on sim; a file of
                        kmsg records for tests and replays)
  --tainted FILE        kernel taint to read (default /proc/sys/kernel/tainted on GPUs, none
                        on sim)
  --runner-selftest     run the runner's own test cases (crash, hang, output) instead

TIMINGS:
  --reps N              timed repetitions of every timed step (default: the fixtures', 3 or 5;
                        10 with --baseline)
  --baseline DIR        compare each case's timings with the same case in the run folder DIR;
                        a significant regression fails the case (record DIR with --reps 10)
  --tolerance X         smallest slowdown of the median that counts: 0.1 or 10% (default 10%)
  --alpha P             significance of the one-sided Mann-Whitney test (default 0.01)

SUBCOMMANDS:
  svmconf merge OUT RUN_DIR...  join the runs of shards into OUT and write its reports
  svmconf kill-matrix [--faults DIR] [--keep DIR] [-- RUN OPTIONS]
                                run the suite on the reference device once per fault plan
                                (fixtures/faults) and fail if a plan is caught by none of
                                the cases it names
  svmconf sensitivity [--help]  how often the baseline comparison catches a slowdown
  svmconf scaling [--help]      each path's time against size: the exponent of a power law
  svmconf seeds [--help]        the whole suite on many seeds: failures must be 0

LIBTEST OPTIONS (as any Rust test binary): --list, --exact, --skip PATTERN, --ignored,
  --include-ignored, --test-threads N, --format pretty|terse|json, -q, FILTER.
";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("{flag}: expected a value")]
    Missing { flag: &'static str },
    #[error("--backend: unknown backend `{0}` (known: {names})", names = Backend::NAMES)]
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
        "--device {0}: only --backend hip (or auto finding a GPU) and dmirror have devices to \
         choose"
    )]
    DeviceOnSim(String),
    #[error("--seed: expected a non-negative integer, got `{0}`")]
    Seed(String),
    #[error("--isolate: unknown isolation `{0}` (known: {names})", names = Isolation::NAMES)]
    Isolate(String),
    #[error("{flag}: expected a positive number of seconds, got `{value}`")]
    Seconds { flag: &'static str, value: String },
    #[error("{flag}: expected a count, got `{value}`")]
    Count { flag: &'static str, value: String },
    #[error("{flag}: expected a fraction in (0, 1) such as 0.1 or 10%, got `{value}`")]
    Fraction { flag: &'static str, value: String },
}

impl Options {
    /// Splits `args` (program name first) into svmconf's options and libtest's.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, UsageError> {
        let mut args = args.into_iter();
        let program = args.next().unwrap_or_else(|| "svmconf".into());
        let mut o = Options {
            backend: Backend::Auto,
            device: None,
            profile: None,
            seed: DEFAULT_SEED,
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
            kill_grace_s: DEFAULT_KILL_GRACE_S,
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
            method: crate::model::regress::Method::default(),
            preflight: true,
            runner_selftest: false,
            child_verdict: None,
            device_server: false,
            libtest: vec![program],
        };
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = |flag: &'static str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or(UsageError::Missing { flag })
            };
            match flag.as_str() {
                "--backend" => {
                    let v = value("--backend")?;
                    o.backend = Backend::parse(&v).ok_or(UsageError::Backend(v))?;
                }
                "--device" => o.device = Some(value("--device")?),
                "--profile" => o.profile = Some(value("--profile")?),
                "--seed" => {
                    let v = value("--seed")?;
                    o.seed = parse_seed(&v).ok_or(UsageError::Seed(v))?;
                }
                "--results" => {
                    o.results = value("--results")?.into();
                    o.results_given = true;
                }
                "--host" => o.host = Some(value("--host")?.into()),
                "--junit" => o.junit = Some(value("--junit")?.into()),
                "--sim-break" => o.sim_break = Some(value("--sim-break")?),
                "--sim-faults" => o.sim_faults = Some(value("--sim-faults")?.into()),
                "--fixtures" => o.fixtures = Some(value("--fixtures")?.into()),
                "--allow-destructive" => o.allow_destructive = true,
                "--isolate" => {
                    let v = value("--isolate")?;
                    o.isolate = Some(Isolation::parse(&v).ok_or(UsageError::Isolate(v))?);
                }
                "--timeout" => o.timeout_s = Some(seconds("--timeout", value("--timeout")?)?),
                "--kill-grace" => o.kill_grace_s = seconds("--kill-grace", value("--kill-grace")?)?,
                "--kmsg" => o.kmsg = Some(value("--kmsg")?.into()),
                "--tainted" => o.tainted = Some(value("--tainted")?.into()),
                "--continue-on-taint" => o.continue_on_taint = true,
                "--amdgpu-trace" => o.amdgpu_trace = true,
                "--resume" => o.resume = Some(value("--resume")?.into()),
                "--ktap" => o.ktap = Some(value("--ktap")?.into()),
                "--shard" => o.shard = Some(value("--shard")?),
                "--retries" => o.retries = count("--retries", value("--retries")?, 0)?,
                "--repeat" => o.repeat = count("--repeat", value("--repeat")?, 1)?,
                "--reps" => o.reps = Some(count("--reps", value("--reps")?, 1)?),
                "--baseline" => o.baseline = Some(value("--baseline")?.into()),
                "--tolerance" => {
                    o.method.tolerance = fraction("--tolerance", value("--tolerance")?)?
                }
                "--alpha" => o.method.alpha = fraction("--alpha", value("--alpha")?)?,
                "--no-preflight" => o.preflight = false,
                "--runner-selftest" => o.runner_selftest = true,
                "--child-verdict" => o.child_verdict = Some(value("--child-verdict")?.into()),
                crate::device::remote::SERVER_FLAG => o.device_server = true,
                _ => o.libtest.push(arg),
            }
        }
        // A comparison needs samples: the count that meets the goal of `svmconf sensitivity`.
        if o.baseline.is_some() && o.reps.is_none() {
            o.reps = Some(crate::results::baseline::RECOMMENDED_REPS);
        }
        Ok(o)
    }

    /// The svmconf options that change what a case does, as a command line repeats them.
    pub fn repro_flags(&self, backend: &str, profile: &str) -> String {
        let mut s = format!(
            "--backend {backend} --profile {profile} --seed {}",
            self.seed
        );
        if let Some(d) = &self.device {
            s += &format!(" --device {}", shell_word(d));
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

fn seconds(flag: &'static str, value: String) -> Result<f64, UsageError> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(UsageError::Seconds { flag, value }),
    }
}

fn count(flag: &'static str, value: String, min: u32) -> Result<u32, UsageError> {
    match value.parse::<u32>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(UsageError::Count { flag, value }),
    }
}

/// A fraction written as `0.1` or `10%`, strictly between 0 and 1.
fn fraction(flag: &'static str, value: String) -> Result<f64, UsageError> {
    let parsed = match value.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(|p| p / 100.0),
        None => value.parse::<f64>(),
    };
    match parsed {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(UsageError::Fraction { flag, value }),
    }
}

fn parse_seed(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn parse(args: &[&str]) -> Result<Options, UsageError> {
        Options::parse(
            std::iter::once("svmconf")
                .chain(args.iter().copied())
                .map(String::from),
        )
    }

    #[rstest]
    #[case(&["--backend", "sim"], Backend::Sim)]
    #[case(&["--backend=auto"], Backend::Auto)]
    #[case(&["--backend", "hip"], Backend::Hip)]
    #[case(&[], Backend::Auto)]
    fn backends(#[case] args: &[&str], #[case] want: Backend) {
        assert_eq!(parse(args).unwrap().backend, want);
    }

    #[rstest]
    #[case(&["--backend", "cuda"], UsageError::Backend("cuda".into()))]
    #[case(&["--backend"], UsageError::Missing { flag: "--backend" })]
    #[case(&["--seed", "-3"], UsageError::Seed("-3".into()))]
    #[case(&["--seed=x"], UsageError::Seed("x".into()))]
    #[case(&["--profile"], UsageError::Missing { flag: "--profile" })]
    #[case(&["--isolate", "vm"], UsageError::Isolate("vm".into()))]
    #[case(&["--timeout", "0"], UsageError::Seconds { flag: "--timeout", value: "0".into() })]
    #[case(&["--timeout=inf"], UsageError::Seconds { flag: "--timeout", value: "inf".into() })]
    #[case(&["--kill-grace", "-1"], UsageError::Seconds { flag: "--kill-grace", value: "-1".into() })]
    #[case(&["--retries", "two"], UsageError::Count { flag: "--retries", value: "two".into() })]
    #[case(&["--repeat", "0"], UsageError::Count { flag: "--repeat", value: "0".into() })]
    #[case(&["--resume"], UsageError::Missing { flag: "--resume" })]
    #[case(&["--device"], UsageError::Missing { flag: "--device" })]
    #[case(&["--reps", "0"], UsageError::Count { flag: "--reps", value: "0".into() })]
    #[case(&["--tolerance", "150%"], UsageError::Fraction { flag: "--tolerance", value: "150%".into() })]
    #[case(&["--alpha", "0"], UsageError::Fraction { flag: "--alpha", value: "0".into() })]
    #[case(&["--baseline"], UsageError::Missing { flag: "--baseline" })]
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
            o.libtest,
            ["svmconf", "prefetch", "--exact", "--test-threads", "1"]
        );
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
        assert_eq!(o.libtest, ["svmconf"]);
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
}
