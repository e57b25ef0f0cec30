//! Live aggregate (virtual meter) estimators for a group of devices.
//!
//! Device meters report every 10-60 s, so the sum of their latest readings lags the real
//! aggregate by about half a read interval, which is badly wrong during a ramp. Each
//! estimator here turns the same plain inputs (each device's latest two readings, the
//! latest command Switchyard sent it, the response model of its class, and the recent
//! history of the latest-reading sum) into an [`Estimate`]: a value in W, the instant it
//! describes and an uncertainty band.
//!
//! Times are seconds on any clock the caller chooses (the simulator uses seconds since the
//! dispatch; the server would use Unix seconds); readings carry the instant they were
//! measured, not the instant they arrived, which is how latency is accounted for.
//!
//! The virtual meter reports average power over a trailing `averaging_s` window (1 s by
//! default), as a reference meter at that resolution would. With that convention the lag of
//! the latest-reading sum is `(read interval - 1) / 2` seconds, the time lag of the DNV
//! study's adjusted aggregate metering.

use super::response::{ResponseModel, ramp_average};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A reading as the estimators see it: the instant it was measured and active power in W.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub at_s: f64,
    pub value_w: f64,
}

/// A setpoint command Switchyard sent to a device.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// When it was sent.
    pub at_s: f64,
    /// What Switchyard believed the device was doing when it sent it, W.
    pub from_w: f64,
    /// The setpoint, W.
    pub target_w: f64,
}

/// One device of the group, as the estimators see it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceView {
    /// Rated power, W (scales `subset-latest` and bounds devices never heard from).
    pub rated_w: f64,
    /// Index of its class in the `models` slice given to [`estimate`].
    pub class: usize,
    /// The reading before the latest one.
    pub previous: Option<Sample>,
    /// The latest reading received.
    pub latest: Option<Sample>,
    /// The latest command sent to it (a newer command supersedes older ones: the device
    /// moves from wherever it is to the new target).
    pub command: Option<Command>,
}

/// The estimators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EstimatorKind {
    /// Sum of every device's latest reading (the study's "aggregate metering").
    LatestSum,
    /// Only devices that reported within a window, scaled up to the group's rating.
    SubsetLatest,
    /// Latest sum plus the smoothed ramp of that sum times its lag.
    RampAdjusted,
    /// The aggregate one read interval plus latency ago, interpolated (not real time).
    Timeshifted,
    /// Latest readings advanced through the commands sent since, with the response model.
    ScheduleAware,
}

impl EstimatorKind {
    pub const ALL: [EstimatorKind; 5] = [
        EstimatorKind::LatestSum,
        EstimatorKind::SubsetLatest,
        EstimatorKind::RampAdjusted,
        EstimatorKind::Timeshifted,
        EstimatorKind::ScheduleAware,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EstimatorKind::LatestSum => "latest-sum",
            EstimatorKind::SubsetLatest => "subset-latest",
            EstimatorKind::RampAdjusted => "ramp-adjusted",
            EstimatorKind::Timeshifted => "timeshifted",
            EstimatorKind::ScheduleAware => "schedule-aware",
        }
    }
}

impl fmt::Display for EstimatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EstimatorKind {
    type Err = AggregationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EstimatorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| AggregationError::UnknownEstimator(s.to_string()))
    }
}

