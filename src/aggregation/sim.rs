//! Monte Carlo simulator of a dispatched portfolio and its virtual meter.
//!
//! A portfolio of `assets` identical devices of `asset_kw` sits at 0 W; Switchyard commands
//! each to full output, all at once (simultaneous) or spread evenly so that the aggregate
//! ramps over `T` seconds (staggered). Each device follows the response model of its
//! class (delay, jitter, its own ramp) unless it is non-compliant, in which case it stays
//! at 0 W. Device meters sample instantaneous power every `read_s` seconds at a random
//! phase, with optional Gaussian sensor error, and the samples reach Switchyard `latency_s`
//! later. At every step of `step_s` the simulator asks each estimator for the aggregate and
//! scores it against the truth: the average aggregate power over the last `averaging_s`
//! (what a reference meter at 1 s resolution records). Errors are in percent of portfolio
//! capacity; a run's maximum error is the largest over the whole event, and the reported
//! maximum is the mean of those over runs.
//!
//! Everything random comes from one seeded [`StdRng`] per grid cell, so a given seed and
//! configuration always give the same numbers.

use super::estimate::{Command, DeviceView, EstimatorKind, Params, Sample, estimate};
use super::response::{ResponseModel, ramp_average, unit_ramp};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::Serialize;
use std::fmt;

/// How the commands are spread over time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Ramp {
    /// Every device is commanded at once; the aggregate ramps as fast as one device.
    Simultaneous,
    /// Commands spread evenly so that the aggregate ramps over this many seconds.
    Staggered(f64),
}

impl Ramp {
    /// Duration of the aggregate ramp, seconds.
    pub fn duration_s(self, asset_ramp_s: f64) -> f64 {
        match self {
            Ramp::Simultaneous => asset_ramp_s,
            Ramp::Staggered(t) => t,
        }
    }
}

impl fmt::Display for Ramp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ramp::Simultaneous => f.write_str("simultaneous"),
            Ramp::Staggered(t) => write!(f, "staggered:{t}"),
        }
    }
}

impl std::str::FromStr for Ramp {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "simultaneous" {
            return Ok(Ramp::Simultaneous);
        }
        s.strip_prefix("staggered:")
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(Ramp::Staggered)
            .ok_or_else(|| SimError::BadRamp(s.to_string()))
    }
}

/// Why a simulation cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("ramp {0:?} is not `simultaneous` or `staggered:T` with T > 0 seconds")]
    BadRamp(String),
    #[error("{0} must be a finite number > 0")]
    NotPositive(&'static str),
    #[error("{0} must be a finite number >= 0")]
    Negative(&'static str),
    #[error("{0} must be between 0 and 1")]
    NotAFraction(&'static str),
    #[error("staggered ramp of {ramp_s} s is shorter than one device's ramp of {asset_ramp_s} s")]
    StaggerTooShort { ramp_s: f64, asset_ramp_s: f64 },
    #[error("nothing to simulate: {0} is empty")]
    Empty(&'static str),
    #[error("the simulation would take {0} steps; use a larger step or fewer seconds")]
    TooManySteps(usize),
}

/// One cell's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    pub assets: usize,
    pub asset_kw: f64,
    pub read_s: f64,
    pub latency_s: f64,
    pub ramp: Ramp,
    /// One device's ramp, seconds (the study's simultaneous dispatch: 2 s).
    pub asset_ramp_s: f64,
    /// Fixed response delay of every device after a command, seconds.
    pub delay_s: f64,
    /// Extra response delay, uniform in `[0, delay_jitter_s]` per device, seconds.
    pub delay_jitter_s: f64,
    /// Share of devices that ignore the command.
    pub non_compliance: f64,
    /// Compliance rate the schedule-aware estimator is configured with; `None`: the
    /// true rate `1 - non_compliance`.
    pub assumed_compliance: Option<f64>,
    /// Standard deviation of each reading's error, fraction of the device rating.
    pub sensor_error: f64,
    /// Weight, in devices, of the assumed compliance rate against the compliance seen in
    /// readings (schedule-aware).
    pub compliance_prior_weight: f64,
    pub averaging_s: f64,
    pub step_s: f64,
    pub runs: usize,
    pub seed: u64,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            assets: 1000,
            asset_kw: 5.0,
            read_s: 10.0,
            latency_s: 0.0,
            ramp: Ramp::Simultaneous,
            asset_ramp_s: 2.0,
            delay_s: 0.0,
            delay_jitter_s: 0.0,
            non_compliance: 0.0,
            assumed_compliance: None,
            sensor_error: 0.0,
            compliance_prior_weight: 200.0,
            averaging_s: 1.0,
            step_s: 0.5,
            runs: 20,
            seed: 1,
        }
    }
}

