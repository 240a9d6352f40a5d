//! `svmconf history RUN_DIR...`: many nights of runs read as one history. Per case, its
//! verdict night by night (the night it broke, the night it was mended, how often it flakes);
//! per timed metric, its series of nightly medians with each night's spread, and the nights
//! where it changed, found by E-divisive means with a permutation test
//! ([`crate::model::changepoint`]), the method of MongoDB's and Apache Otava's performance CI.
//! A table on the terminal; `report.html` with SVG plots ([`html`]); Otava's CSV input and
//! KCIDB JSON ([`export`]).
//!
//! Nights are read slim ([`Night`]): each case's verdict, figures, the first lines of its
//! reason and evidence, and its repro command, so that months of nights with thousands of
//! cases fit in memory. Runs of different backends, profiles or devices are never one series:
//! they are grouped, and the grouping is said. A run folder that cannot be read is named with
//! why, before anything is written.

pub mod export;
pub mod html;
pub mod load;
pub mod synthetic;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::harness::SetupError;
use crate::model::changepoint::{self, ChangePoint};
use crate::model::status::Status;
use crate::model::timing::{median, Unit};
pub use load::{load_nights, Night, Seen};

/// How many lines of a failure's evidence the report keeps per night.
pub const EVIDENCE_LINES: usize = 6;

/// The runs of one device: same backend, profile and device name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub backend: String,
    pub profile: String,
    pub device: String,
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} on {} (profile {})",
            self.backend, self.device, self.profile
        )
    }
}

/// What a case's verdicts did over the nights it ran.
#[derive(Clone, Debug, PartialEq)]
pub enum Trend {
    /// The same verdict every night it ran.
    Steady(Status),
    /// Passed until night `since`, failed on it and every night after it ran; `last_good` is
    /// the last night before it that passed (where a bisect starts).
    Broken { since: usize, last_good: usize },
    /// Failed until night `since`, passed on it and every night after it ran.
    Mended { since: usize },
    /// Passed and failed in no single step: `failed` of `ran` nights failed, the verdict
    /// changed `flips` times; `first` is the first night it failed.
    Flaky {
        failed: usize,
        ran: usize,
        flips: usize,
        first: usize,
    },
}

/// One case over the nights of a group.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseHistory {
    pub case: String,
    /// Per night: its verdict, `None` where the night did not run the case.
    pub verdicts: Vec<Option<Status>>,
    pub trend: Trend,
}

/// One night's figure of a metric.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Index of the night in its group.
    pub night: usize,
    /// Median of the night's samples: the series the change points are found on.
    pub median: f64,
    /// The night's spread: its smallest and largest sample.
    pub lo: f64,
    pub hi: f64,
    /// How many samples the night had.
    pub samples: usize,
}

/// One timed metric of one case over the nights of a group.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub case: String,
    pub metric: String,
    pub unit: Unit,
    /// The case's allocation size in bytes (the x of a size sweep).
    pub size: u64,
    pub points: Vec<Point>,
    /// Change points, their `index` into `points`.
    pub changes: Vec<ChangePoint>,
    /// The noise within a night: the median over nights of each night's coefficient of
    /// variation of its samples. `None` with fewer than two samples a night.
    pub within_cv: Option<f64>,
    /// The noise between nights: the robust coefficient of variation (1.4826 MAD / median) of
    /// the nightly medians between change points, pooled. `None` under 4 nights.
    pub between_cv: Option<f64>,
}

impl Series {
    /// Whether a change point is for the worse (slower), by the unit's direction.
    pub fn worse(&self, c: &ChangePoint) -> bool {
        match self.unit.higher_is_better() {
            Some(true) => c.relative < 0.0,
            Some(false) => c.relative > 0.0,
            None => false,
        }
    }

    /// The path a size sweep groups by: the case name without its last (size) segment.
    pub fn path(&self) -> &str {
        self.case
            .rsplit_once("::")
            .map(|(p, _)| p)
            .unwrap_or(&self.case)
    }
}

