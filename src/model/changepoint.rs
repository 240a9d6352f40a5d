//! Where did a nightly timing series change? E-divisive means with a permutation test.
//!
//! A per-night series of one metric (migration time in ms, one value a night, months of nights)
//! drifts in steps: a driver update, a kernel change, a new runner. This module finds those
//! steps the way Apache Otava (formerly Hunter) and MongoDB's signal-processing service do:
//! with **E-divisive means** (Matteson & James, "A Nonparametric Approach for Multiple Change
//! Point Analysis of Multivariate Data", JASA 2014), exponent α = 1, and a permutation test
//! deciding whether a candidate split is real.
//!
//! # The statistic
//!
//! For a segment `Z` and a split `tau < kappa` with `X = Z[..tau]` (m points) and
//! `Y = Z[tau..kappa]` (k points):
//!
//! ```text
//! E(X, Y) = 2/(m k) Σ|x - y|  -  1/C(m,2) Σ_{i<j}|x_i - x_j|  -  1/C(k,2) Σ_{i<j}|y_i - y_j|
//! Q(tau, kappa) = m k / (m + k) · E(X, Y)
//! ```
//!
//! `E` is the (unbiased) energy distance between the two samples: zero in expectation when
//! they come from one distribution, positive when their distributions differ in any way. This
//! is the paper's variant: `Q` is maximised over **both** `tau` and `kappa` (not Otava's "fixed
//! end" variant with `kappa` = segment end), so a short level shift in the middle of a long
//! segment is isolated as well as a shift near its end. The change point is `tau`.
//!
//! # Search and significance
//!
//! Recursive bisection: the best `(tau, kappa)` of a segment is computed; the segment's
//! observations are then shuffled `permutations` times (a seeded splitmix64, so the result is
//! deterministic) and the best statistic of each shuffle is computed the same way. The p-value
//! is `(1 + #{shuffles with best ≥ observed}) / (1 + permutations)`: the observed order counts
//! as one of the permutations, so the p-value is never 0 and, for exchangeable data, a split is
//! accepted with probability at most α. An accepted split (p ≤ α) cuts the segment in two and
//! both halves are searched again; the search ends when no segment has a significant split.
//! Both sides of every split hold at least `min_size` points. Each segment's shuffles are
//! seeded from `(seed, segment start, segment end)`, so a segment's result does not depend on
//! the order segments are visited in.
//!
//! # Outliers
//!
//! A single wild night does not make a change point, for two reasons. First, `min_size` (3 by
//! default) on both sides means a one-point segment is never a candidate. Second, and more
//! important, the statistic itself cancels an isolated outlier: if one point `o` lies above
//! every other point of a candidate's two samples and sits in `Y` (k points), its distance
//! terms contribute `2/(m k) · Σ_x (o - x)` to the cross term and `2/(k (k-1)) · Σ_{y≠o} (o - y)`
//! to the within-`Y` term; the `o` parts of both are `2o/k` and cancel exactly, whatever `o`'s
//! size. What is left does not depend on how far out the outlier is, so a 100× night weighs no
//! more than a 2× one, and the permutation test (whose shuffles move that outlier around too)
//! sees nothing unusual. (In general a sample whose fraction of outliers is `p` against `q` on
//! the other side contributes about `2 (p - q)²` per unit outlier distance: scattered outliers
//! in both halves cancel, a cluster of outliers in one half is a real distribution change.)
//!
//! # Cost
//!
//! One evaluation of all `(tau, kappa)` of an n-point segment is O(n²) with running sums (the
//! within sums of every `[tau, kappa)` are accumulated as `tau` walks down, the `[0, t)` sums
//! are prefix sums), with O(n) memory. With α = 1 the distance `|x - y|` is two flops and is
//! computed on the fly from a shuffled copy of the segment rather than gathered from a
//! precomputed n×n distance matrix: contiguous, vectorisable, and no n² memory traffic. A test
//! stops shuffling as soon as enough shuffles reach the observed statistic that p can no longer
//! be ≤ α, so segments without a change cost a handful of evaluations, not `permutations`.
//!
//! The series is assumed finite (the caller drops NaN nights); non-finite values do not panic
//! but give unspecified change points. `relative` assumes a positive metric.

