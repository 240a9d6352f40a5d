//! `--baseline RUN_DIR`: each case's timings compared with the same case in an earlier run.
//!
//! The baseline is read whole before any case runs, and refused when it cannot be this run's
//! reference: no run folder, a run of another profile or backend, a journal that does not read,
//! no case that passed. Each case is then judged as it finishes, so the comparison sits in its
//! journal record like any other evidence and every report derives from it:
//! - every timing metric (GB/s, µs, s; counts and sizes are not timings) is compared with
//!   [`regress::compare`] against the samples of that metric in all the baseline's passing
//!   records of the case (every `--repeat` of it);
//! - a significant regression makes a passing case **fail**, with metric, medians, change,
//!   p-value and sample counts as its diagnosis. A regression is a failure of what the case
//!   measures, so it takes the status every report, retry rule and expectations file already
//!   knows rather than a new one;
//! - an improvement, an unchanged metric, an inconclusive comparison (too few samples to reach
//!   α) and a metric on one side only are evidence lines, never failures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::regress::{self, Better, Comparison, Finding, Method};
use crate::model::timing::Unit;
use crate::results::{self, CaseRecord, ResultsError, RunInfo, Status};

/// Timed repetitions each side needs for a verdict at the default α: 1 / C(10, 5) = 1/252 is
/// the smallest p-value 5 and 5 samples can give. The sensitivity table (README) shows what
/// more repetitions buy.
pub const MIN_REPS: u32 = 5;

/// Repetitions the README recommends for both runs: at 5% noise, 10 and 10 samples catch a
/// 20% slowdown at least 95% of the time with under 1% false alarms (`svmconf sensitivity`).
pub const RECOMMENDED_REPS: u32 = 10;

/// An earlier run, as the reference of this one.
#[derive(Clone, Debug)]
pub struct Baseline {
    pub dir: PathBuf,
    pub run_id: String,
    pub method: Method,
    /// Case name → metric name → unit and every sample of the case's passing records.
    cases: BTreeMap<String, BTreeMap<String, (Unit, Vec<f64>)>>,
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("--baseline {}: not a run folder: {why}", dir.display())]
    NotARun { dir: PathBuf, why: String },
    #[error(
        "--baseline {}: a run on {what} `{theirs}`, and this run is on `{ours}`; a baseline must \
         be a run of the same {what}",
        dir.display()
    )]
    Mismatch {
        dir: PathBuf,
        what: &'static str,
        theirs: String,
        ours: String,
    },
    #[error("--baseline {}: {source}", dir.display())]
    Unreadable { dir: PathBuf, source: ResultsError },
    #[error(
        "--baseline {}: `{}` holds no case that passed, so there is nothing to compare with",
        dir.display(),
        journal.display()
    )]
    Empty { dir: PathBuf, journal: PathBuf },
}

/// What the comparison of one metric found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Regressed,
    Improved,
    Unchanged,
    /// Too few samples on a side to reach α: neither a pass nor a regression.
    Inconclusive,
    /// Measured now; the baseline has no such metric for the case (or no such case).
    NotInBaseline,
    /// In the baseline; not measured now.
    MissingNow,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Regressed,
        Outcome::Improved,
        Outcome::Unchanged,
        Outcome::Inconclusive,
        Outcome::NotInBaseline,
        Outcome::MissingNow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Regressed => "regressed",
            Outcome::Improved => "improved",
            Outcome::Unchanged => "unchanged",
            Outcome::Inconclusive => "inconclusive",
            Outcome::NotInBaseline => "not in baseline",
            Outcome::MissingNow => "missing now",
        }
    }
}

/// One metric of a case against the baseline: a line of the journal record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricComparison {
    pub metric: String,
    pub unit: Unit,
    pub outcome: Outcome,
    pub baseline_n: usize,
    pub current_n: usize,
    /// The figures, where both sides have samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparison: Option<Comparison>,
}

