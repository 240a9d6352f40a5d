//! Repetitions, statistics and metric verdicts.
//!
//! A timed step warms up, repeats, and reports the median with its spread; every sample is kept.
//! A figure above the physical limit of its profile is a measurement error, not a success.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// How often a timed step runs: unrecorded warm-ups, then recorded repetitions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub warmup: u32,
    pub reps: u32,
}

impl Default for Repeat {
    fn default() -> Self {
        Repeat { warmup: 1, reps: 5 }
    }
}

/// Runs `reset` (untimed) then `step` (timed by the device) `warmup + reps` times and returns
/// the durations of the recorded repetitions.
pub fn measure<E>(
    repeat: Repeat,
    mut reset: impl FnMut() -> Result<(), E>,
    mut step: impl FnMut() -> Result<Duration, E>,
) -> Result<Vec<Duration>, E> {
    for _ in 0..repeat.warmup {
        reset()?;
        step()?;
    }
    // reps comes from the fixtures: a typo must not reserve gigabytes before the first step.
    let mut samples = Vec::with_capacity(repeat.reps.min(1024) as usize);
    for _ in 0..repeat.reps {
        reset()?;
        samples.push(step()?);
    }
    Ok(samples)
}

/// Order statistics of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub median: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub min: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub max: f64,
    /// Interquartile range (Q3 - Q1), linear interpolation between order statistics.
    #[serde(deserialize_with = "nan_if_null")]
    pub iqr: f64,
}

impl Stats {
    /// `None` for an empty sample or one holding NaN.
    pub fn of(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() || samples.iter().any(|x| x.is_nan()) {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        Some(Stats {
            n: s.len(),
            median: quantile(&s, 0.5),
            min: s[0],
            max: s[s.len() - 1],
            iqr: quantile(&s, 0.75) - quantile(&s, 0.25),
        })
    }
}

/// The median of unsorted data (the 0.5 [`quantile`]); NaN for no data.
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    quantile(&s, 0.5)
}

/// The q-quantile of sorted data, interpolating linearly (type 7, as R and numpy default); NaN
/// for no data, and q outside 0..=1 taken as the nearer end.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// The unit of a metric, which also says which way is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    /// 10^9 bytes per second.
    #[serde(rename = "GB/s")]
    GBps,
    #[serde(rename = "us")]
    Micros,
    #[serde(rename = "s")]
    Seconds,
    #[serde(rename = "bytes")]
    Bytes,
    #[serde(rename = "count")]
    Count,
}

impl Unit {
    /// Which way is better: `Some(true)` for a throughput, `Some(false)` for a time, `None`
    /// for what is not a speed (a count, a size).
    pub fn higher_is_better(self) -> Option<bool> {
        match self {
            Unit::GBps => Some(true),
            Unit::Micros | Unit::Seconds => Some(false),
            Unit::Bytes | Unit::Count => None,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            Unit::GBps => "GB/s",
            Unit::Micros => "µs",
            Unit::Seconds => "s",
            Unit::Bytes => "bytes",
            Unit::Count => "",
        }
    }
}

/// A physical ceiling a metric may not exceed, with its name for the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    #[serde(deserialize_with = "nan_if_null")]
    pub value: f64,
    pub what: String,
}

/// A named figure with every sample behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub unit: Unit,
    #[serde(deserialize_with = "nans_if_null")]
    pub samples: Vec<f64>,
    pub stats: Option<Stats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Ceiling>,
    /// The slowest plausible figure (`limits.slowest` of the profile): a median slower than it
    /// fails the case as too slow, with or without a baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<Ceiling>,
}

impl Metric {
    pub fn new(name: impl Into<String>, unit: Unit, samples: Vec<f64>) -> Metric {
        let stats = Stats::of(&samples);
        Metric {
            name: name.into(),
            unit,
            samples,
            stats,
            ceiling: None,
            floor: None,
        }
    }

    /// A single exact figure (a count or a size), not a timing.
    pub fn exact(name: impl Into<String>, unit: Unit, value: f64) -> Metric {
        Metric::new(name, unit, vec![value])
    }

    /// Bandwidth in GB/s of moving `bytes` in each of the durations.
    pub fn bandwidth(name: impl Into<String>, bytes: u64, durations: &[Duration]) -> Metric {
        let samples = durations.iter().map(|d| gbps(bytes, *d)).collect();
        Metric::new(name, Unit::GBps, samples)
    }

