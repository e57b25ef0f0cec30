//! The allocator: how much each DER contributes in each step of the window.
//!
//! Each step is a hierarchical water-filling (see [`level`](super::level)). Every DER gets
//! `w * min(theta, b)`: `w` is the energy it can give the request (stored energy above the
//! reserve, less what it must keep for its subscriber until the end of the window), so a
//! common `theta` gives every battery the same time-to-empty (`1/theta` hours) and they reach
//! their reserves together instead of the biggest or fullest being drained first. `b` is
//! where the DER saturates (its rating less its self-consumption duty, its envelope, or all
//! its energy within the step). A site whose export (or import) limit would be exceeded caps
//! the level of its own DERs at `theta_site`; a zone (a transformer, a feeder section) does
//! the same over its sites, and the target group's own limit caps the request. A DER's
//! contribution is then `w * min(b, theta_site, theta_zone, theta)`, which meets every limit
//! by construction, and the common `theta` is found in expected linear time. When the
//! request is out of reach every level is at its maximum, which is the most that can be
//! delivered, and the step's report names the binding constraints.
//!
//! Site power balance (kW, discharge): the site's batteries cover `self_consumption * load`
//! of the subscriber's load (shared by battery rating), and the dispatch power `P` comes on
//! top, so the site's export is `self_consumption_kw + P - load` and must stay within the
//! export limit. For a charge request the site imports `load + P` within its import limit,
//! and batteries do not cover load while charging. Losses are not modelled.

use super::input::{DeviceLimits, FlowLimits, Problem, ProblemError, per_step};
use super::level::{Term, saturated, solve};
use super::request::{Direction, DispatchRequest, Pacing};
use crate::domain::EpochSeconds;
use serde::Serialize;

/// A constraint that stopped the allocation from reaching the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Constraint {
    /// The target group's own envelope.
    GroupLimit,
    /// A zone's (transformer, feeder section) envelope.
    ZoneLimit,
    /// A site's export (discharge) or import (charge) limit.
    SiteLimit,
    /// A device envelope (max/generation/load limit).
    DeviceEnvelope,
    /// An envelope disconnects or de-energizes the device.
    Disconnected,
    /// The device's rated power (after its self-consumption duty) or a dispatch cap.
    DeviceRating,
    /// Stored energy: above the reserve (discharge) or below full (charge).
    Energy,
    /// A `stop` or `limit` instruction.
    Instruction,
}

const N_CONSTRAINTS: usize = 8;

const CONSTRAINTS: [Constraint; N_CONSTRAINTS] = [
    Constraint::GroupLimit,
    Constraint::ZoneLimit,
    Constraint::SiteLimit,
    Constraint::DeviceEnvelope,
    Constraint::Disconnected,
    Constraint::DeviceRating,
    Constraint::Energy,
    Constraint::Instruction,
];

/// How many sites, zones or devices one constraint held back, with a few of their ids.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Binding {
    pub constraint: Constraint,
    pub count: usize,
    /// Up to [`EXAMPLES`] ids (sites, zones or DERs according to the constraint).
    pub examples: Vec<String>,
}

/// Stored energy below this (kWh) counts as none: it keeps rounding residue from being
/// dispatched as vanishing allocations.
const ENERGY_EPS_KWH: f64 = 1e-9;

/// How many ids a [`Binding`] lists.
pub const EXAMPLES: usize = 3;

/// What one step delivers.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StepReport {
    pub start: EpochSeconds,
    pub end: EpochSeconds,
    pub requested_kw: f64,
    /// Sum of the DERs' dispatch allocations.
    pub delivered_kw: f64,
    /// `requested_kw - delivered_kw` when positive, else 0.
    pub shortfall_kw: f64,
    /// What the batteries keep supplying to their subscribers on top of the dispatch.
    pub self_consumption_kw: f64,
    /// The common time-to-empty of the batteries that are not at a limit, in hours, if any.
    pub time_to_empty_h: Option<f64>,
    /// Empty when the request is met.
    pub binding: Vec<Binding>,
}

