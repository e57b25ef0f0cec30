//! What the allocator needs to know about a portfolio, in plain numbers: the time steps of
//! the window, each DER's rating and stored energy, each site's subscriber load and
//! self-consumption policy, and the limits in force for devices, sites, zones (transformers,
//! feeder sections) and the target group.
//!
//! Limits come from the envelope engine: [`FlowLimits::over_step`] and
//! [`DeviceLimits::over_step`] ask [`limits_in_force`] for every change within a step and
//! keep the most restrictive answer, so a limit that holds for one second of the step holds
//! for the whole of it. Powers are kW and energies kWh (envelopes are in W and Wh and are
//! converted here).

use crate::domain::EpochSeconds;
use crate::envelope::{Control, DefaultControl, InForce, Program, limits_in_force};

/// Limits on the net power flow through a connection point (a site, a zone, the group), kW.
/// `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FlowLimits {
    /// The most the point may send to the grid.
    pub export_kw: Option<f64>,
    /// The most the point may draw from the grid.
    pub import_kw: Option<f64>,
}

/// Limits on one device, kW and kWh. `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeviceLimits {
    /// The most the device may generate or discharge (opModMaxLimW and opModGenLimW).
    pub discharge_kw: Option<f64>,
    /// The most the device may consume or charge (opModLoadLimW).
    pub charge_kw: Option<f64>,
    /// A stored-energy floor (setMinWh-like reserve).
    pub reserve_kwh: Option<f64>,
    /// `false` when an envelope disconnects or de-energizes the device.
    pub connected: bool,
}

impl Default for DeviceLimits {
    fn default() -> Self {
        DeviceLimits {
            discharge_kw: None,
            charge_kw: None,
            reserve_kwh: None,
            connected: true,
        }
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Every distinct answer of `limits_in_force` within `[start, end)`.
fn answers_over(
    programs: &[Program],
    controls: &[Control],
    defaults: &[DefaultControl],
    key: &str,
    seed: u64,
    start: EpochSeconds,
    end: EpochSeconds,
) -> Vec<InForce> {
    let mut out = Vec::new();
    let mut t = start;
    loop {
        let r = limits_in_force(programs, controls, defaults, key, seed, t);
        let next = r.next_change;
        out.push(r);
        match next {
            Some(n) if n < end && n > t => t = n,
            _ => break,
        }
    }
    out
}

impl FlowLimits {
    /// The limits of one in-force answer.
    pub fn from_in_force(r: &InForce) -> Self {
        FlowLimits {
            export_kw: r.exp_lim_w.as_ref().map(|s| s.value / 1000.0),
            import_kw: r.imp_lim_w.as_ref().map(|s| s.value / 1000.0),
        }
    }

    /// The most restrictive of two sets of limits.
    pub fn tightest(self, o: FlowLimits) -> FlowLimits {
        FlowLimits {
            export_kw: min_opt(self.export_kw, o.export_kw),
            import_kw: min_opt(self.import_kw, o.import_kw),
        }
    }

    /// The limits that hold at every instant of `[start, end)` for the site, zone or group
    /// `key`, from its envelopes (see [`limits_in_force`] for the arguments).
    pub fn over_step(
        programs: &[Program],
        controls: &[Control],
        defaults: &[DefaultControl],
        key: &str,
        seed: u64,
        start: EpochSeconds,
        end: EpochSeconds,
    ) -> Self {
        answers_over(programs, controls, defaults, key, seed, start, end)
            .iter()
            .map(FlowLimits::from_in_force)
            .reduce(FlowLimits::tightest)
            .unwrap_or_default()
    }
}

impl DeviceLimits {
    /// The limits of one in-force answer.
    pub fn from_in_force(r: &InForce) -> Self {
        let off = |s: &Option<crate::envelope::Sourced<bool>>| s.as_ref().is_some_and(|s| !s.value);
        DeviceLimits {
            discharge_kw: min_opt(
                r.max_lim_w.as_ref().map(|s| s.value / 1000.0),
                r.gen_lim_w.as_ref().map(|s| s.value / 1000.0),
            ),
            charge_kw: r.load_lim_w.as_ref().map(|s| s.value / 1000.0),
            reserve_kwh: r.min_wh.as_ref().map(|s| s.value / 1000.0),
            connected: !(off(&r.connect) || off(&r.energize)),
        }
    }

    /// The most restrictive of two sets of limits.
    pub fn tightest(self, o: DeviceLimits) -> DeviceLimits {
        DeviceLimits {
            discharge_kw: min_opt(self.discharge_kw, o.discharge_kw),
            charge_kw: min_opt(self.charge_kw, o.charge_kw),
            reserve_kwh: max_opt(self.reserve_kwh, o.reserve_kwh),
            connected: self.connected && o.connected,
        }
    }

    /// The limits that hold at every instant of `[start, end)` for the device `key`.
    pub fn over_step(
        programs: &[Program],
        controls: &[Control],
        defaults: &[DefaultControl],
        key: &str,
        seed: u64,
        start: EpochSeconds,
        end: EpochSeconds,
    ) -> Self {
        answers_over(programs, controls, defaults, key, seed, start, end)
            .iter()
            .map(DeviceLimits::from_in_force)
            .reduce(DeviceLimits::tightest)
            .unwrap_or_default()
    }
}

/// A battery's stored energy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Storage {
    pub capacity_kwh: f64,
    /// State of charge at the start of the first step, percent.
    pub soc_pct: f64,
    /// The reserve the owner or program keeps, percent of capacity.
    pub reserve_pct: f64,
}

/// One DER.
#[derive(Debug, Clone, PartialEq)]
pub struct DerInput {
    pub id: String,
    /// Index into [`Problem::sites`].
    pub site: u32,
    /// Rated power (kW), the same for charge and discharge.
    pub rated_kw: f64,
    /// `None` for a device with no energy limit over the window (a curtailable load,
    /// a generator).
    pub storage: Option<Storage>,
    /// An extra cap on what dispatch may ask of the device (kW), set by re-dispatch when the
    /// device under-delivers, or by an operator.
    pub dispatch_cap_kw: Option<f64>,
    /// Envelope limits: empty (none), one entry (the whole window) or one per step.
    pub limits: Vec<DeviceLimits>,
}

/// One site (a connection point with its subscriber).
#[derive(Debug, Clone, PartialEq)]
pub struct SiteInput {
    pub id: String,
    /// Index into [`Problem::zones`], when the site sits behind a shared constraint.
    pub zone: Option<u32>,
    /// How much of the subscriber's own load the site's batteries keep covering during a
    /// discharge, 0 (none: the grid request comes first) to 1 (all of it).
    pub self_consumption: f64,
    /// Subscriber load net of on-site generation (kW; negative when the site exports):
    /// one entry (constant) or one per step.
    pub load_kw: Vec<f64>,
    /// Envelope limits: empty, one entry or one per step.
    pub limits: Vec<FlowLimits>,
}

/// A shared constraint behind which several sites sit (a transformer, a feeder section).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoneInput {
    pub id: String,
    /// Empty, one entry or one per step.
    pub limits: Vec<FlowLimits>,
}