/// Failures of the history that say the same of their defect ([`crate::results::summary::signature`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FailureGroup {
    pub signature: String,
    /// Cases that showed it, and on how many nights.
    pub cases: BTreeMap<String, usize>,
    pub first_night: usize,
    pub last_night: usize,
    /// The latest failure that showed it: case, night, reason and evidence (first lines), repro.
    pub example: Seen,
    pub example_night: usize,
}

/// A group's whole history.
#[derive(Clone, Debug)]
pub struct History {
    pub key: GroupKey,
    pub nights: Vec<Night>,
    pub cases: Vec<CaseHistory>,
    pub series: Vec<Series>,
    pub failures: Vec<FailureGroup>,
    /// What the reader must know about the nights: versions that changed, nights with no
    /// cases, torn journals.
    pub notes: Vec<String>,
}

/// How change points are searched for.
#[derive(Clone, Copy, Debug)]
pub struct Detect {
    pub options: changepoint::Options,
}

impl Default for Detect {
    fn default() -> Detect {
        Detect {
            options: changepoint::Options {
                // Below 2% a change is lost in night-to-night noise on every machine measured.
                min_relative: 0.02,
                ..changepoint::Options::default()
            },
        }
    }
}

/// Splits nights into groups by device, each sorted by start time.
pub fn group(nights: Vec<Night>) -> BTreeMap<GroupKey, Vec<Night>> {
    let mut groups: BTreeMap<GroupKey, Vec<Night>> = BTreeMap::new();
    for n in nights {
        groups.entry(n.key()).or_default().push(n);
    }
    for nights in groups.values_mut() {
        nights.sort_by(|a, b| {
            (a.info.started.as_str(), a.info.run_id.as_str())
                .cmp(&(b.info.started.as_str(), b.info.run_id.as_str()))
        });
    }
    groups
}

/// Analyses the nights of one group (sorted by start).
pub fn analyse(key: GroupKey, nights: Vec<Night>, detect: &Detect) -> History {
    let mut notes = Vec::new();
    for w in nights.windows(2) {
        if w[0].info.suite_version != w[1].info.suite_version {
            notes.push(format!(
                "svmconf {} -> {} at night {} ({}): a change there may be the suite's",
                w[0].info.suite_version,
                w[1].info.suite_version,
                w[1].label(),
                w[1].info.run_id
            ));
        }
    }
    for n in &nights {
        notes.extend(n.notes.iter().map(|w| format!("{}: {w}", n.info.run_id)));
    }
    let cases = case_histories(&nights);
    let series = series_of(&nights, detect);
    let failures = failure_groups(&nights);
    History {
        key,
        nights,
        cases,
        series,
        failures,
        notes,
    }
}

/// Every case that ran on any night, in the order of the latest plan that holds it.
fn case_order(nights: &[Night]) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for n in nights.iter().rev() {
        for s in &n.seen {
            if seen.insert(s.case.clone()) {
                order.push(s.case.clone());
            }
        }
    }
    order
}

fn case_histories(nights: &[Night]) -> Vec<CaseHistory> {
    case_order(nights)
        .into_iter()
        .map(|case| {
            let verdicts: Vec<Option<Status>> = nights.iter().map(|n| n.verdict(&case)).collect();
            let trend = trend(&verdicts);
            CaseHistory {
                case,
                verdicts,
                trend,
            }
        })
        .collect()
}

/// A night's verdict in two words: failed or not. Skips and nights without the case are not
/// verdicts on the kernel and are passed over.
fn failed(s: Status) -> Option<bool> {
    match s {
        Status::Skip | Status::Notrun => None,
        s => Some(s.is_failure()),
    }
}