/// Why an estimate could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AggregationError {
    #[error(
        "unknown estimator {0:?} (expected one of latest-sum, subset-latest, ramp-adjusted, timeshifted, schedule-aware)"
    )]
    UnknownEstimator(String),
    #[error("device {device} names class {class}, but only {classes} response models were given")]
    UnknownClass {
        device: usize,
        class: usize,
        classes: usize,
    },
    #[error(
        "response model {0} is invalid (durations must be finite and >= 0, compliance in 0..=1)"
    )]
    InvalidModel(usize),
    #[error("device {device}: {what} is not a finite number")]
    NotFinite { device: usize, what: &'static str },
    #[error("device {device}: rated power must be finite and > 0")]
    InvalidRating { device: usize },
    #[error("parameter {0} is out of range")]
    InvalidParam(&'static str),
}

/// Settings shared by the estimators.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// The instant to estimate for.
    pub now_s: f64,
    /// Nominal read interval of the devices, seconds.
    pub read_interval_s: f64,
    /// Nominal delay between a reading being taken and it reaching Switchyard, seconds.
    pub latency_s: f64,
    /// `subset-latest` keeps devices whose latest reading is at most this old (beyond the
    /// latency), seconds.
    pub subset_window_s: f64,
    /// The virtual meter reports average power over this trailing window, seconds.
    pub averaging_s: f64,
    /// Standard deviation of a reading's error as a fraction of the device's rating.
    pub sensor_error: f64,
    /// Weight, in devices, of a class's configured compliance rate against the compliance
    /// observed in readings since the command (`schedule-aware`).
    pub compliance_prior_weight: f64,
}

impl Params {
    /// Defaults for a read interval: a subset window of a quarter interval, 1 s averaging,
    /// no latency, no sensor error, a prior worth 200 devices.
    pub fn for_interval(now_s: f64, read_interval_s: f64) -> Params {
        Params {
            now_s,
            read_interval_s,
            latency_s: 0.0,
            subset_window_s: read_interval_s / 4.0,
            averaging_s: 1.0,
            sensor_error: 0.0,
            compliance_prior_weight: 200.0,
        }
    }

    fn validate(&self) -> Result<(), AggregationError> {
        let nonneg = |v: f64| v.is_finite() && v >= 0.0;
        if !self.now_s.is_finite() {
            return Err(AggregationError::InvalidParam("now_s"));
        }
        if !(self.read_interval_s.is_finite() && self.read_interval_s > 0.0) {
            return Err(AggregationError::InvalidParam("read_interval_s"));
        }
        for (v, name) in [
            (self.latency_s, "latency_s"),
            (self.subset_window_s, "subset_window_s"),
            (self.averaging_s, "averaging_s"),
            (self.sensor_error, "sensor_error"),
            (self.compliance_prior_weight, "compliance_prior_weight"),
        ] {
            if !nonneg(v) {
                return Err(AggregationError::InvalidParam(name));
            }
        }
        Ok(())
    }
}

/// An estimate of the aggregate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The instant the estimate describes (`now_s`, except for `timeshifted`).
    pub at_s: f64,
    pub value_w: f64,
    /// Lower and upper end of the uncertainty band (about two standard deviations plus
    /// the known bias of the method), W.
    pub low_w: f64,
    pub high_w: f64,
}

impl Estimate {
    fn with_band(at_s: f64, value_w: f64, low_w: f64, high_w: f64) -> Estimate {
        Estimate {
            at_s,
            value_w,
            low_w: low_w.min(value_w),
            high_w: high_w.max(value_w),
        }
    }
}

/// Estimate the aggregate of `devices` at `params.now_s` with `kind`.
///
/// `history` is the recent series of the latest-reading sum (oldest first), which the
/// caller keeps; only `ramp-adjusted` and the bands use it, and an empty slice means "no
/// ramp known". Every input is checked first: a device naming an unknown class, a
/// non-finite value or an invalid parameter is an error and nothing is estimated.
pub fn estimate(
    kind: EstimatorKind,
    params: &Params,
    devices: &[DeviceView],
    models: &[ResponseModel],
    history: &[Sample],
) -> Result<Estimate, AggregationError> {
    validate(params, devices, models)?;
    Ok(match kind {
        EstimatorKind::LatestSum => latest_sum(params, devices, models, history),
        EstimatorKind::SubsetLatest => subset_latest(params, devices, models, history),
        EstimatorKind::RampAdjusted => ramp_adjusted(params, devices, models, history),
        EstimatorKind::Timeshifted => timeshifted(params, devices),
        EstimatorKind::ScheduleAware => schedule_aware(params, devices, models),
    })
}

