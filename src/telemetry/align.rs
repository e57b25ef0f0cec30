//! Alignment of irregular readings to fixed interval grids (1 s, 1 min, 5 min, 15 min,
//! 60 min), with one documented rule per kind of measurand.
//!
//! Devices report when they like: every 7 s, every 5 min, in bursts after a reconnect.
//! Settlement, aggregation and gap reports need values per fixed interval, so a series of
//! [`Point`]s (one source, one measurand, any spacing) becomes one [`Aligned`] value per
//! grid interval `[start, start + step)`. Grid intervals start at multiples of the step
//! since the epoch, so every source's 15-minute intervals line up.
//!
//! The four rules ([`Kind`]), chosen so that energy is conserved and a coarse grid equals
//! the fine grid aggregated (both are property-tested below):
//!
//! - **Instantaneous** (power, reactive power, voltage, frequency, state of charge): two
//!   consecutive samples at most `max_gap_s` apart are joined by a straight line; the value
//!   of an interval is the time-weighted average of that line over the part of the interval
//!   it covers (`coverage_s`). Before the first sample, after the last and inside longer
//!   gaps nothing is assumed. An interval with samples but no coverage (an isolated sample
//!   with no neighbour within `max_gap_s`) takes the mean of its samples.
//! - **Cumulative** energy registers: the register is read at each interval boundary,
//!   linearly interpolated between the samples around it, and the interval's energy is the
//!   difference. A register that falls to less than half its previous value was reset (or
//!   rolled over) and counted up again from zero, so the energy across the reset is the new
//!   value; a smaller decrease is a glitch and counts as no energy. Boundaries outside the
//!   samples cannot be read.
//! - **Interval energy** (stamped at the start of its interval): each reading is spread
//!   evenly over its own interval and apportioned to grid intervals by overlap. The
//!   reading's interval length is given in [`Rules::interval_s`] or inferred as the
//!   smallest spacing between readings.
//! - **State** (operating state, grid connection, storage state: codes, not quantities): a
//!   state holds from its sample until the next sample, or for at most `max_gap_s`; the
//!   value of an interval is the state that held for the most seconds of it (on a tie, the
//!   later one), never an average of codes.
//!
//! Quality per interval: `measured` when the value rests on samples inside or on the
//! boundaries of a fully covered interval without interpolation across a gap or splitting
//! of a reading; `estimated` when it needed interpolation with no sample inside, partial
//! coverage, a register glitch, or apportioning part of a reading; `missing` (and no value)
//! when there is no data at all.

use super::{Measurand, Quality};
use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use utoipa::ToSchema;

/// The most intervals one call may produce (a 1 s grid over 11.5 days), so that a careless
/// range cannot exhaust memory.
pub const MAX_INTERVALS: i64 = 1_000_000;

/// Interval length assumed for interval-energy readings when it is neither given nor
/// inferable (a single reading): the most common revenue-metering interval.
pub const DEFAULT_ENERGY_INTERVAL_S: i64 = 900;

/// A reading's register is taken as reset when it falls below this share of the previous one.
const RESET_SHARE: f64 = 0.5;

/// The supported grids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Grid {
    #[serde(rename = "1s")]
    OneSecond,
    #[serde(rename = "1m")]
    OneMinute,
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "15m")]
    FifteenMinutes,
    #[serde(rename = "60m")]
    SixtyMinutes,
}

impl Grid {
    pub const ALL: [Grid; 5] = [
        Grid::OneSecond,
        Grid::OneMinute,
        Grid::FiveMinutes,
        Grid::FifteenMinutes,
        Grid::SixtyMinutes,
    ];

    /// The step in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            Grid::OneSecond => 1,
            Grid::OneMinute => 60,
            Grid::FiveMinutes => 300,
            Grid::FifteenMinutes => 900,
            Grid::SixtyMinutes => 3600,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grid::OneSecond => "1s",
            Grid::OneMinute => "1m",
            Grid::FiveMinutes => "5m",
            Grid::FifteenMinutes => "15m",
            Grid::SixtyMinutes => "60m",
        }
    }

    /// The grid whose step is `s` seconds.
    pub fn from_seconds(s: i64) -> Option<Grid> {
        Grid::ALL.into_iter().find(|g| g.seconds() == s)
    }
}