/// Everything the allocator is given.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Problem {
    /// Step boundaries, strictly increasing: step `k` is `[steps[k], steps[k + 1])`. Limits
    /// and loads are taken as constant within a step.
    pub steps: Vec<EpochSeconds>,
    pub ders: Vec<DerInput>,
    pub sites: Vec<SiteInput>,
    pub zones: Vec<ZoneInput>,
    /// The target group's own limits: empty, one entry or one per step.
    pub group_limits: Vec<FlowLimits>,
}

/// Inconsistent allocator input (a bug in the caller, or bad registry data).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProblemError {
    #[error("steps: need at least two strictly increasing boundaries")]
    BadSteps,
    #[error("ders[{0}].site: no such site")]
    UnknownSite(usize),
    #[error("sites[{0}].zone: no such zone")]
    UnknownZone(usize),
    #[error("{field}: has {len} entries; expected 0, 1 or {steps}")]
    StepCount {
        field: String,
        len: usize,
        steps: usize,
    },
    #[error("{field}: must be finite and non-negative, got {value}")]
    BadNumber { field: String, value: f64 },
}

/// A per-step value: empty means absent, one entry holds for every step.
pub(crate) fn per_step<T: Copy>(v: &[T], k: usize) -> Option<T> {
    match v.len() {
        0 => None,
        1 => Some(v[0]),
        _ => v.get(k).copied(),
    }
}

impl Problem {
    /// Step boundaries from `start` to `end` every `step_s` seconds (the last step may be
    /// shorter).
    pub fn uniform_steps(start: EpochSeconds, end: EpochSeconds, step_s: i64) -> Vec<EpochSeconds> {
        let step = step_s.max(1);
        let mut v: Vec<EpochSeconds> = (0..)
            .map(|i| start + i * step)
            .take_while(|&t| t < end)
            .collect();
        v.push(end);
        v
    }

    /// Number of steps.
    pub fn step_count(&self) -> usize {
        self.steps.len().saturating_sub(1)
    }