fn validate(
    params: &Params,
    devices: &[DeviceView],
    models: &[ResponseModel],
) -> Result<(), AggregationError> {
    params.validate()?;
    if let Some(i) = models.iter().position(|m| !m.is_valid()) {
        return Err(AggregationError::InvalidModel(i));
    }
    for (i, d) in devices.iter().enumerate() {
        if !(d.rated_w.is_finite() && d.rated_w > 0.0) {
            return Err(AggregationError::InvalidRating { device: i });
        }
        if d.class >= models.len() {
            return Err(AggregationError::UnknownClass {
                device: i,
                class: d.class,
                classes: models.len(),
            });
        }
        let finite =
            |s: Option<Sample>| s.is_none_or(|s| s.at_s.is_finite() && s.value_w.is_finite());
        if !finite(d.latest) {
            return Err(AggregationError::NotFinite {
                device: i,
                what: "latest reading",
            });
        }
        if !finite(d.previous) {
            return Err(AggregationError::NotFinite {
                device: i,
                what: "previous reading",
            });
        }
        if let Some(c) = d.command
            && !(c.at_s.is_finite() && c.from_w.is_finite() && c.target_w.is_finite())
        {
            return Err(AggregationError::NotFinite {
                device: i,
                what: "command",
            });
        }
    }
    Ok(())
}

/// Least-squares slope (W/s) of the history over the last read interval; 0 without two
/// points in it.
pub fn smoothed_ramp(history: &[Sample], now_s: f64, window_s: f64) -> f64 {
    let recent = history
        .iter()
        .filter(|s| s.at_s >= now_s - window_s && s.at_s <= now_s);
    let (mut n, mut st, mut sv) = (0.0, 0.0, 0.0);
    for s in recent.clone() {
        n += 1.0;
        st += s.at_s;
        sv += s.value_w;
    }
    if n < 2.0 {
        return 0.0;
    }
    let (mt, mv) = (st / n, sv / n);
    let (mut cov, mut var) = (0.0, 0.0);
    for s in recent {
        cov += (s.at_s - mt) * (s.value_w - mv);
        var += (s.at_s - mt) * (s.at_s - mt);
    }
    if var > 0.0 { cov / var } else { 0.0 }
}

/// Sum of latest readings, the mean age of those readings beyond the averaging centre, the
/// sensor variance and the rating of devices never heard from.
struct LatestStats {
    sum_w: f64,
    lag_s: f64,
    sensor_var: f64,
    unknown_w: f64,
    /// Moves still possible towards commands sent after (or settling after) the latest
    /// readings, downwards and upwards, W (both >= 0).
    pending_down_w: f64,
    pending_up_w: f64,
}

/// How far a device may still move, from its latest reading, towards the target of a
/// command that it may not have finished following when the reading was taken.
fn pending_move(d: &DeviceView, models: &[ResponseModel], now_s: f64) -> f64 {
    match (d.latest, d.command) {
        (Some(s), Some(c)) if c.at_s <= now_s && s.at_s < c.at_s + models[d.class].settle_s() => {
            c.target_w - s.value_w
        }
        _ => 0.0,
    }
}

fn latest_stats(params: &Params, devices: &[DeviceView], models: &[ResponseModel]) -> LatestStats {
    let (mut sum_w, mut age, mut n, mut sensor_var, mut unknown_w) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut pending_down_w, mut pending_up_w) = (0.0, 0.0);
    for d in devices {
        let p = pending_move(d, models, params.now_s);
        if p > 0.0 {
            pending_up_w += p;
        } else {
            pending_down_w -= p;
        }
        match d.latest {
            Some(s) => {
                sum_w += s.value_w;
                age += (params.now_s - s.at_s).max(0.0);
                n += 1.0;
                sensor_var += (params.sensor_error * d.rated_w).powi(2);
            }
            None => unknown_w += d.rated_w,
        }
    }
    let mean_age = if n > 0.0 { age / n } else { 0.0 };
    LatestStats {
        sum_w,
        lag_s: (mean_age - params.averaging_s / 2.0).max(0.0),
        sensor_var,
        unknown_w,
        pending_down_w,
        pending_up_w,
    }
}