impl fmt::Display for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Grid {
    type Err = AlignError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Grid::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| AlignError::UnknownGrid(s.to_string()))
    }
}

/// How a measurand's samples turn into interval values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A value at an instant: time-weighted average.
    Instantaneous,
    /// A running energy register: difference across the interval's boundaries.
    Cumulative,
    /// Energy over the reading's own interval: apportioned by overlap.
    IntervalEnergy,
    /// A state code: held until the next sample; the state that held longest.
    State,
}

impl Kind {
    /// The rule for a measurand.
    pub fn of(m: Measurand) -> Kind {
        match m {
            Measurand::EnergyImported | Measurand::EnergyExported => Kind::Cumulative,
            Measurand::IntervalEnergyImported | Measurand::IntervalEnergyExported => {
                Kind::IntervalEnergy
            }
            Measurand::ActivePower
            | Measurand::ReactivePower
            | Measurand::StateOfCharge
            | Measurand::Voltage
            | Measurand::Frequency => Kind::Instantaneous,
            Measurand::OperatingState | Measurand::GridConnected | Measurand::StorageState => {
                Kind::State
            }
        }
    }
}

/// One sample: when, and the value in the measurand's SI unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub instant: EpochSeconds,
    pub value: f64,
}

/// Settings of the rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    /// Instantaneous: samples further apart than this are not joined (the interval between
    /// them is uncovered). Cumulative: a boundary interpolated between samples further
    /// apart is `estimated`.
    pub max_gap_s: i64,
    /// Interval energy: each reading's interval length; `None` infers it.
    pub interval_s: Option<i64>,
}

impl Default for Rules {
    /// Samples up to 15 minutes apart are joined: long enough for 5-minute pollers that miss
    /// a beat, short enough that an outage is not drawn as a straight line.
    fn default() -> Self {
        Rules {
            max_gap_s: 900,
            interval_s: None,
        }
    }
}

/// One grid interval's value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Aligned {
    /// Start of the interval, epoch seconds.
    pub start: EpochSeconds,
    /// End of the interval (exclusive).
    pub end: EpochSeconds,
    /// `None` when there is no data (quality `missing`).
    pub value: Option<f64>,
    pub quality: Quality,
    /// Seconds of the interval the data covers.
    pub coverage_s: i64,
    /// Samples whose instant lies in the interval.
    pub samples: u32,
}

/// Why alignment was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AlignError {
    #[error("unknown grid {0:?} (expected one of 1s, 1m, 5m, 15m, 60m)")]
    UnknownGrid(String),
    #[error("from ({from}) must be before to ({to})")]
    BadRange {
        from: EpochSeconds,
        to: EpochSeconds,
    },
    #[error("{field} ({at}) is not on the {grid} grid (a multiple of {step} s since the epoch)")]
    OffGrid {
        field: &'static str,
        at: EpochSeconds,
        grid: Grid,
        step: i64,
    },
    #[error("the range holds {0} intervals; at most {MAX_INTERVALS} per call")]
    TooManyIntervals(i64),
    #[error("{0} must be positive")]
    BadRule(&'static str),
    #[error("sample at {0} is not a finite number")]
    NotFinite(EpochSeconds),
}

