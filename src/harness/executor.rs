//! Running a case: its repetitions and retries, each attempt in a child process or on this
//! thread, with the journal's start and end lines around it, the kernel log and the taint read
//! before and after, and the expectations applied to what it did.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libtest_mimic::{Completion, Failed};

use super::child::{self, End, Spawn};
use super::cli::{Isolation, Options};
use super::plan;
use super::progress::Progress;
use super::watch::Observers;
use crate::case::{Ctx, Stop};
use crate::device::backend::{Backend, OpenError};
use crate::device::{Destructive, Device};
use crate::fixtures::CaseInstance;
use crate::results::journal::Start;
use crate::results::{self, Attempt, CaseRecord, Status};
use crate::suites::Body;

/// What every case of a run shares.
pub struct Runner {
    pub options: Options,
    /// The profile as the command line named it, for child processes and repro lines.
    pub profile_arg: String,
    /// Where each case gets its device, and the profile and device info of the run.
    pub backend: std::sync::Arc<dyn Backend>,
    pub fixtures: PathBuf,
    pub isolation: Isolation,
    /// The run folder; `None` in a case's child process, which records nothing itself.
    pub dir: Option<PathBuf>,
    pub journal: Option<Mutex<results::Journal>>,
    pub destructive: Option<Destructive>,
    pub observers: Observers,
    /// `(case, repetition)` already finished in the journal (a resumed run).
    pub finished: HashSet<(String, u32)>,
    /// A resumed run's records of the cases it does not run again, by `(case, repetition)`:
    /// what libtest is told of them, so that its closing line counts the whole run.
    pub previous: std::collections::HashMap<(String, u32), CaseRecord>,
    /// Print a case's evidence and metrics when it passes too: with `--nocapture`, or when
    /// the run is one case (a developer repeating it). A failure prints them always.
    pub show_evidence: bool,
    /// Set when a case tainted the kernel: the rest are not run.
    pub stop: Mutex<Option<String>>,
    pub stopped: AtomicBool,
    pub progress: Option<Progress>,
    /// `--baseline`: the run each case's timings are compared with, in the runner only.
    pub baseline: Option<crate::results::baseline::Baseline>,
    /// Held from a case's kernel log window's start to its end where cases in this process
    /// run side by side: a line in the window is then the case's alone ([`super::watch::ONE_AT_A_TIME`]).
    pub one_at_a_time: Option<Mutex<()>>,
    /// What runs svmconf where the repro lines are used ([`super::cli::REPRO_PREFIX_ENV`]).
    pub repro_prefix: Option<String>,
}

impl Runner {
    /// Runs every repetition of a case that the journal does not have yet; what libtest sees is
    /// the worst of them.
    pub fn run_case(&self, instance: &CaseInstance, body: Body) -> Result<Completion, Failed> {
        if let Some(p) = &self.progress {
            p.case_started(&instance.name);
        }
        let reps: Vec<u32> = match self.options.repeat {
            1 => vec![0],
            n => (1..=n).collect(),
        };
        let mut shown: Option<CaseRecord> = None;
        let mut failure = None;
        for rep in reps {
            if self.finished.contains(&(instance.name.clone(), rep)) {
                continue;
            }
            let record = self.run_repetition(instance, body, rep);
            if let Err(e) = self.record_end(&record) {
                failure = Some(e);
                break;
            }
            let worse = shown
                .as_ref()
                .map_or(true, |s| rank(record.status) > rank(s.status));
            if worse {
                shown = Some(record);
            }
        }
        if let Some(p) = &self.progress {
            p.case_finished(
                &instance.name,
                failure.is_some() || shown.as_ref().is_some_and(|r| r.status.is_failure()),
            );
        }
        if let Some(e) = failure {
            return Err(Failed::from(e));
        }
        let shown = shown.or_else(|| {
            // Resumed: the worst of what the journal already holds for this case.
            self.previous
                .iter()
                .filter(|((case, _), _)| *case == instance.name)
                .map(|(_, r)| r)
                .max_by_key(|r| rank(r.status))
                .cloned()
        });
        let Some(record) = shown else {
            return Ok(Completion::ignored_with("already recorded (resumed run)"));
        };
        if self.show_evidence && !record.status.is_failure() {
            say!("{}", evidence_text(&record));
        }
        match record.status {
            Status::Skip | Status::Notrun => Ok(Completion::ignored_with(
                record.reason.unwrap_or_else(|| record.status.to_string()),
            )),
            s if !s.is_failure() => Ok(Completion::Completed),
            _ => Err(Failed::from(failure_text(&record))),
        }
    }