    /// Microseconds per item (per fault, say) for each duration. With no items there is no
    /// figure (NaN), which `check_limit` reports, rather than the whole duration posing as one.
    pub fn per_item_us(name: impl Into<String>, items: u64, durations: &[Duration]) -> Metric {
        let samples = durations
            .iter()
            .map(|d| match items {
                0 => f64::NAN,
                n => d.as_secs_f64() * 1e6 / n as f64,
            })
            .collect();
        Metric::new(name, Unit::Micros, samples)
    }

    pub fn with_ceiling(mut self, value: f64, what: impl Into<String>) -> Metric {
        self.ceiling = Some(Ceiling {
            value,
            what: what.into(),
        });
        self
    }

    /// Sets the slowest plausible figure: a lower bound for a throughput, an upper bound for a
    /// time (the unit says which).
    pub fn with_floor(mut self, value: f64, what: impl Into<String>) -> Metric {
        self.floor = Some(Ceiling {
            value,
            what: what.into(),
        });
        self
    }

    /// The median, or NaN when there are no samples.
    pub fn value(&self) -> f64 {
        self.stats.map_or(f64::NAN, |s| s.median)
    }

    /// Err with a "measurement error" message when the median exceeds the ceiling, or when a
    /// sample is not a finite figure.
    pub fn check_limit(&self) -> Result<(), String> {
        let Some(stats) = self.stats else {
            return Err(format!(
                "measurement error: metric {} has no valid samples",
                self.name
            ));
        };
        if let Some((i, x)) = self
            .samples
            .iter()
            .enumerate()
            .find(|(_, x)| !x.is_finite())
        {
            // The one way a timing yields a non-finite figure is a bandwidth over no time.
            let hint = if self.unit == Unit::GBps {
                " (a zero duration?)"
            } else {
                ""
            };
            return Err(format!(
                "measurement error: metric {} sample {i} is {x} {}{hint}",
                self.name,
                self.unit.symbol()
            ));
        }
        if let (Some(f), Some(higher)) = (&self.floor, self.unit.higher_is_better()) {
            let slower = if higher {
                stats.median < f.value
            } else {
                stats.median > f.value
            };
            if slower {
                return Err(format!(
                    "too slow: {} = {} {} is {} {}, the slowest plausible figure ({} {})",
                    self.name,
                    figure(stats.median),
                    self.unit.symbol(),
                    if higher { "below" } else { "above" },
                    f.what,
                    figure(f.value),
                    self.unit.symbol()
                ));
            }
        }
        if let Some(c) = &self.ceiling {
            if stats.median > c.value {
                return Err(format!(
                    "measurement error: {} = {:.3} {} is above {} ({:.3} {})",
                    self.name,
                    stats.median,
                    self.unit.symbol(),
                    c.what,
                    c.value,
                    self.unit.symbol()
                ));
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.stats {
            Some(s) if s.n > 1 => write!(
                f,
                "{} = {:.3} {} (median of {}, min {:.3}, max {:.3}, IQR {:.3})",
                self.name,
                s.median,
                self.unit.symbol(),
                s.n,
                s.min,
                s.max,
                s.iqr
            ),
            Some(s) => write!(f, "{} = {} {}", self.name, s.median, self.unit.symbol()),
            None => write!(f, "{} = (no samples)", self.name),
        }
    }
}

/// A figure to 4 significant digits, in scientific notation where fixed would hide it.
fn figure(x: f64) -> String {
    if x != 0.0 && !(1e-3..1e6).contains(&x.abs()) {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

/// GB/s (10^9 bytes per second) of `bytes` moved in `d`; infinite for a zero duration, which
/// `check_limit` reports as a measurement error.
pub fn gbps(bytes: u64, d: Duration) -> f64 {
    let secs = d.as_secs_f64();
    if secs == 0.0 {
        f64::INFINITY
    } else {
        bytes as f64 / secs / 1e9
    }
}

/// serde_json writes NaN and infinities as null; reading null back as NaN keeps a journal that
/// recorded a broken measurement (a zero duration, say) loadable.
pub(crate) fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nans_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let samples = Vec::<Option<f64>>::deserialize(d)?;
    Ok(samples.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use rstest::rstest;

    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    // --- statistics ---------------------------------------------------------------------------

    #[rstest]
    #[case::one(&[7.0], 7.0)]
    #[case::odd(&[3.0, 1.0, 2.0], 2.0)]
    #[case::even(&[4.0, 1.0, 3.0, 2.0], 2.5)]
    #[case::even_unsorted_repeats(&[5.0, 5.0, 1.0, 9.0], 5.0)]
    #[case::negative(&[-1.0, -3.0, -2.0], -2.0)]
    fn median_of_odd_and_even_samples(#[case] samples: &[f64], #[case] median: f64) {
        assert_eq!(Stats::of(samples).map(|s| s.median), Some(median));
    }

    /// Values numpy.quantile (method "linear", type 7) gives for the same data.
    #[rstest]
    #[case(&[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.], 0.1, 1.9)]
    #[case(&[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.], 0.25, 3.25)]
    #[case(&[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.], 0.5, 5.5)]
    #[case(&[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.], 0.75, 7.75)]
    #[case(&[1., 2., 3., 4., 5., 6., 7., 8., 9., 10.], 0.9, 9.1)]
    #[case(&[10., 20., 30., 40.], 0.25, 17.5)]
    #[case(&[10., 20., 30., 40.], 0.75, 32.5)]
    #[case(&[0.5, 1.5, 2.5, 4.0, 9.0], 0.0, 0.5)]
    #[case(&[0.5, 1.5, 2.5, 4.0, 9.0], 0.3, 1.7)]
    #[case(&[0.5, 1.5, 2.5, 4.0, 9.0], 0.9, 7.0)]
    #[case(&[0.5, 1.5, 2.5, 4.0, 9.0], 1.0, 9.0)]
    #[case(&[0.1, 0.2, 0.4, 0.6, 0.8, 0.9], 0.25, 0.25)]
    #[case(&[0.1, 0.2, 0.4, 0.6, 0.8, 0.9], 0.75, 0.75)]
    #[case(&[1., 3.], 0.25, 1.5)]
    #[case(&[7.], 0.75, 7.0)]
    fn quantile_is_type_7(#[case] sorted: &[f64], #[case] q: f64, #[case] want: f64) {
        let got = quantile(sorted, q);
        assert!(
            close(got, want),
            "q{q} of {sorted:?}: {got}, numpy says {want}"
        );
    }

    #[rstest]
    #[case::below(-0.5, 1.0)]
    #[case::above(1.5, 4.0)]
    fn quantile_outside_0_1_is_the_nearer_end(#[case] q: f64, #[case] want: f64) {
        assert_eq!(quantile(&[1.0, 2.0, 4.0], q), want);
    }

    #[test]
    fn quantile_of_nothing_is_nan() {
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[rstest]
    #[case(&[5.0, 1.0, 4.0, 2.0, 3.0], 1.0, 5.0, 2.0)]
    #[case(&[0.8, 0.1, 0.4, 0.9, 0.2, 0.6], 0.1, 0.9, 0.5)]
    #[case(&[2.0, 2.0, 2.0], 2.0, 2.0, 0.0)]
    #[case(&[42.0], 42.0, 42.0, 0.0)]
    fn min_max_and_iqr(
        #[case] samples: &[f64],
        #[case] min: f64,
        #[case] max: f64,
        #[case] iqr: f64,
    ) {
        let s = Stats::of(samples).expect("stats of a valid sample");
        assert_eq!((s.n, s.min, s.max), (samples.len(), min, max));
        assert!(close(s.iqr, iqr), "IQR {} want {iqr}", s.iqr);
    }

    #[rstest]
    #[case::empty(&[])]
    #[case::only_nan(&[f64::NAN])]
    #[case::one_nan_among_figures(&[1.0, f64::NAN, 3.0])]
    fn no_stats_without_valid_samples(#[case] samples: &[f64]) {
        assert_eq!(Stats::of(samples), None);
    }

    // --- measure ------------------------------------------------------------------------------

    #[rstest]
    #[case::default(Repeat::default())]
    #[case::no_warmup(Repeat { warmup: 0, reps: 3 })]
    #[case::long_warmup(Repeat { warmup: 4, reps: 2 })]
    #[case::warmup_only(Repeat { warmup: 2, reps: 0 })]
    fn measure_records_only_the_repetitions_and_resets_before_each(#[case] repeat: Repeat) {
        let log = RefCell::new(Vec::new());
        let samples = measure::<()>(
            repeat,
            || {
                log.borrow_mut().push("reset");
                Ok(())
            },
            || {
                let mut log = log.borrow_mut();
                log.push("step");
                // The n-th step takes n ms, so the samples say which steps were recorded.
                let n = log.iter().filter(|e| **e == "step").count() as u64;
                Ok(Duration::from_millis(n))
            },
        );
        let runs = (repeat.warmup + repeat.reps) as u64;
        let recorded: Vec<Duration> = (repeat.warmup as u64 + 1..=runs)
            .map(Duration::from_millis)
            .collect();
        assert_eq!(samples, Ok(recorded));
        let expected_log: Vec<&str> = (0..runs).flat_map(|_| ["reset", "step"]).collect();
        assert_eq!(*log.borrow(), expected_log);
    }

    #[rstest]
    #[case::reset_fails_in_warmup(Some(0), None)]
    #[case::reset_fails_in_a_repetition(Some(2), None)]
    #[case::step_fails_in_warmup(None, Some(0))]
    #[case::step_fails_in_a_repetition(None, Some(3))]
    fn measure_stops_at_the_first_error(
        #[case] reset_fails_at: Option<usize>,
        #[case] step_fails_at: Option<usize>,
    ) {
        let (resets, steps) = (RefCell::new(0), RefCell::new(0));
        let result = measure(
            Repeat { warmup: 1, reps: 5 },
            || {
                let n = resets.replace_with(|n| *n + 1);
                if Some(n) == reset_fails_at {
                    return Err(format!("reset {n} failed"));
                }
                Ok(())
            },
            || {
                let n = steps.replace_with(|n| *n + 1);
                if Some(n) == step_fails_at {
                    return Err(format!("step {n} failed"));
                }
                Ok(Duration::from_micros(1))
            },
        );
        let want = match (reset_fails_at, step_fails_at) {
            (Some(n), _) => (format!("reset {n} failed"), n + 1, n),
            (None, Some(n)) => (format!("step {n} failed"), n + 1, n + 1),
            (None, None) => unreachable!("every case fails somewhere"),
        };
        assert_eq!(result, Err(want.0));
        assert_eq!((*resets.borrow(), *steps.borrow()), (want.1, want.2));
    }

    /// The counts come from the fixtures: any value must neither overflow nor reserve memory
    /// for samples that were never taken.
    #[rstest]
    #[case::both_at_the_limit(u32::MAX, u32::MAX)]
    #[case::no_warmup_and_endless_reps(0, u32::MAX)]
    fn measure_takes_any_repeat(#[case] warmup: u32, #[case] reps: u32) {
        let repeat = Repeat { warmup, reps };
        let result = measure(repeat, || Ok(()), || Err("the device is gone"));
        assert_eq!(result, Err("the device is gone"));
    }

    // --- metrics ------------------------------------------------------------------------------

    #[rstest]
    #[case::one_gb_in_a_second(1_000_000_000, Duration::from_secs(1), 1.0)]
    #[case::two_gib_in_half_a_second(2 << 30, Duration::from_millis(500), 4.294_967_296)]
    #[case::a_page_in_a_microsecond(4096, Duration::from_micros(1), 4.096)]
    #[case::a_2mib_range_in_40us(2 << 20, Duration::from_micros(40), 52.428_8)]
    fn bandwidth_is_decimal_gigabytes_per_second(
        #[case] bytes: u64,
        #[case] took: Duration,
        #[case] want: f64,
    ) {
        let m = Metric::bandwidth("bw", bytes, &[took, took]);
        assert_eq!(m.unit, Unit::GBps);
        assert!(m.samples.iter().all(|&s| close(s, want)), "{:?}", m.samples);
        assert!(close(m.value(), want));
    }

    #[rstest]
    #[case::thousand_faults_in_a_millisecond(1000, Duration::from_millis(1), 1.0)]
    #[case::three_in_one_and_a_half_us(3, Duration::from_nanos(1500), 0.5)]
    #[case::one_in_two_seconds(1, Duration::from_secs(2), 2e6)]
    fn per_item_is_microseconds_each(
        #[case] items: u64,
        #[case] took: Duration,
        #[case] want: f64,
    ) {
        let m = Metric::per_item_us("per fault", items, &[took]);
        assert_eq!(m.unit, Unit::Micros);
        assert!(close(m.value(), want), "{} want {want}", m.value());
    }

    #[test]
    fn per_item_of_no_items_is_a_measurement_error() {
        let m = Metric::per_item_us("per fault", 0, &[Duration::from_millis(1)]);
        let err = m.check_limit().expect_err("no items, no figure");
        assert!(err.contains("measurement error"), "{err}");
    }

    #[rstest]
    #[case::well_below(&[10.0, 11.0, 12.0], 50.0)]
    #[case::at_the_ceiling(&[49.0, 50.0, 51.0], 50.0)]
    #[case::one_sample_above_but_median_below(&[10.0, 11.0, 900.0], 50.0)]
    fn below_the_ceiling_is_fine(#[case] samples: &[f64], #[case] ceiling: f64) {
        let m = Metric::new("h2d", Unit::GBps, samples.to_vec()).with_ceiling(ceiling, "PCIe peak");
        assert_eq!(m.check_limit(), Ok(()));
    }

    #[test]
    fn without_a_ceiling_any_finite_figure_is_fine() {
        let m = Metric::new("h2d", Unit::GBps, vec![1e12]);
        assert_eq!(m.check_limit(), Ok(()));
    }

    #[test]
    fn above_the_ceiling_is_a_measurement_error_naming_both_figures() {
        let m = Metric::new("h2d", Unit::GBps, vec![12.0, 12.5, 13.0])
            .with_ceiling(10.0, "the PCIe 4 x16 peak");
        let err = m.check_limit().expect_err("12.5 GB/s is above 10");
        for part in [
            "measurement error",
            "h2d",
            "12.500 GB/s",
            "the PCIe 4 x16 peak",
            "10.000 GB/s",
        ] {
            assert!(err.contains(part), "{part:?} missing from {err:?}");
        }
    }

    #[rstest]
    #[case::zero_duration(Metric::bandwidth("h2d", 4096, &[Duration::ZERO]), "is inf GB/s")]
    #[case::zero_among_real_durations(
        Metric::bandwidth("h2d", 4096, &[Duration::from_micros(1), Duration::ZERO, Duration::from_micros(1)]),
        "sample 1 is inf"
    )]
    #[case::no_samples(Metric::bandwidth("h2d", 4096, &[]), "no valid samples")]
    #[case::nan_sample(Metric::new("h2d", Unit::GBps, vec![1.0, f64::NAN]), "no valid samples")]
    fn figures_that_are_not_figures_are_measurement_errors(
        #[case] metric: Metric,
        #[case] why: &str,
    ) {
        let err = metric
            .with_ceiling(100.0, "peak")
            .check_limit()
            .expect_err("not a figure");
        assert!(err.contains("measurement error"), "{err}");
        assert!(err.contains(why), "{why:?} missing from {err:?}");
    }

    #[test]
    fn zero_duration_is_infinite_bandwidth() {
        assert_eq!(gbps(1, Duration::ZERO), f64::INFINITY);
    }

    #[test]
    fn value_without_samples_is_nan() {
        assert!(Metric::new("x", Unit::Count, vec![]).value().is_nan());
    }

    #[rstest]
    #[case(Metric::new("h2d", Unit::GBps, vec![3.0, 1.0, 2.0]),
           "h2d = 2.000 GB/s (median of 3, min 1.000, max 3.000, IQR 1.000)")]
    #[case(Metric::exact("faults", Unit::Count, 512.0), "faults = 512 ")]
    #[case(Metric::new("fault", Unit::Micros, vec![]), "fault = (no samples)")]
    fn display(#[case] metric: Metric, #[case] want: &str) {
        assert_eq!(metric.to_string(), want);
    }

    /// serde_json writes an infinite sample as null; the journal must still read back.
    #[test]
    fn a_metric_with_a_broken_sample_survives_json() {
        let m = Metric::bandwidth("h2d", 4096, &[Duration::ZERO, Duration::from_micros(1)])
            .with_ceiling(64.0, "peak");
        let json = serde_json::to_string(&m).expect("serialises");
        let back: Metric = serde_json::from_str(&json).expect("reads back");
        assert!(back.samples[0].is_nan());
        assert_eq!(back.samples[1], m.samples[1]);
        assert!(back.check_limit().is_err());
        let good = Metric::new("h2d", Unit::GBps, vec![1.0, 2.0]);
        let json = serde_json::to_string(&good).expect("serialises");
        assert_eq!(serde_json::from_str::<Metric>(&json).ok(), Some(good));
    }

    #[test]
    fn a_figure_slower_than_the_floor_fails_as_too_slow_either_way_round() {
        let bw =
            Metric::new("h2d", Unit::GBps, vec![0.5, 0.6, 0.4]).with_floor(1.0, "1% of the link");
        let e = bw.check_limit().unwrap_err();
        assert!(
            e.starts_with("too slow: h2d = 0.5000 GB/s is below 1% of the link"),
            "{e}"
        );
        assert!(Metric::new("h2d", Unit::GBps, vec![1.5])
            .with_floor(1.0, "f")
            .check_limit()
            .is_ok());
        let t = Metric::new("fault", Unit::Micros, vec![3000.0]).with_floor(2000.0, "2 ms");
        let e = t.check_limit().unwrap_err();
        assert!(e.contains("3000.0000 µs is above 2 ms"), "{e}");
        assert!(Metric::new("fault", Unit::Micros, vec![10.0])
            .with_floor(2000.0, "2 ms")
            .check_limit()
            .is_ok());
        let tiny = Metric::new("h2d", Unit::GBps, vec![1e-300]).with_floor(1e-3, "f");
        assert!(tiny.check_limit().unwrap_err().contains("1.000e-300"));
    }
}
