//! svmconf's commands around the suite, and the entry point that dispatches them:
//! `sensitivity` (how often the baseline comparison catches a slowdown through noise), `scaling`
//! (each path's time against size), `seeds` (the whole suite on many seeds, where any failure is
//! a false positive), `kill-matrix` (every fault plan against the cases that should catch
//! it) and `planted-matrix` (every bug planted in the virtual SVM GPU against the cases that
//! should catch it, in the VM lab). They are subcommands of the binary rather than benches so that the lab runs them with
//! the svmconf it tests, with the same run options (a profile, `--sim-break`, the sim's fault
//! rules) passed through. Everything else is the suite itself, [`crate::harness::run`].

pub mod history;
pub mod kill_matrix;
pub mod planted_matrix;
pub mod scaling;
pub mod sensitivity;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use crate::harness::cli::{self, Options, UsageError};
use crate::harness::{SetupError, EXIT_USAGE};
use crate::model::regress::Method;
use crate::model::timing::Unit;
use crate::results::baseline::RECOMMENDED_REPS;
use crate::results::{self, CaseRecord};
use scaling::{PathScaling, THRESHOLD};
use sensitivity::Setup;

/// Runs svmconf with `args` (program name first, as `std::env::args_os` gives them): a tool
/// when the first argument names one, else the suite. The exit code follows libtest (0 all
/// passed or skipped, 101 a failure) and is 2 for bad input, an argument that is not UTF-8
/// included.
pub fn main_with<I>(args: I) -> ExitCode
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    let args = cli::utf8_args(args);
    let bisect = args.as_ref().is_ok_and(|a| crate::harness::asks_bisect(a));
    match args.map_err(SetupError::from).and_then(dispatch) {
        Ok(code) => code,
        Err(e) => {
            match &e {
                // clap's own message: what was wrong, a suggestion, the usage line.
                SetupError::Usage(cli::UsageError::Syntax(syntax)) => {
                    syntax.print();
                }
                e => eprintln!("svmconf: error: {e}"),
            }
            ExitCode::from(crate::harness::setup_exit_code(&e, bisect))
        }
    }
}

fn dispatch(args: Vec<String>) -> Result<ExitCode, SetupError> {
    let asks_help = args.iter().skip(1).any(|a| a == "-h" || a == "--help");
    match args.get(1).map(String::as_str) {
        Some("sensitivity") => sensitivity_command(&args[2..]),
        Some("scaling") => scaling_command(&args[2..]),
        Some("seeds") => seeds_command(&args[2..]),
        Some("history") => history::history_command(&args[2..]),
        Some("history-demo") => history::demo_command(&args[2..]),
        Some("kill-matrix") if !asks_help => kill_matrix::kill_matrix(&args[2..]),
        Some("planted-matrix") if !asks_help => planted_matrix::planted_matrix(&args[2..]),
        _ => crate::harness::run(args),
    }
}

const SENSITIVITY_USAGE: &str = "\
svmconf sensitivity: detection and false-alarm rates of the baseline comparison under the
sim's noise model, over simulated trials (no device is used)

USAGE: svmconf sensitivity [OPTIONS]
  --trials N            trials per row (default 1000)
  --reps N              samples per side (default 10, what the README recommends)
  --cv X                coefficient of variation of the noise (default 0.05)
  --outliers X          fraction of samples that are outliers (default 0.02)
  --outlier-factor X    how much longer an outlier takes (default 3)
  --tolerance X         as for --baseline (default 10%)
  --alpha P             as for --baseline (default 0.01)
  --seed N              seed of the noise (default 1)
  --night-cv X          the noise between nights for the across-nights rows (default: 2% and
                        5%); `svmconf history` prints the lab's own
Exit status 0 when the goal (>= 95% of 20% slowdowns caught, <= 1% false alarms) is met,
101 when not.
";

const SCALING_USAGE: &str = "\
svmconf scaling: each timed path over sizes 64 KiB .. 64 MiB in powers of two, fitted as
log(time) = a + k log(size); a path whose exponent k is above 1.3 (over all sizes or the
larger half) is flagged

USAGE: svmconf scaling [--reps N] [RUN OPTIONS]
  --reps N              timed repetitions per size (default 5)
  RUN OPTIONS           passed to the run as they are: --profile, --seed, --sim-break,
                        --backend, ... (not a case filter)
Exit status 0 when no path is flagged, 101 when one is, 2 for bad input.
";