    fn run_repetition(&self, instance: &CaseInstance, body: Body, rep: u32) -> CaseRecord {
        let base = self.blank_record(instance, rep);
        if let Some(why) = self.stopped_reason() {
            return CaseRecord {
                status: Status::Notrun,
                reason: Some(why),
                started: results::now_rfc3339(),
                ..base
            };
        }
        // No device is the first thing to say: nothing runs, whatever the expectations list.
        if let Some(why) = self.backend.unavailable() {
            return CaseRecord {
                status: Status::Skip,
                reason: Some(why.to_string()),
                started: results::now_rfc3339(),
                ..base
            };
        }
        if let Some(expected) = self.observers.expected(&instance.name) {
            if let Some(skip) = expected.skip_reason() {
                let mut record = CaseRecord {
                    status: Status::Skip,
                    reason: Some(skip),
                    started: results::now_rfc3339(),
                    ..base
                };
                self.observers.apply_expectation(&mut record);
                return record;
            }
        }
        let unmet = plan::needs(body, instance).find_map(|need| {
            need.unmet(
                self.backend.info(),
                &self.backend.profile().value,
                self.destructive.is_some(),
            )
        });
        if let Some(reason) = unmet {
            return CaseRecord {
                status: Status::Skip,
                reason: Some(reason),
                started: results::now_rfc3339(),
                ..base
            };
        }

        let listed_fail = self
            .observers
            .expected(&instance.name)
            .is_some_and(|e| e.is_fail());
        let mut earlier: Vec<Attempt> = Vec::new();
        let mut attempt = 1;
        let mut record = loop {
            let record = self.run_attempt(instance, body, &base, attempt);
            // A kernel warning or taint is a kernel bug whatever the next attempt does: a retry
            // must not wash it out as a flake.
            let retryable = matches!(
                record.status,
                Status::Fail | Status::Timeout | Status::Crash
            ) && record.taint.is_none();
            let again = retryable
                && attempt <= self.options.retries
                && !listed_fail
                && self.stopped_reason().is_none();
            if !again {
                break record;
            }
            earlier.push(Attempt {
                status: record.status,
                reason: Some(record.headline().to_string()).filter(|s| !s.is_empty()),
                started: record.started.clone(),
                duration_s: record.duration_s,
            });
            attempt += 1;
        };
        if !earlier.is_empty() {
            if record.status == Status::Pass {
                let first = earlier[0].reason.clone().unwrap_or_default();
                record.status = Status::Flake;
                record.reason = Some(format!(
                    "flaky: passed on attempt {attempt} after {} failed: {first}",
                    earlier.len()
                ));
            }
            record.retries = earlier;
        }
        if let Some(baseline) = &self.baseline {
            record = self.decide(instance, body, &base, record, attempt, baseline);
            baseline.judge(&mut record);
        }
        self.observers.apply_expectation(&mut record);
        record
    }