fn latest_sum(
    params: &Params,
    devices: &[DeviceView],
    models: &[ResponseModel],
    history: &[Sample],
) -> Estimate {
    let st = latest_stats(params, devices, models);
    let ramp = smoothed_ramp(history, params.now_s, params.read_interval_s);
    // The sum lags by `lag_s`: the truth is probably `ramp * lag` away, in the ramp's
    // direction; and devices commanded since their reading may be anywhere between the
    // reading and the target.
    let drift = ramp * st.lag_s;
    let noise = 2.0 * st.sensor_var.sqrt();
    let v = st.sum_w;
    Estimate::with_band(
        params.now_s,
        v,
        v.min(v + drift) - st.pending_down_w - noise - st.unknown_w,
        v.max(v + drift) + st.pending_up_w + noise + st.unknown_w,
    )
}

fn subset_latest(
    params: &Params,
    devices: &[DeviceView],
    models: &[ResponseModel],
    history: &[Sample],
) -> Estimate {
    let oldest = params.now_s - params.latency_s - params.subset_window_s;
    let total_rated: f64 = devices.iter().map(|d| d.rated_w).sum();
    let (mut sum_w, mut rated_w, mut n, mut sum_x, mut sum_x2, mut age) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for d in devices {
        if let Some(s) = d.latest.filter(|s| s.at_s >= oldest) {
            sum_w += s.value_w;
            rated_w += d.rated_w;
            let x = s.value_w / d.rated_w;
            n += 1.0;
            sum_x += x;
            sum_x2 += x * x;
            age += (params.now_s - s.at_s).max(0.0);
        }
    }
    if n < 1.0 || rated_w <= 0.0 {
        // Nobody reported within the window: the best available is the plain sum.
        return latest_sum(params, devices, models, history);
    }
    let v = sum_w * total_rated / rated_w;
    // The fresh devices are a sample of the group: the spread of their per-rating values
    // says how far the scaled sum may be from the group's, with the finite-population
    // correction (everyone reported: no sampling error).
    let mean_x = sum_x / n;
    let var_x = if n > 1.0 {
        ((sum_x2 - n * mean_x * mean_x) / (n - 1.0)).max(0.0)
    } else {
        0.25
    };
    let fpc = (1.0 - n / devices.len() as f64).max(0.0);
    let sampling = total_rated * (var_x / n * fpc).sqrt();
    let sensor = total_rated * params.sensor_error / n.sqrt();
    let ramp = smoothed_ramp(history, params.now_s, params.read_interval_s);
    let drift = ramp * (age / n - params.averaging_s / 2.0).max(0.0);
    let noise = 2.0 * (sampling * sampling + sensor * sensor).sqrt();
    // The scaling is a guess; what the readings and the commands bound is the band of the
    // plain sum, so the band covers both.
    let plain = latest_sum(params, devices, models, history);
    Estimate::with_band(
        params.now_s,
        v,
        (v.min(v + drift) - noise).min(plain.low_w),
        (v.max(v + drift) + noise).max(plain.high_w),
    )
}

fn ramp_adjusted(
    params: &Params,
    devices: &[DeviceView],
    models: &[ResponseModel],
    history: &[Sample],
) -> Estimate {
    let st = latest_stats(params, devices, models);
    let ramp = smoothed_ramp(history, params.now_s, params.read_interval_s);
    let v = st.sum_w + ramp * st.lag_s;
    // The adjustment is right only while the ramp holds: allow half of it either way, and
    // never less than what the readings and the commands bound.
    let slack = 0.5 * (ramp * st.lag_s).abs() + 2.0 * st.sensor_var.sqrt() + st.unknown_w;
    let plain = latest_sum(params, devices, models, history);
    Estimate::with_band(
        params.now_s,
        v,
        (v - slack).min(plain.low_w),
        (v + slack).max(plain.high_w),
    )
}