/// One change point found in a series.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangePoint {
    /// Index of the first point after the change (1..len-1).
    pub index: usize,
    /// Median of the segment before the change point (from the previous reported change point,
    /// or the start of the series, up to `index`).
    pub before: f64,
    /// Median of the segment after the change point (from `index` up to the next reported
    /// change point, or the end of the series).
    pub after: f64,
    /// `after / before - 1.0`: the relative change of the median (0.1 is 10% higher). When
    /// `before` is 0 it is 0 if `after` is 0 too, else an infinity with `after`'s sign.
    pub relative: f64,
    /// The permutation test's p-value when the split was accepted: the fraction of
    /// permutations, the observed order included, whose best statistic is ≥ the observed one.
    pub p_value: f64,
}

/// How [`e_divisive`] searches and what it accepts.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Significance level of the permutation test; a split is accepted when `p_value <= alpha`.
    /// Default 0.01. With `permutations` shuffles the smallest p-value is
    /// `1 / (permutations + 1)`, so `alpha` below that accepts nothing.
    pub alpha: f64,
    /// Number of shuffles per test. Default 199 (smallest p-value 0.005).
    pub permutations: usize,
    /// Smallest number of points on either side of a split. Default 3; values below 2 are
    /// treated as 2 (a within-sample mean distance needs two points).
    pub min_size: usize,
    /// Change points whose `|relative|` is below this are dropped after the search (weakest
    /// first, the neighbours' medians recomputed over the merged segment each time), so a
    /// real but negligible shift is not reported. Default 0.0: report every significant one.
    pub min_relative: f64,
    /// Seed of the permutation RNG: the same series and options always give the same result.
    pub seed: u64,
}

impl Default for Options {
    /// α = 0.01, 199 permutations, segments of at least 3 points, no magnitude filter, and a
    /// fixed seed.
    fn default() -> Self {
        Options {
            alpha: 0.01,
            permutations: 199,
            min_size: 3,
            min_relative: 0.0,
            seed: 0x5EED_C4A2_6E00_0F17,
        }
    }
}

/// Change points of `series`, in increasing index order.
///
/// E-divisive means with `Q` maximised over both `tau` and `kappa` (see the module docs),
/// recursive bisection, each split tested by permutation. NaN points are not skipped: the
/// caller filters them. A series shorter than `2 * min_size` (or constant) has none.
#[must_use]
pub fn e_divisive(series: &[f64], opts: &Options) -> Vec<ChangePoint> {
    let min_size = opts.min_size.max(2);
    if series.len() < min_size.saturating_mul(2) {
        return Vec::new();
    }
    // (index, p-value) of every accepted split.
    let mut cuts: Vec<(usize, f64)> = Vec::new();
    let mut pending = vec![(0usize, series.len())];
    let mut scratch = Scratch::default();
    while let Some((start, end)) = pending.pop() {
        let mut rng = SplitMix64::new(segment_seed(opts.seed, start, end));
        let segment = &series[start..end];
        if let Some((tau, p)) = significant_split(segment, min_size, opts, &mut rng, &mut scratch) {
            let cut = start + tau;
            cuts.push((cut, p));
            pending.push((start, cut));
            pending.push((cut, end));
        }
    }
    cuts.sort_by_key(|&(index, _)| index);
    loop {
        let points = describe(series, &cuts);
        let weakest = points
            .iter()
            .enumerate()
            .filter(|(_, c)| c.relative.abs() < opts.min_relative)
            .min_by(|a, b| a.1.relative.abs().total_cmp(&b.1.relative.abs()))
            .map(|(i, _)| i);
        match weakest {
            Some(i) => {
                cuts.remove(i);
            }
            None => return points,
        }
    }
}