const MAX_STEPS: usize = 2_000_000;

impl Scenario {
    pub fn validate(&self) -> Result<(), SimError> {
        let pos = |v: f64, name| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(SimError::NotPositive(name))
            }
        };
        let nonneg = |v: f64, name| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(SimError::Negative(name))
            }
        };
        let frac = |v: f64, name| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(SimError::NotAFraction(name))
            }
        };
        if self.assets == 0 {
            return Err(SimError::NotPositive("assets"));
        }
        if self.runs == 0 {
            return Err(SimError::NotPositive("runs"));
        }
        pos(self.asset_kw, "asset kW")?;
        pos(self.read_s, "read interval")?;
        pos(self.step_s, "step")?;
        nonneg(self.latency_s, "latency")?;
        nonneg(self.asset_ramp_s, "asset ramp")?;
        nonneg(self.delay_s, "delay")?;
        nonneg(self.delay_jitter_s, "delay jitter")?;
        nonneg(self.sensor_error, "sensor error")?;
        nonneg(self.averaging_s, "averaging")?;
        nonneg(self.compliance_prior_weight, "compliance prior weight")?;
        frac(self.non_compliance, "non-compliance")?;
        if let Some(c) = self.assumed_compliance {
            frac(c, "assumed compliance")?;
        }
        if let Ramp::Staggered(t) = self.ramp {
            pos(t, "staggered ramp")?;
            if t < self.asset_ramp_s {
                return Err(SimError::StaggerTooShort {
                    ramp_s: t,
                    asset_ramp_s: self.asset_ramp_s,
                });
            }
        }
        let steps = ((self.end_s() - self.start_s()) / self.step_s).ceil() as usize + 1;
        if steps > MAX_STEPS {
            return Err(SimError::TooManySteps(steps));
        }
        Ok(())
    }

    fn start_s(&self) -> f64 {
        -2.0
    }

    /// Late enough that every device has settled and reported twice since, so even the
    /// timeshifted view has caught up.
    fn end_s(&self) -> f64 {
        let ramp_end = self.ramp.duration_s(self.asset_ramp_s) + self.delay_s + self.delay_jitter_s;
        ramp_end + 2.0 * (self.read_s + self.latency_s) + self.averaging_s + 2.0
    }

    fn model(&self) -> ResponseModel {
        ResponseModel {
            delay_s: self.delay_s,
            delay_jitter_s: self.delay_jitter_s,
            ramp_s: self.asset_ramp_s,
            compliance: self.assumed_compliance.unwrap_or(1.0 - self.non_compliance),
        }
    }

    /// Seconds after the start at which device `i` of `n` is commanded.
    fn command_at(&self, i: usize) -> f64 {
        match self.ramp {
            Ramp::Simultaneous => 0.0,
            Ramp::Staggered(t) => (i as f64 + 0.5) * (t - self.asset_ramp_s) / self.assets as f64,
        }
    }
}

/// One estimator's score in one cell.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EstimatorScore {
    pub estimator: EstimatorKind,
    /// Mean over runs of each run's maximum absolute error, % of capacity.
    pub max_error_pct: f64,
    /// Largest maximum error of any run, % of capacity.
    pub worst_error_pct: f64,
    /// Mean absolute error over the event (from the first command on) and runs, %.
    pub mean_error_pct: f64,
    /// Share of steps at which the truth lay inside the estimator's band, %.
    pub band_coverage_pct: f64,
    /// Mean width of the band over the event and runs, % of capacity.
    pub mean_band_pct: f64,
    /// Mean absolute error over runs at each step, % (the plotted trace).
    pub trace_pct: Vec<f64>,
}

/// The result of one cell.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CellResult {
    pub ramp: Ramp,
    pub ramp_s: f64,
    pub read_s: f64,
    pub start_s: f64,
    pub step_s: f64,
    pub scores: Vec<EstimatorScore>,
}