/// Aligns `points` (any order; the first of equal instants wins) to `grid` over
/// `[from, to)`, by the rule of `kind`.
pub fn align(
    kind: Kind,
    points: &[Point],
    grid: Grid,
    from: EpochSeconds,
    to: EpochSeconds,
    rules: Rules,
) -> Result<Vec<Aligned>, AlignError> {
    let step = grid.seconds();
    if from >= to {
        return Err(AlignError::BadRange { from, to });
    }
    for (field, at) in [("from", from), ("to", to)] {
        if at.rem_euclid(step) != 0 {
            return Err(AlignError::OffGrid {
                field,
                at,
                grid,
                step,
            });
        }
    }
    let n = (to - from) / step;
    if n > MAX_INTERVALS {
        return Err(AlignError::TooManyIntervals(n));
    }
    if rules.max_gap_s <= 0 {
        return Err(AlignError::BadRule("max_gap_s"));
    }
    if rules.interval_s.is_some_and(|d| d <= 0) {
        return Err(AlignError::BadRule("interval_s"));
    }
    if let Some(p) = points.iter().find(|p| !p.value.is_finite()) {
        return Err(AlignError::NotFinite(p.instant));
    }
    let mut pts = points.to_vec();
    pts.sort_by_key(|p| p.instant);
    pts.dedup_by_key(|p| p.instant);

    let mut out: Vec<Aligned> = (0..n)
        .map(|k| Aligned {
            start: from + k * step,
            end: from + (k + 1) * step,
            value: None,
            quality: Quality::Missing,
            coverage_s: 0,
            samples: 0,
        })
        .collect();
    for p in &pts {
        if p.instant >= from && p.instant < to {
            out[((p.instant - from) / step) as usize].samples += 1;
        }
    }
    match kind {
        Kind::Instantaneous => instantaneous(&pts, &mut out, rules.max_gap_s),
        Kind::Cumulative => cumulative(&pts, &mut out, rules.max_gap_s),
        Kind::IntervalEnergy => {
            let d = rules
                .interval_s
                .or_else(|| smallest_spacing(&pts))
                .unwrap_or(DEFAULT_ENERGY_INTERVAL_S);
            interval_energy(&pts, &mut out, from, step, d)
        }
        Kind::State => state(&pts, &mut out, rules.max_gap_s),
    }
    Ok(out)
}

/// The smallest positive spacing between consecutive instants of sorted, distinct points.
pub fn smallest_spacing(pts: &[Point]) -> Option<i64> {
    pts.windows(2).map(|w| w[1].instant - w[0].instant).min()
}

fn instantaneous(pts: &[Point], out: &mut [Aligned], max_gap_s: i64) {
    let mut seg = 0usize;
    let mut sample = 0usize;
    for iv in out.iter_mut() {
        let (a, b) = (iv.start, iv.end);
        // Segments that end at or before this interval cannot reach later intervals either.
        while seg + 1 < pts.len() && pts[seg + 1].instant <= a {
            seg += 1;
        }
        let mut integral = 0.0;
        let mut covered = 0i64;
        let mut s = seg;
        while s + 1 < pts.len() && pts[s].instant < b {
            let (p, q) = (pts[s], pts[s + 1]);
            let dt = q.instant - p.instant;
            if dt <= max_gap_s {
                let x0 = p.instant.max(a);
                let x1 = q.instant.min(b);
                if x1 > x0 {
                    let at =
                        |x: i64| p.value + (q.value - p.value) * (x - p.instant) as f64 / dt as f64;
                    integral += (at(x0) + at(x1)) / 2.0 * (x1 - x0) as f64;
                    covered += x1 - x0;
                }
            }
            s += 1;
        }
        while sample < pts.len() && pts[sample].instant < a {
            sample += 1;
        }
        let mut sum = 0.0;
        let mut count = 0u32;
        let mut k = sample;
        while k < pts.len() && pts[k].instant < b {
            sum += pts[k].value;
            count += 1;
            k += 1;
        }
        iv.coverage_s = covered;
        if covered > 0 {
            iv.value = Some(integral / covered as f64);
            iv.quality = if covered == b - a && count > 0 {
                Quality::Measured
            } else {
                Quality::Estimated
            };
        } else if count > 0 {
            iv.value = Some(sum / f64::from(count));
            iv.quality = Quality::Estimated;
        }
    }
}

