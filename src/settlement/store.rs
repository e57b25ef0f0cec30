//! The thin I/O layer of settlement: resolving an event's target to revenue meters,
//! loading their interval series from telemetry, collecting event days, and keeping the
//! results (`settlement_performance`, `settlement_reconciliations`, migration 0014).
//!
//! A meter's series is the net energy per metering interval (`interval_seconds` of the
//! meter): interval-energy readings (`interval_energy_imported_wh` minus
//! `interval_energy_exported_wh`, as a Green Button import stores them) summed into the
//! interval containing their start. Readings flagged `missing` or `out_of_range` are not
//! data and are left out; an interval with no other reading is a gap.

use super::SettlementError;
use super::baseline::{self, Baseline, BaselineConfig, Day, Series, Window};
use super::performance::{self, AggregatePerformance, EventSpec, ResourceData};
use super::reconcile::{self, ReconciliationReport, Tolerance};
use crate::dispatch::records as plans;
use crate::dispatch::{Direction, Target};
use crate::domain::EpochSeconds;
use crate::store::Store;
use crate::store::record::{dynamic, int, text};
use crate::telemetry::{self, Measurand, Quality};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// What an ad hoc event targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind", deny_unknown_fields)]
pub enum SettlementTarget {
    /// The revenue meters at the sites of a group's member DERs.
    Group { group_id: String },
    /// The revenue meters at these sites.
    Sites { site_ids: Vec<String> },
    /// These revenue meters.
    Meters { meter_ids: Vec<String> },
}

impl SettlementTarget {
    fn label(&self) -> String {
        match self {
            SettlementTarget::Group { group_id } => format!("group:{group_id}"),
            SettlementTarget::Sites { site_ids } => format!("sites:{}", site_ids.join("+")),
            SettlementTarget::Meters { meter_ids } => format!("meters:{}", meter_ids.join("+")),
        }
    }
}

fn discharge() -> Direction {
    Direction::Discharge
}

/// An event that is not a stored dispatch plan (an ISO or program event, say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdHocEvent {
    pub id: String,
    /// Window start, epoch seconds.
    pub start: EpochSeconds,
    /// Window end, epoch seconds (exclusive).
    pub end: EpochSeconds,
    #[serde(default = "discharge")]
    pub direction: Direction,
    /// Requested change of the aggregate's net power, kW.
    #[serde(default)]
    pub requested_kw: Option<f64>,
    pub target: SettlementTarget,
}

/// The body of `POST /api/v1/settlement/performance`: exactly one of `plan_id` and `event`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PerformanceRequest {
    /// A stored dispatch plan: its window, direction, requested power and target.
    #[serde(default)]
    pub plan_id: Option<String>,
    #[serde(default)]
    pub event: Option<AdHocEvent>,
    #[serde(default)]
    pub baseline: BaselineConfig,
    /// Further event days to leave out of baselines, `YYYY-MM-DD` (days of stored plans and
    /// of other computed events are left out already).
    #[serde(default)]
    pub exclude_days: Vec<String>,
}

/// The body of `POST /api/v1/settlement/baseline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BaselineRequest {
    pub meter_id: String,
    pub start: EpochSeconds,
    pub end: EpochSeconds,
    #[serde(default)]
    pub baseline: BaselineConfig,
    #[serde(default)]
    pub exclude_days: Vec<String>,
}

/// A revenue meter of an event.
#[derive(Debug, Clone, PartialEq)]
struct MeterRef {
    id: String,
    site_id: String,
    interval_s: i64,
}

fn meter_ref(row: &sqlx::any::AnyRow) -> Result<MeterRef, SettlementError> {
    Ok(MeterRef {
        id: text(row, "id")?,
        site_id: text(row, "site_id")?,
        interval_s: int(row, "interval_seconds")?,
    })
}