/// What the verdicts did, over the nights where the case ran and was not skipped.
pub fn trend(verdicts: &[Option<Status>]) -> Trend {
    let ran: Vec<(usize, bool)> = verdicts
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.and_then(failed).map(|f| (i, f)))
        .collect();
    let flips = ran.windows(2).filter(|w| w[0].1 != w[1].1).count();
    let failed_nights = ran.iter().filter(|(_, f)| *f).count();
    let first_fail = ran.iter().find(|(_, f)| *f).map(|(i, _)| *i);
    match (flips, ran.first(), first_fail) {
        (0, _, _) | (_, None, _) => Trend::Steady(
            verdicts
                .iter()
                .rev()
                .flatten()
                .next()
                .copied()
                .unwrap_or(Status::Notrun),
        ),
        (1, Some((_, false)), Some(since)) => Trend::Broken {
            since,
            last_good: ran
                .iter()
                .take_while(|(i, _)| *i < since)
                .last()
                .map_or(0, |(i, _)| *i),
        },
        (1, Some((_, true)), _) => Trend::Mended {
            since: ran.iter().find(|(_, f)| !*f).map_or(0, |(i, _)| *i),
        },
        (_, _, first) => Trend::Flaky {
            failed: failed_nights,
            ran: ran.len(),
            flips,
            first: first.unwrap_or(0),
        },
    }
}

/// Per (case, metric) with a direction (a time or a throughput), the nightly series.
fn series_of(nights: &[Night], detect: &Detect) -> Vec<Series> {
    let mut by: BTreeMap<(String, String), Series> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for case in case_order(nights) {
        for (i, n) in nights.iter().enumerate() {
            for s in n.seen.iter().filter(|s| s.case == case) {
                // A failed night's figures describe a broken path, not its speed.
                if s.status.is_failure() {
                    continue;
                }
                for m in &s.metrics {
                    if m.unit.higher_is_better().is_none() {
                        continue;
                    }
                    let samples: Vec<f64> = m
                        .samples
                        .iter()
                        .copied()
                        .filter(|x| x.is_finite())
                        .collect();
                    if samples.is_empty() {
                        continue;
                    }
                    let k = (case.clone(), m.name.clone());
                    let series = by.entry(k.clone()).or_insert_with(|| {
                        order.push(k);
                        Series {
                            case: case.clone(),
                            metric: m.name.clone(),
                            unit: m.unit,
                            size: s.size,
                            points: Vec::new(),
                            changes: Vec::new(),
                            within_cv: None,
                            between_cv: None,
                        }
                    });
                    match series.points.last_mut() {
                        // Repetitions of one night (`--repeat`) pool their samples.
                        Some(p) if p.night == i => {
                            p.lo = p.lo.min(min(&samples));
                            p.hi = p.hi.max(max(&samples));
                            p.samples += samples.len();
                        }
                        _ => series.points.push(Point {
                            night: i,
                            median: median(&samples),
                            lo: min(&samples),
                            hi: max(&samples),
                            samples: samples.len(),
                        }),
                    }
                    if let Some(p) = series.points.last_mut() {
                        if p.samples > samples.len() {
                            // Recomputed over the pooled samples of the night.
                            let pooled: Vec<f64> = n
                                .seen
                                .iter()
                                .filter(|o| o.case == case && !o.status.is_failure())
                                .flat_map(|o| o.metrics.iter().filter(|x| x.name == m.name))
                                .flat_map(|x| x.samples.iter().copied())
                                .filter(|x| x.is_finite())
                                .collect();
                            p.median = median(&pooled);
                        }
                    }
                }
            }
        }
    }
    order
        .into_iter()
        .filter_map(|k| by.remove(&k))
        .map(|mut s| {
            let values: Vec<f64> = s.points.iter().map(|p| p.median).collect();
            s.changes = changepoint::e_divisive(&values, &detect.options);
            s.within_cv = within_cv(nights, &s);
            s.between_cv = between_cv(&values, &s.changes);
            s
        })
        .collect()
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// The median over nights of each night's sample coefficient of variation.
fn within_cv(nights: &[Night], s: &Series) -> Option<f64> {
    let cvs: Vec<f64> = s
        .points
        .iter()
        .filter_map(|p| {
            let samples: Vec<f64> = nights[p.night]
                .seen
                .iter()
                .filter(|o| o.case == s.case && !o.status.is_failure())
                .flat_map(|o| o.metrics.iter().filter(|x| x.name == s.metric))
                .flat_map(|x| x.samples.iter().copied())
                .filter(|x| x.is_finite())
                .collect();
            cv(&samples)
        })
        .collect();
    (!cvs.is_empty()).then(|| median(&cvs))
}

fn cv(samples: &[f64]) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let n = samples.len() as f64;
    let mean = samples.iter().sum::<f64>() / n;
    let var = samples.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean > 0.0).then(|| var.sqrt() / mean)
}

