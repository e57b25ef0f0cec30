//! The live aggregate (virtual meter) of a registry group from the telemetry store: the
//! thin I/O layer that feeds the pure estimators of [`super::estimate`].
//!
//! For each member DER it reads the latest `active_power_w` readings stored under the
//! DER's id (the convention every ingest follows; telemetry sign: positive into the site,
//! so a generating DER reads negative) and, from the envelope store, the control in force
//! that sets its active power (`fixed_w`, `target_w` or `storage_target_w`; positive out of
//! the device, hence negated into the telemetry convention). That control is the command
//! `schedule-aware` advances the device's last reading through, and the one that widens
//! the other estimators' bands. The history the ramp-based estimators need is the series
//! of the latest-reading sum at each reading instant over the last three read intervals.
//!
//! Times are handed to the estimators in seconds relative to the requested instant, so
//! that no precision is lost to epoch-sized numbers.

use super::estimate::{
    AggregationError, Command, DeviceView, EstimatorKind, Params, Sample, estimate,
};
use super::response::ResponseModel;
use crate::domain::EpochSeconds;
use crate::envelope::records::{InForceTarget, applicable};
use crate::registry::model::{Der, Group};
use crate::registry::{MAX_PAGE, Registry, RegistryError};
use crate::store::record::{dynamic, float, int};
use crate::telemetry::{Measurand, TelemetryError, gaps::infer_interval};
use serde::Serialize;
use utoipa::ToSchema;

/// Readings read per device: the latest, the one before, and enough for the history.
const READINGS_PER_DEVICE: i64 = 16;

/// Read interval assumed when it is neither given nor inferable, seconds.
pub const DEFAULT_READ_INTERVAL_S: f64 = 60.0;

/// What is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveQuery {
    pub group_id: String,
    pub estimator: EstimatorKind,
    /// The instant to estimate for.
    pub at: EpochSeconds,
    /// Nominal read interval; inferred from the members' readings when `None`.
    pub read_interval_s: Option<f64>,
    pub latency_s: f64,
    /// The response model of every member (one class).
    pub model: ResponseModel,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LiveEstimate {
    pub group_id: String,
    pub estimator: String,
    /// The instant asked for.
    pub at: EpochSeconds,
    /// The instant the estimate describes: `at`, except for `timeshifted` (not real time).
    pub describes_at: f64,
    /// Estimated aggregate active power, W (positive into the sites).
    pub value_w: f64,
    pub low_w: f64,
    pub high_w: f64,
    /// Member DERs of the group.
    pub members: u64,
    /// Members with at least one reading at or before `at`.
    pub reporting: u64,
    /// Members with a power command in force.
    pub commanded: u64,
    pub read_interval_s: f64,
    /// True when the read interval was inferred from the readings.
    pub read_interval_inferred: bool,
}

/// Why no estimate was made.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error(transparent)]
    Aggregation(#[from] AggregationError),
}

impl From<sqlx::Error> for LiveError {
    fn from(e: sqlx::Error) -> Self {
        LiveError::Telemetry(e.into())
    }
}

/// The power set point in force for `der` at `at`, and when it started.
async fn command_in_force(
    registry: &Registry,
    der: &str,
    at: EpochSeconds,
) -> Result<Option<(EpochSeconds, f64)>, LiveError> {
    let a = applicable(registry, &InForceTarget::Der(der.to_string())).await?;
    Ok(a.controls
        .iter()
        .filter(|c| c.cancelled.is_none())
        .filter(|c| c.start <= at && at < c.start + i64::from(c.duration_s))
        .filter_map(|c| {
            let w = c
                .modes
                .fixed_w
                .or(c.modes.target_w)
                .or(c.modes.storage_target_w)?;
            Some(((c.start, c.created), w))
        })
        .max_by_key(|(k, _)| *k)
        .map(|((start, _), w)| (start, w)))
}