fn timeshifted(params: &Params, devices: &[DeviceView]) -> Estimate {
    // One read interval plus latency ago every device that reports on time has a reading
    // after that instant, so each device's value there can be interpolated.
    let at = params.now_s - params.latency_s - params.read_interval_s;
    let (mut v, mut low, mut high, mut sensor_var, mut unknown_w) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for d in devices {
        let (value, lo, hi) = match (d.previous, d.latest) {
            (_, None) => {
                unknown_w += d.rated_w;
                continue;
            }
            (Some(p), Some(l)) if p.at_s <= at && at <= l.at_s && l.at_s > p.at_s => {
                // Between two readings a device following one command moves one way, at
                // an instant we do not know: it is somewhere between the two readings.
                let f = (at - p.at_s) / (l.at_s - p.at_s);
                let value = p.value_w + f * (l.value_w - p.value_w);
                (value, p.value_w.min(l.value_w), p.value_w.max(l.value_w))
            }
            (Some(p), Some(l)) if l.at_s > at && p.at_s > at => (p.value_w, p.value_w, p.value_w),
            (_, Some(l)) => (l.value_w, l.value_w, l.value_w),
        };
        v += value;
        low += lo;
        high += hi;
        sensor_var += (params.sensor_error * d.rated_w).powi(2);
    }
    let noise = 2.0 * sensor_var.sqrt() + unknown_w;
    Estimate::with_band(at, v, low - noise, high + noise)
}

/// Per class: the compliance rate to use for devices whose response is not yet visible:
/// the configured rate, updated with what the readings since the command show.
fn compliance_estimates(
    params: &Params,
    devices: &[DeviceView],
    models: &[ResponseModel],
) -> Vec<(f64, f64)> {
    let mut followed = vec![0.0; models.len()];
    let mut seen = vec![0.0; models.len()];
    for d in devices {
        let (Some(c), Some(s)) = (d.command, d.latest) else {
            continue;
        };
        let m = &models[d.class];
        let gap = c.target_w - c.from_w;
        // Only devices that must have started if they comply say anything.
        if s.at_s < c.at_s
            || m.not_started(s.at_s - c.at_s) > 0.0
            || gap.abs() < moved_threshold(params, d)
        {
            continue;
        }
        seen[d.class] += 1.0;
        // Started at all counts: how far it got depends on its own delay.
        let moved = s.value_w - c.from_w;
        if moved.abs() >= moved_threshold(params, d) && moved.signum() == gap.signum() {
            followed[d.class] += 1.0;
        }
    }
    models
        .iter()
        .enumerate()
        .map(|(k, m)| {
            let w = params.compliance_prior_weight;
            let n = w + seen[k];
            let rate = if n > 0.0 {
                (w * m.compliance + followed[k]) / n
            } else {
                m.compliance
            };
            (rate, rate * (1.0 - rate) / (n + 1.0))
        })
        .collect()
}

/// Movement smaller than this (W) is not told apart from sensor noise.
fn moved_threshold(params: &Params, d: &DeviceView) -> f64 {
    (3.0 * params.sensor_error * d.rated_w).max(1e-6 * d.rated_w)
}