/// The allocation of one request over a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub request_id: String,
    pub direction: Direction,
    pub requested_kw: f64,
    /// Step boundaries (copied from the problem).
    pub steps: Vec<EpochSeconds>,
    /// Number of DERs (the problem's `ders`, in order).
    pub der_count: usize,
    /// kW each DER gives the request, step-major: `dispatch_kw[k * der_count + i]`. Always
    /// non-negative; [`direction`](Self::direction) says which way.
    pub dispatch_kw: Vec<f64>,
    /// kW each battery keeps supplying its subscriber, same layout (zero when charging).
    pub self_consumption_kw: Vec<f64>,
    pub report: Vec<StepReport>,
}

impl Plan {
    /// Number of steps.
    pub fn step_count(&self) -> usize {
        self.steps.len().saturating_sub(1)
    }

    /// DER `i`'s dispatch in step `k`, kW.
    pub fn kw(&self, k: usize, i: usize) -> f64 {
        self.dispatch_kw[k * self.der_count + i]
    }

    /// DER `i`'s self-consumption duty in step `k`, kW.
    pub fn self_kw(&self, k: usize, i: usize) -> f64 {
        self.self_consumption_kw[k * self.der_count + i]
    }

    /// Whether every step meets the request.
    pub fn feasible(&self) -> bool {
        self.report.iter().all(|r| r.binding.is_empty())
    }

    /// Total shortfall energy, kWh.
    pub fn shortfall_kwh(&self) -> f64 {
        self.report
            .iter()
            .map(|r| r.shortfall_kw * (r.end - r.start) as f64 / 3600.0)
            .sum()
    }
}

/// Groups indices `0..keys.len()` by key: returns bucket starts (len `nb + 1`) and members.
fn bucket(keys: impl Iterator<Item = usize> + Clone, nb: usize) -> (Vec<usize>, Vec<usize>) {
    let mut start = vec![0usize; nb + 1];
    for k in keys.clone() {
        start[k + 1] += 1;
    }
    for b in 0..nb {
        start[b + 1] += start[b];
    }
    let mut fill = start.clone();
    let mut members = vec![0usize; start[nb]];
    for (i, k) in keys.enumerate() {
        members[fill[k]] = i;
        fill[k] += 1;
    }
    (start, members)
}

/// Caps the terms from `from` on at `head`: when they would exceed it, solves their level,
/// replaces those that would still be rising by one term saturating at that level, and
/// returns it (infinity when the cap does not bind).
fn cap_terms(terms: &mut Vec<Term>, from: usize, head: f64) -> f64 {
    let s = &mut terms[from..];
    if saturated(s) <= head {
        return f64::INFINITY;
    }
    let theta = solve(s, head);
    let mut keep = from;
    let mut rising = 0.0;
    for j in from..terms.len() {
        let t = terms[j];
        if t.b < theta {
            terms[keep] = t;
            keep += 1;
        } else {
            rising += t.w;
        }
    }
    terms.truncate(keep);
    if rising > 0.0 {
        terms.push(Term {
            w: rising,
            b: theta,
        });
    }
    theta
}

/// Why a DER stopped where it did, before site and zone limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Rating,
    Envelope,
    Disconnected,
    Energy,
}

impl Why {
    fn constraint(self) -> Constraint {
        match self {
            Why::Rating => Constraint::DeviceRating,
            Why::Envelope => Constraint::DeviceEnvelope,
            Why::Disconnected => Constraint::Disconnected,
            Why::Energy => Constraint::Energy,
        }
    }
}

struct Tally {
    counts: [usize; N_CONSTRAINTS],
    examples: [Vec<String>; N_CONSTRAINTS],
}

impl Tally {
    fn new() -> Self {
        Tally {
            counts: [0; N_CONSTRAINTS],
            examples: Default::default(),
        }
    }