/// Estimates the group's aggregate at `q.at` with `q.estimator`.
pub async fn live_estimate(registry: &Registry, q: &LiveQuery) -> Result<LiveEstimate, LiveError> {
    registry.get::<Group>(&q.group_id).await?;
    let mut members: Vec<Der> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = registry
            .group_members(&q.group_id, after.as_deref(), MAX_PAGE)
            .await?;
        members.extend(page.items);
        match page.next_after {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let pool = registry.store().pool();
    // Each member's recent readings, oldest first, times relative to `at`.
    let mut series: Vec<Vec<Sample>> = Vec::with_capacity(members.len());
    for d in &members {
        let rows = dynamic(format!(
            "SELECT instant, value FROM readings WHERE source_id = $1 AND measurand = $2 \
             AND instant <= $3 ORDER BY instant DESC LIMIT {READINGS_PER_DEVICE}"
        ))
        .bind(d.id.clone())
        .bind(Measurand::ActivePower.as_str())
        .bind(q.at)
        .fetch_all(pool)
        .await?;
        let mut s: Vec<Sample> = rows
            .iter()
            .map(|r| {
                Ok(Sample {
                    at_s: (int(r, "instant")? - q.at) as f64,
                    value_w: float(r, "value")?,
                })
            })
            .collect::<Result<_, crate::store::StoreError>>()
            .map_err(TelemetryError::from)?;
        s.reverse();
        series.push(s);
    }
    let (read_interval_s, inferred) = match q.read_interval_s {
        Some(r) => (r, false),
        None => {
            let mut per: Vec<i64> = series
                .iter()
                .filter_map(|s| {
                    let inst: Vec<i64> = s.iter().map(|x| x.at_s as i64).collect();
                    infer_interval(&inst)
                })
                .collect();
            per.sort_unstable();
            match per.get(per.len() / 2) {
                Some(i) => (*i as f64, true),
                None => (DEFAULT_READ_INTERVAL_S, false),
            }
        }
    };

    let mut devices = Vec::with_capacity(members.len());
    let mut commanded = 0;
    for (d, s) in members.iter().zip(&series) {
        let latest = s.last().copied();
        let previous = s.len().checked_sub(2).map(|i| s[i]);
        let command = match command_in_force(registry, &d.id, q.at).await? {
            Some((start, setpoint_w)) => {
                commanded += 1;
                let at_s = (start - q.at) as f64;
                // What the device was doing when told: its last reading before the command.
                let from_w = s
                    .iter()
                    .rev()
                    .find(|x| x.at_s <= at_s)
                    .or(latest.as_ref())
                    .map_or(0.0, |x| x.value_w);
                Some(Command {
                    at_s,
                    from_w,
                    target_w: -setpoint_w,
                })
            }
            None => None,
        };
        devices.push(DeviceView {
            rated_w: (d.rated_kw * 1000.0).max(1.0),
            class: 0,
            previous,
            latest,
            command,
        });
    }

    // The latest-reading sum at each reading instant over the last three read intervals.
    let window = -3.0 * read_interval_s;
    let mut current: Vec<f64> = series
        .iter()
        .map(|s| {
            s.iter()
                .rev()
                .find(|x| x.at_s < window)
                .map_or(0.0, |x| x.value_w)
        })
        .collect();
    let mut events: Vec<(f64, usize, f64)> = series
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            s.iter()
                .filter(|x| x.at_s >= window)
                .map(move |x| (x.at_s, i, x.value_w))
        })
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut history: Vec<Sample> = Vec::with_capacity(events.len());
    for (t, i, v) in events {
        current[i] = v;
        let sum = current.iter().sum();
        match history.last_mut() {
            Some(last) if last.at_s == t => last.value_w = sum,
            _ => history.push(Sample {
                at_s: t,
                value_w: sum,
            }),
        }
    }

    let mut params = Params::for_interval(0.0, read_interval_s);
    params.latency_s = q.latency_s;
    let e = estimate(q.estimator, &params, &devices, &[q.model], &history)?;
    Ok(LiveEstimate {
        group_id: q.group_id.clone(),
        estimator: q.estimator.as_str().to_string(),
        at: q.at,
        describes_at: q.at as f64 + e.at_s,
        value_w: e.value_w,
        low_w: e.low_w,
        high_w: e.high_w,
        members: members.len() as u64,
        reporting: series.iter().filter(|s| !s.is_empty()).count() as u64,
        commanded,
        read_interval_s,
        read_interval_inferred: inferred,
    })
}
