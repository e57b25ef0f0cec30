//! Gap and lateness detection per source: which devices stopped reporting, which intervals
//! are missing, and which readings arrived late and by how much.
//!
//! A source's expected reporting interval is configured (`telemetry_source_intervals`,
//! migration 0012) or inferred from its history as the median spacing between its distinct
//! reading instants; the median ignores the gaps themselves. A spacing longer than
//! [`GAP_TOLERANCE`] intervals is a gap, and the readings that should have come in it are
//! counted as missing. Lateness compares each reading's arrival (`readings.received_at`,
//! the earliest arrival when several measurands share an instant) with its instant: a
//! reading is late when it arrived more than `late_after_s` after it was measured (by
//! default one expected interval: it came after the next reading was due).
//!
//! [`analyse`] is pure; [`report`] reads the store around it.

use super::TelemetryError;
use crate::domain::EpochSeconds;
use crate::store::Store;
use crate::store::record::{dynamic, int, text};
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// A spacing longer than this many expected intervals is a gap: jitter of half an interval
/// is normal for pollers and does not count.
pub const GAP_TOLERANCE: f64 = 1.5;

/// Late readings listed per source (all are counted).
pub const MAX_LISTED: usize = 100;

/// The longest range one report covers, seconds (31 days).
pub const MAX_RANGE_S: i64 = 31 * 86_400;

/// How far before `from` history is read to infer a source's interval when the range
/// itself holds too few readings.
const HISTORY_READINGS: i64 = 20;

/// Lateness threshold when the interval is unknown, seconds.
pub const DEFAULT_LATE_AFTER_S: i64 = 300;

/// One distinct reading instant of a source and when it (first) arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub instant: EpochSeconds,
    pub received_at: EpochSeconds,
}

/// Where a source's expected interval came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IntervalOrigin {
    /// `telemetry_source_intervals` or the request.
    Configured,
    /// The median spacing of its readings.
    Inferred,
    /// Too few readings to say.
    Unknown,
}

/// Expected readings that did not come, between two instants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Gap {
    /// The first instant a reading was due and did not come.
    pub from: EpochSeconds,
    /// The next reading's instant, or the end of the range (exclusive).
    pub to: EpochSeconds,
    /// How many expected readings are missing.
    pub missing_readings: u64,
}

/// A reading that arrived late.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Late {
    pub instant: EpochSeconds,
    pub received_at: EpochSeconds,
    /// `received_at - instant`, seconds.
    pub lateness_s: i64,
}

/// The report for one source.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SourceReport {
    pub source_id: String,
    pub expected_interval_s: Option<i64>,
    pub interval_origin: IntervalOrigin,
    /// Distinct reading instants in the range.
    pub readings: u64,
    /// Sum of the gaps' missing readings.
    pub missing_readings: u64,
    pub gaps: Vec<Gap>,
    /// Readings that arrived more than `late_after_s` after their instant.
    pub late_readings: u64,
    pub late_after_s: i64,
    pub max_lateness_s: Option<i64>,
    /// The late readings in instant order, at most [`MAX_LISTED`].
    pub late: Vec<Late>,
}

/// What a report is asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GapQuery {
    pub from: EpochSeconds,
    pub to: EpochSeconds,
    /// Only this source.
    pub source_id: Option<String>,
    /// Overrides every source's expected interval.
    pub interval_s: Option<i64>,
    /// Overrides the lateness threshold.
    pub late_after_s: Option<i64>,
    /// Also report these sources (e.g. a group's DERs) when they sent nothing.
    pub expected_sources: Vec<String>,
    /// Report only `expected_sources` (a group's DERs), not every source that reported.
    pub only_expected: bool,
    /// Leave out sources with no gap and no late reading.
    pub problems_only: bool,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct GapReport {
    pub from: EpochSeconds,
    /// The end of the range analysed: the requested end, or now if earlier (readings not
    /// yet due are not missing).
    pub to: EpochSeconds,
    pub sources: Vec<SourceReport>,
    pub sources_with_gaps: u64,
    pub sources_with_late_readings: u64,
    pub missing_readings: u64,
    pub late_readings: u64,
}