/// The baseline and the method, as run.json records them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineRef {
    /// The run folder as given.
    pub run_dir: String,
    pub run_id: String,
    pub tolerance: f64,
    pub alpha: f64,
    /// The rule, in words, for whoever reads run.json without the source.
    pub method: String,
}

/// Which way is better for a unit, or `None` for figures that are not timings.
fn better(unit: Unit) -> Option<Better> {
    unit.higher_is_better().map(|higher| {
        if higher {
            Better::Higher
        } else {
            Better::Lower
        }
    })
}

impl Baseline {
    /// Reads the run in `dir` as the reference of a run on `backend` with `profile`.
    pub fn load(
        dir: &Path,
        backend: &str,
        profile: &str,
        method: Method,
    ) -> Result<Baseline, BaselineError> {
        let info_path = dir.join(results::RUN_INFO_FILE);
        if !dir.is_dir() {
            return Err(BaselineError::NotARun {
                dir: dir.to_path_buf(),
                why: "no such folder".into(),
            });
        }
        if !info_path.is_file() {
            return Err(BaselineError::NotARun {
                dir: dir.to_path_buf(),
                why: format!(
                    "it holds no `{}` (give the folder of one run, results/<run>)",
                    results::RUN_INFO_FILE
                ),
            });
        }
        let unreadable = |source| BaselineError::Unreadable {
            dir: dir.to_path_buf(),
            source,
        };
        let info = RunInfo::read(&info_path).map_err(unreadable)?;
        for (what, theirs, ours) in [
            ("backend", &info.backend, backend),
            ("profile", &info.profile, profile),
        ] {
            if theirs != ours {
                return Err(BaselineError::Mismatch {
                    dir: dir.to_path_buf(),
                    what,
                    theirs: theirs.clone(),
                    ours: ours.to_string(),
                });
            }
        }
        let journal = dir.join(results::JOURNAL_FILE);
        let records = results::journal::read(&journal).map_err(unreadable)?;
        let mut cases: BTreeMap<String, BTreeMap<String, (Unit, Vec<f64>)>> = BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| matches!(r.status, Status::Pass | Status::Flake))
        {
            let metrics = cases.entry(r.case.clone()).or_default();
            for m in r.metrics.iter().filter(|m| better(m.unit).is_some()) {
                let (_, samples) = metrics
                    .entry(m.name.clone())
                    .or_insert_with(|| (m.unit, Vec::new()));
                samples.extend(m.samples.iter().copied().filter(|x| x.is_finite()));
            }
        }
        if cases.is_empty() {
            return Err(BaselineError::Empty {
                dir: dir.to_path_buf(),
                journal,
            });
        }
        Ok(Baseline {
            dir: dir.to_path_buf(),
            run_id: info.run_id,
            method,
            cases,
        })
    }

    /// What run.json says of this baseline.
    pub fn reference(&self) -> BaselineRef {
        BaselineRef {
            run_dir: self.dir.to_string_lossy().into_owned(),
            run_id: self.run_id.clone(),
            tolerance: self.method.tolerance,
            alpha: self.method.alpha,
            method: describe_method(self.method),
        }
    }

    /// Every timing metric of `record` against the baseline's samples of the same case.
    pub fn compare(&self, record: &CaseRecord) -> Vec<MetricComparison> {
        let empty = BTreeMap::new();
        let theirs = self.cases.get(&record.case).unwrap_or(&empty);
        let mut found = Vec::new();
        for m in &record.metrics {
            let Some(better) = better(m.unit) else {
                continue;
            };
            let current: Vec<f64> = m
                .samples
                .iter()
                .copied()
                .filter(|x| x.is_finite())
                .collect();
            let Some((_, base)) = theirs.get(&m.name) else {
                found.push(MetricComparison {
                    metric: m.name.clone(),
                    unit: m.unit,
                    outcome: Outcome::NotInBaseline,
                    baseline_n: 0,
                    current_n: current.len(),
                    comparison: None,
                });
                continue;
            };
            let c = regress::compare(base, &current, better, self.method);
            let outcome = match c.finding {
                Finding::Regressed => Outcome::Regressed,
                Finding::Improved => Outcome::Improved,
                Finding::Unchanged => Outcome::Unchanged,
                Finding::Inconclusive => Outcome::Inconclusive,
            };
            found.push(MetricComparison {
                metric: m.name.clone(),
                unit: m.unit,
                outcome,
                baseline_n: base.len(),
                current_n: current.len(),
                comparison: Some(c),
            });
        }
        for (name, (unit, samples)) in theirs {
            if !record.metrics.iter().any(|m| &m.name == name) {
                found.push(MetricComparison {
                    metric: name.clone(),
                    unit: *unit,
                    outcome: Outcome::MissingNow,
                    baseline_n: samples.len(),
                    current_n: 0,
                    comparison: None,
                });
            }
        }
        found
    }

    /// Whether some timing of `record` is still [`regress::undecided`] against the baseline:
    /// another run of the case's timed steps is then worth its time.
    pub fn undecided(&self, record: &CaseRecord) -> bool {
        self.compare(record).iter().any(|c| {
            c.comparison
                .as_ref()
                .is_some_and(|cmp| regress::undecided(cmp, self.method))
        })
    }

    /// Compares a case that ran to its end (passed, or flaked and passed) and records what was
    /// found; a regression turns it into a failure with the diagnosis. Other statuses already
    /// say more than their timings could.
    pub fn judge(&self, record: &mut CaseRecord) {
        if !matches!(record.status, Status::Pass | Status::Flake) {
            return;
        }
        let found = self.compare(record);
        let regressions: Vec<String> = found
            .iter()
            .filter(|c| c.outcome == Outcome::Regressed)
            .map(|c| self.describe(c))
            .collect();
        record
            .evidence
            .extend(found.iter().map(|c| self.describe(c)));
        if !regressions.is_empty() {
            record.status = Status::Fail;
            record.reason = Some(format!(
                "{}\n{}",
                regressions.join("\n"),
                record.reason.as_deref().unwrap_or_default()
            ));
            if let Some(r) = &mut record.reason {
                r.truncate(r.trim_end().len());
            }
        }
        record.baseline = found;
    }

    /// One line of evidence: `baseline RUN: METRIC regressed: ...`.
    pub fn describe(&self, c: &MetricComparison) -> String {
        describe(c, self.method, &self.run_id)
    }
}