const SEEDS_USAGE: &str = "\
svmconf seeds: the whole suite once per seed; on a healthy device every failing case is a
false positive of the suite

USAGE: svmconf seeds [--count N] [--first S] [RUN OPTIONS] [FILTER]
  --count N             how many seeds (default 50)
  --first S             the first seed (default 1); seeds S .. S+N-1
  RUN OPTIONS           passed to every run as they are (--profile, --sim-break, ...)
Exit status 0 when no case failed on any seed, 101 when one did, 2 for bad input.
";

/// `rel` under the fixtures a plain run would read (`fixtures/`, here or beside the crate): the
/// default of a tool's `--faults` or `--plan`; `tool` names it in an error.
fn default_fixture(tool: &str, rel: &str) -> Result<PathBuf, SetupError> {
    let defaults = Options::parse(["svmconf".to_string()])
        .map_err(|e| SetupError::Plan(format!("{tool}: {e}")))?;
    Ok(crate::harness::fixtures_root(&defaults).join(rel))
}

/// A folder of the subcommand's own, removed when it ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Result<Scratch, SetupError> {
        let dir = std::env::temp_dir().join(format!("svmconf-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|source| results::ResultsError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn usage(text: &str) -> Result<ExitCode, SetupError> {
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn number<T: std::str::FromStr>(
    flag: &'static str,
    value: Option<&String>,
) -> Result<T, SetupError> {
    let value = value.ok_or(UsageError::Missing { flag: flag.into() })?;
    value
        .parse()
        .map_err(|_| SetupError::Plan(format!("{flag}: expected a number, got `{value}`")))
}

/// `svmconf sensitivity`.
fn sensitivity_command(args: &[String]) -> Result<ExitCode, SetupError> {
    let mut setup = Setup {
        trials: 1000,
        reps: RECOMMENDED_REPS as usize,
        noise: sensitivity::DEFAULT_NOISE,
        method: Method::default(),
        seed: 1,
    };
    let mut night_cvs = vec![0.02, 0.05];
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "-h" | "--help" => return usage(SENSITIVITY_USAGE),
            "--night-cv" => {
                let cv: f64 = number("--night-cv", it.next())?;
                if !(0.0..1.0).contains(&cv) {
                    return Err(SetupError::Plan(format!(
                        "sensitivity: --night-cv {cv}: a fraction in [0, 1)"
                    )));
                }
                night_cvs = vec![cv];
            }
            "--trials" => setup.trials = number("--trials", it.next())?,
            "--reps" => setup.reps = number("--reps", it.next())?,
            "--cv" => setup.noise.cv = number("--cv", it.next())?,
            "--outliers" => setup.noise.outlier_rate = number("--outliers", it.next())?,
            "--outlier-factor" => {
                setup.noise.outlier_factor = number("--outlier-factor", it.next())?
            }
            "--tolerance" | "--alpha" => {
                // The run's own parser, so both read `10%` and `0.1` alike.
                let value = it.next().cloned().unwrap_or_default();
                let o = Options::parse(["svmconf".to_string(), flag.clone(), value])?;
                setup.method = Method {
                    tolerance: if flag == "--tolerance" {
                        o.method.tolerance
                    } else {
                        setup.method.tolerance
                    },
                    alpha: if flag == "--alpha" {
                        o.method.alpha
                    } else {
                        setup.method.alpha
                    },
                };
            }
            "--seed" => setup.seed = number("--seed", it.next())?,
            other => {
                return Err(SetupError::Plan(format!(
                    "sensitivity: unknown option `{other}` (see svmconf sensitivity --help)"
                )))
            }
        }
    }
    let started = Instant::now();
    let rows = sensitivity::table(&setup);
    print!("{}", sensitivity::render(&setup, &rows));
    println!("\nby samples per side (20% slowdown; no slowdown), same noise and method:\n");
    print!("{}", sensitivity::by_reps(&setup, 5..=12));
    let seq = sensitivity::Sequential {
        baseline: setup.reps * 2,
        first: setup.reps,
        step: setup.reps,
        max: setup.reps * 3,
    };
    println!();
    print!(
        "{}",
        sensitivity::render_sequential(&setup, seq, &sensitivity::sequential_table(&setup, seq))
    );
    println!();
    let nights = Setup {
        trials: (setup.trials / 4).max(1),
        ..setup
    };
    print!(
        "{}",
        sensitivity::render_across(&nights, &night_cvs, &[3, 5, 10], 30)
    );
    println!("\n({:.1} s)", started.elapsed().as_secs_f64());
    Ok(if sensitivity::meets_goal(&rows) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    })
}