/// The best split of `segment` if the permutation test accepts it: `(tau, p_value)`.
fn significant_split(
    segment: &[f64],
    min_size: usize,
    opts: &Options,
    rng: &mut SplitMix64,
    scratch: &mut Scratch,
) -> Option<(usize, f64)> {
    let (observed, tau) = best_split(segment, min_size, scratch)?;
    // Shuffles whose best statistic equals the observed one up to rounding (ties, e.g. a
    // constant segment) count as reaching it: a tie is no evidence of a change.
    let threshold = observed - 1e-9 * observed.abs();
    let total = (opts.permutations + 1) as f64;
    let mut shuffled = segment.to_vec();
    let mut reached = 0usize;
    for _ in 0..opts.permutations {
        shuffle(&mut shuffled, rng);
        let best = best_split(&shuffled, min_size, scratch).map_or(f64::NEG_INFINITY, |b| b.0);
        if best >= threshold {
            reached += 1;
            // p can only grow from here: stop as soon as it is above alpha.
            if (reached + 1) as f64 / total > opts.alpha {
                return None;
            }
        }
    }
    let p_value = (reached + 1) as f64 / total;
    (p_value <= opts.alpha).then_some((tau, p_value))
}

/// Buffers [`best_split`] reuses between calls (one allocation per search, not per shuffle).
#[derive(Default)]
struct Scratch {
    /// `acc[i]`: Σ_{j < kappa} |z_i - z_j| for the current `kappa`.
    acc: Vec<f64>,
    /// `left[i]`: Σ_{j < i} |z_i - z_j|.
    left: Vec<f64>,
    /// `front[t]`: Σ_{i < j < t} |z_i - z_j|, the within sum of the prefix `[0, t)`.
    front: Vec<f64>,
    /// `recip[j]`: 1 / j (recip[0] unused).
    recip: Vec<f64>,
}

/// Largest `Q(tau, kappa)` of `z` over `min_size <= tau`, `tau + min_size <= kappa <= len`,
/// as `(Q, tau)`; the first maximum in `(kappa, then descending tau)` order wins ties.
/// `None` when `z` has fewer than `2 * min_size` points. O(len²) time, O(len) memory.
fn best_split(z: &[f64], min_size: usize, s: &mut Scratch) -> Option<(f64, usize)> {
    let n = z.len();
    if min_size < 2 || n < min_size.saturating_mul(2) {
        return None;
    }
    s.acc.clear();
    s.acc.resize(n, 0.0);
    s.left.clear();
    s.left.resize(n, 0.0);
    s.front.clear();
    s.front.resize(n + 1, 0.0);
    s.recip.clear();
    s.recip.push(0.0);
    s.recip.extend((1..=n).map(|j| 1.0 / j as f64));

    let mut best: Option<(f64, usize)> = None;
    for (c, &zc) in z.iter().enumerate() {
        let kappa = c + 1;
        // acc[c] is Σ_{j<c} |z_c - z_j| before point c is added.
        s.left[c] = s.acc[c];
        s.front[kappa] = s.front[c] + s.acc[c];
        for (a, &zi) in s.acc.iter_mut().zip(z) {
            *a += (zi - zc).abs();
        }
        if kappa < 2 * min_size {
            continue;
        }
        // Q = m k/(m+k) · E = 2/(m+k) · (cross - k/(m-1) · Wx - m/(k-1) · Wy), m + k = kappa.
        let scale = 2.0 * s.recip[kappa];
        let total = s.front[kappa];
        // within_y: Σ_{tau <= i < j < kappa} |z_i - z_j|, grown as tau walks down.
        let mut within_y = 0.0;
        for tau in (min_size..kappa).rev() {
            within_y += s.acc[tau] - s.left[tau];
            let k = kappa - tau;
            if k < min_size {
                continue;
            }
            let m = tau;
            let within_x = s.front[tau];
            let cross = total - within_x - within_y;
            let q = scale
                * (cross
                    - k as f64 * within_x * s.recip[m - 1]
                    - m as f64 * within_y * s.recip[k - 1]);
            match best {
                Some((b, _)) if q <= b => {}
                _ => best = Some((q, tau)),
            }
        }
    }
    best
}

/// The reported change points for the accepted cuts (sorted by index).
fn describe(series: &[f64], cuts: &[(usize, f64)]) -> Vec<ChangePoint> {
    cuts.iter()
        .enumerate()
        .map(|(i, &(index, p_value))| {
            let lo = if i == 0 { 0 } else { cuts[i - 1].0 };
            let hi = cuts.get(i + 1).map_or(series.len(), |&(next, _)| next);
            let before = median(&series[lo..index]);
            let after = median(&series[index..hi]);
            ChangePoint {
                index,
                before,
                after,
                relative: relative_change(before, after),
                p_value,
            }
        })
        .collect()
}

