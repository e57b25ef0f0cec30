//! The response model of a device class: how a device follows a setpoint command.
//!
//! After a command sent at `t_c`, a compliant device starts moving after `delay_s` plus a
//! random extra delay uniform in `[0, delay_jitter_s]` (communication and device latency),
//! then moves linearly to the target over `ramp_s`. A non-compliant device (probability
//! `1 - compliance`) ignores the command. [`ResponseModel::progress`] gives the expected
//! fraction of the move completed `tau` seconds after the command, optionally averaged over
//! a trailing window (the virtual meter reports average power over its resolution, as a
//! reference meter does). The averages are exact: they come from closed-form integrals of
//! the linear ramp, not from sampling.

use serde::{Deserialize, Serialize};

/// Below this a duration counts as zero (a step rather than a ramp, no jitter, no averaging).
const TINY_S: f64 = 1e-9;

/// How a class of devices responds to a setpoint command.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResponseModel {
    /// Fixed delay between sending a command and the device starting to move, seconds.
    pub delay_s: f64,
    /// Extra delay, uniform in `[0, delay_jitter_s]`, different for each device, seconds.
    pub delay_jitter_s: f64,
    /// Time a device takes to move linearly from where it was to the target, seconds.
    pub ramp_s: f64,
    /// Probability that a device follows a command at all (0..=1).
    pub compliance: f64,
}

impl Default for ResponseModel {
    fn default() -> Self {
        ResponseModel {
            delay_s: 0.0,
            delay_jitter_s: 0.0,
            ramp_s: 2.0,
            compliance: 1.0,
        }
    }
}

impl ResponseModel {
    /// True when every field is finite and in range.
    pub fn is_valid(&self) -> bool {
        [self.delay_s, self.delay_jitter_s, self.ramp_s]
            .iter()
            .all(|v| v.is_finite() && *v >= 0.0)
            && (0.0..=1.0).contains(&self.compliance)
    }

    /// Seconds after the command by which every compliant device has finished moving.
    pub fn settle_s(&self) -> f64 {
        self.delay_s + self.delay_jitter_s + self.ramp_s
    }

    /// Expected fraction (0..=1) of the move a compliant device has completed `tau` seconds
    /// after the command, averaged over the trailing window `[tau - avg_s, tau]`
    /// (`avg_s = 0`: the instantaneous value), over the delay jitter.
    pub fn progress(&self, tau: f64, avg_s: f64) -> f64 {
        let r = self.ramp_s.max(TINY_S);
        let x = tau - self.delay_s;
        let j = self.delay_jitter_s;
        let p = match (j > TINY_S, avg_s > TINY_S) {
            (true, true) => {
                (k2(x, r) - k2(x - j, r) - k2(x - avg_s, r) + k2(x - avg_s - j, r)) / (avg_s * j)
            }
            (false, true) => (k1(x, r) - k1(x - avg_s, r)) / avg_s,
            (true, false) => (k1(x, r) - k1(x - j, r)) / j,
            (false, false) => unit_ramp(x, r),
        };
        p.clamp(0.0, 1.0)
    }

    /// Probability that a compliant device has not started moving `tau` seconds after the
    /// command.
    pub fn not_started(&self, tau: f64) -> f64 {
        let x = tau - self.delay_s;
        if self.delay_jitter_s > TINY_S {
            (1.0 - x / self.delay_jitter_s).clamp(0.0, 1.0)
        } else if x < 0.0 {
            1.0
        } else {
            0.0
        }
    }
}

/// The unit ramp: 0 before 0, linear to 1 at `r`, 1 after.
pub fn unit_ramp(x: f64, r: f64) -> f64 {
    (x / r.max(TINY_S)).clamp(0.0, 1.0)
}

/// First integral of the unit ramp from minus infinity to `x`.
pub fn k1(x: f64, r: f64) -> f64 {
    if x <= 0.0 {
        0.0
    } else if x <= r {
        x * x / (2.0 * r)
    } else {
        r / 2.0 + (x - r)
    }
}

/// Second integral of the unit ramp (the integral of [`k1`]).
pub fn k2(x: f64, r: f64) -> f64 {
    if x <= 0.0 {
        0.0
    } else if x <= r {
        x * x * x / (6.0 * r)
    } else {
        let y = x - r;
        r * r / 6.0 + r * y / 2.0 + y * y / 2.0
    }
}

/// Average of the unit ramp started at `t0` over the window `[t - avg_s, t]`.
pub fn ramp_average(t: f64, t0: f64, r: f64, avg_s: f64) -> f64 {
    let r = r.max(TINY_S);
    if avg_s > TINY_S {
        (k1(t - t0, r) - k1(t - avg_s - t0, r)) / avg_s
    } else {
        unit_ramp(t - t0, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force expected progress: average the unit ramp over many jitter values and
    /// many points of the averaging window.
    fn numeric(m: &ResponseModel, tau: f64, avg: f64) -> f64 {
        let n = 400;
        let mut sum = 0.0;
        for a in 0..n {
            let delta = m.delay_jitter_s * (a as f64 + 0.5) / n as f64;
            for b in 0..n {
                let t = tau - avg * (b as f64 + 0.5) / n as f64;
                sum += unit_ramp(t - m.delay_s - delta, m.ramp_s);
            }
        }
        sum / (n * n) as f64
    }

    #[test]
    fn closed_form_progress_matches_brute_force() {
        let models = [
            ResponseModel {
                delay_s: 1.0,
                delay_jitter_s: 3.0,
                ramp_s: 2.0,
                compliance: 1.0,
            },
            ResponseModel {
                delay_s: 0.0,
                delay_jitter_s: 0.0,
                ramp_s: 2.0,
                compliance: 1.0,
            },
            ResponseModel {
                delay_s: 0.5,
                delay_jitter_s: 0.7,
                ramp_s: 10.0,
                compliance: 0.9,
            },
        ];
        for m in &models {
            for avg in [0.0, 1.0, 5.0] {
                for k in 0..60 {
                    let tau = -1.0 + k as f64 * 0.3;
                    let exact = m.progress(tau, avg);
                    let approx = numeric(m, tau, avg);
                    assert!(
                        (exact - approx).abs() < 5e-3,
                        "{m:?} tau {tau} avg {avg}: {exact} vs {approx}"
                    );
                }
            }
        }
    }

    #[test]
    fn progress_is_zero_before_the_delay_and_one_after_settling() {
        let m = ResponseModel {
            delay_s: 2.0,
            delay_jitter_s: 1.0,
            ramp_s: 4.0,
            compliance: 1.0,
        };
        assert_eq!(m.progress(1.9, 0.0), 0.0);
        assert_eq!(m.progress(m.settle_s() + 1.0, 1.0), 1.0);
        assert_eq!(m.not_started(1.0), 1.0);
        assert_eq!(m.not_started(3.5), 0.0);
        assert!((m.not_started(2.5) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn invalid_models_are_recognised() {
        let ok = ResponseModel::default();
        assert!(ok.is_valid());
        assert!(
            !ResponseModel {
                compliance: 1.5,
                ..ok
            }
            .is_valid()
        );
        assert!(
            !ResponseModel {
                ramp_s: f64::NAN,
                ..ok
            }
            .is_valid()
        );
        assert!(
            !ResponseModel {
                delay_s: -1.0,
                ..ok
            }
            .is_valid()
        );
    }
}
