//! Stored interval aggregates per source, and their revision when late data lands.
//!
//! [`compute`] aligns a source's readings of one measurand to a grid ([`super::align`]) and
//! stores each *closed* interval (its end plus the alignment's `max_gap_s` has passed, so
//! readings on time can no longer change it) in `telemetry_aggregates`. An interval already
//! stored is never overwritten by `compute`.
//!
//! When readings are inserted afterwards ([`revise_in`], called by the insert path in the
//! same transaction as the insert), every stored interval they can affect is recomputed:
//! the span from the stored reading before the earliest new one to the stored reading
//! after the latest, because interpolation and register differences reach that far. An
//! interval whose value, quality or sample count changed is updated (its `revision` goes
//! up) and a row is added to `telemetry_revisions` with the old and new values, the
//! reading that caused it and when. Late data is therefore never dropped silently, and an
//! aggregate that was used (billed, reported) can be traced to why it moved.

use super::align::{self, Aligned, Grid, Kind, Point, Rules};
use super::{Measurand, Quality, Reading, TelemetryError};
use crate::domain::EpochSeconds;
use crate::store::Store;
use crate::store::record::{Value, dynamic, int, opt_float, parsed, text};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::collections::{BTreeSet, HashMap};
use utoipa::ToSchema;

/// Source ids per existence query: well under both engines' parameter limits.
const SOURCES_PER_QUERY: usize = 500;

/// One stored aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AggregateRow {
    pub source_id: String,
    pub measurand: Measurand,
    pub grid: Grid,
    pub start: EpochSeconds,
    pub end: EpochSeconds,
    pub value: Option<f64>,
    pub quality: Quality,
    pub coverage_s: i64,
    pub samples: i64,
    pub max_gap_s: i64,
    /// 0 when first computed; one more per revision.
    pub revision: i64,
    pub computed_at: EpochSeconds,
}

/// One revision of a stored aggregate.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Revision {
    /// UUID v7: ids sort in revision order.
    pub id: String,
    pub source_id: String,
    pub measurand: Measurand,
    pub grid: Grid,
    pub interval_start: EpochSeconds,
    /// The aggregate's revision number after this change.
    pub revision: i64,
    pub old_value: Option<f64>,
    pub new_value: Option<f64>,
    pub old_quality: Quality,
    pub new_quality: Quality,
    pub old_samples: i64,
    pub new_samples: i64,
    /// The reading that caused it: the one of the batch nearest the interval.
    pub cause_instant: EpochSeconds,
    pub cause_value: f64,
    pub cause_received_at: EpochSeconds,
    /// How many readings of that batch (same source and measurand) there were.
    pub cause_readings: i64,
    pub revised_at: EpochSeconds,
}

/// What [`compute`] is asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeRequest {
    pub source_id: String,
    pub measurand: Measurand,
    pub grid: Grid,
    pub from: EpochSeconds,
    pub to: EpochSeconds,
    pub max_gap_s: i64,
}