/// The DNV study's published maximum error of aggregate metering (`latest-sum`), % of
/// capacity, for its grid of ramps and read intervals.
pub fn published_latest_sum(ramp: Ramp, read_s: f64) -> Option<f64> {
    let col = [10.0, 30.0, 60.0].iter().position(|r| *r == read_s)?;
    let row = match ramp {
        Ramp::Simultaneous => [81.0, 94.0, 96.0],
        Ramp::Staggered(60.0) => [7.8, 25.0, 50.0],
        Ramp::Staggered(120.0) => [4.0, 12.6, 25.0],
        Ramp::Staggered(_) => return None,
    };
    Some(row[col])
}

/// The study grid: simultaneous (2 s), 1-minute and 2-minute staggered ramps, each with 10,
/// 30 and 60 s read intervals.
pub fn study_grid() -> Vec<(Ramp, f64)> {
    let ramps = [
        Ramp::Simultaneous,
        Ramp::Staggered(60.0),
        Ramp::Staggered(120.0),
    ];
    ramps
        .iter()
        .flat_map(|r| [10.0, 30.0, 60.0].map(|s| (*r, s)))
        .collect()
}

/// A standard normal draw (Box-Muller; rand 0.10 has no normal distribution without the
/// rand_distr crate, and one formula does not justify a dependency).
fn normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// One device in the simulation: what it really does and what its meter has reported.
struct SimDevice {
    /// When it starts moving (command + delay + jitter); `None`: it ignores the command.
    starts_at: Option<f64>,
    next_read_s: f64,
    previous: Option<Sample>,
    latest: Option<Sample>,
    command_at: f64,
}

