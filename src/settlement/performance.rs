//! Event performance: what each resource delivered against its baseline in each event
//! interval, and the sum over an aggregate (a group, a site list or a dispatch plan).
//! Pure functions; [`super::store`] loads the data and keeps the results.
//!
//! A resource is a revenue meter. For a load reduction (`discharge`), delivered energy is
//! `baseline - metered`; for a load increase (`charge`), `metered - baseline`. Every event
//! interval needs a metered value: performance on partial data is not settlement-grade,
//! so a resource with a gap in the window is reported as failed with the intervals
//! missing, and left out of the aggregate's sums.

use super::baseline::{self, Baseline, BaselineConfig, BaselineError, Day, Series, Window};
use crate::dispatch::Direction;
use crate::domain::EpochSeconds;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// One event interval of one resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct IntervalPerformance {
    pub start: EpochSeconds,
    pub baseline_wh: f64,
    pub metered_wh: f64,
    pub delivered_wh: f64,
}

/// One resource's performance over the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourcePerformance {
    /// The meter's id.
    pub resource_id: String,
    pub site_id: String,
    pub baseline_kwh: f64,
    pub metered_kwh: f64,
    pub delivered_kwh: f64,
    /// The baseline as computed (days used, adjustment).
    pub baseline: Baseline,
    pub intervals: Vec<IntervalPerformance>,
}

/// Why a resource has no performance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// Event intervals without metered data.
    MissingMeterData,
    /// The baseline could not be computed (not enough history, no adjustment data).
    NoBaseline,
}

/// A resource of the aggregate without a performance, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResourceFailure {
    pub resource_id: String,
    pub site_id: String,
    pub kind: FailureKind,
    pub detail: String,
    /// Event intervals with no metered value (for `missing_meter_data`).
    pub missing_intervals: Vec<EpochSeconds>,
}

/// What an event asked of an aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventSpec {
    /// The event's id (a dispatch plan id, or the caller's id for an ad hoc event).
    pub event_id: String,
    pub window: Window,
    pub direction: Direction,
    /// Requested change of the aggregate's net power, kW, if known.
    pub requested_kw: Option<f64>,
}

/// The aggregate's performance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AggregatePerformance {
    pub event_id: String,
    /// `plan` or `event`.
    pub source: String,
    /// What the event targeted, e.g. `group:feeder-f1`.
    pub target: String,
    pub window: Window,
    pub direction: Direction,
    pub requested_kw: Option<f64>,
    pub requested_kwh: Option<f64>,
    /// Sums over the resources with a performance.
    pub baseline_kwh: f64,
    pub metered_kwh: f64,
    pub delivered_kwh: f64,
    /// `delivered_kwh / requested_kwh`, when something was requested.
    pub performance_ratio: Option<f64>,
    /// Per-interval sums over the resources with a performance.
    pub intervals: Vec<IntervalPerformance>,
    pub resources: Vec<ResourcePerformance>,
    pub failed: Vec<ResourceFailure>,
    pub baseline_config: BaselineConfig,
    pub computed_at: EpochSeconds,
}

/// One resource's input: its meter, site, metering interval and net series.
pub struct ResourceData<'a> {
    pub resource_id: &'a str,
    pub site_id: &'a str,
    pub interval_s: i64,
    pub series: &'a Series,
}

/// The performance of one resource, or why it has none.
pub fn resource(
    data: &ResourceData<'_>,
    event: &EventSpec,
    event_days: &BTreeSet<Day>,
    cfg: &BaselineConfig,
) -> Result<ResourcePerformance, ResourceFailure> {
    let fail = |kind, detail: String, missing| ResourceFailure {
        resource_id: data.resource_id.to_string(),
        site_id: data.site_id.to_string(),
        kind,
        detail,
        missing_intervals: missing,
    };
    let base = baseline::compute(data.series, data.interval_s, event.window, event_days, cfg)
        .map_err(|e: BaselineError| fail(FailureKind::NoBaseline, e.to_string(), Vec::new()))?;
    let missing: Vec<EpochSeconds> = base
        .intervals
        .iter()
        .map(|i| i.start)
        .filter(|t| !data.series.contains_key(t))
        .collect();
    if !missing.is_empty() {
        return Err(fail(
            FailureKind::MissingMeterData,
            format!(
                "meter {} has no data for {} of {} event interval(s), the first starting {}",
                data.resource_id,
                missing.len(),
                base.intervals.len(),
                missing[0]
            ),
            missing,
        ));
    }
    let sign = match event.direction {
        Direction::Discharge => 1.0,
        Direction::Charge => -1.0,
    };
    let intervals: Vec<IntervalPerformance> = base
        .intervals
        .iter()
        .map(|i| {
            let metered = data.series[&i.start];
            IntervalPerformance {
                start: i.start,
                baseline_wh: i.baseline_wh,
                metered_wh: metered,
                delivered_wh: sign * (i.baseline_wh - metered),
            }
        })
        .collect();
    let kwh = |f: fn(&IntervalPerformance) -> f64| intervals.iter().map(f).sum::<f64>() / 1000.0;
    Ok(ResourcePerformance {
        resource_id: data.resource_id.to_string(),
        site_id: data.site_id.to_string(),
        baseline_kwh: kwh(|i| i.baseline_wh),
        metered_kwh: kwh(|i| i.metered_wh),
        delivered_kwh: kwh(|i| i.delivered_wh),
        baseline: base,
        intervals,
    })
}