    /// With a baseline, a passed case whose timings are still undecided against it
    /// ([`crate::model::regress::undecided`]) runs again, up to [`DECIDE_RUNS`] more times
    /// within `--decide-budget`, and every timing pools the samples of every run: at 5% noise
    /// a 10% slowdown is then caught in over 95% of nights with under 1% false alarms, for
    /// about a fifth more runs on a healthy night (`svmconf sensitivity`). A run that does not
    /// pass while deciding is the case's verdict, said to come from a deciding run.
    fn decide(
        &self,
        instance: &CaseInstance,
        body: Body,
        base: &CaseRecord,
        mut record: CaseRecord,
        attempt: u32,
        baseline: &crate::results::baseline::Baseline,
    ) -> CaseRecord {
        let budget = self.options.decide_budget;
        let clock = Instant::now();
        let first: usize = record
            .metrics
            .iter()
            .map(|m| m.samples.len())
            .max()
            .unwrap_or(0);
        let mut runs = 0;
        while runs < DECIDE_RUNS
            && record.status == Status::Pass
            && clock.elapsed() < budget
            && self.stopped_reason().is_none()
            && baseline.undecided(&record)
        {
            runs += 1;
            let mut more = self.run_attempt(instance, body, base, attempt + runs);
            if more.status != Status::Pass {
                more.evidence.insert(
                    0,
                    format!(
                        "this came in deciding run {runs} (the timings were undecided against \
                         the baseline)"
                    ),
                );
                return more;
            }
            pool_samples(&mut record, &more);
        }
        if runs > 0 {
            let now: usize = record
                .metrics
                .iter()
                .map(|m| m.samples.len())
                .max()
                .unwrap_or(0);
            record.evidence.push(format!(
                "baseline: undecided after {first} samples: {runs} more run(s) of the case, \
                 {now} samples, {:.1} s (--decide-budget {} s)",
                clock.elapsed().as_secs_f64(),
                budget.as_secs()
            ));
        }
        record
    }

    /// One attempt: journal start, the case in a child or here, the kernel's evidence.
    fn run_attempt(
        &self,
        instance: &CaseInstance,
        body: Body,
        base: &CaseRecord,
        attempt: u32,
    ) -> CaseRecord {
        let started = results::now_rfc3339();
        if let Some(journal) = &self.journal {
            let start = Start {
                case: instance.name.clone(),
                started: started.clone(),
                repetition: base.repetition,
                attempt,
            };
            let written = journal
                .lock()
                .map_err(|_| "the journal lock is poisoned".to_string())
                .and_then(|mut j| j.append_start(&start).map_err(|e| e.to_string()));
            if let Err(e) = written {
                return CaseRecord {
                    status: Status::Notrun,
                    reason: Some(format!("not run: its start could not be recorded: {e}")),
                    started,
                    ..base.clone()
                };
            }
        }
        // A poisoned lock only says another case panicked; the window is still ours alone.
        let _alone = self
            .one_at_a_time
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let watch = self.observers.begin(&instance.name);
        let clock = Instant::now();
        let mut record = match (self.isolation, &self.dir) {
            (Isolation::Process, Some(dir)) => {
                let started = |pid| self.observers.claim(&watch, pid);
                self.attempt_in_child(instance, base, attempt, dir, &started)
            }
            _ => self.attempt_here(instance, body, base),
        };
        record.started = started;
        record.duration_s = clock.elapsed().as_secs_f64();
        if let Some(repro) = self.placed_repro(&record) {
            record.repro = repro;
        }
        if let Some(stop) = self.observers.end(watch, &mut record) {
            if !self.options.continue_on_taint {
                self.stop_run(format!(
                    "not run: {stop} during {}; rerun with --continue-on-taint to go on after it",
                    instance.name
                ));
            }
        }
        record
    }

