//! Flexible capacity forecast: for a group and a window, the baseline load and the flex
//! the portfolio can give downwards (discharge / curtail) and upwards (charge / add load),
//! in kW per step and kWh over the window, each as P10 / P50 / P90.
//!
//! - **Baseline.** Each step of the window is matched with the same time of day on each of
//!   the previous `lookback_days` days. A site's load on a past day is the mean of its
//!   readings in that interval (a site with no reading that day takes its mean over the days
//!   that have one, so a gap does not look like zero load). The group's total per past day
//!   gives an empirical distribution, whose 10th, 50th and 90th percentiles (linear
//!   interpolation) are the baseline's P10 / P50 / P90.
//! - **Flex.** The allocator itself answers "how much could be delivered": for each baseline
//!   quantile, every site's load is its own mean scaled to that group total, and a request
//!   for the whole fleet's rating is planned with [`Pacing::Sustained`], so the answer holds
//!   for the whole window and respects every envelope, rating, reserve and self-consumption
//!   policy, with the current state of charge. Flex thus varies with load (self-consumption
//!   takes more as load rises; export headroom grows with it); the three answers are sorted
//!   into P10 / P50 / P90. The uncertainty therefore comes from the load history only; the
//!   state of charge is taken as known.

use super::allocate::allocate;
use super::input::{Problem, ProblemError};
use super::request::{Direction, DispatchRequest, Pacing, Ramp, RequestSource, Target};
use crate::domain::EpochSeconds;
use serde::Serialize;

const DAY: i64 = 86_400;

/// Three percentiles of one quantity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Band {
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
}

impl Band {
    fn flat(v: f64) -> Band {
        Band {
            p10: v,
            p50: v,
            p90: v,
        }
    }

    fn sorted(mut v: [f64; 3]) -> Band {
        v.sort_by(f64::total_cmp);
        Band {
            p10: v[0],
            p50: v[1],
            p90: v[2],
        }
    }
}

/// The `q` quantile (0-1) of `v` by linear interpolation; `v` must be sorted and non-empty.
fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// One step of the forecast.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FlexStep {
    pub start: EpochSeconds,
    pub end: EpochSeconds,
    /// The group's subscriber load without dispatch, kW.
    pub baseline_kw: Band,
    /// What a discharge (load reduction) could deliver throughout the window, kW.
    pub flex_down_kw: Band,
    /// What a charge (load increase) could deliver throughout the window, kW.
    pub flex_up_kw: Band,
    /// Past days with at least one reading in this step's interval.
    pub days_with_data: usize,
}

/// A group's forecast over a window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FlexForecast {
    pub steps: Vec<FlexStep>,
    /// Energy of the flex down over the window, kWh.
    pub flex_down_kwh: Band,
    /// Energy of the flex up over the window, kWh.
    pub flex_up_kwh: Band,
    pub lookback_days: u32,
}

