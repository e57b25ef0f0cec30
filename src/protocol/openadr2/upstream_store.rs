//! The upstream VEN's stored decisions (`oadr2_upstream_events`, migration 0021): one row
//! per event and modification received from the utility's VTN, with the opt sent, its
//! reason and the dispatch plans made for it.

use crate::domain::EpochSeconds;
use crate::store::record::{dynamic, int, text};
use crate::store::{Store, StoreError};
use serde::Serialize;
use sqlx::any::AnyRow;

/// What the VEN decided for one event modification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub event_id: String,
    pub modification_number: i64,
    /// The event's status as received (`far`, `active`, `cancelled`, ...).
    pub event_status: String,
    /// `optIn` or `optOut`.
    pub opt_type: String,
    pub reason: String,
    /// The `dispatch_plans` made for this modification.
    pub plan_ids: Vec<String>,
    pub decided_at: EpochSeconds,
}

const COLUMNS: &str =
    "event_id, modification_number, event_status, opt_type, reason, plan_ids, decided_at";

fn from_row(r: &AnyRow) -> Result<Decision, StoreError> {
    Ok(Decision {
        event_id: text(r, "event_id")?,
        modification_number: int(r, "modification_number")?,
        event_status: text(r, "event_status")?,
        opt_type: text(r, "opt_type")?,
        reason: text(r, "reason")?,
        plan_ids: serde_json::from_str(&text(r, "plan_ids")?)
            .map_err(|e| StoreError::Corrupt(format!("plan_ids: {e}")))?,
        decided_at: int(r, "decided_at")?,
    })
}

/// Stores a decision; a decision already stored for the same modification is kept (the
/// first one wins, so a restart never decides twice).
pub async fn insert(store: &Store, d: &Decision) -> Result<(), StoreError> {
    let plans = serde_json::to_string(&d.plan_ids)
        .map_err(|e| StoreError::Corrupt(format!("plan_ids: {e}")))?;
    dynamic(format!(
        "INSERT INTO oadr2_upstream_events ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (event_id, modification_number) DO NOTHING"
    ))
    .bind(d.event_id.clone())
    .bind(d.modification_number)
    .bind(d.event_status.clone())
    .bind(d.opt_type.clone())
    .bind(d.reason.clone())
    .bind(plans)
    .bind(d.decided_at)
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The latest decision for `event_id` (highest modification number).
pub async fn latest(store: &Store, event_id: &str) -> Result<Option<Decision>, StoreError> {
    dynamic(format!(
        "SELECT {COLUMNS} FROM oadr2_upstream_events WHERE event_id = $1 \
         ORDER BY modification_number DESC LIMIT 1"
    ))
    .bind(event_id.to_string())
    .fetch_optional(store.pool())
    .await?
    .as_ref()
    .map(from_row)
    .transpose()
}

/// Every decision, by event then modification.
pub async fn all(store: &Store) -> Result<Vec<Decision>, StoreError> {
    dynamic(format!(
        "SELECT {COLUMNS} FROM oadr2_upstream_events ORDER BY event_id, modification_number"
    ))
    .fetch_all(store.pool())
    .await?
    .iter()
    .map(from_row)
    .collect()
}
