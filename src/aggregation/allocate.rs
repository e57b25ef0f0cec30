//! Exact apportionment of an integer total by integer weights: the largest remainder
//! (Hamilton) method.
//!
//! Every member first gets the floor of its exact share `|total| * w / W`; the units left
//! over (fewer than the number of members) go one each to the members with the largest
//! remainders, ties to the earlier member in the given order. The amounts therefore sum
//! exactly to the total, and each differs from its exact share by less than one unit. A
//! negative total is apportioned as its absolute value and the sign put back, so rounding
//! is symmetric. Arithmetic is in `i128`/`u128`: no overflow for any `i64` total and `u64`
//! weights.

use serde::Serialize;

/// Why an apportionment is impossible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocateError {
    #[error("nothing to apportion to: no members")]
    NoMembers,
    #[error("every weight is zero")]
    ZeroWeights,
}

/// One member's part, with how it was reached (for the audit trail).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Part {
    /// The floor of the exact share (signed like the total).
    pub base: i64,
    /// Remainder of the exact share, in units of 1 / (sum of weights).
    pub remainder: u128,
    /// Whether this member received one of the left-over units.
    pub extra: bool,
    /// What the member gets: `base` plus one unit in the total's direction if `extra`.
    pub amount: i64,
}

/// Apportion `total` by `weights` (see the module documentation).
pub fn largest_remainder(total: i64, weights: &[u64]) -> Result<Vec<Part>, AllocateError> {
    if weights.is_empty() {
        return Err(AllocateError::NoMembers);
    }
    let sum: u128 = weights.iter().map(|w| *w as u128).sum();
    if sum == 0 {
        return Err(AllocateError::ZeroWeights);
    }
    let magnitude = total.unsigned_abs() as u128;
    let sign: i64 = if total < 0 { -1 } else { 1 };
    let mut parts: Vec<(u128, u128)> = weights
        .iter()
        .map(|w| {
            let exact = magnitude * *w as u128;
            (exact / sum, exact % sum)
        })
        .collect();
    let given: u128 = parts.iter().map(|p| p.0).sum();
    let left = (magnitude - given) as usize;
    let mut order: Vec<usize> = (0..parts.len()).collect();
    // Stable sort: equal remainders keep the given order.
    order.sort_by(|a, b| parts[*b].1.cmp(&parts[*a].1));
    let mut extra = vec![false; parts.len()];
    for i in order.into_iter().take(left) {
        extra[i] = true;
    }
    Ok(parts
        .iter_mut()
        .zip(extra)
        .map(|((floor, rem), extra)| {
            // floor <= |total| fits in i64 except for i64::MIN's magnitude with one member,
            // where floor + extra is exactly that magnitude.
            let unsigned = *floor + extra as u128;
            let amount = if sign < 0 {
                (unsigned as i128).wrapping_neg() as i64
            } else {
                unsigned as i64
            };
            Part {
                base: (*floor as i128 * sign as i128) as i64,
                remainder: *rem,
                extra,
                amount,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn amounts(total: i64, weights: &[u64]) -> Vec<i64> {
        largest_remainder(total, weights)
            .unwrap()
            .into_iter()
            .map(|p| p.amount)
            .collect()
    }

    #[test]
    fn left_over_units_go_to_the_largest_remainders_then_to_the_first() {
        // 10 by 1:1:1 -> 3.33 each: one extra unit, to the first.
        assert_eq!(amounts(10, &[1, 1, 1]), vec![4, 3, 3]);
        // 100 by 1:2:3 -> 16.67, 33.33, 50: the largest remainder (2/3) takes the unit.
        assert_eq!(amounts(100, &[1, 2, 3]), vec![17, 33, 50]);
        assert_eq!(amounts(-100, &[1, 2, 3]), vec![-17, -33, -50]);
        assert_eq!(amounts(5, &[0, 1, 0]), vec![0, 5, 0]);
        assert_eq!(amounts(0, &[3, 4]), vec![0, 0]);
        assert_eq!(amounts(i64::MIN, &[1]), vec![i64::MIN]);
        assert_eq!(
            amounts(i64::MAX, &[u64::MAX, u64::MAX])
                .iter()
                .map(|a| *a as i128)
                .sum::<i128>(),
            i64::MAX as i128
        );
    }

    #[test]
    fn impossible_apportionments_are_errors() {
        assert_eq!(largest_remainder(5, &[]), Err(AllocateError::NoMembers));
        assert_eq!(
            largest_remainder(5, &[0, 0]),
            Err(AllocateError::ZeroWeights)
        );
    }

    proptest! {
        #[test]
        fn parts_sum_exactly_and_stay_within_one_unit_of_the_exact_share(
            total in any::<i64>(),
            weights in prop::collection::vec(0u64..1_000_000, 1..40),
        ) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let parts = largest_remainder(total, &weights).unwrap();
            let sum: i128 = parts.iter().map(|p| p.amount as i128).sum();
            prop_assert_eq!(sum, total as i128);
            let w: i128 = weights.iter().map(|w| *w as i128).sum();
            for (p, wi) in parts.iter().zip(&weights) {
                // |amount * W - total * w| < W
                let diff = p.amount as i128 * w - total as i128 * *wi as i128;
                prop_assert!(diff.abs() < w, "{p:?} weight {wi} of {w}");
                if *wi == 0 { prop_assert_eq!(p.amount, 0); }
            }
            // A larger weight never gets less.
            for i in 0..weights.len() {
                for j in 0..weights.len() {
                    if weights[i] > weights[j] {
                        prop_assert!(parts[i].amount.abs() >= parts[j].amount.abs());
                    }
                }
            }
        }
    }
}
