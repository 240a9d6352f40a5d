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
}

impl Backend {
    pub const NAMES: &'static str = "auto, sim";

    fn parse(s: &str) -> Option<Backend> {
        match s {
            "auto" => Some(Backend::Auto),
            "sim" => Some(Backend::Sim),
            _ => None,
        }
    }
}

/// svmconf's own options.
#[derive(Clone, Debug)]
pub struct Options {
    pub backend: Backend,
    /// Profile name (fixtures/profiles/NAME.yaml) or file; `None`: the backend's default.
    pub profile: Option<String>,
    pub seed: u64,
    /// Where run folders are made.
    pub results: PathBuf,
    /// An extra copy of the JUnit report.
    pub junit: Option<PathBuf>,
    pub allow_destructive: bool,
    /// Sim switches that break a migration path on purpose (`--sim-break a,b`).
    pub sim_break: Option<String>,
    /// The fixtures folder; `None`: `./fixtures`, else the one the binary was built with.
    pub fixtures: Option<PathBuf>,
    /// Everything else, for libtest-mimic, program name first.
    pub libtest: Vec<String>,
}

pub const DEFAULT_SEED: u64 = 1;

pub const USAGE: &str = "\
svmconf: conformance suite for GPU shared virtual memory migration

USAGE: svmconf [SVMCONF OPTIONS] [LIBTEST OPTIONS] [FILTER]

SVMCONF OPTIONS:
  --backend auto|sim    device to run on (default auto: a GPU when one is found, else sim)
  --profile NAME|FILE   device profile (fixtures/profiles/NAME.yaml; default: sim on sim)
  --seed N              seed of every data pattern and of the sim (default 1)
  --results DIR         where the run folder is written (default results)
  --junit FILE          also write the JUnit report to FILE
  --allow-destructive   allow cases that reset the GPU
  --sim-break A,B       break migration paths of the sim on purpose (see --sim-break help)
  --fixtures DIR        fixtures folder (default ./fixtures, else the one built in)

LIBTEST OPTIONS (as any Rust test binary): --list, --exact, --skip PATTERN, --ignored,
  --include-ignored, --test-threads N, --format pretty|terse|json, -q, FILTER.
";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UsageError {
    #[error("{flag}: expected a value")]
    Missing { flag: &'static str },
    #[error("--backend: unknown backend `{0}` (known: {names})", names = Backend::NAMES)]
    Backend(String),
    #[error("--seed: expected a non-negative integer, got `{0}`")]
    Seed(String),
}

impl Options {
    /// Splits `args` (program name first) into svmconf's options and libtest's.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, UsageError> {
        let mut args = args.into_iter();
        let program = args.next().unwrap_or_else(|| "svmconf".into());
        let mut o = Options {
            backend: Backend::Auto,
            profile: None,
            seed: DEFAULT_SEED,
            results: PathBuf::from("results"),
            junit: None,
            allow_destructive: false,
            sim_break: None,
            fixtures: None,
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
                "--profile" => o.profile = Some(value("--profile")?),
                "--seed" => {
                    let v = value("--seed")?;
                    o.seed = parse_seed(&v).ok_or(UsageError::Seed(v))?;
                }
                "--results" => o.results = value("--results")?.into(),
                "--junit" => o.junit = Some(value("--junit")?.into()),
                "--sim-break" => o.sim_break = Some(value("--sim-break")?),
                "--fixtures" => o.fixtures = Some(value("--fixtures")?.into()),
                "--allow-destructive" => o.allow_destructive = true,
                _ => o.libtest.push(arg),
            }
        }
        Ok(o)
    }

    /// The svmconf options that change what a case does, as a command line repeats them.
    pub fn repro_flags(&self, backend: &str, profile: &str) -> String {
        let mut s = format!(
            "--backend {backend} --profile {profile} --seed {}",
            self.seed
        );
        if let Some(b) = &self.sim_break {
            s += &format!(" --sim-break {b}");
        }
        if self.allow_destructive {
            s += " --allow-destructive";
        }
        s
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
    fn the_unknown_backend_message_lists_the_known_ones() {
        let e = parse(&["--backend", "hip"]).unwrap_err().to_string();
        assert!(e.contains("`hip`") && e.contains("auto, sim"), "{e}");
    }
}
