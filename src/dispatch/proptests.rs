//! Property tests for the allocator over random portfolios: no command outside an envelope
//! (device, site, zone, group), no battery below its reserve (or above full when charging),
//! no device above its rating, and the allocations sum to the request whenever the plan
//! reports no binding constraint (and never exceed it).

use super::allocate::allocate;
use super::input::{
    DerInput, DeviceLimits, FlowLimits, Problem, SiteInput, Storage, ZoneInput, per_step,
};
use super::request::{Direction, Pacing};
use crate::dispatch::allocate::tests::request;
use crate::dispatch::request::Ramp;
use crate::dispatch::schedule::{activation_offsets, schedules};
use proptest::prelude::*;

const EPS: f64 = 1e-6;

fn flow() -> impl Strategy<Value = FlowLimits> {
    (
        prop::option::of(0.0f64..30.0),
        prop::option::of(0.0f64..30.0),
    )
        .prop_map(|(e, i)| FlowLimits {
            export_kw: e,
            import_kw: i,
        })
}

fn device_limits() -> impl Strategy<Value = DeviceLimits> {
    (
        prop::option::of(0.0f64..10.0),
        prop::option::of(0.0f64..10.0),
        prop::option::of(0.0f64..5.0),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(d, c, r, connected)| DeviceLimits {
            discharge_kw: d,
            charge_kw: c,
            reserve_kwh: r,
            connected,
        })
}

fn problem() -> impl Strategy<Value = Problem> {
    let steps = prop::collection::vec(60i64..3600, 1..4).prop_map(|ds| {
        let mut v = vec![1_000_000i64];
        for d in ds {
            v.push(v.last().unwrap() + d);
        }
        v
    });
    (steps, 0usize..3, 1usize..6).prop_flat_map(|(steps, nz, ns)| {
        let k = steps.len() - 1;
        let per_step_len = prop_oneof![Just(0usize), Just(1usize), Just(k)];
        let zones = prop::collection::vec(
            per_step_len
                .clone()
                .prop_flat_map(|l| prop::collection::vec(flow(), l)),
            nz,
        );
        let sites = prop::collection::vec(
            (
                prop::option::of(0..nz.max(1) as u32),
                0.0f64..=1.0,
                prop::collection::vec(-5.0f64..15.0, k),
                prop::collection::vec(flow(), 0..=1),
            ),
            ns,
        );
        let ders = prop::collection::vec(
            (
                0..ns as u32,
                0.0f64..10.0,
                prop::option::of((1.0f64..30.0, 0.0f64..=100.0, 0.0f64..50.0)),
                prop::option::of(0.0f64..8.0),
                prop::collection::vec(device_limits(), 0..=1),
            ),
            1..12,
        );
        let group = prop::collection::vec(flow(), 0..=1);
        (Just(steps), zones, sites, ders, group).prop_map(
            move |(steps, zones, sites, ders, group)| Problem {
                steps,
                zones: zones
                    .into_iter()
                    .enumerate()
                    .map(|(i, limits)| ZoneInput {
                        id: format!("z{i}"),
                        limits,
                    })
                    .collect(),
                sites: sites
                    .into_iter()
                    .enumerate()
                    .map(|(i, (zone, sc, load, limits))| SiteInput {
                        id: format!("s{i}"),
                        zone: if nz == 0 { None } else { zone },
                        self_consumption: sc,
                        load_kw: load,
                        limits,
                    })
                    .collect(),
                ders: ders
                    .into_iter()
                    .enumerate()
                    .map(|(i, (site, kw, st, cap, limits))| DerInput {
                        id: format!("d{i}"),
                        site,
                        rated_kw: kw,
                        storage: st.map(|(c, soc, res)| Storage {
                            capacity_kwh: c,
                            soc_pct: soc,
                            reserve_pct: res,
                        }),
                        dispatch_cap_kw: cap,
                        limits,
                    })
                    .collect(),
                group_limits: group,
            },
        )
    })
}

