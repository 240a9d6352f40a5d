//! Repetitions, statistics and metric verdicts.
//!
//! A timed step warms up, repeats, and reports the median with its spread; every sample is kept.
//! A figure above the physical limit of its profile is a measurement error, not a success.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
    let mut samples = Vec::with_capacity(repeat.reps as usize);
    for i in 0..repeat.warmup + repeat.reps {
        reset()?;
        let took = step()?;
        if i >= repeat.warmup {
            samples.push(took);
        }
    }
    Ok(samples)
}

/// Order statistics of a sample.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Interquartile range (Q3 - Q1), linear interpolation between order statistics.
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

/// The q-quantile of sorted data, interpolating linearly (type 7, as R and numpy default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
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
    pub value: f64,
    pub what: String,
}

/// A named figure with every sample behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub unit: Unit,
    pub samples: Vec<f64>,
    pub stats: Option<Stats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Ceiling>,
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

    /// Microseconds per item (per fault, say) for each duration.
    pub fn per_item_us(name: impl Into<String>, items: u64, durations: &[Duration]) -> Metric {
        let samples = durations
            .iter()
            .map(|d| d.as_secs_f64() * 1e6 / items.max(1) as f64)
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
        if self.samples.iter().any(|x| !x.is_finite()) {
            return Err(format!(
                "measurement error: metric {} has a non-finite sample",
                self.name
            ));
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
