//! From a plan to what devices are told: a staggered activation order, per-device control
//! schedules for the protocol adapters, `stop` and `limit` instructions applied at once, and
//! re-dispatch of the rest of the window when telemetry shows a device has dropped out or
//! is under-delivering.

use super::allocate::{Binding, Constraint, Plan, allocate};
use super::input::{Problem, ProblemError};
use super::request::{Direction, DispatchRequest, Ramp};
use crate::domain::EpochSeconds;
use serde::Serialize;

/// One command: hold a power over `[start, end)`.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Command {
    pub start: EpochSeconds,
    pub end: EpochSeconds,
    /// The device's active power set point, kW, signed as in the envelope model: positive
    /// discharges (or generates), negative charges (or consumes). For a battery that keeps
    /// covering its subscriber this includes that self-consumption.
    pub setpoint_kw: f64,
    /// The part of the set point that answers the request (non-negative).
    pub dispatch_kw: f64,
}

/// Everything one device is told for one request.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ControlSchedule {
    pub der: String,
    /// When the device starts answering the request (staggered activation).
    pub activate_at: EpochSeconds,
    /// In time order, not overlapping; consecutive steps with the same power are merged.
    pub commands: Vec<Command>,
}

/// Why a schedule operation was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error("at: {at} is outside the plan's window [{start}, {end})")]
    OutsideWindow {
        at: EpochSeconds,
        start: EpochSeconds,
        end: EpochSeconds,
    },
    #[error("max_kw: must be finite and non-negative, got {0}")]
    BadLimit(f64),
    #[error("plan and problem disagree: {0}")]
    Mismatch(&'static str),
    #[error(transparent)]
    Problem(#[from] ProblemError),
}

/// Seconds after the plan's start at which each DER starts. A staggered ramp switches DERs
/// on in index order at the instants that make the aggregate (of the first step's
/// allocations) rise linearly over the ramp; simultaneous starts them all at once.
pub fn activation_offsets(plan: &Plan, ramp: Ramp) -> Vec<u32> {
    let n = plan.der_count;
    match ramp {
        Ramp::Simultaneous => vec![0; n],
        Ramp::Staggered { over_s } => {
            let first: Vec<f64> = (0..n)
                .map(|i| {
                    (0..plan.step_count())
                        .map(|k| plan.kw(k, i))
                        .find(|&kw| kw > 0.0)
                        .unwrap_or(0.0)
                })
                .collect();
            let total: f64 = first.iter().sum();
            let mut before = 0.0;
            first
                .iter()
                .map(|&kw| {
                    let at = if total > 0.0 {
                        (f64::from(over_s) * before / total).floor() as u32
                    } else {
                        0
                    };
                    before += kw;
                    at.min(over_s)
                })
                .collect()
        }
    }
}

/// Per-device control schedules. DERs with nothing to do get none.
pub fn schedules(plan: &Plan, problem: &Problem, offsets: &[u32]) -> Vec<ControlSchedule> {
    let sign = match plan.direction {
        Direction::Discharge => 1.0,
        Direction::Charge => -1.0,
    };
    let start = plan.steps.first().copied().unwrap_or(0);
    let mut out = Vec::new();
    for i in 0..plan.der_count {
        let activate_at = start + i64::from(offsets.get(i).copied().unwrap_or(0));
        let mut commands: Vec<Command> = Vec::new();
        for k in 0..plan.step_count() {
            let kw = plan.kw(k, i);
            let (a, b) = (plan.steps[k].max(activate_at), plan.steps[k + 1]);
            if kw <= 0.0 || a >= b {
                continue;
            }
            let setpoint_kw = sign * kw + plan.self_kw(k, i);
            match commands.last_mut() {
                Some(c)
                    if c.end == a
                        && (c.dispatch_kw - kw).abs() < 1e-9
                        && (c.setpoint_kw - setpoint_kw).abs() < 1e-9 =>
                {
                    c.end = b
                }
                _ => commands.push(Command {
                    start: a,
                    end: b,
                    setpoint_kw,
                    dispatch_kw: kw,
                }),
            }
        }
        if !commands.is_empty() {
            out.push(ControlSchedule {
                der: problem
                    .ders
                    .get(i)
                    .map_or_else(|| i.to_string(), |d| d.id.clone()),
                activate_at,
                commands,
            });
        }
    }
    out
}

impl Plan {
    fn window(&self) -> (EpochSeconds, EpochSeconds) {
        (
            self.steps.first().copied().unwrap_or(0),
            self.steps.last().copied().unwrap_or(0),
        )
    }

    /// Makes `at` a step boundary (splitting the step that contains it).
    fn split_at(&mut self, at: EpochSeconds) {
        let Some(k) =
            (0..self.step_count()).find(|&k| self.steps[k] < at && at < self.steps[k + 1])
        else {
            return;
        };
        let n = self.der_count;
        let dup = |v: &mut Vec<f64>| {
            let row: Vec<f64> = v[k * n..(k + 1) * n].to_vec();
            v.splice((k + 1) * n..(k + 1) * n, row);
        };
        dup(&mut self.dispatch_kw);
        dup(&mut self.self_consumption_kw);
        self.steps.insert(k + 1, at);
        let mut second = self.report[k].clone();
        self.report[k].end = at;
        second.start = at;
        self.report.insert(k + 1, second);
    }

    /// Applies a `limit` instruction from `at` on: the plan's total dispatch is scaled down
    /// to at most `max_kw` in every step from `at` (each device in proportion, which keeps
    /// every envelope, rating and reserve, since all of them are upper bounds). The steps
    /// affected report the shortfall against the request with [`Constraint::Instruction`].
    pub fn limit(&mut self, at: EpochSeconds, max_kw: f64) -> Result<(), ScheduleError> {
        if !(max_kw.is_finite() && max_kw >= 0.0) {
            return Err(ScheduleError::BadLimit(max_kw));
        }
        let (start, end) = self.window();
        if at >= end {
            return Err(ScheduleError::OutsideWindow { at, start, end });
        }
        self.split_at(at);
        let n = self.der_count;
        for k in 0..self.step_count() {
            if self.steps[k] < at {
                continue;
            }
            let r = &mut self.report[k];
            if r.delivered_kw <= max_kw {
                continue;
            }
            let f = max_kw / r.delivered_kw;
            for v in &mut self.dispatch_kw[k * n..(k + 1) * n] {
                *v *= f;
            }
            r.delivered_kw = max_kw;
            r.shortfall_kw = (r.requested_kw - max_kw).max(0.0);
            if !r
                .binding
                .iter()
                .any(|b| b.constraint == Constraint::Instruction)
            {
                r.binding.insert(
                    0,
                    Binding {
                        constraint: Constraint::Instruction,
                        count: 1,
                        examples: vec![],
                    },
                );
            }
        }
        Ok(())
    }

    /// Applies a `stop` instruction: no dispatch from `at` on. Self-consumption carries on.
    pub fn stop(&mut self, at: EpochSeconds) -> Result<(), ScheduleError> {
        self.limit(at, 0.0)
    }

    /// DER `i`'s stored energy at `at` according to the plan, kWh (`None` for a DER with
    /// no storage).
    pub fn stored_kwh_at(&self, problem: &Problem, i: usize, at: EpochSeconds) -> Option<f64> {
        let st = problem.ders.get(i)?.storage?;
        let mut e = st.capacity_kwh * st.soc_pct / 100.0;
        for k in 0..self.step_count() {
            let (a, b) = (self.steps[k], self.steps[k + 1].min(at));
            if b <= a {
                break;
            }
            let h = (b - a) as f64 / 3600.0;
            match self.direction {
                Direction::Discharge => e -= (self.kw(k, i) + self.self_kw(k, i)) * h,
                Direction::Charge => e += self.kw(k, i) * h,
            }
        }
        Some(e)
    }
}

/// What telemetry says about one device during a dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum DeviceEvent {
    /// The device stopped answering (no reading, disconnected): take it out of the plan.
    DroppedOut { der: usize },
    /// The device delivers less than asked: plan it at what it delivers.
    UnderDelivered { der: usize, delivered_kw: f64 },
}