/// The median spacing between consecutive distinct instants (sorted), if there are two.
pub fn infer_interval(instants: &[EpochSeconds]) -> Option<i64> {
    let mut d: Vec<i64> = instants
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|d| *d > 0)
        .collect();
    if d.is_empty() {
        return None;
    }
    d.sort_unstable();
    Some(d[d.len() / 2])
}

/// Analyses one source over `[from, to)`. `arrivals` are its distinct instants in the
/// range, sorted; `before` is its last instant before `from`, if any; `interval` the
/// expected interval and where it came from.
pub fn analyse(
    source_id: &str,
    arrivals: &[Arrival],
    before: Option<EpochSeconds>,
    from: EpochSeconds,
    to: EpochSeconds,
    interval: (Option<i64>, IntervalOrigin),
    late_after_s: Option<i64>,
) -> SourceReport {
    let (expected, origin) = interval;
    let late_after_s = late_after_s.or(expected).unwrap_or(DEFAULT_LATE_AFTER_S);
    let mut gaps = Vec::new();
    if let Some(i) = expected.filter(|i| *i > 0) {
        let too_long = |d: i64| d as f64 > GAP_TOLERANCE * i as f64;
        let mut prev = before;
        // The range's end closes the last gap: slots due before it are missing.
        let ends = arrivals
            .iter()
            .map(|a| (a.instant, false))
            .chain(std::iter::once((to, true)));
        for (t, is_end) in ends {
            let gap = match prev {
                Some(p) if too_long(t - p) => {
                    // Due at p + i, p + 2i, ...; an interior gap ends with a reading that
                    // fills the nearest slot.
                    let due = if is_end {
                        (t - p - 1) / i
                    } else {
                        ((t - p) as f64 / i as f64).round() as i64 - 1
                    };
                    // Slots due before `from` belong to an earlier report.
                    let skip = if p + i >= from { 0 } else { (from - p - 1) / i };
                    Some((p + (skip + 1) * i, due - skip))
                }
                // No reading before the range: its phase is unknown, count whole intervals.
                None if too_long(t - from) => Some((from, (t - from) / i)),
                _ => None,
            };
            if let Some((start, missing)) = gap
                && missing > 0
            {
                gaps.push(Gap {
                    from: start,
                    to: t,
                    missing_readings: missing as u64,
                });
            }
            prev = Some(t);
        }
    }
    let mut late = Vec::new();
    let mut late_count = 0u64;
    let mut max_lateness: Option<i64> = None;
    for a in arrivals {
        let lateness = a.received_at - a.instant;
        if lateness > late_after_s {
            late_count += 1;
            max_lateness = Some(max_lateness.map_or(lateness, |m| m.max(lateness)));
            if late.len() < MAX_LISTED {
                late.push(Late {
                    instant: a.instant,
                    received_at: a.received_at,
                    lateness_s: lateness,
                });
            }
        }
    }
    SourceReport {
        source_id: source_id.to_string(),
        expected_interval_s: expected,
        interval_origin: origin,
        readings: arrivals.len() as u64,
        missing_readings: gaps.iter().map(|g| g.missing_readings).sum(),
        gaps,
        late_readings: late_count,
        late_after_s,
        max_lateness_s: max_lateness,
        late,
    }
}

/// Checks a query before any database work.
pub fn validate(q: &GapQuery) -> Result<(), TelemetryError> {
    if q.to <= q.from {
        return Err(TelemetryError::EmptyRange {
            from: q.from,
            to: q.to,
        });
    }
    if q.to - q.from > MAX_RANGE_S {
        return Err(TelemetryError::RangeTooLong {
            seconds: q.to - q.from,
            max: MAX_RANGE_S,
        });
    }
    for (name, v) in [
        ("interval_s", q.interval_s),
        ("late_after_s", q.late_after_s),
    ] {
        if v.is_some_and(|v| v <= 0) {
            return Err(TelemetryError::NotPositive(name));
        }
    }
    Ok(())
}

