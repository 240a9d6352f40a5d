//! The runner's own test cases (`--runner-selftest`): cases that misbehave on purpose, so the
//! runner's tests can show that a segfault, an abort, a hang, an exit without a verdict, a kernel
//! warning, a taint, a flake and megabytes of output each get the right status and that the run
//! goes on. They are never part of the conformance suite.
//!
//! Cases that play the kernel write to files in `$SVMCONF_SELFTEST_DIR`: `kmsg` (records in
//! /dev/kmsg's format, read by the runner through `--kmsg`), `tainted` (read through
//! `--tainted`), and counters that make `flaky` fail its first attempt only.

use std::io::Write;
use std::time::Duration;

use crate::case::{CaseResult, Ctx, Stop};
use crate::device::AllocKind;
use crate::fixtures::CaseInstance;
use crate::model::timing::Repeat;
use crate::suites::Body;

/// The folder the kernel-playing cases write to.
pub const DIR_ENV: &str = "SVMCONF_SELFTEST_DIR";

/// How many `tick` cases there are: enough that a killed runner has cases before, during and
/// after the kill.
pub const TICKS: usize = 24;

/// Every self-test case with its body, in run order.
pub fn plan() -> Vec<(CaseInstance, Body)> {
    let mut out = Vec::new();
    let mut add = |name: String, body: Body, timeout_s: f64| {
        out.push((
            CaseInstance {
                case: name.clone(),
                name,
                body: body.name.to_string(),
                kind: AllocKind::Managed,
                size_name: "4KiB".into(),
                size: 4096,
                params: crate::util::yaml::empty_map(),
                repeat: Repeat { warmup: 0, reps: 1 },
                needs: Vec::new(),
                timeout_s,
            },
            body,
        ))
    };
    for body in BODIES {
        let timeout_s = if body.name.ends_with("::hang") {
            1.0
        } else {
            60.0
        };
        add(body.name.to_string(), *body, timeout_s);
    }
    for i in 1..=TICKS {
        add(format!("runner_selftest::tick::{i:02}"), TICK, 60.0);
    }
    out
}

const BODIES: &[Body] = &[
    body("runner_selftest::pass", |_| Ok(())),
    body("runner_selftest::fail", |_| {
        Err(Stop::Fail(
            "page 3: stale (generation 1, expected 2): the self-test's failure".into(),
        ))
    }),
    body("runner_selftest::segfault", |_| {
        // Rust's own SIGSEGV handler (stack overflow detection) takes the first one, restores
        // the default action and returns; the second is fatal, as a real fault would be.
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSEGV);
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGSEGV);
        Err(Stop::Fail(
            "SIGSEGV was raised and did not end the process".into(),
        ))
    }),
    body("runner_selftest::abort", |_| std::process::abort()),
    body("runner_selftest::hang", |_| {
        // Deaf to SIGTERM, as a process stuck in a GPU wait is: only SIGKILL ends it.
        let mut term = nix::sys::signal::SigSet::empty();
        term.add(nix::sys::signal::Signal::SIGTERM);
        let _ = term.thread_block();
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }),
    body("runner_selftest::exit_early", |_| std::process::exit(3)),
    body("runner_selftest::chatty", |_| {
        // 4 MiB on stdout, 1 MiB on stderr: more than any pipe or report should hold.
        let line = format!("{}\n", "x".repeat(1023));
        let mut out = std::io::stdout().lock();
        for i in 0..4096 {
            let _ = write!(out, "{i:06} {}", &line[7..]);
        }
        let _ = out.flush();
        let mut err = std::io::stderr().lock();
        for i in 0..1024 {
            let _ = write!(err, "{i:06} {}", &line[7..]);
        }
        let _ = writeln!(out, "chatty: done");
        Ok(())
    }),
    body("runner_selftest::kernel_warning", |_| {
        kernel_says(
            4,
            "WARNING: CPU: 1 PID: 4242 at drivers/gpu/drm/amd/amdgpu/amdgpu_migrate.c:312 \
             svm_migrate_to_vram+0x1a4/0x2c0 [amdgpu]",
        )?;
        kernel_says(4, "Call Trace:")?;
        Ok(())
    }),
    body("runner_selftest::taint", |_| {
        let path = selftest_dir()?.join("tainted");
        // W (warn) is bit 9.
        std::fs::write(&path, "512\n")
            .map_err(|e| Stop::Fail(format!("{}: {e}", path.display())))?;
        Ok(())
    }),
    body("runner_selftest::flaky", |_| {
        let path = selftest_dir()?.join("flaky.count");
        let n: u32 = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        std::fs::write(&path, format!("{}\n", n + 1))
            .map_err(|e| Stop::Fail(format!("{}: {e}", path.display())))?;
        if n == 0 {
            Err(Stop::Fail("flaky: fails its first attempt".into()))
        } else {
            Ok(())
        }
    }),
];

const TICK: Body = body("runner_selftest::tick", |_| {
    std::thread::sleep(Duration::from_millis(25));
    Ok(())
});

const fn body(name: &'static str, run: fn(&mut Ctx) -> CaseResult) -> Body {
    Body {
        name,
        run,
        needs: &[],
        params: &[],
        fit: None,
    }
}

fn selftest_dir() -> Result<std::path::PathBuf, Stop> {
    std::env::var_os(DIR_ENV).map(Into::into).ok_or_else(|| {
        Stop::Fail(format!(
            "{DIR_ENV} is not set: the self-test needs a folder"
        ))
    })
}

/// Appends a record to the fake kernel log, as the kernel would.
fn kernel_says(level: u8, text: &str) -> Result<(), Stop> {
    let path = selftest_dir()?.join("kmsg");
    let seq = std::fs::read_to_string(&path)
        .map(|s| s.lines().count())
        .unwrap_or(0);
    let line = format!("{level},{},{},-;{text}\n", 90_000 + seq, 1_000_000 + seq);
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| Stop::Fail(format!("{}: {e}", path.display())))
}