/// Robust CV of the nightly medians, each segment between change points measured about its
/// own median and pooled, so a step is not counted as noise.
fn between_cv(values: &[f64], changes: &[ChangePoint]) -> Option<f64> {
    if values.len() < 4 {
        return None;
    }
    let mut cuts: Vec<usize> = changes.iter().map(|c| c.index).collect();
    cuts.insert(0, 0);
    cuts.push(values.len());
    let mut deviations = Vec::new();
    for w in cuts.windows(2) {
        let seg = &values[w[0]..w[1]];
        let m = median(seg);
        if m > 0.0 {
            deviations.extend(seg.iter().map(|x| (x - m).abs() / m));
        }
    }
    (!deviations.is_empty()).then(|| 1.4826 * median(&deviations))
}

fn failure_groups(nights: &[Night]) -> Vec<FailureGroup> {
    let mut groups: Vec<FailureGroup> = Vec::new();
    for (i, n) in nights.iter().enumerate() {
        for s in n.seen.iter().filter(|s| s.status.is_failure()) {
            match groups.iter_mut().find(|g| g.signature == s.signature) {
                Some(g) => {
                    *g.cases.entry(s.case.clone()).or_default() += 1;
                    g.last_night = i;
                    g.example = s.clone();
                    g.example_night = i;
                }
                None => groups.push(FailureGroup {
                    signature: s.signature.clone(),
                    cases: BTreeMap::from([(s.case.clone(), 1)]),
                    first_night: i,
                    last_night: i,
                    example: s.clone(),
                    example_night: i,
                }),
            }
        }
    }
    // The widest defect first: most cases, then most recent.
    groups.sort_by(|a, b| {
        b.cases
            .len()
            .cmp(&a.cases.len())
            .then(b.last_night.cmp(&a.last_night))
    });
    groups
}

