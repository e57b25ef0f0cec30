//! Dispatch allocation benchmark: how long the allocator takes to split one request over
//! 100,000 and 1,000,000 DERs, against two naive baselines measured in the same run, and
//! what the baselines get wrong.
//!
//! Run with `cargo bench --bench dispatch`. `SWITCHYARD_BENCH_DISPATCH_SIZES` (default
//! `100000,1000000`) sets the fleet sizes, comma-separated.
//!
//! Workload per size: one site per battery (8 of 10 sites) or flexible load, a second
//! flexible load on every fifth site, transformers of 50 sites whose export limits bind on
//! some of them, a 5 kW site export limit, half of each subscriber's load covered by its
//! battery, and a discharge request of 40% of the fleet's rating for 2 hours. It is timed
//! for one step (the instantaneous split) and for 8 steps of 15 minutes (the full plan).
//!
//! Baselines (no site or zone limits, no self-consumption, O(n) and O(n log n)):
//! - `proportional`: every DER gives the same fraction of its rating, clipped to its
//!   energy; what is clipped is not re-allocated.
//! - `greedy-soc`: DERs sorted by state of charge, fullest first, each at full rating until
//!   the request is met (the "greedy draining" the allocator avoids).

use std::hint::black_box;
use std::time::{Duration, Instant};
use switchyard::dispatch::{
    DerInput, Direction, DispatchRequest, FlowLimits, Pacing, Plan, Problem, Ramp, RequestSource,
    SiteInput, Storage, Target, ZoneInput, activation_offsets, allocate,
};

const SITES_PER_ZONE: usize = 50;
const STEP_S: i64 = 900;
const HOURS: i64 = 2;
const REPS: usize = 5;

/// A small deterministic generator (splitmix64) so every run sees the same fleet.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn range(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.next()
    }
}

fn fleet(n: usize, steps: Vec<i64>) -> Problem {
    let k = steps.len() - 1;
    let mut rng = Rng(42);
    let mut ders = Vec::with_capacity(n);
    let mut sites: Vec<SiteInput> = Vec::with_capacity(n);
    while ders.len() < n {
        let s = sites.len();
        let base = rng.range(0.5, 3.0);
        sites.push(SiteInput {
            id: format!("site-{s}"),
            zone: Some((s / SITES_PER_ZONE) as u32),
            self_consumption: 0.5,
            load_kw: (0..k).map(|j| base + 0.2 * j as f64).collect(),
            limits: vec![FlowLimits {
                export_kw: Some(5.0),
                import_kw: Some(15.0),
            }],
        });
        let battery = s % 10 < 8;
        ders.push(DerInput {
            id: format!("der-{}", ders.len()),
            site: s as u32,
            rated_kw: if battery {
                rng.range(3.0, 10.0)
            } else {
                rng.range(1.0, 4.0)
            },
            storage: battery.then(|| Storage {
                capacity_kwh: rng.range(8.0, 20.0),
                soc_pct: rng.range(30.0, 100.0),
                reserve_pct: rng.range(10.0, 20.0),
            }),
            dispatch_cap_kw: None,
            limits: vec![],
        });
        if s.is_multiple_of(5) && ders.len() < n {
            ders.push(DerInput {
                id: format!("der-{}", ders.len()),
                site: s as u32,
                rated_kw: rng.range(1.0, 3.0),
                storage: None,
                dispatch_cap_kw: None,
                limits: vec![],
            });
        }
    }
    let zones = sites.len().div_ceil(SITES_PER_ZONE);
    let zone_rating: Vec<f64> = {
        let mut v = vec![0.0; zones];
        for d in &ders {
            v[d.site as usize / SITES_PER_ZONE] += d.rated_kw;
        }
        v
    };
    Problem {
        steps,
        ders,
        sites,
        zones: (0..zones)
            .map(|z| ZoneInput {
                id: format!("tx-{z}"),
                // Every seventh transformer is tight.
                limits: vec![FlowLimits {
                    export_kw: Some(if z.is_multiple_of(7) { 0.1 } else { 0.6 } * zone_rating[z]),
                    import_kw: None,
                }],
            })
            .collect(),
        group_limits: vec![],
    }
}

fn request(kw: f64, start: i64, dur: i64) -> DispatchRequest {
    DispatchRequest {
        id: "bench".into(),
        target: Target::Group {
            group_id: "all".into(),
        },
        direction: Direction::Discharge,
        power_kw: kw,
        start,
        duration_s: dur,
        ramp: Ramp::Staggered { over_s: 120 },
        priority: 0,
        source: RequestSource::Operator,
        pacing: Pacing::AsLongAsPossible,
    }
}

/// Per-step kW of a baseline, step-major like [`Plan::dispatch_kw`].
fn proportional(p: &Problem, want: f64) -> Vec<f64> {
    let n = p.ders.len();
    let k = p.step_count();
    let rated: f64 = p.ders.iter().map(|d| d.rated_kw).sum();
    let f = (want / rated).min(1.0);
    let mut left: Vec<f64> = p
        .ders
        .iter()
        .map(|d| {
            d.storage.map_or(f64::INFINITY, |s| {
                s.capacity_kwh * (s.soc_pct - s.reserve_pct) / 100.0
            })
        })
        .collect();
    let mut out = vec![0.0; n * k];
    for j in 0..k {
        let h = (p.steps[j + 1] - p.steps[j]) as f64 / 3600.0;
        for (i, d) in p.ders.iter().enumerate() {
            let kw = (d.rated_kw * f).min(left[i].max(0.0) / h);
            left[i] -= kw * h;
            out[j * n + i] = kw;
        }
    }
    out
}

