//! Storing Green Button series in the engine: each UsagePoint is mapped to a registry
//! meter, and each interval becomes a telemetry reading of that meter
//! (`interval_energy_imported_wh` / `interval_energy_exported_wh`, stamped at the
//! interval's start). Everything given is stored in one transaction or nothing is;
//! readings already stored are skipped by the telemetry key, so importing the same file
//! again changes nothing.
//!
//! Mapping (docs/greenbutton.md): a mapping entry for the UsagePoint's Atom id, naming a
//! meter id or MPID, wins; otherwise the meter whose MPID equals the UsagePoint's Atom id,
//! with or without its `urn:uuid:` prefix (case-insensitive).

use super::series::{Direction, UsagePointSeries};
use crate::domain::EpochSeconds;
use crate::store::Store;
use crate::telemetry::{self, InsertOutcome, Measurand, Reading, SourceKind, TelemetryError};
use sqlx::Row;
use std::collections::HashMap;

/// Why an import stored nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "UsagePoint {usage_point} ({title}) maps to no meter: add a meter with MPID '{usage_point}' or a mapping entry"
    )]
    NoMeter { usage_point: String, title: String },
    #[error(
        "the mapping names meter '{meter}' for {usage_point}, but no meter has that id or MPID"
    )]
    UnknownMappedMeter { usage_point: String, meter: String },
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The UsagePoint -> meter mapping read from a CSV file of `usage_point,meter` rows
/// (a header line `usage_point,meter` is allowed).
pub fn read_mapping(text: &str) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line == "usage_point,meter") {
            continue;
        }
        let (up, meter) = line
            .split_once(',')
            .ok_or_else(|| format!("mapping line {}: expected usage_point,meter", n + 1))?;
        map.insert(up.trim().to_string(), meter.trim().to_string());
    }
    Ok(map)
}

/// Finds the meter id of every UsagePoint that has intervals.
pub async fn map_meters(
    store: &Store,
    series: &[UsagePointSeries],
    mapping: &HashMap<String, String>,
) -> Result<Vec<String>, ImportError> {
    let rows = sqlx::query("SELECT id, mpid FROM meters")
        .fetch_all(store.pool())
        .await?;
    let mut by_id = HashMap::new();
    let mut by_mpid = HashMap::new();
    for r in rows {
        let id: String = r.try_get("id")?;
        let mpid: String = r.try_get("mpid")?;
        by_mpid.insert(mpid.to_ascii_lowercase(), id.clone());
        by_id.insert(id.clone(), id);
    }
    series
        .iter()
        .map(|s| {
            let up = &s.usage_point.id;
            if let Some(m) = mapping.get(up) {
                return by_id
                    .get(m)
                    .or_else(|| by_mpid.get(&m.to_ascii_lowercase()))
                    .cloned()
                    .ok_or_else(|| ImportError::UnknownMappedMeter {
                        usage_point: up.clone(),
                        meter: m.clone(),
                    });
            }
            let lower = up.to_ascii_lowercase();
            let bare = lower.strip_prefix("urn:uuid:").unwrap_or(&lower);
            by_mpid
                .get(&lower)
                .or_else(|| by_mpid.get(bare))
                .cloned()
                .ok_or_else(|| ImportError::NoMeter {
                    usage_point: up.clone(),
                    title: s.usage_point.title.clone().unwrap_or_default(),
                })
        })
        .collect()
}

/// The readings of one UsagePoint's series for `meter_id`.
pub fn readings(series: &UsagePointSeries, meter_id: &str) -> Vec<Reading> {
    let mut out = Vec::new();
    for c in &series.channels {
        let measurand = match c.direction {
            Direction::Delivered => Measurand::IntervalEnergyImported,
            Direction::Received => Measurand::IntervalEnergyExported,
        };
        out.extend(c.intervals.iter().map(|i| Reading {
            source_id: meter_id.to_string(),
            source_kind: SourceKind::GreenButton,
            measurand,
            instant: i.start,
            value: i.wh,
            quality: i.quality,
        }));
    }
    out
}

/// Stores every series under its meter in one transaction.
pub async fn store_all(
    store: &Store,
    items: &[(&UsagePointSeries, String)],
    now: EpochSeconds,
) -> Result<InsertOutcome, ImportError> {
    let all: Vec<Reading> = items
        .iter()
        .flat_map(|(s, meter)| readings(s, meter))
        .collect();
    // Validate everything before the transaction: a refused reading stores nothing.
    for r in &all {
        r.validate(now)?;
    }
    let mut tx = store.begin_write().await?;
    let outcome = telemetry::insert_in(&mut tx, &all, now).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportReport {
    /// One summary per UsagePoint that carried intervals, with the meter it went to.
    pub usage_points: Vec<(super::series::Summary, String)>,
    /// Readings newly stored and readings already present.
    pub outcome: InsertOutcome,
}

/// Maps and stores `series` (UsagePoints without intervals are skipped), all or nothing.
pub async fn import_series(
    store: &Store,
    series: &[UsagePointSeries],
    mapping: &HashMap<String, String>,
    now: EpochSeconds,
) -> Result<ImportReport, ImportError> {
    let with_data: Vec<UsagePointSeries> = series
        .iter()
        .filter(|s| s.channels.iter().any(|c| !c.intervals.is_empty()))
        .cloned()
        .collect();
    let meters = map_meters(store, &with_data, mapping).await?;
    let items: Vec<(&UsagePointSeries, String)> =
        with_data.iter().zip(meters.iter().cloned()).collect();
    let outcome = store_all(store, &items, now).await?;
    Ok(ImportReport {
        usage_points: with_data.iter().map(|s| s.summary()).zip(meters).collect(),
        outcome,
    })
}