    /// The case on this thread, on a fresh device.
    pub fn attempt_here(
        &self,
        instance: &CaseInstance,
        body: Body,
        base: &CaseRecord,
    ) -> CaseRecord {
        let mut record = base.clone();
        let outcome = match self.open_device(base.seed) {
            Err(stop) => Err(stop),
            Ok(mut dev) => {
                let mut ctx = Ctx::new(
                    dev.as_mut(),
                    &self.backend.profile().value,
                    base.seed,
                    instance.size,
                    instance.kind,
                    &instance.params,
                    instance.repeat,
                    self.destructive.as_ref(),
                )
                .declaring(body.params);
                let watched = self.levels_are_the_cases();
                let levels = if watched {
                    ctx.dev.levels()
                } else {
                    Vec::new()
                };
                let mut result = catch_unwind(AssertUnwindSafe(|| (body.run)(&mut ctx)))
                    .unwrap_or_else(|panic| {
                        Err(Stop::Fail(format!(
                            "the case panicked: {}",
                            panic_text(&panic)
                        )))
                    });
                if result.is_ok() && !levels.is_empty() {
                    let settle = ctx.dev.release_settles_within();
                    let (leaks, waited) =
                        crate::device::settled_leaks(&levels, || ctx.dev.levels(), settle);
                    if !leaks.is_empty() {
                        result = Err(Stop::Fail(format!(
                            "leak: after the case freed everything it allocated, {} (still, \
                             {:.1} s after the last free)",
                            leaks.join("; "),
                            waited.as_secs_f64()
                        )));
                    } else {
                        ctx.note(format!(
                            "no leak: {} back within their granularity after the last free{}",
                            levels
                                .iter()
                                .map(|l| l.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            if waited >= std::time::Duration::from_millis(50) {
                                format!(
                                    " (given back late: {:.2} s after it)",
                                    waited.as_secs_f64()
                                )
                            } else {
                                String::new()
                            }
                        ));
                    }
                }
                for line in ctx.dev.take_notes() {
                    ctx.note(line);
                }
                let (metrics, evidence) = ctx.take_record();
                record.metrics = metrics;
                record.evidence = evidence;
                record.allocations = ctx.take_placed();
                drop(ctx);
                record.injected = dev.injected();
                result
            }
        };
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
        record
    }

    fn attempt_in_child(
        &self,
        instance: &CaseInstance,
        base: &CaseRecord,
        attempt: u32,
        dir: &std::path::Path,
        started: &dyn Fn(u32),
    ) -> CaseRecord {
        let mut stem = child::file_stem(&instance.name);
        if base.repetition > 0 {
            stem += &format!(".rep{}", base.repetition);
        }
        if attempt > 1 {
            stem += &format!(".try{attempt}");
        }
        let verdict = dir
            .join(child::OUTPUT_DIR)
            .join(format!("{stem}.verdict.json"));
        let timeout = self.options.timeout_s.unwrap_or(instance.timeout_s);
        let spawn = Spawn {
            exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("svmconf")),
            args: self.options.child_args(
                self.backend.name(),
                &self.profile_arg,
                &self.fixtures,
                &instance.name,
                &verdict,
            ),
            run_dir: dir.to_path_buf(),
            stem,
            timeout: Duration::from_secs_f64(timeout),
            grace: Duration::from_secs_f64(self.options.kill_grace_s),
            sysrq: self.backend.hardware() && self.options.sysrq,
        };
        let (end, output) = child::run_reporting(&spawn, started);
        let mut record = match end {
            End::Verdict(r) => CaseRecord {
                status: r.status,
                reason: r.reason,
                metrics: r.metrics,
                evidence: r.evidence,
                injected: r.injected,
                allocations: r.allocations,
                ..base.clone()
            },
            other => {
                let status = match other {
                    End::TimedOut { .. } => Status::Timeout,
                    _ => Status::Crash,
                };
                let mut reason = other.reason().unwrap_or_default();
                let last = last_lines(&output.stdout_tail, &output.stderr_tail, 5);
                if !last.is_empty() {
                    reason += &format!("\nits last output:\n{last}");
                }
                CaseRecord {
                    status,
                    reason: Some(reason),
                    ..base.clone()
                }
            }
        };
        record.output = Some(output);
        record
    }

    /// Whether the device's levels (VRAM in use and the like) move only with this case: a
    /// fresh simulated GPU per case, or a real one that runs one case at a time. Where cases
    /// share a GPU at once, one case's allocations would read as another's leak.
    fn levels_are_the_cases(&self) -> bool {
        !self.backend.hardware() || self.options.libtest.test_threads == Some(1)
    }