/// The readings of one source and measurand in `[from, to]`, plus the nearest one on each
/// side: what alignment over `[from, to)` needs to interpolate at the edges.
async fn load_span(
    conn: &mut AnyConnection,
    source_id: &str,
    measurand: Measurand,
    from: EpochSeconds,
    to: EpochSeconds,
) -> Result<Vec<Point>, TelemetryError> {
    let point = |r: &AnyRow| -> Result<Point, TelemetryError> {
        Ok(Point {
            instant: int(r, "instant")?,
            value: crate::store::record::float(r, "value")?,
        })
    };
    let base = "SELECT instant, value FROM readings WHERE source_id = $1 AND measurand = $2";
    let mut pts = Vec::new();
    if let Some(r) = dynamic(format!(
        "{base} AND instant < $3 ORDER BY instant DESC LIMIT 1"
    ))
    .bind(source_id.to_string())
    .bind(measurand.as_str())
    .bind(from)
    .fetch_optional(&mut *conn)
    .await?
    {
        pts.push(point(&r)?);
    }
    for r in dynamic(format!(
        "{base} AND instant >= $3 AND instant <= $4 ORDER BY instant"
    ))
    .bind(source_id.to_string())
    .bind(measurand.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?
    {
        pts.push(point(&r)?);
    }
    if let Some(r) = dynamic(format!("{base} AND instant > $3 ORDER BY instant LIMIT 1"))
        .bind(source_id.to_string())
        .bind(measurand.as_str())
        .bind(to)
        .fetch_optional(&mut *conn)
        .await?
    {
        pts.push(point(&r)?);
    }
    Ok(pts)
}

const AGG_COLUMNS: &str = "source_id, measurand, grid_s, interval_start, value, quality, \
                           coverage_s, samples, max_gap_s, revision, computed_at";

fn agg_from_row(r: &AnyRow) -> Result<AggregateRow, TelemetryError> {
    let grid_s = int(r, "grid_s")?;
    let grid = Grid::from_seconds(grid_s).ok_or_else(|| {
        crate::store::StoreError::Corrupt(format!("grid_s: {grid_s} is not a grid"))
    })?;
    let start = int(r, "interval_start")?;
    Ok(AggregateRow {
        source_id: text(r, "source_id")?,
        measurand: parsed(r, "measurand")?,
        grid,
        start,
        end: start + grid_s,
        value: opt_float(r, "value")?,
        quality: parsed(r, "quality")?,
        coverage_s: int(r, "coverage_s")?,
        samples: int(r, "samples")?,
        max_gap_s: int(r, "max_gap_s")?,
        revision: int(r, "revision")?,
        computed_at: int(r, "computed_at")?,
    })
}

/// Aligns and stores the closed intervals of `[req.from, req.to)`; intervals already
/// stored are kept as they are. Returns the stored rows of the range (closed part only).
pub async fn compute(
    store: &Store,
    req: &ComputeRequest,
    now: EpochSeconds,
) -> Result<Vec<AggregateRow>, TelemetryError> {
    let step = req.grid.seconds();
    // Validate the whole request (grid alignment, size, rules) before clipping it.
    align::align(
        Kind::of(req.measurand),
        &[],
        req.grid,
        req.from,
        req.to,
        Rules {
            max_gap_s: req.max_gap_s,
            interval_s: None,
        },
    )?;
    let closed = (now - req.max_gap_s).div_euclid(step) * step;
    let to = req.to.min(closed);
    let mut tx = store.pool().begin().await?;
    if to > req.from {
        let pts = load_span(&mut tx, &req.source_id, req.measurand, req.from, to).await?;
        let aligned = align::align(
            Kind::of(req.measurand),
            &pts,
            req.grid,
            req.from,
            to,
            Rules {
                max_gap_s: req.max_gap_s,
                interval_s: None,
            },
        )?;
        for chunk in aligned.chunks(200) {
            let mut sql = format!("INSERT INTO telemetry_aggregates ({AGG_COLUMNS}) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let marks: Vec<String> = (1..=11).map(|c| format!("${}", i * 11 + c)).collect();
                sql.push_str(&format!("({})", marks.join(", ")));
            }
            sql.push_str(" ON CONFLICT (source_id, measurand, grid_s, interval_start) DO NOTHING");
            let mut q = dynamic(sql);
            for a in chunk {
                q = q
                    .bind(req.source_id.clone())
                    .bind(req.measurand.as_str())
                    .bind(step)
                    .bind(a.start);
                q = Value::Float(a.value).bind_to(q);
                q = q
                    .bind(a.quality.as_str())
                    .bind(a.coverage_s)
                    .bind(i64::from(a.samples))
                    .bind(req.max_gap_s)
                    .bind(0i64)
                    .bind(now);
            }
            q.execute(&mut *tx).await?;
        }
    }
    let rows = query_in(
        &mut tx,
        &req.source_id,
        req.measurand,
        req.grid,
        req.from,
        to,
    )
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// The stored aggregates of one source, measurand and grid with `from <= start < to`.
pub async fn query(
    store: &Store,
    source_id: &str,
    measurand: Measurand,
    grid: Grid,
    from: EpochSeconds,
    to: EpochSeconds,
) -> Result<Vec<AggregateRow>, TelemetryError> {
    if to < from {
        return Err(TelemetryError::EmptyRange { from, to });
    }
    let mut conn = store.pool().acquire().await?;
    query_in(&mut conn, source_id, measurand, grid, from, to).await
}

async fn query_in(
    conn: &mut AnyConnection,
    source_id: &str,
    measurand: Measurand,
    grid: Grid,
    from: EpochSeconds,
    to: EpochSeconds,
) -> Result<Vec<AggregateRow>, TelemetryError> {
    dynamic(format!(
        "SELECT {AGG_COLUMNS} FROM telemetry_aggregates WHERE source_id = $1 AND measurand = $2 \
         AND grid_s = $3 AND interval_start >= $4 AND interval_start < $5 ORDER BY interval_start"
    ))
    .bind(source_id.to_string())
    .bind(measurand.as_str())
    .bind(grid.seconds())
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(agg_from_row)
    .collect()
}

fn differs(old: &AggregateRow, new: &Aligned) -> bool {
    let value_changed = match (old.value, new.value) {
        (Some(a), Some(b)) => (a - b).abs() > 1e-9 * (1.0 + a.abs().max(b.abs())),
        (None, None) => false,
        _ => true,
    };
    value_changed || old.quality != new.quality || old.samples != i64::from(new.samples)
}

/// Recomputes the stored aggregates that `readings` (just inserted on `conn`, received at
/// `now`) can affect, updating those that changed and auditing each change. Costs one
/// query per batch when none of the batch's sources has stored aggregates.
pub async fn revise_in(
    conn: &mut AnyConnection,
    readings: &[Reading],
    now: EpochSeconds,
) -> Result<u64, TelemetryError> {
    if readings.is_empty() {
        return Ok(0);
    }
    let sources: Vec<String> = readings
        .iter()
        .map(|r| r.source_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // (source, measurand, grid) that have stored aggregates, with their alignment rule.
    let mut stored: Vec<(String, Measurand, Grid, i64)> = Vec::new();
    for chunk in sources.chunks(SOURCES_PER_QUERY) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let mut q = dynamic(format!(
            "SELECT source_id, measurand, grid_s, MAX(max_gap_s) AS max_gap_s FROM telemetry_aggregates \
             WHERE source_id IN ({}) GROUP BY source_id, measurand, grid_s",
            marks.join(", ")
        ));
        for s in chunk {
            q = q.bind(s.clone());
        }
        for r in q.fetch_all(&mut *conn).await? {
            let grid_s = int(&r, "grid_s")?;
            if let Some(grid) = Grid::from_seconds(grid_s) {
                stored.push((
                    text(&r, "source_id")?,
                    parsed(&r, "measurand")?,
                    grid,
                    int(&r, "max_gap_s")?,
                ));
            }
        }
    }
    let mut revised = 0;
    let mut by_pair: HashMap<(String, Measurand), Vec<&Reading>> = HashMap::new();
    for r in readings {
        by_pair
            .entry((r.source_id.clone(), r.measurand))
            .or_default()
            .push(r);
    }
    for (source_id, measurand, grid, max_gap_s) in stored {
        let Some(batch) = by_pair.get(&(source_id.clone(), measurand)) else {
            continue;
        };
        revised += revise_pair(conn, &source_id, measurand, grid, max_gap_s, batch, now).await?;
    }
    Ok(revised)
}

/// Queue rows worked off per transaction.
const QUEUE_ROWS_PER_TRANSACTION: i64 = 500;

/// Works off `telemetry_revision_queue` (migration 0019), where the durable writer's native
/// SQLite transactions leave the late-data revisions they owe: for each row, the readings it
/// stands for are read back and [`revise_in`] runs on them, and the row is deleted in the
/// same transaction as the revisions it caused. Rows are taken in arrival order. The
/// revisions are dated by the readings' arrival, as those of the pool path are. Returns
/// how many aggregates were revised.
pub async fn work_off_queue(store: &Store) -> Result<u64, TelemetryError> {
    let mut revised = 0;
    loop {
        let mut tx = store.begin_write().await?;
        let rows = dynamic(format!(
            "SELECT source_id, measurand, received_at, min_instant, max_instant \
             FROM telemetry_revision_queue ORDER BY received_at, source_id, measurand \
             LIMIT {QUEUE_ROWS_PER_TRANSACTION}"
        ))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(revised);
        }
        for row in &rows {
            let source_id = text(row, "source_id")?;
            let measurand = text(row, "measurand")?;
            let received_at = int(row, "received_at")?;
            let readings = dynamic(
                "SELECT source_id, source_kind, measurand, instant, value, quality \
                 FROM readings WHERE source_id = $1 AND measurand = $2 AND instant >= $3 \
                 AND instant <= $4 AND received_at = $5 ORDER BY instant"
                    .to_string(),
            )
            .bind(source_id.clone())
            .bind(measurand.clone())
            .bind(int(row, "min_instant")?)
            .bind(int(row, "max_instant")?)
            .bind(received_at)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(super::store::from_row)
            .collect::<Result<Vec<Reading>, _>>()?;
            revised += revise_in(&mut tx, &readings, received_at).await?;
            dynamic(
                "DELETE FROM telemetry_revision_queue WHERE source_id = $1 AND measurand = $2 \
                 AND received_at = $3"
                    .to_string(),
            )
            .bind(source_id)
            .bind(measurand)
            .bind(received_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    }
}

async fn revise_pair(
    conn: &mut AnyConnection,
    source_id: &str,
    measurand: Measurand,
    grid: Grid,
    max_gap_s: i64,
    batch: &[&Reading],
    now: EpochSeconds,
) -> Result<u64, TelemetryError> {
    let step = grid.seconds();
    let min_t = batch.iter().map(|r| r.instant).min().unwrap_or_default();
    let max_t = batch.iter().map(|r| r.instant).max().unwrap_or_default();
    let neighbour = |sql: &'static str, at: EpochSeconds| {
        dynamic(sql.to_string())
            .bind(source_id.to_string())
            .bind(measurand.as_str())
            .bind(at)
    };
    let prev: Option<i64> = neighbour(
        "SELECT MAX(instant) AS t FROM readings WHERE source_id = $1 AND measurand = $2 AND instant < $3",
        min_t,
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get::<Option<i64>, _>("t")?;
    let next: Option<i64> = neighbour(
        "SELECT MIN(instant) AS t FROM readings WHERE source_id = $1 AND measurand = $2 AND instant > $3",
        max_t,
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get::<Option<i64>, _>("t")?;
    let lo = prev.unwrap_or(min_t);
    // With nothing after it, an interval-energy reading still covers its own interval.
    let hi = next.unwrap_or(max_t + (max_t - lo).max(align::DEFAULT_ENERGY_INTERVAL_S));
    let first = lo.div_euclid(step) * step;
    let rows = query_in(conn, source_id, measurand, grid, first, hi + 1).await?;
    let (Some(a), Some(b)) = (rows.first(), rows.last()) else {
        return Ok(0);
    };
    let (from, to) = (a.start, b.end);
    let pts = load_span(conn, source_id, measurand, from, to).await?;
    let aligned = align::align(
        Kind::of(measurand),
        &pts,
        grid,
        from,
        to,
        Rules {
            max_gap_s,
            interval_s: None,
        },
    )?;
    let mut revised = 0;
    for old in &rows {
        let new = &aligned[((old.start - from) / step) as usize];
        if !differs(old, new) {
            continue;
        }
        // The batch reading nearest the interval names the cause.
        let distance = |t: i64| {
            if t < old.start {
                old.start - t
            } else if t >= old.end {
                t - old.end + 1
            } else {
                0
            }
        };
        let cause = batch
            .iter()
            .min_by_key(|r| (distance(r.instant), r.instant))
            .expect("batch is not empty");
        let revision = old.revision + 1;
        let mut q = dynamic(
            "UPDATE telemetry_aggregates SET value = $1, quality = $2, coverage_s = $3, samples = $4, \
             revision = $5, computed_at = $6 WHERE source_id = $7 AND measurand = $8 AND grid_s = $9 \
             AND interval_start = $10"
                .to_string(),
        );
        q = Value::Float(new.value).bind_to(q);
        q.bind(new.quality.as_str())
            .bind(new.coverage_s)
            .bind(i64::from(new.samples))
            .bind(revision)
            .bind(now)
            .bind(source_id.to_string())
            .bind(measurand.as_str())
            .bind(step)
            .bind(old.start)
            .execute(&mut *conn)
            .await?;
        let mut q = dynamic(
            "INSERT INTO telemetry_revisions (id, source_id, measurand, grid_s, interval_start, revision, \
             old_value, new_value, old_quality, new_quality, old_samples, new_samples, cause_instant, \
             cause_value, cause_received_at, cause_readings, revised_at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
                .to_string(),
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(source_id.to_string())
        .bind(measurand.as_str())
        .bind(step)
        .bind(old.start)
        .bind(revision);
        q = Value::Float(old.value).bind_to(q);
        q = Value::Float(new.value).bind_to(q);
        q.bind(old.quality.as_str())
            .bind(new.quality.as_str())
            .bind(old.samples)
            .bind(i64::from(new.samples))
            .bind(cause.instant)
            .bind(cause.value)
            .bind(now)
            .bind(batch.len() as i64)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        revised += 1;
    }
    Ok(revised)
}

/// Filters of [`revisions`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RevisionQuery {
    pub source_id: Option<String>,
    /// Revisions of intervals starting at or after this.
    pub from: Option<EpochSeconds>,
    /// Revisions of intervals starting before this.
    pub to: Option<EpochSeconds>,
    /// Continue after this revision id.
    pub after: Option<String>,
    pub limit: u32,
}

/// The audit of revisions, in revision order.
pub async fn revisions(store: &Store, q: &RevisionQuery) -> Result<Vec<Revision>, TelemetryError> {
    if let (Some(from), Some(to)) = (q.from, q.to)
        && to < from
    {
        return Err(TelemetryError::EmptyRange { from, to });
    }
    let mut sql = "SELECT id, source_id, measurand, grid_s, interval_start, revision, old_value, \
                   new_value, old_quality, new_quality, old_samples, new_samples, cause_instant, \
                   cause_value, cause_received_at, cause_readings, revised_at \
                   FROM telemetry_revisions WHERE id > $1"
        .to_string();
    let mut binds: Vec<Value> = vec![Value::Text(Some(q.after.clone().unwrap_or_default()))];
    if let Some(s) = &q.source_id {
        binds.push(Value::Text(Some(s.clone())));
        sql.push_str(&format!(" AND source_id = ${}", binds.len()));
    }
    if let Some(f) = q.from {
        binds.push(Value::Int(Some(f)));
        sql.push_str(&format!(" AND interval_start >= ${}", binds.len()));
    }
    if let Some(t) = q.to {
        binds.push(Value::Int(Some(t)));
        sql.push_str(&format!(" AND interval_start < ${}", binds.len()));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", q.limit.max(1)));
    let mut query = dynamic(sql);
    for b in binds {
        query = b.bind_to(query);
    }
    query
        .fetch_all(store.pool())
        .await?
        .iter()
        .map(|r| {
            let grid_s = int(r, "grid_s")?;
            Ok(Revision {
                id: text(r, "id")?,
                source_id: text(r, "source_id")?,
                measurand: parsed(r, "measurand")?,
                grid: Grid::from_seconds(grid_s).ok_or_else(|| {
                    crate::store::StoreError::Corrupt(format!("grid_s: {grid_s}"))
                })?,
                interval_start: int(r, "interval_start")?,
                revision: int(r, "revision")?,
                old_value: opt_float(r, "old_value")?,
                new_value: opt_float(r, "new_value")?,
                old_quality: parsed(r, "old_quality")?,
                new_quality: parsed(r, "new_quality")?,
                old_samples: int(r, "old_samples")?,
                new_samples: int(r, "new_samples")?,
                cause_instant: int(r, "cause_instant")?,
                cause_value: crate::store::record::float(r, "cause_value")?,
                cause_received_at: int(r, "cause_received_at")?,
                cause_readings: int(r, "cause_readings")?,
                revised_at: int(r, "revised_at")?,
            })
        })
        .collect()
}