    /// Checks indices, lengths and numbers.
    pub fn validate(&self) -> Result<(), ProblemError> {
        if self.steps.len() < 2 || self.steps.windows(2).any(|w| w[1] <= w[0]) {
            return Err(ProblemError::BadSteps);
        }
        let k = self.step_count();
        // Field names are only formatted on failure: this runs over a million DERs.
        let len_ok = |len: usize, field: &dyn Fn() -> String| {
            if len <= 1 || len == k {
                Ok(())
            } else {
                Err(ProblemError::StepCount {
                    field: field(),
                    len,
                    steps: k,
                })
            }
        };
        let num = |value: f64, field: &dyn Fn() -> String| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(ProblemError::BadNumber {
                    field: field(),
                    value,
                })
            }
        };
        len_ok(self.group_limits.len(), &|| "group_limits".into())?;
        for (i, z) in self.zones.iter().enumerate() {
            len_ok(z.limits.len(), &|| format!("zones[{i}].limits"))?;
        }
        for (i, s) in self.sites.iter().enumerate() {
            if s.zone.is_some_and(|z| z as usize >= self.zones.len()) {
                return Err(ProblemError::UnknownZone(i));
            }
            len_ok(s.load_kw.len(), &|| format!("sites[{i}].load_kw"))?;
            len_ok(s.limits.len(), &|| format!("sites[{i}].limits"))?;
            if !(0.0..=1.0).contains(&s.self_consumption) {
                return Err(ProblemError::BadNumber {
                    field: format!("sites[{i}].self_consumption"),
                    value: s.self_consumption,
                });
            }
            if let Some((j, l)) = s.load_kw.iter().enumerate().find(|(_, l)| !l.is_finite()) {
                return Err(ProblemError::BadNumber {
                    field: format!("sites[{i}].load_kw[{j}]"),
                    value: *l,
                });
            }
        }
        for (i, d) in self.ders.iter().enumerate() {
            if d.site as usize >= self.sites.len() {
                return Err(ProblemError::UnknownSite(i));
            }
            num(d.rated_kw, &|| format!("ders[{i}].rated_kw"))?;
            len_ok(d.limits.len(), &|| format!("ders[{i}].limits"))?;
            if let Some(c) = d.dispatch_cap_kw {
                num(c, &|| format!("ders[{i}].dispatch_cap_kw"))?;
            }
            if let Some(s) = d.storage {
                num(s.capacity_kwh, &|| {
                    format!("ders[{i}].storage.capacity_kwh")
                })?;
                for (f, v) in [("soc_pct", s.soc_pct), ("reserve_pct", s.reserve_pct)] {
                    if !(0.0..=100.0).contains(&v) {
                        return Err(ProblemError::BadNumber {
                            field: format!("ders[{i}].storage.{f}"),
                            value: v,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::ControlModes;

    #[test]
    fn uniform_steps_end_on_the_window_end() {
        assert_eq!(
            Problem::uniform_steps(0, 1000, 300),
            vec![0, 300, 600, 900, 1000]
        );
        assert_eq!(Problem::uniform_steps(0, 600, 300), vec![0, 300, 600]);
    }

    #[test]
    fn a_limit_that_starts_mid_step_holds_for_the_whole_step() {
        let programs = [Program {
            id: "dnsp".into(),
            primacy: 0,
        }];
        let defaults = [DefaultControl {
            program: "dnsp".into(),
            modes: ControlModes {
                exp_lim_w: Some(10_000.0),
                ..Default::default()
            },
        }];
        let controls = [Control {
            id: "c1".into(),
            program: "dnsp".into(),
            created: 0,
            start: 450,
            duration_s: 100,
            randomize_start_s: 0,
            randomize_duration_s: 0,
            modes: ControlModes {
                exp_lim_w: Some(1500.0),
                gen_lim_w: Some(3000.0),
                connect: Some(false),
                ..Default::default()
            },
            cancelled: None,
        }];
        let f = |a, b| FlowLimits::over_step(&programs, &controls, &defaults, "site", 0, a, b);
        assert_eq!(f(0, 300).export_kw, Some(10.0));
        assert_eq!(f(300, 600).export_kw, Some(1.5));
        assert_eq!(f(600, 900).export_kw, Some(10.0));
        let d = DeviceLimits::over_step(&programs, &controls, &defaults, "site", 0, 300, 600);
        assert_eq!(d.discharge_kw, Some(3.0));
        assert!(!d.connected);
        let d = DeviceLimits::over_step(&programs, &controls, &defaults, "site", 0, 0, 300);
        assert!(d.connected);
    }

    #[test]
    fn inconsistent_problems_are_refused() {
        let mut p = Problem {
            steps: vec![0, 300],
            ..Default::default()
        };
        assert_eq!(p.validate(), Ok(()));
        p.ders.push(DerInput {
            id: "d".into(),
            site: 0,
            rated_kw: 5.0,
            storage: None,
            dispatch_cap_kw: None,
            limits: vec![],
        });
        assert_eq!(p.validate(), Err(ProblemError::UnknownSite(0)));
        p.sites.push(SiteInput {
            id: "s".into(),
            zone: None,
            self_consumption: 0.5,
            load_kw: vec![1.0, 2.0],
            limits: vec![],
        });
        assert!(matches!(p.validate(), Err(ProblemError::StepCount { .. })));
        p.sites[0].load_kw = vec![f64::NAN];
        assert!(matches!(p.validate(), Err(ProblemError::BadNumber { .. })));
        p.sites[0].load_kw = vec![1.0];
        p.ders[0].rated_kw = -1.0;
        assert!(matches!(p.validate(), Err(ProblemError::BadNumber { .. })));
        p.ders[0].rated_kw = 1.0;
        p.steps = vec![0, 0];
        assert_eq!(p.validate(), Err(ProblemError::BadSteps));
    }
}
