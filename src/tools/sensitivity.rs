//! How well the baseline comparison sees a slowdown through timing noise: the detection rate of
//! [`regress::compare`] for slowdowns of 10%, 20% and 50%, and its false-alarm rate with none,
//! over simulated trials. The noise is the sim's own ([`NoiseSource`], the generator behind
//! every sim timing), so the figures describe the suite as it runs.
//!
//! One trial: `reps` baseline samples `100 × noise`, `reps` current samples
//! `100 × (1 + slowdown) × noise`, compared as a time (lower is better); an alarm is a
//! `Regressed` finding.

use std::fmt::Write;

use crate::device::reference::NoiseSource;
use crate::model::profile::Noise;
use crate::model::regress::{self, Better, Finding, Method};

/// The rows of the table: no slowdown (false alarms), then 10%, 20% and 50%.
pub const SLOWDOWNS: [f64; 4] = [0.0, 0.10, 0.20, 0.50];

/// What the issue asks of the comparison: at 5% noise, at least 95% of 20% slowdowns caught
/// with at most 1% false alarms.
pub const GOAL_DETECTION: f64 = 0.95;
pub const GOAL_FALSE_ALARMS: f64 = 0.01;

/// The noise of the table: 5% CV and, one operation in 50, an outlier three times as long (a
/// clock ramp, another process): rank tests do not care how far out an outlier is, only that
/// it is out, so the rate matters and the factor hardly does.
pub const DEFAULT_NOISE: Noise = Noise {
    cv: 0.05,
    outlier_rate: 0.02,
    outlier_factor: 3.0,
};

#[derive(Clone, Copy, Debug)]
pub struct Setup {
    pub trials: u32,
    /// Samples per side.
    pub reps: usize,
    pub noise: Noise,
    pub method: Method,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub slowdown: f64,
    pub trials: u32,
    pub alarms: u32,
}

impl Row {
    pub fn rate(&self) -> f64 {
        self.alarms as f64 / self.trials.max(1) as f64
    }
}

/// One row: `trials` comparisons of a run slower by `slowdown` with its baseline.
pub fn row(setup: &Setup, slowdown: f64) -> Row {
    // Each row its own stream, so adding a row does not change the others.
    let mut noise = NoiseSource::new(setup.noise, setup.seed ^ slowdown.to_bits());
    let mut draw = |scale: f64| -> Vec<f64> {
        (0..setup.reps)
            .map(|_| 100.0 * scale * noise.factor())
            .collect()
    };
    let alarms = (0..setup.trials)
        .filter(|_| {
            let base = draw(1.0);
            let now = draw(1.0 + slowdown);
            regress::compare(&base, &now, Better::Lower, setup.method).finding == Finding::Regressed
        })
        .count() as u32;
    Row {
        slowdown,
        trials: setup.trials,
        alarms,
    }
}

pub fn table(setup: &Setup) -> Vec<Row> {
    SLOWDOWNS.iter().map(|&s| row(setup, s)).collect()
}

/// Whether a table meets the goal: 20% slowdowns caught, no slowdown rarely flagged.
pub fn meets_goal(rows: &[Row]) -> bool {
    let rate = |s: f64| rows.iter().find(|r| r.slowdown == s).map(Row::rate);
    rate(0.20).is_some_and(|r| r >= GOAL_DETECTION)
        && rate(0.0).is_some_and(|r| r <= GOAL_FALSE_ALARMS)
}

/// The table with its method, as the command prints it.
pub fn render(setup: &Setup, rows: &[Row]) -> String {
    let mut s = String::new();
    let m = setup.method;
    let _ = writeln!(
        s,
        "method: median worse by more than {:.0}% and one-sided exact Mann-Whitney p <= {} \
         (regress::compare), {} baseline and {} current samples per trial",
        m.tolerance * 100.0,
        m.alpha,
        setup.reps,
        setup.reps
    );
    let _ = writeln!(
        s,
        "noise: the sim's (log-normal, mean 1), CV {:.0}%, outliers {:.0}% of samples at {}x; \
         seed {}",
        setup.noise.cv * 100.0,
        setup.noise.outlier_rate * 100.0,
        setup.noise.outlier_factor,
        setup.seed
    );
    let _ = writeln!(s, "\n| slowdown | trials | alarms |   rate |");
    let _ = writeln!(s, "| -------: | -----: | -----: | -----: |");
    for r in rows {
        let _ = writeln!(
            s,
            "| {:>7.0}% | {:>6} | {:>6} | {:>5.1}% |",
            r.slowdown * 100.0,
            r.trials,
            r.alarms,
            r.rate() * 100.0
        );
    }
    let _ = writeln!(
        s,
        "\ngoal (>= {:.0}% of 20% slowdowns caught, <= {:.0}% false alarms): {}",
        GOAL_DETECTION * 100.0,
        GOAL_FALSE_ALARMS * 100.0,
        if meets_goal(rows) { "met" } else { "NOT met" }
    );
    s
}

/// Detection of 20% and false alarms for each count of samples per side in `reps`: what more
/// repetitions buy.
pub fn by_reps(setup: &Setup, reps: impl IntoIterator<Item = usize>) -> String {
    let mut s =
        String::from("| reps per side | 20% caught | false alarms |\n| ---: | ---: | ---: |\n");
    for n in reps {
        let at = Setup { reps: n, ..*setup };
        let (caught, alarms) = (row(&at, 0.20), row(&at, 0.0));
        let _ = writeln!(
            s,
            "| {n} | {:.1}% | {:.1}% |",
            caught.rate() * 100.0,
            alarms.rate() * 100.0
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(reps: usize) -> Setup {
        Setup {
            trials: 400,
            reps,
            noise: DEFAULT_NOISE,
            method: Method::default(),
            seed: 1,
        }
    }

    #[test]
    fn the_recommended_repetitions_meet_the_goal() {
        let reps = crate::results::baseline::RECOMMENDED_REPS as usize;
        let rows = table(&setup(reps));
        assert!(meets_goal(&rows), "{}", render(&setup(reps), &rows));
        let fifty = rows.iter().find(|r| r.slowdown == 0.5).unwrap();
        assert!(fifty.rate() >= 0.99, "{fifty:?}");
    }

    #[test]
    fn a_check_that_cannot_decide_catches_nothing() {
        // Four samples a side cannot reach α = 0.01: every comparison is inconclusive.
        let rows = table(&setup(4));
        assert!(rows.iter().all(|r| r.alarms == 0), "{rows:?}");
        assert!(!meets_goal(&rows));
    }

    #[test]
    fn the_table_repeats_for_a_seed() {
        assert_eq!(table(&setup(5)), table(&setup(5)));
    }
}
