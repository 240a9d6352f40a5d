//! Is a metric slower than in an earlier run? A comparison that knows the noise.
//!
//! Both runs keep every sample of every metric (warm-ups excluded). A metric has regressed when
//! both hold:
//! - its median is worse than the baseline's by more than the tolerance (default 5%): a change
//!   too small to matter is not reported, however certain;
//! - a one-sided Mann–Whitney U test says the current samples are worse than the baseline's at
//!   significance α (default 0.01): a change the noise could explain is not reported, however
//!   large its median looks.
//!
//! Mann–Whitney rather than a t-test because GPU timings have outliers (a page-table walk, a
//! clock ramp, another process) and are not normal: ranks do not care how far an outlier is.
//! The exact distribution of U is used (no normal approximation), so small repetition counts
//! get honest p-values; the smallest p-value n and m samples can give is 1 / C(n+m, n), so at
//! α = 0.01 each side needs at least 5 samples (1/252); fewer is reported as inconclusive,
//! never as a pass or a regression.

use serde::{Deserialize, Serialize};

use crate::model::timing;

/// The rule a comparison applies.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Method {
    /// Smallest relative change of the median that counts: 0.05 is 5% worse. Half the
    /// slowdown the lab must catch (10%): a true 10% slowdown's median then lands above it
    /// nearly always, where a 10% tolerance would see it half the time.
    pub tolerance: f64,
    /// Significance level of the one-sided test.
    pub alpha: f64,
}

impl Default for Method {
    fn default() -> Self {
        Method {
            tolerance: 0.05,
            alpha: 0.01,
        }
    }
}

/// Which way is worse for a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Throughput: GB/s.
    Higher,
    /// Time: µs per fault, seconds.
    Lower,
}

/// What the comparison found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    Regressed,
    Improved,
    Unchanged,
    /// Too few samples on a side to reach α.
    Inconclusive,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub finding: Finding,
    // serde_json writes a NaN (no samples on a side) as null: read back as NaN.
    #[serde(deserialize_with = "crate::model::timing::nan_if_null")]
    pub baseline_median: f64,
    #[serde(deserialize_with = "crate::model::timing::nan_if_null")]
    pub current_median: f64,
    /// How much worse the current median is, as a fraction: 0.2 is 20% worse; negative better.
    #[serde(deserialize_with = "crate::model::timing::nan_if_null")]
    pub worse_by: f64,
    /// One-sided p-value of "current is worse".
    pub p_worse: f64,
    /// One-sided p-value of "current is better".
    pub p_better: f64,
}

/// Compares `current` samples with `baseline` samples of one metric.
pub fn compare(baseline: &[f64], current: &[f64], better: Better, m: Method) -> Comparison {
    let b: Vec<f64> = baseline.iter().copied().filter(|x| x.is_finite()).collect();
    let c: Vec<f64> = current.iter().copied().filter(|x| x.is_finite()).collect();
    let (bm, cm) = (timing::median(&b), timing::median(&c));
    // In "time" orientation a larger value is worse; throughput is inverted.
    let worse_by = match better {
        Better::Lower => cm / bm - 1.0,
        Better::Higher => bm / cm - 1.0,
    };
    let (p_worse, p_better) = match better {
        Better::Lower => (mann_whitney_greater(&c, &b), mann_whitney_greater(&b, &c)),
        Better::Higher => (mann_whitney_greater(&b, &c), mann_whitney_greater(&c, &b)),
    };
    let reachable = min_p(b.len(), c.len()) <= m.alpha;
    let finding = if !reachable || !worse_by.is_finite() {
        Finding::Inconclusive
    } else if worse_by > m.tolerance && p_worse <= m.alpha {
        Finding::Regressed
    } else if worse_by < -m.tolerance && p_better <= m.alpha {
        Finding::Improved
    } else {
        Finding::Unchanged
    };
    Comparison {
        finding,
        baseline_median: bm,
        current_median: cm,
        worse_by,
        p_worse,
        p_better,
    }
}

/// Whether a comparison that found no regression may still hide one, so that more samples are
/// worth their time: too few samples to decide, or a current median worse by more than half
/// the tolerance without the significance to call it. A regression, an improvement or a
/// median within half the tolerance (or better) is decided.
pub fn undecided(c: &Comparison, m: Method) -> bool {
    match c.finding {
        Finding::Regressed | Finding::Improved => false,
        Finding::Inconclusive => true,
        Finding::Unchanged => c.worse_by > m.tolerance / 2.0,
    }
}

/// The smallest one-sided p-value samples of sizes n and m can give: 1 / C(n+m, n).
pub fn min_p(n: usize, m: usize) -> f64 {
    if n == 0 || m == 0 {
        return 1.0;
    }
    let mut c = 1.0f64;
    for i in 0..n.min(m) {
        c = c * (n + m - i) as f64 / (i + 1) as f64;
    }
    1.0 / c
}

/// One-sided exact p-value that `x` tends to be greater than `y`: P(U >= u) under the null,
/// where U counts pairs with x > y (ties count one half).
pub fn mann_whitney_greater(x: &[f64], y: &[f64]) -> f64 {
    let (n, m) = (x.len(), y.len());
    if n == 0 || m == 0 {
        return 1.0;
    }
    // U doubled, to keep ties integral.
    let mut u2: usize = 0;
    for a in x {
        for b in y {
            u2 += match a.total_cmp(b) {
                std::cmp::Ordering::Greater => 2,
                std::cmp::Ordering::Equal => 1,
                std::cmp::Ordering::Less => 0,
            };
        }
    }
    // Ties are rare in timings; a half count rounds up, which only makes p larger.
    let u = u2.div_ceil(2);
    let dist = u_distribution(n, m);
    let total: f64 = dist.iter().sum();
    let tail: f64 = dist.iter().skip(u).sum();
    tail / total
}