async fn exists(store: &Store, table: &str, id: &str) -> Result<bool, SettlementError> {
    Ok(dynamic(format!("SELECT 1 FROM {table} WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(store.pool())
        .await?
        .is_some())
}

const METER_COLUMNS: &str = "m.id, m.site_id, m.interval_seconds";

/// The revenue meters of `target`, in id order; unknown ids are refused.
async fn meters_of(
    store: &Store,
    target: &SettlementTarget,
    field: &str,
) -> Result<Vec<MeterRef>, SettlementError> {
    let mut out = Vec::new();
    match target {
        SettlementTarget::Group { group_id } => {
            if !exists(store, "der_groups", group_id).await? {
                return Err(SettlementError::Unknown {
                    field: format!("{field}.group_id"),
                    kind: "group",
                    id: group_id.clone(),
                });
            }
            let sql = format!(
                "SELECT {METER_COLUMNS} FROM meters m WHERE m.revenue_grade <> 0 AND m.site_id IN \
                 (SELECT d.site_id FROM group_members gm JOIN ders d ON d.id = gm.der_id \
                 WHERE gm.group_id = $1) ORDER BY m.id"
            );
            for r in dynamic(sql)
                .bind(group_id.clone())
                .fetch_all(store.pool())
                .await?
            {
                out.push(meter_ref(&r)?);
            }
        }
        SettlementTarget::Sites { site_ids } => {
            if site_ids.is_empty() {
                return Err(SettlementError::invalid(
                    format!("{field}.site_ids"),
                    "the list is empty",
                ));
            }
            for (i, s) in site_ids.iter().enumerate() {
                if !exists(store, "sites", s).await? {
                    return Err(SettlementError::Unknown {
                        field: format!("{field}.site_ids[{i}]"),
                        kind: "site",
                        id: s.clone(),
                    });
                }
                let sql = format!(
                    "SELECT {METER_COLUMNS} FROM meters m WHERE m.revenue_grade <> 0 AND m.site_id = $1 ORDER BY m.id"
                );
                for r in dynamic(sql).bind(s.clone()).fetch_all(store.pool()).await? {
                    out.push(meter_ref(&r)?);
                }
            }
        }
        SettlementTarget::Meters { meter_ids } => {
            if meter_ids.is_empty() {
                return Err(SettlementError::invalid(
                    format!("{field}.meter_ids"),
                    "the list is empty",
                ));
            }
            for (i, m) in meter_ids.iter().enumerate() {
                out.push(one_meter(store, m, &format!("{field}.meter_ids[{i}]")).await?);
            }
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out.dedup_by(|a, b| a.id == b.id);
    Ok(out)
}

async fn one_meter(store: &Store, id: &str, field: &str) -> Result<MeterRef, SettlementError> {
    let row = dynamic(format!(
        "SELECT {METER_COLUMNS}, m.revenue_grade FROM meters m WHERE m.id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(store.pool())
    .await?
    .ok_or_else(|| SettlementError::Unknown {
        field: field.to_string(),
        kind: "meter",
        id: id.to_string(),
    })?;
    if int(&row, "revenue_grade")? == 0 {
        return Err(SettlementError::invalid(
            field,
            format!("meter '{id}' is not revenue grade; settlement uses revenue meters only"),
        ));
    }
    meter_ref(&row)
}

/// The net interval series of `meter` over `[from, to)`.
pub async fn load_series(
    store: &Store,
    meter: &str,
    interval_s: i64,
    from: EpochSeconds,
    to: EpochSeconds,
) -> Result<Series, SettlementError> {
    let mut series = Series::new();
    for r in telemetry::query(store, meter, None, from, to).await? {
        let sign = match r.measurand {
            Measurand::IntervalEnergyImported => 1.0,
            Measurand::IntervalEnergyExported => -1.0,
            _ => continue,
        };
        if matches!(r.quality, Quality::Missing | Quality::OutOfRange) {
            continue;
        }
        let start = r.instant - r.instant.rem_euclid(interval_s);
        *series.entry(start).or_insert(0.0) += sign * r.value;
    }
    Ok(series)
}

fn days_of(w: Window, utc_offset_s: i32, into: &mut BTreeSet<Day>) {
    if w.end > w.start {
        let first = baseline::day_of(w.start, utc_offset_s);
        let last = baseline::day_of(w.end - 1, utc_offset_s);
        into.extend(first..=last);
    }
}

/// Event days: the days of every stored dispatch plan and every other computed event, and
/// the listed extra days.
async fn event_days(
    store: &Store,
    except_event: Option<&str>,
    extra: &[String],
    utc_offset_s: i32,
) -> Result<BTreeSet<Day>, SettlementError> {
    let mut days = BTreeSet::new();
    for (i, d) in extra.iter().enumerate() {
        days.insert(baseline::parse_date(d).ok_or_else(|| {
            SettlementError::invalid(
                format!("exclude_days[{i}]"),
                format!("'{d}' is not a YYYY-MM-DD date"),
            )
        })?);
    }
    for r in sqlx::query("SELECT window_start, window_end FROM dispatch_plans")
        .fetch_all(store.pool())
        .await?
    {
        let w = Window {
            start: int(&r, "window_start")?,
            end: int(&r, "window_end")?,
        };
        days_of(w, utc_offset_s, &mut days);
    }
    for r in sqlx::query("SELECT event_id, window_start, window_end FROM settlement_performance")
        .fetch_all(store.pool())
        .await?
    {
        if Some(text(&r, "event_id")?.as_str()) == except_event {
            continue;
        }
        let w = Window {
            start: int(&r, "window_start")?,
            end: int(&r, "window_end")?,
        };
        days_of(w, utc_offset_s, &mut days);
    }
    Ok(days)
}

/// The span of history a baseline over `w` may read.
fn history_span(w: Window, cfg: &BaselineConfig) -> (EpochSeconds, EpochSeconds) {
    (w.start - (i64::from(cfg.lookback_days) + 2) * 86_400, w.end)
}

/// The baseline of one meter over a window; nothing is stored.
pub async fn baseline_for_meter(
    store: &Store,
    req: &BaselineRequest,
) -> Result<Baseline, SettlementError> {
    let m = one_meter(store, &req.meter_id, "meter_id").await?;
    let window = Window {
        start: req.start,
        end: req.end,
    };
    req.baseline.validate(m.interval_s)?;
    let days = event_days(store, None, &req.exclude_days, req.baseline.utc_offset_s).await?;
    let (from, to) = history_span(window, &req.baseline);
    let series = load_series(store, &m.id, m.interval_s, from, to).await?;
    Ok(baseline::compute(
        &series,
        m.interval_s,
        window,
        &days,
        &req.baseline,
    )?)
}

/// The event of a request: from the stored plan or the ad hoc description.
async fn event_of(
    store: &Store,
    req: &PerformanceRequest,
) -> Result<(EventSpec, &'static str, SettlementTarget), SettlementError> {
    match (&req.plan_id, &req.event) {
        (Some(_), Some(_)) | (None, None) => Err(SettlementError::invalid(
            "plan_id",
            "give exactly one of plan_id and event",
        )),
        (Some(id), None) => {
            let plan = plans::get(store, id)
                .await?
                .ok_or_else(|| SettlementError::UnknownEvent(id.clone()))?;
            let target: Target = serde_json::from_value(plan.body["request"]["target"].clone())
                .map_err(|e| crate::store::StoreError::Corrupt(format!("plan {id} target: {e}")))?;
            let direction = if plan.direction == "charge" {
                Direction::Charge
            } else {
                Direction::Discharge
            };
            let target = match target {
                Target::Group { group_id } => SettlementTarget::Group { group_id },
                Target::Sites { site_ids } => SettlementTarget::Sites { site_ids },
            };
            Ok((
                EventSpec {
                    event_id: plan.id,
                    window: Window {
                        start: plan.window_start,
                        end: plan.window_end,
                    },
                    direction,
                    requested_kw: Some(plan.power_kw),
                },
                "plan",
                target,
            ))
        }
        (None, Some(e)) => {
            if e.id.trim().is_empty() {
                return Err(SettlementError::invalid("event.id", "must not be empty"));
            }
            if let Some(kw) = e.requested_kw
                && !(kw.is_finite() && kw >= 0.0)
            {
                return Err(SettlementError::invalid(
                    "event.requested_kw",
                    format!("must be a non-negative number, got {kw}"),
                ));
            }
            if e.end <= e.start {
                return Err(SettlementError::invalid(
                    "event.end",
                    format!("must be after start ({}), got {}", e.start, e.end),
                ));
            }
            Ok((
                EventSpec {
                    event_id: e.id.clone(),
                    window: Window {
                        start: e.start,
                        end: e.end,
                    },
                    direction: e.direction,
                    requested_kw: e.requested_kw,
                },
                "event",
                e.target.clone(),
            ))
        }
    }
}

/// Computes the performance of an event, stores it (replacing an earlier computation of
/// the same event) and returns it. Refused requests store nothing.
pub async fn performance(
    store: &Store,
    req: &PerformanceRequest,
    now: EpochSeconds,
) -> Result<AggregatePerformance, SettlementError> {
    let (event, source, target) = event_of(store, req).await?;
    let meters = meters_of(store, &target, "event.target").await?;
    let label = target.label();
    if meters.is_empty() {
        return Err(SettlementError::NoResources(label));
    }
    let cfg = &req.baseline;
    for m in &meters {
        cfg.validate(m.interval_s)?;
        let w = event.window;
        if w.start.rem_euclid(m.interval_s) != 0 || w.end.rem_euclid(m.interval_s) != 0 {
            return Err(baseline::BaselineError::NotAligned {
                start: w.start,
                end: w.end,
                interval_s: m.interval_s,
            }
            .into());
        }
        if w.end - w.start > 86_400 {
            return Err(baseline::BaselineError::BadWindow {
                start: w.start,
                end: w.end,
            }
            .into());
        }
    }
    let days = event_days(
        store,
        Some(&event.event_id),
        &req.exclude_days,
        cfg.utc_offset_s,
    )
    .await?;
    let (from, to) = history_span(event.window, cfg);
    let mut results = Vec::with_capacity(meters.len());
    let mut any_data = false;
    for m in &meters {
        let series = load_series(store, &m.id, m.interval_s, from, to).await?;
        any_data |= series
            .range(event.window.start..event.window.end)
            .next()
            .is_some();
        results.push(performance::resource(
            &ResourceData {
                resource_id: &m.id,
                site_id: &m.site_id,
                interval_s: m.interval_s,
                series: &series,
            },
            &event,
            &days,
            cfg,
        ));
    }
    if !any_data {
        return Err(SettlementError::NoData {
            target: label,
            meters: meters.len(),
            start: event.window.start,
            end: event.window.end,
        });
    }
    let perf = performance::aggregate(&event, source, &label, results, cfg, now);
    let body = serde_json::to_string(&perf)
        .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO settlement_performance \
         (event_id, source, target, window_start, window_end, delivered_kwh, body, computed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (event_id) DO UPDATE SET source = excluded.source, target = excluded.target, \
         window_start = excluded.window_start, window_end = excluded.window_end, \
         delivered_kwh = excluded.delivered_kwh, body = excluded.body, computed_at = excluded.computed_at",
    )
    .bind(perf.event_id.clone())
    .bind(perf.source.clone())
    .bind(perf.target.clone())
    .bind(perf.window.start)
    .bind(perf.window.end)
    .bind(perf.delivered_kwh)
    .bind(body)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(perf)
}

fn decode<T: serde::de::DeserializeOwned>(body: &str, what: &str) -> Result<T, SettlementError> {
    serde_json::from_str(body)
        .map_err(|e| crate::store::StoreError::Corrupt(format!("{what}: {e}")).into())
}

/// The stored performance of an event.
pub async fn get_performance(
    store: &Store,
    event_id: &str,
) -> Result<AggregatePerformance, SettlementError> {
    let row = sqlx::query("SELECT body FROM settlement_performance WHERE event_id = $1")
        .bind(event_id.to_string())
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| SettlementError::UnknownEvent(event_id.to_string()))?;
    decode(&text(&row, "body")?, "settlement_performance.body")
}

/// Parses a statement, matches it against the stored performance of its events, stores the
/// report and returns it. A malformed statement stores nothing.
pub async fn reconcile_statement(
    store: &Store,
    csv: &[u8],
    tolerance: Tolerance,
    now: EpochSeconds,
) -> Result<ReconciliationReport, SettlementError> {
    tolerance
        .validate()
        .map_err(|(f, r)| SettlementError::invalid(f, r))?;
    let lines = reconcile::parse_statement(csv)?;
    let mut performances = HashMap::new();
    for l in &lines {
        if performances.contains_key(&l.event_id) {
            continue;
        }
        match get_performance(store, &l.event_id).await {
            Ok(p) => {
                performances.insert(l.event_id.clone(), p);
            }
            Err(SettlementError::UnknownEvent(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let id = uuid::Uuid::now_v7().to_string();
    let report = reconcile::reconcile(&id, &lines, &performances, tolerance, now);
    let body = serde_json::to_string(&report)
        .map_err(|e| crate::store::StoreError::Corrupt(e.to_string()))?;
    sqlx::query(
        "INSERT INTO settlement_reconciliations (id, lines, flagged, body, created_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(report.lines as i64)
    .bind(report.flagged as i64)
    .bind(body)
    .bind(now)
    .execute(store.pool())
    .await?;
    Ok(report)
}

/// A stored reconciliation report.
pub async fn get_reconciliation(
    store: &Store,
    id: &str,
) -> Result<ReconciliationReport, SettlementError> {
    let row = sqlx::query("SELECT body FROM settlement_reconciliations WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(store.pool())
        .await?
        .ok_or_else(|| SettlementError::UnknownReconciliation(id.to_string()))?;
    decode(&text(&row, "body")?, "settlement_reconciliations.body")
}