/// The gap and lateness report over `[q.from, min(q.to, now))`.
pub async fn report(
    store: &Store,
    q: &GapQuery,
    now: EpochSeconds,
) -> Result<GapReport, TelemetryError> {
    validate(q)?;
    let from = q.from;
    let to = q.to.min(now.max(q.from + 1));
    let pool = store.pool();

    let mut sql = "SELECT source_id, instant, MIN(received_at) AS received_at FROM readings \
                   WHERE instant >= $1 AND instant < $2"
        .to_string();
    if q.source_id.is_some() {
        sql.push_str(" AND source_id = $3");
    }
    sql.push_str(" GROUP BY source_id, instant ORDER BY source_id, instant");
    let mut query = dynamic(sql).bind(from).bind(to);
    if let Some(s) = &q.source_id {
        query = query.bind(s.clone());
    }
    let mut by_source: BTreeMap<String, Vec<Arrival>> = BTreeMap::new();
    for row in query.fetch_all(pool).await? {
        by_source
            .entry(text(&row, "source_id")?)
            .or_default()
            .push(Arrival {
                instant: int(&row, "instant")?,
                received_at: int(&row, "received_at")?,
            });
    }

    let mut configured: BTreeMap<String, i64> = BTreeMap::new();
    let mut sql =
        "SELECT source_id, expected_interval_s FROM telemetry_source_intervals".to_string();
    if q.source_id.is_some() {
        sql.push_str(" WHERE source_id = $1");
    }
    let mut query = dynamic(sql);
    if let Some(s) = &q.source_id {
        query = query.bind(s.clone());
    }
    for row in query.fetch_all(pool).await? {
        configured.insert(text(&row, "source_id")?, int(&row, "expected_interval_s")?);
    }
    // Sources expected to report appear even when silent.
    for s in configured.keys().chain(q.expected_sources.iter()) {
        if q.source_id.as_ref().is_none_or(|only| only == s) {
            by_source.entry(s.clone()).or_default();
        }
    }

    if q.only_expected {
        let keep: std::collections::BTreeSet<&String> = q.expected_sources.iter().collect();
        by_source.retain(|s, _| keep.contains(s));
    }
    let mut sources = Vec::with_capacity(by_source.len());
    for (source_id, arrivals) in &by_source {
        // The last instants before the range: the anchor of a leading gap, and history for
        // inference when the range holds few readings.
        let history: Vec<EpochSeconds> = dynamic(format!(
            "SELECT DISTINCT instant FROM readings WHERE source_id = $1 AND instant < $2 \
             ORDER BY instant DESC LIMIT {HISTORY_READINGS}"
        ))
        .bind(source_id.clone())
        .bind(from)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| int(r, "instant"))
        .collect::<Result<_, _>>()?;
        let before = history.first().copied();
        let interval = match q.interval_s.or_else(|| configured.get(source_id).copied()) {
            Some(i) => (Some(i), IntervalOrigin::Configured),
            None => {
                let mut instants: Vec<EpochSeconds> = history.iter().rev().copied().collect();
                instants.extend(arrivals.iter().map(|a| a.instant));
                match infer_interval(&instants) {
                    Some(i) => (Some(i), IntervalOrigin::Inferred),
                    None => (None, IntervalOrigin::Unknown),
                }
            }
        };
        let r = analyse(
            source_id,
            arrivals,
            before,
            from,
            to,
            interval,
            q.late_after_s,
        );
        if q.problems_only && r.gaps.is_empty() && r.late_readings == 0 {
            continue;
        }
        sources.push(r);
    }
    Ok(GapReport {
        from,
        to,
        sources_with_gaps: sources.iter().filter(|s| !s.gaps.is_empty()).count() as u64,
        sources_with_late_readings: sources.iter().filter(|s| s.late_readings > 0).count() as u64,
        missing_readings: sources.iter().map(|s| s.missing_readings).sum(),
        late_readings: sources.iter().map(|s| s.late_readings).sum(),
        sources,
    })
}