/// Compares measured device output at `at` with the plan. `measured(i)` is device `i`'s
/// active power in kW, signed like [`Command::setpoint_kw`], or `None` when no fresh reading
/// exists. A device is under-delivering when it is short of its set point by more than
/// `tolerance_kw`.
pub fn detect_deviations(
    plan: &Plan,
    at: EpochSeconds,
    measured: impl Fn(usize) -> Option<f64>,
    tolerance_kw: f64,
) -> Vec<DeviceEvent> {
    let Some(k) = (0..plan.step_count()).find(|&k| plan.steps[k] <= at && at < plan.steps[k + 1])
    else {
        return vec![];
    };
    let sign = match plan.direction {
        Direction::Discharge => 1.0,
        Direction::Charge => -1.0,
    };
    let mut out = Vec::new();
    for i in 0..plan.der_count {
        let kw = plan.kw(k, i);
        if kw <= 0.0 {
            continue;
        }
        let own = plan.self_kw(k, i);
        match measured(i) {
            None => out.push(DeviceEvent::DroppedOut { der: i }),
            Some(m) => {
                // What the device gives the request: its output beyond its own duty.
                let given = sign * (m - own);
                if given < kw - tolerance_kw {
                    out.push(DeviceEvent::UnderDelivered {
                        der: i,
                        delivered_kw: given.max(0.0),
                    });
                }
            }
        }
    }
    out
}