/// Run one cell: every estimator in `estimators`, `runs` times.
pub fn run_cell(sc: &Scenario, estimators: &[EstimatorKind]) -> Result<CellResult, SimError> {
    sc.validate()?;
    if estimators.is_empty() {
        return Err(SimError::Empty("the estimator list"));
    }
    let mut rng = StdRng::seed_from_u64(sc.seed);
    let rated = sc.asset_kw * 1000.0;
    let capacity = rated * sc.assets as f64;
    let model = sc.model();
    let models = [model];
    let (start, end) = (sc.start_s(), sc.end_s());
    let steps = ((end - start) / sc.step_s).ceil() as usize + 1;
    let n_est = estimators.len();
    let mut max_sum = vec![0.0; n_est];
    let mut worst = vec![0.0f64; n_est];
    let mut err_sum = vec![0.0; n_est];
    let mut err_count = 0usize;
    let mut covered = vec![0usize; n_est];
    let mut band_sum = vec![0.0; n_est];
    let mut trace = vec![vec![0.0; steps]; n_est];
    let mut views: Vec<DeviceView> = Vec::with_capacity(sc.assets);
    let mut history: Vec<Sample> = Vec::with_capacity(steps);

    for _run in 0..sc.runs {
        let mut devices: Vec<SimDevice> = (0..sc.assets)
            .map(|i| {
                let phase = rng.random::<f64>() * sc.read_s;
                let compliant = rng.random::<f64>() >= sc.non_compliance;
                let jitter = rng.random::<f64>() * sc.delay_jitter_s;
                let command_at = sc.command_at(i);
                // The first reading at or after the start, minus one interval: the
                // latest reading that has arrived by the start.
                let first =
                    phase + sc.read_s * ((start - sc.latency_s - phase) / sc.read_s).floor();
                SimDevice {
                    starts_at: compliant.then_some(command_at + sc.delay_s + jitter),
                    next_read_s: first,
                    previous: None,
                    latest: None,
                    command_at,
                }
            })
            .collect();
        let power = |d: &SimDevice, t: f64| match d.starts_at {
            Some(t0) => rated * unit_ramp(t - t0, sc.asset_ramp_s),
            None => 0.0,
        };
        let truth = |devs: &[SimDevice], t: f64| -> f64 {
            devs.iter()
                .map(|d| match d.starts_at {
                    Some(t0) => rated * ramp_average(t, t0, sc.asset_ramp_s, sc.averaging_s),
                    None => 0.0,
                })
                .sum()
        };
        history.clear();
        let mut run_max = vec![0.0f64; n_est];
        for (k, _) in (0..steps).enumerate() {
            let t = start + k as f64 * sc.step_s;
            views.clear();
            let mut latest_sum = 0.0;
            for d in devices.iter_mut() {
                while d.next_read_s <= t - sc.latency_s {
                    let at = d.next_read_s;
                    let noise = if sc.sensor_error > 0.0 {
                        normal(&mut rng) * sc.sensor_error * rated
                    } else {
                        0.0
                    };
                    d.previous = d.latest;
                    d.latest = Some(Sample {
                        at_s: at,
                        value_w: power(d, at) + noise,
                    });
                    d.next_read_s += sc.read_s;
                }
                latest_sum += d.latest.map_or(0.0, |s| s.value_w);
                views.push(DeviceView {
                    rated_w: rated,
                    class: 0,
                    previous: d.previous,
                    latest: d.latest,
                    command: (d.command_at <= t).then_some(Command {
                        at_s: d.command_at,
                        from_w: 0.0,
                        target_w: rated,
                    }),
                });
            }
            history.push(Sample {
                at_s: t,
                value_w: latest_sum,
            });
            let params = Params {
                latency_s: sc.latency_s,
                averaging_s: sc.averaging_s,
                sensor_error: sc.sensor_error,
                compliance_prior_weight: sc.compliance_prior_weight,
                ..Params::for_interval(t, sc.read_s)
            };
            let hist_from = history.partition_point(|s| s.at_s < t - sc.read_s - sc.step_s);
            let truth_now = truth(&devices, t);
            for (e, kind) in estimators.iter().enumerate() {
                let est = estimate(*kind, &params, &views, &models, &history[hist_from..])
                    .expect("the simulator builds valid inputs");
                let real = if est.at_s == t {
                    truth_now
                } else {
                    truth(&devices, est.at_s)
                };
                let err = (est.value_w - real).abs() / capacity * 100.0;
                run_max[e] = run_max[e].max(err);
                trace[e][k] += err / sc.runs as f64;
                if t >= 0.0 {
                    err_sum[e] += err;
                    band_sum[e] += (est.high_w - est.low_w) / capacity * 100.0;
                }
                // Rounding in sums over thousands of devices is not an error of the band.
                let tol = 1e-9 * capacity;
                if est.low_w - tol <= real && real <= est.high_w + tol {
                    covered[e] += 1;
                }
            }
            if t >= 0.0 {
                err_count += 1;
            }
        }
        for e in 0..n_est {
            max_sum[e] += run_max[e];
            worst[e] = worst[e].max(run_max[e]);
        }
    }
    let scores = estimators
        .iter()
        .enumerate()
        .map(|(e, kind)| EstimatorScore {
            estimator: *kind,
            max_error_pct: max_sum[e] / sc.runs as f64,
            worst_error_pct: worst[e],
            mean_error_pct: err_sum[e] / err_count.max(1) as f64,
            band_coverage_pct: covered[e] as f64 * 100.0 / (steps * sc.runs) as f64,
            mean_band_pct: band_sum[e] / err_count.max(1) as f64,
            trace_pct: std::mem::take(&mut trace[e]),
        })
        .collect();
    Ok(CellResult {
        ramp: sc.ramp,
        ramp_s: sc.ramp.duration_s(sc.asset_ramp_s),
        read_s: sc.read_s,
        start_s: start,
        step_s: sc.step_s,
        scores,
    })
}

/// Run a grid of (ramp, read interval) cells on top of `base`. Each cell gets its own
/// seed derived from `base.seed` and its position, so a cell's numbers do not depend on
/// which other cells run.
pub fn run_grid(
    base: &Scenario,
    cells: &[(Ramp, f64)],
    estimators: &[EstimatorKind],
) -> Result<Vec<CellResult>, SimError> {
    if cells.is_empty() {
        return Err(SimError::Empty("the grid"));
    }
    cells
        .iter()
        .map(|(ramp, read_s)| {
            let sc = Scenario {
                ramp: *ramp,
                read_s: *read_s,
                seed: cell_seed(base.seed, *ramp, *read_s),
                ..base.clone()
            };
            run_cell(&sc, estimators)
        })
        .collect()
}