/// The terminal table of a group's history.
pub fn render(h: &History) -> String {
    let mut out = String::new();
    let (first, last) = match (h.nights.first(), h.nights.last()) {
        (Some(f), Some(l)) => (f, l),
        _ => return format!("{}: no nights\n", h.key),
    };
    let _ = writeln!(
        out,
        "{}: {}, {} .. {}, kernels {}",
        h.key,
        nights(h.nights.len()),
        first.label(),
        last.label(),
        kernels(&h.nights)
    );
    for n in &h.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    let changed: Vec<&CaseHistory> = h
        .cases
        .iter()
        .filter(|c| !matches!(c.trend, Trend::Steady(_)))
        .collect();
    let failing = h
        .cases
        .iter()
        .filter(|c| matches!(c.trend, Trend::Steady(s) if s.is_failure()))
        .count();
    let _ = writeln!(
        out,
        "\nverdicts: {} cases, {} changed, {} failed on every night they ran",
        h.cases.len(),
        changed.len(),
        failing
    );
    for c in &changed {
        let _ = writeln!(out, "  {:<48} {}", c.case, describe_trend(h, &c.trend));
    }
    let moved: Vec<(&Series, &ChangePoint)> = h
        .series
        .iter()
        .flat_map(|s| s.changes.iter().map(move |c| (s, c)))
        .collect();
    let _ = writeln!(
        out,
        "\ntimings: {} series, {} change points ({} for the worse)",
        h.series.len(),
        moved.len(),
        moved.iter().filter(|(s, c)| s.worse(c)).count()
    );
    if !moved.is_empty() {
        let _ = writeln!(
            out,
            "  {:<44} {:<30} {:<22} {:>10} {:>10} {:>8} {:>6}",
            "case", "metric", "first night after", "before", "after", "change", "p"
        );
    }
    for (s, c) in &moved {
        let night = &h.nights[s.points[c.index].night];
        let _ = writeln!(
            out,
            "  {:<44} {:<30} {:<22} {:>10} {:>10} {:>+7.1}% {:>6.3}{}",
            s.case,
            s.metric,
            night.label(),
            figure(c.before, s.unit),
            figure(c.after, s.unit),
            c.relative * 100.0,
            c.p_value,
            if s.worse(c) { "  worse" } else { "" }
        );
    }
    let within: Vec<f64> = h.series.iter().filter_map(|s| s.within_cv).collect();
    let between: Vec<f64> = h.series.iter().filter_map(|s| s.between_cv).collect();
    if !within.is_empty() || !between.is_empty() {
        let _ = writeln!(
            out,
            "  noise, median over series: within a night {}, between nights {}",
            percent(&within),
            percent(&between)
        );
        if !between.is_empty() {
            let _ = writeln!(
                out,
                "  what change points catch at this noise: svmconf sensitivity --night-cv {:.3}",
                median(&between)
            );
        }
    }
    let _ = writeln!(out, "\nfailures: {} distinct signatures", h.failures.len());
    for g in &h.failures {
        let _ = writeln!(
            out,
            "  {} cases, nights {} .. {}: {}",
            g.cases.len(),
            h.nights[g.first_night].label(),
            h.nights[g.last_night].label(),
            g.signature
        );
        let _ = writeln!(out, "    repro: {}", g.example.repro);
    }
    out
}

/// `1 night`, `N nights`.
pub fn nights(n: usize) -> String {
    if n == 1 {
        "1 night".into()
    } else {
        format!("{n} nights")
    }
}

fn percent(v: &[f64]) -> String {
    if v.is_empty() {
        "unknown".to_string()
    } else {
        format!("{:.1}%", median(v) * 100.0)
    }
}

/// `value` with its unit, to three significant figures.
pub fn figure(value: f64, unit: Unit) -> String {
    let digits = if value.abs() >= 100.0 {
        0
    } else if value.abs() >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.digits$} {}", unit.symbol())
        .trim()
        .to_string()
}

/// The kernels of the nights, first and last where they changed.
fn kernels(nights: &[Night]) -> String {
    let mut ks: Vec<&str> = Vec::new();
    for n in nights {
        if ks.last() != Some(&n.info.kernel_release.as_str()) {
            ks.push(&n.info.kernel_release);
        }
    }
    match ks.as_slice() {
        [] => "none".into(),
        [one] => one.to_string(),
        [a, .., b] => format!("{a} .. {b} ({} changes)", ks.len() - 1),
    }
}

/// A trend in words, with the nights named.
pub fn describe_trend(h: &History, t: &Trend) -> String {
    let night = |i: usize| {
        let n = &h.nights[i];
        format!("{} (kernel {})", n.label(), n.info.kernel_release)
    };
    match t {
        Trend::Steady(s) => format!("{s} every night it ran"),
        Trend::Broken { since, last_good } => format!(
            "broken since {}; last good night {}",
            night(*since),
            night(*last_good)
        ),
        Trend::Mended { since } => format!("mended since {}", night(*since)),
        Trend::Flaky {
            failed,
            ran,
            flips,
            first,
        } => format!(
            "flaky: failed {failed} of {ran} nights ({:.0}%), {flips} changes of verdict, first failure {}",
            100.0 * *failed as f64 / (*ran).max(1) as f64,
            night(*first)
        ),
    }
}

