//! The water level behind every allocation.
//!
//! Each participant (a device, or a site or zone that has reached its limit) contributes
//! `w * min(theta, b)` at a common level `theta`: `w` is its energy for dispatch (so equal
//! `theta` means equal time-to-empty, `1/theta`) and `b` the level at which it saturates.
//! The total is concave, piecewise linear and non-decreasing in `theta`, so the level that
//! meets a target is unique where the total is increasing. [`solve`] finds it with a
//! quickselect-style search (expected O(n), no full sort): each round picks a pivot
//! breakpoint, evaluates the total there and discards the half of the terms whose state
//! (saturated or still rising) is then known.

/// One participant at the level: contributes `w * min(theta, b)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Term {
    /// Weight: energy available for dispatch (kWh), or its equivalent for devices without
    /// an energy limit. Must be positive and finite.
    pub w: f64,
    /// Breakpoint: the level (1/h) at which the term stops rising. Must be non-negative.
    pub b: f64,
}

/// The total of `terms` at `theta`.
pub fn total(terms: &[Term], theta: f64) -> f64 {
    terms.iter().map(|t| t.w * theta.min(t.b)).sum()
}

/// The total once every term is saturated.
pub fn saturated(terms: &[Term]) -> f64 {
    terms.iter().map(|t| t.w * t.b).sum()
}

/// Moves the terms matching `pred` to the front and returns how many there are.
fn partition(s: &mut [Term], pred: impl Fn(&Term) -> bool) -> usize {
    let mut i = 0;
    for j in 0..s.len() {
        if pred(&s[j]) {
            s.swap(i, j);
            i += 1;
        }
    }
    i
}

/// The smallest level at which the terms total `target`. Reorders `terms`. When `target` is
/// at or above the saturated total, the largest breakpoint is returned (everything
/// saturated); a target at or below zero gives 0.
pub fn solve(terms: &mut [Term], target: f64) -> f64 {
    if target <= 0.0 || terms.is_empty() {
        return 0.0;
    }
    // Known contributions of discarded terms: `c` from saturated ones, `m` the slope of the
    // ones still rising at the answer.
    let (mut c, mut m) = (0.0f64, 0.0f64);
    let (mut lo_theta, mut hi_theta) = (0.0f64, f64::INFINITY);
    let (mut lo, mut hi) = (0usize, terms.len());
    // A fixed xorshift keeps pivots deterministic but immune to sorted inputs.
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    while lo < hi {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let s = &mut terms[lo..hi];
        let p = s[(rng % s.len() as u64) as usize].b;
        let f = c + m * p + total(s, p);
        if f >= target {
            // The answer is at or below p: every term with b >= p is still rising there.
            let k = partition(s, |t| t.b < p);
            m += s[k..].iter().map(|t| t.w).sum::<f64>();
            hi = lo + k;
            hi_theta = p;
        } else {
            // The answer is above p: every term with b <= p is saturated there.
            let k = partition(s, |t| t.b <= p);
            c += s[..k].iter().map(|t| t.w * t.b).sum::<f64>();
            lo += k;
            lo_theta = p;
        }
    }
    if m > 0.0 {
        ((target - c) / m).clamp(lo_theta, hi_theta)
    } else {
        lo_theta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_term() {
        let mut t = [Term { w: 10.0, b: 0.5 }];
        assert!((solve(&mut t, 2.0) - 0.2).abs() < 1e-12);
        assert_eq!(solve(&mut t, 0.0), 0.0);
        // Beyond saturation the breakpoint is the answer.
        assert_eq!(solve(&mut t, 50.0), 0.5);
    }

    #[test]
    fn saturated_terms_stop_contributing_slope() {
        // Two batteries of 10 and 30 kWh, the small one capped at 1 kW (b = 0.1/h).
        let mut t = [Term { w: 10.0, b: 0.1 }, Term { w: 30.0, b: 1.0 }];
        // 4 kW: small one gives 1, big one 3 => theta = 0.1.
        assert!((solve(&mut t, 4.0) - 0.1).abs() < 1e-12);
        // 7 kW: small one capped at 1, big one 6 => theta = 0.2.
        assert!((solve(&mut t, 7.0) - 0.2).abs() < 1e-12);
    }

    proptest! {
        #[test]
        fn the_level_meets_the_target(
            terms in prop::collection::vec((0.01f64..100.0, 0.0f64..5.0), 1..200),
            frac in 0.0f64..1.0,
        ) {
            let mut t: Vec<Term> = terms.iter().map(|&(w, b)| Term { w, b }).collect();
            let sat = saturated(&t);
            let target = sat * frac;
            let theta = solve(&mut t, target);
            prop_assert!((total(&t, theta) - target).abs() <= 1e-9 * sat.max(1.0));
        }
    }
}