/// Configures (or, with `None`, forgets) a source's expected interval.
pub async fn set_expected_interval(
    store: &Store,
    source_id: &str,
    interval_s: Option<i64>,
    now: EpochSeconds,
) -> Result<(), TelemetryError> {
    if source_id.trim().is_empty() {
        return Err(TelemetryError::NotPositive("source_id"));
    }
    let pool = store.pool();
    let mut tx = pool.begin().await?;
    dynamic("DELETE FROM telemetry_source_intervals WHERE source_id = $1".to_string())
        .bind(source_id.to_string())
        .execute(&mut *tx)
        .await?;
    if let Some(i) = interval_s {
        if i <= 0 {
            return Err(TelemetryError::NotPositive("expected_interval_s"));
        }
        dynamic(
            "INSERT INTO telemetry_source_intervals (source_id, expected_interval_s, updated_at) \
             VALUES ($1, $2, $3)"
                .to_string(),
        )
        .bind(source_id.to_string())
        .bind(i)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_750_000_000;

    fn on_time(instants: &[i64]) -> Vec<Arrival> {
        instants
            .iter()
            .map(|&instant| Arrival {
                instant,
                received_at: instant + 2,
            })
            .collect()
    }

    #[test]
    fn infers_the_median_spacing() {
        assert_eq!(infer_interval(&[0, 60, 120, 180, 900, 960]), Some(60));
        assert_eq!(infer_interval(&[5]), None);
    }

    #[test]
    fn finds_gaps_inside_at_the_start_and_at_the_end() {
        // Every 60 s from T, but T+180..T+360 missing (4 readings), and nothing after T+600
        // up to T+900 (T+660..T+840: 4 readings due before the end).
        let mut inst: Vec<i64> = vec![T, T + 60, T + 120, T + 420, T + 480, T + 540, T + 600];
        let r = analyse(
            "m",
            &on_time(&inst),
            Some(T - 60),
            T,
            T + 900,
            (Some(60), IntervalOrigin::Configured),
            None,
        );
        assert_eq!(
            r.gaps,
            vec![
                Gap {
                    from: T + 180,
                    to: T + 420,
                    missing_readings: 4
                },
                Gap {
                    from: T + 660,
                    to: T + 900,
                    missing_readings: 4
                },
            ]
        );
        assert_eq!(r.missing_readings, 8);
        assert_eq!(r.late_readings, 0);
        // A range starting inside a gap counts only the slots in the range.
        inst.retain(|t| *t >= T + 420);
        let r = analyse(
            "m",
            &on_time(&inst),
            Some(T + 120),
            T + 300,
            T + 601,
            (Some(60), IntervalOrigin::Configured),
            None,
        );
        assert_eq!(
            r.gaps,
            vec![Gap {
                from: T + 300,
                to: T + 420,
                missing_readings: 2
            }]
        );
        // Silent for the whole range, no history.
        let r = analyse(
            "m",
            &[],
            None,
            T,
            T + 600,
            (Some(60), IntervalOrigin::Configured),
            None,
        );
        assert_eq!(
            r.gaps,
            vec![Gap {
                from: T,
                to: T + 600,
                missing_readings: 10
            }]
        );
        // Jitter within tolerance is no gap.
        let r = analyse(
            "m",
            &on_time(&[T, T + 80, T + 130, T + 190]),
            None,
            T,
            T + 200,
            (Some(60), IntervalOrigin::Inferred),
            None,
        );
        assert!(r.gaps.is_empty(), "{:?}", r.gaps);
    }

    #[test]
    fn counts_late_readings_and_how_late() {
        let arrivals = [
            Arrival {
                instant: T,
                received_at: T + 5,
            },
            Arrival {
                instant: T + 60,
                received_at: T + 400,
            },
            Arrival {
                instant: T + 120,
                received_at: T + 400,
            },
        ];
        let r = analyse(
            "m",
            &arrivals,
            None,
            T,
            T + 180,
            (Some(60), IntervalOrigin::Inferred),
            None,
        );
        assert_eq!(r.late_readings, 2);
        assert_eq!(r.max_lateness_s, Some(340));
        assert_eq!(
            r.late[1],
            Late {
                instant: T + 120,
                received_at: T + 400,
                lateness_s: 280
            }
        );
        let r = analyse(
            "m",
            &arrivals,
            None,
            T,
            T + 180,
            (Some(60), IntervalOrigin::Inferred),
            Some(300),
        );
        assert_eq!(r.late_readings, 1);
    }
}