    fn open_device(&self, seed: u64) -> Result<Box<dyn Device>, Stop> {
        self.backend.open(seed).map_err(|e| match e {
            OpenError::Unavailable(why) => Stop::Skip(why),
            OpenError::Failed(why) => Stop::Fail(why),
        })
    }

    /// The record every attempt starts from: who the case is and how to repeat it.
    pub fn blank_record(&self, instance: &CaseInstance, repetition: u32) -> CaseRecord {
        CaseRecord {
            case: instance.name.clone(),
            seed: super::case_seed(self.options.seed, &instance.name),
            kind: instance.kind.name().to_string(),
            size: instance.size,
            repro: self.repro(&instance.name),
            repetition,
            ..CaseRecord::blank()
        }
    }

    pub fn repro(&self, case: &str) -> String {
        self.repro_placed(case, None)
    }

    /// The repro line of `case`, placing its allocations from `first` (`--place-at`).
    fn repro_placed(&self, case: &str, first: Option<u64>) -> String {
        let mut words = format!(
            "{} --exact {}",
            super::cli::shell_word(case),
            self.options
                .repro_flags(self.backend.name(), &self.profile_arg)
        );
        if let Some(at) = first {
            words += &format!(" --place-at {at:#x}");
        }
        let results = self
            .options
            .results_given
            .then_some(self.options.results.as_path());
        super::cli::repro_line(self.repro_prefix.as_deref(), &words, results)
    }

    /// The repro line for what the attempt did: where the backend places allocations and the
    /// run did not already, it carries the address the case's first placed allocation got, so
    /// a failure that depends on where memory landed repeats.
    fn placed_repro(&self, record: &CaseRecord) -> Option<String> {
        if self.options.place_at.is_some() {
            return None;
        }
        let first = record
            .allocations
            .iter()
            .find(|a| self.backend.places(a.kind))?;
        Some(self.repro_placed(&record.case, Some(first.address)))
    }

    /// Records the attempts a dead runner left running as incomplete: whatever ended the run
    /// (a crash, a reset that took the machine, a SIGKILL) happened during them.
    pub fn record_incomplete(
        &self,
        in_flight: &[Start],
        instances: &[CaseInstance],
    ) -> Result<Vec<CaseRecord>, results::ResultsError> {
        let mut recorded = Vec::new();
        for s in in_flight {
            let mut record = match instances.iter().find(|i| i.name == s.case) {
                Some(i) => self.blank_record(i, s.repetition),
                None => CaseRecord {
                    case: s.case.clone(),
                    repetition: s.repetition,
                    repro: self.repro(&s.case),
                    ..CaseRecord::blank()
                },
            };
            record.status = Status::Incomplete;
            record.started = s.started.clone();
            record.reason = Some(format!(
                "the run ended while attempt {} of this case was running (the runner was \
                 killed, or the machine crashed or rebooted); resumed at {}",
                s.attempt,
                results::now_rfc3339()
            ));
            if let Some(journal) = &self.journal {
                if let Ok(mut j) = journal.lock() {
                    j.append(&record)?;
                }
            }
            recorded.push(record);
        }
        Ok(recorded)
    }

    fn record_end(&self, record: &CaseRecord) -> Result<(), String> {
        let Some(journal) = &self.journal else {
            return Ok(());
        };
        journal
            .lock()
            .map_err(|_| "the journal lock is poisoned".to_string())?
            .append(record)
            .map_err(|e| format!("{}: the result could not be recorded: {e}", record.case))
    }

    fn stop_run(&self, why: String) {
        if let Ok(mut stop) = self.stop.lock() {
            if stop.is_none() {
                eprintln!("svmconf: stopping: {why}");
                *stop = Some(why);
            }
        }
        self.stopped.store(true, Ordering::SeqCst);
    }

    fn stopped_reason(&self) -> Option<String> {
        if !self.stopped.load(Ordering::SeqCst) {
            return None;
        }
        self.stop.lock().ok().and_then(|s| s.clone())
    }
}