/// Sums resource results into the aggregate's performance. Resources keep their order.
pub fn aggregate(
    event: &EventSpec,
    source: &str,
    target: &str,
    results: Vec<Result<ResourcePerformance, ResourceFailure>>,
    cfg: &BaselineConfig,
    now: EpochSeconds,
) -> AggregatePerformance {
    let mut resources = Vec::new();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(p) => resources.push(p),
            Err(f) => failed.push(f),
        }
    }
    // Resources may have different metering intervals; the aggregate's intervals are the
    // union of their interval starts.
    let mut sums: std::collections::BTreeMap<EpochSeconds, (f64, f64, f64)> = Default::default();
    for r in &resources {
        for i in &r.intervals {
            let e = sums.entry(i.start).or_default();
            e.0 += i.baseline_wh;
            e.1 += i.metered_wh;
            e.2 += i.delivered_wh;
        }
    }
    let intervals = sums
        .into_iter()
        .map(|(start, (b, m, d))| IntervalPerformance {
            start,
            baseline_wh: b,
            metered_wh: m,
            delivered_wh: d,
        })
        .collect();
    let sum = |f: fn(&ResourcePerformance) -> f64| resources.iter().map(f).sum::<f64>();
    let hours = (event.window.end - event.window.start) as f64 / 3600.0;
    let requested_kwh = event.requested_kw.map(|kw| kw * hours);
    let delivered_kwh = sum(|r| r.delivered_kwh);
    AggregatePerformance {
        event_id: event.event_id.clone(),
        source: source.to_string(),
        target: target.to_string(),
        window: event.window,
        direction: event.direction,
        requested_kw: event.requested_kw,
        requested_kwh,
        baseline_kwh: sum(|r| r.baseline_kwh),
        metered_kwh: sum(|r| r.metered_kwh),
        delivered_kwh,
        performance_ratio: requested_kwh
            .filter(|r| *r > 0.0)
            .map(|r| delivered_kwh / r),
        intervals,
        resources,
        failed,
        baseline_config: cfg.clone(),
        computed_at: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settlement::baseline::AdjustmentKind;

    const WED: EpochSeconds = 1_781_654_400;
    const H: i64 = 3600;

    fn event(direction: Direction) -> EventSpec {
        EventSpec {
            event_id: "ev".into(),
            window: Window {
                start: WED + 14 * H,
                end: WED + 16 * H,
            },
            direction,
            requested_kw: Some(1.0),
        }
    }

    fn series(event_day_drop: f64) -> Series {
        (WED - 30 * 86_400..WED + 86_400)
            .step_by(H as usize)
            .map(|t| {
                let in_event = (WED + 14 * H..WED + 16 * H).contains(&t);
                (
                    t,
                    if in_event {
                        2000.0 - event_day_drop
                    } else {
                        2000.0
                    },
                )
            })
            .collect()
    }

    #[test]
    fn delivered_is_baseline_minus_metered_and_sums() {
        let a = series(500.0);
        let b = series(250.0);
        let mut c = series(0.0);
        c.remove(&(WED + 15 * H));
        let cfg = BaselineConfig::default();
        let ev = event(Direction::Discharge);
        let results: Vec<_> = [("m1", &a), ("m2", &b), ("m3", &c)]
            .iter()
            .map(|(id, s)| {
                resource(
                    &ResourceData {
                        resource_id: id,
                        site_id: "s",
                        interval_s: H,
                        series: s,
                    },
                    &ev,
                    &BTreeSet::new(),
                    &cfg,
                )
            })
            .collect();
        let agg = aggregate(&ev, "event", "sites:s", results, &cfg, 0);
        assert_eq!(agg.resources[0].delivered_kwh, 1.0);
        assert_eq!(agg.resources[1].delivered_kwh, 0.5);
        assert_eq!(agg.delivered_kwh, 1.5);
        assert_eq!(agg.requested_kwh, Some(2.0));
        assert_eq!(agg.performance_ratio, Some(0.75));
        assert_eq!(agg.intervals.len(), 2);
        assert_eq!(agg.intervals[0].delivered_wh, 750.0);
        assert_eq!(agg.failed.len(), 1);
        assert_eq!(agg.failed[0].kind, FailureKind::MissingMeterData);
        assert_eq!(agg.failed[0].missing_intervals, vec![WED + 15 * H]);
    }

    #[test]
    fn a_load_increase_counts_the_other_way() {
        let s = series(-300.0);
        let cfg = BaselineConfig {
            adjustment: crate::settlement::baseline::AdjustmentConfig {
                kind: AdjustmentKind::None,
                ..Default::default()
            },
            ..Default::default()
        };
        let r = resource(
            &ResourceData {
                resource_id: "m",
                site_id: "s",
                interval_s: H,
                series: &s,
            },
            &event(Direction::Charge),
            &BTreeSet::new(),
            &cfg,
        )
        .unwrap();
        assert!((r.delivered_kwh - 0.6).abs() < 1e-12);
    }
}