fn greedy_soc(p: &Problem, want: f64) -> Vec<f64> {
    let n = p.ders.len();
    let k = p.step_count();
    let mut left: Vec<f64> = p
        .ders
        .iter()
        .map(|d| {
            d.storage.map_or(f64::INFINITY, |s| {
                s.capacity_kwh * (s.soc_pct - s.reserve_pct) / 100.0
            })
        })
        .collect();
    let soc = |d: &DerInput| d.storage.map_or(100.0, |s| s.soc_pct);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| soc(&p.ders[b]).total_cmp(&soc(&p.ders[a])));
    let mut out = vec![0.0; n * k];
    for j in 0..k {
        let h = (p.steps[j + 1] - p.steps[j]) as f64 / 3600.0;
        let mut need = want;
        for &i in &order {
            if need <= 0.0 {
                break;
            }
            let kw = p.ders[i].rated_kw.min(left[i].max(0.0) / h).min(need);
            left[i] -= kw * h;
            need -= kw;
            out[j * n + i] = kw;
        }
    }
    out
}

/// What a per-step allocation does to the envelopes and the fleet, in the first step.
struct Quality {
    delivered_kw: f64,
    site_violations: usize,
    zone_violations: usize,
    /// The earliest any dispatching battery reaches its reserve at first-step powers, hours
    /// (greedy draining makes this short; balanced allocation makes it as long as it can).
    first_empty_h: f64,
}

fn quality(p: &Problem, kw: &[f64], self_kw: Option<&[f64]>) -> Quality {
    let mut site_out = vec![0.0; p.sites.len()];
    let mut lo = f64::INFINITY;
    let mut delivered = 0.0;
    for (i, d) in p.ders.iter().enumerate() {
        let own = self_kw.map_or(0.0, |s| s[i]);
        // A baseline that ignores self-consumption leaves the subscriber's load to the
        // grid; the site exports dispatch + own - load either way.
        site_out[d.site as usize] += kw[i] + own;
        delivered += kw[i];
        if let Some(st) = d.storage
            && kw[i] > 1e-9
        {
            let e = st.capacity_kwh * (st.soc_pct - st.reserve_pct) / 100.0;
            let tte = e / (kw[i] + own);
            lo = lo.min(tte);
        }
    }
    let mut zone_out = vec![0.0; p.zones.len()];
    let mut site_violations = 0;
    for (s, site) in p.sites.iter().enumerate() {
        let export = site_out[s] - site.load_kw[0];
        if export > site.limits[0].export_kw.unwrap_or(f64::INFINITY) + 1e-6 {
            site_violations += 1;
        }
        zone_out[site.zone.unwrap_or(0) as usize] += export;
    }
    let zone_violations = p
        .zones
        .iter()
        .enumerate()
        .filter(|(z, zone)| zone_out[*z] > zone.limits[0].export_kw.unwrap_or(f64::INFINITY) + 1e-6)
        .count();
    Quality {
        delivered_kw: delivered,
        site_violations,
        zone_violations,
        first_empty_h: lo,
    }
}

fn best_of<T>(reps: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut last = None;
    for _ in 0..reps {
        let t = Instant::now();
        let r = black_box(f());
        best = best.min(t.elapsed());
        last = Some(r);
    }
    (best, last.expect("at least one rep"))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn main() {
    let sizes: Vec<usize> = std::env::var("SWITCHYARD_BENCH_DISPATCH_SIZES")
        .unwrap_or_else(|_| "100000,1000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .replace('_', "")
                .parse()
                .expect("sizes are numbers")
        })
        .collect();
    let start = 1_782_914_400;
    println!(
        "| DERs | method | steps | time (best of {REPS}) | delivered, step 1 | sites over limit | transformers over limit | first battery at reserve |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for &n in &sizes {
        for steps in [1usize, 8] {
            let end = start + if steps == 1 { STEP_S } else { HOURS * 3600 };
            let p = fleet(n, Problem::uniform_steps(start, end, STEP_S));
            let rated: f64 = p.ders.iter().map(|d| d.rated_kw).sum();
            let want = 0.4 * rated;
            let req = request(want, start, end - start);
            let (t, plan): (Duration, Plan) =
                best_of(REPS, || allocate(&req, &p).expect("valid problem"));
            let q = quality(
                &p,
                &plan.dispatch_kw[..n],
                Some(&plan.self_consumption_kw[..n]),
            );
            let row = |name: &str, t: Duration, q: &Quality| {
                println!(
                    "| {} | {name} | {steps} | {} | {:.1}% | {} | {} | {:.2} h |",
                    thousands(n),
                    ms(t),
                    100.0 * q.delivered_kw / want,
                    q.site_violations,
                    q.zone_violations,
                    q.first_empty_h
                );
            };
            row("allocator", t, &q);
            let (t, kw) = best_of(REPS, || proportional(&p, want));
            row("proportional", t, &quality(&p, &kw[..n], None));
            let (t, kw) = best_of(REPS, || greedy_soc(&p, want));
            row("greedy-soc", t, &quality(&p, &kw[..n], None));
            if steps == 8 {
                let (t, offs) = best_of(REPS, || {
                    activation_offsets(&plan, Ramp::Staggered { over_s: 120 })
                });
                eprintln!(
                    "  {n} DERs: staggered activation offsets in {} (last offset {} s)",
                    ms(t),
                    offs.iter().max().unwrap_or(&0)
                );
                eprintln!(
                    "  {n} DERs: plan delivers {:.1}% of the request over the window, binding in step 1: {:?}",
                    100.0 * plan.report.iter().map(|r| r.delivered_kw).sum::<f64>()
                        / (want * steps as f64),
                    plan.report[0]
                        .binding
                        .iter()
                        .map(|b| (b.constraint, b.count))
                        .collect::<Vec<_>>()
                );
            }
        }
    }
}