/// Median of a non-empty slice (mean of the middle two for an even length); NaN if empty.
fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        0.5 * (sorted[mid - 1] + sorted[mid])
    }
}

/// `after / before - 1`, with a zero `before` giving 0 (no change) or a signed infinity.
fn relative_change(before: f64, after: f64) -> f64 {
    if before == 0.0 {
        if after == 0.0 {
            0.0
        } else {
            f64::INFINITY.copysign(after)
        }
    } else {
        after / before - 1.0
    }
}

/// Fisher–Yates shuffle.
fn shuffle(values: &mut [f64], rng: &mut SplitMix64) {
    for i in (1..values.len()).rev() {
        let j = rng.below(i + 1);
        values.swap(i, j);
    }
}

/// The RNG seed of one segment's test: depends on the segment, not on the visiting order.
fn segment_seed(seed: u64, start: usize, end: usize) -> u64 {
    let mut mix = SplitMix64::new(seed ^ (start as u64).rotate_left(32) ^ end as u64);
    mix.next_u64()
}

/// splitmix64 (Steele, Lea & Flood 2014): tiny, fast and good enough for shuffles.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (multiply-shift; bias below 2⁻⁵⁰ for any realistic bound).
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Standard normal deviates by Box–Muller over splitmix64.
    struct Normal {
        rng: SplitMix64,
        spare: Option<f64>,
    }

    impl Normal {
        fn new(seed: u64) -> Self {
            Normal {
                rng: SplitMix64::new(seed),
                spare: None,
            }
        }

        /// Uniform in (0, 1): never 0, so the logarithm is finite.
        fn uniform(&mut self) -> f64 {
            ((self.rng.next_u64() >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64)
        }

        fn next(&mut self) -> f64 {
            if let Some(z) = self.spare.take() {
                return z;
            }
            let r = (-2.0 * self.uniform().ln()).sqrt();
            let theta = 2.0 * std::f64::consts::PI * self.uniform();
            self.spare = Some(r * theta.sin());
            r * theta.cos()
        }
    }

    /// `level(i) · (1 + cv · N(0, 1))` for i in 0..n: a nightly metric with multiplicative noise.
    fn series(n: usize, cv: f64, seed: u64, level: impl Fn(usize) -> f64) -> Vec<f64> {
        let mut normal = Normal::new(seed);
        (0..n)
            .map(|i| level(i) * (1.0 + cv * normal.next()))
            .collect()
    }

    fn flat(n: usize, seed: u64) -> Vec<f64> {
        series(n, 0.05, seed, |_| 100.0)
    }

    fn step(seed: u64) -> Vec<f64> {
        series(100, 0.05, seed, |i| if i < 60 { 100.0 } else { 110.0 })
    }

    fn two_steps(seed: u64) -> Vec<f64> {
        series(120, 0.05, seed, |i| match i {
            0..40 => 100.0,
            40..80 => 120.0,
            _ => 96.0,
        })
    }

    fn near(found: &[ChangePoint], index: usize, slack: usize) -> bool {
        found.iter().any(|c| c.index.abs_diff(index) <= slack)
    }

    #[test]
    fn one_step_of_ten_percent_is_found_once() {
        let opts = Options::default();
        let found = e_divisive(&step(1), &opts);
        eprintln!("step, seed 1: {found:?}");
        assert_eq!(found.len(), 1, "{found:?}");
        let cp = &found[0];
        assert!(cp.index.abs_diff(60) <= 2, "{cp:?}");
        assert!((0.05..0.15).contains(&cp.relative), "{cp:?}");
        assert!(cp.p_value <= opts.alpha, "{cp:?}");

        // Detection rate over many noise draws: exactly one change point, within ±2 of 60.
        let seeds = 200;
        let (mut exact, mut misplaced, mut extra, mut missed) = (0, 0, 0, 0);
        for seed in 0..seeds {
            let found = e_divisive(&step(1000 + seed), &opts);
            match found.len() {
                0 => missed += 1,
                1 if near(&found, 60, 2) => exact += 1,
                1 => misplaced += 1,
                _ => extra += 1,
            }
        }
        eprintln!(
            "step +10% @60/100, CV 5%: {exact}/{seeds} exactly one within ±2, \
             {misplaced} one but off by more than 2, {extra} with a false extra point, \
             {missed} missed"
        );
        assert!(exact * 100 >= seeds * 90, "{exact}/{seeds}");
    }

    #[test]
    fn flat_series_rarely_alarm() {
        let opts = Options::default();
        let seeds = 200u64;
        let alarms = (0..seeds)
            .filter(|&seed| !e_divisive(&flat(100, seed), &opts).is_empty())
            .count();
        eprintln!(
            "flat, 100 points, CV 5%: {alarms}/{seeds} series with a change point ({:.1}%)",
            100.0 * alarms as f64 / seeds as f64
        );
        assert!(alarms * 100 <= 2 * seeds as usize, "{alarms}/{seeds}");
    }

    #[test]
    fn scattered_outliers_are_not_change_points() {
        let opts = Options::default();
        let with_outliers = |seed: u64, at: &[usize], factor: f64| {
            let mut s = flat(100, seed);
            for &i in at {
                s[i] *= factor;
            }
            s
        };
        let found = e_divisive(&with_outliers(7, &[20, 50, 80], 3.0), &opts);
        assert!(found.is_empty(), "{found:?}");

        // The same over many draws, and a single huge outlier at various places.
        let seeds = 100u64;
        let three = (0..seeds)
            .filter(|&seed| !e_divisive(&with_outliers(seed, &[20, 50, 80], 3.0), &opts).is_empty())
            .count();
        let mut single = 0;
        for seed in 0..seeds {
            let at = [0, 1, 2, 37, 97, 98, 99][seed as usize % 7];
            if !e_divisive(&with_outliers(500 + seed, &[at], 100.0), &opts).is_empty() {
                single += 1;
            }
        }
        eprintln!(
            "flat + 3 outliers at 3x: {three}/{seeds} alarms; \
             flat + 1 outlier at 100x: {single}/{seeds} alarms"
        );
        // Both rates are about alpha (1%): the outliers add nothing to the false alarms.
        assert!(three * 100 <= 5 * seeds as usize, "{three}/{seeds}");
        assert!(single * 100 <= 5 * seeds as usize, "{single}/{seeds}");
        for at in [0, 1, 2, 50, 97, 98, 99] {
            let found = e_divisive(&with_outliers(3, &[at], 100.0), &opts);
            assert!(found.is_empty(), "outlier at {at}: {found:?}");
        }
    }

    #[test]
    fn two_steps_are_both_found() {
        let opts = Options::default();
        let found = e_divisive(&two_steps(11), &opts);
        eprintln!("two steps, seed 11: {found:?}");
        assert!(near(&found, 40, 2) && near(&found, 80, 2), "{found:?}");
        assert!(found.windows(2).all(|w| w[0].index < w[1].index));
        let up = found.iter().find(|c| c.index.abs_diff(40) <= 2);
        let down = found.iter().find(|c| c.index.abs_diff(80) <= 2);
        assert!(
            up.is_some_and(|c| (0.1..0.3).contains(&c.relative)),
            "{found:?}"
        );
        assert!(
            down.is_some_and(|c| (-0.3..-0.1).contains(&c.relative)),
            "{found:?}"
        );

        let seeds = 100u64;
        let both = (0..seeds)
            .filter(|&seed| {
                let found = e_divisive(&two_steps(2000 + seed), &opts);
                near(&found, 40, 2) && near(&found, 80, 2)
            })
            .count();
        eprintln!("two steps ±20% @40,80/120, CV 5%: both found in {both}/{seeds}");
        assert!(both * 100 >= 95 * seeds as usize, "{both}/{seeds}");
    }

    #[test]
    fn short_and_constant_series_have_none() {
        let opts = Options::default();
        assert!(e_divisive(&[], &opts).is_empty());
        assert!(e_divisive(&[1.0, 5.0, 1.0, 5.0, 1.0], &opts).is_empty());
        assert!(e_divisive(&vec![42.0; 100], &opts).is_empty());
        assert!(e_divisive(&[0.0; 7], &opts).is_empty());
        // A one-point "segment" is never a candidate, even with min_size 1 (treated as 2).
        let tiny = Options {
            min_size: 1,
            ..opts
        };
        assert!(e_divisive(&[1.0, 1.0, 1.0], &tiny).is_empty());
    }

    #[test]
    fn same_input_and_seed_give_same_output() {
        let opts = Options::default();
        let s = two_steps(5);
        assert_eq!(e_divisive(&s, &opts), e_divisive(&s, &opts));
        let noisy = flat(100, 9);
        assert_eq!(e_divisive(&noisy, &opts), e_divisive(&noisy, &opts));
    }

    #[test]
    fn small_changes_are_dropped_by_min_relative() {
        let opts = Options {
            min_relative: 0.2,
            ..Options::default()
        };
        assert!(e_divisive(&step(1), &opts).is_empty());
        // The -20% step (1.2 -> 0.96) survives a 0.15 threshold; the medians are recomputed.
        let opts = Options {
            min_relative: 0.15,
            ..Options::default()
        };
        let found = e_divisive(&two_steps(11), &opts);
        assert!(found.iter().all(|c| c.relative.abs() >= 0.15), "{found:?}");
    }

    #[test]
    fn median_and_relative() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(relative_change(100.0, 110.0), 110.0 / 100.0 - 1.0);
        assert_eq!(relative_change(0.0, 0.0), 0.0);
        assert_eq!(relative_change(0.0, -1.0), f64::NEG_INFINITY);
    }

    #[test]
    fn statistic_matches_the_definition() {
        // Brute-force Q over all (tau, kappa) against the running-sum evaluation.
        let z = series(23, 0.1, 3, |i| if i < 9 { 1.0 } else { 1.3 });
        let min_size = 3;
        let mut best = (f64::NEG_INFINITY, 0);
        for kappa in 2 * min_size..=z.len() {
            for tau in (min_size..=kappa - min_size).rev() {
                let (x, y) = (&z[..tau], &z[tau..kappa]);
                let (m, k) = (x.len() as f64, y.len() as f64);
                let cross: f64 = x
                    .iter()
                    .flat_map(|a| y.iter().map(move |b| (a - b).abs()))
                    .sum();
                let within = |v: &[f64]| -> f64 {
                    let mut sum = 0.0;
                    for (i, a) in v.iter().enumerate() {
                        sum += v[i + 1..].iter().map(|b| (a - b).abs()).sum::<f64>();
                    }
                    sum
                };
                let e = 2.0 * cross / (m * k)
                    - within(x) / (m * (m - 1.0) / 2.0)
                    - within(y) / (k * (k - 1.0) / 2.0);
                let q = m * k / (m + k) * e;
                if q > best.0 {
                    best = (q, tau);
                }
            }
        }
        let mut scratch = Scratch::default();
        let (q, tau) = best_split(&z, min_size, &mut scratch).unwrap_or((f64::NAN, 0));
        assert!(
            (q - best.0).abs() <= 1e-9 * best.0.abs(),
            "{q} vs {}",
            best.0
        );
        assert_eq!(tau, best.1);
    }

    #[test]
    fn four_hundred_points_are_fast() {
        let s = series(400, 0.05, 21, |i| if i < 250 { 100.0 } else { 108.0 });
        let started = Instant::now();
        let found = e_divisive(&s, &Options::default());
        let with_change = started.elapsed();
        let flat400 = flat(400, 22);
        let started = Instant::now();
        let none = e_divisive(&flat400, &Options::default());
        let without = started.elapsed();
        // Worst case: every one of the 199 shuffles of the whole series is evaluated.
        let started = Instant::now();
        let mut scratch = Scratch::default();
        let mut rng = SplitMix64::new(1);
        let mut shuffled = flat400.clone();
        for _ in 0..200 {
            shuffle(&mut shuffled, &mut rng);
            std::hint::black_box(best_split(&shuffled, 3, &mut scratch));
        }
        let full = started.elapsed();
        eprintln!(
            "400 points: step series {with_change:?} ({} found), flat {without:?} ({} found), \
             200 full evaluations {full:?}",
            found.len(),
            none.len()
        );
        assert!(near(&found, 250, 3), "{found:?}");
    }
}