/// Sample and hold: each state holds from its sample to the next one, at most `max_gap_s`.
fn state(pts: &[Point], out: &mut [Aligned], max_gap_s: i64) {
    // Seconds each state held inside the interval; a handful of distinct codes at most.
    let mut held: Vec<(f64, i64, EpochSeconds)> = Vec::new();
    let mut first = 0usize;
    for iv in out.iter_mut() {
        let (a, b) = (iv.start, iv.end);
        // A sample that stops holding before this interval starts cannot reach later ones.
        while first + 1 < pts.len() && pts[first + 1].instant <= a {
            first += 1;
        }
        held.clear();
        let mut covered = 0i64;
        let mut k = first;
        while k < pts.len() && pts[k].instant < b {
            let p = pts[k];
            let until = pts.get(k + 1).map_or(p.instant + max_gap_s, |q| {
                q.instant.min(p.instant + max_gap_s)
            });
            let (x0, x1) = (p.instant.max(a), until.min(b));
            if x1 > x0 {
                covered += x1 - x0;
                match held.iter_mut().find(|h| h.0 == p.value) {
                    Some(h) => {
                        h.1 += x1 - x0;
                        h.2 = x0;
                    }
                    None => held.push((p.value, x1 - x0, x0)),
                }
            }
            k += 1;
        }
        iv.coverage_s = covered;
        if let Some(&(value, _, _)) = held.iter().max_by_key(|h| (h.1, h.2)) {
            iv.value = Some(value);
            iv.quality = if covered == b - a {
                Quality::Measured
            } else {
                Quality::Estimated
            };
        }
    }
}

/// The register made continuous across resets, and which steps were glitches.
fn unwrap_register(pts: &[Point]) -> (Vec<f64>, Vec<bool>) {
    let mut cont = Vec::with_capacity(pts.len());
    let mut glitch = vec![false; pts.len()];
    for (i, p) in pts.iter().enumerate() {
        if i == 0 {
            cont.push(p.value);
            continue;
        }
        let prev = pts[i - 1].value;
        let delta = if p.value >= prev {
            p.value - prev
        } else if p.value < prev * RESET_SHARE {
            // Restarted from zero (replaced meter, rollover): it has counted up to p.value.
            p.value.max(0.0)
        } else {
            glitch[i] = true;
            0.0
        };
        cont.push(cont[i - 1] + delta);
    }
    (cont, glitch)
}

fn cumulative(pts: &[Point], out: &mut [Aligned], max_gap_s: i64) {
    if pts.is_empty() {
        return;
    }
    let (cont, glitch) = unwrap_register(pts);
    // The register at instant x: (value, interpolated across a wide gap, index of the first
    // sample at or after x).
    let read = |x: i64| -> Option<(f64, bool, usize)> {
        let i = pts.partition_point(|p| p.instant < x);
        if i < pts.len() && pts[i].instant == x {
            return Some((cont[i], false, i));
        }
        if i == 0 || i == pts.len() {
            return None;
        }
        let (p, q) = (pts[i - 1], pts[i]);
        let dt = q.instant - p.instant;
        let v = cont[i - 1] + (cont[i] - cont[i - 1]) * (x - p.instant) as f64 / dt as f64;
        Some((v, dt > max_gap_s, i))
    };
    for iv in out.iter_mut() {
        let (Some((va, wa, ia)), Some((vb, wb, ib))) = (read(iv.start), read(iv.end)) else {
            continue;
        };
        // Glitches at samples that shaped this difference (from the segment entering the
        // interval to the one leaving it).
        let lo = ia.max(1);
        let hi = ib.min(pts.len() - 1);
        let glitched = (lo..=hi).any(|k| glitch[k]);
        iv.value = Some(vb - va);
        iv.coverage_s = iv.end - iv.start;
        iv.quality = if wa || wb || glitched {
            Quality::Estimated
        } else {
            Quality::Measured
        };
    }
}