/// The method in words, for run.json and the summary.
pub fn describe_method(m: Method) -> String {
    format!(
        "a timing regressed when its median is more than {} worse than the baseline's and a \
         one-sided exact Mann-Whitney U test says the current samples are worse at p <= {}; \
         each side needs at least {MIN_REPS} samples (1/C(10,5) = 1/252), fewer is \
         inconclusive",
        percent(m.tolerance),
        m.alpha
    )
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A comparison as a line of evidence or a diagnosis.
pub fn describe(c: &MetricComparison, method: Method, run_id: &str) -> String {
    let unit = c.unit.symbol();
    let head = format!("baseline {run_id}: {} {}", c.metric, c.outcome.name());
    let counts = format!(
        "{} baseline and {} current samples",
        c.baseline_n, c.current_n
    );
    match (&c.outcome, &c.comparison) {
        (Outcome::NotInBaseline, _) => {
            format!("{head}: the baseline has no such metric for this case; not compared")
        }
        (Outcome::MissingNow, _) => format!(
            "{head}: the baseline has it ({} samples), this run did not measure it; not compared",
            c.baseline_n
        ),
        (Outcome::Inconclusive, Some(x)) => format!(
            "{head}: median {:.3} -> {:.3} {unit}, but {counts} cannot reach α {} (each side \
             needs {MIN_REPS}: run both with --reps {MIN_REPS} or more); not judged",
            x.baseline_median, x.current_median, method.alpha
        ),
        (_, Some(x)) => {
            let change = if x.worse_by >= 0.0 {
                format!("{} worse", percent(x.worse_by))
            } else {
                format!("{} better", percent(-x.worse_by))
            };
            let p = if c.outcome == Outcome::Improved {
                format!("p(better) = {:.4}", x.p_better)
            } else {
                format!("p(worse) = {:.4}", x.p_worse)
            };
            format!(
                "{head}: median {:.3} -> {:.3} {unit}, {change} (tolerance {}), one-sided \
                 Mann-Whitney {p} (α {}), {counts}",
                x.baseline_median,
                x.current_median,
                percent(method.tolerance),
                method.alpha
            )
        }
        (_, None) => format!("{head}: {counts}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::timing::Metric;
    use crate::results::test_support::{record, run};

    const NOISE: [f64; 5] = [0.98, 0.99, 1.0, 1.01, 1.02];

    fn timed(case: &str, gbps: f64, reps: usize) -> CaseRecord {
        let mut r = record(case, Status::Pass, None);
        let samples = NOISE.iter().cycle().take(reps).map(|f| gbps * f).collect();
        r.metrics
            .push(Metric::new("prefetch_to_vram_gbps", Unit::GBps, samples));
        r.metrics.push(Metric::exact("evictions", Unit::Count, 3.0));
        r
    }

    /// A run folder holding `records`, of backend sim and profile sim.
    fn run_dir(records: &[CaseRecord]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("a temporary folder");
        run().write(dir.path()).expect("run.json");
        let mut j = results::Journal::create(dir.path()).expect("a journal");
        for r in records {
            j.append(r).expect("a journal line");
        }
        dir
    }

    fn load(dir: &Path) -> Result<Baseline, BaselineError> {
        Baseline::load(dir, "sim", "sim", Method::default())
    }

    #[test]
    fn a_slower_case_fails_with_the_diagnosis() {
        let base = run_dir(&[timed("prefetch::to_vram::2MiB", 6.0, 5)]);
        let b = load(base.path()).expect("a baseline");
        let mut now = timed("prefetch::to_vram::2MiB", 4.5, 5);
        b.judge(&mut now);
        assert_eq!(now.status, Status::Fail);
        let reason = now.reason.clone().unwrap_or_default();
        for part in [
            "prefetch_to_vram_gbps regressed",
            "median 6.000 -> 4.500 GB/s",
            "33.3% worse",
            "p(worse) = 0.0040",
            "5 baseline and 5 current samples",
            "20250131T021400Z-lab7",
        ] {
            assert!(reason.contains(part), "{part:?} missing from {reason}");
        }
        assert_eq!(now.baseline.len(), 1, "counts are not timings");
        assert_eq!(now.baseline[0].outcome, Outcome::Regressed);
    }

    #[test]
    fn the_same_figures_pass_and_say_so() {
        let base = run_dir(&[timed("c::2MiB", 6.0, 5)]);
        let mut now = timed("c::2MiB", 6.0, 5);
        load(base.path()).unwrap().judge(&mut now);
        assert_eq!(now.status, Status::Pass);
        assert_eq!(now.baseline[0].outcome, Outcome::Unchanged);
        assert!(now.evidence.iter().any(|e| e.contains("unchanged")));
    }

    #[test]
    fn faster_is_noted_never_failed() {
        let base = run_dir(&[timed("c::2MiB", 6.0, 5)]);
        let mut now = timed("c::2MiB", 9.0, 5);
        load(base.path()).unwrap().judge(&mut now);
        assert_eq!(now.status, Status::Pass);
        assert_eq!(now.baseline[0].outcome, Outcome::Improved);
        assert!(now.evidence.iter().any(|e| e.contains("33.3% better")));
    }

    #[test]
    fn too_few_samples_are_inconclusive_not_a_failure() {
        let base = run_dir(&[timed("c::2MiB", 6.0, 3)]);
        let mut now = timed("c::2MiB", 3.0, 3);
        load(base.path()).unwrap().judge(&mut now);
        assert_eq!(now.status, Status::Pass);
        assert_eq!(now.baseline[0].outcome, Outcome::Inconclusive);
        let line = now.evidence.iter().find(|e| e.contains("inconclusive"));
        assert!(
            line.is_some_and(|l| l.contains("--reps 5")),
            "{:?}",
            now.evidence
        );
    }

    #[test]
    fn repeated_baseline_records_pool_their_samples() {
        let mut a = timed("c::2MiB", 6.0, 3);
        a.repetition = 1;
        let mut b = a.clone();
        b.repetition = 2;
        let base = run_dir(&[a, b]);
        let mut now = timed("c::2MiB", 3.0, 5);
        load(base.path()).unwrap().judge(&mut now);
        assert_eq!(now.baseline[0].baseline_n, 6);
        assert_eq!(now.status, Status::Fail);
    }

    #[test]
    fn a_metric_on_one_side_only_is_noted() {
        let base = run_dir(&[timed("c::2MiB", 6.0, 5)]);
        let mut now = record("c::2MiB", Status::Pass, None);
        now.metrics
            .push(Metric::new("new_us", Unit::Micros, vec![1.0; 5]));
        load(base.path()).unwrap().judge(&mut now);
        let outcomes: Vec<Outcome> = now.baseline.iter().map(|c| c.outcome).collect();
        assert_eq!(outcomes, [Outcome::NotInBaseline, Outcome::MissingNow]);
        assert_eq!(now.status, Status::Pass);
        let mut other = timed("other::2MiB", 6.0, 5);
        load(base.path()).unwrap().judge(&mut other);
        assert_eq!(other.baseline[0].outcome, Outcome::NotInBaseline);
    }

    #[test]
    fn a_failed_case_is_not_compared() {
        let base = run_dir(&[timed("c::2MiB", 6.0, 5)]);
        let mut now = timed("c::2MiB", 1.0, 5);
        now.status = Status::Skip;
        load(base.path()).unwrap().judge(&mut now);
        assert!(now.baseline.is_empty());
    }

    #[test]
    fn a_failed_baseline_case_is_no_reference() {
        let mut failed = timed("c::2MiB", 6.0, 5);
        failed.status = Status::Fail;
        let base = run_dir(&[failed, timed("d::2MiB", 6.0, 5)]);
        let mut now = timed("c::2MiB", 1.0, 5);
        load(base.path()).unwrap().judge(&mut now);
        assert_eq!(now.baseline[0].outcome, Outcome::NotInBaseline);
    }

    #[test]
    fn bad_baselines_are_refused_naming_the_path() {
        let missing = Path::new("/nonexistent/run");
        let e = load(missing).unwrap_err().to_string();
        assert!(
            e.contains("/nonexistent/run") && e.contains("no such folder"),
            "{e}"
        );

        let empty = tempfile::tempdir().unwrap();
        let e = load(empty.path()).unwrap_err().to_string();
        assert!(e.contains("holds no `run.json`"), "{e}");

        let base = run_dir(&[timed("c::2MiB", 6.0, 5)]);
        let e = Baseline::load(base.path(), "sim", "mi60", Method::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("profile `sim`") && e.contains("`mi60`"), "{e}");
        let e = Baseline::load(base.path(), "hip", "sim", Method::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("backend `sim`") && e.contains("`hip`"), "{e}");

        std::fs::write(base.path().join(results::JOURNAL_FILE), "not json\n").unwrap();
        let e = load(base.path()).unwrap_err().to_string();
        assert!(e.contains("journal.jsonl` line 1"), "{e}");

        let none = run_dir(&[record("c::2MiB", Status::Fail, Some("broken"))]);
        let e = load(none.path()).unwrap_err().to_string();
        assert!(e.contains("no case that passed"), "{e}");
    }

    #[test]
    fn comparisons_survive_the_journal() {
        let base = run_dir(&[timed("c::2MiB", 6.0, 5)]);
        let mut now = timed("c::2MiB", 4.0, 5);
        load(base.path()).unwrap().judge(&mut now);
        let json = serde_json::to_string(&now).unwrap();
        let back: CaseRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back.baseline, now.baseline);
    }
}