const USAGE: &str = "\
svmconf history: many nights' run folders read as one history: verdict changes per case,
change points in every timed metric (E-divisive means, permutation test), failures grouped
by signature; a table here, report.html, Apache Otava CSV and KCIDB JSON in --out

USAGE: svmconf history [OPTIONS] RUN_DIR...
  RUN_DIR               run folders (each with run.json and journal.jsonl), or folders of them
  --out DIR             where report.html, otava/ and kcidb.json go (default results/history)
  --alpha P             significance of a change point (default 0.01)
  --min-change X        smallest relative change reported (default 0.02)
  --permutations N      shuffles of the permutation test (default 199)
  --origin NAME         the KCIDB origin of the ids (default svmconf)
Runs of different backends, profiles or devices are separate histories, each said.
Exit status 0 when written, 2 for bad input (nothing is written then).
";

/// `svmconf history`.
pub fn history_command(args: &[String]) -> Result<ExitCode, SetupError> {
    let mut out = PathBuf::from("results/history");
    let mut detect = Detect::default();
    let mut origin = "svmconf".to_string();
    let mut dirs = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return super::usage(USAGE),
            "--out" => {
                out = PathBuf::from(it.next().ok_or_else(|| missing("--out"))?);
            }
            "--alpha" => detect.options.alpha = probability("--alpha", it.next())?,
            "--min-change" => {
                detect.options.min_relative = super::number("--min-change", it.next())?
            }
            "--permutations" => {
                detect.options.permutations = super::number("--permutations", it.next())?
            }
            "--origin" => {
                origin = it.next().ok_or_else(|| missing("--origin"))?.clone();
                if origin.is_empty()
                    || !origin
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                {
                    return Err(SetupError::Plan(format!(
                        "history: --origin `{origin}`: KCIDB origins are letters, digits and _"
                    )));
                }
            }
            flag if flag.starts_with('-') => {
                return Err(SetupError::Plan(format!(
                    "history: unknown option `{flag}` (see svmconf history --help)"
                )))
            }
            dir => dirs.push(PathBuf::from(dir)),
        }
    }
    if dirs.is_empty() {
        return Err(SetupError::Plan(
            "history: no run folder given (see svmconf history --help)".into(),
        ));
    }
    let started = Instant::now();
    let nights = load_nights(&dirs).map_err(SetupError::Plan)?;
    // Every output is made in memory first: bad input writes nothing.
    let histories: Vec<History> = group(nights)
        .into_iter()
        .map(|(key, nights)| analyse(key, nights, &detect))
        .collect();
    if histories.len() > 1 {
        println!(
            "{} histories: runs of different devices are never one series",
            histories.len()
        );
    }
    for h in &histories {
        print!("{}", render(h));
        println!();
    }
    let html = html::report(&histories, &detect);
    let otava = export::otava(&histories);
    let kcidb = export::kcidb(&histories, &origin);
    let written = export::write_all(&out, &html, &otava, &kcidb).map_err(SetupError::Plan)?;
    for w in written {
        println!("written: {}", w.display());
    }
    eprintln!("({:.1} s)", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

fn missing(flag: &str) -> SetupError {
    SetupError::Plan(format!("history: {flag} needs a value"))
}

fn probability(flag: &'static str, v: Option<&String>) -> Result<f64, SetupError> {
    let p: f64 = super::number(flag, v)?;
    if !(p > 0.0 && p < 1.0) {
        return Err(SetupError::Plan(format!(
            "history: {flag} {p}: a probability between 0 and 1"
        )));
    }
    Ok(p)
}

const DEMO_USAGE: &str = "\
svmconf history-demo: writes a made-up history, one run folder a night, with a slowdown, a
breakage and a flake planted at known nights, to try `svmconf history`, Otava and a bisect on
(nothing in it is measured: figures come from a seeded noise model)

USAGE: svmconf history-demo [OPTIONS] OUT
  --nights N            how many nights (default 100)
  --paths N             timed paths, each at 4 sizes (default 8, at most 8)
  --cv X                noise of the samples within a night (default 0.05)
  --night-cv X          noise of the level between nights (default 0.02)
  --step-at N|none      the first night (1-based) on which the first path is slower (default 61)
  --step X              how much slower (default 0.10)
  --broken-at N|none    the first night a case fails every night (default 76)
  --flaky P             the probability that the flaky case fails a night (default 0.05)
  --seed N              seed of the noise (default 1)
OUT must not exist or be empty. Exit status 0 when written, 2 for bad input.
";

/// `svmconf history-demo`.
pub fn demo_command(args: &[String]) -> Result<ExitCode, SetupError> {
    let mut plan = synthetic::Plan::default();
    let mut out = None;
    let mut it = args.iter();
    // A night counted from 1, or `none`.
    let night = |flag: &'static str, v: Option<&String>| -> Result<Option<usize>, SetupError> {
        if v.is_some_and(|v| v == "none") {
            return Ok(None);
        }
        match super::number::<usize>(flag, v)? {
            0 => Err(SetupError::Plan(format!(
                "history-demo: {flag} counts nights from 1"
            ))),
            n => Ok(Some(n - 1)),
        }
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => return super::usage(DEMO_USAGE),
            "--nights" => plan.nights = super::number("--nights", it.next())?,
            "--paths" => plan.paths = super::number("--paths", it.next())?,
            "--cv" => plan.cv = super::number("--cv", it.next())?,
            "--night-cv" => plan.night_cv = super::number("--night-cv", it.next())?,
            "--step-at" => plan.step_at = night("--step-at", it.next())?,
            "--step" => plan.step = super::number("--step", it.next())?,
            "--broken-at" => plan.broken_at = night("--broken-at", it.next())?,
            "--flaky" => {
                plan.flaky = super::number("--flaky", it.next())?;
                if !(0.0..=1.0).contains(&plan.flaky) {
                    return Err(SetupError::Plan(
                        "history-demo: --flaky is a probability in [0, 1]".into(),
                    ));
                }
            }
            "--seed" => plan.seed = super::number("--seed", it.next())?,
            flag if flag.starts_with('-') => {
                return Err(SetupError::Plan(format!(
                    "history-demo: unknown option `{flag}` (see svmconf history-demo --help)"
                )))
            }
            dir if out.is_none() => out = Some(PathBuf::from(dir)),
            extra => {
                return Err(SetupError::Plan(format!(
                    "history-demo: one output folder only; `{extra}` is a second"
                )))
            }
        }
    }
    let out = out.ok_or_else(|| SetupError::Plan("history-demo: no output folder given".into()))?;
    if !(1..=8).contains(&plan.paths) || plan.nights == 0 || plan.samples == 0 {
        return Err(SetupError::Plan(
            "history-demo: --nights at least 1, --paths 1 to 8".into(),
        ));
    }
    if !(0.0..1.0).contains(&plan.cv)
        || !(0.0..1.0).contains(&plan.night_cv)
        || !(0.0..1.0).contains(&plan.step)
    {
        return Err(SetupError::Plan(
            "history-demo: --cv, --night-cv and --step are fractions in [0, 1)".into(),
        ));
    }
    if std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_some()) {
        return Err(SetupError::Plan(format!(
            "history-demo: `{}` is not empty; give a new folder",
            out.display()
        )));
    }
    let dirs = synthetic::write(&plan, &out).map_err(|e| {
        SetupError::Plan(format!(
            "history-demo: cannot write `{}`: {e}",
            out.display()
        ))
    })?;
    println!(
        "{} nights in {} (slower from night {}, broken from night {}, flaky at {:.0}%)",
        dirs.len(),
        out.display(),
        plan.step_at.map_or("none".into(), |n| (n + 1).to_string()),
        plan.broken_at
            .map_or("none".into(), |n| (n + 1).to_string()),
        plan.flaky * 100.0
    );
    Ok(ExitCode::SUCCESS)
}