/// The paths `scaling` sweeps: a case of the sweep (its body and parameters) and the timing
/// metric it records.
struct Sweep {
    path: &'static str,
    /// The sweep case's name in the generated matrix.
    case: &'static str,
    metric: &'static str,
}

const SWEEPS: [Sweep; 5] = [
    Sweep {
        path: "prefetch to VRAM",
        case: "prefetch::sweep",
        metric: "prefetch_to_vram_gbps",
    },
    Sweep {
        path: "prefetch to system",
        case: "prefetch::sweep",
        metric: "prefetch_to_system_gbps",
    },
    Sweep {
        path: "GPU first touch",
        case: "first_touch::sweep",
        metric: "first_touch_migrate_gbps",
    },
    Sweep {
        path: "CPU fault",
        case: "cpu_fault::sweep",
        metric: "cpu_fault_migrate_gbps",
    },
    Sweep {
        path: "TTM eviction",
        case: "ttm_eviction::sweep",
        metric: "eviction_gbps",
    },
];

/// Sizes of the sweep, 64 KiB .. 64 MiB: 2^16 .. 2^26 bytes.
const SWEEP_EXPONENTS: std::ops::RangeInclusive<u32> = 16..=26;

/// `64KiB`, `1MiB`: the name of 2^e bytes as the fixtures write sizes.
fn size_name(e: u32) -> String {
    if e >= 20 {
        format!("{}MiB", 1u64 << (e - 20))
    } else {
        format!("{}KiB", 1u64 << (e - 10))
    }
}

/// The sweep cases, appended to the fixtures' matrix: every body stays in use, and the runner
/// picks the sweep alone by the filter `::sweep::`.
fn sweep_cases(reps: u32) -> String {
    let sizes: Vec<String> = SWEEP_EXPONENTS.map(size_name).collect();
    let sizes = sizes.join(", ");
    let repeat = format!("{{warmup: 1, reps: {reps}}}");
    format!(
        "\n  # --- svmconf scaling: the timed paths over sizes ---\n\
         \x20 - name: prefetch::sweep\n    body: prefetch::round_trip\n    sizes: [{sizes}]\n    repeat: {repeat}\n\
         \x20 - name: first_touch::sweep\n    body: first_touch::gpu_touch\n    sizes: [{sizes}]\n    with: {{preferred: unset, cpu_written: false}}\n    repeat: {repeat}\n\
         \x20 - name: cpu_fault::sweep\n    body: cpu_fault::read\n    sizes: [{sizes}]\n    repeat: {repeat}\n\
         \x20 - name: ttm_eviction::sweep\n    body: ttm_eviction::device_buffers\n    sizes: [{sizes}]\n    with: {{evict_fraction: 0.5}}\n    repeat: {repeat}\n"
    )
}