/// Forecasts flex for `problem` (its steps, DERs with their current state of charge, sites
/// with their limits and self-consumption policy; the sites' `load_kw` is replaced).
/// `history[s]` holds site `s`'s past load readings `(instant, kW)` in any order.
pub fn forecast(
    problem: &Problem,
    history: &[Vec<(EpochSeconds, f64)>],
    lookback_days: u32,
) -> Result<FlexForecast, ProblemError> {
    problem.validate()?;
    let k = problem.step_count();
    let ns = problem.sites.len();
    let days = lookback_days as usize;
    // One site at a time (memory stays O(sites x steps) however long the lookback): its
    // mean per past day and step, its mean per step over the days with data, and its share
    // of each past day's group total (its own mean where that day has no reading).
    let mut site_mean = vec![vec![0.0f64; k]; ns];
    let mut day_total = vec![0.0f64; days * k];
    let mut day_seen = vec![false; days * k];
    let mut sums = vec![(0.0f64, 0usize); days * k];
    for (s, mean) in site_mean.iter_mut().enumerate() {
        sums.iter_mut().for_each(|c| *c = (0.0, 0));
        for &(t, kw) in history.get(s).map_or(&[][..], |h| h.as_slice()) {
            if !kw.is_finite() {
                continue;
            }
            for d in 1..=days {
                let shifted = t + d as i64 * DAY;
                if shifted < problem.steps[0] || shifted >= problem.steps[k] {
                    continue;
                }
                let j = problem.steps.partition_point(|&b| b <= shifted) - 1;
                let cell = &mut sums[(d - 1) * k + j];
                cell.0 += kw;
                cell.1 += 1;
            }
        }
        for j in 0..k {
            let (mut total, mut n) = (0.0, 0usize);
            for d in 0..days {
                let (sum, cnt) = sums[d * k + j];
                if cnt > 0 {
                    total += sum / cnt as f64;
                    n += 1;
                }
            }
            mean[j] = if n > 0 { total / n as f64 } else { 0.0 };
            for d in 0..days {
                let (sum, cnt) = sums[d * k + j];
                let cell = d * k + j;
                if cnt > 0 {
                    day_total[cell] += sum / cnt as f64;
                    day_seen[cell] = true;
                } else {
                    day_total[cell] += mean[j];
                }
            }
        }
    }
    let mut baseline = Vec::with_capacity(k);
    let mut days_with_data = Vec::with_capacity(k);
    for j in 0..k {
        let mut totals: Vec<f64> = (0..days)
            .filter(|d| day_seen[d * k + j])
            .map(|d| day_total[d * k + j])
            .collect();
        totals.sort_by(f64::total_cmp);
        days_with_data.push(totals.len());
        baseline.push(if totals.is_empty() {
            Band::flat(0.0)
        } else {
            Band {
                p10: quantile(&totals, 0.1),
                p50: quantile(&totals, 0.5),
                p90: quantile(&totals, 0.9),
            }
        });
    }

    let rated: f64 = problem.ders.iter().map(|d| d.rated_kw).sum::<f64>() + 1.0;
    let request = |direction| DispatchRequest {
        id: "flex-forecast".into(),
        target: Target::Sites { site_ids: vec![] },
        direction,
        power_kw: rated,
        start: problem.steps[0],
        duration_s: problem.steps[k] - problem.steps[0],
        ramp: Ramp::Simultaneous,
        priority: 0,
        source: RequestSource::Operator,
        pacing: Pacing::Sustained,
    };
    let total_mean: Vec<f64> = (0..k)
        .map(|j| site_mean.iter().map(|m| m[j]).sum())
        .collect();
    // Flex at each baseline quantile, per step and over the window.
    let mut down = vec![[0.0f64; 3]; k];
    let mut up = vec![[0.0f64; 3]; k];
    let mut down_kwh = [0.0f64; 3];
    let mut up_kwh = [0.0f64; 3];
    for (qi, pick) in [|b: &Band| b.p10, |b: &Band| b.p50, |b: &Band| b.p90]
        .iter()
        .enumerate()
    {
        let mut p = problem.clone();
        for (s, site) in p.sites.iter_mut().enumerate() {
            site.load_kw = (0..k)
                .map(|j| {
                    let total_mean = total_mean[j];
                    let target = pick(&baseline[j]);
                    if total_mean.abs() > 1e-12 {
                        site_mean[s][j] * target / total_mean
                    } else {
                        target / ns as f64
                    }
                })
                .collect();
        }
        for (dir, per_step, kwh) in [
            (Direction::Discharge, &mut down, &mut down_kwh),
            (Direction::Charge, &mut up, &mut up_kwh),
        ] {
            let plan = allocate(&request(dir), &p)?;
            for (j, r) in plan.report.iter().enumerate() {
                per_step[j][qi] = r.delivered_kw;
                kwh[qi] += r.delivered_kw * (r.end - r.start) as f64 / 3600.0;
            }
        }
    }
    Ok(FlexForecast {
        steps: (0..k)
            .map(|j| FlexStep {
                start: problem.steps[j],
                end: problem.steps[j + 1],
                baseline_kw: baseline[j],
                flex_down_kw: Band::sorted(down[j]),
                flex_up_kw: Band::sorted(up[j]),
                days_with_data: days_with_data[j],
            })
            .collect(),
        flex_down_kwh: Band::sorted(down_kwh),
        flex_up_kwh: Band::sorted(up_kwh),
        lookback_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::allocate::tests::{battery, site};

    const T0: i64 = 1_900_000_800; // a day boundary is irrelevant; only offsets matter

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0];
        assert!((quantile(&v, 0.1) - 2.0).abs() < 1e-12);
        assert!((quantile(&v, 0.5) - 6.0).abs() < 1e-12);
        assert!((quantile(&v, 0.9) - 10.0).abs() < 1e-12);
        assert_eq!(quantile(&[4.0], 0.9), 4.0);
    }

    fn two_sites() -> Problem {
        let mut s0 = site("s0");
        s0.self_consumption = 1.0;
        let mut s1 = site("s1");
        s1.self_consumption = 1.0;
        Problem {
            steps: vec![T0, T0 + 1800, T0 + 3600],
            ders: vec![
                battery("b0", 0, 5.0, 10.0, 100.0),
                battery("b1", 1, 5.0, 10.0, 50.0),
            ],
            sites: vec![s0, s1],
            ..Default::default()
        }
    }

    #[test]
    fn baseline_bands_come_from_the_same_time_on_past_days() {
        let p = two_sites();
        // Ten past days: site 0 draws d kW on day d in the first half hour and 1 kW in the
        // second; site 1 always 1 kW but reports only on even days.
        let mut h0 = Vec::new();
        let mut h1 = Vec::new();
        for d in 1..=10i64 {
            h0.push((T0 - d * DAY + 60, d as f64));
            h0.push((T0 - d * DAY + 1900, 1.0));
            if d % 2 == 0 {
                h1.push((T0 - d * DAY + 60, 1.0));
                h1.push((T0 - d * DAY + 1900, 1.0));
            }
        }
        // A reading from today and one 11 days ago are outside the lookback.
        h0.push((T0 + 60, 100.0));
        h0.push((T0 - 11 * DAY + 60, 100.0));
        let f = forecast(&p, &[h0, h1], 10).unwrap();
        let b = f.steps[0].baseline_kw;
        // Totals per day: d + 1 (site 1 imputed at its 1 kW mean on odd days).
        assert!((b.p50 - 6.5).abs() < 1e-9, "{b:?}");
        assert!((b.p10 - 2.9).abs() < 1e-9, "{b:?}");
        assert!((b.p90 - 10.1).abs() < 1e-9, "{b:?}");
        assert_eq!(f.steps[0].days_with_data, 10);
        assert_eq!(f.steps[1].baseline_kw, Band::flat(2.0));
    }

    #[test]
    fn flex_falls_as_self_consumption_takes_more_and_is_ordered() {
        let p = two_sites();
        let mut h = Vec::new();
        for d in 1..=10i64 {
            h.push((T0 - d * DAY + 60, d as f64 * 0.4));
            h.push((T0 - d * DAY + 1900, d as f64 * 0.4));
        }
        let f = forecast(&p, &[h.clone(), h], 10).unwrap();
        for s in &f.steps {
            assert!(s.flex_down_kw.p10 <= s.flex_down_kw.p50);
            assert!(s.flex_down_kw.p50 <= s.flex_down_kw.p90);
            assert!(s.flex_down_kw.p90 <= 10.0 + 1e-9, "ratings");
            assert!(
                s.flex_down_kw.p10 < s.flex_down_kw.p90,
                "load uncertainty shows"
            );
        }
        // Upward: battery 1 has 5 kWh of room and battery 0 none; 1 hour window.
        assert!(
            (f.flex_up_kwh.p50 - 5.0).abs() < 1e-6,
            "{:?}",
            f.flex_up_kwh
        );
        // Downward energy can never exceed what is stored above the reserve (10 + 5 kWh).
        assert!(f.flex_down_kwh.p90 <= 15.0 + 1e-6);
    }

    #[test]
    fn no_history_gives_a_zero_baseline_and_still_a_flex() {
        let p = two_sites();
        let f = forecast(&p, &[vec![], vec![]], 7).unwrap();
        assert_eq!(f.steps[0].baseline_kw, Band::flat(0.0));
        assert_eq!(f.steps[0].days_with_data, 0);
        // No load: both batteries give their stored energy over the hour, within 5 kW each.
        assert!(
            (f.flex_down_kwh.p50 - 10.0).abs() < 1e-6,
            "{:?}",
            f.flex_down_kwh
        );
    }
}