    fn add(&mut self, c: Constraint, id: &str) {
        let j = CONSTRAINTS.iter().position(|x| *x == c).unwrap_or(0);
        self.counts[j] += 1;
        if self.examples[j].len() < EXAMPLES {
            self.examples[j].push(id.to_string());
        }
    }

    fn into_bindings(self) -> Vec<Binding> {
        let Tally { counts, examples } = self;
        CONSTRAINTS
            .iter()
            .zip(counts)
            .zip(examples)
            .filter(|((_, n), _)| *n > 0)
            .map(|((c, count), examples)| Binding {
                constraint: *c,
                count,
                examples,
            })
            .collect()
    }
}

/// Allocates `req` over `problem`'s window (its steps; the request supplies direction, power
/// and pacing). Never fails on a request that cannot be met: the plan then delivers the most
/// that can be delivered and each step's report says what is missing and why.
pub fn allocate(req: &DispatchRequest, problem: &Problem) -> Result<Plan, ProblemError> {
    problem.validate()?;
    let p = problem;
    let (n, ns, nz, kk) = (p.ders.len(), p.sites.len(), p.zones.len(), p.step_count());
    let end = p.steps[kk];
    let discharge = req.direction == Direction::Discharge;
    let want = req.power_kw;

    let (site_start, site_ders) = bucket(p.ders.iter().map(|d| d.site as usize), ns);
    let (zone_start, zone_sites) = bucket(
        p.sites.iter().map(|s| s.zone.map_or(nz, |z| z as usize)),
        nz + 1,
    );
    let mut site_storage_kw = vec![0.0f64; ns];
    for d in &p.ders {
        if d.storage.is_some() {
            site_storage_kw[d.site as usize] += d.rated_kw;
        }
    }
    let dt_h = |k: usize| (p.steps[k + 1] - p.steps[k]) as f64 / 3600.0;
    let duty = |s: usize, k: usize| {
        let site = &p.sites[s];
        if discharge {
            site.self_consumption * per_step(&site.load_kw, k).unwrap_or(0.0).max(0.0)
        } else {
            0.0
        }
    };
    // Self-consumption energy each site still needs from the current step to the end.
    let mut sc_left: Vec<f64> = (0..ns)
        .map(|s| (0..kk).map(|k| duty(s, k) * dt_h(k)).sum())
        .collect();
    // Compact per-DER indices and a per-site duty so the hot loops do not chase each
    // site's heap-allocated load series more than once per step.
    let der_site: Vec<u32> = p.ders.iter().map(|d| d.site).collect();
    let site_zone: Vec<u32> = p
        .sites
        .iter()
        .map(|s| s.zone.map_or(nz as u32, |z| z))
        .collect();
    let mut duty_now = vec![0.0f64; ns];
    let mut stored: Vec<f64> = p
        .ders
        .iter()
        .map(|d| {
            d.storage
                .map_or(0.0, |s| s.capacity_kwh * s.soc_pct / 100.0)
        })
        .collect();

    let mut w = vec![0.0f64; n];
    let mut b = vec![0.0f64; n];
    let mut sc = vec![0.0f64; n];
    let mut why = vec![Why::Rating; n];
    let mut theta_site = vec![f64::INFINITY; ns];
    let mut theta_zone = vec![f64::INFINITY; nz + 1];
    let mut terms: Vec<Term> = Vec::with_capacity(n + ns);
    let mut dispatch_kw = vec![0.0f64; n * kk];
    let mut self_kw = vec![0.0f64; n * kk];
    let mut report = Vec::with_capacity(kk);

    for k in 0..kk {
        let dt = dt_h(k);
        let t_rem = (end - p.steps[k]) as f64 / 3600.0;
        let theta_max = match req.pacing {
            Pacing::AsLongAsPossible => 1.0 / dt,
            Pacing::Sustained => 1.0 / t_rem,
        };
        terms.clear();
        let mut group_flow = 0.0;
        for z in 0..=nz {
            let zone_from = terms.len();
            let mut zone_flow = 0.0;
            for &s in &zone_sites[zone_start[z]..zone_start[z + 1]] {
                let site = &p.sites[s];
                let load = per_step(&site.load_kw, k).unwrap_or(0.0);
                let want_sc = if discharge {
                    site.self_consumption * load.max(0.0)
                } else {
                    0.0
                };
                duty_now[s] = want_sc;
                let site_from = terms.len();
                let mut site_sc = 0.0;
                for &i in &site_ders[site_start[s]..site_start[s + 1]] {
                    let d = &p.ders[i];
                    let lim: DeviceLimits = per_step(&d.limits, k).unwrap_or_default();
                    let dispatch_cap = d.dispatch_cap_kw.unwrap_or(f64::INFINITY);
                    let env = if discharge {
                        lim.discharge_kw
                    } else {
                        lim.charge_kw
                    };
                    let power = env.map_or(d.rated_kw, |e| e.max(0.0).min(d.rated_kw));
                    let cap_why = if env.is_some_and(|e| e < d.rated_kw.min(dispatch_cap)) {
                        Why::Envelope
                    } else {
                        Why::Rating
                    };
                    let (mut wi, mut sci, mut capi, mut whyi) = (0.0, 0.0, 0.0, cap_why);
                    if !lim.connected {
                        whyi = Why::Disconnected;
                    } else if let Some(st) = d.storage {
                        if discharge {
                            let reserve = (st.capacity_kwh * st.reserve_pct / 100.0)
                                .max(lim.reserve_kwh.unwrap_or(0.0));
                            let above = stored[i] - reserve;
                            let share = if site_storage_kw[s] > 0.0 {
                                d.rated_kw / site_storage_kw[s]
                            } else {
                                0.0
                            };
                            sci = (want_sc * share).min(power);
                            let keep = sc_left[s] * share;
                            if above <= 0.0 {
                                sci = 0.0;
                                whyi = Why::Energy;
                            } else if above <= keep + ENERGY_EPS_KWH {
                                // Not even the subscriber's duty fits: stretch it so the
                                // battery reaches its reserve at the end of the window.
                                sci *= if keep > 0.0 {
                                    (above / keep).min(1.0)
                                } else {
                                    0.0
                                };
                                whyi = Why::Energy;
                            } else {
                                wi = above - keep;
                            }
                        } else {
                            wi = (st.capacity_kwh - stored[i]).max(0.0);
                            if wi <= ENERGY_EPS_KWH {
                                wi = 0.0;
                                whyi = Why::Energy;
                            }
                        }
                        capi = (power - sci).max(0.0).min(dispatch_cap);
                    } else {
                        capi = power.min(dispatch_cap);
                        wi = capi * t_rem;
                    }
                    let mut bi = 0.0;
                    if wi > 0.0 && capi > 0.0 {
                        bi = capi / wi;
                        if bi >= theta_max {
                            bi = theta_max;
                            if d.storage.is_some() {
                                whyi = Why::Energy;
                            }
                        }
                        terms.push(Term { w: wi, b: bi });
                    } else {
                        wi = 0.0;
                    }
                    w[i] = wi;
                    b[i] = bi;
                    sc[i] = sci;
                    why[i] = whyi;
                    site_sc += sci;
                }
                let flow: FlowLimits = per_step(&site.limits, k).unwrap_or_default();
                // Distance from the site's limit before dispatch: discharge exports
                // `site_sc + P - load`, charge imports `load + P`.
                let base = if discharge { load - site_sc } else { -load };
                let head = if discharge {
                    flow.export_kw
                } else {
                    flow.import_kw
                };
                theta_site[s] = match head {
                    Some(h) => cap_terms(&mut terms, site_from, (h + base).max(0.0)),
                    None => f64::INFINITY,
                };
                zone_flow += base;
            }
            theta_zone[z] = f64::INFINITY;
            if z < nz {
                let flow = per_step(&p.zones[z].limits, k).unwrap_or_default();
                let head = if discharge {
                    flow.export_kw
                } else {
                    flow.import_kw
                };
                if let Some(h) = head {
                    theta_zone[z] = cap_terms(&mut terms, zone_from, (h + zone_flow).max(0.0));
                }
            }
            group_flow += zone_flow;
        }
        let gflow = per_step(&p.group_limits, k).unwrap_or_default();
        let group_head = if discharge {
            gflow.export_kw
        } else {
            gflow.import_kw
        }
        .map(|h| (h + group_flow).max(0.0));
        let target = group_head.map_or(want, |h| h.min(want));
        let theta = if saturated(&terms) <= target {
            f64::INFINITY
        } else {
            solve(&mut terms, target)
        };

        let mut delivered = 0.0;
        let mut sc_total = 0.0;
        let row = k * n;
        for i in 0..n {
            let s = der_site[i] as usize;
            let z = site_zone[s] as usize;
            let kw = w[i] * b[i].min(theta_site[s]).min(theta_zone[z]).min(theta);
            dispatch_kw[row + i] = kw;
            self_kw[row + i] = sc[i];
            delivered += kw;
            sc_total += sc[i];
            // Devices without storage keep `stored` at zero; the update is harmless.
            if discharge {
                stored[i] -= (kw + sc[i]) * dt;
            } else {
                stored[i] += kw * dt;
            }
        }
        for (left, d) in sc_left.iter_mut().zip(&duty_now) {
            *left = (*left - d * dt).max(0.0);
        }

        let shortfall = (want - delivered).max(0.0);
        let mut binding = Vec::new();
        if shortfall > 1e-6 * want.max(1.0) {
            let mut tally = Tally::new();
            if group_head.is_some_and(|h| h < want) {
                tally.add(Constraint::GroupLimit, "group");
            }
            let mut site_seen = vec![false; ns];
            let mut zone_seen = vec![false; nz + 1];
            for i in 0..n {
                let d = &p.ders[i];
                let s = d.site as usize;
                let z = p.sites[s].zone.map_or(nz, |z| z as usize);
                if w[i] == 0.0 {
                    tally.add(why[i].constraint(), &d.id);
                } else if theta_site[s] <= b[i] && theta_site[s] <= theta_zone[z] {
                    if !site_seen[s] {
                        site_seen[s] = true;
                        tally.add(Constraint::SiteLimit, &p.sites[s].id);
                    }
                } else if theta_zone[z] <= b[i] {
                    if !zone_seen[z] {
                        zone_seen[z] = true;
                        tally.add(Constraint::ZoneLimit, &p.zones[z].id);
                    }
                } else {
                    tally.add(why[i].constraint(), &d.id);
                }
            }
            binding = tally.into_bindings();
        }
        let time_to_empty_h = (theta.is_finite() && theta > 0.0).then(|| 1.0 / theta);
        report.push(StepReport {
            start: p.steps[k],
            end: p.steps[k + 1],
            requested_kw: want,
            delivered_kw: delivered,
            shortfall_kw: if binding.is_empty() { 0.0 } else { shortfall },
            self_consumption_kw: sc_total,
            time_to_empty_h,
            binding,
        });
    }

    Ok(Plan {
        request_id: req.id.clone(),
        direction: req.direction,
        requested_kw: want,
        steps: p.steps.clone(),
        der_count: n,
        dispatch_kw,
        self_consumption_kw: self_kw,
        report,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dispatch::input::{DerInput, SiteInput, Storage, ZoneInput};
    use crate::dispatch::request::{Ramp, RequestSource, Target};

    pub(crate) fn request(direction: Direction, kw: f64, start: i64, dur: i64) -> DispatchRequest {
        DispatchRequest {
            id: "r".into(),
            target: Target::Group {
                group_id: "g".into(),
            },
            direction,
            power_kw: kw,
            start,
            duration_s: dur,
            ramp: Ramp::Simultaneous,
            priority: 0,
            source: RequestSource::Operator,
            pacing: Pacing::AsLongAsPossible,
        }
    }

    pub(crate) fn battery(id: &str, site: u32, kw: f64, kwh: f64, soc: f64) -> DerInput {
        DerInput {
            id: id.into(),
            site,
            rated_kw: kw,
            storage: Some(Storage {
                capacity_kwh: kwh,
                soc_pct: soc,
                reserve_pct: 0.0,
            }),
            dispatch_cap_kw: None,
            limits: vec![],
        }
    }

    pub(crate) fn site(id: &str) -> SiteInput {
        SiteInput {
            id: id.into(),
            zone: None,
            self_consumption: 0.0,
            load_kw: vec![],
            limits: vec![],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn batteries_share_by_energy_so_they_empty_together() {
        let p = Problem {
            steps: vec![0, 3600],
            ders: vec![
                battery("a", 0, 10.0, 10.0, 100.0),
                battery("b", 1, 10.0, 30.0, 100.0),
            ],
            sites: vec![site("s0"), site("s1")],
            ..Default::default()
        };
        let plan = allocate(&request(Direction::Discharge, 4.0, 0, 3600), &p).unwrap();
        assert!(close(plan.kw(0, 0), 1.0) && close(plan.kw(0, 1), 3.0));
        assert!(plan.feasible());
        assert_eq!(
            plan.report[0].time_to_empty_h.map(|h| h.round()),
            Some(10.0)
        );
    }

    #[test]
    fn a_saturated_battery_hands_the_rest_to_the_others() {
        let p = Problem {
            steps: vec![0, 3600],
            ders: vec![
                battery("a", 0, 1.0, 10.0, 100.0),
                battery("b", 1, 10.0, 30.0, 100.0),
            ],
            sites: vec![site("s0"), site("s1")],
            ..Default::default()
        };
        let plan = allocate(&request(Direction::Discharge, 7.0, 0, 3600), &p).unwrap();
        assert!(close(plan.kw(0, 0), 1.0), "{}", plan.kw(0, 0));
        assert!(close(plan.kw(0, 1), 6.0));
    }

    #[test]
    fn site_export_limit_and_self_consumption_bind_and_are_reported() {
        let mut s0 = site("s0");
        s0.self_consumption = 1.0;
        s0.load_kw = vec![4.0];
        s0.limits = vec![FlowLimits {
            export_kw: Some(1.0),
            import_kw: None,
        }];
        let p = Problem {
            steps: vec![0, 3600],
            ders: vec![battery("a", 0, 10.0, 100.0, 100.0)],
            sites: vec![s0],
            ..Default::default()
        };
        let plan = allocate(&request(Direction::Discharge, 8.0, 0, 3600), &p).unwrap();
        // Covers its 4 kW subscriber, may export 1 kW: 4 + P - 4 <= 1.
        assert!(close(plan.kw(0, 0), 1.0));
        assert!(close(plan.self_kw(0, 0), 4.0));
        let r = &plan.report[0];
        assert!(close(r.shortfall_kw, 7.0));
        assert_eq!(r.binding.len(), 1);
        assert_eq!(r.binding[0].constraint, Constraint::SiteLimit);
        assert_eq!(r.binding[0].examples, vec!["s0".to_string()]);
    }

    #[test]
    fn a_zone_limit_caps_its_sites_and_others_make_up() {
        let mut s0 = site("s0");
        s0.zone = Some(0);
        let mut s1 = site("s1");
        s1.zone = Some(0);
        let p = Problem {
            steps: vec![0, 3600],
            ders: vec![
                battery("a", 0, 10.0, 20.0, 100.0),
                battery("b", 1, 10.0, 20.0, 100.0),
                battery("c", 2, 10.0, 20.0, 100.0),
            ],
            sites: vec![s0, s1, site("s2")],
            zones: vec![ZoneInput {
                id: "tx1".into(),
                limits: vec![FlowLimits {
                    export_kw: Some(4.0),
                    import_kw: None,
                }],
            }],
            ..Default::default()
        };
        let plan = allocate(&request(Direction::Discharge, 12.0, 0, 3600), &p).unwrap();
        assert!(close(plan.kw(0, 0) + plan.kw(0, 1), 4.0));
        assert!(close(plan.kw(0, 2), 8.0));
        assert!(plan.feasible());
    }

    #[test]
    fn an_impossible_request_delivers_the_most_and_names_energy() {
        let p = Problem {
            steps: vec![0, 3600, 7200],
            ders: vec![battery("a", 0, 10.0, 10.0, 100.0)],
            sites: vec![site("s0")],
            ..Default::default()
        };
        let plan = allocate(&request(Direction::Discharge, 8.0, 0, 7200), &p).unwrap();
        assert!(close(plan.kw(0, 0), 8.0));
        // 2 kWh are left for the second hour.
        assert!(close(plan.kw(1, 0), 2.0));
        assert!(plan.report[0].binding.is_empty());
        assert_eq!(plan.report[1].binding[0].constraint, Constraint::Energy);
        assert!(close(plan.shortfall_kwh(), 6.0));
    }

    #[test]
    fn sustained_pacing_commits_a_level_held_to_the_end() {
        let p = Problem {
            steps: vec![0, 3600, 7200],
            ders: vec![battery("a", 0, 10.0, 10.0, 100.0)],
            sites: vec![site("s0")],
            ..Default::default()
        };
        let mut r = request(Direction::Discharge, 8.0, 0, 7200);
        r.pacing = Pacing::Sustained;
        let plan = allocate(&r, &p).unwrap();
        assert!(close(plan.kw(0, 0), 5.0) && close(plan.kw(1, 0), 5.0));
    }

    #[test]
    fn charging_respects_import_limits_and_headroom() {
        let mut s0 = site("s0");
        s0.load_kw = vec![3.0];
        s0.limits = vec![FlowLimits {
            export_kw: None,
            import_kw: Some(5.0),
        }];
        let p = Problem {
            steps: vec![0, 3600],
            ders: vec![
                battery("a", 0, 10.0, 10.0, 50.0),
                battery("b", 1, 10.0, 10.0, 90.0),
            ],
            sites: vec![s0, site("s1")],
            ..Default::default()
        };
        let plan = allocate(&request(Direction::Charge, 10.0, 0, 3600), &p).unwrap();
        assert!(close(plan.kw(0, 0), 2.0), "import limit 5 - load 3");
        assert!(close(plan.kw(0, 1), 1.0), "only 1 kWh of room");
        let kinds: Vec<Constraint> = plan.report[0]
            .binding
            .iter()
            .map(|b| b.constraint)
            .collect();
        assert_eq!(kinds, vec![Constraint::SiteLimit, Constraint::Energy]);
    }

    #[test]
    fn device_envelopes_and_disconnection_hold() {
        let mut a = battery("a", 0, 10.0, 100.0, 100.0);
        a.limits = vec![DeviceLimits {
            discharge_kw: Some(2.0),
            ..Default::default()
        }];
        let mut b = battery("b", 1, 10.0, 100.0, 100.0);
        b.limits = vec![DeviceLimits {
            connected: false,
            ..Default::default()
        }];
        let p = Problem {
            steps: vec![0, 3600],
            ders: vec![a, b],
            sites: vec![site("s0"), site("s1")],
            group_limits: vec![],
            zones: vec![],
        };
        let plan = allocate(&request(Direction::Discharge, 5.0, 0, 3600), &p).unwrap();
        assert!(close(plan.kw(0, 0), 2.0));
        assert_eq!(plan.kw(0, 1), 0.0);
        let kinds: Vec<Constraint> = plan.report[0]
            .binding
            .iter()
            .map(|b| b.constraint)
            .collect();
        assert_eq!(
            kinds,
            vec![Constraint::DeviceEnvelope, Constraint::Disconnected]
        );
    }
}