/// Re-allocates the rest of the window from `at`, with each battery's energy taken from the
/// plan (or from `soc_pct(i)` when telemetry has a fresher state of charge) and the devices
/// in `events` taken out or capped. Returns the remaining problem and its plan; the DERs keep
/// their indices, so the new plan replaces the old one from `at` on.
pub fn redispatch(
    req: &DispatchRequest,
    problem: &Problem,
    plan: &Plan,
    at: EpochSeconds,
    events: &[DeviceEvent],
    soc_pct: impl Fn(usize) -> Option<f64>,
) -> Result<(Problem, Plan), ScheduleError> {
    if plan.der_count != problem.ders.len() || plan.steps != problem.steps {
        return Err(ScheduleError::Mismatch(
            "the plan was not made from this problem",
        ));
    }
    let (start, end) = plan.window();
    if at < start || at >= end {
        return Err(ScheduleError::OutsideWindow { at, start, end });
    }
    let kk = problem.step_count();
    // New step j starts at `at` or an old boundary after it; `old[j]` is the old step index.
    let mut steps = vec![at];
    steps.extend(problem.steps.iter().copied().filter(|&t| t > at));
    let old: Vec<usize> = steps[..steps.len() - 1]
        .iter()
        .map(|&t| problem.steps.partition_point(|&b| b <= t) - 1)
        .collect();
    fn remap<T: Copy>(v: &[T], kk: usize, old: &[usize]) -> Vec<T> {
        if v.len() == kk && kk > 1 {
            old.iter().map(|&k| v[k]).collect()
        } else {
            v.to_vec()
        }
    }
    let mut next = Problem {
        steps,
        ders: problem.ders.clone(),
        sites: problem.sites.clone(),
        zones: problem.zones.clone(),
        group_limits: remap(&problem.group_limits, kk, &old),
    };
    for s in &mut next.sites {
        s.load_kw = remap(&s.load_kw, kk, &old);
        s.limits = remap(&s.limits, kk, &old);
    }
    for z in &mut next.zones {
        z.limits = remap(&z.limits, kk, &old);
    }
    for (i, d) in next.ders.iter_mut().enumerate() {
        d.limits = remap(&d.limits, kk, &old);
        if let Some(st) = d.storage.as_mut() {
            let soc = soc_pct(i).unwrap_or_else(|| {
                let e = plan.stored_kwh_at(problem, i, at).unwrap_or(0.0);
                if st.capacity_kwh > 0.0 {
                    100.0 * e / st.capacity_kwh
                } else {
                    0.0
                }
            });
            st.soc_pct = soc.clamp(0.0, 100.0);
        }
    }
    for e in events {
        match *e {
            DeviceEvent::DroppedOut { der } => {
                if let Some(d) = next.ders.get_mut(der) {
                    d.dispatch_cap_kw = Some(0.0);
                }
            }
            DeviceEvent::UnderDelivered { der, delivered_kw } => {
                if let Some(d) = next.ders.get_mut(der) {
                    let cap = delivered_kw.max(0.0);
                    d.dispatch_cap_kw = Some(d.dispatch_cap_kw.map_or(cap, |c| c.min(cap)));
                }
            }
        }
    }
    let plan = allocate(req, &next)?;
    Ok((next, plan))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::allocate::tests::{battery, request, site};

    fn fleet(n: usize, steps: Vec<i64>) -> Problem {
        Problem {
            steps,
            ders: (0..n)
                .map(|i| battery(&format!("b{i}"), i as u32, 5.0, 20.0, 100.0))
                .collect(),
            sites: (0..n).map(|i| site(&format!("s{i}"))).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn staggered_activation_ramps_the_aggregate_linearly() {
        let p = fleet(10, vec![0, 3600]);
        let plan = allocate(&request(Direction::Discharge, 20.0, 0, 3600), &p).unwrap();
        let offs = activation_offsets(&plan, Ramp::Staggered { over_s: 100 });
        assert_eq!(offs, vec![0, 10, 20, 30, 40, 50, 60, 70, 80, 90]);
        assert_eq!(activation_offsets(&plan, Ramp::Simultaneous), vec![0; 10]);
        let sch = schedules(&plan, &p, &offs);
        assert_eq!(sch.len(), 10);
        assert_eq!(sch[3].activate_at, 30);
        assert_eq!(sch[3].commands[0].start, 30);
        assert_eq!(sch[3].commands[0].end, 3600);
        assert!((sch[3].commands[0].setpoint_kw - 2.0).abs() < 1e-9);
    }

    #[test]
    fn equal_steps_merge_and_charging_is_negative() {
        let p = fleet(2, vec![0, 600, 1200, 1800]);
        let plan = allocate(&request(Direction::Charge, 0.0001, 0, 1800), &p);
        // Full batteries cannot charge at all: nothing to command.
        let plan = plan.unwrap();
        assert!(schedules(&plan, &p, &[0, 0]).is_empty());
        let mut p = p;
        for d in &mut p.ders {
            d.storage.as_mut().unwrap().soc_pct = 10.0;
        }
        let plan = allocate(&request(Direction::Charge, 4.0, 0, 1800), &p).unwrap();
        let sch = schedules(&plan, &p, &[0, 0]);
        assert_eq!(
            sch[0].commands.len(),
            1,
            "three equal steps are one command"
        );
        assert_eq!(
            (sch[0].commands[0].start, sch[0].commands[0].end),
            (0, 1800)
        );
        assert!((sch[0].commands[0].setpoint_kw + 2.0).abs() < 1e-9);
    }

    #[test]
    fn stop_and_limit_apply_from_their_instant() {
        let p = fleet(4, vec![0, 3600]);
        let mut plan = allocate(&request(Direction::Discharge, 12.0, 0, 3600), &p).unwrap();
        plan.limit(1000, 6.0).unwrap();
        assert_eq!(plan.steps, vec![0, 1000, 3600]);
        assert!((plan.report[0].delivered_kw - 12.0).abs() < 1e-9);
        assert!((plan.report[1].delivered_kw - 6.0).abs() < 1e-9);
        assert!((plan.kw(1, 0) - 1.5).abs() < 1e-9);
        assert_eq!(
            plan.report[1].binding[0].constraint,
            Constraint::Instruction
        );
        plan.stop(2000).unwrap();
        assert_eq!(plan.steps, vec![0, 1000, 2000, 3600]);
        assert_eq!(plan.report[2].delivered_kw, 0.0);
        assert!((0..4).all(|i| plan.kw(2, i) == 0.0));
        let sch = schedules(&plan, &p, &[0; 4]);
        assert_eq!(sch[0].commands.last().unwrap().end, 2000);
        assert_eq!(
            plan.stop(3600),
            Err(ScheduleError::OutsideWindow {
                at: 3600,
                start: 0,
                end: 3600
            })
        );
        assert_eq!(plan.limit(10, -1.0), Err(ScheduleError::BadLimit(-1.0)));
    }

    #[test]
    fn a_device_that_drops_out_is_replaced_by_the_others() {
        let p = fleet(4, vec![0, 1800, 3600]);
        let req = request(Direction::Discharge, 10.0, 0, 3600);
        let plan = allocate(&req, &p).unwrap();
        // Device 2 reads nothing, device 1 gives only 1 kW of its 2.5.
        let events = detect_deviations(
            &plan,
            900,
            |i| match i {
                2 => None,
                1 => Some(1.0),
                _ => Some(2.5),
            },
            0.1,
        );
        assert_eq!(
            events,
            vec![
                DeviceEvent::UnderDelivered {
                    der: 1,
                    delivered_kw: 1.0
                },
                DeviceEvent::DroppedOut { der: 2 },
            ]
        );
        let (next, again) = redispatch(&req, &p, &plan, 900, &events, |_| None).unwrap();
        assert_eq!(next.steps, vec![900, 1800, 3600]);
        assert!(again.feasible());
        assert_eq!(again.kw(0, 2), 0.0);
        assert!((again.kw(0, 1) - 1.0).abs() < 1e-9);
        assert!((again.kw(0, 0) - 4.5).abs() < 1e-9 && (again.kw(0, 3) - 4.5).abs() < 1e-9);
        // The energy used before the re-dispatch is accounted for: 2.5 kW for 15 min.
        let soc = next.ders[0].storage.unwrap().soc_pct;
        assert!((soc - 100.0 * (20.0 - 0.625) / 20.0).abs() < 1e-9);
        // A fresher state of charge from telemetry wins over the plan's estimate.
        let (next, _) =
            redispatch(&req, &p, &plan, 900, &events, |i| (i == 0).then_some(40.0)).unwrap();
        assert_eq!(next.ders[0].storage.unwrap().soc_pct, 40.0);
        assert!(redispatch(&req, &p, &plan, 3600, &events, |_| None).is_err());
    }
}
