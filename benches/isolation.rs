//! What process isolation costs per case: the same empty case (`runner_selftest::pass`) run N
//! times on a thread of the runner and N times each in a child process, in wall-clock time;
//! the difference per case is the price of a fork, an exec, loading the fixtures and writing
//! the verdict. Each side runs several times and the medians are compared.
//!
//! `cargo bench --bench isolation`

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const CASES: u32 = 100;
const ROUNDS: usize = 5;

fn run(isolate: &str, results: &Path) -> Result<Duration> {
    let start = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_svmconf"))
        .args(["--runner-selftest", "--isolate", isolate, "--repeat"])
        .arg(CASES.to_string())
        .args([
            "--test-threads",
            "1",
            "-q",
            "runner_selftest::pass",
            "--exact",
        ])
        .arg("--results")
        .arg(results)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running svmconf")?;
    let took = start.elapsed();
    if !status.success() {
        bail!("svmconf --isolate {isolate} failed: {status}");
    }
    Ok(took)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (mut here, mut child) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        here.push(run("none", &tmp.path().join(format!("none{round}")))?);
        child.push(run("process", &tmp.path().join(format!("process{round}")))?);
    }
    let (here, child) = (median(here), median(child));
    let per_case = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(CASES);
    println!("isolation: {CASES} empty cases, median of {ROUNDS} runs each");
    println!(
        "  on a thread:        {:8.1} ms in all, {:6.2} ms per case",
        here.as_secs_f64() * 1e3,
        per_case(here)
    );
    println!(
        "  in a child process: {:8.1} ms in all, {:6.2} ms per case",
        child.as_secs_f64() * 1e3,
        per_case(child)
    );
    println!(
        "  overhead of process isolation: {:.2} ms per case",
        per_case(child) - per_case(here)
    );
    Ok(())
}
