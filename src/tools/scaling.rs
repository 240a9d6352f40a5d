//! How a path's time grows with size: a least-squares fit of log(time) = a + k·log(size) over
//! a sweep of sizes, the exponent k with its R², and a flag where k is too large.
//!
//! A migration moves each byte once: its time is a fixed cost per range plus a copy, so k is at
//! most 1, and below 1 where fixed costs weigh (small sizes, a costly start). A path whose time
//! grows faster than its data (a list walked per page, a quadratic search) shows k well above
//! one. The threshold, [`THRESHOLD`], sits between the two: 5% measurement noise moves k by
//! about 0.01 over a 1024-fold sweep, superlinear effects of a real machine (TLB reach, caches;
//! the sim's wall-clock eviction shows them) stay near 1.2, and a quadratic term that rules
//! only the larger half of the sweep already lifts k there to 1.5 or more.
//!
//! Fixed costs hide a quadratic term at small sizes, so each path is also fitted over the
//! larger half of its sizes, where they have faded; either exponent above the threshold flags.

/// Exponents above this flag a path.
pub const THRESHOLD: f64 = 1.3;

/// A power-law fit of time against size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// The exponent: time ∝ size^k.
    pub k: f64,
    /// The intercept, ln(time) at size 1.
    pub a: f64,
    /// Coefficient of determination of the log-log line, 1 for a perfect power law.
    pub r2: f64,
    pub points: usize,
}

/// Least squares over `(size, time)` points; `None` with fewer than two distinct sizes or a
/// size or time that is not positive and finite.
pub fn fit(points: &[(f64, f64)]) -> Option<Fit> {
    if points
        .iter()
        .any(|&(s, t)| !(s > 0.0 && t > 0.0 && s.is_finite() && t.is_finite()))
    {
        return None;
    }
    let xy: Vec<(f64, f64)> = points.iter().map(|&(s, t)| (s.ln(), t.ln())).collect();
    let n = xy.len() as f64;
    let mx = xy.iter().map(|p| p.0).sum::<f64>() / n;
    let my = xy.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = xy.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = xy.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let syy: f64 = xy.iter().map(|p| (p.1 - my).powi(2)).sum();
    if xy.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let k = sxy / sxx;
    let a = my - k * mx;
    let r2 = if syy > 0.0 {
        (sxy * sxy) / (sxx * syy)
    } else {
        1.0
    };
    Some(Fit {
        k,
        a,
        r2,
        points: xy.len(),
    })
}

/// One path's scaling: the fit over every size and over the larger half.
#[derive(Clone, Debug, PartialEq)]
pub struct PathScaling {
    pub path: String,
    pub all: Fit,
    /// Over the larger half of the sizes, where there are at least 3 of them.
    pub upper: Option<Fit>,
}

impl PathScaling {
    /// `None` where the points cannot be fitted.
    pub fn of(path: impl Into<String>, points: &[(f64, f64)]) -> Option<PathScaling> {
        let mut sorted = points.to_vec();
        sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
        let all = fit(&sorted)?;
        let half = &sorted[sorted.len() / 2..];
        let upper = if half.len() >= 3 { fit(half) } else { None };
        Some(PathScaling {
            path: path.into(),
            all,
            upper,
        })
    }

    /// Whether either exponent is above [`THRESHOLD`].
    pub fn flagged(&self) -> bool {
        self.all.k > THRESHOLD || self.upper.is_some_and(|u| u.k > THRESHOLD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 64 KiB .. 64 MiB, powers of two.
    fn sizes() -> Vec<f64> {
        (16..=26).map(|e| (1u64 << e) as f64).collect()
    }

    fn sweep(mut time: impl FnMut(f64) -> f64) -> Vec<(f64, f64)> {
        sizes().into_iter().map(|s| (s, time(s))).collect()
    }

    #[test]
    fn a_power_law_gives_its_exponent_exactly() {
        for k in [0.5, 1.0, 2.0] {
            let f = fit(&sweep(|s| 3.0 * s.powf(k))).unwrap();
            assert!((f.k - k).abs() < 1e-9 && (f.r2 - 1.0).abs() < 1e-9, "{f:?}");
            assert!((f.a - 3f64.ln()).abs() < 1e-6, "{f:?}");
        }
    }

    #[test]
    fn quadratic_is_flagged_and_linear_is_not() {
        let quadratic = PathScaling::of("q", &sweep(|s| 1e-9 * s * s)).unwrap();
        assert!(quadratic.flagged(), "{quadratic:?}");
        let linear = PathScaling::of("l", &sweep(|s| 1e-3 * s)).unwrap();
        assert!(!linear.flagged(), "{linear:?}");
    }

    #[test]
    fn a_fixed_cost_bends_the_line_below_one_and_is_not_flagged() {
        // 70 µs per migration plus 6 GB/s, in µs: the sim's prefetch of one range.
        let p = PathScaling::of("fixed", &sweep(|s| 70.0 + s / 6e3)).unwrap();
        assert!(p.all.k < 1.0 && p.all.k > 0.2, "{p:?}");
        assert!(p.all.r2 < 0.99, "a bent line fits less well: {p:?}");
        let upper = p.upper.unwrap();
        assert!(upper.k > p.all.k && upper.k <= 1.0, "{p:?}");
        assert!(!p.flagged());
    }

    #[test]
    fn a_quadratic_term_hidden_by_a_fixed_cost_is_flagged_by_the_larger_half() {
        // Fixed cost dominates below 4 MiB; the square term above it.
        let p = PathScaling::of(
            "hidden",
            &sweep(|s| 5e4 + s / 6e3 + (s / 4e6).powi(2) * 5e4),
        )
        .unwrap();
        assert!(p.flagged(), "{p:?}");
        assert!(p.upper.unwrap().k > THRESHOLD, "{p:?}");
    }

    #[test]
    fn noise_moves_the_exponent_little() {
        let mut noise =
            crate::device::reference::NoiseSource::new(crate::tools::sensitivity::DEFAULT_NOISE, 3);
        let p = PathScaling::of("noisy", &sweep(|s| s * noise.factor())).unwrap();
        assert!((p.all.k - 1.0).abs() < 0.1, "{p:?}");
        assert!(!p.flagged());
    }

    #[test]
    fn unfittable_points_give_none() {
        assert_eq!(fit(&[(1.0, 1.0)]), None);
        assert_eq!(fit(&[(1.0, 1.0), (1.0, 2.0)]), None);
        assert_eq!(fit(&[(1.0, 0.0), (2.0, 2.0)]), None);
        assert_eq!(fit(&[(1.0, f64::NAN), (2.0, 2.0)]), None);
    }
}