/// The most a connection point may move in the request's direction, given what it does
/// without the request (`base`: load less self-consumption when discharging, -load when
/// charging) and its limits.
fn allowance(limits: FlowLimits, discharge: bool, base: f64) -> f64 {
    let l = if discharge {
        limits.export_kw
    } else {
        limits.import_kw
    };
    l.map_or(f64::INFINITY, |h| (h + base).max(0.0))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn allocations_respect_every_limit(
        p in problem(),
        discharge in any::<bool>(),
        want in 0.1f64..60.0,
        sustained in any::<bool>(),
    ) {
        let dir = if discharge { Direction::Discharge } else { Direction::Charge };
        let k_n = p.step_count();
        let mut req = request(dir, want, p.steps[0], p.steps[k_n] - p.steps[0]);
        if sustained {
            req.pacing = Pacing::Sustained;
        }
        let plan = allocate(&req, &p).unwrap();
        let mut stored: Vec<f64> = p.ders.iter()
            .map(|d| d.storage.map_or(0.0, |s| s.capacity_kwh * s.soc_pct / 100.0))
            .collect();
        for k in 0..k_n {
            let dt = (p.steps[k + 1] - p.steps[k]) as f64 / 3600.0;
            let mut site_p = vec![0.0; p.sites.len()];
            let mut site_sc = vec![0.0; p.sites.len()];
            let mut total = 0.0;
            for (i, d) in p.ders.iter().enumerate() {
                let kw = plan.kw(k, i);
                let sc = plan.self_kw(k, i);
                prop_assert!(kw >= 0.0 && sc >= 0.0);
                let lim = per_step(&d.limits, k).unwrap_or_default();
                // Rating, envelope, dispatch cap, connection.
                prop_assert!(kw + sc <= d.rated_kw + EPS, "rating: {} + {} > {}", kw, sc, d.rated_kw);
                let env = if discharge { lim.discharge_kw } else { lim.charge_kw };
                if let Some(e) = env {
                    prop_assert!(kw + sc <= e.max(0.0) + EPS, "device envelope");
                }
                if let Some(c) = d.dispatch_cap_kw {
                    prop_assert!(kw <= c + EPS);
                }
                if !lim.connected {
                    prop_assert_eq!(kw + sc, 0.0);
                }
                if !discharge {
                    prop_assert_eq!(sc, 0.0);
                }
                // Energy: never below the reserve when discharging (unless it started
                // there and is left alone), never above full when charging.
                if let Some(st) = d.storage {
                    let reserve = (st.capacity_kwh * st.reserve_pct / 100.0)
                        .max(lim.reserve_kwh.unwrap_or(0.0));
                    let before = stored[i];
                    if discharge {
                        stored[i] -= (kw + sc) * dt;
                        if kw + sc > 0.0 {
                            prop_assert!(stored[i] >= reserve - EPS,
                                "battery {} at {} below reserve {}", i, stored[i], reserve);
                        }
                        prop_assert!(stored[i] <= before);
                    } else {
                        stored[i] += kw * dt;
                        prop_assert!(stored[i] <= st.capacity_kwh.max(before) + EPS);
                    }
                }
                site_p[d.site as usize] += kw;
                site_sc[d.site as usize] += sc;
                total += kw;
            }
            // Site, zone and group envelopes.
            let mut zone_p = vec![0.0; p.zones.len()];
            let mut zone_base = vec![0.0; p.zones.len()];
            let mut group_base = 0.0;
            for (s, site) in p.sites.iter().enumerate() {
                let load = per_step(&site.load_kw, k).unwrap_or(0.0);
                let base = if discharge { load - site_sc[s] } else { -load };
                let lim = per_step(&site.limits, k).unwrap_or_default();
                prop_assert!(site_p[s] <= allowance(lim, discharge, base) + EPS, "site {}", s);
                if let Some(z) = site.zone {
                    zone_p[z as usize] += site_p[s];
                    zone_base[z as usize] += base;
                }
                group_base += base;
            }
            for (z, zone) in p.zones.iter().enumerate() {
                let lim = per_step(&zone.limits, k).unwrap_or_default();
                prop_assert!(zone_p[z] <= allowance(lim, discharge, zone_base[z]) + EPS, "zone {}", z);
            }
            let glim = per_step(&p.group_limits, k).unwrap_or_default();
            prop_assert!(total <= allowance(glim, discharge, group_base) + EPS, "group");
            // The request: met exactly when nothing binds, never exceeded.
            let r = &plan.report[k];
            prop_assert!(total <= want * (1.0 + 1e-9) + EPS);
            prop_assert!((r.delivered_kw - total).abs() <= EPS);
            if r.binding.is_empty() {
                prop_assert!((total - want).abs() <= 1e-6 * want.max(1.0),
                    "feasible but delivered {} of {}", total, want);
            } else {
                prop_assert!((r.shortfall_kw - (want - total)).abs() <= EPS);
            }
        }
        // The control schedules carry the plan's powers with the right sign.
        let offsets = activation_offsets(&plan, Ramp::Simultaneous);
        for s in schedules(&plan, &p, &offsets) {
            for c in &s.commands {
                prop_assert!(c.dispatch_kw > 0.0);
                let signed_ok = if discharge { c.setpoint_kw > 0.0 } else { c.setpoint_kw < 0.0 };
                prop_assert!(signed_ok);
            }
        }
    }
}