/// The number of arrangements giving each U = 0..=n*m for samples of sizes n and m.
fn u_distribution(n: usize, m: usize) -> Vec<f64> {
    // f[i][j][u]: arrangements of i x's and j y's with U = u; built row by row.
    let max = n * m;
    let mut prev: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; m + 1];
    for row in prev.iter_mut() {
        row[0] = 1.0; // no x's: U = 0, one arrangement
    }
    for _ in 1..=n {
        let mut cur: Vec<Vec<f64>> = vec![vec![0.0; max + 1]; m + 1];
        cur[0][0] = 1.0; // no y's: U = 0
        for j in 1..=m {
            for u in 0..=max {
                // The largest element is an x (it beats all j y's) or a y.
                let from_x = if u >= j { prev[j][u - j] } else { 0.0 };
                let from_y = cur[j - 1][u];
                cur[j][u] = from_x + from_y;
            }
        }
        prev = cur;
    }
    prev[m].clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case(Finding::Inconclusive, 0.0, true)]
    #[case(Finding::Unchanged, 0.03, true)]
    #[case(Finding::Unchanged, 0.02, false)]
    #[case(Finding::Unchanged, -0.08, false)]
    #[case(Finding::Regressed, 0.30, false)]
    #[case(Finding::Improved, -0.30, false)]
    fn undecided_is_a_worse_median_without_significance(
        #[case] finding: Finding,
        #[case] worse_by: f64,
        #[case] want: bool,
    ) {
        let c = Comparison {
            finding,
            baseline_median: 100.0,
            current_median: 100.0 * (1.0 + worse_by),
            worse_by,
            p_worse: 0.2,
            p_better: 0.8,
        };
        // Tolerance 5%: undecided above 2.5% worse.
        assert_eq!(undecided(&c, Method::default()), want);
    }

    #[rstest]
    #[case(5, 5, 1.0 / 252.0)]
    #[case(3, 3, 1.0 / 20.0)]
    #[case(1, 4, 1.0 / 5.0)]
    #[case(0, 4, 1.0)]
    fn smallest_p_values(#[case] n: usize, #[case] m: usize, #[case] want: f64) {
        assert!((min_p(n, m) - want).abs() < 1e-12);
    }

    #[test]
    fn complete_separation_gives_the_smallest_p() {
        let p = mann_whitney_greater(&[6.0, 7.0, 8.0, 9.0, 10.0], &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert!((p - 1.0 / 252.0).abs() < 1e-12, "{p}");
        let p = mann_whitney_greater(&[1.0, 2.0, 3.0, 4.0, 5.0], &[6.0, 7.0, 8.0, 9.0, 10.0]);
        assert!((p - 1.0).abs() < 1e-12, "{p}");
    }

    #[test]
    fn the_distribution_is_symmetric_and_sums_to_the_arrangements() {
        let d = u_distribution(4, 6);
        assert_eq!(d.iter().sum::<f64>(), 210.0); // C(10, 4)
        for u in 0..d.len() {
            assert_eq!(d[u], d[d.len() - 1 - u]);
        }
    }

    #[test]
    fn a_known_p_value() {
        // x = {3, 4}, y = {1, 2, 5}: U = 4. The 10 arrangements of n=2, m=3 give
        // U = 0, 1, 2, 2, 3, 3, 4, 4, 5, 6, so P(U >= 4) = 4/10.
        let p = mann_whitney_greater(&[3.0, 4.0], &[1.0, 2.0, 5.0]);
        assert!((p - 0.4).abs() < 1e-12, "{p}");
    }

    fn samples(median: f64, spread: &[f64]) -> Vec<f64> {
        spread.iter().map(|s| median * (1.0 + s)).collect()
    }

    const NOISE: [f64; 5] = [-0.04, -0.02, 0.0, 0.02, 0.04];

    #[rstest]
    #[case::slower_time(Better::Lower, 1.5, Finding::Regressed)]
    #[case::faster_time(Better::Lower, 0.6, Finding::Improved)]
    #[case::same_time(Better::Lower, 1.0, Finding::Unchanged)]
    #[case::within_tolerance(Better::Lower, 1.04, Finding::Unchanged)]
    #[case::lower_throughput(Better::Higher, 0.7, Finding::Regressed)]
    #[case::higher_throughput(Better::Higher, 1.5, Finding::Improved)]
    fn findings(#[case] better: Better, #[case] factor: f64, #[case] want: Finding) {
        let base = samples(10.0, &NOISE);
        let cur = samples(10.0 * factor, &NOISE);
        assert_eq!(
            compare(&base, &cur, better, Method::default()).finding,
            want
        );
    }

    #[test]
    fn a_single_outlier_does_not_make_a_regression() {
        let base = samples(10.0, &NOISE);
        let mut cur = samples(10.0, &NOISE);
        cur[2] = 100.0;
        assert_eq!(
            compare(&base, &cur, Better::Lower, Method::default()).finding,
            Finding::Unchanged
        );
    }

    #[test]
    fn too_few_samples_are_inconclusive_not_a_pass() {
        let c = compare(
            &[1.0, 1.0, 1.0],
            &[9.0, 9.0, 9.0],
            Better::Lower,
            Method::default(),
        );
        assert_eq!(c.finding, Finding::Inconclusive);
    }
}