/// A seed for one cell, stable across runs and independent of the grid's order.
fn cell_seed(seed: u64, ramp: Ramp, read_s: f64) -> u64 {
    let r = match ramp {
        Ramp::Simultaneous => 0u64,
        Ramp::Staggered(t) => t.to_bits(),
    };
    // SplitMix64-style mixing so nearby cells get unrelated streams.
    let mut z = seed ^ r.rotate_left(17) ^ read_s.to_bits().rotate_left(41);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(ramp: Ramp, read_s: f64) -> Scenario {
        Scenario {
            assets: 200,
            runs: 2,
            ramp,
            read_s,
            step_s: 1.0,
            ..Scenario::default()
        }
    }

    #[test]
    fn same_seed_same_numbers_other_seed_other_numbers() {
        let sc = small(Ramp::Staggered(60.0), 30.0);
        let a = run_cell(&sc, &[EstimatorKind::LatestSum]).unwrap();
        let b = run_cell(&sc, &[EstimatorKind::LatestSum]).unwrap();
        assert_eq!(a, b);
        let c = run_cell(&Scenario { seed: 2, ..sc }, &[EstimatorKind::LatestSum]).unwrap();
        assert_ne!(a.scores[0].max_error_pct, c.scores[0].max_error_pct);
    }

    #[test]
    fn ramps_parse_and_print() {
        assert_eq!("simultaneous".parse::<Ramp>(), Ok(Ramp::Simultaneous));
        assert_eq!("staggered:60".parse::<Ramp>(), Ok(Ramp::Staggered(60.0)));
        assert_eq!(Ramp::Staggered(60.0).to_string(), "staggered:60");
        for bad in [
            "staggered",
            "staggered:-5",
            "staggered:x",
            "gradual",
            "staggered:inf",
        ] {
            assert_eq!(bad.parse::<Ramp>(), Err(SimError::BadRamp(bad.into())));
        }
    }

    #[test]
    fn bad_scenarios_are_refused() {
        let ok = small(Ramp::Simultaneous, 10.0);
        let cases = [
            (
                Scenario {
                    assets: 0,
                    ..ok.clone()
                },
                SimError::NotPositive("assets"),
            ),
            (
                Scenario {
                    runs: 0,
                    ..ok.clone()
                },
                SimError::NotPositive("runs"),
            ),
            (
                Scenario {
                    read_s: 0.0,
                    ..ok.clone()
                },
                SimError::NotPositive("read interval"),
            ),
            (
                Scenario {
                    asset_kw: f64::NAN,
                    ..ok.clone()
                },
                SimError::NotPositive("asset kW"),
            ),
            (
                Scenario {
                    latency_s: -1.0,
                    ..ok.clone()
                },
                SimError::Negative("latency"),
            ),
            (
                Scenario {
                    non_compliance: 1.2,
                    ..ok.clone()
                },
                SimError::NotAFraction("non-compliance"),
            ),
            (
                Scenario {
                    ramp: Ramp::Staggered(1.0),
                    ..ok.clone()
                },
                SimError::StaggerTooShort {
                    ramp_s: 1.0,
                    asset_ramp_s: 2.0,
                },
            ),
            (
                Scenario {
                    step_s: 1e-6,
                    ..ok.clone()
                },
                SimError::TooManySteps(27_000_001),
            ),
        ];
        for (sc, err) in cases {
            assert_eq!(run_cell(&sc, &[EstimatorKind::LatestSum]), Err(err));
        }
        assert_eq!(
            run_cell(&ok, &[]),
            Err(SimError::Empty("the estimator list"))
        );
        assert_eq!(
            run_grid(&ok, &[], &EstimatorKind::ALL),
            Err(SimError::Empty("the grid"))
        );
    }

    #[test]
    fn a_portfolio_at_rest_is_measured_exactly() {
        // Nobody complies: nothing moves, every estimator sees 0 W all along.
        let sc = Scenario {
            non_compliance: 1.0,
            ..small(Ramp::Simultaneous, 30.0)
        };
        let r = run_cell(&sc, &EstimatorKind::ALL).unwrap();
        for s in &r.scores {
            assert_eq!(s.max_error_pct, 0.0, "{:?}", s.estimator);
        }
    }
}