fn interval_energy(pts: &[Point], out: &mut [Aligned], from: EpochSeconds, step: i64, d: i64) {
    let n = out.len() as i64;
    let mut split = vec![false; out.len()];
    for p in pts {
        let (t0, t1) = (p.instant, p.instant + d);
        let first = (t0 - from).div_euclid(step).max(0);
        let last = ((t1 - 1 - from).div_euclid(step)).min(n - 1);
        for k in first..=last {
            let iv = &mut out[k as usize];
            let o = t1.min(iv.end) - t0.max(iv.start);
            if o <= 0 {
                continue;
            }
            *iv.value.get_or_insert(0.0) += p.value * o as f64 / d as f64;
            iv.coverage_s += o;
            if o < d {
                split[k as usize] = true;
            }
        }
    }
    for (iv, split) in out.iter_mut().zip(split) {
        if iv.value.is_some() {
            iv.quality = if iv.coverage_s >= iv.end - iv.start && !split {
                Quality::Measured
            } else {
                Quality::Estimated
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_750_000_000 - 1_750_000_000 % 3600;

    fn p(instant: i64, value: f64) -> Point {
        Point { instant, value }
    }

    /// Combines consecutive fine intervals into coarse ones as the same rule would: a
    /// coverage-weighted mean for instantaneous values, a sum for energy.
    fn coarsen(fine: &[Aligned], kind: Kind, per: usize) -> Vec<Option<f64>> {
        fine.chunks(per)
            .map(|c| match kind {
                Kind::Instantaneous => {
                    let cov: i64 = c.iter().map(|a| a.coverage_s).sum();
                    (cov > 0).then(|| {
                        c.iter()
                            .filter_map(|a| a.value.map(|v| v * a.coverage_s as f64))
                            .sum::<f64>()
                            / cov as f64
                    })
                }
                _ => c
                    .iter()
                    .any(|a| a.value.is_some())
                    .then(|| c.iter().filter_map(|a| a.value).sum()),
            })
            .collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * (1.0 + a.abs().max(b.abs()))
    }

    #[test]
    fn instantaneous_is_a_time_weighted_average() {
        // 0 W at T0, 600 W at T0+60: a ramp; then held readings every 30 s.
        let pts = [
            p(T0, 0.0),
            p(T0 + 60, 600.0),
            p(T0 + 90, 600.0),
            p(T0 + 120, 600.0),
        ];
        let a = align(
            Kind::Instantaneous,
            &pts,
            Grid::OneMinute,
            T0,
            T0 + 180,
            Rules::default(),
        )
        .unwrap();
        assert!(close(a[0].value.unwrap(), 300.0));
        assert_eq!(a[0].quality, Quality::Measured);
        assert!(close(a[1].value.unwrap(), 600.0));
        assert_eq!(a[1].quality, Quality::Measured);
        // The last sample alone in its minute: its value, estimated, no coverage; nothing
        // after it is extrapolated.
        assert_eq!(
            (a[2].value, a[2].quality, a[2].coverage_s),
            (Some(600.0), Quality::Estimated, 0)
        );
        let a = align(
            Kind::Instantaneous,
            &pts,
            Grid::OneMinute,
            T0,
            T0 + 240,
            Rules::default(),
        )
        .unwrap();
        assert_eq!((a[3].value, a[3].quality), (None, Quality::Missing));

        // On a 1 s grid the ramp is interpolated: 10 W in the second starting at T0+1,
        // estimated because no sample lies inside it.
        let s = align(
            Kind::Instantaneous,
            &pts,
            Grid::OneSecond,
            T0,
            T0 + 60,
            Rules::default(),
        )
        .unwrap();
        assert!(close(s[1].value.unwrap(), 15.0));
        assert_eq!(s[1].quality, Quality::Estimated);
        assert_eq!(s[0].quality, Quality::Measured);
    }

    #[test]
    fn instantaneous_edges_gaps_and_single_samples() {
        // A sample at T0+30 and one at T0+2000: too far apart to join.
        let pts = [p(T0 + 30, 100.0), p(T0 + 2000, 300.0)];
        let a = align(
            Kind::Instantaneous,
            &pts,
            Grid::OneMinute,
            T0,
            T0 + 120,
            Rules::default(),
        )
        .unwrap();
        // The isolated sample gives its interval a value, estimated, with no coverage.
        assert_eq!(a[0].value, Some(100.0));
        assert_eq!(a[0].quality, Quality::Estimated);
        assert_eq!(a[0].coverage_s, 0);
        assert_eq!(a[1].quality, Quality::Missing);
        // With a longer max gap the two are joined and every minute between has a value.
        let rules = Rules {
            max_gap_s: 3600,
            ..Rules::default()
        };
        let a = align(
            Kind::Instantaneous,
            &pts,
            Grid::OneMinute,
            T0,
            T0 + 120,
            rules,
        )
        .unwrap();
        // The first minute is covered from T0+30 only: partial, estimated.
        assert_eq!(a[0].coverage_s, 30);
        assert_eq!(a[0].quality, Quality::Estimated);
        assert_eq!(a[1].coverage_s, 60);
        assert_eq!(
            a[1].quality,
            Quality::Estimated,
            "interpolated, no sample inside"
        );
    }

    #[test]
    fn cumulative_differences_with_interpolated_boundaries_and_resets() {
        // 1 kWh per hour, read every 20 minutes off the grid.
        let pts = [
            p(T0 - 600, 0.0),
            p(T0 + 600, 333.0),
            p(T0 + 1800, 666.0),
            p(T0 + 3000, 1000.0),
        ];
        let rules = Rules {
            max_gap_s: 1800,
            ..Rules::default()
        };
        let a = align(
            Kind::Cumulative,
            &pts,
            Grid::FifteenMinutes,
            T0,
            T0 + 3600,
            rules,
        )
        .unwrap();
        // Boundary at T0 is interpolated: 166.5 Wh; at T0+900: 333 + 333*300/1200 = 416.25.
        assert!(close(a[0].value.unwrap(), 416.25 - 166.5));
        assert_eq!(a[0].quality, Quality::Measured);
        // The boundary T0+3600 is after the last sample: missing.
        assert_eq!(a[3].quality, Quality::Missing);
        // Energy conserved over the readable span T0..T0+2700.
        let total: f64 = a[..3].iter().map(|x| x.value.unwrap()).sum();
        let at = |x: f64| 666.0 + (1000.0 - 666.0) * (x - 1800.0) / 1200.0;
        assert!(close(total, at(2700.0) - 166.5));

        // A reset: 900 -> 20 means the register restarted and counted 20 Wh.
        let pts = [
            p(T0, 800.0),
            p(T0 + 60, 900.0),
            p(T0 + 120, 20.0),
            p(T0 + 180, 120.0),
        ];
        let a = align(
            Kind::Cumulative,
            &pts,
            Grid::OneMinute,
            T0,
            T0 + 180,
            Rules::default(),
        )
        .unwrap();
        let v: Vec<f64> = a.iter().map(|x| x.value.unwrap()).collect();
        assert_eq!(v, vec![100.0, 20.0, 100.0]);
        // A small step backwards is a glitch: no energy, estimated.
        let pts = [p(T0, 800.0), p(T0 + 60, 790.0), p(T0 + 120, 850.0)];
        let a = align(
            Kind::Cumulative,
            &pts,
            Grid::OneMinute,
            T0,
            T0 + 120,
            Rules::default(),
        )
        .unwrap();
        assert_eq!(a[0].value, Some(0.0));
        assert_eq!(a[0].quality, Quality::Estimated);
    }

    #[test]
    fn interval_energy_is_apportioned_by_overlap() {
        // Two 15-minute readings.
        let pts = [p(T0, 900.0), p(T0 + 900, 300.0)];
        let a = align(
            Kind::IntervalEnergy,
            &pts,
            Grid::FiveMinutes,
            T0,
            T0 + 1800,
            Rules::default(),
        )
        .unwrap();
        let v: Vec<f64> = a.iter().map(|x| x.value.unwrap()).collect();
        assert_eq!(v, vec![300.0, 300.0, 300.0, 100.0, 100.0, 100.0]);
        assert!(
            a.iter().all(|x| x.quality == Quality::Estimated),
            "split readings"
        );
        let h = align(
            Kind::IntervalEnergy,
            &pts,
            Grid::SixtyMinutes,
            T0,
            T0 + 3600,
            Rules::default(),
        )
        .unwrap();
        assert_eq!(h[0].value, Some(1200.0));
        assert_eq!(
            h[0].quality,
            Quality::Estimated,
            "half the hour has no reading"
        );
        let q = align(
            Kind::IntervalEnergy,
            &pts,
            Grid::FifteenMinutes,
            T0,
            T0 + 1800,
            Rules::default(),
        )
        .unwrap();
        assert_eq!(q[0].quality, Quality::Measured);
    }

    #[test]
    fn a_state_is_held_and_the_longest_held_state_wins() {
        let rules = Rules {
            max_gap_s: 600,
            interval_s: None,
        };
        // running (4) from 0, fault (7) from 100 to 130, running again, then silence from
        // 200 (held for max_gap_s = 600 s, to 800).
        let pts = [p(0, 4.0), p(100, 7.0), p(130, 4.0), p(200, 4.0)];
        let out = align(Kind::State, &pts, Grid::OneMinute, 0, 900, rules).unwrap();
        assert_eq!(out[0].value, Some(4.0), "30 s of fault in a running minute");
        assert_eq!(out[0].quality, Quality::Measured);
        assert_eq!(out[1].value, Some(4.0));
        assert_eq!(out[1].coverage_s, 60);
        // 780..840: held until 800 only.
        assert_eq!(out[13].value, Some(4.0));
        assert_eq!(out[13].coverage_s, 20);
        assert_eq!(out[13].quality, Quality::Estimated);
        assert_eq!(out[14].value, None);
        assert_eq!(out[14].quality, Quality::Missing);
        // Never an average of codes: 45 s of fault beats 15 s of running.
        let pts = [p(0, 4.0), p(15, 7.0), p(60, 4.0)];
        let out = align(Kind::State, &pts, Grid::OneMinute, 0, 60, rules).unwrap();
        assert_eq!(out[0].value, Some(7.0));
        // A tie goes to the later state; a state held from before the range counts.
        let pts = [p(-30, 1.0), p(30, 4.0)];
        let out = align(Kind::State, &pts, Grid::OneMinute, 0, 60, rules).unwrap();
        assert_eq!(out[0].value, Some(4.0));
        assert_eq!(out[0].coverage_s, 60);
        assert_eq!(Kind::of(Measurand::OperatingState), Kind::State);
    }

    #[test]
    fn refuses_bad_ranges() {
        let r = Rules::default();
        assert!(matches!(
            align(Kind::Instantaneous, &[], Grid::OneMinute, T0 + 60, T0, r),
            Err(AlignError::BadRange { .. })
        ));
        let e = align(
            Kind::Instantaneous,
            &[],
            Grid::FifteenMinutes,
            T0 + 60,
            T0 + 1800,
            r,
        )
        .unwrap_err();
        assert!(e.to_string().contains("from"), "{e}");
        assert!(matches!(
            align(
                Kind::Instantaneous,
                &[],
                Grid::OneSecond,
                T0,
                T0 + 2_000_000,
                r
            ),
            Err(AlignError::TooManyIntervals(_))
        ));
        assert!(matches!(
            align(
                Kind::Instantaneous,
                &[p(T0, f64::NAN)],
                Grid::OneSecond,
                T0,
                T0 + 1,
                r
            ),
            Err(AlignError::NotFinite(_))
        ));
        assert_eq!("15m".parse::<Grid>().unwrap(), Grid::FifteenMinutes);
        assert!("2m".parse::<Grid>().is_err());
    }

    fn series() -> impl Strategy<Value = Vec<Point>> {
        // Irregular spacing of 1-120 s over about an hour, values that may go up or down.
        prop::collection::vec((1i64..120, -5000.0f64..5000.0), 2..80).prop_map(|steps| {
            let mut t = T0 - 60;
            steps
                .into_iter()
                .map(|(dt, v)| {
                    t += dt;
                    p(t, v)
                })
                .collect()
        })
    }

    fn register() -> impl Strategy<Value = Vec<Point>> {
        // Starts before T0 and reaches past T0 + 1 h, so whole hours are readable.
        prop::collection::vec((100i64..300, 0.0f64..500.0), 40..80).prop_map(|steps| {
            let mut t = T0 - 400;
            let mut r = 1000.0;
            steps
                .into_iter()
                .map(|(dt, e)| {
                    t += dt;
                    r += e;
                    p(t, r)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn instantaneous_15m_equals_aggregated_1m(pts in series()) {
            let rules = Rules::default();
            let (from, to) = (T0 - 3600, T0 + 3 * 3600);
            let fine = align(Kind::Instantaneous, &pts, Grid::OneMinute, from, to, rules).unwrap();
            let coarse = align(Kind::Instantaneous, &pts, Grid::FifteenMinutes, from, to, rules).unwrap();
            for (c, f) in coarse.iter().zip(coarsen(&fine, Kind::Instantaneous, 15)) {
                if c.coverage_s > 0 {
                    prop_assert!(close(c.value.unwrap(), f.unwrap()), "{c:?} vs {f:?}");
                }
                let cov: i64 = fine.iter().filter(|x| x.start >= c.start && x.end <= c.end).map(|x| x.coverage_s).sum();
                prop_assert_eq!(c.coverage_s, cov);
            }
        }

        #[test]
        fn cumulative_energy_is_conserved_on_every_grid(pts in register()) {
            let rules = Rules::default();
            let first = pts[0].instant;
            let last = pts[pts.len() - 1].instant;
            // The readable span in whole hours.
            let from = first + (3600 - first.rem_euclid(3600)) % 3600;
            let to = last - last.rem_euclid(3600);
            prop_assume!(to > from);
            let truth = {
                let at = |x: i64| {
                    let i = pts.partition_point(|p| p.instant < x);
                    if pts[i].instant == x { return pts[i].value; }
                    let (a, b) = (pts[i - 1], pts[i]);
                    a.value + (b.value - a.value) * (x - a.instant) as f64 / (b.instant - a.instant) as f64
                };
                at(to) - at(from)
            };
            let mut per_grid = Vec::new();
            for g in Grid::ALL {
                let a = align(Kind::Cumulative, &pts, g, from, to, rules).unwrap();
                let total: f64 = a.iter().map(|x| x.value.unwrap()).sum();
                prop_assert!(close(total, truth), "{g}: {total} vs {truth}");
                per_grid.push(a);
            }
            // And each coarse interval is the sum of its fine ones.
            let fine = &per_grid[1];
            for (c, f) in per_grid[3].iter().zip(coarsen(fine, Kind::Cumulative, 15)) {
                prop_assert!(close(c.value.unwrap(), f.unwrap()));
            }
        }

        #[test]
        fn interval_energy_is_conserved(values in prop::collection::vec(0.0f64..2000.0, 1..40), d in prop::sample::select(vec![300i64, 900, 1800, 3600])) {
            let pts: Vec<Point> = values.iter().enumerate().map(|(i, v)| p(T0 + i as i64 * d, *v)).collect();
            let to = T0 + values.len() as i64 * d;
            let to = to + (3600 - to.rem_euclid(3600)) % 3600;
            let rules = Rules { interval_s: Some(d), ..Rules::default() };
            let truth: f64 = values.iter().sum();
            for g in Grid::ALL {
                let a = align(Kind::IntervalEnergy, &pts, g, T0, to, rules).unwrap();
                let total: f64 = a.iter().filter_map(|x| x.value).sum();
                prop_assert!(close(total, truth), "{g}: {total} vs {truth}");
            }
        }
    }
}