/// `cases.yaml` with the sweep's sizes and cases added; `None` where the file is not laid out
/// as the fixtures' own (`sizes:` and `cases:` at the top level, `cases:` last).
fn with_sweep(cases_yaml: &str, reps: u32) -> Option<String> {
    let sizes_at = cases_yaml
        .find("\nsizes:\n")
        .map(|i| i + "\nsizes:\n".len())?;
    let last_top = cases_yaml
        .lines()
        .rfind(|l| l.chars().next().is_some_and(|c| c.is_ascii_alphabetic()))?;
    if !last_top.starts_with("cases:") {
        return None;
    }
    // Names the matrix already has (64KiB, 2MiB, ...) stay as they are.
    let sizes: String = SWEEP_EXPONENTS
        .filter(|&e| !cases_yaml.contains(&format!("\n  {}:", size_name(e))))
        .map(|e| format!("  {}: {}\n", size_name(e), 1u64 << e))
        .collect();
    let mut text = cases_yaml.to_string();
    text.insert_str(sizes_at, &sizes);
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&sweep_cases(reps));
    Some(text)
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// Runs this binary with `args` as a whole run into `results`; returns the run's description
/// and records.
fn run_child(
    args: &[String],
    results_dir: &Path,
) -> Result<(results::RunInfo, Vec<CaseRecord>), SetupError> {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("svmconf"));
    let out = Command::new(&exe)
        .args(args)
        .args([
            "--results".to_string(),
            results_dir.to_string_lossy().into(),
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SetupError::Plan(format!("cannot run {}: {e}", exe.display())))?;
    if out.status.code() == Some(i32::from(EXIT_USAGE)) {
        return Err(SetupError::Plan(format!(
            "the run refused its options: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let run = std::fs::read_dir(results_dir)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.path())
        .ok_or_else(|| {
            SetupError::Plan(format!(
                "the run left no run folder in {} (exit {:?}): {}",
                results_dir.display(),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        })?;
    let info = results::RunInfo::read(&run.join(results::RUN_INFO_FILE))?;
    Ok((
        info,
        results::journal::read(&run.join(results::JOURNAL_FILE))?,
    ))
}

/// A path's time in µs from its metric's median: GB/s over the allocation, or seconds.
fn time_us(unit: Unit, median: f64, size: u64) -> Option<f64> {
    match unit {
        Unit::GBps if median > 0.0 => Some(size as f64 / (median * 1e3)),
        Unit::Seconds => Some(median * 1e6),
        Unit::Micros => Some(median),
        _ => None,
    }
}

/// `svmconf scaling`.
fn scaling_command(args: &[String]) -> Result<ExitCode, SetupError> {
    let mut reps = 5;
    let mut pass: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return usage(SCALING_USAGE),
            "--reps" => reps = number("--reps", it.next())?,
            _ => pass.push(a.clone()),
        }
    }
    let options = Options::parse(std::iter::once("svmconf".to_string()).chain(pass.clone()))?;
    let libtest = cli::libtest_words(&options.libtest);
    if !libtest.is_empty() {
        return Err(SetupError::Plan(format!(
            "scaling: `{}` is not a run option; the sweep picks its own cases",
            libtest.join(" ")
        )));
    }
    let scratch = Scratch::new("scaling")?;
    let root = crate::harness::fixtures_root(&options);
    let fixtures = scratch.0.join("fixtures");
    copy_dir(&root, &fixtures)
        .map_err(|e| SetupError::Plan(format!("scaling: cannot copy {}: {e}", root.display())))?;
    let cases_path = fixtures.join("cases.yaml");
    let text =
        std::fs::read_to_string(&cases_path).map_err(|source| results::ResultsError::Read {
            path: root.join("cases.yaml"),
            source,
        })?;
    let swept = with_sweep(&text, reps).ok_or_else(|| {
        SetupError::Plan(format!(
            "scaling: {} does not have top-level `sizes:` and, last, `cases:`; the sweep is \
             added to them",
            root.join("cases.yaml").display()
        ))
    })?;
    std::fs::write(&cases_path, swept).map_err(|source| results::ResultsError::Write {
        path: cases_path.clone(),
        source,
    })?;

    let mut child = pass.clone();
    child.extend(
        [
            "--fixtures",
            &fixtures.to_string_lossy(),
            "-q",
            "--test-threads",
            "1",
            "::sweep::",
        ]
        .map(String::from),
    );
    let started = Instant::now();
    println!(
        "svmconf scaling: {} paths over {} sizes (64 KiB .. 64 MiB), {reps} timed repetitions \
         each{}",
        SWEEPS.len(),
        SWEEP_EXPONENTS.count(),
        if pass.is_empty() {
            String::new()
        } else {
            format!(", run options: {}", pass.join(" "))
        }
    );
    let (_, records) = run_child(&child, &scratch.0.join("results"))?;
    let failed: Vec<&CaseRecord> = records.iter().filter(|r| r.status.is_failure()).collect();
    for r in &failed {
        println!("svmconf scaling: {} {}: {}", r.case, r.status, r.headline());
    }

    println!(
        "\n| path | metric | sizes | k (all) | R² | k (larger half) | R² | verdict |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    let mut flagged = 0;
    for sweep in &SWEEPS {
        let points: Vec<(f64, f64)> = records
            .iter()
            .filter(|r| r.case.starts_with(&format!("{}::", sweep.case)))
            .filter(|r| !r.status.is_failure())
            .filter_map(|r| {
                let m = r.metrics.iter().find(|m| m.name == sweep.metric)?;
                Some((r.size as f64, time_us(m.unit, m.value(), r.size)?))
            })
            .collect();
        let Some(p) = PathScaling::of(sweep.path, &points) else {
            println!(
                "| {} | {} | {} | - | - | - | - | not fitted: too few sizes measured |",
                sweep.path,
                sweep.metric,
                points.len()
            );
            continue;
        };
        let (uk, ur) = match p.upper {
            Some(u) => (format!("{:.3}", u.k), format!("{:.4}", u.r2)),
            None => ("-".into(), "-".into()),
        };
        let verdict = if p.flagged() {
            flagged += 1;
            format!("FLAGGED: exponent above {THRESHOLD}")
        } else {
            "ok".to_string()
        };
        println!(
            "| {} | {} | {} | {:.3} | {:.4} | {uk} | {ur} | {verdict} |",
            p.path, sweep.metric, p.all.points, p.all.k, p.all.r2
        );
    }
    println!(
        "\nthreshold {THRESHOLD}; {flagged} path(s) flagged; {} case(s) failed ({:.1} s)",
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(if flagged > 0 || !failed.is_empty() {
        ExitCode::from(101)
    } else {
        ExitCode::SUCCESS
    })
}

/// `svmconf seeds`.
fn seeds_command(args: &[String]) -> Result<ExitCode, SetupError> {
    let (mut count, mut first) = (50u64, 1u64);
    let mut pass: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return usage(SEEDS_USAGE),
            "--count" => count = number("--count", it.next())?,
            "--first" => first = number("--first", it.next())?,
            "--seed" | "--results" | "--resume" => {
                return Err(SetupError::Plan(format!(
                    "seeds: {a} is chosen by seeds itself (--first, --count)"
                )))
            }
            _ => pass.push(a.clone()),
        }
    }
    // Bad options are refused once, here, rather than once per seed.
    Options::parse(std::iter::once("svmconf".to_string()).chain(pass.clone()))?;
    let scratch = Scratch::new("seeds")?;
    let started = Instant::now();
    let (mut failing, mut cases) = (0usize, 0usize);
    for seed in first..first + count {
        let mut child = pass.clone();
        child.extend(["--seed".into(), seed.to_string(), "-q".into()]);
        let results_dir = scratch.0.join(format!("s{seed}"));
        let (_, records) = run_child(&child, &results_dir)?;
        let bad: Vec<&CaseRecord> = records.iter().filter(|r| r.status.is_failure()).collect();
        cases += records.len();
        failing += bad.len();
        println!(
            "seed {seed}: {} cases, {} failing{}",
            records.len(),
            bad.len(),
            bad.iter()
                .map(|r| format!("\n  {} {}: {}", r.case, r.status, r.headline()))
                .collect::<String>()
        );
        let _ = std::fs::remove_dir_all(&results_dir);
    }
    println!(
        "svmconf seeds {first}..{}: {failing} failing of {cases} case runs over {count} seeds \
         ({:.1} s)",
        first + count - 1,
        started.elapsed().as_secs_f64()
    );
    Ok(if failing == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(101)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_goes_into_the_fixtures_matrix_and_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        let text = std::fs::read_to_string(root.join("cases.yaml")).unwrap();
        let swept = with_sweep(&text, 5).expect("the fixtures' layout");
        let dir = std::env::temp_dir().join(format!("svmconf-sweep-test-{}", std::process::id()));
        copy_dir(&root, &dir).unwrap();
        std::fs::write(dir.join("cases.yaml"), swept).unwrap();
        let loaded = crate::fixtures::load_cases(&dir);
        let profile = crate::fixtures::load_profile(&dir, "sim").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let instances = loaded.unwrap().value.instances(&profile.value).unwrap();
        let sweep: Vec<&str> = instances
            .iter()
            .filter(|i| i.name.contains("::sweep::"))
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(sweep.len(), 4 * 11, "{sweep:?}");
        assert!(sweep.contains(&"cpu_fault::sweep::64MiB"), "{sweep:?}");
        assert!(sweep.contains(&"prefetch::sweep::128KiB"), "{sweep:?}");
    }

    #[test]
    fn a_matrix_of_another_layout_is_refused() {
        assert_eq!(
            with_sweep("cases:\n  - name: a::b\nsizes:\n  x: 4\n", 5),
            None
        );
        assert_eq!(with_sweep("defaults: {}\n", 5), None);
    }

    #[test]
    fn times_come_from_bandwidth_or_seconds() {
        assert_eq!(time_us(Unit::GBps, 2.0, 4000), Some(2.0));
        assert_eq!(time_us(Unit::Seconds, 0.5, 1), Some(5e5));
        assert_eq!(time_us(Unit::Count, 3.0, 1), None);
    }
}