fn schedule_aware(params: &Params, devices: &[DeviceView], models: &[ResponseModel]) -> Estimate {
    let rates = compliance_estimates(params, devices, models);
    let now = params.now_s;
    let (mut v, mut var, mut unknown_w) = (0.0, 0.0, 0.0);
    // Expected still-pending movement per class, for the uncertainty of the rate itself.
    let mut pending = vec![0.0; models.len()];
    for d in devices {
        let m = &models[d.class];
        let (rate, _) = rates[d.class];
        let sensor_var = (params.sensor_error * d.rated_w).powi(2);
        let (Some(s), cmd) = (d.latest, d.command) else {
            // Never heard from: assume it does what it was told, but it could be anywhere.
            if let Some(c) = d.command {
                v += c.from_w
                    + (c.target_w - c.from_w) * rate * m.progress(now - c.at_s, params.averaging_s);
            }
            unknown_w += d.rated_w;
            continue;
        };
        let Some(c) = cmd.filter(|c| c.at_s <= now) else {
            v += s.value_w;
            var += sensor_var;
            continue;
        };
        let g_now = m.progress(now - c.at_s, params.averaging_s);
        if s.at_s < c.at_s {
            // Nothing seen since the command: move from the reading by the expected share.
            let gap = c.target_w - s.value_w;
            v += s.value_w + gap * rate * g_now;
            var += gap * gap * g_now * g_now * rate * (1.0 - rate) + sensor_var;
            pending[d.class] += gap * g_now;
            continue;
        }
        let tau_r = s.at_s - c.at_s;
        let g_r = m.progress(tau_r, 0.0);
        let remaining = c.target_w - s.value_w;
        let gap = c.target_w - c.from_w;
        if gap.abs() < moved_threshold(params, d) {
            // Nothing to move: it is where its reading says.
            v += s.value_w;
            var += sensor_var;
            continue;
        }
        if g_r >= 1.0 - 1e-9 {
            // Settled: it ended where its reading says, and while the averaging window
            // still covers the move the average follows the expected path there.
            let g = m.progress(now - c.at_s, params.averaging_s);
            v += c.from_w + (s.value_w - c.from_w) * g;
            var += sensor_var;
            continue;
        }
        let moved = (s.value_w - c.from_w).abs() >= moved_threshold(params, d)
            && (s.value_w - c.from_w).signum() == gap.signum();
        if moved {
            // A device seen moving complies, and how far it has got says when it started:
            // follow its own ramp from there.
            let p_r = ((s.value_w - c.from_w) / gap).clamp(0.0, 1.0);
            let started = s.at_s - p_r * m.ramp_s;
            v += c.from_w + gap * ramp_average(now, started, m.ramp_s, params.averaging_s);
            var += sensor_var;
            continue;
        }
        // Not moving yet: either it has not started (it will, after a delay now known to
        // be at least `tau_r`) or it ignores the command.
        let ns = rate * m.not_started(tau_r);
        let w = if ns + (1.0 - rate) > 0.0 {
            ns / (ns + 1.0 - rate)
        } else {
            0.0
        };
        let later_start = m.delay_s.max(tau_r);
        let conditional = ResponseModel {
            delay_s: later_start,
            delay_jitter_s: (m.delay_s + m.delay_jitter_s - later_start).max(0.0),
            ..*m
        };
        let g = conditional.progress(now - c.at_s, params.averaging_s);
        v += s.value_w + remaining * w * g;
        var += remaining * remaining * g * g * w * (1.0 - w) + sensor_var;
        pending[d.class] += remaining * g;
    }
    let rate_var: f64 = pending
        .iter()
        .zip(&rates)
        .map(|(p, (_, rv))| p * p * rv)
        .sum();
    let half = 2.0 * (var + rate_var).sqrt() + unknown_w;
    Estimate::with_band(now, v, v - half, v + half)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(latest: Option<Sample>, command: Option<Command>) -> DeviceView {
        DeviceView {
            rated_w: 1000.0,
            class: 0,
            previous: None,
            latest,
            command,
        }
    }

    fn s(at_s: f64, value_w: f64) -> Sample {
        Sample { at_s, value_w }
    }

    const STEP: ResponseModel = ResponseModel {
        delay_s: 0.0,
        delay_jitter_s: 0.0,
        ramp_s: 2.0,
        compliance: 1.0,
    };

    fn params(now: f64) -> Params {
        Params {
            averaging_s: 0.0,
            ..Params::for_interval(now, 10.0)
        }
    }

    #[test]
    fn latest_sum_adds_latest_readings_and_widens_for_silent_devices() {
        let devices = [
            dev(Some(s(1.0, 300.0)), None),
            dev(Some(s(5.0, 200.0)), None),
            dev(None, None),
        ];
        let e = estimate(
            EstimatorKind::LatestSum,
            &params(6.0),
            &devices,
            &[STEP],
            &[],
        )
        .unwrap();
        assert_eq!(e.value_w, 500.0);
        assert_eq!((e.low_w, e.high_w), (-500.0, 1500.0));
    }

    #[test]
    fn bands_reach_the_target_of_commands_not_yet_visible_in_readings() {
        // Commanded to 1000 W after its 0 W reading: the truth is somewhere in 0..=1000.
        let cmd = Command {
            at_s: 5.0,
            from_w: 0.0,
            target_w: 1000.0,
        };
        let devices = [
            dev(Some(s(4.0, 0.0)), Some(cmd)),
            dev(Some(s(4.0, 200.0)), None),
        ];
        for k in [
            EstimatorKind::LatestSum,
            EstimatorKind::SubsetLatest,
            EstimatorKind::RampAdjusted,
        ] {
            let e = estimate(k, &params(6.0), &devices, &[STEP], &[]).unwrap();
            assert!(e.low_w <= 200.0 && e.high_w >= 1200.0, "{k}: {e:?}");
        }
        // Once a reading after settling arrives, nothing is pending.
        let settled = [dev(Some(s(8.0, 1000.0)), Some(cmd))];
        let e = estimate(
            EstimatorKind::LatestSum,
            &params(9.0),
            &settled,
            &[STEP],
            &[],
        )
        .unwrap();
        assert_eq!((e.low_w, e.value_w, e.high_w), (1000.0, 1000.0, 1000.0));
    }

    #[test]
    fn subset_latest_scales_fresh_devices_to_the_group() {
        // Two of four devices reported within the 2.5 s window: 400 W on 2 kW rated.
        let devices = [
            dev(Some(s(9.0, 100.0)), None),
            dev(Some(s(8.0, 300.0)), None),
            dev(Some(s(1.0, 900.0)), None),
            dev(Some(s(2.0, 900.0)), None),
        ];
        let e = estimate(
            EstimatorKind::SubsetLatest,
            &params(10.0),
            &devices,
            &[STEP],
            &[],
        )
        .unwrap();
        assert_eq!(e.value_w, 800.0);
        assert!(
            e.low_w < 800.0 && e.high_w > 800.0,
            "sampling uncertainty: {e:?}"
        );
    }

    #[test]
    fn ramp_adjusted_adds_the_ramp_times_the_lag() {
        // The sum rose 100 W/s over the last interval; readings are on average 4.5 s old.
        let history: Vec<Sample> = (0..=10).map(|k| s(k as f64, 100.0 * k as f64)).collect();
        let devices = [
            dev(Some(s(5.5, 500.0)), None),
            dev(Some(s(5.5, 500.0)), None),
        ];
        let e = estimate(
            EstimatorKind::RampAdjusted,
            &params(10.0),
            &devices,
            &[STEP],
            &history,
        )
        .unwrap();
        assert!((e.value_w - (1000.0 + 100.0 * 4.5)).abs() < 1e-6, "{e:?}");
    }

    #[test]
    fn timeshifted_interpolates_one_interval_back() {
        let mut d = dev(Some(s(8.0, 1000.0)), None);
        d.previous = Some(s(-2.0, 0.0));
        let e = estimate(
            EstimatorKind::Timeshifted,
            &params(10.0),
            &[d],
            &[STEP],
            &[],
        )
        .unwrap();
        assert_eq!(e.at_s, 0.0);
        assert!((e.value_w - 200.0).abs() < 1e-9);
    }

    #[test]
    fn schedule_aware_follows_the_command_before_any_reading_shows_it() {
        let cmd = Command {
            at_s: 0.0,
            from_w: 0.0,
            target_w: 1000.0,
        };
        let devices = [
            dev(Some(s(-3.0, 0.0)), Some(cmd)),
            dev(Some(s(-7.0, 0.0)), Some(cmd)),
        ];
        let p = params(1.0);
        let e = estimate(EstimatorKind::ScheduleAware, &p, &devices, &[STEP], &[]).unwrap();
        assert!(
            (e.value_w - 1000.0).abs() < 1e-9,
            "half-way through a 2 s ramp: {e:?}"
        );
        let l = estimate(EstimatorKind::LatestSum, &p, &devices, &[STEP], &[]).unwrap();
        assert_eq!(l.value_w, 0.0);
    }

    #[test]
    fn schedule_aware_trusts_a_settled_reading_over_the_command() {
        // The reading after the ramp shows the device ignored the command.
        let cmd = Command {
            at_s: 0.0,
            from_w: 0.0,
            target_w: 1000.0,
        };
        let devices = [dev(Some(s(5.0, 0.0)), Some(cmd))];
        let e = estimate(
            EstimatorKind::ScheduleAware,
            &params(6.0),
            &devices,
            &[STEP],
            &[],
        )
        .unwrap();
        assert_eq!(e.value_w, 0.0);
    }

    #[test]
    fn schedule_aware_learns_compliance_from_readings() {
        // Ten devices reported after settling: half ignored the command. The configured
        // rate says everyone complies; the pending device's expectation must drop.
        let cmd = Command {
            at_s: 0.0,
            from_w: 0.0,
            target_w: 1000.0,
        };
        let mut devices: Vec<DeviceView> = (0..10)
            .map(|k| {
                dev(
                    Some(s(3.0, if k % 2 == 0 { 1000.0 } else { 0.0 })),
                    Some(cmd),
                )
            })
            .collect();
        devices.push(dev(Some(s(-1.0, 0.0)), Some(cmd)));
        let mut p = params(10.0);
        p.compliance_prior_weight = 10.0;
        let e = estimate(EstimatorKind::ScheduleAware, &p, &devices, &[STEP], &[]).unwrap();
        // 5000 W seen, plus the pending device at (10 * 1 + 5) / 20 = 0.75.
        assert!((e.value_w - 5750.0).abs() < 1e-6, "{e:?}");
        assert!(e.low_w < e.value_w && e.high_w > e.value_w);
    }

    #[test]
    fn schedule_aware_completes_a_ramp_seen_half_way() {
        let cmd = Command {
            at_s: 0.0,
            from_w: 0.0,
            target_w: 1000.0,
        };
        let devices = [dev(Some(s(1.0, 500.0)), Some(cmd))];
        let e = estimate(
            EstimatorKind::ScheduleAware,
            &params(1.5),
            &devices,
            &[STEP],
            &[],
        )
        .unwrap();
        assert!((e.value_w - 750.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn bad_inputs_are_refused() {
        let ok = [dev(Some(s(0.0, 1.0)), None)];
        let k = EstimatorKind::LatestSum;
        let mut bad_class = ok;
        bad_class[0].class = 3;
        assert_eq!(
            estimate(k, &params(1.0), &bad_class, &[STEP], &[]),
            Err(AggregationError::UnknownClass {
                device: 0,
                class: 3,
                classes: 1
            })
        );
        let nan = [dev(Some(s(0.0, f64::NAN)), None)];
        assert!(matches!(
            estimate(k, &params(1.0), &nan, &[STEP], &[]),
            Err(AggregationError::NotFinite { device: 0, .. })
        ));
        let mut zero = ok;
        zero[0].rated_w = 0.0;
        assert_eq!(
            estimate(k, &params(1.0), &zero, &[STEP], &[]),
            Err(AggregationError::InvalidRating { device: 0 })
        );
        let p = Params {
            read_interval_s: 0.0,
            ..params(1.0)
        };
        assert_eq!(
            estimate(k, &p, &ok, &[STEP], &[]),
            Err(AggregationError::InvalidParam("read_interval_s"))
        );
        let bad_model = ResponseModel {
            compliance: 2.0,
            ..STEP
        };
        assert_eq!(
            estimate(k, &params(1.0), &ok, &[bad_model], &[]),
            Err(AggregationError::InvalidModel(0))
        );
        assert!(matches!(
            "median".parse::<EstimatorKind>(),
            Err(AggregationError::UnknownEstimator(_))
        ));
        assert_eq!(
            "schedule-aware".parse::<EstimatorKind>(),
            Ok(EstimatorKind::ScheduleAware)
        );
    }
}