/// Which of two repetitions' records libtest shows: the worse.
fn rank(s: Status) -> u8 {
    match s {
        Status::Notrun => 0,
        Status::Skip => 1,
        Status::Pass => 2,
        Status::ExpectedFail => 3,
        Status::Flake => 4,
        Status::DmesgWarn => 5,
        Status::Fail => 6,
        Status::DmesgFail => 7,
        Status::UnexpectedPass => 8,
        Status::Timeout => 9,
        Status::Crash => 10,
        Status::Incomplete => 11,
    }
}

/// The last `n` lines of a child's output, stderr after stdout.
fn last_lines(stdout: &str, stderr: &str, n: usize) -> String {
    let pick = |s: &str| -> Vec<String> {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(n)..]
            .iter()
            .map(|l| {
                let l: String = l.chars().take(200).collect();
                format!("  {l}")
            })
            .collect()
    };
    let mut out = pick(stdout);
    let err = pick(stderr);
    if !err.is_empty() {
        out.push("  (stderr)".into());
        out.extend(err);
    }
    out.join("\n")
}

/// What libtest prints for a failed case: the message with its evidence, then the repro line.
/// What a case that did not fail showed: its status, evidence and metrics, the command that
/// repeats it.
pub fn evidence_text(r: &CaseRecord) -> String {
    let mut s = format!("---- {} ----\n{}", r.case, r.status);
    if let Some(why) = r.reason.as_deref().filter(|w| !w.is_empty()) {
        s += &format!(": {why}");
    }
    for e in &r.evidence {
        s += &format!("\n  evidence: {e}");
    }
    for m in &r.metrics {
        s += &format!("\n  metric: {m}");
    }
    s += &format!("\n  repeat with: {}", r.repro);
    s
}

pub fn failure_text(r: &CaseRecord) -> String {
    let mut s = format!("{}: {}", r.status, r.reason.clone().unwrap_or_default());
    for e in &r.evidence {
        s += &format!("\n  evidence: {e}");
    }
    for m in &r.metrics {
        s += &format!("\n  metric: {m}");
    }
    for l in r.kernel_log.iter().filter(|l| l.flag.is_some()).take(5) {
        s += &format!(
            "\n  kernel: [{}] {}",
            l.flag.as_deref().unwrap_or(""),
            l.text
        );
    }
    s += &format!("\n  repeat with: {}", r.repro);
    s
}

pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// At most this many more runs of a case whose timings are undecided against the baseline:
/// the sequential rule of `svmconf sensitivity` (10 samples, then 20, then 30).
pub const DECIDE_RUNS: u32 = 2;

/// Adds the timing samples of `more`, another run of the same case, to `record`'s metrics of
/// the same name; figures that are not timings (counts, sizes) stay as the first run had them.
fn pool_samples(record: &mut CaseRecord, more: &CaseRecord) {
    for m in record
        .metrics
        .iter_mut()
        .filter(|m| m.unit.higher_is_better().is_some())
    {
        if let Some(other) = more.metrics.iter().find(|o| o.name == m.name) {
            m.samples.extend_from_slice(&other.samples);
            m.stats = crate::model::timing::Stats::of(&m.samples);
        }
    }
    record.duration_s += more.duration_s;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_own_rank() {
        let mut ranks: Vec<u8> = Status::ALL.iter().map(|s| rank(*s)).collect();
        ranks.sort();
        ranks.dedup();
        assert_eq!(ranks.len(), Status::ALL.len());
        assert!(rank(Status::Crash) > rank(Status::Fail));
        assert!(rank(Status::Fail) > rank(Status::Pass));
    }

    #[test]
    fn last_lines_keep_the_end_of_both_streams() {
        let got = last_lines("a\nb\nc\n", "e1\n", 2);
        assert_eq!(got, "  b\n  c\n  (stderr)\n  e1");
        assert_eq!(last_lines("", "", 3), "");
    }
}
